"""The funnel report: conversion along a path of stages, computed from the log as of any date.

The definitions follow the domain reference (DOMAIN §5) exactly:

- A **unit** is a lead. Only stage entries count (records whose kind
  :attr:`~buyerjourney.RecordKind.enters_stage`: created, transition,
  override); records dated after the as-of date are ignored.
- **Step 1** is entered at the lead's *first* entry into the path's first
  stage: the **anchor**. The conversion window, if one is set, runs from the
  anchor and is not reset by later entries. The report counts the leads whose
  anchor falls between ``since`` and the as-of date, followed up to the as-of
  date: it is **cohort-based**, and labelled so.
- **Step k is reached**, by order mode:

  * ``ordered``: the lead entered the step-k stage after it reached step
    k-1; other stages may come in between.
  * ``strict``: the step-k stage is the very next stage the lead entered
    after step k-1, with nothing in between. A chain may start at any entry
    into the first stage inside the window (a lead recycled to the start
    may try again); the longest chain counts, the earliest of equals.
  * ``any``: the lead entered every stage of steps 1..k, in any order; step
    k is reached when the last of them was first entered.

  and, with a window, only if it was reached at most ``window`` after the
  anchor. Reaching step k implies reaching step k-1, so **step conversion**
  (units reaching step k ÷ units reaching step k-1) is at most 100 % by
  construction; **drop-off** is 1 - step conversion; **overall conversion**
  is units reaching step k ÷ units entering step 1.
- Each step counts its leads' **visit**: the stage entry at which the step was
  reached (for ``any``, the first entry into the stage). A lead has **exited**
  the step when it entered another stage after that visit, and is in the
  **balance** otherwise, so entered = exited + balance. **Exits** say where
  leads went next (the next step, a later step, an optional stage off the
  path, back, or out of the funnel), and how many of each branch converted.
- **Time in stage** is the length of the completed visits; Marketo's
  **velocity** is this time in stage (the report gives its median).
  **Time to convert** is the time from reaching step k to reaching step k+1.
  Both are reported as medians and percentiles, never means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal, get_args

import attrs

from buyerjourney._analytics._stats import (
    Durations,
    format_duration,
    format_rate,
    iso,
    optional_time,
    rate,
    seconds,
    value_key,
)
from buyerjourney._analytics.frames import (
    Table,
    Tabular,
    breakdown_tables,
    cohort_tables,
    funnel_tables,
)
from buyerjourney._core._values import thaw
from buyerjourney._core.funnel import Funnel
from buyerjourney._core.lifecycle import effective
from buyerjourney._core.records import Record

__all__ = [
    "ATTRIBUTIONS",
    "BRANCH_KINDS",
    "COHORT_BASIS",
    "ORDERS",
    "PERIODS",
    "Attribution",
    "Branch",
    "Breakdown",
    "BreakdownGroup",
    "Cohort",
    "Cohorts",
    "FunnelReport",
    "Order",
    "Period",
    "StepRow",
    "funnel_breakdown",
    "funnel_cohorts",
    "funnel_report",
]

Order = Literal["ordered", "strict", "any"]
"""How the steps of a path must follow each other (see the module documentation)."""

ORDERS: tuple[str, ...] = get_args(Order)
"""The order modes: ``ordered``, ``strict`` and ``any``."""

Attribution = Literal["first", "last"]
"""Which value of a lead property a breakdown uses: the first recorded or the last."""

ATTRIBUTIONS: tuple[str, ...] = get_args(Attribution)
"""The attributions: ``first`` (first touch) and ``last`` (last touch)."""

Period = Literal["week", "month"]
"""The length of a cohort: an ISO week (from Monday, UTC) or a calendar month (UTC)."""

PERIODS: tuple[str, ...] = get_args(Period)
"""The cohort periods: ``week`` and ``month``."""

BRANCH_KINDS: tuple[str, ...] = ("next", "skip", "detour", "back", "exit")
"""Where a lead can go after a step: the *next* step, a later step (*skip*), a stage off
the path (*detour*, such as an optional stage), an earlier stage (*back*, a recycle), or
a lost or disqualified stage (*exit*)."""

COHORT_BASIS = "cohort"
"""The basis of every funnel report: leads that entered step 1 in a period, followed to
the as-of date (as opposed to period-based counts of what happened in a period)."""


# ---------------------------------------------------------------- result types


@attrs.frozen
class Branch:
    """Where leads went right after a step's visit.

    Attributes:
        stage: The stage they entered next.
        kind: One of :data:`BRANCH_KINDS`.
        leads: How many leads went there.
        converted: How many of them reached the next step anyway (in the
            ``ordered`` mode a detour through an optional stage still converts).
    """

    stage: str
    kind: str
    leads: int
    converted: int

    def to_dict(self) -> dict[str, Any]:
        """The branch as a JSON-ready dict."""
        return {
            "stage": self.stage,
            "kind": self.kind,
            "leads": self.leads,
            "converted": self.converted,
        }


def step_dict(row: Any) -> dict[str, Any]:
    """A step row as a JSON-ready dict: the one layout of :meth:`StepRow.to_dict`.

    The distributed report's rows (durations summarised rather than kept)
    use it too, so that both reports' JSON stays the same.
    """
    return {
        "stage": row.stage,
        "entered": row.entered,
        "exited": row.exited,
        "balance": row.balance,
        "converted": row.converted,
        "step_conversion": row.step_conversion,
        "overall_conversion": row.overall_conversion,
        "drop_off": row.drop_off,
        "exits": [b.to_dict() for b in row.exits],
        "velocity_seconds": seconds(row.velocity),
        "time_in_stage": row.time_in_stage.to_dict(),
        "time_to_convert": row.time_to_convert.to_dict(),
        "time_from_start": row.time_from_start.to_dict(),
    }


def report_dict(report: Any) -> dict[str, Any]:
    """A funnel report as a JSON-ready dict: the one layout of :meth:`FunnelReport.to_dict`."""
    return {
        "funnel": report.funnel,
        "basis": report.basis,
        "path": list(report.path),
        "order": report.order,
        "window_seconds": seconds(report.window),
        "as_of": iso(report.as_of),
        "since": iso(report.since),
        "journeys": report.journeys,
        "leads": report.leads,
        "overall_conversion": report.overall_conversion,
        "steps": [row.to_dict() for row in report.steps],
    }


@attrs.frozen
class StepRow:
    """One step of the funnel report.

    Attributes:
        stage: The step's stage.
        entered: Leads that reached the step.
        exited: Of those, leads that entered another stage after the step's visit.
        balance: Of those, leads still in the step's visit (entered - exited).
        converted: Leads that reached the next step (``None`` for the last step).
        step_conversion: Entered ÷ entered of the previous step (``None`` for
            step 1, or when the previous step has no leads).
        overall_conversion: Entered ÷ entered of step 1 (``None`` when step 1
            has no leads).
        drop_off: 1 - step conversion (``None`` where that is undefined).
        exits: Where the exited leads went next, most leads first.
        time_in_stage: Length of the completed visits.
        time_to_convert: From reaching this step to reaching the next one, for
            the leads that converted.
        time_from_start: From the anchor (entry into step 1) to reaching this step.
    """

    stage: str
    entered: int
    exited: int
    balance: int
    converted: int | None
    step_conversion: float | None
    overall_conversion: float | None
    drop_off: float | None
    exits: tuple[Branch, ...]
    time_in_stage: Durations
    time_to_convert: Durations
    time_from_start: Durations

    @property
    def velocity(self) -> timedelta | None:
        """Marketo's velocity: the median time in stage (``None`` without completed visits)."""
        return self.time_in_stage.median

    def to_dict(self) -> dict[str, Any]:
        """The step as a JSON-ready dict (durations in seconds)."""
        return step_dict(self)


