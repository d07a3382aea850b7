"""The engine: many journeys, driven by touches, hooks, owner rules and people.

An :class:`Engine` ingests touches for many leads in memory. For each touch
it scores the lead, asks the policy whether to move, applies the funnel's
transitions and the owner rules, and appends what happened to the log. People
act through :meth:`Engine.send`, :meth:`Engine.accept`, :meth:`Engine.reject`
and :meth:`Engine.override`; only the owning team may act, and a refused
action raises, changes nothing, and is recorded as refused.

Every state change goes through the pure fold of :mod:`buyerjourney._core.journey`,
so :meth:`Engine.rebuild` (folding the log from scratch) always equals the
live state. The engine never reads the wall clock: time comes from touches
and from the ``at`` of each call, and must not go backwards.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import heapq
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, NoReturn, Protocol, TypeVar

import attrs

from buyerjourney._core import lifecycle
from buyerjourney._core.funnel import Funnel, Transition
from buyerjourney._core.journey import Journey, apply, rebuild
from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.policies import Decision, Policy, checked_decision
from buyerjourney._core.protocols import (
    Context,
    Hooks,
    IncrementalScorer,
    Store,
    StoredLog,
    hook_name,
)
from buyerjourney._core.records import SYSTEM, Action, Actor, Record, RecordKind, Touch, parse_time
from buyerjourney._core.scoring import (
    CombinedScorer,
    Lead,
    PointsScorer,
    Score,
    Scorer,
    checked_next,
    checked_score,
)
from buyerjourney._core.table import compile_funnel
from buyerjourney.errors import (
    ActionRefused,
    BuyerJourneyError,
    CorruptLog,
    Duplicate,
    HookError,
    InvalidAction,
    InvalidTouch,
    ListenerFailed,
    ReasonRequired,
    StoreConflict,
    StoreError,
    TransitionNotAllowed,
)

__all__ = ["Engine", "IngestReport", "Overdue", "Quarantined"]

Backend = Literal["table", "statemachine"]


@attrs.frozen
class Quarantined:
    """A touch that was not ingested, with where it was and why.

    Attributes:
        position: Its 0-based position in the input given to :meth:`Engine.ingest`.
        reason: Why it was set aside.
        touch: The touch itself.
        error: The exception that explains it.
    """

    position: int
    reason: str
    touch: Touch
    error: BuyerJourneyError


@attrs.frozen
class IngestReport:
    """What :meth:`Engine.ingest` did.

    Every touch read is counted once: ``read == accepted + duplicates +
    len(quarantined)``; ``late`` counts the accepted touches that came after
    a later touch of their lead (within the engine's lateness) and were put
    back in time order.

    Attributes:
        accepted: How many touches were applied.
        records: How many records were appended to the log.
        quarantined: The touches set aside, with position and reason.
        duplicates: How many touches were skipped because their id was
            applied before (by this engine, or by another process on the
            same store).
        read: How many touches were given.
    """

    accepted: int
    records: int
    quarantined: tuple[Quarantined, ...] = ()
    duplicates: int = 0
    read: int = 0
    late: int = 0

    @property
    def applied(self) -> int:
        """How many touches were applied (the same as :attr:`accepted`)."""
        return self.accepted


@attrs.frozen
class Overdue:
    """A journey that stayed in a stage past the stage's SLA.

    Attributes:
        lead_id: The lead.
        stage: The stage it is stuck in.
        owner: The team responsible.
        deadline: When the SLA ran out.
        overdue_by: How long ago, at the time asked.
    """

    lead_id: str
    stage: str
    owner: str
    deadline: datetime
    overdue_by: timedelta


class _Step(Protocol):
    def __call__(self, stage: str, event: str, ctx: Context, reason: str | None) -> Transition: ...


def _table_stepper(funnel: Funnel, hooks: Hooks) -> _Step:
    table = compile_funnel(funnel, hooks)

    def step(stage: str, event: str, ctx: Context, reason: str | None) -> Transition:
        return table.step(stage, event, ctx, reason=reason)

    return step


def _machine_stepper(funnel: Funnel, hooks: Hooks) -> _Step:
    from buyerjourney._core.machine import build_machine_class  # noqa: PLC0415  (only this backend needs it)

    cls = build_machine_class(funnel, hooks)
    # The machine reports where it went, not which transition took it there.
    # Two guarded alternatives with the same target differ only in their guard
    # and description, which no record holds, so the first one stands for both.
    by_key: dict[tuple[str, str, str], Transition] = {}
    for t in funnel.transitions:
        by_key.setdefault((t.source, t.event, t.target), t)

    def step(stage: str, event: str, ctx: Context, reason: str | None) -> Transition:
        machine = cls(start_value=stage)
        machine.send(event, ctx=ctx, reason=reason)
        return by_key[(stage, event, machine.stage)]

    return step


class Engine:
    """Journeys for many leads, in memory, with an append-only log.

    Args:
        funnel: The funnel every journey follows.
        hooks: The guard hooks the funnel's transitions name.
        owners: Owner rules; by default each stage's ``owner`` (every stage
            must then have one).
        scorer: Scores a lead after each touch (``None``: scores stay 0).
        policy: Decides after each touch which event to send (``None``:
            journeys move only by hand).
        thresholds: Scores whose crossing (up or down) is recorded.
        listeners: Objects notified of every committed record (see
            :class:`~buyerjourney.Listener`).
        backend: ``"table"`` (the compiled table, fast) or ``"statemachine"``
            (python-statemachine, the reference semantics). Both give the
            same log.
        scorer_name: The name used for the scorer in errors and records.
        policy_name: The name used for the policy in errors and records.
        store: A :class:`~buyerjourney.Store` to keep the log in: the engine
            resumes from what it holds (journeys, scores, clock, SLA
            deadlines, the ids of applied touches) and stores every
            operation's records, with its touch, atomically before applying it.
        lateness: How late a touch may arrive and still count in time order
            (see :meth:`ingest_one`).
        defer_full_gc: Whether :meth:`ingest` defers the garbage collector's
            full collections to the end of the call (see :attr:`defer_full_gc`).

    Raises:
        InvalidOwnerRules: The owner rules do not fit the funnel.
        UnknownHook: A guard the funnel names is not in *hooks*.
    """

    def __init__(
        self,
        funnel: Funnel,
        *,
        hooks: Hooks | None = None,
        owners: OwnerRules | None = None,
        scorer: Scorer | None = None,
        policy: Policy | None = None,
        thresholds: Iterable[float] = (),
        listeners: Iterable[object] = (),
        backend: Backend = "table",
        scorer_name: str | None = None,
        policy_name: str | None = None,
        store: Store | None = None,
        lateness: timedelta = timedelta(0),
        defer_full_gc: bool = True,
    ) -> None:
        self.funnel = funnel
        self.defer_full_gc = defer_full_gc
        """Whether :meth:`ingest` runs only the collector's young collections while it works.

        The engine keeps every record and journey, and a full collection of
        Python's cyclic garbage collector visits every object that is kept:
        with the default thresholds, one long ingest pays for a growing
        series of full collections (see the performance guide). So while
        :meth:`ingest` runs (if the collector is enabled) automatic
        collection is paused and the two young generations are collected
        every 1,000 touches instead; cyclic garbage that outlives them waits
        for the next full collection after the call, when automatic
        collection is enabled again. The collector is the process's: while
        any such call runs, automatic collection is paused for every thread;
        calls that overlap (nested in a listener, or in several threads) each
        run their young collections, and the last to end enables automatic
        collection again, even if a hook disabled it meanwhile. A collector
        the caller disabled before the call is left alone. ``False`` leaves
        the collector alone.
        """
        self.hooks = hooks if hooks is not None else Hooks()
        self.owners = owners if owners is not None else OwnerRules.for_funnel(funnel)
        self.owners.validate(funnel)
        self.scorer = scorer
        self.policy = policy
        self.thresholds = tuple(sorted(set(thresholds)))
        self.listeners = list(listeners)
        if backend == "table":
            self._step = _table_stepper(funnel, self.hooks)
        elif backend == "statemachine":
            self._step = _machine_stepper(funnel, self.hooks)
        else:
            msg = f"backend must be 'table' or 'statemachine' (got {backend!r})"
            raise ValueError(msg)
        self.backend = backend
        self.scorer_name = scorer_name or hook_name(scorer, "scorer")
        self.policy_name = policy_name or hook_name(policy, "policy")
        self._recycle = lifecycle.recycle_transitions(funnel)
        self._policy_actor = lifecycle.policy_actor(self.policy_name)
        if not isinstance(lateness, timedelta) or lateness < timedelta(0):
            msg = f"lateness must be a timedelta of zero or more (got {lateness!r})"
            raise ValueError(msg)
        self.lateness = lateness
        """How late a touch may arrive and still count in time order (see :meth:`ingest_one`)."""
        self._incremental = _incremental(scorer)
        self._trusted = type(scorer) in (PointsScorer, CombinedScorer)
        self._acting: Action | None = None
        """The action being performed, stored with the records it causes."""
        self._action_id: str | None = None
        self.store = store
        """Where every operation is stored durably (``None``: in memory only)."""
        self._deferred: _Batch | None = None
        self._broken: Exception | None = None
        self._late_applied = 0
        """How many touches were applied late (re-folding their journey), ever."""
        self._written = 0
        """How many records this engine appended itself (not read from its store), ever."""
        self._reset_state()
        if store is not None:
            self._absorb(store.load())

    def _reset_state(self) -> None:
        """Start from nothing: no journeys, no log, no clock."""
        self._journeys: dict[str, Journey] = {}
        self._touches: dict[str, list[Touch]] = {}
        """Each lead's touches, kept only for a scorer that scores from the whole history."""
        self._states: dict[str, Any] = {}
        """Each lead's state of an incremental scorer."""
        self._touch_ids: set[str] = set()
        self._action_ids: set[str] = set()
        self._records: list[Record] = []
        self._records_view: tuple[Record, ...] | None = None
        self._deadlines: list[_Deadline] = []
        self._clock: datetime | None = None
        self._advanced: datetime | None = None
        """The latest time given to :meth:`advance`: nothing older is applied after it."""
        late = self.lateness > timedelta(0)
        self._inputs: dict[str, list[Touch | Action]] | None = {} if late else None
        """Each lead's inputs, kept (only with a lateness) to re-fold a journey."""
        self._lead_records: dict[str, list[Record]] | None = {} if late else None
        """Each lead's records that count, kept (only with a lateness) to re-fold a journey."""

    def _absorb(self, stored: StoredLog) -> None:
        """Fold in what a store holds beyond this engine's log (all of it, on opening).

        Journeys, scorer states, applied ids, the clock and SLA deadlines
        become what an engine that had applied those operations itself would
        have: resuming a stored log, or catching up with another writer.
        """
        records = stored.records
        base = len(self._records)
        for offset, record in enumerate(records):
            if record.seq != base + offset:
                msg = f"the stored log has a gap: expected seq {base + offset}"
                raise CorruptLog(record, msg)
        revised = any(r.kind is RecordKind.REVISED for r in records)
        if revised and base > 0:
            self._reload()  # another writer re-folded a journey: start from the whole log
            return
        touched: set[str] = set()
        journeys = self._journeys
        counted = lifecycle.effective(records) if revised else records
        if self._lead_records is not None:
            for record in counted:
                self._lead_records.setdefault(record.lead_id, []).append(record)
        for record in counted:
            current = journeys.get(record.lead_id)
            if current is None and not record.kind.changes_journey:
                continue  # an action refused because the lead had no journey yet
            journeys[record.lead_id] = apply(self.funnel, current, record)
            touched.add(record.lead_id)
        self._records.extend(records)
        incremental = self._incremental
        touches: Sequence[Touch] = stored.touches
        if base == 0:  # a re-folded lead's touches were stored late: score them in time order
            touches = sorted(touches, key=lambda t: (t.lead_id, t.at))
        for touch in touches:
            self._touch_ids.add(touch.touch_id)
            if incremental is not None:
                state = self._states.get(touch.lead_id)
                if state is None:
                    state = self._states[touch.lead_id] = incremental.start()
                incremental.add(state, touch)
            elif self.scorer is not None:
                self._touches.setdefault(touch.lead_id, []).append(touch)
        self._action_ids.update(a.action_id for a in stored.actions if a.action_id is not None)
        if self._inputs is not None:
            inputs: list[Touch | Action] = [*stored.touches, *stored.actions]
            for item in inputs:
                self._inputs.setdefault(item.lead_id, []).append(item)
            for items in self._inputs.values():
                items.sort(key=lambda item: item.at)
        times = [r.at for r in records] + [t.at for t in stored.touches]
        if self._clock is not None:
            times.append(self._clock)
        self._clock = max(times) if times else None
        for lead_id in touched:
            self._push_deadlines(journeys[lead_id])

    def _push_deadlines(self, journey: Journey) -> None:
        """Put the SLA deadlines of *journey*'s current visit that still wait on the heap."""
        for entry in _deadlines(self.funnel, journey, journey.stages[journey.stage].entered):
            sla = entry[3]
            if (sla == lifecycle.STAGE_SLA and not journey.escalated) or (
                sla == lifecycle.ACCEPTANCE_SLA
                and journey.pending_acceptance
                and not journey.acceptance_escalated
            ):
                heapq.heappush(self._deadlines, entry)

    def _reload(self) -> None:
        """Forget the in-memory state and resume from the store (after a refused batch)."""
        assert self.store is not None
        self._reset_state()
        self._absorb(self.store.load())

    def _catch_up(self) -> None:
        """Fold in what other writers appended to the store since this engine last read it."""
        assert self.store is not None
        self._absorb(self.store.load(after=len(self._records)))

    def _retrying(self, operation: Callable[[], _T]) -> _T:
        """Run one operation; when another writer went first, catch up and run it again."""
        for _ in range(_MAX_CONFLICTS):
            try:
                return operation()
            except _Conflict:
                self._catch_up()
        msg = (
            f"gave up after {_MAX_CONFLICTS} conflicts with other writers of the store; "
            "nothing of this operation was stored: try again"
        )
        raise StoreError(msg)

    # ------------------------------------------------------------------ reading

    @property
    def journeys(self) -> Mapping[str, Journey]:
        """The live journeys by lead id (read-only view)."""
        return MappingProxyType(self._journeys)

    def journey(self, lead_id: str) -> Journey:
        """The live journey of *lead_id*.

        Raises:
            KeyError: No journey for that lead.
        """
        return self._journeys[lead_id]

    @property
    def records(self) -> tuple[Record, ...]:
        """The log: every committed record, oldest first."""
        if self._records_view is None or len(self._records_view) != len(self._records):
            self._records_view = tuple(self._records)
        return self._records_view

    @property
    def clock(self) -> datetime | None:
        """The latest time the engine has seen (``None`` before anything happened)."""
        return self._clock

    def rebuild(self) -> dict[str, Journey]:
        """Fold the log from scratch; always equal to :attr:`journeys`."""
        return rebuild(self.funnel, self._records)

    def overdue(self, at: datetime) -> list[Overdue]:
        """Journeys that are past their stage's SLA at *at*, most overdue first."""
        at = parse_time(at)
        late: list[Overdue] = []
        for journey in self._journeys.values():
            deadline = journey.deadline(self.funnel)
            if deadline is not None and deadline <= at:
                late.append(
                    Overdue(journey.lead_id, journey.stage, journey.owner, deadline, at - deadline)
                )
        late.sort(key=lambda o: (o.deadline, o.lead_id))
        return late

    # ------------------------------------------------------------------ ingest

    def ingest(
        self, touches: Iterable[Touch], *, errors: Literal["quarantine", "raise"] = "quarantine"
    ) -> IngestReport:
        """Ingest touches in order, for any number of leads.

        Touches must come in time order. A touch whose id was applied before
        (by this engine, or by another process on the same store) is skipped
        and counted as a duplicate. A touch that cannot be ingested (a time
        before the engine's clock, a hook that fails on it) changes nothing;
        with ``errors="quarantine"`` (the default) it is set aside with its
        position and reason and the rest still land, with ``errors="raise"``
        the error is raised at once.

        With a store, operations are stored a few thousand to a transaction,
        and listeners hear each batch's records once it is stored. When
        another process wrote to the store meanwhile, the engine reloads the
        store and applies the batch again (then one operation per
        transaction for the rest of the call), so the result is that of a
        serial run.
        """
        counts = _Counts()
        before = self._written
        late_before = self._late_applied
        deferring = self.store is not None and self._deferred is None
        if deferring:
            self._deferred = _Batch()
        young_only = self.defer_full_gc and _collector.pause()
        try:
            for position, touch in enumerate(touches):
                counts.read += 1
                try:
                    self._ingest_counted(position, touch, counts, errors)
                except _BatchConflict as conflict:
                    self._redo(conflict.batch, counts, errors)
                if young_only and position % _YOUNG_EVERY == _YOUNG_EVERY - 1:
                    gc.collect(1)
        finally:
            if young_only:
                _collector.resume()
            if deferring and self._deferred is not None:
                try:
                    self._flush_deferred()
                except _BatchConflict as conflict:
                    self._redo(conflict.batch, counts, errors)
                finally:
                    self._deferred = None
        return IngestReport(
            counts.accepted,
            self._written - before,
            tuple(counts.quarantined),
            counts.duplicates,
            counts.read,
            self._late_applied - late_before,
        )

    def _ingest_counted(self, position: int, touch: Touch, counts: _Counts, errors: str) -> None:
        try:
            self.ingest_one(touch)
        except Duplicate:
            counts.duplicates += 1
        except (InvalidTouch, HookError) as exc:
            if errors == "raise":
                raise
            counts.quarantined.append(Quarantined(position, str(exc), touch, exc))
        else:
            counts.accepted += 1
            batch = self._deferred
            if batch is not None:
                batch.inputs.append((position, touch))
                if len(batch.inputs) >= _DEFER_LIMIT:
                    self._flush_deferred()

    def _redo(self, batch: _Batch, counts: _Counts, errors: str) -> None:
        """Apply a batch the store refused again, one operation per transaction."""
        self._deferred = None
        self._late_applied -= batch.late
        self._written -= len(batch.records)
        self._reload()
        for position, touch in batch.inputs:
            counts.accepted -= 1
            self._ingest_counted(position, touch, counts, errors)

    def _flush_deferred(self) -> None:
        """Store the operations of an ingest that are not stored yet, in one transaction.

        Raises:
            _BatchConflict: Another writer went first; nothing was stored.
            StoreError: The store failed; the engine stops (it is ahead of its store).
        """
        assert self.store is not None
        batch = self._deferred
        assert batch is not None
        if batch.records or batch.touches:
            try:
                self.store.commit(
                    batch.records,
                    batch.touches,
                    expected=batch.records[0].seq if batch.records else len(self._records),
                    journeys=batch.journeys,
                )
            except StoreConflict:
                self._deferred = _Batch()
                raise _BatchConflict(batch) from None
            except Exception as exc:
                self._broken = exc
                self._deferred = _Batch()  # reported once: not tried again at the end
                msg = (
                    f"the store refused {len(batch.touches)} ingested touches ({exc}); this "
                    "engine is now ahead of its store and stops: open a new engine on the "
                    "store and ingest again (touches already stored are recognised as "
                    "duplicates)"
                )
                raise StoreError(msg) from exc
        self._deferred = _Batch()
        failures: list[tuple[object, Record, Exception]] = []
        for record, journey in batch.notices:
            _notify(self.listeners, record, journey, failures)
        if failures:
            listener, record, error = failures[0]
            raise ListenerFailed(hook_name(listener, "listener"), record, len(failures)) from error

    def ingest_one(self, touch: Touch) -> Journey:
        """Ingest one touch and return the lead's journey afterwards.

        Raises:
            Duplicate: The touch's id was applied before; nothing changed.
            InvalidTouch: The touch is older than the engine's clock.
            HookError: The scorer or the policy failed; nothing changed.
        """
        if not isinstance(touch, Touch):
            raise InvalidTouch("<touch>", touch, "a buyerjourney.Touch")
        if self.store is None or self._deferred is not None:
            return self._ingest_one(touch)
        return self._retrying(lambda: self._ingest_one(touch))

    def _ingest_one(self, touch: Touch) -> Journey:
        if touch.touch_id in self._touch_ids:
            raise Duplicate("touch_id", touch.touch_id)
        self._check_clock(touch.at, "touch")
        lead_id = touch.lead_id
        journey = self._journeys.get(lead_id)
        if journey is not None and touch.at < journey.updated:  # late, within the lateness
            return self._refold(touch)
        self._move_clock(touch.at, lead_id)
        pending = _Pending(self)
        journey = self._journeys.get(lead_id)
        created = journey is None
        if journey is None:
            initial = self.funnel.initial.name
            journey = pending.add(
                lifecycle.created(
                    lead_id,
                    pending.seq,
                    touch.at,
                    stage=initial,
                    team=self.owners.owner(initial, touch.attributes),
                    touch_id=touch.touch_id,
                    attributes=touch.attributes,
                )
            )
        attributes = (
            {**journey.attributes, **touch.attributes} if touch.attributes else journey.attributes
        )
        incremental = self._incremental
        state: Any = None
        if incremental is not None:
            state = self._states.get(lead_id)
            if state is None:
                state = incremental.start()
            score = checked_next(
                self.scorer_name, incremental, state, touch, attributes, trusted=self._trusted
            )
        elif self.scorer is None:
            score = _ZERO
        else:
            history = (*self._touches.get(lead_id, ()), touch)
            lead = Lead(lead_id, attributes, history)
            score = checked_score(self.scorer_name, self.scorer, lead, touch.at, touch.touch_id)
        old = journey.score
        journey = pending.add(
            lifecycle.scored(
                lead_id,
                pending.seq,
                touch.at,
                score=score.value,
                delta=score.value - old,
                breakdown=score,  # its rows are written when first read
                grade=score.grade,
                attributes=None if created else touch.attributes,  # CREATED carries them
                touch_id=touch.touch_id,
            )
        )
        for limit, _ in lifecycle.crossings(self.thresholds, old, score.value):
            journey = pending.add(
                lifecycle.threshold(
                    lead_id,
                    pending.seq,
                    touch.at,
                    score=score.value,
                    limit=limit,
                    touch_id=touch.touch_id,
                )
            )
        if self.policy is not None:
            decision = checked_decision(self.policy_name, self.policy, journey, score, touch)
            if decision.event is not None:
                journey = self._decide(pending, journey, decision, touch)
        pending.touches.append(touch)
        pending.persist()
        if incremental is not None:
            incremental.add(state, touch)
            self._states[lead_id] = state
        elif self.scorer is not None:
            self._touches.setdefault(lead_id, []).append(touch)
        pending.commit()
        return journey

    def _sibling(self) -> Engine:
        """A new engine with this one's funnel, rules and hooks; no state, store or listeners."""
        sibling = copy.copy(self)
        sibling.lateness = timedelta(0)
        sibling.store = None
        sibling.listeners = []
        sibling._deferred = None
        sibling._broken = None
        sibling._acting = None
        sibling._action_id = None
        sibling._reset_state()
        return sibling

    def _refold(self, touch: Touch) -> Journey:
        """Apply a touch older than its lead's latest change: re-fold that lead in time order.

        The lead's inputs (with the late touch in its place) run through a
        fresh engine, escalated up to this engine's watermark; where its
        records part from the lead's, a REVISED record supersedes the rest and
        the new records follow. The journey (and every report, which reads
        :func:`~buyerjourney.effective_records`) is then what on-time arrival
        would have given.

        Raises:
            InvalidTouch, HookError: The late touch cannot be applied (nothing changed).
        """
        assert self._inputs is not None
        assert self._lead_records is not None
        lead_id = touch.lead_id
        inputs = sorted([*self._inputs.get(lead_id, ()), touch], key=lambda item: item.at)
        sibling = self._sibling()
        for item in inputs:
            if isinstance(item, Touch):
                sibling.ingest_one(item)
            else:
                # refused, and recorded as refused: as it was the first time
                with contextlib.suppress(
                    ActionRefused, TransitionNotAllowed, HookError, ReasonRequired
                ):
                    sibling.perform(item)
        horizon = self.watermark
        if horizon is not None and (sibling.clock is None or horizon > sibling.clock):
            sibling.advance(horizon)
        new = sibling.records
        old = self._lead_records.get(lead_id, [])
        keep = 0
        while keep < len(old) and keep < len(new) and _same(old[keep], new[keep]):
            keep += 1
        pending = _Pending(self)
        pending.touches.append(touch)
        after = old[keep - 1].seq if keep else -1
        pending.note(
            lifecycle.revised(lead_id, pending.seq, touch.at, after=after, touch_id=touch.touch_id)
        )
        pending.journeys[lead_id] = rebuild(self.funnel, old[:keep]).get(lead_id)  # type: ignore[assignment]
        pending.revised = (lead_id, keep)
        for record in new[keep:]:
            moved = attrs.evolve(record, seq=pending.seq)
            if moved.kind.changes_journey:
                pending.add(moved)
            else:
                pending.note(moved)
        pending.persist()
        if self._incremental is not None:
            self._states[lead_id] = sibling._states[lead_id]
        elif self.scorer is not None:
            self._touches[lead_id] = sibling._touches.get(lead_id, [])
        pending.commit()
        journey = self._journeys[lead_id]
        self._push_deadlines(journey)  # the final visit may have begun in the kept prefix
        self._late_applied += 1
        if self._deferred is not None:
            self._deferred.late += 1
        return journey

    def _decide(
        self, pending: _Pending, journey: Journey, decision: Decision, touch: Touch
    ) -> Journey:
        event = decision.event
        assert event is not None
        actor = self._policy_actor
        refusal: str | None = None
        if journey.pending_acceptance:
            refusal = lifecycle.AWAITS_ACCEPTANCE.format(stage=journey.stage)
        else:
            try:
                transition = self._step(
                    journey.stage, event, self._context(journey, event, touch.at), decision.reason
                )
            except TransitionNotAllowed as exc:
                refusal = str(exc)
        if refusal is not None:
            pending.note(
                lifecycle.refused(
                    journey.lead_id,
                    pending.seq,
                    touch.at,
                    actor=actor,
                    event=event,
                    stage=journey.stage,
                    reason=refusal,
                    touch_id=touch.touch_id,
                )
            )
            return journey
        return self._move(
            pending,
            journey,
            transition,
            at=touch.at,
            actor=actor,
            reason=decision.reason,
            touch_id=touch.touch_id,
        )

    # ------------------------------------------------------------------ people

    def send(
        self, lead_id: str, event: str, *, actor: Actor, at: datetime, reason: str | None = None
    ) -> Journey:
        """Move a journey by hand with a funnel event.

        Only a person of the owning team may do it (or the system actor).

        Raises:
            ActionRefused: The actor may not act, or the journey waits for acceptance.
            TransitionNotAllowed: The event is not legal from the current stage.
            ReasonRequired: A backward event without a reason.
            HookError: A guard failed.
            InvalidAction: *at* is not an aware time, or is before the engine's clock.
        """
        return self._act(
            "send",
            lead_id,
            at,
            actor,
            lambda: self._send(lead_id, event, actor=actor, at=at, reason=reason),
            event=event,
            reason=reason,
        )

    def _send(
        self, lead_id: str, event: str, *, actor: Actor, at: datetime, reason: str | None
    ) -> Journey:
        """Move a journey by hand with a funnel event.

        Only a person of the owning team may do it (or the system actor).

        Raises:
            ActionRefused: The actor may not act, or the journey waits for acceptance.
            TransitionNotAllowed: The event is not legal from the current stage.
            ReasonRequired: A backward event without a reason.
            HookError: A guard failed.
            InvalidAction: *at* is not an aware time, or is before the engine's clock.
        """
        at = self._manual_time(at, event, lead_id)
        journey = self._require(lead_id, event, actor, at)
        self._permit(journey, event, actor, at)
        if journey.pending_acceptance:
            self._refuse(
                journey.lead_id,
                event,
                actor,
                at,
                lifecycle.AWAITS_ANSWER.format(stage=journey.stage),
            )
        try:
            transition = self._step(journey.stage, event, self._context(journey, event, at), reason)
        except (TransitionNotAllowed, HookError) as exc:
            self._refuse(journey.lead_id, event, actor, at, str(exc), cause=exc)
        pending = _Pending(self, self._acting)
        journey = self._move(
            pending, journey, transition, at=at, actor=actor, reason=reason or "", touch_id=None
        )
        pending.commit()
        return journey

    def accept(self, lead_id: str, *, actor: Actor, at: datetime, reason: str = "") -> Journey:
        """Accept the handoff of a journey waiting in a gate stage.

        Raises:
            ActionRefused: Nothing to accept, or the actor is not of the receiving team.
        """
        return self._act(
            "accept",
            lead_id,
            at,
            actor,
            lambda: self._accept(lead_id, actor=actor, at=at, reason=reason),
            reason=reason,
        )

    def _accept(self, lead_id: str, *, actor: Actor, at: datetime, reason: str) -> Journey:
        journey, at = self._waiting_handoff(lead_id, "accept", actor, at)
        pending = _Pending(self, self._acting)
        journey = pending.add(
            lifecycle.accepted(
                lead_id,
                pending.seq,
                at,
                actor=actor,
                stage=journey.stage,
                team=journey.owner,
                reason=reason,
            )
        )
        pending.commit()
        return journey

    def reject(self, lead_id: str, *, actor: Actor, at: datetime, reason: str) -> Journey:
        """Reject the handoff of a journey waiting in a gate stage.

        The journey moves back along the gate's backward (recycle)
        transition, with *reason*.

        Raises:
            ActionRefused: Nothing to reject, no reason, or the actor is not of
                the receiving team.
        """
        return self._act(
            "reject",
            lead_id,
            at,
            actor,
            lambda: self._reject(lead_id, actor=actor, at=at, reason=reason),
            reason=reason,
        )

    def _reject(self, lead_id: str, *, actor: Actor, at: datetime, reason: str) -> Journey:
        journey, at = self._waiting_handoff(lead_id, "reject", actor, at)
        if not isinstance(reason, str) or not reason.strip():
            self._refuse(lead_id, "reject", actor, at, lifecycle.REJECTION_NEEDS_REASON)
        recycle = self._recycle.get(journey.stage)
        if recycle is None:
            stage = journey.stage
            self._refuse(lead_id, "reject", actor, at, lifecycle.NO_RECYCLE.format(stage=stage))
        pending = _Pending(self, self._acting)
        journey = pending.add(
            lifecycle.rejected(
                lead_id,
                pending.seq,
                at,
                actor=actor,
                recycle=recycle,
                team=journey.owner,
                reason=reason,
            )
        )
        journey = self._move(
            pending, journey, recycle, at=at, actor=actor, reason=reason, touch_id=None
        )
        pending.commit()
        return journey

    def override(
        self, lead_id: str, stage: str, *, actor: Actor, at: datetime, reason: str
    ) -> Journey:
        """Set a journey's stage by hand, outside the funnel's transitions.

        The highest stage reached is kept. Only the owning team may override,
        and it needs a reason.

        Raises:
            ActionRefused: The actor may not act, there is no reason, or the
                stage is the current one.
            UnknownStage: The funnel has no such stage.
            InvalidAction: *at* is not an aware time, or is before the engine's clock.
        """
        return self._act(
            "override",
            lead_id,
            at,
            actor,
            lambda: self._override(lead_id, stage, actor=actor, at=at, reason=reason),
            stage=stage,
            reason=reason,
        )

    def _override(
        self, lead_id: str, stage: str, *, actor: Actor, at: datetime, reason: str
    ) -> Journey:
        at = self._manual_time(at, "override", lead_id)
        target = self.funnel.stage(stage)
        journey = self._require(lead_id, "override", actor, at)
        self._permit(journey, "override", actor, at)
        if not isinstance(reason, str) or not reason.strip():
            self._refuse(lead_id, "override", actor, at, lifecycle.OVERRIDE_NEEDS_REASON)
        if target.name == journey.stage:
            self._refuse(
                lead_id, "override", actor, at, lifecycle.ALREADY_IN.format(stage=target.name)
            )
        pending = _Pending(self, self._acting)
        source = journey.stage
        journey = pending.add(
            lifecycle.override(
                lead_id,
                pending.seq,
                at,
                actor=actor,
                source=source,
                target=target.name,
                reason=reason,
            )
        )
        journey = self._handoff(pending, journey, at=at, actor=actor, reason=reason, touch_id=None)
        pending.commit()
        return journey

    def perform(self, action: Action) -> Journey:
        """Perform a manual :class:`~buyerjourney.Action` (as read from a stream).

        The one place an action value is dispatched to :meth:`send`,
        :meth:`accept`, :meth:`reject` or :meth:`override`; raises what they
        raise. An action with an ``action_id`` is applied once: given again
        (here, or to another engine on the same store), it raises
        :class:`~buyerjourney.errors.Duplicate` and changes nothing.
        """
        action_id = action.action_id
        if action_id is not None and action_id in self._action_ids:
            raise Duplicate("action_id", action_id)
        self._action_id = action_id
        try:
            return self._dispatch(action)
        finally:
            self._action_id = None

    def _dispatch(self, action: Action) -> Journey:
        if action.action == "send":
            return self.send(
                action.lead_id,
                action.event or "",
                actor=action.actor,
                at=action.at,
                reason=action.reason or None,
            )
        if action.action == "accept":
            return self.accept(
                action.lead_id, actor=action.actor, at=action.at, reason=action.reason
            )
        if action.action == "reject":
            return self.reject(
                action.lead_id, actor=action.actor, at=action.at, reason=action.reason
            )
        return self.override(
            action.lead_id,
            action.stage or "",
            actor=action.actor,
            at=action.at,
            reason=action.reason,
        )

    def _act(
        self,
        action: str,
        lead_id: str,
        at: datetime,
        actor: Actor,
        run: Callable[[], _T],
        *,
        event: str | None = None,
        stage: str | None = None,
        reason: str | None = "",
    ) -> _T:
        """Run a manual action as one operation, stored with its :class:`Action`.

        With a store, an operation another writer beat is retried after catching up.
        """

        def attempt() -> _T:
            action_id = self._action_id
            if action_id is not None and action_id in self._action_ids:
                raise Duplicate("action_id", action_id)  # another writer applied it meanwhile
            try:
                self._acting = Action(
                    action, lead_id, at, actor, event, stage, reason or "", action_id
                )
            except (InvalidTouch, TypeError):
                self._acting = None  # a bad time: the action itself raises InvalidAction
            try:
                return run()
            finally:
                self._acting = None

        if self.store is None:
            return attempt()
        return self._retrying(attempt)

    # ------------------------------------------------------------------ time

    def advance(self, at: datetime) -> list[Record]:
        """Move the engine's clock to *at*, escalating every SLA breached by then.

        Returns the escalation records, each dated at its deadline. With a
        lateness, *at* also closes the window: no touch older than *at* is
        applied afterwards.

        Raises:
            InvalidAction: *at* is not an aware time, or is before the engine's clock.
        """
        given = at
        try:
            at = parse_time(at)
        except InvalidTouch as exc:
            raise InvalidAction("advance", "at", given, exc.expected) from None
        self._check_clock(at, "advance", given)
        if self.store is None or self._deferred is not None:
            out = self._escalate_until(at)
        else:  # another writer may go first: catch up and escalate what is still due
            out = self._retrying(lambda: self._escalate_until(at))
        self._clock = at if self._clock is None or at > self._clock else self._clock
        if self._advanced is None or at > self._advanced:
            self._advanced = at
        return out

    def _escalate_until(self, horizon: datetime) -> list[Record]:
        """Escalate every deadline up to *horizon*, in escalation order.

        A deadline whose escalation the store refused (another writer went
        first) goes back on the heap, so that the retry after catching up
        still sees it.
        """
        out: list[Record] = []
        while self._deadlines and self._deadlines[0][0][0] <= horizon:
            entry = heapq.heappop(self._deadlines)
            try:
                out.extend(self._escalate(entry))
            except _Conflict:
                heapq.heappush(self._deadlines, entry)
                raise
        return out

    def _escalate(self, entry: _Deadline) -> list[Record]:
        """The escalation of one deadline, if the visit it belongs to still waits."""
        key, stage, entered, sla = entry
        deadline, lead_id = key[0], key[1]
        journey = self._journeys[lead_id]
        if journey.stage != stage or journey.stages[stage].entered != entered:
            return []  # the journey left that visit
        if sla == lifecycle.STAGE_SLA and journey.escalated:
            return []
        if sla == lifecycle.ACCEPTANCE_SLA and (
            not journey.pending_acceptance or journey.acceptance_escalated
        ):
            return []  # answered in time, or already escalated
        pending = _Pending(self)
        pending.add(
            lifecycle.escalation(
                lead_id,
                pending.seq,
                stage=stage,
                entered=entered,
                deadline=deadline,
                team=journey.owner,
                sla=sla,
            )
        )
        return pending.commit()

    def _move_clock(self, at: datetime, lead_id: str) -> None:
        """Time moves to *at* for an input of *lead_id*: escalate what is due by then.

        Without a lateness, every deadline up to *at* (as :meth:`advance`).
        With one, every deadline up to the watermark (the latest time seen
        less the lateness), and the lead's own deadlines up to *at*: so each
        lead's log is what on-time arrival would give.
        """
        if not self._inputs_kept:
            self._escalate_until(at)
        else:
            latest = at if self._clock is None or at > self._clock else self._clock
            horizon = latest - self.lateness
            if self._advanced is not None and self._advanced > horizon:
                horizon = self._advanced
            self._escalate_until(horizon)
            journey = self._journeys.get(lead_id)
            if journey is not None:
                entered = journey.stages[journey.stage].entered
                for entry in sorted(_deadlines(self.funnel, journey, entered)):
                    if entry[0][0] <= at:
                        self._escalate(entry)
        if self._clock is None or at > self._clock:
            self._clock = at

    @property
    def _inputs_kept(self) -> bool:
        return self._inputs is not None

    @property
    def watermark(self) -> datetime | None:
        """The oldest time an input may have now (``None`` before anything happened).

        The clock less the lateness, or the last :meth:`advance` if later.
        """
        if self._clock is None:
            return self._advanced
        limit = self._clock - self.lateness
        if self._advanced is not None and self._advanced > limit:
            return self._advanced
        return limit

    # ------------------------------------------------------------------ internals

    def _context(self, journey: Journey, event: str, at: datetime) -> Context:
        """What a guard sees; built slot by slot: a journey's attributes are frozen already."""
        context: Context = _new(Context)
        _set_context_lead_id(context, journey.lead_id)
        _set_context_stage(context, journey.stage)
        _set_context_event(context, event)
        _set_context_attributes(context, journey.attributes)
        _set_context_score(context, journey.score)
        _set_context_at(context, at)
        return context

    def _move(
        self,
        pending: _Pending,
        journey: Journey,
        transition: Transition,
        *,
        at: datetime,
        actor: Actor,
        reason: str,
        touch_id: str | None,
    ) -> Journey:
        journey = pending.add(
            lifecycle.transition(
                journey.lead_id,
                pending.seq,
                at,
                move=transition,
                actor=actor,
                reason=reason,
                touch_id=touch_id,
            )
        )
        return self._handoff(pending, journey, at=at, actor=actor, reason=reason, touch_id=touch_id)

    def _handoff(
        self,
        pending: _Pending,
        journey: Journey,
        *,
        at: datetime,
        actor: Actor,
        reason: str,
        touch_id: str | None,
    ) -> Journey:
        team = self.owners.owner(journey.stage, journey.attributes)
        if team == journey.owner:
            return journey
        return pending.add(
            lifecycle.handoff(
                journey.lead_id,
                pending.seq,
                at,
                stage=journey.stage,
                from_team=journey.owner,
                to_team=team,
                actor=actor,
                reason=reason,
                touch_id=touch_id,
            )
        )

    def _check_clock(self, at: datetime, what: str, given: object = None) -> None:
        limit = self.watermark
        if limit is not None and at < limit:
            clock = self._clock.isoformat() if self._clock is not None else "-"
            if self.lateness:
                expected = (
                    f"a time not before {limit.isoformat()} (the engine's clock {clock} less "
                    f"the allowed lateness {self.lateness}); it arrived too late"
                )
            else:
                expected = (
                    f"a time not before the engine's clock {clock}; feed the engine in time "
                    "order (or allow some lateness: Engine(..., lateness=...))"
                )
            if what == "touch":
                raise InvalidTouch("at", at, expected)
            raise InvalidAction(what, "at", at if given is None else given, expected)

    def _manual_time(self, at: datetime, action: str, lead_id: str) -> datetime:
        try:
            parsed = parse_time(at)
        except InvalidTouch as exc:
            raise InvalidAction(action, "at", at, exc.expected) from None
        self._check_clock(parsed, action, at)
        journey = self._journeys.get(lead_id)
        if self._inputs_kept and journey is not None and parsed < journey.updated:
            expected = (
                f"a time not before the lead's latest change {journey.updated.isoformat()} "
                "(only touches are put back in time order; actions must come in order per lead)"
            )
            raise InvalidAction(action, "at", at, expected)
        self._move_clock(parsed, lead_id)
        return parsed

    def _waiting_handoff(
        self, lead_id: str, action: str, actor: Actor, at: datetime
    ) -> tuple[Journey, datetime]:
        """The journey an accept or reject is for, after the checks both share."""
        at = self._manual_time(at, action, lead_id)
        journey = self._require(lead_id, action, actor, at)
        self._permit(journey, action, actor, at)
        if not journey.pending_acceptance:
            self._refuse(lead_id, action, actor, at, lifecycle.NOTHING_TO_ANSWER)
        return journey, at

    def _require(self, lead_id: str, action: str, actor: Actor, at: datetime) -> Journey:
        journey = self._journeys.get(lead_id)
        if journey is None:
            self._refuse(lead_id, action, actor, at, lifecycle.NO_JOURNEY)
        return journey

    def _permit(self, journey: Journey, action: str, actor: Actor, at: datetime) -> None:
        if actor == SYSTEM or self.owners.may_act(actor, journey.owner):
            return
        self._refuse(
            journey.lead_id, action, actor, at, lifecycle.OWNED_BY.format(owner=journey.owner)
        )

    def _refuse(
        self,
        lead_id: str,
        action: str,
        actor: Actor,
        at: datetime,
        reason: str,
        *,
        cause: BuyerJourneyError | None = None,
    ) -> NoReturn:
        journey = self._journeys.get(lead_id)
        pending = _Pending(self, self._acting)
        pending.note(
            lifecycle.refused(
                lead_id,
                pending.seq,
                at,
                actor=actor,
                event=action,
                stage=journey.stage if journey is not None else None,
                reason=reason,
            )
        )
        pending.commit()
        if cause is not None:
            raise cause
        raise ActionRefused(lead_id, action, actor, reason)


