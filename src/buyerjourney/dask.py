"""Replay and the funnel report on Dask: the ``dask`` extra.

:func:`replay` replays a Dask DataFrame of touches through a
:class:`~buyerjourney.Pipeline` into Dask DataFrames of journeys and log
records, identical to one engine fed the whole stream in time order and
advanced to ``until``. It shuffles the touches on the lead (every lead's
touches in one partition), sorts each partition by lead and time and runs
:func:`buyerjourney.bulk.replay_partition` on it with ``map_partitions``.

:func:`funnel_report` computes :func:`buyerjourney.analytics.funnel_report`
from a records DataFrame: per-lead facts in ``map_partitions`` after a
shuffle on the lead, counts, exits and histograms as Dask aggregates. The
order statistics of the durations (medians, percentiles, extremes) are
selected on the client from the durations alone (8 bytes per lead and
step reached): Dask has no exact distributed quantile (its
``quantile`` is approximate), and a distributed selection would cost a
global sort.

Install with ``pip install "buyerjourney[dask]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from buyerjourney._pipeline import Pipeline
from buyerjourney.bulk._batch import (
    JOURNEY_FRAME_COLUMNS,
    RECORD_FRAME_COLUMNS,
    TOUCH_FIELDS,
    InvalidBatch,
    carry_error,
    raised_error,
    replay_partition,
)
from buyerjourney.bulk._funnel import (
    DURATION_METRICS,
    FACT_COLUMNS,
    DistributedFunnelReport,
    assemble_report,
    entry_kinds,
    lead_facts,
    needed_ranks,
    report_options,
)
from buyerjourney.bulk._replay import Mode
from buyerjourney.errors import BuyerJourneyError, InvalidAction, MissingExtra

__all__ = ["DaskReplay", "funnel_report", "replay"]

_FEATURE = "buyerjourney.dask"


def _dask() -> tuple[Any, Any]:
    """``(dask, pandas)``, or MissingExtra for the ``dask`` extra."""
    try:
        import dask  # noqa: PLC0415  (optional dependency)
        import dask.dataframe  # noqa: PLC0415
        import pandas  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError as exc:
        raise MissingExtra(_FEATURE, "dask", f"({exc})") from None
    return dask, pandas


class _Carried(RuntimeError):
    """A library error raised in a worker, as text that pickles (see ``carry_error``)."""


def _meta(pd: Any, columns: Mapping[str, str]) -> Any:
    dtypes = {}
    for name, description in columns.items():
        kind = description.split(":", 1)[0].split()[0]
        dtypes[name] = {"float64": "float64", "int64": "int64", "bool": "bool"}.get(kind, object)
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})


def _combined_meta(pd: Any) -> Any:
    columns = {"part": "str"}
    for table in (JOURNEY_FRAME_COLUMNS, RECORD_FRAME_COLUMNS):
        for name, description in table.items():
            columns.setdefault(name, description)
    # int and bool columns of one part are missing (NaN) in the other's rows
    meta = _meta(pd, columns)
    return meta.astype(dict.fromkeys(_SHARED_NULLABLE, "float64"))


_SHARED_NULLABLE = ("version", "created", "updated", "entered", "lead_seq", "at")
_BOOLS = ("pending", "escalated")


@attrs.frozen(eq=False)
class DaskReplay:
    """What :func:`replay` produced (persisted Dask DataFrames).

    Attributes:
        journeys: One row per lead, the columns of
            :data:`buyerjourney.bulk.JOURNEY_FRAME_COLUMNS`.
        records: One row per record, the columns of
            :data:`buyerjourney.bulk.RECORD_FRAME_COLUMNS`.
    """

    journeys: Any
    records: Any


def _run_partition(  # noqa: PLR0917  (map_partitions passes its arguments positionally)
    frame: Any,
    pipeline: Pipeline,
    until: datetime,
    touches_per_call: int,
    mode: Mode,
    names: Sequence[str],
    keys: Sequence[str],
) -> Any:
    """Replay one partition of whole leads (sorted here by lead and time)."""
    import pandas as pd  # noqa: PLC0415

    frame = frame.sort_values(list(keys), kind="stable").reset_index(drop=True)
    chunks = [frame.iloc[i : i + touches_per_call] for i in range(0, len(frame), touches_per_call)]
    parts = []
    try:
        for result in replay_partition(
            pipeline, chunks, until=until, touches_per_call=touches_per_call, mode=mode
        ):
            for part, table in (("journey", result.journeys), ("record", result.records)):
                labelled = table.copy()
                labelled.insert(0, "part", part)
                parts.append(labelled.reindex(columns=names))
    except BuyerJourneyError as exc:
        raise _Carried(carry_error(exc)) from None
    meta = _combined_meta(pd)
    if not parts:
        return meta
    out = pd.concat(parts, ignore_index=True)
    return out.astype(dict.fromkeys(_SHARED_NULLABLE, "float64")).astype(
        dict.fromkeys(_BOOLS, object)
    )


def replay(
    pipeline: Pipeline,
    ddf: Any,
    *,
    until: datetime,
    columns: Mapping[str, str] | None = None,
    partitions: int | None = None,
    touches_per_call: int = 200_000,
    mode: Mode = "auto",
) -> DaskReplay:
    """Replay a Dask DataFrame of touches into Dask DataFrames of journeys and records.

    The replay runs when this is called (the result is persisted on the
    cluster), so errors surface here, typed, as on one machine.

    Args:
        pipeline: The pipeline (sent to the workers; its hooks must pickle).
        ddf: The touches (the columns of :data:`buyerjourney.bulk.TOUCH_FIELDS`;
            ``at`` a timestamp or int64 microseconds since 1970 UTC).
        until: The clock at the end: every SLA deadline up to it escalates.
        columns: The DataFrame's column for each field named otherwise.
        partitions: How many partitions to shuffle into (default: as many as *ddf* has).
        touches_per_call: About how many touches one call of the bulk replay gets.
        mode: As for :func:`buyerjourney.bulk.replay`.

    Returns:
        The journeys and records.

    Raises:
        MissingExtra: Dask is not installed.
        InvalidBatch: A column is missing or holds a bad value.
        InvalidAction: *until* is not an aware time, or is before a touch.
        HookError: A hook failed on a touch.
    """
    dask, pd = _dask()
    if not isinstance(until, datetime) or until.utcoffset() is None:
        raise InvalidAction("replay", "until", until, "a timezone-aware datetime")
    touches = _touches(ddf, columns)
    keys = ["lead_id", "at", *(["order"] if "order" in touches.columns else []), "touch_id"]
    shuffled = touches.shuffle(on="lead_id", npartitions=partitions or touches.npartitions)
    meta = _combined_meta(pd)
    names = list(meta.columns)
    combined = shuffled.map_partitions(
        _run_partition,
        pipeline,
        until,
        touches_per_call,
        mode,
        names,
        keys,
        meta=meta,
        align_dataframes=False,
    )
    try:
        combined = combined.persist()
        dask.compute(combined.map_partitions(len, meta=(None, "int64")).sum())
    except _Carried as exc:
        error = raised_error(str(exc))
        if error is not None:
            raise error from None
        raise
    journeys = combined[combined["part"] == "journey"][list(JOURNEY_FRAME_COLUMNS)]
    journeys = journeys.astype(
        dict.fromkeys(("version", "created", "updated", "entered"), "int64")
    ).astype(dict.fromkeys(_BOOLS, bool))
    records = combined[combined["part"] == "record"][list(RECORD_FRAME_COLUMNS)]
    records = records.astype({"lead_seq": "int64", "at": "int64"})
    return DaskReplay(journeys, records)


def _touches(ddf: Any, columns: Mapping[str, str] | None) -> Any:
    """The touch fields of *ddf*, renamed (``at`` is converted by the batch replay)."""
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(TOUCH_FIELDS))
    if unknown:
        msg = (
            f"columns maps {unknown[0]!r}, which is not a touch field; the fields are "
            f"{', '.join(TOUCH_FIELDS)}"
        )
        raise InvalidBatch(msg)
    rename = {}
    for field in TOUCH_FIELDS:
        name = mapping.get(field, field)
        if name not in ddf.columns:
            if field in ("order", "properties", "attributes"):
                continue
            msg = (
                f"the touch DataFrame has no column {name!r} for {field!r} (it has "
                f"{', '.join(map(str, ddf.columns))}); name it in columns={{{field!r}: ...}}"
            )
            raise InvalidBatch(msg)
        rename[name] = field
    return ddf[list(rename)].rename(columns=rename)


# ---------------------------------------------------------------- the funnel report


def _facts_partition(frame: Any, options: Any) -> Any:
    frame = frame.sort_values(["lead_id", "lead_seq"], kind="stable")
    return lead_facts(options, frame)


def funnel_report(
    records: Any,
    funnel: Any,
    *,
    path: Sequence[str] | None = None,
    order: str = "ordered",
    window: timedelta | None = None,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> DistributedFunnelReport:
    """The funnel report of a records DataFrame, computed with Dask.

    Equal to :func:`buyerjourney.analytics.funnel_report` on the same
    records (``to_dict()`` is the same dict). Counts, exits and histograms
    are Dask aggregates; the durations' order statistics are selected on the
    client (see the module documentation).

    Args:
        records: A records DataFrame (the ``records`` of :func:`replay`, or
            any with ``lead_id``, ``lead_seq``, ``at`` in int64 microseconds,
            ``kind`` and ``target``).
        funnel: The funnel the log follows.
        path: As for :func:`buyerjourney.analytics.funnel_report`.
        order: As for :func:`buyerjourney.analytics.funnel_report`.
        window: As for :func:`buyerjourney.analytics.funnel_report`.
        as_of: As for :func:`buyerjourney.analytics.funnel_report`.
        since: As for :func:`buyerjourney.analytics.funnel_report`.

    Returns:
        The report.

    Raises:
        MissingExtra: Dask is not installed.
        UnknownStage: The path names a stage the funnel does not have.
        ValueError: The path, order or window is invalid.
        InvalidTouch: *as_of* or *since* is not an aware time.
    """
    dask, pd = _dask()
    import numpy as np  # noqa: PLC0415  (a dependency of the dask extra)

    options = report_options(
        funnel, path=path, order=order, window=window, as_of=as_of, since=since
    )
    entries = records[records["kind"].isin(entry_kinds()) & records["target"].notnull()]
    if options.as_of_micros is not None:
        entries = entries[entries["at"] <= options.as_of_micros]
    entries = entries[["lead_id", "lead_seq", "at", "target"]]
    meta = _meta(pd, FACT_COLUMNS).astype(
        {"step": "Int64", **dict.fromkeys(DURATION_METRICS, "Int64")}
    )
    facts = (
        entries.shuffle(on="lead_id")
        .map_partitions(_facts_partition, options, meta=meta, align_dataframes=False)
        .persist()
    )
    journeys_n, counts_frame, branch_frame, *durations = dask.compute(
        entries["lead_id"].nunique(),
        facts.groupby("step").agg({"lead_id": "count", "exited": "sum"}),
        facts[facts["next_stage"].notnull()]
        .groupby(["step", "next_stage"])
        .agg({"lead_id": "count", "converted": "sum"}),
        *(facts[["step", metric]].dropna() for metric in DURATION_METRICS),
    )
    counts = {
        int(step): (int(row["lead_id"]), int(row["exited"]))
        for step, row in counts_frame.iterrows()
    }
    branches = [
        (int(step), str(stage), int(row["lead_id"]), int(row["converted"]))
        for (step, stage), row in branch_frame.iterrows()
    ]
    sizes: dict[tuple[int, str], int] = {}
    values: dict[tuple[int, str, int], int] = {}
    histogram: dict[tuple[int, str, int], int] = {}
    bounds = np.asarray(options.histogram_bounds, np.int64)
    for metric, frame in zip(DURATION_METRICS, durations, strict=True):
        steps = frame["step"].to_numpy(np.int64)
        data = frame[metric].to_numpy(np.int64)
        for step in np.unique(steps).tolist():
            chosen = np.sort(data[steps == step])
            n = int(chosen.shape[0])
            sizes[(step, metric)] = n
            for rank in needed_ranks(n):
                values[(step, metric, rank)] = int(chosen[rank])
            buckets = np.searchsorted(bounds, chosen, side="right")
            for bucket, count in zip(*np.unique(buckets, return_counts=True), strict=True):
                histogram[(step, metric, int(bucket))] = int(count)
    return assemble_report(
        options,
        journeys=int(journeys_n),
        counts=counts,
        branches=branches,
        sizes=sizes,
        values=values,
        histogram=histogram,
    )
