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
    of built-in parts, or none) and built-in policies (exactly
    :class:`~buyerjourney.policies.ThresholdPolicy`,
    :class:`~buyerjourney.policies.TouchKindPolicy`, ``AnyOf``/``AllOf`` of
    them, or none). The whole batch is processed with NumPy: scores come
    from the vectorised kernel (``bulk/_kernels.py``, exact integer
    micro-points); threshold crossings compare each score with the lead's
    previous one; the policy and the funnel are compiled into one table
    ``(stage, touch kind, score bucket) -> outcome`` that is applied to all
    leads at once, one touch rank at a time; owners, handoffs and SLA
    escalations are array lookups. Guards and owner overrides are evaluated
    in Python, only where a transition actually needs them.
``"hooks"``
    A scorer the kernel does not implement (a scorer of your own, a
    subclass, a part of a subclassed type, points beyond the kernel's exact
    range): it is called once per touch, in a tight loop, with the
    :class:`~buyerjourney.scoring.Lead` it expects; everything else is
    columnar as above.
``"reference"``
    Anything else (a policy of your own, a ``MatrixPolicy``, owner rules of
    your own), and batches the engine would quarantine touches of (duplicate
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

NumPy is the ``fast`` extra: ``pip install 'buyerjourney[fast]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Literal

from buyerjourney._core import lifecycle
from buyerjourney._core.funnel import Funnel, Transition
from buyerjourney._core.journey import Journey, rebuild
from buyerjourney._core.protocols import Context, hook_name
from buyerjourney._core.records import Record, Touch
from buyerjourney._core.scoring import Score, ScoreItem, checked_score
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
from buyerjourney.bulk._kernels import SCALE, Groups, columnar_scores
from buyerjourney.bulk._plan import Compiled, Plan, batch_problem, compile_plan, exact_float, plan
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
    from_micros,
    journey_dtypes,
    log_dtypes,
    new_log_columns,
    to_micros,
)
from buyerjourney.errors import (
    HookError,
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

    A symbol is ``kind * buckets + bucket`` where the bucket says which of
    the policy's thresholds the score reaches.
    """

    def __init__(
        self,
        np: Any,
        pipeline: Pipeline,
        table: CompiledFunnel,
        kinds: Sequence[str],
        limits: Sequence[float],
    ) -> None:
        funnel = pipeline.funnel
        self.limits = np.array(limits, np.float64)
        self.buckets = len(limits) + 1
        n_stages = len(funnel.stages)
        n_symbols = len(kinds) * self.buckets
        self.outcome = np.zeros((n_stages, n_symbols), np.int8)  # _NONE ... _GUARDED
        self.arg = np.full((n_stages, n_symbols), -1, np.int64)
        self.event = np.full((n_stages, n_symbols), -1, np.int64)
        self.next = np.repeat(np.arange(n_stages, dtype=np.int64)[:, None], n_symbols, axis=1)
        self.events: list[str] = list(table.event_names)
        self.messages: list[str] = []
        self._message_index: dict[str, int] = {}
        self.reasons: dict[tuple[int, int], str] = {}
        policy = pipeline.policy
        if policy is None:
            return
        representative = [
            limits[0] - max(1.0, abs(limits[0])) if limits else 0.0,
            *limits,
        ]
        event_index = {name: i for i, name in enumerate(self.events)}
        for s, stage in enumerate(funnel.stage_names):
            stub = Journey(
                lead_id="-", stage=stage, highest=stage, owner="-", created=EPOCH, updated=EPOCH
            )
            gate = funnel.stage(stage).gate
            for k, kind in enumerate(kinds):
                touch = Touch("-", "-", EPOCH, kind)
                for b, value in enumerate(representative):
                    decision = policy(stub, Score(value), touch)
                    if decision.event is not None:
                        self._compile(
                            table,
                            s,
                            k * self.buckets + b,
                            decision,
                            gate=gate,
                            event_index=event_index,
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
        self.reasons[(s, sym)] = decision.reason
        stage = table.stage_names[s]
        if gate:
            self._refuse(s, sym, lifecycle.AWAITS_ACCEPTANCE.format(stage=stage))
            return
        if event not in table.event_index:
            try:
                table.step(stage, event, None, reason=decision.reason)
            except TransitionNotAllowed as exc:
                self._refuse(s, sym, str(exc))
            return
        e = table.event_index[event]
        candidates = table.table.get((s, e), ())
        if any(guard is not None for _, _, guard, _ in candidates):
            self.outcome[s, sym] = _GUARDED
            return
        try:
            t = table.step_index(s, e, None, decision.reason)
        except TransitionNotAllowed as exc:
            self._refuse(s, sym, str(exc))
            return
        self.outcome[s, sym] = _MOVE
        self.arg[s, sym] = t
        self.next[s, sym] = table.target_of(t)

    def message(self, text: str) -> int:
        index = self._message_index.get(text)
        if index is None:
            index = self._message_index[text] = len(self.messages)
            self.messages.append(text)
        return index

    def _refuse(self, s: int, sym: int, text: str) -> None:
        self.outcome[s, sym] = _REFUSE
        self.arg[s, sym] = self.message(text)


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
    the log and the touches.
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
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return int((self.columns["version"] > 0).sum())

    def __repr__(self) -> str:
        return f"JourneyStore({len(self)} journeys)"

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (not counting the lead ids)."""
        return sum(int(a.nbytes) for a in self.columns.values())

    def __contains__(self, lead_id: object) -> bool:
        code = self._code(lead_id)
        return code is not None and bool(self.columns["version"][code] > 0)

    def _code(self, lead_id: object) -> int | None:
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self.lead_ids)}
        return self._index.get(lead_id) if isinstance(lead_id, str) else None

    def __getitem__(self, lead_id: str) -> Journey:
        code = self._code(lead_id)
        if code is None or not self.columns["version"][code] > 0:
            raise KeyError(lead_id)
        return self._materialize(code)

    def __iter__(self) -> Iterator[str]:
        for code in (self.columns["version"] > 0).nonzero()[0].tolist():
            yield self.lead_ids[code]

    def to_dict(self) -> dict[str, Journey]:
        """Every journey, materialised, by lead id."""
        return {lead_id: self[lead_id] for lead_id in self}


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
    ) -> None:
        self.mode = mode
        self.reasons = reasons
        self.log = log
        self.journeys = journeys
        self.quarantined = quarantined
        self.accepted = accepted

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


