"""The log as columns: a struct of NumPy arrays, and the stage summary computed on it.

:class:`ColumnarLog` holds one row per record, as integer codes and numbers
(kind, lead, time in microseconds, stages, teams, event, score ...), with
the names in small tables beside the arrays. It is what
:func:`buyerjourney.bulk.replay` writes, and :meth:`ColumnarLog.from_records`
turns any log of :class:`~buyerjourney.Record` into one. Records are
materialised on demand (:meth:`ColumnarLog.record`, iteration), and compare
equal to the reference engine's.

:func:`summarize_columnar` computes the same
:class:`~buyerjourney.ReplaySummary` as
:func:`buyerjourney.summarize`, with vectorised NumPy operations
(``bincount``, a stable sort by lead, one partition per stage for the
medians) instead of a loop over records.

NumPy is the ``fast`` extra; this module imports it lazily and raises
:class:`~buyerjourney.errors.MissingExtra` when it is absent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from buyerjourney._core.funnel import Funnel
from buyerjourney._core.records import Record, RecordKind
from buyerjourney._report import ReplaySummary, StageRow
from buyerjourney.bulk._schema import (
    ACCEPTED,
    CREATED,
    EPOCH,
    ESCALATION,
    HANDOFF,
    KIND_CODE,
    KINDS,
    LOG_COLUMNS,
    MICROSECOND,
    OVERRIDE,
    REFUSED,
    REJECTED,
    TRANSITION,
    from_micros,
    log_dtypes,
    to_micros,
)
from buyerjourney.errors import MissingExtra

Array = Any
"""A NumPy array (NumPy is optional, so arrays are typed loosely)."""

__all__ = [
    "EPOCH",
    "KINDS",
    "ColumnarLog",
    "from_micros",
    "numpy_or_raise",
    "stable_order",
    "summarize_columnar",
    "to_micros",
]


def numpy_or_raise(feature: str = "fast replay") -> Any:
    """Import NumPy, or raise :class:`~buyerjourney.errors.MissingExtra` for the ``fast`` extra."""
    try:
        import numpy  # noqa: PLC0415  (optional dependency, imported on first use)
    except ImportError as exc:  # pragma: no cover - exercised without numpy only
        raise MissingExtra(feature, "fast", f"({exc})") from None
    return numpy


def stable_order(np: Any, keys: Array) -> Array:
    """``np.argsort(keys, kind="stable")`` for non-negative integer keys, faster.

    Sorts ``keys << bits | position`` (unique, so any sort is stable) with
    NumPy's SIMD sort, which is an order of magnitude faster than a stable
    argsort on this machine's kind of CPU.
    """
    return sort_keys(np, keys)[0]


def sort_keys(np: Any, keys: Array) -> tuple[Array, Array]:
    """The stable order of non-negative integer *keys*, and the keys in that order."""
    n = int(keys.shape[0])
    if n == 0:
        return np.zeros(0, np.int64), keys[:0]
    bits = max(1, n.bit_length())
    if int(keys.min()) < 0 or int(keys.max()) >= 2 ** (62 - bits):
        order = np.argsort(keys, kind="stable")
        return order, keys[order]
    composite = keys.astype(np.int64) << bits
    composite |= np.arange(n, dtype=np.int64)
    composite.sort()
    ordered = composite >> bits
    composite &= (1 << bits) - 1
    return composite, ordered


class ColumnarLog:
    """A journey log stored as columns: one row per record, in ``seq`` order.

    Columns (NumPy arrays of equal length; ``-1`` means "none"). A code
    column has the narrowest signed integer dtype that holds all its codes,
    never narrower than shown (a funnel of more than 127 stages gets
    ``int16`` stage codes, and so on):

    * ``kind`` (int8): the record kind, an index into :data:`KINDS`;
    * ``lead`` (int32): an index into :attr:`lead_ids`;
    * ``at`` (int64): microseconds since :data:`EPOCH` (UTC);
    * ``touch`` (int32): the position of the touch that caused the record;
    * ``source``, ``target`` (int8): indices into :attr:`stage_names`;
    * ``from_team``, ``to_team`` (int8): indices into :attr:`teams`;
    * ``event`` (int16): an index into :attr:`events`;
    * ``score`` (float64): the score, NaN when the record has none;
    * ``aux`` (int32): kind-specific: for a refusal, an index into
      :attr:`messages` (its reason); for a threshold, the threshold's index;
      for an escalation, the position of the touch that entered the stage.

    Records are materialised on demand; the seq of a row is its position.

    Args:
        funnel: The funnel of the log.
        columns: The arrays, by column name.
        lead_ids: Lead ids by code.
        teams: Team names by code.
        events: Event names by code.
        messages: Refusal reasons by code.
        materialize: Builds the :class:`Record` of a row; ``None`` when the
            log was built from records (they are kept).
        records: The records the log was built from, if any.
    """

    COLUMNS: tuple[str, ...] = LOG_COLUMNS

    def __init__(
        self,
        funnel: Funnel,
        columns: dict[str, Array],
        *,
        lead_ids: Sequence[str],
        teams: Sequence[str],
        events: Sequence[str],
        messages: Sequence[str],
        materialize: Callable[[int], Record] | None = None,
        records: Sequence[Record] | None = None,
    ) -> None:
        self.funnel = funnel
        self.columns = columns
        self.lead_ids = lead_ids
        self.stage_names: tuple[str, ...] = funnel.stage_names
        self.teams = tuple(teams)
        self.events = tuple(events)
        self.messages = tuple(messages)
        self._materialize = materialize
        self._records = records

    def __len__(self) -> int:
        return int(self.columns["kind"].shape[0])

    def __repr__(self) -> str:
        return f"ColumnarLog({len(self)} records, {len(self.lead_ids)} leads)"

    def __getattr__(self, name: str) -> Array:
        columns = self.__dict__.get("columns")
        if columns is not None and name in columns:
            return columns[name]
        msg = f"{type(self).__name__!r} object has no attribute {name!r}"
        raise AttributeError(msg)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (not counting the name tables)."""
        return sum(int(a.nbytes) for a in self.columns.values())

    def record(self, seq: int) -> Record:
        """Materialise the record at position *seq*."""
        if not 0 <= seq < len(self):
            msg = f"seq {seq} is out of range (the log holds {len(self)} records)"
            raise IndexError(msg)
        if self._records is not None:
            return self._records[seq]
        assert self._materialize is not None
        return self._materialize(seq)

    def __iter__(self) -> Iterator[Record]:
        for seq in range(len(self)):
            yield self.record(seq)

    def records(self) -> list[Record]:
        """Every record, materialised, in order."""
        return list(self)

    # ------------------------------------------------------------ building

    @classmethod
    def from_records(cls, funnel: Funnel, records: Iterable[Record]) -> ColumnarLog:
        """Turn records (a log in seq order) into columns; the records are kept."""
        np = numpy_or_raise("the columnar log")
        kept = list(records)
        leads: dict[str, int] = {}
        teams: dict[str, int] = {}
        events: dict[str, int] = {}
        messages: dict[str, int] = {}
        stages = {name: i for i, name in enumerate(funnel.stage_names)}

        def coded(table: dict[str, int], values: Iterable[str | None]) -> list[int]:
            setdefault = table.setdefault
            return [-1 if value is None else setdefault(value, len(table)) for value in values]

        def staged(names: Iterable[str | None]) -> list[int]:
            get = stages.get
            return [-1 if name is None else get(name, -1) for name in names]

        # Codes are gathered as Python ints first, a column at a time: the
        # dtypes depend on how many codes there are.
        refused = RecordKind.REFUSED
        epoch, microsecond = EPOCH, MICROSECOND
        values: dict[str, list[Any]] = {
            "kind": [KIND_CODE[r.kind] for r in kept],
            "lead": coded(leads, [r.lead_id for r in kept]),
            "at": [(r.at - epoch) // microsecond for r in kept],
            "touch": [-1] * len(kept),
            "source": staged([r.source for r in kept]),
            "target": staged([r.target for r in kept]),
            "from_team": [],
            "to_team": [],
            "event": coded(events, [r.event for r in kept]),
            "score": [np.nan if r.score is None else r.score for r in kept],
            "aux": [],
        }
        # teams are numbered in the order they first appear, from or to, record by record
        for r in kept:
            values["from_team"].append(
                -1 if r.from_team is None else teams.setdefault(r.from_team, len(teams))
            )
            values["to_team"].append(
                -1 if r.to_team is None else teams.setdefault(r.to_team, len(teams))
            )
        values["aux"] = [
            messages.setdefault(r.reason, len(messages)) if r.kind is refused else -1 for r in kept
        ]
        dtypes = log_dtypes(
            np,
            leads=len(leads),
            touches=0,
            stages=len(stages),
            teams=len(teams),
            events=len(events),
            aux=len(messages),
        )
        columns = {name: np.array(values[name], dtypes[name]) for name in LOG_COLUMNS}
        return cls(
            funnel,
            columns,
            lead_ids=list(leads),
            teams=list(teams),
            events=list(events),
            messages=list(messages),
            records=kept,
        )


def _median_micros(values: Array) -> int | None:
    """The median of integer microseconds as :func:`report.summarize` computes it on timedeltas."""
    np = numpy_or_raise()
    n = int(values.shape[0])
    if n == 0:
        return None
    middle = n // 2
    if n % 2:
        return int(np.partition(values, middle)[middle])
    part = np.partition(values, (middle - 1, middle))
    total = int(part[middle - 1]) + int(part[middle])
    # timedelta / 2 rounds half to even on microseconds.
    half, odd = divmod(total, 2)
    if odd and half % 2:
        half += 1
    return half


def summarize_columnar(log: ColumnarLog) -> ReplaySummary:  # noqa: PLR0915  (array steps)
    """The :class:`~buyerjourney.ReplaySummary` of a columnar log.

    Equal to :func:`buyerjourney.summarize` over the same records.
    """
    np = numpy_or_raise("the columnar summary")
    funnel = log.funnel
    n_stages = len(log.stage_names)
    cols = log.columns
    kind = cols["kind"]
    counts = np.bincount(kind, minlength=len(KINDS))
    # One pass picks the rows the summary reads (entries, handoffs, escalations,
    # refusals: a minority of a log); everything else works on that subset.
    wanted = np.zeros(len(KINDS), bool)
    wanted[[CREATED, TRANSITION, OVERRIDE, HANDOFF, ESCALATION, REFUSED]] = True
    picked = np.flatnonzero(wanted[kind])
    sub_kind = kind[picked]
    sub_target = cols["target"][picked]
    is_entry = (sub_kind == CREATED) | (sub_kind == TRANSITION) | (sub_kind == OVERRIDE)
    is_entry &= sub_target >= 0
    entries = picked[is_entry]
    e_lead = cols["lead"][entries]
    e_target = sub_target[is_entry].astype(np.int64)
    e_at = cols["at"][entries]
    entered = np.bincount(e_target, minlength=n_stages)
    # reached: distinct (stage, lead) pairs
    width = max(len(log.lead_ids), 1)
    pairs = np.sort(e_target * width + e_lead)  # (np.unique is far slower here)
    if pairs.shape[0]:
        distinct = np.empty(pairs.shape[0], bool)
        distinct[0] = True
        np.not_equal(pairs[1:], pairs[:-1], out=distinct[1:])
        pairs = pairs[distinct]
    reached = np.bincount(pairs // width, minlength=n_stages)
    # visits: each move closes the visit opened by the lead's previous entry
    order = stable_order(np, e_lead)
    s_lead = e_lead[order]
    s_target = e_target[order]
    s_at = e_at[order]
    s_is_move = sub_kind[is_entry][order] != CREATED
    if s_lead.shape[0]:
        same = np.empty(s_lead.shape[0], bool)
        same[0] = False
        np.equal(s_lead[1:], s_lead[:-1], out=same[1:])
        closes = s_is_move & same
    else:
        closes = s_is_move
    closing = np.flatnonzero(closes)
    from_stage = s_target[closing - 1]
    durations = s_at[closing] - s_at[closing - 1]
    exited = np.bincount(from_stage, minlength=n_stages)
    by_stage = stable_order(np, from_stage)
    bounds = np.searchsorted(from_stage[by_stage], np.arange(n_stages + 1))
    medians: list[int | None] = [
        _median_micros(durations[by_stage[bounds[s] : bounds[s + 1]]]) for s in range(n_stages)
    ]

    index = {name: i for i, name in enumerate(log.stage_names)}

    def row(name: str, previous: int | None) -> StageRow:
        s = index[name]
        count = int(reached[s])
        median = medians[s]
        return StageRow(
            stage=name,
            reached=count,
            entered=int(entered[s]),
            exited=int(exited[s]),
            current=int(entered[s]) - int(exited[s]),
            step_conversion=(count / previous) if previous else None,
            median_time=None if median is None else timedelta(microseconds=median),
        )

    rows: list[StageRow] = []
    previous: int | None = None
    for stage in funnel.success_path:
        rows.append(row(stage.name, previous))
        previous = int(reached[index[stage.name]])
    rows.extend(row(stage.name, None) for stage in funnel.stages if stage.kind.is_exit)

    handoffs = _pair_counts(log, picked[sub_kind == HANDOFF])
    breaches: dict[str, int] = {}
    escalations = picked[sub_kind == ESCALATION]
    sources = cols["source"][escalations]
    for s, n in enumerate(np.bincount(sources[sources >= 0], minlength=n_stages)):
        if n:
            breaches[log.stage_names[s]] = int(n)
    return ReplaySummary(
        stages=tuple(rows),
        handoffs=dict(sorted(handoffs.items())),
        breaches=dict(sorted(breaches.items())),
        refusals=_refusals(log, picked[sub_kind == REFUSED]),
        accepted=int(counts[ACCEPTED]),
        rejected=int(counts[REJECTED]),
        leads=int(counts[CREATED]),
        records=len(log),
    )


def _pair_counts(log: ColumnarLog, rows: Array) -> dict[tuple[str, str], int]:
    np = numpy_or_raise()
    frm = log.columns["from_team"][rows].astype(np.int64)
    to = log.columns["to_team"][rows].astype(np.int64)
    ok = (frm >= 0) & (to >= 0)
    width = len(log.teams) + 1
    codes, n = np.unique(frm[ok] * width + to[ok], return_counts=True)
    out: dict[tuple[str, str], int] = {}
    for c, k in zip(codes.tolist(), n.tolist(), strict=True):
        a, b = log.teams[c // width], log.teams[c % width]
        if a and b:
            out[(a, b)] = out.get((a, b), 0) + int(k)
    return out


def _refusals(log: ColumnarLog, rows: Array) -> dict[str, int]:
    """Refusals by the first clause of their reason, most common first, ties by first seen."""
    np = numpy_or_raise()
    if not rows.shape[0]:
        return {}
    messages = log.columns["aux"][rows]
    codes, first, n = np.unique(messages, return_index=True, return_counts=True)
    counter: Counter[str] = Counter()
    for code in np.argsort(first, kind="stable").tolist():
        key = log.messages[int(codes[code])].split(";", maxsplit=1)[0].strip()
        counter[key] += int(n[code])
    return dict(counter.most_common())