@attrs.frozen
class FunnelReport(Tabular):
    """Conversion along a path of stages, from the log, as of a date (cohort-based).

    Attributes:
        funnel: The funnel's name.
        path: The stages of the steps, in order.
        order: The order mode (one of :data:`ORDERS`).
        window: The conversion window, from the entry into step 1 (``None``: none).
        as_of: Records dated after it were ignored (``None``: the whole log).
        since: Only leads that entered step 1 at or after it count (``None``: all).
        journeys: Leads with a stage entry in the log up to the as-of date,
            whether or not they entered step 1.
        steps: One row per step.
        basis: Always ``"cohort"``: leads that entered step 1 between *since*
            and *as_of*, followed to *as_of*.
    """

    TABLES: ClassVar[tuple[str, ...]] = ("steps", "exits", "histograms", "durations")
    """The tables of :meth:`to_pandas` and :meth:`to_arrow`; the first is the default."""

    def _tables(self) -> Mapping[str, Callable[[], Table]]:
        return funnel_tables(self)

    funnel: str
    path: tuple[str, ...]
    order: str
    window: timedelta | None
    as_of: datetime | None
    since: datetime | None
    journeys: int
    steps: tuple[StepRow, ...]
    basis: str = COHORT_BASIS

    @property
    def leads(self) -> int:
        """Leads that entered step 1 (the report's units)."""
        return self.steps[0].entered if self.steps else 0

    @property
    def empty(self) -> bool:
        """Whether no lead entered step 1."""
        return self.leads == 0

    @property
    def overall_conversion(self) -> float | None:
        """Leads reaching the last step ÷ leads entering step 1 (``None`` when empty)."""
        return self.steps[-1].overall_conversion if self.steps else None

    def step(self, stage: str) -> StepRow:
        """The row of the step at *stage*.

        Raises:
            KeyError: No step of the path is at *stage*.
        """
        for row in self.steps:
            if row.stage == stage:
                return row
        msg = f"no step at stage {stage!r}; the path is {' > '.join(self.path)}"
        raise KeyError(msg)

    def describe(self) -> str:
        """One line saying what the report counts (its cohort-based label)."""
        return describe_text(self)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (times in ISO format, durations in seconds)."""
        return report_dict(self)

    def format(self) -> str:
        """The report as plain-text tables."""
        return report_text(self)


def describe_text(report: Any) -> str:
    """One line saying what a funnel report counts: the one text of :meth:`FunnelReport.describe`.

    The columnar and distributed reports (durations summarised) use it too.
    """
    start = f"from {iso(report.since)} " if report.since is not None else ""
    end = f"up to {iso(report.as_of)}" if report.as_of is not None else "up to the end of the log"
    window = _window_text(report.window)
    return (
        f"cohort-based: leads that entered {report.path[0]} {start}{end}, followed to that "
        f"date; order {report.order}, conversion window {window}"
    )


def report_text(report: Any) -> str:
    """A funnel report as plain-text tables: the one layout of :meth:`FunnelReport.format`.

    The columnar and distributed reports (durations summarised) use it too.
    """
    lines = [
        f"funnel {report.funnel}: {' > '.join(report.path)}",
        report.describe(),
        f"{report.leads} leads entered {report.path[0]} ({report.journeys} journeys in the log)",
    ]
    if report.empty:
        lines.append("no data: no lead entered the first step")
        return "\n".join(lines)
    lines += [
        "",
        f"{'step':<16}{'entered':>8}{'exited':>8}{'balance':>9}{'step conv':>11}"
        f"{'overall':>9}{'drop-off':>10}{'velocity':>10}{'to next (median)':>18}",
    ]
    for row in report.steps:
        lines.append(
            f"{row.stage:<16}{row.entered:>8}{row.exited:>8}{row.balance:>9}"
            f"{format_rate(row.step_conversion):>11}{format_rate(row.overall_conversion):>9}"
            f"{format_rate(row.drop_off):>10}{format_duration(row.velocity):>10}"
            f"{format_duration(row.time_to_convert.median):>18}"
        )
    lines += ["", "exits (where leads went after each step):"]
    for row in report.steps:
        for branch in row.exits:
            lines.append(
                f"  {row.stage} -> {branch.stage} ({branch.kind}): {branch.leads}"
                f" ({branch.converted} converted)"
            )
    lines += ["", "times (median, 90th percentile):"]
    for row in report.steps:
        if row.time_in_stage.count:
            lines.append(f"  {row.stage}: in stage {row.time_in_stage.summary()}")
        if row.time_to_convert.count:
            lines.append(f"  {row.stage}: to the next step {row.time_to_convert.summary()}")
    return "\n".join(lines)


def _window_text(window: timedelta | None) -> str:
    if window is None:
        return "none"
    if window and window % timedelta(days=1) == timedelta(0):
        days = window // timedelta(days=1)
        return "1 day" if days == 1 else f"{days} days"
    return format_duration(window)


@attrs.frozen
class BreakdownGroup:
    """The leads of a breakdown that share one value of the property.

    Attributes:
        value: The property's value (``None`` for the missing group).
        missing: Whether this is the group of leads that never had a value for
            the property (a value recorded as ``None`` counts as none).
        report: The funnel report of these leads only.
    """

    value: Any
    missing: bool
    report: FunnelReport

    @property
    def label(self) -> str:
        """The group's name as printed: the value, or ``(missing)``."""
        return "(missing)" if self.missing else str(thaw(self.value))

    def to_dict(self) -> dict[str, Any]:
        """The group as a JSON-ready dict."""
        return {"value": thaw(self.value), "missing": self.missing, "report": self.report.to_dict()}