# ---------------------------------------------------------------- replay


class _Fallback(Exception):
    """The batch needs the reference engine (a guard failed, ...)."""


def replay(
    pipeline: Pipeline,
    touches: Iterable[Touch] | TouchBatch,
    *,
    mode: Mode = "auto",
    errors: Literal["quarantine", "raise"] = "quarantine",
) -> Replay:
    """Replay a time-ordered batch of touches into a fresh log and fresh journeys.

    The result equals ``pipeline.engine()`` fed the same touches with
    :meth:`~buyerjourney.Engine.ingest`: the same records, journeys
    and quarantined touches.

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

    Raises:
        MissingExtra: NumPy is not installed.
        ModeNotPossible: The forced mode is not possible for this pipeline (a
            ``ValueError``); its reasons are :attr:`Plan.reasons`.
        HookError: With ``errors="raise"``, a hook failed.
    """
    np = numpy_or_raise()
    batch = touches if isinstance(touches, TouchBatch) else TouchBatch.from_touches(touches)
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
                    np, pipeline, batch, compiled, columnar=path == "columnar", errors=errors
                )
                return run.result(path, reasons)
            except _Fallback as exc:
                reasons = (*reasons, str(exc))
        else:
            reasons = (*reasons, problem)
    return _reference(pipeline, batch, reasons, errors)


