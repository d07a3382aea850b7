"""Bulk replay at memory speed: the vectorised lifecycle, the same log as the engine.

:func:`replay` replays a time-ordered batch of touches through a
:class:`~buyerjourney.Pipeline` into a fresh log and fresh journeys,
and produces exactly what :meth:`Engine.ingest <buyerjourney.Engine.ingest>`
would: the same records (seq, kinds, fields, data) and the same journeys.
The reference engine stays the definition; a Hypothesis differential test
holds the fast paths to it.

Three paths, chosen automatically by :func:`~buyerjourney.bulk.plan` (or
forced with ``mode=``), which is the one place that decides what the fast
paths may compute (``bulk/_plan.py``):

``"columnar"``
    Built-in scorer (exactly a :class:`~buyerjourney.scoring.PointsScorer`
    of built-in parts, exactly a :class:`~buyerjourney.scoring.CombinedScorer`
    of one and exactly a :class:`~buyerjourney.scoring.FitGrader`, or none)
    and built-in policies (exactly
    :class:`~buyerjourney.policies.ThresholdPolicy`,
    :class:`~buyerjourney.policies.TouchKindPolicy`,
    :class:`~buyerjourney.policies.MatrixPolicy`, ``AnyOf``/``AllOf`` of
    them, or none). The whole batch is processed with NumPy: scores come
    from the vectorised kernel (``bulk/_kernels.py``, exact integer
    micro-points), fit grades from the lead's profile merged touch by
    touch (evaluated only where a touch brings attributes); threshold
    crossings compare each score with the lead's previous one; the policy
    and the funnel are compiled into one table
    ``(stage, touch kind, grade letter, score bucket) -> outcome`` that is
    applied to all leads at once, one touch rank at a time; owners,
    handoffs and SLA escalations are array lookups. Guards and owner
    overrides are evaluated in Python, only where a transition actually
    needs them.
``"hooks"``
    A scorer the kernel does not implement (a scorer of your own, a
    subclass, a part of a subclassed type, points beyond the kernel's exact
    range): it is called once per touch, in a tight loop, with the
    :class:`~buyerjourney.scoring.Lead` it expects; everything else is
    columnar as above.
``"reference"``
    Anything else (a policy of your own or a subclass of a built-in one,
    owner rules of your own), and batches the engine would quarantine touches of (duplicate
    ids, times going backwards) or where a guard fails: the reference engine
    itself.

The result is a :class:`Replay`: a :class:`~buyerjourney.bulk.ColumnarLog`
(records are materialised on demand and compare equal to the engine's), a
:class:`JourneyStore` (journeys as columns, about 40 bytes each plus the lead
id; :class:`~buyerjourney.Journey` objects are materialised on
demand) and the touches set aside.

Input is either an iterable of :class:`~buyerjourney.Touch` or a
:class:`TouchBatch` (the columnar form: arrays of lead codes, microsecond
times and kind codes), which is what bulk sources should produce.

A large batch is processed in blocks of whole leads (``_BLOCK_TOUCHES``
touches each): scores, decisions, owners and SLAs are computed per block on
arrays that stay in the CPU cache, then every block writes its records into
the one log. Leads are independent but for the engine's clock, which every
block is given, and the order of escalations, which is settled over all
blocks; the result does not depend on the block size (the tests check it).

The result keeps neither the run's intermediate arrays nor the input batch:
records and journeys are materialised from the log columns, the lead ids,
the touch kinds (one byte each), the touch ids and properties if the batch
has any, and the lead attributes stored as columns (:class:`_Attributes`);
a batch built from ``Touch`` objects keeps the objects (they hold the time
zones).

NumPy is the ``fast`` extra: ``pip install 'buyerjourney[fast]'``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Literal

from buyerjourney._core import lifecycle
from buyerjourney._core.funnel import Funnel, Transition
from buyerjourney._core.journey import Journey, rebuild
from buyerjourney._core.protocols import Context, hook_name
from buyerjourney._core.records import Record, Touch
from buyerjourney._core.scoring import GRADES, Score, ScoreItem, checked_score, score_problem
from buyerjourney._core.table import CompiledFunnel, compile_funnel
from buyerjourney._engine import Quarantined
from buyerjourney._pipeline import Pipeline
from buyerjourney._report import ReplaySummary
from buyerjourney.bulk._columnar import (
    ColumnarLog,
    numpy_or_raise,
    stable_order,
    summarize_columnar,
)
from buyerjourney.bulk._funnel import DistributedFunnelReport
from buyerjourney.bulk._kernels import NO_GRADE, SCALE, Groups, columnar_scores, fit_grades
from buyerjourney.bulk._plan import Compiled, Plan, batch_problem, compile_plan, exact_float, plan
from buyerjourney.bulk._report import columnar_funnel_report
from buyerjourney.bulk._schema import (
    CREATED,
    EPOCH,
    ESCALATION,
    HANDOFF,
    JOURNEY_COLUMNS,
    MICROSECOND,
    REFUSED,
    SCORED,
    THRESHOLD,
    TRANSITION,
    code_dtype,
    from_micros,
    journey_dtypes,
    log_dtypes,
    new_log_columns,
    to_micros,
)
from buyerjourney.errors import (
    HookError,
    InvalidAction,
    InvalidTouch,
    ModeNotPossible,
    TransitionNotAllowed,
)

Array = Any
"""A NumPy array (NumPy is optional, so arrays are typed loosely)."""

__all__ = ["JourneyStore", "Mode", "Plan", "Replay", "TouchBatch", "plan", "replay"]

Mode = Literal["auto", "columnar", "hooks", "reference"]
"""How :func:`replay` runs: ``"auto"`` picks the fastest path the pipeline allows."""

# outcome codes of the decision table
_NONE, _MOVE, _REFUSE, _GUARDED = 0, 1, 2, 3
_RANK = {"columnar": 0, "hooks": 1, "reference": 2}
_LAST_MICROS = to_micros(datetime.max.replace(tzinfo=timezone.utc))
_SLA_MARGIN = timedelta(days=2)  # touches keep their own time zone: stay clear of the end
_GRADE_CODE = {grade: code for code, grade in enumerate(GRADES)}
_LETTER_GRADES: tuple[str | None, ...] = (None, "A", "B", "C", "D")
"""The grade columns of the decision table: no grade, then a grade of each letter of the matrix."""
_LETTER_OF_CODE = tuple(_LETTER_GRADES.index("D" if g == "F" else g[0]) for g in GRADES)
"""Per grade code, its column in the decision table (``F`` is in the ``D`` row of the matrix)."""


# ---------------------------------------------------------------- input


class TouchBatch:
    """A time-ordered batch of touches, as columns.

    Args:
        lead_ids: Lead ids by code.
        lead: Per touch, the lead's code (an index into *lead_ids*).
        at: Per touch, the time in microseconds since 1970-01-01 UTC.
        kinds: Touch kinds by code.
        kind: Per touch, the kind's code (an index into *kinds*).
        touch_ids: Per touch, its id; ``None`` names touch *i* ``"t<i>"``.
        properties: Touch properties by position, for the touches that have any.
        attributes: Lead attributes learned, by position, for the touches that carry any.

    Raises:
        ValueError: The columns differ in length, or a code is out of range.
        InvalidTouch: A lead id or kind is not a non-empty str.
    """

    __slots__ = (
        "_index",
        "_touches",
        "at",
        "attributes",
        "kind",
        "kinds",
        "lead",
        "lead_ids",
        "properties",
        "touch_ids",
    )

    def __init__(
        self,
        lead_ids: Sequence[str],
        lead: Any,
        at: Any,
        kinds: Sequence[str],
        kind: Any,
        *,
        touch_ids: Sequence[str] | None = None,
        properties: Mapping[int, Mapping[str, Any]] | None = None,
        attributes: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        np = numpy_or_raise()
        self.lead_ids = lead_ids
        self.kinds = tuple(kinds)
        self.lead: Array = np.ascontiguousarray(lead, dtype=np.int64)
        self.at: Array = np.ascontiguousarray(at, dtype=np.int64)
        self.kind: Array = np.ascontiguousarray(kind, dtype=np.int64)
        self.touch_ids = touch_ids
        self.properties: Mapping[int, Mapping[str, Any]] = properties or {}
        self.attributes: Mapping[int, Mapping[str, Any]] = attributes or {}
        self._touches: Sequence[Touch] | None = None
        self._index: dict[str, int] | None = None
        n = self.lead.shape[0]
        if self.at.shape != (n,) or self.kind.shape != (n,) or self.lead.ndim != 1:
            msg = "lead, at and kind must be one-dimensional and of the same length"
            raise ValueError(msg)
        if touch_ids is not None and len(touch_ids) != n:
            msg = f"touch_ids has {len(touch_ids)} ids for {n} touches"
            raise ValueError(msg)
        if n and (self.lead.min() < 0 or self.lead.max() >= len(lead_ids)):
            msg = "a lead code is out of range of lead_ids"
            raise ValueError(msg)
        if n and (self.kind.min() < 0 or self.kind.max() >= len(self.kinds)):
            msg = "a kind code is out of range of kinds"
            raise ValueError(msg)
        for name, values in (("kind", self.kinds), ("lead_id", lead_ids)):
            for value in values:
                if not isinstance(value, str) or not value:
                    raise InvalidTouch(name, value, "a non-empty str")

    @classmethod
    def from_touches(cls, touches: Iterable[Touch]) -> TouchBatch:
        """The batch of *touches*, kept for exact materialisation (time zones, ids, mappings).

        Raises:
            InvalidTouch: An item is not a :class:`~buyerjourney.Touch`.
        """
        np = numpy_or_raise()
        kept = list(touches)
        leads: dict[str, int] = {}
        kinds: dict[str, int] = {}
        n = len(kept)
        lead = np.empty(n, np.int64)
        kind = np.empty(n, np.int64)
        at = np.empty(n, np.int64)
        properties: dict[int, Mapping[str, Any]] = {}
        attributes: dict[int, Mapping[str, Any]] = {}
        for i, touch in enumerate(kept):
            if not isinstance(touch, Touch):
                raise InvalidTouch("<touch>", touch, "a buyerjourney.Touch")
            lead[i] = leads.setdefault(touch.lead_id, len(leads))
            kind[i] = kinds.setdefault(touch.kind, len(kinds))
            at[i] = to_micros(touch.at)
            if touch.properties:
                properties[i] = touch.properties
            if touch.attributes:
                attributes[i] = touch.attributes
        batch = cls(
            list(leads),
            lead,
            at,
            list(kinds),
            kind,
            touch_ids=[t.touch_id for t in kept],
            properties=properties,
            attributes=attributes,
        )
        batch._touches = kept
        return batch

    def __len__(self) -> int:
        return int(self.lead.shape[0])

    def __repr__(self) -> str:
        return f"TouchBatch({len(self)} touches, {len(self.lead_ids)} leads)"

    def touch_id(self, i: int) -> str:
        """The id of touch *i*."""
        return f"t{i}" if self.touch_ids is None else self.touch_ids[i]

    def time(self, i: int) -> datetime:
        """The time of touch *i* (with the touch's own time zone when built from touches)."""
        if self._touches is not None:
            return self._touches[i].at
        return from_micros(int(self.at[i]))

    def touch(self, i: int) -> Touch:
        """Touch *i* as a :class:`~buyerjourney.Touch`."""
        if self._touches is not None:
            return self._touches[i]
        return Touch(
            self.touch_id(i),
            self.lead_ids[int(self.lead[i])],
            self.time(i),
            self.kinds[int(self.kind[i])],
            self.properties.get(i, {}),
            self.attributes.get(i, {}),
        )

    def touches(self) -> Iterator[Touch]:
        """Every touch, in order, as :class:`~buyerjourney.Touch` objects."""
        for i in range(len(self)):
            yield self.touch(i)

    def lead_index(self, lead_id: str) -> int:
        """The code of *lead_id*.

        Raises:
            KeyError: No touch of that lead.
        """
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self.lead_ids)}
        return self._index[lead_id]