@attrs.frozen
class Breakdown(Tabular):
    """The funnel report broken down by a lead property.

    Attributes:
        attribute: The lead property (an attribute of the lead's profile).
        attribution: ``"first"``: the first value recorded for the lead;
            ``"last"``: the latest value recorded up to the as-of date.
        total: The report of every lead (the sum of the groups).
        groups: One group per value, most leads first; leads without the
            property form their own group, last, never merged into a value.
    """

    TABLES: ClassVar[tuple[str, ...]] = ("steps", "exits")
    """The tables of :meth:`to_pandas` and :meth:`to_arrow`; the first is the default."""

    def _tables(self) -> Mapping[str, Callable[[], Table]]:
        return breakdown_tables(self)

    attribute: str
    attribution: str
    total: FunnelReport
    groups: tuple[BreakdownGroup, ...]

    def group(self, value: Any = None, *, missing: bool = False) -> BreakdownGroup:
        """The group of *value*, or the missing group with ``missing=True`` or a value of ``None``.

        ``None`` is no value: the leads whose value was recorded as ``None``
        are in the missing group, with those that never had the property.

        Raises:
            KeyError: No lead has that value.
        """
        missing = missing or value is None
        for group in self.groups:
            if group.missing == missing and (missing or group.value == value):
                return group
        msg = "no lead lacks the property" if missing else f"no lead has the value {value!r}"
        raise KeyError(msg)

    def to_dict(self) -> dict[str, Any]:
        """The breakdown as a JSON-ready dict."""
        return {
            "attribute": self.attribute,
            "attribution": self.attribution,
            "basis": self.total.basis,
            "total": self.total.to_dict(),
            "groups": [group.to_dict() for group in self.groups],
        }

    def format(self) -> str:
        """The breakdown as a plain-text table: leads reaching each step, per value."""
        head = (
            f"breakdown by {self.attribute} ({self.attribution}-touch attribution); "
            f"{self.total.describe()}"
        )
        rows = [(g.label, g.report) for g in self.groups] + [("(all)", self.total)]
        return "\n".join([head, "", *_matrix("value", rows, self.total.path)])