def _not_possible(pipeline: Pipeline, mode: str, chosen: Plan) -> ModeNotPossible:
    """The error for a forced *mode* that the plan rejects, with every reason."""
    return ModeNotPossible(mode, chosen.mode, chosen.reasons)


def _batch_problem(np: Any, batch: TouchBatch, funnel: Funnel) -> str | None:
    """Why the engine must replay this batch itself (it would set touches aside, or fail)."""
    if len(batch) > 1 and bool((np.diff(batch.at) < 0).any()):
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
) -> Replay:
    engine = pipeline.engine()
    report = engine.ingest(batch.touches(), errors=errors)
    records = engine.records
    log = ColumnarLog.from_records(pipeline.funnel, records)
    return Replay(
        "reference",
        reasons,
        log,
        dict(engine.journeys),
        quarantined=report.quarantined,
        accepted=report.accepted,
    )


_INTERMEDIATE = (
    "g", "positions", "pos_sorted", "old_sorted", "score_sorted", "kind_sorted", "crossings",
    "state", "before", "outcome", "arg", "event", "after", "e_sorted", "e_created", "e_stage",
    "e_owner", "e_prev_owner", "e_handoff", "e_group", "e_pos", "e_at", "e_escalated", "e_last",
    "esc", "esc_deadline", "esc_at_pos",
)  # fmt: skip


def _valid_score(score: object) -> bool:
    """A quick, conservative scorer contract check (``False``: ask ``checked_score``)."""
    if type(score) is not Score:
        return False
    value = score.value
    if type(value) is not float or value - value != 0.0:
        return False
    breakdown = score.breakdown
    if type(breakdown) is not tuple:
        return False
    for item in breakdown:
        if type(item) is not ScoreItem:
            return False
        points = item.points
        if (type(points) is not float and type(points) is not int) or points - points != 0:
            return False
    return score.grade is None or type(score.grade) is str