# ---------------------------------------------------------------- decisions


class _Decisions:
    """The policy and the funnel compiled to ``(stage, symbol) -> outcome`` tables.

    A symbol is ``(kind * letters + letter) * buckets + bucket`` where the
    bucket says which of the policy's thresholds the score reaches and the
    letter is the column of the score's grade (:data:`_LETTER_GRADES`: none,
    ``A`` … ``D``) when the policy reads grades (a ``MatrixPolicy``), else 0:
    a built-in policy reads no more of a score than its value's bucket and
    its grade's letter.
    """

    def __init__(
        self,
        np: Any,
        pipeline: Pipeline,
        table: CompiledFunnel,
        kinds: Sequence[str],
        limits: Sequence[float],
        *,
        graded: bool = False,
    ) -> None:
        funnel = pipeline.funnel
        self.limits = np.array(limits, np.float64)
        self.buckets = len(limits) + 1
        grades = _LETTER_GRADES if graded else (None,)
        self.letters = len(grades)
        n_stages = len(funnel.stages)
        n_symbols = len(kinds) * self.letters * self.buckets
        self.outcome = np.zeros((n_stages, n_symbols), np.int8)  # _NONE ... _GUARDED
        self.arg = np.full((n_stages, n_symbols), -1, np.int64)
        self.event = np.full((n_stages, n_symbols), -1, np.int64)
        self.next = np.repeat(np.arange(n_stages, dtype=np.int64)[:, None], n_symbols, axis=1)
        self.events: list[str] = list(table.event_names)
        self.messages: list[str] = []
        self._message_index: dict[str, int] = {}
        self.reasons: dict[tuple[int, int], str] = {}
        self._cells: dict[tuple[int, str, str], tuple[int, int, int]] = {}
        self._table = table
        self._policy = pipeline.policy
        self._grades = grades
        self._built: set[int] = set()
        self._event_index = {name: i for i, name in enumerate(self.events)}
        # what the policy is asked with: a journey per stage, a touch per kind, a score per bucket
        self._stages = [
            (
                Journey(
                    lead_id="-", stage=stage, highest=stage, owner="-", created=EPOCH, updated=EPOCH
                ),
                funnel.stage(stage).gate,
            )
            for stage in funnel.stage_names
        ]
        self._touches = [Touch("-", "-", EPOCH, kind) for kind in kinds]
        self._values = [limits[0] - max(1.0, abs(limits[0])) if limits else 0.0, *limits]
        if not graded:
            self.ensure((0,))

    def ensure(self, letters: Iterable[int]) -> None:
        """Fill the table's columns of the grade *letters* (indices into the letters) once.

        The columns of a letter are built the first time a block has a score
        with a grade of that letter: the policy is asked once per stage,
        touch kind and score bucket.
        """
        policy = self._policy
        for c in letters:
            if c in self._built:
                continue
            self._built.add(c)
            if policy is None:
                continue
            grade = self._grades[c]
            scores = [Score(value, grade=grade) for value in self._values]
            for s, (stub, gate) in enumerate(self._stages):
                for k, touch in enumerate(self._touches):
                    base = (k * self.letters + c) * self.buckets
                    for b, score in enumerate(scores):
                        decision = policy(stub, score, touch)
                        if decision.event is not None:
                            self._compile(
                                self._table,
                                s,
                                base + b,
                                decision,
                                gate=gate,
                                event_index=self._event_index,
                            )

    def _compile(
        self,
        table: CompiledFunnel,
        s: int,
        sym: int,
        decision: Any,
        *,
        gate: bool,
        event_index: dict[str, int],
    ) -> None:
        event: str = decision.event
        if event not in event_index:
            event_index[event] = len(self.events)
            self.events.append(event)
        self.event[s, sym] = event_index[event]
        reason: str = decision.reason
        self.reasons[(s, sym)] = reason
        key = (s, event, reason)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = self._cell(table, s, event, reason, gate=gate)
        outcome, arg, target = cell
        self.outcome[s, sym] = outcome
        if outcome != _NONE:
            self.arg[s, sym] = arg
        if outcome == _MOVE:
            self.next[s, sym] = target

    def _cell(
        self, table: CompiledFunnel, s: int, event: str, reason: str, *, gate: bool
    ) -> tuple[int, int, int]:
        """What *event* sent with *reason* does from stage *s*: ``(outcome, arg, next stage)``."""
        stage = table.stage_names[s]
        if gate:
            return _REFUSE, self.message(lifecycle.AWAITS_ACCEPTANCE.format(stage=stage)), s
        if event not in table.event_index:
            try:
                table.step(stage, event, None, reason=reason)
            except TransitionNotAllowed as exc:
                return _REFUSE, self.message(str(exc)), s
            return _NONE, -1, s
        e = table.event_index[event]
        candidates = table.table.get((s, e), ())
        if any(guard is not None for _, _, guard, _ in candidates):
            return _GUARDED, -1, s
        try:
            t = table.step_index(s, e, None, reason)
        except TransitionNotAllowed as exc:
            return _REFUSE, self.message(str(exc)), s
        return _MOVE, t, table.target_of(t)

    def message(self, text: str) -> int:
        index = self._message_index.get(text)
        if index is None:
            index = self._message_index[text] = len(self.messages)
            self.messages.append(text)
        return index


# ---------------------------------------------------------------- journeys