_ZERO = Score(0.0)

_Deadline = tuple[tuple[Any, ...], str, datetime, str]
"""A heap entry: (escalation order key, stage, when the visit began, which SLA)."""


def _deadlines(funnel: Funnel, journey: Journey, at: datetime) -> list[_Deadline]:
    """The SLA deadlines of the visit *journey* began at *at* (its stage's, and a gate's).

    Raises:
        InvalidTouch: A deadline falls outside the calendar.
    """
    stage = journey.stage
    entered = journey.stages[stage].entered
    out: list[_Deadline] = []
    try:
        deadline = lifecycle.sla_deadline(funnel, stage, entered)
        waiting = (
            lifecycle.acceptance_deadline(funnel, stage, entered)
            if journey.pending_acceptance
            else None
        )
    except OverflowError:
        raise InvalidTouch(
            "at", at, f"a time whose SLA deadlines in {stage!r} stay within the calendar"
        ) from None
    for when, sla in ((deadline, lifecycle.STAGE_SLA), (waiting, lifecycle.ACCEPTANCE_SLA)):
        if when is not None:
            out.append(
                (lifecycle.escalation_order(when, journey.lead_id, sla), stage, entered, sla)
            )
    return out


_DEFER_LIMIT = 2_000
"""How many ingested touches :meth:`Engine.ingest` stores per transaction at most."""


