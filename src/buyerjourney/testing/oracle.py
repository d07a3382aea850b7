"""The independent oracle: the journey rules written a second time, as an executable specification.

The engine keeps each of its rules in one home: the fold of
:mod:`buyerjourney._core.journey`, the record builders and reason texts of
:mod:`buyerjourney._core.lifecycle`, the compiled table, the hook contracts,
the owner rules. This module states the same rules again, from the
documentation, and calls none of them. That is on purpose: a test that asked
the engine's own rules what the engine should do would take every bug in a
rule for the truth. The stateful harness (:mod:`buyerjourney.testing.harness`)
asks an :class:`Oracle` before every step what the step must write, raise and
leave behind, and the conformance suite
(:mod:`buyerjourney.testing.conformance`) runs one beside every backend.

What the oracle may use is data and vocabulary: the stages and transitions of
a funnel, the defaults, overrides and members of owner rules, the value types
(:class:`~buyerjourney.Touch`, :class:`~buyerjourney.Action`,
:class:`~buyerjourney.Journey`, :class:`~buyerjourney.StageTime`,
:class:`~buyerjourney.Score`, :class:`~buyerjourney.Decision` ...) and the
error classes, to name what it expects. What it must not call: the fold
(``apply``, ``rebuild``), anything of ``lifecycle``, the compiled table or the
python-statemachine class, ``evaluate_guard``, ``checked_score``,
``checked_decision``, the queries of owner rules (``owner``, ``may_act``,
``matching_rule``, ``Condition.matches``), the queries of a funnel
(``transitions_from``, ``allowed_events``, ``stage``), of a journey
(``deadline``, ``time_in``) or of a record kind (``enters_stage``).
``tests/test_engine_properties.py`` reads this file to keep it so.

Use it on its own to see what the rules say about a stream::

    from datetime import datetime, timezone

    from buyerjourney import Touch, presets
    from buyerjourney._pipeline import default_pipeline
    from buyerjourney.testing.oracle import Oracle

    oracle = Oracle.of(default_pipeline(presets.seed()))
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    expected = oracle.perform(Touch("t1", "lead-1", at, "demo_request"))
    expected.records   # CREATED, SCORED, ... as kinds and fields
    oracle.journeys    # the journeys the rules lead to

The rules
---------

Time

1. Time comes from the input only and never goes back: an operation dated
   before the latest time seen changes nothing and is refused, a touch with
   ``InvalidTouch``, a manual action or an :class:`Advance` with
   ``InvalidAction``.
2. Before anything else, an operation at time *t* (a touch, an action, or an
   :class:`Advance`) escalates every journey whose current visit of a stage
   with an SLA reached its deadline (entered + SLA) by *t* and was not
   escalated yet: one ``ESCALATION`` per journey, dated at its deadline, by
   the system, to the owning team, in order of deadline then lead id. The
   clock then stands at *t*.

Touches

3. A touch whose id was ingested before is refused with ``Duplicate`` (an
   ``InvalidTouch``) before anything, time included, moves.
4. A lead's first ingested touch starts its journey in the initial stage,
   owned by the owner of that stage for the touch's attributes (``CREATED``).
5. Every ingested touch is scored. The scorer sees the lead with its
   attributes merged with the touch's, and every ingested touch of the lead
   so far, this one last; without a scorer the score is 0. A ``SCORED``
   record carries the value; the journey takes the value, the score's grade
   when it has one (it keeps its grade otherwise) and the merged attributes.
6. Each threshold the score crosses, up (old < threshold <= new) or down
   (new < threshold <= old), adds a ``THRESHOLD`` record, lowest threshold
   first, noting the threshold and the direction.
7. Then the policy, if there is one, decides on the journey as scored. An
   event it asks for is sent by the actor ``policy:<name>`` with the
   decision's reason. It is refused (one ``REFUSED`` record, nothing moves)
   while the journey waits for acceptance, and when no transition lets it
   through (rule 9); otherwise the journey moves.
8. A hook that fails — the scorer, the policy or a guard raises, or answers
   outside its contract — sets the whole touch aside with ``HookError``
   naming the hook: nothing of the touch is recorded and its id is not
   taken; the escalations of rule 2 stay. A score must be a ``Score`` with a
   finite value (one a float can hold), a tuple of ``ScoreItem`` with finite
   points, a grade that is ``None`` or a str, and a breakdown whose points,
   items named ``fit:...`` aside, add up to the value in millionths of a
   point (each rounded half to even), when there are any; a decision must be
   a ``Decision`` whose event is ``None`` or a non-empty str and whose reason
   is a str; a guard must answer a ``bool``.

Moving

9. An event sent from a stage takes the first transition of the funnel, in
   declaration order, out of that stage on that event whose guard is absent
   or true; later guards are not asked. A guard sees the lead, the stage,
   the event, the lead's attributes and score, and the time. A backward
   transition needs a reason that is not blank (``ReasonRequired``). No
   transition at all: ``TransitionNotAllowed``.
10. Entering a stage (a transition or an override) closes the visit of the
    current stage (its exit time and cumulative time) and opens a visit of
    the target (the first, or one more); the highest stage moves up when
    the target is not an exit (lost, disqualified) and outranks it; the
    journey waits for acceptance exactly when the target is a gate; it is
    no longer escalated.
11. Then, when the owner of the new stage for the lead's attributes is not
    the journey's owner, a ``HANDOFF`` record follows, from the old team to
    the new one, with the same actor, reason and touch. The owner of a stage
    is the team of the first override that names the stage (or names no
    stage) and whose conditions all hold, else the stage's default. A
    condition on a missing or ``None`` attribute never holds; ``in`` and
    ``not_in`` compare strings, booleans and numbers each only with their
    own kind (``1 == 1.0``, but ``True`` is not ``1``); ``gte`` and ``lt``
    hold for numbers only.

Manual actions

12. ``override`` to a stage the funnel does not have raises ``UnknownStage``
    and records nothing.
13. An action on a lead without a journey, or by an actor who is neither the
    system nor of the owning team (the actor's own team, or a team the
    person holds as a member), is refused: ``ActionRefused`` and one
    ``REFUSED`` record naming the event (for ``send``) or the action, and the
    current stage.
14. ``send`` is refused while the journey waits for acceptance; otherwise it
    follows rule 9, and an error of the step (``TransitionNotAllowed``,
    ``ReasonRequired``, ``HookError``) is raised and recorded as ``REFUSED``.
15. ``accept`` and ``reject`` are refused unless the journey waits for
    acceptance. ``accept`` records ``ACCEPTED``; the journey waits no more.
16. ``reject`` needs a reason that is not blank; it records ``REJECTED`` and
    then takes the gate's first backward transition (rules 10 and 11).
17. ``override`` needs a reason that is not blank and a stage other than the
    current one; it records ``OVERRIDE`` and enters the stage (rules 10 and
    11).

Bookkeeping

18. Records are numbered from 0 without gaps. Every record but ``REFUSED``
    adds one to its journey's version and sets the journey's ``updated`` to
    the record's time.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney._core.journey import Journey, StageTime
from buyerjourney._core.owners import Condition, OwnerRule, OwnerRules
from buyerjourney._core.policies import Decision, Policy
from buyerjourney._core.protocols import Context, Guard, Hooks
from buyerjourney._core.records import SYSTEM, Action, Actor, Record, RecordKind, Touch
from buyerjourney._core.scoring import Lead, Score, ScoreItem, Scorer
from buyerjourney.errors import (
    ActionRefused,
    BuyerJourneyError,
    Duplicate,
    HookError,
    InvalidAction,
    InvalidTouch,
    ReasonRequired,
    TransitionNotAllowed,
    UnknownStage,
)

if TYPE_CHECKING:
    from buyerjourney._pipeline import Pipeline

__all__ = ["Advance", "Expectation", "ExpectedRecord", "Operation", "Oracle"]

_EXITS = frozenset({StageKind.LOST, StageKind.DISQUALIFIED})
_ACTIONS = ("send", "accept", "reject", "override")
_POLICY_ACTOR = "policy:"


# ---------------------------------------------------------------- operations


@attrs.frozen
class Advance:
    """An operation that moves the clock to *at*, escalating the SLAs due by then.

    The engine's :meth:`~buyerjourney.Engine.advance`.

    Attributes:
        at: The new time (timezone-aware).
    """

    at: datetime


Operation: TypeAlias = Touch | Action | Advance
"""What is done to a pipeline: ingest a touch, perform a manual action, or let time pass."""


# ---------------------------------------------------------------- expectations


def _frozen_fields(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen
class ExpectedRecord:
    """A record the rules call for: its kind and the fields they decide.

    Fields the rules leave to the implementation (the wording of reasons of
    refusals and escalations, a score's breakdown in ``data``) are not listed.

    Attributes:
        kind: The record's kind.
        fields: Field name to the value the record must have (``seq``,
            ``lead_id``, ``at``, ``actor`` ...).
    """

    kind: RecordKind
    fields: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_fields)

    def differences(self, record: Record) -> tuple[str, ...]:
        """How *record* differs from this expectation (empty when it fits).

        Args:
            record: A record of a log.
        """
        if record.kind is not self.kind:
            return (f"kind (got {record.kind.value}, expected {self.kind.value})",)
        return tuple(
            f"{name} (got {_value(getattr(record, name))}, expected {_value(value)})"
            for name, value in self.fields.items()
            if getattr(record, name) != value
        )

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={_value(v)}" for k, v in self.fields.items() if v is not None)
        return f"{self.kind.value} ({shown})"


@attrs.frozen
class Expectation:
    """What one operation must do, by the rules.

    Attributes:
        operation: The operation.
        error: The exact error class it must raise, or ``None`` when it succeeds.
        hook: For a ``HookError``, the name of the hook that fails.
        records: The records it must append, in order (escalations that
            come due first, rule 2, included).
    """

    operation: Operation
    error: type[BuyerJourneyError] | None = None
    hook: str | None = None
    records: tuple[ExpectedRecord, ...] = ()

    @property
    def set_aside(self) -> bool:
        """Whether the operation is refused or set aside (it raises)."""
        return self.error is not None

    def mismatch(
        self,
        records: Sequence[Record],
        error: BaseException | str | None,
        *,
        who: str = "the engine",
    ) -> str | None:
        """Why what was done differs from this expectation, or ``None`` when it does not.

        Args:
            records: The records the operation appended.
            error: What it raised: the exception, the name of its class, or
                ``None`` when it succeeded.
            who: What did it, for the message.
        """
        what = _describe(self.operation)
        wanted = self.error.__name__ if self.error is not None else None
        if isinstance(error, str):
            got, did = error, f"raised {error}"
            same = got == wanted
        elif error is not None:
            got, did = type(error).__name__, f"raised {type(error).__name__} ({error})"
            same = type(error) is self.error
        else:
            got, did, same = None, "succeeded", wanted is None
        if not same:
            return f"{what}: {who} {did}, the oracle expects {wanted or 'success'}"
        hook = getattr(error, "hook", None)
        if isinstance(error, HookError) and self.hook is not None and hook != self.hook:
            return f"{what}: {who} blames hook {hook!r} ({error}), the oracle expects {self.hook!r}"
        problem = None
        if len(records) != len(self.records):
            problem = f"{len(records)} record(s) where the oracle expects {len(self.records)}"
        else:
            for i, (record, expected) in enumerate(zip(records, self.records, strict=True)):
                wrong = expected.differences(record)
                if wrong:
                    problem = f"record {i} ({expected.kind.value}) differs in " + ", ".join(wrong)
                    break
        if problem is None:
            return None
        shown = "\n".join(f"    {_show(r)}" for r in records) or "    (nothing)"
        wanted_records = "\n".join(f"    {r}" for r in self.records) or "    (nothing)"
        raised = f" and {did}" if got is not None else ""
        return (
            f"after {what}: {problem}.\n  {who[:1].upper()}{who[1:]} wrote{raised}:\n{shown}\n"
            f"  The oracle expects:\n{wanted_records}"
        )


# ---------------------------------------------------------------- the oracle


@attrs.frozen
class _Failed:
    """A hook that failed (rule 8), by name."""

    hook: str


def _name(hook: object, default: str) -> str:
    if hook is None:
        return default
    return str(getattr(hook, "__name__", None) or type(hook).__name__)


def _finite(value: object) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int no float can hold
        return False


def _millionths(value: float) -> int:
    return round(Fraction(value) * 1_000_000)


def _adds_up(score: Score) -> bool:
    """Whether the breakdown, ``fit:...`` items aside, adds up to the value (rule 8)."""
    points = [i.points for i in score.breakdown if not str(i.rule).startswith("fit:")]
    return not points or sum(map(_millionths, points)) == _millionths(score.value)


def _blank(reason: object) -> bool:
    return not isinstance(reason, str) or not reason.strip()


def _same_kind_key(value: object) -> tuple[str, object] | None:
    """What ``in`` and ``not_in`` compare: a value of its own kind (``None``: matches nothing)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, numbers.Real):
        return ("number", value)
    return None


