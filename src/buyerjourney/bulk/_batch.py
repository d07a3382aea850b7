"""The batch entry point: whole leads in, journeys and log records out, as named columns.

:func:`replay_batch` is what a distributed run (Spark, Dask, or a loop of
one's own over files) calls once per batch of *whole leads*: it takes a
table of touches (a pandas DataFrame, a pyarrow Table or a mapping of
columns), replays it with :func:`~buyerjourney.bulk.replay` up to an
explicit clock ``until``, and returns two pandas DataFrames whose columns
carry names, not codes (:data:`JOURNEY_FRAME_COLUMNS`,
:data:`RECORD_FRAME_COLUMNS`). It never quarantines: anything the engine
would set aside (touches out of time order, a repeated touch id, a hook that
fails) raises a typed error instead, so a run on the wrong input fails loudly.

:func:`replay_partition` takes the batches of one partition *grouped by
lead* (Spark's ``mapInPandas`` over a partition sorted by lead, say), holds
back the last lead of each batch until the next batch shows whether it
continues, sorts each group of whole leads by time, and calls
:func:`replay_batch`; a lead that comes back after another lead raises
:class:`LeadNotWhole`.

What is equal. For any partitioning of the leads into batches, every batch
replayed with the same ``until`` (the stream's end, or later), the
concatenated frames equal :func:`journeys_frame` and :func:`records_frame`
of one engine fed the whole stream in time order and advanced to
``until``: the same journeys, and for every lead the same records in the
same order (``lead_seq``, the position in the lead's own log, and every
field). The engine's global ``seq`` is not a column: it interleaves leads
by time, and among records of different leads at the same microsecond by
the stream's order, which a partitioned table does not have. Sorting the
records by ``(at, lead_id, lead_seq)`` gives one deterministic time order
of the whole log, which is the engine's seq order whenever no two leads
have records at the same microsecond.

pandas is the ``frames`` extra (the ``spark`` and ``dask`` extras include it).
"""

from __future__ import annotations

import base64
import importlib
import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from buyerjourney._core.journey import Journey
from buyerjourney._core.records import SYSTEM, Record, RecordKind
from buyerjourney._pipeline import Pipeline
from buyerjourney.bulk._columnar import ColumnarLog, numpy_or_raise
from buyerjourney.bulk._replay import JourneyStore, Mode, Replay, TouchBatch, replay
from buyerjourney.bulk._schema import (
    ESCALATION,
    HANDOFF,
    KINDS,
    REFUSED,
    TRANSITION,
    to_micros,
)
from buyerjourney.errors import BuyerJourneyError, MissingExtra

__all__ = [
    "JOURNEY_FRAME_COLUMNS",
    "RECORD_FRAME_COLUMNS",
    "TOUCH_FIELDS",
    "BatchNotInTimeOrder",
    "BatchResult",
    "InvalidBatch",
    "LeadNotWhole",
    "carry_error",
    "journeys_frame",
    "pandas_or_raise",
    "raised_error",
    "records_frame",
    "replay_batch",
    "replay_partition",
    "touch_columns",
]

TOUCH_FIELDS: tuple[str, ...] = (
    "touch_id", "lead_id", "at", "kind", "order", "properties", "attributes",
)  # fmt: skip
"""The fields of a touch table, as the readers name them.

``touch_id``, ``lead_id``, ``at`` and ``kind`` are required; ``order`` (any
sortable column: an ingestion offset, a sequence number) breaks ties between
touches of one instant, ``touch_id`` breaking them otherwise; ``properties``
and ``attributes`` hold a mapping per touch (or ``None``). ``at`` is a
timestamp column (naive values are read as UTC) or int64 microseconds since
1970-01-01 UTC.
"""

JOURNEY_FRAME_COLUMNS: dict[str, str] = {
    "lead_id": "str: the lead",
    "stage": "str: the current stage",
    "highest": "str: the furthest stage reached (exits aside)",
    "owner": "str: the owning team",
    "score": "float64: the current score",
    "version": "int64: how many records changed the journey",
    "pending": "bool: waiting for the receiving team to accept",
    "escalated": "bool: the current visit passed its SLA",
    "created": "int64: microseconds since 1970 UTC of the first record",
    "updated": "int64: microseconds since 1970 UTC of the last change",
    "entered": "int64: microseconds since 1970 UTC of the entry into the current stage",
}
"""The columns of a journeys frame, in order, with their types and meaning."""