class JourneyStore:
    """Journeys as columns: one row per lead, about 40 bytes plus the lead id.

    Columns (NumPy arrays, one row per lead code of the batch): ``stage``,
    ``highest``, ``owner`` (codes, int8 or wider), ``score`` (float64), ``version`` (int32),
    ``pending``, ``escalated`` (bool), ``created``, ``updated``, ``entered``
    (microseconds since 1970 UTC; ``entered`` is when the current stage was
    entered). Leads that have no journey (every touch of theirs was set
    aside) have ``version == 0``.

    :class:`~buyerjourney.Journey` objects, with their per-stage
    time bookkeeping, grade and attributes, are materialised on demand from
    the log and the touches. Looking a lead id up builds, on first use, an
    index of 12 bytes per lead (the ids' hashes, sorted, and their codes)
    rather than a dict (about 60 bytes per lead with its int objects).
    """

    COLUMNS: tuple[str, ...] = JOURNEY_COLUMNS

    def __init__(
        self,
        columns: dict[str, Array],
        lead_ids: Sequence[str],
        materialize: Callable[[int], Journey],
    ) -> None:
        self.columns = columns
        self.lead_ids = lead_ids
        self._materialize = materialize
        self._index: tuple[Array, Array] | None = None

    def __len__(self) -> int:
        return int((self.columns["version"] > 0).sum())

    def __repr__(self) -> str:
        return f"JourneyStore({len(self)} journeys)"

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (not counting the lead ids)."""
        return sum(int(a.nbytes) for a in self.columns.values())

    @property
    def index_nbytes(self) -> int:
        """Bytes held by the lookup index (0 until the first lookup)."""
        return 0 if self._index is None else sum(int(a.nbytes) for a in self._index)

    def __contains__(self, lead_id: object) -> bool:
        code = self._code(lead_id)
        return code is not None and bool(self.columns["version"][code] > 0)

    def _code(self, lead_id: object) -> int | None:
        """The code of *lead_id* (the last one, should an id repeat), or ``None``."""
        if not isinstance(lead_id, str):
            return None
        if self._index is None:
            np = numpy_or_raise()
            ids = self.lead_ids
            hashes = np.fromiter(map(hash, ids), np.int64, len(ids))
            order = np.argsort(hashes, kind="stable")
            narrow = np.int32 if len(ids) < 2**31 else np.int64
            self._index = (hashes[order], order.astype(narrow))
        hashes, codes = self._index
        key = hash(lead_id)
        lo = int(hashes.searchsorted(key, side="left"))
        hi = int(hashes.searchsorted(key, side="right"))
        for k in range(hi - 1, lo - 1, -1):
            code = int(codes[k])
            if self.lead_ids[code] == lead_id:
                return code
        return None

    def __getitem__(self, lead_id: str) -> Journey:
        code = self._code(lead_id)
        if code is None or not self.columns["version"][code] > 0:
            raise KeyError(lead_id)
        return self._materialize(code)

    def _codes(self) -> list[int]:
        return (self.columns["version"] > 0).nonzero()[0].tolist()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        for code in self._codes():
            yield self.lead_ids[code]

    def to_dict(self) -> dict[str, Journey]:
        """Every journey, materialised, by lead id."""
        return {self.lead_ids[code]: self._materialize(code) for code in self._codes()}


# ---------------------------------------------------------------- result


class Replay:
    """What :func:`replay` produced.

    Attributes:
        mode: The path taken: ``"columnar"``, ``"hooks"`` or ``"reference"``.
        reasons: Why a faster path was not taken.
        log: The log, as columns.
        journeys: The journeys, as columns.
        quarantined: Touches set aside, with position and reason (as
            :meth:`Engine.ingest <buyerjourney.Engine.ingest>` reports them).
        accepted: How many touches were ingested.
        duplicates: How many touches were skipped because their id came
            before (counted, as :meth:`Engine.ingest <buyerjourney.Engine.ingest>` counts them).
    """

    def __init__(
        self,
        mode: str,
        reasons: tuple[str, ...],
        log: ColumnarLog,
        journeys: JourneyStore | Mapping[str, Journey],
        *,
        quarantined: tuple[Quarantined, ...],
        accepted: int,
        kept: _Kept | None = None,
        duplicates: int = 0,
    ) -> None:
        self.mode = mode
        self.reasons = reasons
        self.log = log
        self.journeys = journeys
        self.quarantined = quarantined
        self.accepted = accepted
        self.duplicates = duplicates
        self._kept = kept  # what the columnar paths keep (the batch replay reads its touches)

    def __repr__(self) -> str:
        return (
            f"Replay(mode={self.mode!r}, accepted={self.accepted}, records={len(self.log)}, "
            f"quarantined={len(self.quarantined)})"
        )

    def records(self) -> list[Record]:
        """The log, materialised."""
        return self.log.records()

    def journey_dict(self) -> dict[str, Journey]:
        """The journeys, materialised, by lead id."""
        if isinstance(self.journeys, JourneyStore):
            return self.journeys.to_dict()
        return dict(self.journeys)

    def summary(self) -> ReplaySummary:
        """The stage summary (as :func:`buyerjourney.summarize`), computed on the columns."""
        return summarize_columnar(self.log)

    def funnel_report(
        self,
        *,
        path: Sequence[str] | None = None,
        order: str = "ordered",
        window: timedelta | None = None,
        as_of: datetime | str | None = None,
        since: datetime | str | None = None,
    ) -> DistributedFunnelReport:
        """The full funnel report, computed on the columns (see :func:`columnar_funnel_report`).

        Its ``to_dict()`` equals that of
        :func:`buyerjourney.analytics.funnel_report` over :meth:`records`
        with the same options.

        Raises:
            UnknownStage, ValueError, InvalidTouch: As
                :func:`buyerjourney.analytics.funnel_report`.
        """
        return columnar_funnel_report(
            self.log, path=path, order=order, window=window, as_of=as_of, since=since
        )


# ---------------------------------------------------------------- replay


class _Fallback(Exception):
    """The batch needs the reference engine (a guard failed, ...)."""


def replay(
    pipeline: Pipeline,
    touches: Iterable[Touch] | TouchBatch,
    *,
    mode: Mode = "auto",
    errors: Literal["quarantine", "raise"] = "quarantine",
    until: datetime | None = None,
) -> Replay:
    """Replay a time-ordered batch of touches into a fresh log and fresh journeys.

    The result equals ``pipeline.engine()`` fed the same touches with
    :meth:`~buyerjourney.Engine.ingest` (and, with *until*, then advanced
    to *until* with :meth:`~buyerjourney.Engine.advance`): the same
    records, journeys and quarantined touches.

    Args:
        pipeline: The funnel, owners, hooks, scorer, policy and thresholds.
        touches: The touches, in time order: :class:`~buyerjourney.Touch`
            objects or a :class:`TouchBatch`.
        mode: ``"auto"`` (the fastest path :func:`plan` allows), or a path to
            force: ``"columnar"`` and ``"hooks"`` raise
            :class:`~buyerjourney.errors.ModeNotPossible` (a ``ValueError``)
            when the plan of the pipeline does not allow them;
            ``"reference"`` always works. A batch that the engine would
            quarantine touches of, or that exceeds a limit of the kernel
            (a lead whose score could leave the exact range), still takes
            the slower exact path, and :attr:`Replay.reasons` says why.
        errors: As for :meth:`~buyerjourney.Engine.ingest`.
        until: The clock at the end of the replay (an aware datetime): every
            SLA deadline up to and including it is escalated, as
            ``engine.advance(until)`` does. ``None``: the clock stops at the
            batch's last touch. A batch that is one part of a larger stream
            needs the stream's end here, or the escalations due after its
            own last touch are missing.

    Raises:
        MissingExtra: NumPy is not installed.
        ModeNotPossible: The forced mode is not possible for this pipeline (a
            ``ValueError``); its reasons are :attr:`Plan.reasons`.
        HookError: With ``errors="raise"``, a hook failed.
        InvalidAction: *until* is not an aware time, or is before the
            batch's last touch.
    """
    np = numpy_or_raise()
    batch = touches if isinstance(touches, TouchBatch) else TouchBatch.from_touches(touches)
    clock = _clock(batch, until)
    compiled = compile_plan(pipeline)
    chosen = compiled.plan
    if mode != "auto" and _RANK[mode] < _RANK[chosen.mode]:
        raise _not_possible(pipeline, mode, chosen)
    path = chosen.mode if mode == "auto" else mode
    reasons = chosen.reasons
    if path != "reference":
        problem = _batch_problem(np, batch, pipeline.funnel)
        if problem is None:
            if path == "columnar":
                limit = batch_problem(np, compiled, batch.lead, batch.at)
                if limit is not None:
                    path, reasons = "hooks", (*reasons, limit)
            try:
                run = _Run(
                    np,
                    pipeline,
                    batch,
                    compiled,
                    columnar=path == "columnar",
                    errors=errors,
                    until=clock,
                )
                return run.result(path, reasons)
            except _Fallback as exc:
                reasons = (*reasons, str(exc))
        else:
            reasons = (*reasons, problem)
    return _reference(pipeline, batch, reasons, errors, until)


def _clock(batch: TouchBatch, until: datetime | None) -> int | None:
    """*until* in microseconds, checked against the batch's last touch (``None``: no clock)."""
    if until is None:
        return None
    if not isinstance(until, datetime) or until.utcoffset() is None:
        raise InvalidAction("replay", "until", until, "a timezone-aware datetime")
    micros = to_micros(until)
    last = int(batch.at.max()) if len(batch) else None
    if last is not None and micros < last:
        raise InvalidAction(
            "replay",
            "until",
            until,
            f"a time not before the batch's last touch ({from_micros(last).isoformat()})",
        )
    return micros


def _not_possible(pipeline: Pipeline, mode: str, chosen: Plan) -> ModeNotPossible:
    """The error for a forced *mode* that the plan rejects, with every reason."""
    return ModeNotPossible(mode, chosen.mode, chosen.reasons)


def _batch_problem(np: Any, batch: TouchBatch, funnel: Funnel) -> str | None:
    """Why the engine must replay this batch itself (it would set touches aside, or fail)."""
    if len(batch) > 1 and bool((batch.at[1:] < batch.at[:-1]).any()):
        return "touches are not in time order (the engine quarantines those)"
    if batch.touch_ids is not None and len(set(batch.touch_ids)) != len(batch.touch_ids):
        return "touch ids repeat (the engine quarantines duplicates)"
    slas = [stage.sla for stage in funnel.stages if stage.sla is not None]
    if slas and len(batch):
        # A deadline is a datetime: past the year 9999 the engine cannot compute
        # it (and raises); the columns could, so leave it to the engine.
        longest = max(slas)
        if int(batch.at.max()) + (longest + _SLA_MARGIN) // MICROSECOND > _LAST_MICROS:
            return (
                f"an SLA of {longest} from a touch of this batch ends after the year 9999, "
                "which a datetime cannot hold"
            )
    return None