@attrs.frozen
class Cohort:
    """The leads that entered step 1 in one period.

    Attributes:
        label: The period's name: ``"2024-W09"`` (ISO week) or ``"2024-03"``.
        start: The period's first instant (UTC).
        end: The instant after the period.
        report: The funnel report of these leads only.
    """

    label: str
    start: datetime
    end: datetime
    report: FunnelReport

    def to_dict(self) -> dict[str, Any]:
        """The cohort as a JSON-ready dict."""
        return {
            "label": self.label,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "report": self.report.to_dict(),
        }


@attrs.frozen
class Cohorts(Tabular):
    """The funnel report per entry period: cohort-based conversion, labelled so.

    Attributes:
        period: ``"week"`` or ``"month"``.
        total: The report of every lead.
        cohorts: One cohort per period with leads, oldest first.
        basis: Always ``"cohort"``.
    """

    TABLES: ClassVar[tuple[str, ...]] = ("steps", "exits")
    """The tables of :meth:`to_pandas` and :meth:`to_arrow`; the first is the default."""

    def _tables(self) -> Mapping[str, Callable[[], Table]]:
        return cohort_tables(self)

    period: str
    total: FunnelReport
    cohorts: tuple[Cohort, ...]
    basis: str = COHORT_BASIS

    def to_dict(self) -> dict[str, Any]:
        """The cohorts as a JSON-ready dict."""
        return {
            "period": self.period,
            "basis": self.basis,
            "total": self.total.to_dict(),
            "cohorts": [cohort.to_dict() for cohort in self.cohorts],
        }

    def format(self) -> str:
        """The cohorts as a plain-text table: leads reaching each step, per period."""
        head = f"cohorts by entry {self.period}; {self.total.describe()}"
        rows = [(c.label, c.report) for c in self.cohorts] + [("(all)", self.total)]
        return "\n".join([head, "", *_matrix(self.period, rows, self.total.path)])