RECORD_FRAME_COLUMNS: dict[str, str] = {
    "lead_id": "str: the journey's lead",
    "lead_seq": "int64: the record's position in the lead's own log (0-based)",
    "at": "int64: microseconds since 1970 UTC",
    "kind": "str: the record kind (created, scored, threshold, transition, ...)",
    "actor": "str: who did it (system, policy:<name>, a person)",
    "actor_team": "str or null: the team the actor acts for",
    "reason": "str: why ('' when none)",
    "event": "str or null: the funnel event (transitions, refusals)",
    "source": "str or null: the stage before",
    "target": "str or null: the stage after",
    "from_team": "str or null: the team before (handoffs)",
    "to_team": "str or null: the team after",
    "score": "float64: the score after the change (NaN when none)",
    "touch_id": "str or null: the touch that caused it",
}
"""The columns of a records frame, in order, with their types and meaning.

A record's ``data`` (score breakdown, attributes learned, SLA deadline) is
not a column; :func:`buyerjourney.bulk.replay` materialises whole records.
"""

_STR_COLUMNS = ("actor", "reason")
_NULLABLE = ("actor_team", "event", "source", "target", "from_team", "to_team", "touch_id")


class InvalidBatch(BuyerJourneyError, ValueError):
    """A batch the batch replay cannot replay exactly (nothing was replayed).

    The message says what was wrong, what was received and what to do.
    """


class BatchNotInTimeOrder(InvalidBatch):
    """A batch's touches are not in time order (a batch sorted by lead, say).

    Attributes:
        position: The row of the first touch older than the one before it.
        grouped_by_lead: Whether the batch looks sorted by lead instead.
    """

    def __init__(self, position: int, previous: int, current: int, *, grouped: bool) -> None:
        self.position = position
        self.grouped_by_lead = grouped
        what = (
            "the batch looks sorted by lead, not by time; "
            if grouped
            else "the batch is not sorted by time; "
        )
        super().__init__(
            f"touch at row {position} ({current} µs) is older than the touch before it "
            f"({previous} µs): {what}the engine would quarantine it. Sort the batch by "
            "(at, order) first, or give batches grouped by lead to replay_partition, which "
            "sorts each group of whole leads by time"
        )


class LeadNotWhole(InvalidBatch):
    """A lead's touches are not together: they straddle batches the caller said held whole leads.

    Attributes:
        lead_id: The lead.
    """

    def __init__(self, lead_id: str, where: str) -> None:
        self.lead_id = lead_id
        super().__init__(
            f"lead {lead_id!r} {where}: its touches must be contiguous (a partition grouped "
            "by lead, e.g. repartition by lead_id, then sort within partitions by lead_id "
            "and at), or its journey would be replayed in pieces"
        )


def pandas_or_raise(feature: str = "the batch replay") -> Any:
    """Import pandas, or raise :class:`~buyerjourney.errors.MissingExtra` (the ``frames`` extra)."""
    try:
        import pandas  # type: ignore[import-untyped]  # noqa: PLC0415  (optional, imported on first use)
    except ImportError as exc:  # pragma: no cover - exercised without pandas only
        raise MissingExtra(feature, "frames", f"({exc})") from None
    return pandas


@attrs.frozen(eq=False)
class BatchResult:
    """What :func:`replay_batch` produced for one batch.

    Attributes:
        journeys: One row per lead (:data:`JOURNEY_FRAME_COLUMNS`), in the
            order the leads first appear in the batch.
        records: One row per record (:data:`RECORD_FRAME_COLUMNS`), in the
            batch's log order (by time).
        mode: The path the bulk replay took (``"columnar"``, ``"hooks"`` or
            ``"reference"``).
        reasons: Why a faster path was not taken.
    """

    journeys: Any
    records: Any
    mode: str
    reasons: tuple[str, ...] = ()


