"""Every report table as a pandas DataFrame or an Arrow table, with names, never codes.

Each result object of the analytics has ``to_pandas(table=None)`` and
``to_arrow(table=None)``; ``table`` picks one of its tables (its
``TABLES``; the first is the default). Columns have fixed names and types,
so an empty table still has its schema:

===========  ======================  ========================================
type         pandas                  Arrow
===========  ======================  ========================================
text         ``object`` (str)        ``string``
integer      ``Int64`` (nullable)    ``int64``
number       ``float64`` (NaN)       ``float64``
flag         ``boolean``             ``bool``
duration     ``timedelta64[ns]``     ``duration[us]``
time         ``datetime64[ns, UTC]`` ``timestamp[us, UTC]``
===========  ======================  ========================================

Undefined values (a rate with a zero denominator, a median of nothing) are
missing values (``NA``/``NaN``/``NaT``, Arrow nulls). Stages, teams, people
and values are the names the log records.

pandas comes with the ``frames`` extra and pyarrow with ``arrow``; a missing
one raises :class:`~buyerjourney.errors.MissingExtra` with the command that
installs it. Polars reads the Arrow tables without a copy:
``polars.from_arrow(report.to_arrow())``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from buyerjourney.errors import MissingExtra

__all__ = [
    "COLUMN_TYPES",
    "Table",
    "Tabular",
    "arrow_table",
    "backtest_tables",
    "breakdown_tables",
    "cohort_tables",
    "funnel_tables",
    "handoff_tables",
    "pandas_frame",
    "pick",
    "table",
]

COLUMN_TYPES: tuple[str, ...] = ("text", "integer", "number", "flag", "duration", "time")
"""The column types of a :class:`Table` (see the module documentation)."""


@attrs.frozen
class Table:
    """One table of a result, before conversion: named, typed columns and rows.

    Attributes:
        name: The table's name (``"steps"``).
        columns: ``(column name, column type)`` pairs, in order; the types
            are those of :data:`COLUMN_TYPES`.
        rows: One tuple per row, values in column order (``None``: missing).
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    rows: tuple[tuple[Any, ...], ...]

    def __attrs_post_init__(self) -> None:
        for column, kind in self.columns:
            if kind not in COLUMN_TYPES:
                msg = (
                    f"column {column!r} has type {kind!r}; the types are {', '.join(COLUMN_TYPES)}"
                )
                raise ValueError(msg)
        width = len(self.columns)
        for row in self.rows:
            if len(row) != width:
                msg = f"table {self.name!r}: a row has {len(row)} values for {width} columns"
                raise ValueError(msg)

    def column(self, name: str) -> list[Any]:
        """The values of one column.

        Raises:
            KeyError: No column has that name.
        """
        names = [c for c, _ in self.columns]
        if name not in names:
            msg = f"table {self.name!r} has no column {name!r}; its columns: {', '.join(names)}"
            raise KeyError(msg)
        i = names.index(name)
        return [row[i] for row in self.rows]