def _matrix(title: str, rows: Sequence[tuple[str, FunnelReport]], path: Sequence[str]) -> list[str]:
    width = max([len(title), *(len(label) for label, _ in rows)]) + 2
    lines = [f"{title:<{width}}" + "".join(f"{s[:11]:>12}" for s in path) + f"{'overall':>10}"]
    for label, report in rows:
        counts = "".join(f"{row.entered:>12}" for row in report.steps)
        lines.append(f"{label:<{width}}{counts}{format_rate(report.overall_conversion):>10}")
    return lines


# ---------------------------------------------------------------- computing

_Entry = tuple[datetime, str]
"""A stage entry of one lead: when, and which stage."""

_MISSING_KEY: tuple[str] = ("missing",)


@attrs.frozen
class _Options:
    path: tuple[str, ...]
    order: str
    window: timedelta | None
    as_of: datetime | None
    since: datetime | None


def _options(
    funnel: Funnel,
    *,
    path: Sequence[str] | None,
    order: str,
    window: timedelta | None,
    as_of: datetime | str | None,
    since: datetime | str | None,
) -> _Options:
    if not isinstance(funnel, Funnel):
        msg = f"'funnel' must be a buyerjourney.Funnel (got {funnel!r})"
        raise TypeError(msg)
    if path is None:
        steps = tuple(s.name for s in funnel.success_path)
    else:
        if isinstance(path, str):
            msg = f"'path' must be a sequence of stage names, not a str; did you mean ({path!r},)?"
            raise TypeError(msg)
        steps = tuple(path)
        for name in steps:
            funnel.stage(name)  # raises UnknownStage, naming the stages it knows
        if not steps:
            msg = "'path' must name at least one stage"
            raise ValueError(msg)
        if len(set(steps)) != len(steps):
            msg = f"'path' names a stage twice: {' > '.join(steps)}"
            raise ValueError(msg)
    if order not in ORDERS:
        msg = f"'order' must be one of {', '.join(ORDERS)} (got {order!r})"
        raise ValueError(msg)
    if window is not None and (not isinstance(window, timedelta) or window < timedelta(0)):
        msg = f"'window' must be a datetime.timedelta of zero or more, or None (got {window!r})"
        raise ValueError(msg)
    return _Options(
        steps, order, window, optional_time(as_of, "as_of"), optional_time(since, "since")
    )


def _entries(records: Iterable[Record], as_of: datetime | None) -> dict[str, list[_Entry]]:
    """Every lead's stage entries up to *as_of*, in log order."""
    entries: dict[str, list[_Entry]] = {}
    for record in effective(records):  # revisions applied
        if as_of is not None and record.at > as_of:
            continue
        if record.kind.enters_stage and record.target is not None:
            entries.setdefault(record.lead_id, []).append((record.at, record.target))
    return entries