def _holds(condition: Condition, attributes: Mapping[str, Any]) -> bool:
    value = attributes.get(condition.attribute)
    if value is None:
        return False
    if condition.op in ("in", "not_in"):
        key = _same_kind_key(value)
        found = key is not None and key in {_same_kind_key(v) for v in condition.values}
        return found if condition.op == "in" else not found
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    number: Any = value
    bound = condition.values[0]
    return bool(number >= bound) if condition.op == "gte" else bool(number < bound)


class _Draft:
    """The records and journeys of one operation, kept apart until it succeeds (rule 8)."""

    def __init__(self, oracle: Oracle) -> None:
        self.oracle = oracle
        self.records: list[ExpectedRecord] = []
        self.journeys: dict[str, Journey] = {}

    def journey(self, lead_id: str) -> Journey | None:
        return self.journeys.get(lead_id, self.oracle._journeys.get(lead_id))

    def write(self, kind: RecordKind, after: Journey | None, **fields: Any) -> None:
        seq = self.oracle._length + len(self.records)
        self.records.append(ExpectedRecord(kind, {"seq": seq, **fields}))
        if after is not None:
            self.journeys[after.lead_id] = after

    def commit(self) -> tuple[ExpectedRecord, ...]:
        self.oracle._journeys.update(self.journeys)
        self.oracle._length += len(self.records)
        return tuple(self.records)