def table(name: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> Table:
    """Build a :class:`Table` (the result classes' helper)."""
    return Table(name, tuple(columns), tuple(tuple(r) for r in rows))


def pick(owner: str, tables: Mapping[str, Callable[[], Table]], name: str | None) -> Table:
    """The table *name* of a result (the first when ``None``).

    Raises:
        ValueError: The result has no such table; lists the ones it has.
    """
    if name is None:
        name = next(iter(tables))
    builder = tables.get(name)
    if builder is None:
        msg = f"{owner} has no table {name!r}; its tables are: {', '.join(tables)}"
        raise ValueError(msg)
    return builder()


def _module(name: str, feature: str, extra: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != name:
            raise
        raise MissingExtra(feature, extra) from None


def pandas_frame(data: Table) -> Any:
    """*data* as a pandas DataFrame (typed columns; see the module documentation).

    Raises:
        MissingExtra: pandas is not installed (the ``frames`` extra).
    """
    pd = _module("pandas", "Tables as pandas DataFrames", "frames")
    columns: dict[str, Any] = {}
    for i, (name, kind) in enumerate(data.columns):
        values = [row[i] for row in data.rows]
        if kind == "integer":
            series = pd.array(values, dtype="Int64")
        elif kind == "number":
            series = pd.array(
                [float("nan") if v is None else float(v) for v in values], dtype="float64"
            )
        elif kind == "flag":
            series = pd.array(values, dtype="boolean")
        elif kind == "duration":
            series = pd.to_timedelta(pd.Series(values, dtype="object"))
        elif kind == "time":
            series = pd.to_datetime(pd.Series(values, dtype="object"), utc=True)
        else:
            series = pd.Series(values, dtype="object")
        columns[name] = series
    return pd.DataFrame(columns, columns=[c for c, _ in data.columns])


def arrow_table(data: Table) -> Any:
    """*data* as a pyarrow Table (typed columns; see the module documentation).

    Raises:
        MissingExtra: pyarrow is not installed (the ``arrow`` extra).
    """
    pa = _module("pyarrow", "Tables as Arrow tables", "arrow")
    types = {
        "text": pa.string(),
        "integer": pa.int64(),
        "number": pa.float64(),
        "flag": pa.bool_(),
        "duration": pa.duration("us"),
        "time": pa.timestamp("us", tz="UTC"),
    }
    arrays = []
    for i, (_, kind) in enumerate(data.columns):
        values = [row[i] for row in data.rows]
        if kind == "number":
            values = [None if v is None else float(v) for v in values]
        arrays.append(pa.array(values, type=types[kind]))
    schema = pa.schema([pa.field(name, types[kind]) for name, kind in data.columns])
    return pa.Table.from_arrays(arrays, schema=schema)


class Tabular:
    """What every analytics result has: :meth:`table`, :meth:`to_pandas` and :meth:`to_arrow`.

    A result lists its tables in ``TABLES`` (the first is the default) and
    builds them in ``_tables()``.
    """

    __slots__ = ()

    TABLES: ClassVar[tuple[str, ...]] = ()
    """The names of the result's tables; the first is the default."""

    def _tables(self) -> Mapping[str, Callable[[], Table]]:
        raise NotImplementedError

    def table(self, table: str | None = None) -> Table:
        """One of the result's tables, typed, before conversion (see :attr:`TABLES`).

        Args:
            table: The table's name (default: the first of :attr:`TABLES`).

        Returns:
            The table.

        Raises:
            ValueError: The result has no such table.
        """
        return pick(type(self).__name__, self._tables(), table)

    def to_pandas(self, table: str | None = None) -> Any:
        """One of the result's tables as a pandas DataFrame (see :attr:`TABLES`).

        Args:
            table: The table's name (default: the first of :attr:`TABLES`).

        Returns:
            A ``pandas.DataFrame`` with named, typed columns.

        Raises:
            ValueError: The result has no such table.
            MissingExtra: pandas is not installed (``pip install 'buyerjourney[frames]'``).
        """
        return pandas_frame(self.table(table))

    def to_arrow(self, table: str | None = None) -> Any:
        """One of the result's tables as a pyarrow Table (``polars.from_arrow`` reads it).

        Args:
            table: The table's name (default: the first of :attr:`TABLES`).

        Returns:
            A ``pyarrow.Table`` with named, typed columns.

        Raises:
            ValueError: The result has no such table.
            MissingExtra: pyarrow is not installed (``pip install 'buyerjourney[arrow]'``).
        """
        return arrow_table(self.table(table))


# ---------------------------------------------------------------- the result tables

_STEP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("step", "integer"),
    ("stage", "text"),
    ("entered", "integer"),
    ("exited", "integer"),
    ("balance", "integer"),
    ("converted", "integer"),
    ("step_conversion", "number"),
    ("overall_conversion", "number"),
    ("drop_off", "number"),
    ("velocity", "duration"),
    ("time_in_stage_median", "duration"),
    ("time_in_stage_p90", "duration"),
    ("time_to_convert_median", "duration"),
    ("time_to_convert_p90", "duration"),
    ("time_from_start_median", "duration"),
    ("time_from_start_p90", "duration"),
)


def _step_values(report: Any) -> list[tuple[Any, ...]]:
    return [
        (
            k + 1,
            row.stage,
            row.entered,
            row.exited,
            row.balance,
            row.converted,
            row.step_conversion,
            row.overall_conversion,
            row.drop_off,
            row.velocity,
            row.time_in_stage.median,
            row.time_in_stage.p90,
            row.time_to_convert.median,
            row.time_to_convert.p90,
            row.time_from_start.median,
            row.time_from_start.p90,
        )
        for k, row in enumerate(report.steps)
    ]


def _exit_values(report: Any) -> list[tuple[Any, ...]]:
    return [
        (row.stage, branch.stage, branch.kind, branch.leads, branch.converted)
        for row in report.steps
        for branch in row.exits
    ]


_EXIT_COLUMNS = (
    ("step_stage", "text"),
    ("next_stage", "text"),
    ("kind", "text"),
    ("leads", "integer"),
    ("converted", "integer"),
)

_MEASURES = ("time_in_stage", "time_to_convert", "time_from_start")


def _histogram_values(report: Any) -> list[tuple[Any, ...]]:
    return [
        (row.stage, measure, bucket, count)
        for row in report.steps
        for measure in _MEASURES
        for bucket, count in getattr(row, measure).histogram()
    ]


_HISTOGRAM_COLUMNS = (
    ("stage", "text"),
    ("measure", "text"),
    ("bucket", "text"),
    ("count", "integer"),
)


def _duration_values(report: Any) -> list[tuple[Any, ...]]:
    return [
        (row.stage, measure, value)
        for row in report.steps
        for measure in _MEASURES
        for value in getattr(row, measure).values
    ]


_DURATION_COLUMNS = (("stage", "text"), ("measure", "text"), ("duration", "duration"))


def funnel_tables(report: Any) -> dict[str, Callable[[], Table]]:
    """The tables of a funnel report: steps, exits, histograms, durations."""
    return {
        "steps": lambda: table("steps", _STEP_COLUMNS, _step_values(report)),
        "exits": lambda: table("exits", _EXIT_COLUMNS, _exit_values(report)),
        "histograms": lambda: table("histograms", _HISTOGRAM_COLUMNS, _histogram_values(report)),
        "durations": lambda: table("durations", _DURATION_COLUMNS, _duration_values(report)),
    }


def _grouped(
    name: str,
    keys: Sequence[tuple[str, str]],
    groups: Sequence[tuple[tuple[Any, ...], Any]],
    part: str,
) -> Table:
    if part == "steps":
        columns, values = _STEP_COLUMNS, _step_values
    else:
        columns, values = _EXIT_COLUMNS, _exit_values
    rows = [(*key, *row) for key, report in groups for row in values(report)]
    return table(name, (*keys, *columns), rows)


def breakdown_tables(breakdown: Any) -> dict[str, Callable[[], Table]]:
    """The tables of a breakdown: steps and exits per group, then the total."""
    keys = (("group", "text"), ("missing", "flag"), ("total", "flag"))
    groups = [((g.label, g.missing, False), g.report) for g in breakdown.groups]
    groups.append((("(all)", False, True), breakdown.total))
    return {
        "steps": lambda: _grouped("steps", keys, groups, "steps"),
        "exits": lambda: _grouped("exits", keys, groups, "exits"),
    }


def cohort_tables(cohorts: Any) -> dict[str, Callable[[], Table]]:
    """The tables of cohorts: steps and exits per cohort, then the total."""
    keys = (("cohort", "text"), ("start", "time"), ("end", "time"), ("total", "flag"))
    groups = [((c.label, c.start, c.end, False), c.report) for c in cohorts.cohorts]
    groups.append((("(all)", None, None, True), cohorts.total))
    return {
        "steps": lambda: _grouped("steps", keys, groups, "steps"),
        "exits": lambda: _grouped("exits", keys, groups, "exits"),
    }


def handoff_tables(report: Any) -> dict[str, Callable[[], Table]]:
    """The tables of a handoff report: teams, actors, routes, breaches, rejections, recycles..."""
    team_fields = ("received", "handed_off", "accepted", "rejected", "breaches", "open", "waiting")
    actor_fields = ("moves", "overrides", "accepted", "rejected", "refused")
    return {
        "teams": lambda: table(
            "teams",
            (("team", "text"), *((f, "integer") for f in team_fields)),
            [(t.team, *(getattr(t, f) for f in team_fields)) for t in report.teams],
        ),
        "actors": lambda: table(
            "actors",
            (("actor", "text"), ("team", "text"), *((f, "integer") for f in actor_fields)),
            [(a.actor, a.team, *(getattr(a, f) for f in actor_fields)) for a in report.actors],
        ),
        "routes": lambda: table(
            "routes",
            (("stage", "text"), ("from_team", "text"), ("to_team", "text"), ("count", "integer")),
            [(r.stage, r.from_team, r.to_team, r.count) for r in report.routes],
        ),
        "breaches": lambda: table(
            "breaches",
            (("stage", "text"), ("breaches", "integer")),
            list(report.breaches.items()),
        ),
        "rejections": lambda: table(
            "rejections",
            (("reason", "text"), ("count", "integer")),
            list(report.rejection_reasons.items()),
        ),
        "recycles": lambda: table(
            "recycles",
            (("source", "text"), ("target", "text"), ("reason", "text"), ("count", "integer")),
            [(r.source, r.target, r.reason, r.count) for r in report.recycles],
        ),
        "summary": lambda: table(
            "summary",
            (
                ("basis", "text"),
                ("since", "time"),
                ("as_of", "time"),
                ("handoffs", "integer"),
                ("gate_entries", "integer"),
                ("accepted", "integer"),
                ("rejected", "integer"),
                ("pending", "integer"),
                ("acceptance_rate", "number"),
                ("time_to_accept_median", "duration"),
                ("time_to_accept_p90", "duration"),
            ),
            [
                (
                    report.basis,
                    report.since,
                    report.as_of,
                    report.handoffs,
                    report.gate_entries,
                    report.accepted,
                    report.rejected,
                    report.pending,
                    report.acceptance_rate,
                    report.time_to_accept.median,
                    report.time_to_accept.p90,
                )
            ],
        ),
    }


def backtest_tables(result: Any) -> dict[str, Callable[[], Table]]:
    """The tables of a backtest: candidates, curve, weekly workload, handoffs."""
    return {
        "candidates": lambda: table(
            "candidates",
            (
                ("candidate", "text"),
                ("kind", "text"),
                ("threshold", "number"),
                ("best", "flag"),
                ("handed_off", "integer"),
                ("won_handed_off", "integer"),
                ("precision", "number"),
                ("recall", "number"),
                ("f1", "number"),
                ("objective", "number"),
                ("compared", "integer"),
                ("median_shift", "duration"),
                ("p10_shift", "duration"),
                ("p90_shift", "duration"),
                ("earlier", "integer"),
                ("later", "integer"),
                ("same", "integer"),
                ("mean_weekly", "number"),
                ("max_weekly", "integer"),
                ("quarantined", "integer"),
            ),
            [
                (
                    c.name,
                    c.kind,
                    c.threshold,
                    c.name == result.best,
                    c.handed_off,
                    c.won_handed_off,
                    c.precision,
                    c.recall,
                    c.f1,
                    c.objective,
                    c.compared,
                    c.median_shift,
                    c.shift_percentile(0.1),
                    c.shift_percentile(0.9),
                    c.earlier,
                    c.later,
                    c.same,
                    c.mean_weekly,
                    c.max_weekly,
                    c.quarantined,
                )
                for c in result.candidates
            ],
        ),
        "curve": lambda: table(
            "curve",
            (
                ("kind", "text"),
                ("candidate", "text"),
                ("threshold", "number"),
                ("precision", "number"),
                ("recall", "number"),
                ("handed_off", "integer"),
            ),
            [
                (p.kind, p.name, p.threshold, p.precision, p.recall, p.handed_off)
                for p in result.curve
            ],
        ),
        "weekly": lambda: table(
            "weekly",
            (("candidate", "text"), ("week", "text"), ("handoffs", "integer")),
            [(c.name, week, n) for c in result.candidates for week, n in c.weekly],
        ),
        "handoffs": lambda: table(
            "handoffs",
            (("candidate", "text"), ("lead_id", "text"), ("at", "time")),
            [
                (c.name, lead, at)
                for c in result.candidates
                for lead, at in sorted(c.handoffs.items())
            ],
        ),
    }