def _within(options: _Options, anchor: datetime, at: datetime) -> bool:
    return options.window is None or at - anchor <= options.window


def _match(entries: Sequence[_Entry], options: _Options) -> list[int]:
    """The index of the entry at which each step was reached (a prefix of the path)."""
    steps = options.path
    first = next((i for i, (_, stage) in enumerate(entries) if stage == steps[0]), None)
    if first is None:
        return []
    anchor = entries[first][0]
    if options.order == "ordered":
        reached = [first]
        position = first
        for stage in steps[1:]:
            position = next(
                (
                    i
                    for i in range(position + 1, len(entries))
                    if entries[i][1] == stage and _within(options, anchor, entries[i][0])
                ),
                -1,
            )
            if position < 0:
                break
            reached.append(position)
        return reached
    if options.order == "strict":
        best: list[int] = []
        for start in range(first, len(entries)):
            at, stage = entries[start]
            if stage != steps[0] or not _within(options, anchor, at):
                continue
            run = [start]
            while (
                len(run) < len(steps)
                and run[-1] + 1 < len(entries)
                and entries[run[-1] + 1][1] == steps[len(run)]
                and _within(options, anchor, entries[run[-1] + 1][0])
            ):
                run.append(run[-1] + 1)
            if len(run) > len(best):
                best = run
        return best
    # any order: the first entry into each stage, all of steps 1..k needed for step k
    firsts: dict[str, int] = {}
    for i, (_, stage) in enumerate(entries):
        firsts.setdefault(stage, i)
    reached = [first]
    for stage in steps[1:]:
        index = firsts.get(stage)
        if index is None or not _within(options, anchor, entries[index][0]):
            break
        reached.append(index)
    return reached


def _reach_times(entries: Sequence[_Entry], match: Sequence[int], order: str) -> list[datetime]:
    times = [entries[i][0] for i in match]
    if order == "any":  # step k is reached when the last of steps 1..k was entered
        for k in range(1, len(times)):
            times[k] = max(times[k], times[k - 1])
    return times


def _counted(entries: Mapping[str, list[_Entry]], options: _Options) -> dict[str, list[int]]:
    """The leads the report counts (anchor between since and as-of), with their matches."""
    matches: dict[str, list[int]] = {}
    for lead_id, lead_entries in entries.items():
        match = _match(lead_entries, options)
        if not match:
            continue
        if options.since is not None and _anchor(lead_entries, options) < options.since:
            continue
        matches[lead_id] = match
    return matches


def _anchor(entries: Sequence[_Entry], options: _Options) -> datetime:
    """When the lead first entered step 1 (it did: it has a match)."""
    return next(at for at, stage in entries if stage == options.path[0])


def _branch_kind(funnel: Funnel, steps: tuple[str, ...], k: int, target: str) -> str:
    if k + 1 < len(steps) and target == steps[k + 1]:
        return "next"
    if target in steps[k + 2 :]:
        return "skip"
    if target in funnel:
        stage = funnel.stage(target)
        if stage.kind.is_exit:
            return "exit"
        if stage.rank < funnel.stage(steps[k]).rank:
            return "back"
    return "detour"