class Oracle:
    """The rules of the module docstring, run on their own state.

    Feed it the same operations as a backend, in the same order, with
    :meth:`perform`: each call says what the operation must do and moves the
    oracle's own journeys on, as the rules say, whatever a backend did. It
    calls the scorer, the policy and the guards itself, so they must be
    deterministic (the harness checks that they are).

    Args:
        funnel: The funnel.
        owners: The owner rules (default: each stage's own ``owner``).
        hooks: The guards the funnel names.
        scorer: The scorer, or ``None`` (scores stay 0).
        policy: The policy, or ``None`` (journeys move by hand only).
        thresholds: Scores whose crossing is recorded.
        scorer_name: The scorer's name in errors (default: its ``__name__``,
            else its class's name).
        policy_name: The policy's name in errors and in its actor.
    """

    def __init__(
        self,
        funnel: Funnel,
        *,
        owners: OwnerRules | None = None,
        hooks: Hooks | None = None,
        scorer: Scorer | None = None,
        policy: Policy | None = None,
        thresholds: Iterable[float] = (),
        scorer_name: str | None = None,
        policy_name: str | None = None,
    ) -> None:
        self.funnel = funnel
        self._stages: dict[str, Stage] = {s.name: s for s in funnel.stages}
        self._initial = next(s for s in funnel.stages if s.initial)
        if owners is None:
            self._defaults = {s.name: s.owner for s in funnel.stages if s.owner is not None}
            self._overrides: tuple[OwnerRule, ...] = ()
            self._members: dict[str, frozenset[str]] = {}
        else:
            self._defaults = dict(owners.defaults)
            self._overrides = tuple(owners.overrides)
            self._members = {name: frozenset(teams) for name, teams in owners.members.items()}
        self._guards: dict[str, Guard] = dict(hooks.guards) if hooks is not None else {}
        self.scorer = scorer
        self.policy = policy
        self.thresholds = tuple(sorted(set(thresholds)))
        self.scorer_name = scorer_name or _name(scorer, "scorer")
        self.policy_name = policy_name or _name(policy, "policy")
        self._journeys: dict[str, Journey] = {}
        self._history: dict[str, tuple[Touch, ...]] = {}
        self._ingested: set[str] = set()
        self._clock: datetime | None = None
        self._length = 0

    @classmethod
    def of(cls, pipeline: Pipeline) -> Oracle:
        """An oracle for everything in *pipeline* (funnel, owners, hooks, scorer, policy ...).

        Args:
            pipeline: The pipeline.
        """
        return cls(
            pipeline.funnel,
            owners=pipeline.owners,
            hooks=pipeline.hooks,
            scorer=pipeline.scorer,
            policy=pipeline.policy,
            thresholds=pipeline.thresholds,
        )

    @property
    def journeys(self) -> Mapping[str, Journey]:
        """The journeys the operations so far lead to, by lead id (read-only)."""
        return MappingProxyType(self._journeys)

    @property
    def clock(self) -> datetime | None:
        """The latest time seen (``None`` before anything happened)."""
        return self._clock

    @property
    def length(self) -> int:
        """How many records the operations so far must have written."""
        return self._length

    def perform(self, operation: Operation) -> Expectation:
        """What *operation* must do; the oracle's journeys move on as it says.

        Args:
            operation: A touch, a manual action or an :class:`Advance`.

        Raises:
            ValueError: An action other than ``send``, ``accept``, ``reject`` or
                ``override``.
            TypeError: *operation* is none of those.
        """
        if isinstance(operation, Touch):
            return self._touch(operation)
        if isinstance(operation, Advance):
            if self._late(operation.at):
                return Expectation(operation, InvalidAction)
            return Expectation(operation, records=self._escalate(operation.at))
        if isinstance(operation, Action):
            if operation.action not in _ACTIONS:
                msg = f"unknown action {operation.action!r}; the oracle knows {', '.join(_ACTIONS)}"
                raise ValueError(msg)
            return self._action(operation)
        msg = f"an operation is a Touch, an Action or an Advance (got {operation!r})"
        raise TypeError(msg)

    # ------------------------------------------------------------ rules 1 and 2

    def _late(self, at: datetime) -> bool:
        return self._clock is not None and at < self._clock

    def _escalate(self, at: datetime) -> tuple[ExpectedRecord, ...]:
        due: list[tuple[datetime, str]] = []
        for journey in self._journeys.values():
            sla = self._stages[journey.stage].sla
            if sla is None or journey.escalated:
                continue
            deadline = journey.stages[journey.stage].entered + sla
            if deadline <= at:
                due.append((deadline, journey.lead_id))
        due.sort()
        draft = _Draft(self)
        for deadline, lead_id in due:
            journey = self._journeys[lead_id]
            after = self._bump(journey, deadline, escalated=True)
            draft.write(
                RecordKind.ESCALATION,
                after,
                lead_id=lead_id,
                at=deadline,
                actor=SYSTEM,
                source=journey.stage,
                to_team=journey.owner,
            )
        records = draft.commit()
        if self._clock is None or at > self._clock:
            self._clock = at
        return records

    # ------------------------------------------------------------ rules 3 to 8

    def _touch(self, touch: Touch) -> Expectation:
        if touch.touch_id in self._ingested:
            return Expectation(touch, Duplicate)
        if self._late(touch.at):
            return Expectation(touch, InvalidTouch)
        escalations = self._escalate(touch.at)
        draft = _Draft(self)
        lead_id, at = touch.lead_id, touch.at
        common = {"lead_id": lead_id, "at": at, "touch_id": touch.touch_id, "actor": SYSTEM}
        journey = self._journeys.get(lead_id)
        if journey is None:
            initial = self._initial.name
            team = self._owner(initial, touch.attributes)
            journey = Journey(
                lead_id=lead_id,
                stage=initial,
                highest=initial,
                owner=team,
                created=at,
                updated=at,
                attributes=touch.attributes,
                stages={initial: StageTime(entered=at, first_entered=at)},
                pending_acceptance=self._initial.gate,
            )
            draft.write(RecordKind.CREATED, journey, **common, target=initial, to_team=team)
        old = journey.score
        attributes = {**journey.attributes, **touch.attributes}
        history = (*self._history.get(lead_id, ()), touch)
        score = self._score(Lead(lead_id, attributes, history), at)
        if isinstance(score, _Failed):
            return Expectation(touch, HookError, score.hook, escalations)
        new = score.value
        journey = self._bump(
            journey,
            at,
            score=new,
            grade=score.grade if score.grade is not None else journey.grade,
            attributes=attributes,
        )
        draft.write(RecordKind.SCORED, journey, **common, score=new)
        for limit in self.thresholds:
            if old < limit <= new or new < limit <= old:
                journey = self._bump(journey, at)
                data = {"threshold": limit, "up": new >= limit}
                draft.write(RecordKind.THRESHOLD, journey, **common, score=new, data=data)
        if self.policy is not None:
            decision = self._decide(journey, score, touch)
            if isinstance(decision, _Failed):
                return Expectation(touch, HookError, decision.hook, escalations)
            if decision.event is not None:
                failed = self._policy_moves(draft, journey, decision, touch)
                if failed is not None:
                    return Expectation(touch, HookError, failed.hook, escalations)
        self._history[lead_id] = history
        self._ingested.add(touch.touch_id)
        return Expectation(touch, records=escalations + draft.commit())

    def _score(self, lead: Lead, at: datetime) -> Score | _Failed:
        if self.scorer is None:
            return Score(0.0)
        failed = _Failed(self.scorer_name)
        try:
            score = self.scorer(lead, at)
        except Exception:
            return failed
        if (
            not isinstance(score, Score)
            or not _finite(score.value)
            or not isinstance(score.breakdown, tuple)
            or not all(isinstance(i, ScoreItem) and _finite(i.points) for i in score.breakdown)
            or not (score.grade is None or isinstance(score.grade, str))
            or not _adds_up(score)
        ):
            return failed
        return score

    def _decide(self, journey: Journey, score: Score, touch: Touch) -> Decision | _Failed:
        assert self.policy is not None
        failed = _Failed(self.policy_name)
        try:
            decision = self.policy(journey, score, touch)
        except Exception:
            return failed
        if (
            not isinstance(decision, Decision)
            or not (decision.event is None or (isinstance(decision.event, str) and decision.event))
            or not isinstance(decision.reason, str)
        ):
            return failed
        return decision

    def _policy_moves(
        self, draft: _Draft, journey: Journey, decision: Decision, touch: Touch
    ) -> _Failed | None:
        event = decision.event
        assert event is not None
        actor = Actor(f"{_POLICY_ACTOR}{self.policy_name}")
        refusal = {
            "lead_id": journey.lead_id,
            "at": touch.at,
            "actor": actor,
            "event": event,
            "source": journey.stage,
            "touch_id": touch.touch_id,
        }
        if journey.pending_acceptance:
            draft.write(RecordKind.REFUSED, None, **refusal)
            return None
        step = self._step(journey, event, touch.at, decision.reason)
        if isinstance(step, _Failed):
            return step
        if not isinstance(step, Transition):
            draft.write(RecordKind.REFUSED, None, **refusal)
            return None
        self._move(
            draft,
            journey,
            step,
            at=touch.at,
            actor=actor,
            reason=decision.reason,
            touch_id=touch.touch_id,
        )
        return None

    # ------------------------------------------------------------ rules 9 to 11

    def _step(
        self, journey: Journey, event: str, at: datetime, reason: str | None
    ) -> Transition | type[TransitionNotAllowed] | _Failed:
        ctx = Context(
            lead_id=journey.lead_id,
            stage=journey.stage,
            event=event,
            attributes=journey.attributes,
            score=journey.score,
            at=at,
        )
        for t in self.funnel.transitions:
            if t.source != journey.stage or t.event != event:
                continue
            if t.guard is not None:
                passed = self._ask(t.guard, ctx)
                if isinstance(passed, _Failed):
                    return passed
                if not passed:
                    continue
            if t.direction is Direction.BACKWARD and _blank(reason):
                return ReasonRequired
            return t
        return TransitionNotAllowed

    def _ask(self, name: str, ctx: Context) -> bool | _Failed:
        try:
            answer = self._guards[name](ctx)
        except Exception:
            return _Failed(name)
        if not isinstance(answer, bool):
            return _Failed(name)
        return answer

    def _bump(self, journey: Journey, at: datetime, **changes: Any) -> Journey:
        return attrs.evolve(journey, version=journey.version + 1, updated=at, **changes)

    def _enter(self, journey: Journey, target: str, at: datetime) -> Journey:
        stages = dict(journey.stages)
        leaving = stages[journey.stage]
        stages[journey.stage] = StageTime(
            entered=leaving.entered,
            first_entered=leaving.first_entered,
            exited=at,
            cumulative=leaving.cumulative + (at - leaving.entered),
            visits=leaving.visits,
        )
        before = stages.get(target)
        if before is None:
            stages[target] = StageTime(entered=at, first_entered=at)
        else:
            stages[target] = StageTime(
                entered=at,
                first_entered=before.first_entered,
                exited=None,
                cumulative=before.cumulative,
                visits=before.visits + 1,
            )
        stage = self._stages[target]
        highest = journey.highest
        if stage.kind not in _EXITS and stage.rank > self._stages[highest].rank:
            highest = target
        return self._bump(
            journey,
            at,
            stage=target,
            stages=stages,
            highest=highest,
            pending_acceptance=stage.gate,
            escalated=False,
        )

    def _move(
        self,
        draft: _Draft,
        journey: Journey,
        transition: Transition,
        *,
        at: datetime,
        actor: Actor,
        reason: str,
        touch_id: str | None,
    ) -> None:
        after = self._enter(journey, transition.target, at)
        draft.write(
            RecordKind.TRANSITION,
            after,
            lead_id=journey.lead_id,
            at=at,
            actor=actor,
            reason=reason,
            event=transition.event,
            source=transition.source,
            target=transition.target,
            touch_id=touch_id,
        )
        self._hand_off(draft, after, at=at, actor=actor, reason=reason, touch_id=touch_id)

    def _hand_off(
        self,
        draft: _Draft,
        journey: Journey,
        *,
        at: datetime,
        actor: Actor,
        reason: str,
        touch_id: str | None,
    ) -> None:
        team = self._owner(journey.stage, journey.attributes)
        if team == journey.owner:
            return
        draft.write(
            RecordKind.HANDOFF,
            self._bump(journey, at, owner=team),
            lead_id=journey.lead_id,
            at=at,
            actor=actor,
            reason=reason,
            target=journey.stage,
            from_team=journey.owner,
            to_team=team,
            touch_id=touch_id,
        )

    def _owner(self, stage: str, attributes: Mapping[str, Any]) -> str:
        for rule in self._overrides:
            if (not rule.stages or stage in rule.stages) and all(
                _holds(c, attributes) for c in rule.when
            ):
                return rule.team
        return self._defaults[stage]

    def _may_act(self, actor: Actor, team: str) -> bool:
        if actor == SYSTEM or team in self._members.get(actor.name, frozenset()):
            return True
        declared = any(team in teams for teams in self._members.values())
        return actor.team is not None and actor.team == team and not declared

    # ------------------------------------------------------------ rules 12 to 17

    def _action(self, op: Action) -> Expectation:
        if self._late(op.at):
            return Expectation(op, InvalidAction)
        escalations = self._escalate(op.at)
        if op.action == "override" and op.stage not in self._stages:
            return Expectation(op, UnknownStage, records=escalations)
        draft = _Draft(self)
        at, actor, reason = op.at, op.actor, op.reason
        journey = self._journeys.get(op.lead_id)
        name = (op.event or "") if op.action == "send" else op.action

        def refuse(
            error: type[BuyerJourneyError] = ActionRefused, hook: str | None = None
        ) -> Expectation:
            draft.write(
                RecordKind.REFUSED,
                None,
                lead_id=op.lead_id,
                at=at,
                actor=actor,
                event=name,
                source=journey.stage if journey is not None else None,
                touch_id=None,
            )
            return Expectation(op, error, hook, escalations + draft.commit())

        if journey is None or not self._may_act(actor, journey.owner):
            return refuse()
        common = {"lead_id": op.lead_id, "at": at, "actor": actor, "reason": reason}
        if op.action == "send":
            if journey.pending_acceptance:
                return refuse()
            step = self._step(journey, name, at, reason or None)
            if isinstance(step, _Failed):
                return refuse(HookError, step.hook)
            if not isinstance(step, Transition):
                return refuse(step)
            self._move(draft, journey, step, at=at, actor=actor, reason=reason, touch_id=None)
            return Expectation(op, records=escalations + draft.commit())
        if op.action in ("accept", "reject") and not journey.pending_acceptance:
            return refuse()
        if op.action == "accept":
            after = self._bump(journey, at, pending_acceptance=False)
            draft.write(
                RecordKind.ACCEPTED, after, **common, source=journey.stage, to_team=journey.owner
            )
            return Expectation(op, records=escalations + draft.commit())
        if _blank(reason) or (op.action == "override" and op.stage == journey.stage):
            return refuse()
        if op.action == "reject":
            recycle = next(
                t
                for t in self.funnel.transitions
                if t.source == journey.stage and t.direction is Direction.BACKWARD
            )
            after = self._bump(journey, at)
            draft.write(
                RecordKind.REJECTED,
                after,
                **common,
                event=recycle.event,
                source=journey.stage,
                target=recycle.target,
                from_team=journey.owner,
            )
            self._move(draft, after, recycle, at=at, actor=actor, reason=reason, touch_id=None)
            return Expectation(op, records=escalations + draft.commit())
        target = op.stage or ""
        after = self._enter(journey, target, at)
        draft.write(RecordKind.OVERRIDE, after, **common, source=journey.stage, target=target)
        self._hand_off(draft, after, at=at, actor=actor, reason=reason, touch_id=None)
        return Expectation(op, records=escalations + draft.commit())