_new = object.__new__
(
    _set_context_lead_id,
    _set_context_stage,
    _set_context_event,
    _set_context_attributes,
    _set_context_score,
    _set_context_at,
) = (
    Context.__dict__[name].__set__
    for name in ("lead_id", "stage", "event", "attributes", "score", "at")
)

_YOUNG_EVERY = 1_000
"""How many touches :meth:`Engine.ingest` applies between two young collections."""


class _Collector:
    """Automatic garbage collection paused while ingest calls run (see ``Engine.defer_full_gc``).

    Counted, so that ingest calls that overlap (nested in a listener, or in
    other threads) all run their young collections, and the collector is
    enabled again when the last of them ends, if the first of them was the
    one that disabled it. A collector disabled by the caller stays alone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._disabled = False
        """Whether the collector was disabled by these calls (and must be enabled again)."""

    def pause(self) -> bool:
        """Start an ingest call; whether it should run the young collections itself."""
        with self._lock:
            if self._calls == 0:
                if not gc.isenabled():
                    return False  # the caller's choice
                gc.disable()
                self._disabled = True
            self._calls += 1
            return True

    def resume(self) -> None:
        """End an ingest call that :meth:`pause` let run its young collections."""
        with self._lock:
            self._calls -= 1
            if self._calls == 0 and self._disabled:
                self._disabled = False
                gc.enable()


_collector = _Collector()


def _incremental(scorer: Scorer | None) -> IncrementalScorer | None:
    """*scorer* if it keeps per-lead state (and says it can, for a combined scorer)."""
    if isinstance(scorer, IncrementalScorer) and getattr(scorer, "incremental", True):
        return scorer
    return None


class _Conflict(Exception):
    """Another writer committed first; the operation must be run again after catching up."""


class _BatchConflict(Exception):
    """Another writer committed while an ingest batch was held back: redo the batch."""

    def __init__(self, batch: _Batch) -> None:
        super().__init__("the store refused a batch: another writer went first")
        self.batch = batch


_T = TypeVar("_T")

_MAX_CONFLICTS = 1_000
"""How many times one operation is retried after conflicts before the engine gives up."""


@attrs.define
class _Batch:
    """The operations of an ingest held back to be stored in one transaction."""

    records: list[Record] = attrs.Factory(list)
    touches: list[Touch] = attrs.Factory(list)
    journeys: dict[str, Journey] = attrs.Factory(dict)
    notices: list[tuple[Record, Journey | None]] = attrs.Factory(list)
    """What listeners hear once the batch is stored."""
    inputs: list[tuple[int, Touch]] = attrs.Factory(list)
    """The touches applied in the batch, with their positions (to apply them again)."""
    late: int = 0
    """How many of them were applied late (re-folding their journey)."""


@attrs.define
class _Counts:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: list[Quarantined] = attrs.Factory(list)


class _Pending:
    """Records of one operation, folded as they are added and committed together.

    Nothing reaches the engine until :meth:`commit`, so an operation that
    fails half-way (a hook raising) leaves the engine unchanged.
    """

    __slots__ = (
        "actions",
        "deadlines",
        "engine",
        "first",
        "journeys",
        "persisted",
        "records",
        "revised",
        "seq",
        "touches",
    )

    def __init__(self, engine: Engine, action: Action | None = None) -> None:
        self.engine = engine
        self.records: list[Record] = []
        self.journeys: dict[str, Journey] = {}
        self.seq = len(engine._records)
        """The place in the log of the next record."""
        self.first = self.seq
        self.deadlines: dict[str, list[_Deadline]] = {}
        """The SLA deadlines of the stage each journey entered last in this operation."""
        self.touches: list[Touch] = []
        """The touch the operation applies, kept with its records in the store."""
        self.actions: list[Action] = [action] if action is not None else []
        """The action the operation performs, kept with its records in the store."""
        self.persisted = False
        self.revised: tuple[str, int] | None = None
        """For a re-fold: the lead, and how many of its records still count."""

    def add(self, record: Record) -> Journey:
        """Append a state-changing record and return the journey after it.

        Raises:
            InvalidTouch: The stage entered has an SLA whose deadline falls
                outside the calendar (nothing is committed).
        """
        lead_id = record.lead_id
        current = self.journeys.get(lead_id, self.engine._journeys.get(lead_id))
        journey = apply(self.engine.funnel, current, record)
        if record.kind.enters_stage:
            self.deadlines[lead_id] = _deadlines(self.engine.funnel, journey, record.at)
        self.journeys[lead_id] = journey
        self.records.append(record)
        self.seq += 1
        return journey

    def note(self, record: Record) -> None:
        """Append a refusal: recorded, but it changes no journey."""
        self.records.append(record)
        self.seq += 1

    def persist(self) -> None:
        """Store the operation (once), before anything in memory changes: all or nothing.

        During :meth:`Engine.ingest` operations are held back and stored
        together, a few thousand to a transaction: whole operations either
        way, never part of one.

        Raises:
            _Conflict: Another writer committed first; nothing was stored.
        """
        engine = self.engine
        store = engine.store
        if store is not None and not self.persisted and (self.records or self.touches):
            if engine._broken is not None:
                msg = "this engine is ahead of its store; open a new engine on the store"
                raise StoreError(msg) from engine._broken
            batch = engine._deferred
            if batch is None:
                try:
                    store.commit(
                        self.records,
                        self.touches,
                        self.actions,
                        expected=self.first,
                        journeys=self.journeys,
                    )
                except StoreConflict:
                    raise _Conflict from None
            else:
                batch.records.extend(self.records)
                batch.touches.extend(self.touches)
                batch.journeys.update(self.journeys)
        self.persisted = True

    def _keep_for_refolds(
        self, inputs: dict[str, list[Touch | Action]], lead_records: dict[str, list[Record]]
    ) -> None:
        """Keep each lead's inputs and the records that count (only with a lateness)."""
        given: list[Touch | Action] = [*self.touches, *self.actions]
        for item in given:
            inputs.setdefault(item.lead_id, []).append(item)
        records = self.records
        if self.revised is not None:
            lead_id, keep = self.revised
            lead_records[lead_id] = lead_records.get(lead_id, [])[:keep]
            records = [r for r in records if r.kind is not RecordKind.REVISED]
        for record in records:
            lead_records.setdefault(record.lead_id, []).append(record)

    def commit(self) -> list[Record]:
        """Hand the records and journeys to the engine, then tell every listener.

        Raises:
            ListenerFailed: A listener raised; the operation is committed all
                the same, and every other listener received every record.
        """
        engine = self.engine
        self.persist()
        engine._records.extend(self.records)
        engine._written += len(self.records)
        engine._journeys.update(self.journeys)
        for lead_id, entries in self.deadlines.items():
            for entry in entries:
                if engine._journeys[lead_id].stage == entry[1]:
                    heapq.heappush(engine._deadlines, entry)
        touch_ids = engine._touch_ids
        for touch in self.touches:
            touch_ids.add(touch.touch_id)
        if self.actions:
            engine._action_ids.update(a.action_id for a in self.actions if a.action_id is not None)
        if engine._inputs is not None and engine._lead_records is not None:
            self._keep_for_refolds(engine._inputs, engine._lead_records)
        failures: list[tuple[object, Record, Exception]] = []
        batch = engine._deferred if engine.store is not None else None
        for record in self.records:
            if engine._clock is None or record.at > engine._clock:
                engine._clock = record.at
            if batch is not None:  # heard once the batch is stored
                batch.notices.append((record, engine._journeys.get(record.lead_id)))
            elif engine.listeners:
                _notify(engine.listeners, record, engine._journeys.get(record.lead_id), failures)
        if failures:
            listener, record, error = failures[0]
            raise ListenerFailed(hook_name(listener, "listener"), record, len(failures)) from error
        return self.records


def _same(a: Record, b: Record) -> bool:
    """Whether two records say the same thing, wherever they are in the log."""
    return attrs.evolve(a, seq=0) == attrs.evolve(b, seq=0)


_KIND_HOOKS: Mapping[RecordKind, str] = {
    RecordKind.HANDOFF: "on_handoff",
    RecordKind.ESCALATION: "on_escalation",
    RecordKind.REFUSED: "on_refused",
}


def _notify(
    listeners: Sequence[object],
    record: Record,
    journey: Journey | None,
    failures: list[tuple[object, Record, Exception]],
) -> None:
    """Give *record* to every listener; a listener that raises is noted, the others still hear."""
    special = _KIND_HOOKS.get(record.kind)
    for listener in listeners:
        for name in ("on_record", special):
            method: Callable[[Record, Journey | None], object] | None = (
                getattr(listener, name, None) if name else None
            )
            if method is not None:
                try:
                    method(record, journey)
                except Exception as exc:
                    failures.append((listener, record, exc))
