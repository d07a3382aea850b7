"""Replay and the funnel report on Dask: the ``dask`` extra.

:func:`replay` replays a Dask DataFrame of touches through a
:class:`~buyerjourney.Pipeline` into Dask DataFrames of journeys and log
records, identical to one engine fed the whole stream in time order and
advanced to ``until``. It shuffles the touches on the lead (every lead's
touches in one partition), sorts each partition by lead and time and runs
:func:`buyerjourney.bulk.replay_partition` on it with ``map_partitions``.

:func:`funnel_report` computes :func:`buyerjourney.analytics.funnel_report`
from a records DataFrame: per-lead facts in ``map_partitions`` after a
shuffle on the lead; counts, exits and histograms as Dask aggregates; and
the order statistics of the durations (medians, percentiles, extremes),
exact, selected on the cluster. Dask's ``quantile`` is approximate, so the
selection narrows each rank the report needs to a value range: the
histogram's buckets (with their count, smallest and largest duration) place
it in a first range; a range of more than 1,024 (``_FETCH_AT_MOST``) durations
is split into 1,024 (``_SUB_BUCKETS``) equal value ranges, counted in
``map_partitions`` and summed on the cluster, and the range holding the
rank is kept; a rank at an end of its range, or in a range of one value,
is known; the durations of a small enough range are fetched and sorted on
the client. What reaches the client is bounded by the number of ranges
(a few thousand rows per round, a few rounds) plus at most
``_FETCH_AT_MOST`` durations per needed rank, whatever the number of
leads.

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

_SUB_BUCKETS = 1024
"""How many value ranges one refinement round splits a rank's range into."""

_FETCH_AT_MOST = 1024
"""A rank's range holding at most this many durations is fetched and sorted on the client."""

_METRIC_INDEX = {metric: i for i, metric in enumerate(DURATION_METRICS)}
_STATS = {"n": "int64", "low": "int64", "high": "int64"}


def _facts_partition(frame: Any, options: Any) -> Any:
    frame = frame.sort_values(["lead_id", "lead_seq"], kind="stable")
    return lead_facts(options, frame)


def _lead_count(frame: Any) -> int:
    return int(frame["lead_id"].nunique())


def _durations(frame: Any) -> dict[tuple[int, int], Any]:
    """The durations of a partition of facts, per ``(step, metric index)``, as int64 arrays."""
    import numpy as np  # noqa: PLC0415

    out: dict[tuple[int, int], Any] = {}
    if not len(frame):
        return out
    steps = frame["step"].to_numpy(np.int64, na_value=-1)
    for metric, index in _METRIC_INDEX.items():
        column = frame[metric]
        present = column.notna().to_numpy(bool)
        values = column[present].to_numpy(np.int64)
        chosen = steps[present]
        for step in np.unique(chosen).tolist():
            out[(int(step), index)] = values[chosen == step]
    return out


def _stats_frame(pd: Any, head: dict[str, int], name: str, groups: Any, values: Any) -> Any:
    """Count, min and max of *values* per value of *groups* (column *name*), after *head*."""
    import numpy as np  # noqa: PLC0415

    order = np.lexsort((values, groups))
    groups, values = groups[order], values[order]
    keys, first, counts = np.unique(groups, return_index=True, return_counts=True)
    frame = pd.DataFrame({name: keys.astype(np.int64)})
    for column, value in reversed(head.items()):
        frame.insert(0, column, np.int64(value))
    frame["n"] = counts.astype(np.int64)
    frame["low"] = values[first]
    frame["high"] = values[first + counts - 1]
    return frame