class _Run:
    """One columnar replay of a batch."""

    def __init__(
        self,
        np: Any,
        pipeline: Pipeline,
        batch: TouchBatch,
        compiled: Compiled,
        *,
        columnar: bool,
        errors: Literal["quarantine", "raise"],
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
        self._transitions: dict[tuple[str, str, str], Transition] = {}
        self.owners = pipeline.owners
        self.owners.validate(self.funnel)
        self.teams: list[str] = list(
            dict.fromkeys((*self.owners.teams, *self.owners.defaults.values()))
        )
        self._team_index = {name: i for i, name in enumerate(self.teams)}
        self.quarantined: list[Quarantined] = []
        self.grades: dict[int, str] = {}
        n = len(batch)
        if columnar:
            self.positions = np.arange(n)
            self._run_columnar_scores(compiled)
        else:
            self._run_hook_scores()
        self._decide(columnar, compiled.limits)
        self._owners_and_sla()
        self._write_log()
        self._journeys()
        self.accepted = int(self.g.order.shape[0])
        # Keep only what materialising records and journeys needs.
        for name in _INTERMEDIATE:
            self.__dict__.pop(name, None)

    # ------------------------------------------------------------ scores

    def _run_columnar_scores(self, compiled: Compiled) -> None:
        np, batch = self.np, self.batch
        self.g = Groups(np, batch.lead, batch.at)
        kind_sorted = batch.kind[self.g.order]
        self.kind_sorted = kind_sorted
        if compiled.scorer is None:  # the plan is columnar: there is no scorer
            assert self.pipeline.scorer is None
            micro = np.zeros(len(batch), np.int64)
        else:
            micro = columnar_scores(
                np,
                compiled.scorer,
                self.g,
                kind_sorted,
                kinds=batch.kinds,
                properties=batch.properties,
                attributes=batch.attributes,
            )
        score_sorted = micro / SCALE
        self.score_sorted = score_sorted
        self.score = np.empty(len(batch), np.float64)
        self.score[self.g.order] = score_sorted

    def _run_hook_scores(self) -> None:  # noqa: PLR0915  (the per-touch loop is kept flat)
        """Call the scorer once per touch, with the :class:`Lead` it would get from the engine."""
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
        keep = np.flatnonzero(ok)
        self.positions = keep
        self.g = Groups(np, batch.lead[keep], batch.at[keep])
        self.score = np.array(values, np.float64)

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
        cached = getattr(self, "_attr_events", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        ok = getattr(self, "accepted_mask", None)
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

    # ------------------------------------------------------------ decisions

    def _decide(  # noqa: PLR0915  (policy and funnel, in order)
        self, columnar: bool, limits: Sequence[float]
    ) -> None:
        np, g, batch = self.np, self.g, self.batch
        n = g.order.shape[0]
        initial = self.table.initial_index
        if columnar:  # every touch is accepted: positions are the accepted indices
            self.pos_sorted = g.order
            score_sorted = self.score_sorted
        else:
            self.pos_sorted = self.positions[g.order]  # sorted index -> batch position
            score_sorted = self.score[self.pos_sorted]
        old = np.empty(n, np.float64)
        if n:
            old[1:] = score_sorted[:-1]
        old[g.first] = 0.0
        self.old_sorted = old
        self.score_sorted = score_sorted
        self.thresholds = tuple(sorted(set(self.pipeline.thresholds)))
        crossings = []
        for threshold in self.thresholds:
            t = float(threshold)
            up = (old < t) & (t <= score_sorted)
            down = (score_sorted < t) & (t <= old)
            crossings.append(up | down)
        self.crossings = crossings
        dec = _Decisions(np, self.pipeline, self.table, batch.kinds, limits)
        self.dec = dec
        kind_sorted = self.kind_sorted if columnar else batch.kind[self.pos_sorted]
        bucket = np.searchsorted(dec.limits, score_sorted, side="right")
        sym = kind_sorted * dec.buckets + bucket
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
                        nxt[j] = self.table.target_of(value) if result == _MOVE else s[j]
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
        targets = np.array(
            [self.table.target_of(t) for t in range(len(self.table.transitions))] or [0], np.int64
        )
        after[moves] = targets[arg[moves]]
        self.after = after

    def _guarded(self, i: int, stage: int, sym: int) -> tuple[int, int]:
        """Step a guarded transition in Python: ``(_MOVE, t)`` or ``(_REFUSE, message)``."""
        dec = self.dec
        event = dec.events[int(dec.event[stage, sym])]
        reason = dec.reasons[(stage, sym)]
        pos = int(self.pos_sorted[i])
        lead = int(self.batch.lead[pos])
        ctx = Context(
            lead_id=self.batch.lead_ids[lead],
            stage=self.funnel.stage_names[stage],
            event=event,
            attributes=self._attributes_at(lead, pos),
            score=float(self.score_sorted[i]),
            at=self.batch.time(pos),
        )
        try:
            t = self.table.step_index(stage, self.table.event_index[event], ctx, reason)
        except TransitionNotAllowed as exc:
            return _REFUSE, dec.message(str(exc))
        except HookError:
            if self.errors == "raise":
                raise
            raise _Fallback("a guard failed on a touch; the engine quarantines it") from None
        return _MOVE, t

    # ------------------------------------------------------------ owners, SLAs

    def _owners_and_sla(self) -> None:  # noqa: PLR0915  (owners, handoffs and SLAs per entry)
        np, g, batch = self.np, self.g, self.batch
        funnel = self.funnel
        # entries into a stage: the CREATED of each lead's first touch, then every move
        created = g.starts
        moved = np.flatnonzero(self.outcome == _MOVE)
        both = np.concatenate((created * 2, moved * 2 + 1))
        both.sort()
        entries = both // 2  # sorted indices, by lead then time
        e_created = (both % 2) == 0
        e_stage = np.where(e_created, self.table.initial_index, self.after[entries])
        e_group = g.group[entries]
        e_pos = self.pos_sorted[entries]
        e_at = batch.at[e_pos]
        if self.owners.overrides:
            names = funnel.stage_names
            e_owner = np.array(
                [
                    self._team(
                        self.owners.owner(names[s], self._attributes_at(int(batch.lead[p]), int(p)))
                    )
                    for s, p in zip(e_stage.tolist(), e_pos.tolist(), strict=True)
                ],
                np.int64,
            ).reshape(-1)
        else:
            default = np.array(
                [self._team(self.owners.owner(name)) for name in funnel.stage_names], np.int64
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
        self.e_pos = e_pos
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
        clock = int(batch.at[-1]) if len(batch) else 0
        escalates = has_sla & np.where(last_entry, clock >= deadline, next_at >= deadline)
        self.e_escalated = escalates
        self.e_last = last_entry
        esc = np.flatnonzero(escalates)
        esc_deadline = deadline[esc]
        esc_at_pos = np.searchsorted(batch.at, esc_deadline, side="left")
        order = np.lexsort((esc_deadline, esc_at_pos))
        esc = esc[order]
        esc_deadline = esc_deadline[order]
        esc_at_pos = esc_at_pos[order]
        if esc.shape[0] > 1:
            tie = (esc_at_pos[1:] == esc_at_pos[:-1]) & (esc_deadline[1:] == esc_deadline[:-1])
            if tie.any():
                esc = self._break_ties(esc, esc_deadline, esc_at_pos)
        self.esc = esc  # entry indices, in log order
        self.esc_deadline = deadline[esc]
        self.esc_at_pos = np.searchsorted(batch.at, self.esc_deadline, side="left")

    def _break_ties(self, esc: Array, deadline: Array, at_pos: Array) -> Array:
        """Order escalations of one instant as the engine's heap does: lead id, stage, entered."""
        names = self.funnel.stage_names
        lead_ids = self.batch.lead_ids

        def key(j: int) -> tuple[int, int, str, str, int]:
            e = int(esc[j])
            lead = int(self.batch.lead[int(self.e_pos[e])])
            return (
                int(at_pos[j]),
                int(deadline[j]),
                lead_ids[lead],
                names[int(self.e_stage[e])],
                int(self.e_at[e]),
            )

        return esc[sorted(range(esc.shape[0]), key=key)]

    # ------------------------------------------------------------ the log

    def _write_log(self) -> None:  # noqa: PLR0915  (one array step per record kind, in order)
        """Lay the records out in seq order; rows are written touch by touch, in time order."""
        np, g, batch = self.np, self.g, self.batch
        n_all = len(batch)
        n = g.order.shape[0]
        positions = self.positions  # accepted touches, in time order
        to_a = g.order  # sorted index -> accepted index

        def by_a(values: Array) -> Array:
            out = np.empty_like(values)
            out[to_a] = values
            return out

        first = by_a(g.first)
        outcome = by_a(self.outcome)
        crossings = [by_a(c) for c in self.crossings]
        n_thr = np.zeros(n, np.int64)
        for crossing in crossings:
            n_thr += crossing
        handoff_sorted = np.zeros(n, bool)
        handoff_sorted[self.e_sorted[self.e_handoff]] = True
        handoff = by_a(handoff_sorted)
        move = outcome == _MOVE
        refuse = outcome == _REFUSE
        own = np.zeros(n_all, np.int64)
        own[positions] = first.astype(np.int64) + 1 + n_thr + move + refuse + handoff
        esc_count = np.bincount(self.esc_at_pos, minlength=n_all + 1)
        own += esc_count[:n_all]
        start = np.zeros(n_all + 1, np.int64)
        np.cumsum(own, out=start[1:])
        total = int(start[-1]) + int(esc_count[n_all])
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
        kind, lead, at, touch = (columns[c] for c in ("kind", "lead", "at", "touch"))
        source, target, from_team, to_team = (
            columns[c] for c in ("source", "target", "from_team", "to_team")
        )
        event, score, aux = (columns[c] for c in ("event", "score", "aux"))
        leads = batch.lead[positions]
        times = batch.at[positions]
        base = start[positions] + esc_count[positions]
        # every record of a touch shares its lead, time and touch: write them for
        # all rows at once, then fix the escalations (dated at their deadline)
        span = own[positions] - esc_count[positions]
        rows = np.repeat(base - np.arange(n) * 0, span) if n else np.zeros(0, np.int64)
        rows += np.arange(rows.shape[0]) - np.repeat(np.cumsum(span) - span, span)
        lead[rows] = np.repeat(leads, span)
        at[rows] = np.repeat(times, span)
        touch[rows] = np.repeat(positions, span)
        esc = self.esc
        if esc.shape[0]:
            at_pos = self.esc_at_pos
            lead_first = np.ones(esc.shape[0], bool)
            np.not_equal(at_pos[1:], at_pos[:-1], out=lead_first[1:])
            group_start = np.flatnonzero(lead_first)[np.cumsum(lead_first) - 1]
            seq = start[at_pos] + (np.arange(esc.shape[0]) - group_start)
            kind[seq] = ESCALATION
            lead[seq] = batch.lead[self.e_pos[esc]]
            at[seq] = self.esc_deadline
            touch[seq] = -1
            source[seq] = self.e_stage[esc]
            to_team[seq] = self.e_owner[esc]
            aux[seq] = self.e_pos[esc]
        # created
        created = np.flatnonzero(first)
        seq = base[created]
        kind[seq] = CREATED
        target[seq] = self.table.initial_index
        to_team[seq] = self.e_owner[self.e_created]
        # scored
        seq = base + first
        score[seq] = self.score[positions]
        # thresholds, ascending
        offset = seq + 1
        for h, crossing in enumerate(crossings):
            c = np.flatnonzero(crossing)
            seq = offset[c]
            kind[seq] = THRESHOLD
            score[seq] = self.score[positions[c]]
            aux[seq] = h
            offset[c] += 1
        # decisions (from lead-sorted arrays)
        off_sorted = offset[to_a]
        c = np.flatnonzero(self.outcome == _REFUSE)
        seq = off_sorted[c]
        kind[seq] = REFUSED
        event[seq] = self.event[c]
        source[seq] = self.before[c]
        aux[seq] = self.arg[c]
        c = np.flatnonzero(self.outcome == _MOVE)
        seq = off_sorted[c]
        kind[seq] = TRANSITION
        event[seq] = self.event[c]
        source[seq] = self.before[c]
        target[seq] = self.after[c]
        aux[seq] = self.arg[c]
        hand = self.e_handoff
        c = self.e_sorted[hand]
        seq = off_sorted[c] + 1
        kind[seq] = HANDOFF
        target[seq] = self.after[c]
        from_team[seq] = self.e_prev_owner[hand]
        to_team[seq] = self.e_owner[hand]
        self.log = ColumnarLog(
            self.funnel,
            columns,
            lead_ids=self.batch.lead_ids,
            teams=self.teams,
            events=self.dec.events,
            messages=self.dec.messages,
            materialize=self._record,
        )
        # per batch position: the lead's previous score (for the delta) and whether it is its first
        self.old_by_pos = np.zeros(n_all, np.float64)
        self.old_by_pos[self.pos_sorted] = self.old_sorted
        self.first_by_pos = np.zeros(n_all, bool)
        self.first_by_pos[positions] = first

    # ------------------------------------------------------------ journeys

    def _journeys(self) -> None:  # noqa: PLR0915  (one array step per journey column)
        np, g, batch = self.np, self.g, self.batch
        n_leads = len(batch.lead_ids)
        funnel = self.funnel
        log = self.log.columns
        dtypes = journey_dtypes(
            np, stages=len(funnel.stages), teams=len(self.teams), records=len(self.log)
        )
        counted = log["kind"] != REFUSED
        version = np.bincount(log["lead"][counted], minlength=n_leads).astype(dtypes["version"])
        rows = np.flatnonzero(counted)
        updated = np.zeros(n_leads, np.int64)
        last_row = np.full(n_leads, -1, np.int64)
        np.maximum.at(last_row, log["lead"][rows], rows)
        has = last_row >= 0
        updated[has] = log["at"][last_row[has]]
        lead_of_group = g.lead[g.starts]
        stage = np.zeros(n_leads, dtypes["stage"])
        stage[lead_of_group] = self.state
        score = np.zeros(n_leads, np.float64)
        last_touch = np.empty(len(g.starts), np.int64)
        if len(g.starts):
            last_touch[:-1] = g.starts[1:] - 1
            last_touch[-1] = g.order.shape[0] - 1
        score[lead_of_group] = self.score_sorted[last_touch]
        created = np.zeros(n_leads, np.int64)
        created[lead_of_group] = g.at[g.starts]
        last = np.flatnonzero(self.e_last)
        owner = np.zeros(n_leads, dtypes["owner"])
        entered = np.zeros(n_leads, np.int64)
        escalated = np.zeros(n_leads, bool)
        e_lead = lead_of_group[self.e_group]
        owner[e_lead[last]] = self.e_owner[last]
        entered[e_lead[last]] = self.e_at[last]
        escalated[e_lead[last]] = self.e_escalated[last]
        # highest: the first entry of the highest rank, exits aside (the initial stage counts)
        rank = np.array([s.rank for s in funnel.stages], np.int64)
        is_exit = np.array([s.kind.is_exit for s in funnel.stages], bool)
        e_first = self.e_created
        value = np.where(
            is_exit[self.e_stage] & ~e_first, np.iinfo(np.int64).min, rank[self.e_stage]
        )
        if value.shape[0]:
            starts = np.flatnonzero(e_first)
            top = np.maximum.reduceat(value, starts)
            group_top = np.repeat(top, np.diff(np.append(starts, value.shape[0])))
            hit = np.flatnonzero(value == group_top)
            first_hit = np.ones(hit.shape[0], bool)
            np.not_equal(self.e_group[hit][1:], self.e_group[hit][:-1], out=first_hit[1:])
            best = hit[first_hit]
            highest = np.zeros(n_leads, dtypes["highest"])
            highest[e_lead[best]] = self.e_stage[best]
        else:
            highest = np.zeros(n_leads, dtypes["highest"])
        gate = np.array([s.gate for s in funnel.stages], bool)
        columns = {
            "stage": stage, "highest": highest, "owner": owner, "score": score,
            "version": version, "pending": gate[stage] & (version > 0), "escalated": escalated,
            "created": created, "updated": updated, "entered": entered,
        }  # fmt: skip
        self.journeys = JourneyStore(columns, batch.lead_ids, self._journey)
        self._rows_by_lead: tuple[Array, Array] | None = None
        self._positions_by_lead: tuple[Array, Array] | None = None

    def result(self, mode: str, reasons: tuple[str, ...]) -> Replay:
        return Replay(
            mode,
            reasons,
            self.log,
            self.journeys,
            quarantined=tuple(self.quarantined),
            accepted=self.accepted,
        )

    # ------------------------------------------------------------ materialising

    def _journey(self, code: int) -> Journey:
        """Fold the lead's records (without the parts the fold does not read)."""
        np = self.np
        if self._rows_by_lead is None:
            lead = self.log.columns["lead"]
            order = stable_order(np, lead)
            bounds = np.searchsorted(lead[order], np.arange(len(self.batch.lead_ids) + 1))
            self._rows_by_lead = (order, bounds)
        order, bounds = self._rows_by_lead
        rows = order[bounds[code] : bounds[code + 1]].tolist()
        journeys = rebuild(self.funnel, (self._record(seq, light=True) for seq in rows))
        return journeys[self.batch.lead_ids[code]]

    def _decision_reason(self, pos: int, stage: int) -> str:
        policy = self.pipeline.policy
        assert policy is not None
        touch = self.batch.touch(pos)
        name = self.funnel.stage_names[stage]
        stub = Journey(
            lead_id=touch.lead_id,
            stage=name,
            highest=name,
            owner="-",
            created=touch.at,
            updated=touch.at,
        )
        return policy(stub, Score(float(self.score[pos])), touch).reason

    def _lead_view(self, pos: int) -> Any:
        from buyerjourney._core.scoring import Lead  # noqa: PLC0415

        np = self.np
        lead = int(self.batch.lead[pos])
        if self._positions_by_lead is None:
            order = stable_order(np, self.batch.lead)
            bounds = np.searchsorted(
                self.batch.lead[order], np.arange(len(self.batch.lead_ids) + 1)
            )
            self._positions_by_lead = (order, bounds)
        order, bounds = self._positions_by_lead
        rows = order[bounds[lead] : bounds[lead + 1]]
        rows = rows[: int(np.searchsorted(rows, pos, side="right"))]
        ok = getattr(self, "accepted_mask", None)
        touches = tuple(self.batch.touch(p) for p in rows.tolist() if ok is None or ok[p])
        return Lead(self.batch.lead_ids[lead], self._attributes_at(lead, pos), touches)

    def _record(self, seq: int, light: bool = False) -> Record:
        """Record *seq* of the log, built by the core's builders from the columns."""
        col = self.log.columns
        kind = int(col["kind"][seq])
        lead_id = self.batch.lead_ids[int(col["lead"][seq])]
        names = self.funnel.stage_names
        if kind == ESCALATION:
            entered = self.batch.time(int(col["aux"][seq]))
            stage = names[int(col["source"][seq])]
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
        touch = self.batch.touch(pos)
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
            grade = self.grades.get(pos)
            delta: float | None = None
            breakdown: tuple[ScoreItem, ...] | None = None
            if not light:
                if self.pipeline.scorer is None:
                    result = Score(0.0)
                else:
                    result = checked_score(
                        self.scorer_name,
                        self.pipeline.scorer,
                        self._lead_view(pos),
                        at,
                        touch.touch_id,
                    )
                delta = value - float(self.old_by_pos[pos])
                breakdown = result.breakdown
                grade = result.grade
            return lifecycle.scored(
                lead_id,
                seq,
                at,
                score=value,
                delta=delta,
                breakdown=breakdown,
                grade=grade,
                attributes=None if self.first_by_pos[pos] else touch.attributes,
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
                event=self.dec.events[int(col["event"][seq])],
                stage=names[int(col["source"][seq])],
                reason=self.dec.messages[int(col["aux"][seq])],
                touch_id=touch.touch_id,
            )
        if kind == TRANSITION:
            source = int(col["source"][seq])
            move = self._transition(
                names[source],
                self.dec.events[int(col["event"][seq])],
                names[int(col["target"][seq])],
            )
            return lifecycle.transition(
                lead_id,
                seq,
                at,
                move=move,
                actor=self.actor,
                reason="" if light else self._decision_reason(pos, source),
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
            reason="" if light else self._decision_reason(pos, source),
            touch_id=touch.touch_id,
        )

    def _transition(self, source: str, event: str, target: str) -> Transition:
        """The funnel transition a TRANSITION column row stands for (the first of its kind)."""
        key = (source, event, target)
        found = self._transitions.get(key)
        if found is None:
            found = next(t for t in self.funnel.transitions if (t.source, t.event, t.target) == key)
            self._transitions[key] = found
        return found