# ---------------------------------------------------------------- describing


def _describe(operation: Operation) -> str:
    """One line for an operation, as failure messages show it."""
    if isinstance(operation, Touch):
        return (
            f"ingest touch {operation.touch_id!r} ({operation.kind}) of {operation.lead_id!r} "
            f"at {operation.at.isoformat()}"
        )
    if isinstance(operation, Advance):
        return f"advance to {operation.at.isoformat()}"
    what = operation.event if operation.action == "send" else operation.stage or ""
    return (
        f"{operation.action} {what} for {operation.lead_id!r} by {operation.actor} "
        f"at {operation.at.isoformat()} (reason {operation.reason!r})"
    ).replace("  ", " ")


def _value(value: object) -> str:
    """A field's value as failure messages show it (times in ISO format, actors by name)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Actor):
        return str(value)
    return repr(value)


def _show(record: Record) -> str:
    """One line for a record, as failure messages show it."""
    parts = [f"#{record.seq}", record.kind.value, record.lead_id]
    if record.source is not None or record.target is not None:
        parts.append(f"{record.source}->{record.target}")
    if record.event is not None:
        parts.append(f"event={record.event}")
    if record.from_team is not None or record.to_team is not None:
        parts.append(f"team {record.from_team}->{record.to_team}")
    if record.score is not None:
        parts.append(f"score={record.score}")
    parts.append(f"by {record.actor}")
    parts.append(f"at {record.at.isoformat()}")
    return "(" + ", ".join(parts) + ")"