# ---------------------------------------------------------------- input


def touch_columns(table: Any, columns: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The touch fields of *table*, by field name (:data:`TOUCH_FIELDS`), as arrays or lists.

    Args:
        table: A pandas DataFrame, a pyarrow Table or RecordBatch, or a
            mapping of column name to sequence.
        columns: The table's column for each field whose column is named
            otherwise (``{"lead_id": "customer", "at": "ts"}``).

    Returns:
        ``touch_id``, ``lead_id``, ``kind`` (lists of str), ``at`` (an int64
        array of microseconds) and, when present, ``order``, ``properties``
        and ``attributes``.

    Raises:
        InvalidBatch: A required column is missing, a value is null or of the
            wrong type, or *columns* names a field that does not exist.
    """
    pd = pandas_or_raise()
    np = numpy_or_raise()
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(TOUCH_FIELDS))
    if unknown:
        msg = (
            f"columns maps {unknown[0]!r}, which is not a touch field; the fields are "
            f"{', '.join(TOUCH_FIELDS)}"
        )
        raise InvalidBatch(msg)
    frame = _as_frame(pd, table)
    out: dict[str, Any] = {}
    for field in TOUCH_FIELDS:
        name = mapping.get(field, field)
        if name not in frame.columns:
            if field in ("order", "properties", "attributes"):
                continue
            msg = (
                f"the touch table has no column {name!r} for {field!r} (it has "
                f"{', '.join(map(str, frame.columns))}); name it in columns={{{field!r}: ...}}"
            )
            raise InvalidBatch(msg)
        series = frame[name]
        if field == "at":
            out[field] = _micros(pd, np, series, name)
        elif field in ("touch_id", "lead_id", "kind"):
            out[field] = _strings(series, field, name)
        elif field == "order":
            if bool(series.isna().any()):
                row = int(np.flatnonzero(series.isna().to_numpy())[0])
                msg = f"column {name!r} ('order') is null at row {row}; give every touch an order"
                raise InvalidBatch(msg)
            out[field] = series.to_numpy()
        else:
            out[field] = _mappings(series, field, name)
    return out


def _as_frame(pd: Any, table: Any) -> Any:
    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True)
    if isinstance(table, Mapping):
        try:
            return pd.DataFrame(dict(table))
        except ValueError as exc:
            msg = f"the columns of the touch table differ in length ({exc})"
            raise InvalidBatch(msg) from None
    to_pandas = getattr(table, "to_pandas", None)
    if to_pandas is not None:  # a pyarrow Table or RecordBatch
        return to_pandas()
    msg = (
        f"the touch table must be a pandas DataFrame, a pyarrow Table or a mapping of "
        f"columns (got a {type(table).__name__})"
    )
    raise InvalidBatch(msg)


def _micros(pd: Any, np: Any, series: Any, name: str) -> Any:
    """A time column as int64 microseconds since 1970 UTC."""
    if bool(series.isna().any()):
        row = int(np.flatnonzero(series.isna().to_numpy())[0])
        msg = f"column {name!r} ('at') is null at row {row}; every touch needs a time"
        raise InvalidBatch(msg)
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        values = series.dt.tz_convert("UTC") if isinstance(dtype, pd.DatetimeTZDtype) else series
        return values.dt.tz_localize(None).astype("datetime64[us]").to_numpy().view(np.int64)
    if pd.api.types.is_integer_dtype(dtype):
        return series.to_numpy(np.int64)
    if dtype is np.dtype(object) and len(series) and all(isinstance(v, datetime) for v in series):
        if any(v.utcoffset() is None for v in series):
            msg = f"column {name!r} ('at') holds naive datetimes; give them a time zone"
            raise InvalidBatch(msg)
        return np.fromiter(map(to_micros, series), np.int64, len(series))
    msg = (
        f"column {name!r} ('at') must hold timestamps or int64 microseconds since 1970 UTC "
        f"(got dtype {dtype})"
    )
    raise InvalidBatch(msg)


def _strings(series: Any, field: str, name: str) -> list[str]:
    values = series.tolist()
    for row, value in enumerate(values):
        if not isinstance(value, str) or not value:
            msg = (
                f"column {name!r} ({field!r}) must hold non-empty strings; row {row} holds "
                f"{value!r}"
            )
            raise InvalidBatch(msg)
    return values  # type: ignore[no-any-return]


def _mappings(series: Any, field: str, name: str) -> dict[int, Mapping[str, Any]]:
    """The non-empty mappings of a properties or attributes column, by row."""
    out: dict[int, Mapping[str, Any]] = {}
    for row, value in enumerate(series.tolist()):
        if value is None or (isinstance(value, float) and value != value):  # noqa: PLR0124
            continue
        if isinstance(value, Mapping) or (
            isinstance(value, (list, tuple))
            and all(isinstance(item, (list, tuple)) and len(item) == 2 for item in value)
        ):
            mapping = dict(value)
        else:
            msg = (
                f"column {name!r} ({field!r}) must hold a mapping (or null) per touch; row "
                f"{row} holds {value!r}"
            )
            raise InvalidBatch(msg)
        if mapping:
            out[row] = mapping
    return out


def _check_order(np: Any, lead: Any, at: Any, order: Any | None) -> None:
    """Raise :class:`BatchNotInTimeOrder` unless *at* (then *order*) never goes backwards."""
    if at.shape[0] < 2:
        return
    back = at[1:] < at[:-1]
    if order is not None:
        tie = at[1:] == at[:-1]
        if tie.any():
            back |= tie & (order[1:] < order[:-1])
    if not back.any():
        return
    row = int(np.flatnonzero(back)[0]) + 1
    changes = int(np.count_nonzero(lead[1:] != lead[:-1]))
    grouped = changes + 1 == int(np.unique(lead).shape[0]) and changes + 1 < lead.shape[0]
    raise BatchNotInTimeOrder(row, int(at[row - 1]), int(at[row]), grouped=grouped)


def _batch_of(np: Any, pd: Any, fields: Mapping[str, Any]) -> TouchBatch:
    lead_codes, lead_ids = pd.factorize(np.asarray(fields["lead_id"], object), sort=False)
    kind_codes, kinds = pd.factorize(np.asarray(fields["kind"], object), sort=False)
    at = fields["at"]
    order = fields.get("order")
    _check_order(np, lead_codes, at, order)
    touch_ids = fields["touch_id"]
    if len(set(touch_ids)) != len(touch_ids):
        seen: set[str] = set()
        for row, touch_id in enumerate(touch_ids):
            if touch_id in seen:
                msg = (
                    f"touch id {touch_id!r} repeats at row {row}: the engine would quarantine "
                    "the repeat; drop duplicate touch ids before the replay"
                )
                raise InvalidBatch(msg)
            seen.add(touch_id)
    return TouchBatch(
        list(lead_ids),
        lead_codes,
        at,
        list(kinds),
        kind_codes,
        touch_ids=touch_ids,
        properties=fields.get("properties"),
        attributes=fields.get("attributes"),
    )


# ---------------------------------------------------------------- the entry point


def replay_batch(
    pipeline: Pipeline,
    touches: Any,
    *,
    until: datetime,
    columns: Mapping[str, str] | None = None,
    mode: Mode = "auto",
) -> BatchResult:
    """Replay one batch of whole leads, in time order, up to the clock *until*.

    The result equals :func:`journeys_frame` and :func:`records_frame` of
    ``pipeline.engine()`` fed the batch's touches in order with
    ``errors="raise"`` and then advanced to *until*; concatenated over any
    partitioning of a stream's leads into batches, it equals the engine fed
    the whole stream (see the module documentation for what is equal).

    Args:
        pipeline: The funnel, owners, hooks, scorer, policy and thresholds.
        touches: A pandas DataFrame, a pyarrow Table or RecordBatch, or a
            mapping of columns (:data:`TOUCH_FIELDS`), in time order (then by
            ``order`` when the batch has that column).
        until: The clock at the end: every SLA deadline up to it escalates.
            Give every batch of a stream the same *until* (the stream's end,
            or the date the report is as of), never the batch's own end.
        columns: The table's column for each field named otherwise.
        mode: As for :func:`~buyerjourney.bulk.replay`.

    Returns:
        The journeys and records as pandas DataFrames with named columns.

    Raises:
        BatchNotInTimeOrder: A touch is older than the one before it (a batch
            sorted by lead, say); nothing was replayed.
        InvalidBatch: A column is missing or holds a wrong value, or a touch
            id repeats.
        InvalidAction: *until* is not an aware time, or is before the
            batch's last touch.
        HookError: A hook failed on a touch (the engine would quarantine it).
        MissingExtra: pandas or NumPy is not installed.
    """
    pd = pandas_or_raise()
    np = numpy_or_raise()
    fields = touch_columns(touches, columns)
    batch = _batch_of(np, pd, fields)
    result = replay(pipeline, batch, mode=mode, errors="raise", until=until)
    return _frames(pd, np, pipeline, result)


def replay_partition(
    pipeline: Pipeline,
    batches: Iterable[Any],
    *,
    until: datetime,
    columns: Mapping[str, str] | None = None,
    touches_per_call: int = 200_000,
    mode: Mode = "auto",
) -> Iterator[BatchResult]:
    """Replay the batches of one partition, grouped by lead, a group of whole leads at a time.

    Each lead's touches must be contiguous across the batches, in any order
    within the lead (``sortWithinPartitions("lead_id", "at")`` does it).
    Batches are gathered until about *touches_per_call* touches; the last
    lead of what was gathered is held back for the next call (its touches
    may continue in the next batch), the rest is sorted by time (then
    ``order``, then ``touch_id``) and replayed with :func:`replay_batch`.

    Args:
        pipeline: The pipeline.
        batches: Touch tables (as :func:`replay_batch` takes them), with the
            same columns.
        until: The clock at the end, the same for every partition.
        columns: The tables' column for each field named otherwise.
        touches_per_call: About how many touches each replay gets (fixed
            costs, such as compiling the plan, are paid once per call).
        mode: As for :func:`~buyerjourney.bulk.replay`.

    Yields:
        One result per group of whole leads.

    Raises:
        LeadNotWhole: A lead's touches come back after another lead's.
        BatchNotInTimeOrder, InvalidBatch, InvalidAction, HookError: As for
            :func:`replay_batch`.
    """
    pd = pandas_or_raise()
    np = numpy_or_raise()
    if touches_per_call < 1:
        msg = f"touches_per_call must be at least 1 (got {touches_per_call!r})"
        raise ValueError(msg)
    done: set[str] = set()
    pending: list[Any] = []
    size = 0
    names = dict(columns or {})
    lead_column = names.get("lead_id", "lead_id")
    for table in batches:
        frame = _as_frame(pd, table)
        if not len(frame):
            continue
        if lead_column not in frame.columns:
            touch_columns(frame, columns)  # raises, naming the missing column
        pending.append(frame)
        size += len(frame)
        if size < touches_per_call:
            continue
        gathered = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
        leads = gathered[lead_column].to_numpy()
        last = leads[-1]
        start = len(leads)
        while start > 0 and leads[start - 1] == last:
            start -= 1
        pending = [gathered.iloc[start:]]
        size = len(gathered) - start
        if start:
            yield _replay_group(pd, np, pipeline, gathered.iloc[:start], done, until, names, mode)
    if pending:
        gathered = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
        yield _replay_group(pd, np, pipeline, gathered, done, until, names, mode)


def _replay_group(  # noqa: PLR0917  (the partition's state, passed through)
    pd: Any,
    np: Any,
    pipeline: Pipeline,
    frame: Any,
    done: set[str],
    until: datetime,
    columns: Mapping[str, str],
    mode: Mode,
) -> BatchResult:
    """Check that *frame* holds whole leads not seen before, sort it by time and replay it."""
    fields = touch_columns(frame, columns)
    leads = np.asarray(fields["lead_id"], object)
    change = np.ones(leads.shape[0], bool)
    change[1:] = leads[1:] != leads[:-1]
    runs = leads[change].tolist()
    if len(set(runs)) != len(runs):
        seen: set[str] = set()
        for lead in runs:
            if lead in seen:
                raise LeadNotWhole(lead, "comes back after another lead's touches")
            seen.add(lead)
    for lead in runs:
        if lead in done:
            raise LeadNotWhole(lead, "has touches in an earlier batch of this partition")
    done.update(runs)
    keys = [fields["at"]]
    if "order" in fields:
        keys.append(fields["order"])
    keys.append(np.asarray(fields["touch_id"], object))
    order = _sort_order(pd, np, keys)
    sorted_fields: dict[str, Any] = {}
    for name, values in fields.items():
        if name in ("properties", "attributes"):
            position = np.empty(order.shape[0], np.int64)
            position[order] = np.arange(order.shape[0])
            sorted_fields[name] = {int(position[row]): m for row, m in values.items()}
        elif isinstance(values, list):
            sorted_fields[name] = [values[i] for i in order.tolist()]
        else:
            sorted_fields[name] = values[order]
    batch = _batch_of(np, pd, sorted_fields)
    result = replay(pipeline, batch, mode=mode, errors="raise", until=until)
    return _frames(pd, np, pipeline, result)


def _sort_order(pd: Any, np: Any, keys: Sequence[Any]) -> Any:
    """The stable order of rows by *keys* (the first key first)."""
    frame = pd.DataFrame({f"k{i}": key for i, key in enumerate(keys)})
    return frame.sort_values(list(frame.columns), kind="stable").index.to_numpy()


# ---------------------------------------------------------------- output


def _frames(pd: Any, np: Any, pipeline: Pipeline, result: Replay) -> BatchResult:
    if isinstance(result.journeys, JourneyStore):
        journeys = _journey_columns(pd, np, result.log, result.journeys)
        assert result._kept is not None
        records = _record_columns(pd, np, pipeline, result.log, result._kept)
    else:
        journeys = journeys_frame(result.journeys)
        records = records_frame(result.log)
    return BatchResult(journeys, records, result.mode, result.reasons)


def _journey_columns(pd: Any, np: Any, log: ColumnarLog, store: JourneyStore) -> Any:
    col = store.columns
    rows = np.flatnonzero(col["version"] > 0)
    stages = np.asarray(log.stage_names, object)
    teams = np.asarray(log.teams, object)
    return pd.DataFrame(
        {
            "lead_id": np.asarray(store.lead_ids, object)[rows],
            "stage": stages[col["stage"][rows]],
            "highest": stages[col["highest"][rows]],
            "owner": teams[col["owner"][rows]],
            "score": col["score"][rows].astype(np.float64),
            "version": col["version"][rows].astype(np.int64),
            "pending": col["pending"][rows].astype(bool),
            "escalated": col["escalated"][rows].astype(bool),
            "created": col["created"][rows].astype(np.int64),
            "updated": col["updated"][rows].astype(np.int64),
            "entered": col["entered"][rows].astype(np.int64),
        }
    )


def _names(np: Any, table: Sequence[str], codes: Any) -> Any:
    """Names for codes (``-1``: ``None``)."""
    lookup = np.asarray([*table, None], object)
    return lookup[np.where(codes < 0, len(table), codes)]


def _record_columns(pd: Any, np: Any, pipeline: Pipeline, log: ColumnarLog, kept: Any) -> Any:
    """The records frame of a columnar log, from its columns (a few rows materialised)."""
    touches = kept.touches
    col = log.columns
    n = len(log)
    kind = col["kind"].astype(np.int64)
    lead = col["lead"].astype(np.int64)
    touch = col["touch"].astype(np.int64)
    lead_ids = np.asarray(log.lead_ids, object)
    ids = touches.touch_ids
    if ids is None:
        ids = [f"t{i}" for i in range(int(touch.max()) + 1 if n else 0)]
    touch_id = _names(np, ids, touch)
    score = col["score"].astype(np.float64)
    reason = np.full(n, "", object)
    actor = np.full(n, SYSTEM.name, object)
    policy_rows = np.flatnonzero((kind == TRANSITION) | (kind == HANDOFF) | (kind == REFUSED))
    if policy_rows.shape[0]:
        actor[policy_rows] = log.record(int(policy_rows[0])).actor.name
    refused = np.flatnonzero(kind == REFUSED)
    if refused.shape[0]:
        reason[refused] = np.asarray(log.messages, object)[col["aux"][refused]]
    moved = np.flatnonzero((kind == TRANSITION) | (kind == HANDOFF))
    if moved.shape[0]:
        reason[moved] = _decision_reasons(pd, np, pipeline, log, kept, moved, kind)
    escalations = np.flatnonzero(kind == ESCALATION)
    actor_team = np.full(n, None, object)
    for row in escalations.tolist():  # a few: materialised by the core's builder
        record = log.record(row)
        reason[row] = record.reason
        actor[row] = record.actor.name
        actor_team[row] = record.actor.team
    frame = pd.DataFrame(
        {
            "lead_id": lead_ids[lead],
            "lead_seq": np.zeros(n, np.int64),
            "at": col["at"].astype(np.int64),
            "kind": np.asarray([k.value for k in KINDS], object)[kind],
            "actor": actor,
            "actor_team": actor_team,
            "reason": reason,
            "event": _names(np, log.events, col["event"].astype(np.int64)),
            "source": _names(np, log.stage_names, col["source"].astype(np.int64)),
            "target": _names(np, log.stage_names, col["target"].astype(np.int64)),
            "from_team": _names(np, log.teams, col["from_team"].astype(np.int64)),
            "to_team": _names(np, log.teams, col["to_team"].astype(np.int64)),
            "score": score,
            "touch_id": touch_id,
        }
    )
    frame["lead_seq"] = frame.groupby(lead, sort=False).cumcount().to_numpy(np.int64)
    return frame


def _decision_reasons(  # noqa: PLR0917
    pd: Any, np: Any, pipeline: Pipeline, log: ColumnarLog, kept: Any, rows: Any, kind: Any
) -> list[str]:
    """The policy's reason of each transition and handoff row (one policy call per distinct key).

    A built-in policy's reason depends only on the stage, the score (its
    value and its grade) and the touch's kind (the plan sends any other
    policy to the reference engine), so rows that share them share the reason.
    """
    touches = kept.touches
    col = log.columns
    score = pd.Series(col["score"].astype(np.float64)).ffill().to_numpy()  # the touch's score
    source = col["source"].astype(np.int64)
    # a handoff's decision is its transition's (the row before it)
    decided = np.where(kind[rows] == HANDOFF, rows - 1, rows)
    positions = col["touch"][decided].astype(np.int64)
    if touches.objects is not None:
        touch_kinds = [touches.objects[p].kind for p in positions.tolist()]
    else:
        touch_kinds = [touches.kinds[int(touches.kind[p])] for p in positions.tolist()]
    grades = [kept.grade(p) for p in positions.tolist()]
    cache: dict[tuple[int, float, str, str | None], str] = {}
    out: list[str] = []
    for row, stage, value, touch_kind, grade in zip(
        decided.tolist(),
        source[decided].tolist(),
        score[decided].tolist(),
        touch_kinds,
        grades,
        strict=True,
    ):
        key = (stage, value, touch_kind, grade)
        found = cache.get(key)
        if found is None:
            found = cache[key] = log.record(row).reason
        out.append(found)
    return out


def journeys_frame(journeys: Mapping[str, Journey] | Iterable[Journey]) -> Any:
    """The journeys frame (:data:`JOURNEY_FRAME_COLUMNS`) of journeys (an engine's, say).

    Args:
        journeys: Journeys by lead id (``engine.journeys``), or an iterable of them.

    Returns:
        A pandas DataFrame, one row per journey, in the order given.
    """
    pd = pandas_or_raise()
    np = numpy_or_raise()
    items = list(journeys.values() if isinstance(journeys, Mapping) else journeys)
    return pd.DataFrame(
        {
            "lead_id": np.asarray([j.lead_id for j in items], object),
            "stage": np.asarray([j.stage for j in items], object),
            "highest": np.asarray([j.highest for j in items], object),
            "owner": np.asarray([j.owner for j in items], object),
            "score": np.asarray([j.score for j in items], np.float64),
            "version": np.asarray([j.version for j in items], np.int64),
            "pending": np.asarray([j.pending_acceptance for j in items], bool),
            "escalated": np.asarray([j.escalated for j in items], bool),
            "created": np.asarray([to_micros(j.created) for j in items], np.int64),
            "updated": np.asarray([to_micros(j.updated) for j in items], np.int64),
            "entered": np.asarray([to_micros(j.stages[j.stage].entered) for j in items], np.int64),
        }
    )


def records_frame(records: Iterable[Record]) -> Any:
    """The records frame (:data:`RECORD_FRAME_COLUMNS`) of a log (an engine's, say), in log order.

    Args:
        records: The log, in seq order (``engine.records``).

    Returns:
        A pandas DataFrame, one row per record; ``lead_seq`` counts each
        lead's records from 0 in the order given.
    """
    pd = pandas_or_raise()
    np = numpy_or_raise()
    items = list(records)
    counts: dict[str, int] = {}
    lead_seq = np.empty(len(items), np.int64)
    for i, record in enumerate(items):
        lead_seq[i] = counts.get(record.lead_id, 0)
        counts[record.lead_id] = lead_seq[i] + 1
    data: dict[str, Any] = {
        "lead_id": np.asarray([r.lead_id for r in items], object),
        "lead_seq": lead_seq,
        "at": np.asarray([to_micros(r.at) for r in items], np.int64),
        "kind": np.asarray([RecordKind(r.kind).value for r in items], object),
        "actor": np.asarray([r.actor.name for r in items], object),
        "actor_team": np.asarray([r.actor.team for r in items], object),
        "reason": np.asarray([r.reason for r in items], object),
    }
    for name in ("event", "source", "target", "from_team", "to_team"):
        data[name] = np.asarray([getattr(r, name) for r in items], object)
    data["score"] = np.asarray([np.nan if r.score is None else r.score for r in items], np.float64)
    data["touch_id"] = np.asarray([r.touch_id for r in items], object)
    return pd.DataFrame(data)


# ---------------------------------------------------------------- errors across processes

_CARRIED = "buyerjourney-error:"


def carry_error(exc: BuyerJourneyError) -> str:
    """*exc* as text that survives a worker's traceback (for :func:`raised_error` on the driver).

    The library's errors take their details as constructor arguments, which
    plain pickling does not replay; this keeps the class, the message and
    the attributes that can be pickled.

    Args:
        exc: The error raised on a worker.

    Returns:
        One line: a marker and the error's state, base64-encoded.
    """
    state: dict[str, Any] = {}
    for name, value in vars(exc).items():
        try:
            pickle.dumps(value)
        except Exception:
            continue
        state[name] = value
    kind = type(exc)
    payload = pickle.dumps((kind.__module__, kind.__qualname__, str(exc), state))
    return f"{_CARRIED}{base64.b64encode(payload).decode('ascii')}:"


def raised_error(text: str) -> BuyerJourneyError | None:
    """The error :func:`carry_error` put in *text* (a worker's traceback), or ``None``.

    Only classes of this library are rebuilt.

    Args:
        text: Text that may hold a carried error.

    Returns:
        An instance of the same class, with the same message and attributes.
    """
    start = text.find(_CARRIED)
    if start < 0:
        return None
    start += len(_CARRIED)
    end = text.find(":", start)
    try:
        module, qualname, message, state = pickle.loads(base64.b64decode(text[start:end]))
    except Exception:
        return None
    if not module.startswith("buyerjourney."):
        return None
    kind: Any = importlib.import_module(module)
    for part in qualname.split("."):
        kind = getattr(kind, part)
    if not (isinstance(kind, type) and issubclass(kind, BuyerJourneyError)):
        return None
    error: BuyerJourneyError = kind.__new__(kind)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