def _histogram_partition(frame: Any, bounds: Sequence[int]) -> Any:
    """Per ``(step, metric, bucket)`` of the analytics' histogram: count, min and max."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    columns = ("step", "metric", "bucket")
    parts = []
    edges = np.asarray(bounds, np.int64)
    for (step, metric), values in _durations(frame).items():
        buckets = np.searchsorted(edges, values, side="right")
        head = {"step": step, "metric": metric}
        parts.append(_stats_frame(pd, head, "bucket", buckets, values))
    if not parts:
        return _empty(pd, columns)
    return pd.concat(parts, ignore_index=True)


def _refine_partition(frame: Any, plan: Sequence[tuple[int, int, int, int, int, int]]) -> Any:
    """Count, min and max per sub-range of each range ``(key, step, metric, low, high, width)``."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    columns = ("key", "sub")
    durations = _durations(frame)
    parts = []
    for key, step, metric, low, high, width in plan:
        values = durations.get((step, metric))
        if values is None:
            continue
        inside = values[(values >= low) & (values <= high)]
        if inside.shape[0]:
            # offsets from low fit in 64 unsigned bits even when the span does not in signed
            offsets = inside.astype(np.int64).view(np.uint64) - np.uint64(low % 2**64)
            subs = (offsets // np.uint64(width)).astype(np.int64)
            parts.append(_stats_frame(pd, {"key": key}, "sub", subs, inside))
    if not parts:
        return _empty(pd, columns)
    return pd.concat(parts, ignore_index=True)


def _values_partition(frame: Any, plan: Sequence[tuple[int, int, int, int, int]]) -> Any:
    """The durations inside each range of *plan* ``(key, step, metric, low, high)``."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    durations = _durations(frame)
    keys, values = [], []
    for key, step, metric, low, high in plan:
        found = durations.get((step, metric))
        if found is None:
            continue
        inside = found[(found >= low) & (found <= high)]
        keys.append(np.full(inside.shape[0], key, np.int64))
        values.append(inside)
    if not keys:
        return pd.DataFrame({"key": pd.Series(dtype="int64"), "value": pd.Series(dtype="int64")})
    return pd.DataFrame({"key": np.concatenate(keys), "value": np.concatenate(values)})


def _empty(pd: Any, columns: Sequence[str]) -> Any:
    return pd.DataFrame({name: pd.Series(dtype="int64") for name in (*columns, *_STATS)})


def _summed(parts: Any, columns: Sequence[str]) -> Any:
    """Sum the per-partition statistics on the cluster: one row per group reaches the client."""
    # split_out=1: a tree reduction (a groupby on several keys would shuffle by default)
    return parts.groupby(list(columns)).agg({"n": "sum", "low": "min", "high": "max"}, split_out=1)


def _rows(frame: Any, columns: Sequence[str]) -> list[tuple[int, ...]]:
    """The rows of a computed :func:`_summed` frame, as ints, in the order of its groups."""
    flat = frame.sort_index().reset_index()
    names = [*columns, *_STATS]
    return list(zip(*(flat[name].astype("int64").tolist() for name in names), strict=True))


def _client_values(frame: Any) -> dict[int, list[int]]:
    """The durations fetched per range key, sorted: the only durations the client receives."""
    import numpy as np  # noqa: PLC0415

    keys = frame["key"].to_numpy(np.int64)
    values = frame["value"].to_numpy(np.int64)
    order = np.lexsort((values, keys))
    keys, values = keys[order], values[order]
    out: dict[int, list[int]] = {}
    for key in np.unique(keys).tolist():
        out[int(key)] = values[keys == key].tolist()
    return out


@attrs.frozen
class _Range:
    """The durations of one ``(step, metric)`` between *low* and *high* (inclusive, both present).

    *below* durations of the distribution are smaller than *low*; *count* lie in the range.
    """

    step: int
    metric: int
    low: int
    high: int
    below: int
    count: int


def _locate(
    rng: _Range, stats: Sequence[tuple[int, int, int, int]], ranks: Sequence[int]
) -> dict[_Range, list[int]]:
    """Place each rank in the sub-range of *stats* ``(order, n, low, high)`` that holds it."""
    placed: dict[_Range, list[int]] = {}
    below = rng.below
    position = 0
    for rank in sorted(ranks):
        while True:
            _, n, low, high = stats[position]
            if rank < below + n:
                sub = _Range(rng.step, rng.metric, low, high, below, n)
                placed.setdefault(sub, []).append(rank)
                break
            below += n
            position += 1
    return placed


def _select(
    dask: Any,
    facts: Any,
    pending: dict[_Range, list[int]],
    values: dict[tuple[int, str, int], int],
) -> None:
    """Narrow each pending rank's range on the cluster until its value is known.

    A rank at either end of its range, or in a range of one value, is known.
    A range of at most ``_FETCH_AT_MOST`` durations is fetched (through
    :func:`_client_values`); a larger one is split into ``_SUB_BUCKETS``
    equal value ranges, counted per partition and summed on the cluster.
    Each round divides a range's width by ``_SUB_BUCKETS`` at least, so
    durations of int64 microseconds need a few rounds.
    """
    import pandas as pd  # noqa: PLC0415

    while pending:
        fetch: dict[_Range, list[int]] = {}
        refine: dict[_Range, list[int]] = {}
        for rng, ranks in pending.items():
            name = DURATION_METRICS[rng.metric]
            left = []
            for rank in ranks:
                if rng.low == rng.high or rank == rng.below:
                    values[(rng.step, name, rank)] = rng.low
                elif rank == rng.below + rng.count - 1:
                    values[(rng.step, name, rank)] = rng.high
                else:
                    left.append(rank)
            if left:
                (fetch if rng.count <= _FETCH_AT_MOST else refine)[rng] = left
        if not fetch and not refine:
            return
        fetched, refined = list(fetch), list(refine)
        widths = [-(-(r.high - r.low + 1) // _SUB_BUCKETS) for r in refined]
        values_plan = [(k, r.step, r.metric, r.low, r.high) for k, r in enumerate(fetched)]
        refine_plan = [
            (k, r.step, r.metric, r.low, r.high, w)
            for k, (r, w) in enumerate(zip(refined, widths, strict=True))
        ]
        value_meta = pd.DataFrame(
            {"key": pd.Series(dtype="int64"), "value": pd.Series(dtype="int64")}
        )
        got_values, got_stats = dask.compute(
            facts.map_partitions(_values_partition, values_plan, meta=value_meta)
            if values_plan
            else value_meta,
            _summed(
                facts.map_partitions(
                    _refine_partition, refine_plan, meta=_empty(pd, ("key", "sub"))
                ),
                ("key", "sub"),
            )
            if refine_plan
            else _empty(pd, ("key", "sub")).set_index(["key", "sub"]),
        )
        by_key = _client_values(got_values) if values_plan else {}
        for key, rng in enumerate(fetched):
            chosen = by_key[key]
            for rank in fetch[rng]:
                values[(rng.step, DURATION_METRICS[rng.metric], rank)] = chosen[rank - rng.below]
        stats: dict[int, list[tuple[int, int, int, int]]] = {}
        for key, sub, n, low, high in _rows(got_stats, ("key", "sub")):
            stats.setdefault(key, []).append((sub, n, low, high))
        pending = {}
        for key, rng in enumerate(refined):
            for narrower, ranks in _locate(rng, stats[key], refine[rng]).items():
                pending.setdefault(narrower, []).extend(ranks)


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
    records (``to_dict()`` is the same dict). Counts, exits, histograms and
    the durations' order statistics are computed on the cluster; the client
    receives aggregates and the durations of a few narrow value ranges, not
    every duration (see the module documentation).

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
    # one shuffle: every lead's entries in one partition, for its facts and the count of leads
    shuffled = entries.shuffle(on="lead_id").persist()
    facts = shuffled.map_partitions(
        _facts_partition, options, meta=meta, align_dataframes=False
    ).persist()
    journeys_n, counts_frame, branch_frame, histogram_frame = dask.compute(
        shuffled.map_partitions(_lead_count, meta=(None, "int64")).sum(),
        facts.groupby("step").agg({"lead_id": "count", "exited": "sum"}),
        facts[facts["next_stage"].notnull()]
        .groupby(["step", "next_stage"])
        .agg({"lead_id": "count", "converted": "sum"}, split_out=1),
        _histogram(pd, facts, options.histogram_bounds),
    )
    counts = {
        int(step): (int(row["lead_id"]), int(row["exited"]))
        for step, row in counts_frame.iterrows()
    }
    branches = [
        (int(step), str(stage), int(row["lead_id"]), int(row["converted"]))
        for (step, stage), row in branch_frame.iterrows()
    ]
    del shuffled  # released on the cluster
    sizes, values, histogram = _order_statistics(dask, facts, histogram_frame)
    return assemble_report(
        options,
        journeys=int(journeys_n),
        counts=counts,
        branches=branches,
        sizes=sizes,
        values=values,
        histogram=histogram,
    )


def _histogram(pd: Any, facts: Any, bounds: Sequence[int]) -> Any:
    """Count, min and max per ``(step, metric, bucket)`` of the histogram, summed on the cluster."""
    columns = ("step", "metric", "bucket")
    per_partition = facts.map_partitions(
        _histogram_partition, list(bounds), meta=_empty(pd, columns)
    )
    return _summed(per_partition, columns)


def _order_statistics(
    dask: Any, facts: Any, histogram_frame: Any
) -> tuple[
    dict[tuple[int, str], int], dict[tuple[int, str, int], int], dict[tuple[int, str, int], int]
]:
    """The sizes, needed order statistics and histograms of the facts' durations.

    Args:
        dask: The ``dask`` module.
        facts: A Dask DataFrame of :data:`~buyerjourney.bulk._funnel.FACT_COLUMNS`
            (at least ``step`` and the duration columns, nullable int64).
        histogram_frame: The computed :func:`_histogram` of *facts*.

    Returns:
        The ``sizes``, ``values`` and ``histogram`` of ``assemble_report``.
    """
    per_distribution: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    histogram: dict[tuple[int, str, int], int] = {}
    for step, metric, bucket, n, low, high in _rows(histogram_frame, ("step", "metric", "bucket")):
        per_distribution.setdefault((step, metric), []).append((bucket, n, low, high))
        histogram[(step, DURATION_METRICS[metric], bucket)] = n
    sizes: dict[tuple[int, str], int] = {}
    pending: dict[_Range, list[int]] = {}
    for (step, metric), buckets in per_distribution.items():
        n = sum(count for _, count, _, _ in buckets)
        sizes[(step, DURATION_METRICS[metric])] = n
        whole = _Range(step, metric, buckets[0][2], buckets[-1][3], 0, n)
        for rng, ranks in _locate(whole, buckets, needed_ranks(n)).items():
            pending.setdefault(rng, []).extend(ranks)
    values: dict[tuple[int, str, int], int] = {}
    _select(dask, facts, pending, values)
    return sizes, values, histogram