def _build(
    funnel: Funnel,
    options: _Options,
    entries: Mapping[str, list[_Entry]],
    matches: Mapping[str, list[int]],
) -> FunnelReport:
    steps = options.path
    times = {
        lead: _reach_times(entries[lead], match, options.order) for lead, match in matches.items()
    }
    anchors = {lead: _anchor(entries[lead], options) for lead in matches}
    entered = [sum(1 for m in matches.values() if len(m) > k) for k in range(len(steps))]
    rows: list[StepRow] = []
    for k, stage in enumerate(steps):
        exited = 0
        branches: dict[str, list[int]] = {}
        in_stage: list[timedelta] = []
        to_next: list[timedelta] = []
        from_start: list[timedelta] = []
        for lead, match in matches.items():
            if len(match) <= k:
                continue
            lead_entries, reach = entries[lead], times[lead]
            converted = len(match) > k + 1
            from_start.append(reach[k] - anchors[lead])
            if converted:
                to_next.append(reach[k + 1] - reach[k])
            visit = match[k]
            if visit + 1 < len(lead_entries):
                exited += 1
                next_at, next_stage = lead_entries[visit + 1]
                in_stage.append(next_at - lead_entries[visit][0])
                counts = branches.setdefault(next_stage, [0, 0])
                counts[0] += 1
                counts[1] += converted
        last = k == len(steps) - 1
        step_conversion = None if k == 0 else rate(entered[k], entered[k - 1])
        rows.append(
            StepRow(
                stage=stage,
                entered=entered[k],
                exited=exited,
                balance=entered[k] - exited,
                converted=None if last else entered[k + 1],
                step_conversion=step_conversion,
                overall_conversion=rate(entered[k], entered[0]),
                drop_off=None if step_conversion is None else 1 - step_conversion,
                exits=tuple(
                    Branch(name, _branch_kind(funnel, steps, k, name), n, converted)
                    for name, (n, converted) in sorted(
                        branches.items(), key=lambda item: (-item[1][0], item[0])
                    )
                ),
                time_in_stage=Durations(in_stage),
                time_to_convert=Durations(to_next),
                time_from_start=Durations(from_start),
            )
        )
    return FunnelReport(
        funnel=funnel.name,
        path=steps,
        order=options.order,
        window=options.window,
        as_of=options.as_of,
        since=options.since,
        journeys=len(entries),
        steps=tuple(rows),
    )