def _reference(
    pipeline: Pipeline,
    batch: TouchBatch,
    reasons: tuple[str, ...],
    errors: Literal["quarantine", "raise"],
    until: datetime | None = None,
) -> Replay:
    engine = pipeline.engine()
    report = engine.ingest(batch.touches(), errors=errors)
    if until is not None:
        engine.advance(until)
    records = engine.records
    log = ColumnarLog.from_records(pipeline.funnel, records)
    return Replay(
        "reference",
        reasons,
        log,
        dict(engine.journeys),
        quarantined=report.quarantined,
        accepted=report.accepted,
        duplicates=report.duplicates,
    )


def _valid_score(score: object) -> bool:
    """Whether *score* keeps the scorer contract (``False``: ask ``checked_score`` for the error).

    The contract itself has one home, :func:`~buyerjourney._core.scoring.score_problem`.
    """
    return score_problem(score) is None


_BLOCK_TOUCHES = 1 << 19
"""Touches per block of leads.

A batch larger than this is replayed in blocks of whole leads: each block's
lead-sorted arrays (a few dozen bytes per touch) stay in the CPU cache, where
one sort and one pass over the whole batch would gather at random from main
memory. Blocks only change where the work is done, never its result (the
tests replay in blocks of a few touches and compare).
"""

_TAIL = 64
"""Below this many touches in a round, the remaining rounds are stepped in Python."""


class _Run:
    """One columnar (or hooks) replay of a batch: blocks of leads, then the log and the journeys.

    Nothing of the run is kept by the result: :class:`_Kept` copies out what
    materialising records and journeys needs.
    """

    def __init__(
        self,
        np: Any,
        pipeline: Pipeline,
        batch: TouchBatch,
        compiled: Compiled,
        *,
        columnar: bool,
        errors: Literal["quarantine", "raise"],
        block: int | None = None,
        until: int | None = None,
    ) -> None:
        self.np = np
        self.pipeline = pipeline
        self.funnel: Funnel = pipeline.funnel
        self.batch = batch
        self.errors = errors
        self.table = compile_funnel(self.funnel, pipeline.hooks)
        self.scorer_name = hook_name(pipeline.scorer, "scorer")
        self.policy_name = hook_name(pipeline.policy, "policy")
        self.actor = lifecycle.policy_actor(self.policy_name)
        self.owners = pipeline.owners
        self.owners.validate(self.funnel)
        self.teams: list[str] = list(
            dict.fromkeys((*self.owners.teams, *self.owners.defaults.values()))
        )
        self._team_index = {name: i for i, name in enumerate(self.teams)}
        self.quarantined: list[Quarantined] = []
        self.grades: dict[int, str] = {}
        self.grade_codes: Array | None = None
        """Per batch position, the grade's code on the fit ladder (a graded scorer or policy)."""
        self.accepted_mask: Array | None = None
        self._attr_events: dict[int, list[tuple[int, Mapping[str, Any]]]] | None = None
        self.thresholds = tuple(sorted(set(pipeline.thresholds)))
        n = len(batch)
        scores: Array | None = None
        if columnar:
            positions = np.arange(n)
        else:
            positions, scores = self._run_hook_scores()
        self.accepted = int(positions.shape[0])
        self.scorer_grades_columnar = (
            columnar and compiled.scorer is not None and compiled.scorer.fit is not None
        )
        if self.scorer_grades_columnar:
            self.grade_codes = np.full(n, NO_GRADE, np.int8)
        elif not columnar and compiled.graded:
            self.grade_codes = self._hook_grade_codes()
        self.dec = _Decisions(
            np, pipeline, self.table, batch.kinds, compiled.limits, graded=compiled.graded
        )
        self.clock = int(batch.at[-1]) if n else 0
        if until is not None:
            self.clock = max(self.clock, until)
        spec = compiled.scorer if columnar else None
        size = _BLOCK_TOUCHES if block is None else block
        blocks = [
            _Block(self, part, attributes, columnar=columnar, spec=spec, scores=scores)
            for part, attributes in self._blocks(positions, size, spec)
        ]
        columns = self._write_log(blocks)
        kept = self.kept = _Kept(self, columns)
        self.log = ColumnarLog(
            self.funnel,
            columns,
            lead_ids=batch.lead_ids,
            teams=self.teams,
            events=self.dec.events,
            messages=self.dec.messages,
            materialize=kept.record,
        )
        self.journeys = JourneyStore(self._journeys(blocks), batch.lead_ids, kept.journey)

    def result(self, mode: str, reasons: tuple[str, ...]) -> Replay:
        return Replay(
            mode,
            reasons,
            self.log,
            self.journeys,
            quarantined=tuple(self.quarantined),
            accepted=self.accepted,
            kept=self.kept,
        )

    # ------------------------------------------------------------ blocks

    def _blocks(
        self, positions: Array, size: int, spec: Any
    ) -> Iterator[tuple[Array, Mapping[int, Mapping[str, Any]]]]:
        """The accepted positions of each block of whole leads (ascending), with their attributes.

        Blocks are ranges of lead codes holding about *size* touches (a lead
        with more has a block of its own).
        """
        np, batch = self.np, self.batch
        attributes = batch.attributes
        n = positions.shape[0]
        if n <= size:
            yield positions, attributes
            return
        leads = batch.lead if n == len(batch) else batch.lead[positions]
        counts = np.bincount(leads, minlength=len(batch.lead_ids))
        before = np.cumsum(counts) - counts
        block_of_lead = before // size
        n_blocks = int(block_of_lead[-1]) + 1
        # a stable sort of small integer keys is a radix sort in NumPy
        code = block_of_lead.astype(np.int16 if n_blocks < 2**15 else np.int64)[leads]
        order = np.argsort(code, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(code, minlength=n_blocks)))).tolist()
        by_block: list[dict[int, Mapping[str, Any]]] | None = None
        if spec is not None and (spec.attribute_rules or spec.fit is not None) and attributes:
            # only the attribute points and the fit grade need them: split them by block once
            by_block = [{} for _ in range(n_blocks)]
            for pos, learned in attributes.items():
                if 0 <= pos < len(batch):
                    by_block[int(block_of_lead[int(batch.lead[pos])])][pos] = learned
        # when every touch is accepted, positions are 0 .. n - 1
        positions = order if n == len(batch) else positions[order]
        del order, code
        for b in range(n_blocks):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                yield positions[lo:hi], (by_block[b] if by_block is not None else {})

    # ------------------------------------------------------------ scores

    def _run_hook_scores(self) -> tuple[Array, Array]:  # noqa: PLR0915  (the per-touch loop is kept flat)
        """Call the scorer once per touch, with the :class:`Lead` it would get from the engine.

        Returns the accepted positions and the score of every position.
        """
        from buyerjourney._core.scoring import Lead  # noqa: PLC0415

        np, batch = self.np, self.batch
        scorer = self.pipeline.scorer
        n = len(batch)
        values = [0.0] * n
        ok = np.ones(n, bool)
        state: dict[int, list[Any]] = {}
        empty: Mapping[str, Any] = MappingProxyType({})
        name = self.scorer_name
        leads = batch.lead.tolist()
        lead_ids = batch.lead_ids
        learned_at = batch.attributes
        touches = batch._touches
        new_lead = object.__new__
        set_field = object.__setattr__
        source = touches if touches is not None else batch.touches()
        for i, (touch, code) in enumerate(zip(source, leads, strict=True)):
            lead_state = state.get(code)
            if lead_state is None:
                lead_state = state[code] = [(), empty]
            history, merged = lead_state
            if learned_at:
                learned = learned_at.get(i)
                if learned:
                    merged = MappingProxyType({**merged, **learned})
            history = (*history, touch)
            if scorer is not None:
                lead = new_lead(Lead)
                set_field(lead, "lead_id", lead_ids[code])
                set_field(lead, "attributes", merged)
                set_field(lead, "touches", history)
                try:
                    score = scorer(lead, touch.at)
                except Exception:
                    score = None
                if not _valid_score(score):
                    try:
                        score = checked_score(name, scorer, lead, touch.at, touch.touch_id)
                    except HookError as exc:
                        if self.errors == "raise":
                            raise
                        ok[i] = False
                        self.quarantined.append(Quarantined(i, str(exc), touch, exc))
                        continue
                    if not exact_float(score.value):
                        raise _Fallback(f"scorer returned {score.value!r}, not exactly a float")
                values[i] = score.value  # type: ignore[union-attr]
                grade = score.grade  # type: ignore[union-attr]
                if grade is not None:
                    self.grades[i] = grade
            lead_state[0] = history
            lead_state[1] = merged
        self.accepted_mask = ok
        return np.flatnonzero(ok), np.array(values, np.float64)

    def _hook_grade_codes(self) -> Array:
        """The codes of the grades the scorer gave, for a policy that reads them.

        Raises:
            _Fallback: A grade is not on the fit ladder: the matrix policy
                fails on it, which the engine reports.
        """
        codes = self.np.full(len(self.batch), NO_GRADE, self.np.int8)
        for position, grade in self.grades.items():
            code = _GRADE_CODE.get(grade)
            if code is None:
                raise _Fallback(
                    f"the scorer graded a lead {grade!r}, which is not on the fit ladder a "
                    "MatrixPolicy reads (the engine reports the policy's failure)"
                )
            codes[position] = code
        return codes

    # ------------------------------------------------------------ helpers

    def _attributes_at(self, lead: int, position: int) -> dict[str, Any]:
        """The lead's merged attributes after the touch at *position* (accepted touches only)."""
        events = self._attribute_events().get(lead, ())
        merged: dict[str, Any] = {}
        for pos, learned in events:
            if pos > position:
                break
            merged.update(learned)
        return merged

    def _attribute_events(self) -> dict[int, list[tuple[int, Mapping[str, Any]]]]:
        if self._attr_events is not None:
            return self._attr_events
        ok = self.accepted_mask
        events: dict[int, list[tuple[int, Mapping[str, Any]]]] = {}
        leads = self.batch.lead
        for pos in sorted(self.batch.attributes):
            if ok is None or ok[pos]:
                events.setdefault(int(leads[pos]), []).append((pos, self.batch.attributes[pos]))
        self._attr_events = events
        return events

    def _team(self, name: str) -> int:
        index = self._team_index.get(name)
        if index is None:
            index = self._team_index[name] = len(self.teams)
            self.teams.append(name)
        return index

    def _break_ties(self, esc: Array, deadline: Array, at_pos: Array, e: _Escalations) -> Array:
        """Order escalations of one instant as the engine's heap does: lead id, stage, entered."""
        names = self.funnel.stage_names
        lead_ids = self.batch.lead_ids

        def key(j: int) -> tuple[int, int, str, str, int]:
            i = int(esc[j])
            return (
                int(at_pos[j]),
                int(deadline[j]),
                lead_ids[int(e.lead[i])],
                names[int(e.stage[i])],
                int(e.entered[i]),
            )

        return esc[sorted(range(esc.shape[0]), key=key)]

    # ------------------------------------------------------------ the log

    def _escalations(self, blocks: Sequence[_Block]) -> tuple[_Escalations, Array]:
        """Every block's escalations, in log order, and the position each one precedes."""
        np, batch = self.np, self.batch
        e = _Escalations.concatenate(np, [b.escalations for b in blocks])
        deadline = e.deadline
        at_pos = np.searchsorted(batch.at, deadline, side="left")
        esc = np.lexsort((deadline, at_pos))
        if esc.shape[0] > 1:
            d, p = deadline[esc], at_pos[esc]
            if ((p[1:] == p[:-1]) & (d[1:] == d[:-1])).any():
                esc = self._break_ties(esc, d, p, e)
        e = e.take(esc)
        return e, at_pos[esc]

    def _write_log(self, blocks: Sequence[_Block]) -> dict[str, Array]:
        """Lay the records out in seq order: a touch's escalations, then its own records."""
        np, batch = self.np, self.batch
        n_all = len(batch)
        esc, esc_at_pos = self._escalations(blocks)
        # an escalation is written just before the first touch at or after its
        # deadline (or after the last touch)
        esc_before = esc_at_pos[esc_at_pos < n_all]
        own = np.zeros(n_all, np.int64)  # records per touch, its escalations included
        for b in blocks:
            own[b.positions] = b.count
        np.add.at(own, esc_before, 1)
        start = np.zeros(n_all + 1, np.int64)
        np.cumsum(own, out=start[1:])
        total = int(start[-1]) + int(esc_at_pos.shape[0] - esc_before.shape[0])
        dtypes = log_dtypes(
            np,
            leads=len(batch.lead_ids),
            touches=n_all,
            stages=len(self.funnel.stages),
            teams=len(self.teams),
            events=len(self.dec.events),
            aux=max(n_all, len(self.dec.messages), len(self.thresholds)),
        )
        columns = new_log_columns(np, total, dtypes, kind=SCORED)
        # every record of a touch shares its lead, time and touch: write them in
        # one pass over the batch, a block's worth of touches at a time (the
        # escalations' rows are rewritten below)
        bounds = [*range(0, n_all, _BLOCK_TOUCHES), n_all]
        for lo, hi in itertools.pairwise(bounds):
            rows = slice(int(start[lo]), int(start[hi]))
            span = own[lo:hi]
            columns["lead"][rows] = np.repeat(batch.lead[lo:hi], span)
            columns["at"][rows] = np.repeat(batch.at[lo:hi], span)
            columns["touch"][rows] = np.repeat(np.arange(lo, hi), span)
        first_row = own  # the first of each touch's own records, after its escalations
        np.copyto(first_row, start[:n_all])
        np.add.at(first_row, esc_before, 1)
        del own
        for b in blocks:
            self._write_rows(columns, b, first_row)
        if esc.deadline.shape[0]:
            lead_first = np.ones(esc_at_pos.shape[0], bool)
            np.not_equal(esc_at_pos[1:], esc_at_pos[:-1], out=lead_first[1:])
            group_start = np.flatnonzero(lead_first)[np.cumsum(lead_first) - 1]
            seq = start[esc_at_pos] + (np.arange(esc_at_pos.shape[0]) - group_start)
            columns["kind"][seq] = ESCALATION
            columns["lead"][seq] = esc.lead
            columns["at"][seq] = esc.deadline
            columns["touch"][seq] = -1
            columns["source"][seq] = esc.stage
            columns["to_team"][seq] = esc.team
            columns["aux"][seq] = esc.position
        self._escalated = esc
        self._records = total
        return columns

    def _write_rows(self, columns: dict[str, Array], b: _Block, first_row: Array) -> None:
        """Write the kind-specific fields of the records of block *b*'s touches."""
        np = self.np
        kind, source, target, from_team, to_team, event, score, aux = (
            columns[c]
            for c in ("kind", "source", "target", "from_team", "to_team", "event", "score", "aux")
        )
        base = first_row[b.positions]
        # created
        seq = base[b.created]
        kind[seq] = CREATED
        target[seq] = self.table.initial_index
        to_team[seq] = b.created_team
        # scored
        first = np.zeros(base.shape[0], np.int64)
        first[b.created] = 1
        base += first
        score[base] = b.score
        # thresholds, ascending
        offset = base
        offset += 1
        for h, c in enumerate(b.crossed):
            seq = offset[c]
            kind[seq] = THRESHOLD
            score[seq] = b.score[c]
            aux[seq] = h
            offset[c] += 1
        # decisions
        seq = offset[b.decided]
        kind[seq] = b.decided_kind
        event[seq] = b.decided_event
        source[seq] = b.decided_source
        target[seq] = b.decided_target
        aux[seq] = b.decided_arg
        seq = offset[b.handoff] + 1
        kind[seq] = HANDOFF
        target[seq] = b.handoff_stage
        from_team[seq] = b.handoff_from
        to_team[seq] = b.handoff_to

    # ------------------------------------------------------------ journeys

    def _journeys(self, blocks: Sequence[_Block]) -> dict[str, Array]:
        np, batch = self.np, self.batch
        n_leads = len(batch.lead_ids)
        funnel = self.funnel
        dtypes = journey_dtypes(
            np, stages=len(funnel.stages), teams=len(self.teams), records=self._records
        )
        columns = {
            name: np.zeros(n_leads, dtypes[name])
            for name in ("stage", "highest", "owner", "score", "version", "escalated")
        }
        for name in ("created", "updated", "entered"):
            columns[name] = np.zeros(n_leads, np.int64)
        version = np.zeros(n_leads, np.int64)
        for b in blocks:
            j = b.journeys
            code = j.pop("lead")
            version[code] = j.pop("version")
            for name, values in j.items():
                columns[name][code] = values
        esc = self._escalated
        if esc.lead.shape[0]:
            version += np.bincount(esc.lead, minlength=n_leads)
            np.maximum.at(columns["updated"], esc.lead, esc.deadline)
        columns["version"][:] = version
        gate = np.array([s.gate for s in funnel.stages], bool)
        columns["pending"] = gate[columns["stage"]] & (version > 0)
        return {name: columns[name] for name in JOURNEY_COLUMNS}