def funnel_report(
    funnel: Funnel,
    records: Iterable[Record],
    *,
    path: Sequence[str] | None = None,
    order: Order = "ordered",
    window: timedelta | None = None,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> FunnelReport:
    """Compute the funnel report of a log (see the module documentation for the definitions).

    Args:
        funnel: The funnel the log follows.
        records: The log, in log order (records dated after *as_of* are ignored).
        path: The stages of the steps; by default the funnel's success path.
            Optional stages left out of the path show as detours.
        order: ``"ordered"`` (the default), ``"strict"`` or ``"any"``.
        window: The conversion window from the entry into step 1 (``None``: none).
        as_of: Compute the report as of this date: an aware datetime or an
            ISO-8601 string with an offset (``None``: the whole log).
        since: Count only leads that entered step 1 at or after this date.

    Returns:
        The report; empty (zero leads, no rates) when nothing falls in the
        dates given, never an error.

    Raises:
        UnknownStage: The path names a stage the funnel does not have.
        ValueError: The path is empty or names a stage twice, or the order or
            window is invalid.
        InvalidTouch: *as_of* or *since* is not an aware time.
    """
    options = _options(funnel, path=path, order=order, window=window, as_of=as_of, since=since)
    entries = _entries(records, options.as_of)
    return _build(funnel, options, entries, _counted(entries, options))


def _attribute_values(
    records: Iterable[Record], attribute: str, attribution: str, as_of: datetime | None
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for record in effective(records):  # revisions applied
        if as_of is not None and record.at > as_of:
            continue
        learned = record.data.get("attributes")
        if not isinstance(learned, Mapping) or learned.get(attribute) is None:
            continue  # absent, or recorded as None: no value either way
        if attribution == "last" or record.lead_id not in values:
            values[record.lead_id] = learned[attribute]
    return values


def funnel_breakdown(
    funnel: Funnel,
    records: Iterable[Record],
    attribute: str,
    *,
    attribution: Attribution = "first",
    path: Sequence[str] | None = None,
    order: Order = "ordered",
    window: timedelta | None = None,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> Breakdown:
    """The funnel report broken down by a lead property.

    The property is read from the lead attributes the log records (those of
    CREATED and SCORED records). Leads that never had a value for it form
    their own group, never merged into a value such as ``"unknown"``; a value
    recorded as ``None`` counts as no value (that lead is in the missing group
    unless another record gives it a real value).

    Args:
        funnel: The funnel the log follows.
        records: The log, in log order.
        attribute: The lead property to break down by (``"segment"``).
        attribution: ``"first"`` (first touch: the first value recorded) or
            ``"last"`` (last touch: the latest value up to *as_of*).
        path: As :func:`funnel_report`.
        order: As :func:`funnel_report`.
        window: As :func:`funnel_report`.
        as_of: As :func:`funnel_report`.
        since: As :func:`funnel_report`.

    Returns:
        The breakdown: one report per value, and the total.

    Raises:
        ValueError: The attribution is neither ``"first"`` nor ``"last"``, or
            an option of :func:`funnel_report` is invalid.
    """
    if attribution not in ATTRIBUTIONS:
        msg = f"'attribution' must be one of {', '.join(ATTRIBUTIONS)} (got {attribution!r})"
        raise ValueError(msg)
    options = _options(funnel, path=path, order=order, window=window, as_of=as_of, since=since)
    records = tuple(records)
    entries = _entries(records, options.as_of)
    matches = _counted(entries, options)
    values = _attribute_values(records, attribute, attribution, options.as_of)
    grouped: dict[tuple[Any, ...], tuple[Any, dict[str, list[int]]]] = {}
    for lead, match in matches.items():
        if lead in values:
            value = values[lead]
            key = value_key(value)
        else:
            value, key = None, _MISSING_KEY
        grouped.setdefault(key, (value, {}))[1][lead] = match
    groups = [
        BreakdownGroup(value, key == _MISSING_KEY, _build(funnel, options, entries, members))
        for key, (value, members) in grouped.items()
    ]
    groups.sort(key=lambda g: (g.missing, -g.report.leads, g.label))
    return Breakdown(
        attribute=attribute,
        attribution=attribution,
        total=_build(funnel, options, entries, matches),
        groups=tuple(groups),
    )


def _period_of(at: datetime, period: str) -> tuple[str, datetime, datetime]:
    day = at.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}", start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return f"{start.year}-{start.month:02d}", start, end


def funnel_cohorts(
    funnel: Funnel,
    records: Iterable[Record],
    *,
    period: Period = "week",
    path: Sequence[str] | None = None,
    order: Order = "ordered",
    window: timedelta | None = None,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> Cohorts:
    """The funnel report per cohort: leads grouped by when they entered step 1.

    Each cohort is followed up to the as-of date, so a recent cohort has had
    less time to convert than an old one: this is cohort-based conversion,
    not the conversion of what happened during each period.

    Args:
        funnel: The funnel the log follows.
        records: The log, in log order.
        period: ``"week"`` (ISO weeks from Monday, UTC) or ``"month"`` (UTC).
        path: As :func:`funnel_report`.
        order: As :func:`funnel_report`.
        window: As :func:`funnel_report`.
        as_of: As :func:`funnel_report`.
        since: As :func:`funnel_report`.

    Returns:
        The cohorts, oldest first, and the total.

    Raises:
        ValueError: The period is neither ``"week"`` nor ``"month"``, or an
            option of :func:`funnel_report` is invalid.
    """
    if period not in PERIODS:
        msg = f"'period' must be one of {', '.join(PERIODS)} (got {period!r})"
        raise ValueError(msg)
    options = _options(funnel, path=path, order=order, window=window, as_of=as_of, since=since)
    entries = _entries(records, options.as_of)
    matches = _counted(entries, options)
    grouped: dict[str, tuple[datetime, datetime, dict[str, list[int]]]] = {}
    for lead, match in matches.items():
        label, start, end = _period_of(_anchor(entries[lead], options), period)
        grouped.setdefault(label, (start, end, {}))[2][lead] = match
    cohorts = sorted(
        (
            Cohort(label, start, end, _build(funnel, options, entries, members))
            for label, (start, end, members) in grouped.items()
        ),
        key=lambda c: c.start,
    )
    return Cohorts(
        period=period, total=_build(funnel, options, entries, matches), cohorts=tuple(cohorts)
    )