class _Escalations:
    """SLA escalations as columns: lead code, deadline, stage, team, entry touch and its time."""

    __slots__ = ("deadline", "entered", "lead", "position", "stage", "team")

    def __init__(  # noqa: PLR0917  (one column each)
        self,
        lead: Array,
        deadline: Array,
        stage: Array,
        team: Array,
        position: Array,
        entered: Array,
    ) -> None:
        self.lead = lead
        self.deadline = deadline
        self.stage = stage
        self.team = team
        self.position = position
        self.entered = entered

    def take(self, index: Array) -> _Escalations:
        return _Escalations(*(getattr(self, name)[index] for name in _ESCALATION_FIELDS))

    @classmethod
    def concatenate(cls, np: Any, parts: Sequence[_Escalations]) -> _Escalations:
        if len(parts) == 1:
            return parts[0]
        return cls(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in _ESCALATION_FIELDS)
        )


_ESCALATION_FIELDS = ("lead", "deadline", "stage", "team", "position", "entered")


class _Block:
    """The vectorised lifecycle of one block of whole leads.

    Scores, decisions, owners and SLAs are computed on the block's touches
    sorted by lead; what the log writer and the journeys need is kept, in
    the block's position order (ascending batch positions), and the rest is
    dropped with the block's working arrays.

    Kept, per touch: ``positions``, ``count`` (its records, escalations aside)
    and ``score``; per record kind, the block indices of the touches that
    write one and its fields (``created``, ``crossed``, ``decided``,
    ``handoff``); the block's escalations; and its leads' journey columns.
    """

    def __init__(
        self,
        run: _Run,
        positions: Array,
        attributes: Mapping[int, Mapping[str, Any]],
        *,
        columnar: bool,
        spec: Any,
        scores: Array | None,
    ) -> None:
        np, batch = run.np, run.batch
        self.run = run
        self.positions = positions
        whole = positions.shape[0] == len(batch)  # then positions are 0 .. n - 1
        g = Groups(
            np,
            batch.lead if whole else batch.lead[positions],
            batch.at if whole else batch.at[positions],
        )
        self.g = g
        self.pos_sorted = g.order if whole else positions[g.order]
        self.kind_sorted = batch.kind[self.pos_sorted]
        if scores is not None:
            self.score_sorted = scores[self.pos_sorted]
        elif spec is None:  # the plan is columnar: there is no scorer
            assert run.pipeline.scorer is None
            self.score_sorted = np.zeros(positions.shape[0], np.float64)
        else:
            micro = columnar_scores(
                np,
                spec,
                g,
                self.kind_sorted,
                kinds=batch.kinds,
                properties=batch.properties,
                attributes=attributes,
                positions=None if whole else self.pos_sorted,
            )
            self.score_sorted = micro / SCALE
            if spec.fit is not None:
                assert run.grade_codes is not None
                run.grade_codes[self.pos_sorted] = fit_grades(
                    np,
                    spec.fit,
                    g,
                    attributes=attributes,
                    positions=None if whole else self.pos_sorted,
                )
        self._decide()
        self._owners_and_sla()
        self._keep()
        del self.run, self.g, self.pos_sorted, self.kind_sorted, self.score_sorted

    # ------------------------------------------------------------ decisions

    def _decide(self) -> None:  # noqa: PLR0915  (policy and funnel, in order)
        run, g = self.run, self.g
        np, dec = run.np, run.dec
        n = g.order.shape[0]
        score_sorted = self.score_sorted
        old = np.empty(n, np.float64)
        if n:
            old[1:] = score_sorted[:-1]
        old[g.first] = 0.0
        crossings = []
        for threshold in run.thresholds:
            t = float(threshold)
            up = (old < t) & (t <= score_sorted)
            down = (score_sorted < t) & (t <= old)
            crossings.append(up | down)
        self.crossings = crossings
        initial = run.table.initial_index
        bucket = np.searchsorted(dec.limits, score_sorted, side="right")
        sym = self.kind_sorted * dec.letters
        if dec.letters > 1 and run.grade_codes is not None:
            letter_of = np.array((0, *_LETTER_OF_CODE), np.int64)  # by grade code - NO_GRADE
            letter = letter_of[run.grade_codes[self.pos_sorted].astype(np.int64) - NO_GRADE]
            dec.ensure(np.flatnonzero(np.bincount(letter, minlength=dec.letters)).tolist())
            sym += letter
        else:  # no score has a grade (or the policy reads none)
            dec.ensure((0,))
        sym *= dec.buckets
        sym += bucket
        state = np.full(len(g.starts), initial, np.int64)
        before = np.full(n, initial, np.int64)
        n_symbols = dec.outcome.shape[1]
        next_flat = dec.next.ravel()
        outcome_flat = dec.outcome.ravel()
        guarded_at: dict[int, tuple[int, int]] = {}
        any_guarded = bool((dec.outcome == _GUARDED).any())
        active_sym = (dec.outcome != _NONE).any(axis=0)
        active = np.flatnonzero(active_sym[sym]) if active_sym.shape[0] else np.zeros(0, np.int64)
        if active.shape[0]:
            # one round per touch rank (among each lead's deciding touches): every
            # lead's k-th such touch is stepped at once with table lookups
            grp = g.group[active]
            first = np.ones(active.shape[0], bool)
            np.not_equal(grp[1:], grp[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            rank = np.arange(active.shape[0]) - starts[np.cumsum(first) - 1]
            by_rank = active[stable_order(np, rank)]
            groups_by_rank = g.group[by_rank]
            sym_by_rank = sym[by_rank]
            bounds = np.concatenate(([0], np.cumsum(np.bincount(rank)))).tolist()
            for r in range(len(bounds) - 1):
                lo, hi = bounds[r], bounds[r + 1]
                if hi - lo < _TAIL:
                    # a few long histories are left: step them touch by touch
                    self._tail(np.sort(by_rank[lo:]), sym, state, before, guarded_at)
                    break
                groups = groups_by_rank[lo:hi]
                s = state[groups]
                code = s * n_symbols + sym_by_rank[lo:hi]
                nxt = next_flat[code]
                before[by_rank[lo:hi]] = s
                if any_guarded:
                    for j in np.flatnonzero(outcome_flat[code] == _GUARDED).tolist():
                        i = int(by_rank[lo + j])
                        result, value = self._guarded(i, int(s[j]), int(sym_by_rank[lo + j]))
                        guarded_at[i] = (result, value)
                        nxt[j] = run.table.target_of(value) if result == _MOVE else s[j]
                state[groups] = nxt
        code = before * n_symbols + sym
        outcome = outcome_flat[code]
        arg = dec.arg.ravel()[code].astype(np.int64)
        event = dec.event.ravel()[code].astype(np.int64)
        for i, (result, value) in guarded_at.items():
            outcome[i] = result
            arg[i] = value
        self.state = state
        self.before = before
        self.outcome = outcome
        self.arg = arg
        self.event = event
        after = before.copy()
        moves = outcome == _MOVE
        table = run.table
        targets = np.array(
            [table.target_of(t) for t in range(len(table.transitions))] or [0], np.int64
        )
        after[moves] = targets[arg[moves]]
        self.after = after

    def _tail(
        self,
        rest: Array,
        sym: Array,
        state: Array,
        before: Array,
        guarded_at: dict[int, tuple[int, int]],
    ) -> None:
        """Step the deciding touches *rest* (lead-sorted indices, ascending) one by one."""
        run = self.run
        dec = run.dec
        n_symbols = dec.outcome.shape[1]
        next_flat = dec.next.ravel().tolist()
        outcome_flat = dec.outcome.ravel().tolist()
        group = self.g.group[rest].tolist()
        symbols = sym[rest].tolist()
        stages: dict[int, int] = {}
        seen = []
        for i, grp, symbol in zip(rest.tolist(), group, symbols, strict=True):
            s = stages.get(grp)
            if s is None:
                s = int(state[grp])
            seen.append(s)
            code = s * n_symbols + symbol
            nxt = next_flat[code]
            if outcome_flat[code] == _GUARDED:
                result, value = self._guarded(i, s, symbol)
                guarded_at[i] = (result, value)
                nxt = run.table.target_of(value) if result == _MOVE else s
            stages[grp] = nxt
        before[rest] = seen
        if stages:
            state[list(stages)] = list(stages.values())

    def _guarded(self, i: int, stage: int, sym: int) -> tuple[int, int]:
        """Step a guarded transition in Python: ``(_MOVE, t)`` or ``(_REFUSE, message)``."""
        run = self.run
        dec = run.dec
        event = dec.events[int(dec.event[stage, sym])]
        reason = dec.reasons[(stage, sym)]
        pos = int(self.pos_sorted[i])
        lead = int(run.batch.lead[pos])
        ctx = Context(
            lead_id=run.batch.lead_ids[lead],
            stage=run.funnel.stage_names[stage],
            event=event,
            attributes=run._attributes_at(lead, pos),
            score=float(self.score_sorted[i]),
            at=run.batch.time(pos),
        )
        try:
            t = run.table.step_index(stage, run.table.event_index[event], ctx, reason)
        except TransitionNotAllowed as exc:
            return _REFUSE, dec.message(str(exc))
        except HookError:
            if run.errors == "raise":
                raise
            raise _Fallback("a guard failed on a touch; the engine quarantines it") from None
        return _MOVE, t

    # ------------------------------------------------------------ owners, SLAs

    def _owners_and_sla(self) -> None:
        run, g = self.run, self.g
        np, funnel, batch = run.np, run.funnel, run.batch
        # entries into a stage: the CREATED of each lead's first touch, then every move
        created = g.starts
        moved = np.flatnonzero(self.outcome == _MOVE)
        both = np.concatenate((created * 2, moved * 2 + 1))
        both.sort()
        entries = both // 2  # sorted indices, by lead then time
        e_created = (both % 2) == 0
        e_stage = np.where(e_created, run.table.initial_index, self.after[entries])
        e_group = g.group[entries]
        e_at = g.at[entries]
        if run.owners.overrides:
            names = funnel.stage_names
            e_pos = self.pos_sorted[entries]
            e_owner = np.array(
                [
                    run._team(
                        run.owners.owner(names[s], run._attributes_at(int(batch.lead[p]), int(p)))
                    )
                    for s, p in zip(e_stage.tolist(), e_pos.tolist(), strict=True)
                ],
                np.int64,
            ).reshape(-1)
        else:
            default = np.array(
                [run._team(run.owners.owner(name)) for name in funnel.stage_names], np.int64
            )
            e_owner = default[e_stage]
        prev_owner = np.empty_like(e_owner)
        if e_owner.shape[0]:
            prev_owner[1:] = e_owner[:-1]
            prev_owner[e_created] = -1
        handoff = ~e_created & (e_owner != prev_owner)
        self.e_sorted = entries
        self.e_created = e_created
        self.e_stage = e_stage
        self.e_owner = e_owner
        self.e_prev_owner = prev_owner
        self.e_handoff = handoff
        self.e_group = e_group
        self.e_at = e_at
        # SLAs: a visit escalates when the engine's clock reaches its deadline
        # before (or at) the touch that ends it.
        sla = np.array(
            [-1 if s.sla is None else s.sla // timedelta(microseconds=1) for s in funnel.stages],
            np.int64,
        )
        has_sla = sla[e_stage] >= 0
        deadline = e_at + sla[e_stage]
        last_entry = np.ones(entries.shape[0], bool)
        if entries.shape[0]:
            np.not_equal(e_group[1:], e_group[:-1], out=last_entry[:-1])
        next_at = np.empty_like(e_at)
        if entries.shape[0]:
            next_at[:-1] = e_at[1:]
        escalates = has_sla & np.where(last_entry, run.clock >= deadline, next_at >= deadline)
        self.e_escalated = escalates
        self.e_last = last_entry
        esc = np.flatnonzero(escalates)
        self.escalations = _Escalations(
            g.lead[entries[esc]],
            deadline[esc],
            e_stage[esc],
            e_owner[esc],
            self.pos_sorted[entries[esc]],
            e_at[esc],
        )

    # ------------------------------------------------------------ what is kept

    def _keep(self) -> None:  # noqa: PLR0915  (one array step per kept column)
        """Keep what the log and the journeys need, in block position order."""
        run, g = self.run, self.g
        np, funnel = run.np, run.funnel
        n = g.order.shape[0]
        to_local = g.order  # lead-sorted index -> index in the block (ascending positions)

        def local(values: Array) -> Array:
            out = np.empty_like(values)
            out[to_local] = values
            return out

        def ascending(sorted_index: Array, *values: Array) -> tuple[Array, ...]:
            """Block indices of lead-sorted indices, ascending, with their values."""
            index = to_local[sorted_index]
            order = stable_order(np, index)
            return (index[order], *(v[order] for v in values))

        outcome = self.outcome
        decided = outcome != _NONE
        handoff_sorted = np.zeros(n, bool)
        handoff_sorted[self.e_sorted[self.e_handoff]] = True
        n_thr = np.zeros(n, np.int64)
        for crossing in self.crossings:
            n_thr += crossing
        kept_records = g.first + 1 + n_thr + handoff_sorted  # state-changing records
        kept_records += outcome == _MOVE
        self.count = local(kept_records + (outcome == _REFUSE))
        self.score = local(self.score_sorted)
        self.crossed = [np.flatnonzero(local(c)) for c in self.crossings]
        first_entry = self.e_created
        self.created, self.created_team = ascending(g.starts, self.e_owner[first_entry])
        d = np.flatnonzero(decided)
        moved = outcome[d] == _MOVE
        (
            self.decided,
            self.decided_kind,
            self.decided_event,
            self.decided_source,
            self.decided_target,
            self.decided_arg,
        ) = ascending(
            d,
            np.where(moved, TRANSITION, REFUSED),
            self.event[d],
            self.before[d],
            np.where(moved, self.after[d], -1),
            self.arg[d],
        )
        hand = self.e_handoff
        c = self.e_sorted[hand]
        self.handoff, self.handoff_stage, self.handoff_from, self.handoff_to = ascending(
            c, self.after[c], self.e_prev_owner[hand], self.e_owner[hand]
        )
        # the journeys of the block's leads
        lead_of_group = g.lead[g.starts]
        last_touch = np.empty(len(g.starts), np.int64)
        if len(g.starts):
            last_touch[:-1] = g.starts[1:] - 1
            last_touch[-1] = n - 1
        last = np.flatnonzero(self.e_last)
        # highest: the first entry of the highest rank, exits aside (the initial stage counts)
        rank = np.array([s.rank for s in funnel.stages], np.int64)
        is_exit = np.array([s.kind.is_exit for s in funnel.stages], bool)
        value = np.where(
            is_exit[self.e_stage] & ~first_entry, np.iinfo(np.int64).min, rank[self.e_stage]
        )
        highest = np.zeros(len(g.starts), np.int64)
        if value.shape[0]:
            starts = np.flatnonzero(first_entry)
            top = np.maximum.reduceat(value, starts)
            group_top = np.repeat(top, np.diff(np.append(starts, value.shape[0])))
            hit = np.flatnonzero(value == group_top)
            first_hit = np.ones(hit.shape[0], bool)
            np.not_equal(self.e_group[hit][1:], self.e_group[hit][:-1], out=first_hit[1:])
            best = hit[first_hit]
            highest[self.e_group[best]] = self.e_stage[best]
        self.journeys = {
            "lead": lead_of_group,
            "stage": self.state,
            "highest": highest,
            "owner": self.e_owner[last],
            "score": self.score_sorted[last_touch],
            "version": (np.add.reduceat(kept_records, g.starts) if n else np.zeros(0, np.int64)),
            "escalated": self.e_escalated[last],
            "created": g.at[g.starts],
            "updated": g.at[last_touch],
            "entered": self.e_at[last],
        }
        for name in (
            "crossings", "state", "before", "outcome", "arg", "event", "after", "e_sorted",
            "e_created", "e_stage", "e_owner", "e_prev_owner", "e_handoff", "e_group", "e_at",
            "e_escalated", "e_last",
        ):  # fmt: skip
            delattr(self, name)


# ---------------------------------------------------------------- what a replay keeps


class _Attributes:
    """Lead attributes by touch position, as columns; each mapping is rebuilt on demand.

    The caller's mappings cost a few hundred bytes each (a dict, its values);
    a column of exact ``int``, ``bool``, ``float`` (not NaN) or ``str`` values
    costs a few bytes per row. Any other value is kept as the object itself,
    and each row keeps its keys in their order.
    """

    __slots__ = ("_columns", "_keys", "_row_keys", "positions")

    def __init__(self, np: Any, attributes: Mapping[int, Mapping[str, Any]]) -> None:
        positions = list(attributes)
        if positions != sorted(positions):
            positions.sort()
            maps = list(map(attributes.__getitem__, positions))
        else:
            maps = list(attributes.values())
        n = len(maps)
        wide = bool(positions) and not 0 <= positions[0] <= positions[-1] < 2**31 - 1
        self.positions: Array = np.array(positions, np.int64 if wide else np.int32)
        # one pass over the caller's mappings per key, and one for the keys
        # (each pass reads every mapping from memory)
        keys_of_row = list(map(tuple, maps))
        keysets = list(dict.fromkeys(keys_of_row))
        self._keys: list[tuple[Any, ...]] = keysets
        dtype = code_dtype(np, len(keysets))
        if len(keysets) == 1:
            self._row_keys: Array = np.zeros(n, dtype)
        else:
            index = {keys: i for i, keys in enumerate(keysets)}
            self._row_keys = np.fromiter(map(index.__getitem__, keys_of_row), dtype, n)
        del keys_of_row
        self._columns: dict[Any, tuple[str, Any, Any]] = {}
        for key in dict.fromkeys(k for keys in keysets for k in keys):
            if all(key in keys for keys in keysets):
                present: list[bool] | None = None
                values = list(map(itemgetter(key), maps))
            else:
                has = np.array([key in keys for keys in keysets], bool)[self._row_keys]
                present = has.tolist()
                values = [m[key] if p else None for m, p in zip(maps, present, strict=True)]
            self._columns[key] = _attribute_column(np, values, present)

    def get(self, position: int) -> Mapping[str, Any] | None:
        """The attributes learned at *position*, or ``None``."""
        positions = self.positions
        j = int(positions.searchsorted(position))
        if j >= positions.shape[0] or int(positions[j]) != position:
            return None
        out: dict[Any, Any] = {}
        for key in self._keys[int(self._row_keys[j])]:
            tag, values, table = self._columns[key]
            if tag == "object":
                out[key] = values[j]
            elif tag == "str":
                out[key] = table[int(values[j])]
            else:
                out[key] = values[j].item()
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (object values and string tables aside)."""
        arrays = [self.positions, self._row_keys]
        arrays += [v for tag, v, _ in self._columns.values() if tag != "object"]
        return sum(int(a.nbytes) for a in arrays)


def _attribute_column(
    np: Any, values: list[Any], present: list[bool] | None
) -> tuple[str, Any, Any]:
    """One attribute's column: ``(tag, values, table)``, exact for every present row."""
    n = len(values)
    sample = values if present is None else [v for v, p in zip(values, present, strict=True) if p]
    types = set(map(type, sample))
    filled = (
        values
        if present is None
        else [v if p else sample[0] for v, p in zip(values, present, strict=True)]
    )
    if types == {int} and min(sample) >= -(2**63) and max(sample) < 2**63:
        return "int", np.fromiter(filled, np.int64, n), None
    if types == {bool}:
        return "bool", np.fromiter(filled, bool, n), None
    if types == {float} and not any(map(math.isnan, sample)):  # NaN: kept as the object
        return "float", np.fromiter(filled, np.float64, n), None
    if types == {str}:
        table = {v: i for i, v in enumerate(dict.fromkeys(sample))}
        codes = np.fromiter(map(table.__getitem__, filled), code_dtype(np, len(table)), n)
        return "str", codes, list(table)
    return "object", values, None


class _Touches:
    """What materialising records needs of the batch's touches, without the batch.

    A batch built from :class:`~buyerjourney.Touch` objects keeps them (they
    hold the time zones and ids); a columnar batch keeps its kind codes, its
    touch ids if it has any, its properties and its attributes as columns.
    Each touch's lead and time are read from the log.
    """

    __slots__ = ("attributes", "kind", "kinds", "lead_ids", "objects", "properties", "touch_ids")

    def __init__(self, np: Any, batch: TouchBatch) -> None:
        self.lead_ids = batch.lead_ids
        self.kinds = batch.kinds
        self.objects = batch._touches
        self.kind: Array | None = None
        self.touch_ids: Sequence[str] | None = None
        self.properties: Mapping[int, Mapping[str, Any]] = {}
        self.attributes: _Attributes | None = None
        if self.objects is None:
            self.kind = batch.kind.astype(code_dtype(np, len(batch.kinds)))
            self.touch_ids = batch.touch_ids
            self.properties = batch.properties
            if batch.attributes:
                self.attributes = _Attributes(np, batch.attributes)

    def touch(self, pos: int, lead: int, at: int) -> Touch:
        """Touch *pos*, of lead code *lead*, at *at* microseconds (as its log row says)."""
        if self.objects is not None:
            return self.objects[pos]
        assert self.kind is not None
        return Touch(
            f"t{pos}" if self.touch_ids is None else self.touch_ids[pos],
            self.lead_ids[lead],
            from_micros(at),
            self.kinds[int(self.kind[pos])],
            self.properties.get(pos, {}),
            self.learned(pos),
        )

    def time(self, pos: int, at: int) -> datetime:
        """The time of touch *pos*, *at* microseconds (in the touch's own time zone if known)."""
        if self.objects is not None:
            return self.objects[pos].at
        return from_micros(at)

    def learned(self, pos: int) -> Mapping[str, Any]:
        """The lead attributes touch *pos* brings."""
        if self.objects is not None:
            return self.objects[pos].attributes
        found = self.attributes.get(pos) if self.attributes is not None else None
        return {} if found is None else found


class _Kept:
    """What a replay keeps to materialise records and journeys: the log, names, the touches.

    Neither the run's intermediate arrays nor the input batch: a touch's
    lead and time come from its log rows, a score's previous value from the
    lead's previous SCORED row, the rest from :class:`_Touches`.
    """

    def __init__(self, run: _Run, columns: dict[str, Array]) -> None:
        self.np = run.np
        self.funnel = run.funnel
        self.scorer = run.pipeline.scorer
        self.policy = run.pipeline.policy
        self.scorer_name = run.scorer_name
        self.actor = run.actor
        self.teams = run.teams
        self.events = run.dec.events
        self.messages = run.dec.messages
        self.thresholds = run.thresholds
        self.grades = run.grades
        self.grade_codes = run.grade_codes if run.scorer_grades_columnar else None
        self.touches = _Touches(run.np, run.batch)
        self.columns = columns
        self.sla = {s.name: s.sla // MICROSECOND for s in self.funnel.stages if s.sla is not None}
        self._transitions: dict[tuple[str, str, str], Transition] = {}
        self._by_lead: tuple[Array, Array] | None = None

    # ------------------------------------------------------------ lookups

    def rows(self, lead: int) -> Array:
        """The log rows of lead code *lead*, in seq order."""
        np = self.np
        if self._by_lead is None:
            column = self.columns["lead"]
            order = stable_order(np, column)
            bounds = np.searchsorted(column[order], np.arange(len(self.touches.lead_ids) + 1))
            narrow = np.int32 if order.shape[0] < 2**31 else np.int64
            self._by_lead = (order.astype(narrow), bounds.astype(narrow))
        order, bounds = self._by_lead
        return order[int(bounds[lead]) : int(bounds[lead + 1])]

    def _scored_row(self, seq: int) -> int:
        """The SCORED row of the touch whose records include row *seq*."""
        kind = self.columns["kind"]
        while int(kind[seq]) != SCORED:
            seq -= 1
        return seq

    def _previous_score(self, seq: int, lead: int) -> float:
        """The lead's score before the SCORED row *seq* (0 before its first)."""
        rows = self.rows(lead)
        kind = self.columns["kind"]
        j = int(rows.searchsorted(seq)) - 1
        while j >= 0:
            row = int(rows[j])
            if int(kind[row]) == SCORED:
                return float(self.columns["score"][row])
            j -= 1
        return 0.0

    def _lead_view(self, lead: int, pos: int) -> Any:
        """The :class:`Lead` the scorer saw at touch *pos*: its accepted touches so far."""
        from buyerjourney._core.scoring import Lead  # noqa: PLC0415

        col = self.columns
        rows = self.rows(lead)
        rows = rows[(col["kind"][rows] == SCORED) & (col["touch"][rows] <= pos)]
        touches = []
        merged: dict[str, Any] = {}
        for p, at in zip(col["touch"][rows].tolist(), col["at"][rows].tolist(), strict=True):
            touches.append(self.touches.touch(p, lead, at))
            merged.update(self.touches.learned(p))
        return Lead(self.touches.lead_ids[lead], merged, tuple(touches))

    def grade(self, pos: int) -> str | None:
        """The grade of the score of touch *pos*, or ``None``."""
        codes = self.grade_codes
        if codes is None:
            return self.grades.get(pos)
        code = int(codes[pos])
        return None if code == NO_GRADE else GRADES[code]

    def _decision_reason(self, seq: int, touch: Touch, stage: int) -> str:
        policy = self.policy
        assert policy is not None
        name = self.funnel.stage_names[stage]
        stub = Journey(
            lead_id=touch.lead_id,
            stage=name,
            highest=name,
            owner="-",
            created=touch.at,
            updated=touch.at,
        )
        row = self._scored_row(seq)
        score = Score(
            float(self.columns["score"][row]), grade=self.grade(int(self.columns["touch"][row]))
        )
        return policy(stub, score, touch).reason

    def _transition(self, source: str, event: str, target: str) -> Transition:
        """The funnel transition a TRANSITION column row stands for (the first of its kind)."""
        key = (source, event, target)
        found = self._transitions.get(key)
        if found is None:
            found = next(t for t in self.funnel.transitions if (t.source, t.event, t.target) == key)
            self._transitions[key] = found
        return found

    # ------------------------------------------------------------ materialising

    def journey(self, code: int) -> Journey:
        """Fold the lead's records (without the parts the fold does not read)."""
        rows = self.rows(code).tolist()
        journeys = rebuild(self.funnel, (self.record(seq, light=True) for seq in rows))
        return journeys[self.touches.lead_ids[code]]

    def record(self, seq: int, light: bool = False) -> Record:
        """Record *seq* of the log, built by the core's builders from the columns."""
        col = self.columns
        kind = int(col["kind"][seq])
        lead = int(col["lead"][seq])
        lead_id = self.touches.lead_ids[lead]
        names = self.funnel.stage_names
        at_micros = int(col["at"][seq])
        if kind == ESCALATION:
            stage = names[int(col["source"][seq])]
            entered = self.touches.time(int(col["aux"][seq]), at_micros - self.sla[stage])
            deadline = lifecycle.sla_deadline(self.funnel, stage, entered)
            assert deadline is not None
            return lifecycle.escalation(
                lead_id,
                seq,
                stage=stage,
                entered=entered,
                deadline=deadline,
                team=self.teams[int(col["to_team"][seq])],
            )
        pos = int(col["touch"][seq])
        touch = self.touches.touch(pos, lead, at_micros)
        at = touch.at
        if kind == CREATED:
            return lifecycle.created(
                lead_id,
                seq,
                at,
                stage=names[int(col["target"][seq])],
                team=self.teams[int(col["to_team"][seq])],
                touch_id=touch.touch_id,
                attributes=touch.attributes,
            )
        value = float(col["score"][seq])
        if kind == SCORED:
            grade = self.grade(pos)
            delta: float | None = None
            breakdown: tuple[ScoreItem, ...] | None = None
            if not light:
                if self.scorer is None:
                    result = Score(0.0)
                else:
                    result = checked_score(
                        self.scorer_name,
                        self.scorer,
                        self._lead_view(lead, pos),
                        at,
                        touch.touch_id,
                    )
                delta = value - self._previous_score(seq, lead)
                breakdown = result.breakdown
                grade = result.grade
            first = seq > 0 and int(col["kind"][seq - 1]) == CREATED
            first = first and int(col["touch"][seq - 1]) == pos
            return lifecycle.scored(
                lead_id,
                seq,
                at,
                score=value,
                delta=delta,
                breakdown=breakdown,
                grade=grade,
                attributes=None if first else touch.attributes,
                touch_id=touch.touch_id,
            )
        if kind == THRESHOLD:
            return lifecycle.threshold(
                lead_id,
                seq,
                at,
                score=value,
                limit=self.thresholds[int(col["aux"][seq])],
                touch_id=touch.touch_id,
            )
        if kind == REFUSED:
            return lifecycle.refused(
                lead_id,
                seq,
                at,
                actor=self.actor,
                event=self.events[int(col["event"][seq])],
                stage=names[int(col["source"][seq])],
                reason=self.messages[int(col["aux"][seq])],
                touch_id=touch.touch_id,
            )
        if kind == TRANSITION:
            source = int(col["source"][seq])
            move = self._transition(
                names[source],
                self.events[int(col["event"][seq])],
                names[int(col["target"][seq])],
            )
            return lifecycle.transition(
                lead_id,
                seq,
                at,
                move=move,
                actor=self.actor,
                reason="" if light else self._decision_reason(seq, touch, source),
                touch_id=touch.touch_id,
            )
        assert kind == HANDOFF
        source = int(col["source"][seq - 1])
        return lifecycle.handoff(
            lead_id,
            seq,
            at,
            stage=names[int(col["target"][seq])],
            from_team=self.teams[int(col["from_team"][seq])],
            to_team=self.teams[int(col["to_team"][seq])],
            actor=self.actor,
            reason="" if light else self._decision_reason(seq, touch, source),
            touch_id=touch.touch_id,
        )
