"""The rules of a journey's life, one home each: what every step writes, and when.

Every engine — :class:`~buyerjourney.Engine` with either stepping backend,
and the bulk path of :mod:`buyerjourney.bulk` — builds its records with the
builders here, takes every reason text from here, and asks here when a
threshold is crossed, when an SLA runs out, in which order escalations come,
which transition recycles a rejected lead and who the policy acts as. The
verifier and the reports compare against the same texts and functions, so
nothing has to parse a message back out of a string.

The stateful test harness (:mod:`buyerjourney.testing.oracle`) deliberately
does *not* call these: it is the independent oracle that holds them equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, NoReturn, cast

import attrs

from buyerjourney._core._values import freeze
from buyerjourney._core.funnel import Direction, Funnel, Transition
from buyerjourney._core.records import SYSTEM, Actor, Record, RecordKind
from buyerjourney._core.scoring import Score

__all__ = [
    "ACCEPTANCE_SLA",
    "ALREADY_IN",
    "AWAITS_ACCEPTANCE",
    "AWAITS_ANSWER",
    "NOTHING_TO_ANSWER",
    "NO_JOURNEY",
    "NO_RECYCLE",
    "OVERRIDE_NEEDS_REASON",
    "OWNED_BY",
    "PAST_ACCEPT_SLA",
    "PAST_SLA",
    "POLICY_ACTOR_PREFIX",
    "REJECTION_NEEDS_REASON",
    "REVISED_LATE",
    "STAGE_SLA",
    "acceptance_deadline",
    "accepted",
    "breakdown_rows",
    "created",
    "crossings",
    "effective",
    "escalation",
    "escalation_order",
    "handoff",
    "override",
    "policy_actor",
    "recycle_transitions",
    "refused",
    "rejected",
    "revised",
    "scored",
    "sla_deadline",
    "threshold",
    "transition",
    "waits_after_handoff",
    "waits_after_move",
]

# ---------------------------------------------------------------- reason texts

AWAITS_ACCEPTANCE = "stage {stage!r} waits for the receiving team to accept"
"""Why a policy's decision is refused while a handoff waits for acceptance."""

AWAITS_ANSWER = "stage {stage!r} waits for the receiving team to accept or reject"
"""Why a person's ``send`` is refused while a handoff waits for acceptance."""

PAST_SLA = "in {stage!r} since {entered}, past its SLA"
"""The reason of an ESCALATION record of the time in a stage (*entered* in ISO format)."""

REVISED_LATE = "late touch {touch_id!r} of {at} re-folds the journey"
"""The reason of a REVISED record: which late touch re-folded the journey, and when it was."""

PAST_ACCEPT_SLA = (
    "waiting in {stage!r} since {entered} for the receiving team, past its acceptance SLA"
)
"""The reason of an ESCALATION record of a gate's acceptance SLA."""

NO_JOURNEY = "no journey exists for this lead"
"""Why an action on a lead without a journey is refused."""

NOTHING_TO_ANSWER = "no handoff is waiting for acceptance"
"""Why an accept or reject is refused when nothing waits."""

NO_RECYCLE = "stage {stage!r} has no backward transition to recycle a rejected lead along"
"""Why a reject is refused where the funnel gives a rejected lead nowhere to go."""

REJECTION_NEEDS_REASON = "a rejection needs a reason"
"""Why a reject without a reason is refused."""

OVERRIDE_NEEDS_REASON = "an override needs a reason"
"""Why an override without a reason is refused."""

ALREADY_IN = "the journey is already in {stage!r}"
"""Why an override to the current stage is refused."""

OWNED_BY = "the journey is owned by {owner!r}; only that team may act on it"
"""Why an actor of another team is refused."""

POLICY_ACTOR_PREFIX = "policy:"
"""Records a policy causes name ``policy:<policy name>`` as their actor."""


def policy_actor(policy_name: str) -> Actor:
    """The actor of every record a policy's decision causes."""
    return Actor(f"{POLICY_ACTOR_PREFIX}{policy_name}")


# ---------------------------------------------------------------- rules


def crossings(thresholds: Iterable[float], old: float, new: float) -> Iterator[tuple[float, bool]]:
    """The thresholds a score change from *old* to *new* crosses, as ``(threshold, upwards)``.

    A threshold is crossed upwards when ``old < threshold <= new`` and
    downwards when ``new < threshold <= old``; *thresholds* are taken in the
    order given (the engine keeps them sorted).
    """
    for limit in thresholds:
        if old < limit <= new or new < limit <= old:
            yield limit, new >= limit


STAGE_SLA = "stage"
"""The SLA on the time a journey spends in a stage (``Stage.sla``)."""

ACCEPTANCE_SLA = "acceptance"
"""The SLA on the time a gate waits for the receiving team to answer (``Stage.accept_sla``)."""


def sla_deadline(funnel: Funnel, stage: str, entered: datetime) -> datetime | None:
    """When a visit of *stage* entered at *entered* breaches the stage's SLA (``None``: no SLA).

    Counted in the stage's ``sla_calendar`` (working time) when it has one.
    """
    definition = funnel.stage(stage)
    sla: timedelta | None = definition.sla
    if sla is None:
        return None
    if definition.sla_calendar is not None:
        return definition.sla_calendar.add(entered, sla)
    return entered + sla


def acceptance_deadline(funnel: Funnel, stage: str, since: datetime) -> datetime | None:
    """By when the receiving team must accept or reject a journey waiting in *stage* since *since*.

    ``None`` when the stage has no ``accept_sla``; counted in its
    ``accept_calendar`` when it has one. The clock stops when the team answers.
    """
    definition = funnel.stage(stage)
    within: timedelta | None = definition.accept_sla
    if within is None:
        return None
    if definition.accept_calendar is not None:
        return definition.accept_calendar.add(since, within)
    return since + within


def escalation_order(deadline: datetime, lead_id: str, sla: str = STAGE_SLA) -> tuple[Any, ...]:
    """The sort key of escalations: by deadline, then lead id, then the stage SLA first."""
    return deadline, lead_id, 0 if sla == STAGE_SLA else 1


def recycle_transitions(funnel: Funnel) -> Mapping[str, Transition]:
    """The backward transition a rejection takes, for every stage a lead may wait in.

    With ``acceptance="stage"`` those are the gates (validated to have one);
    with ``"handoff"``, every stage that has a backward transition (a lead
    waiting elsewhere can only be accepted).
    """
    out: dict[str, Transition] = {}
    for stage in funnel.stages:
        if funnel.acceptance == "stage" and not stage.gate:
            continue
        back = [t for t in funnel.transitions_from(stage.name) if t.direction is Direction.BACKWARD]
        if back:
            out[stage.name] = back[0]
    return out


def waits_after_move(funnel: Funnel, stage: str) -> bool:
    """Whether entering *stage* makes the journey wait for the receiving team (a gate)."""
    return funnel.acceptance == "stage" and funnel.stage(stage).gate


def waits_after_handoff(funnel: Funnel) -> bool:
    """Whether a handoff makes the journey wait for the receiving team to accept."""
    return funnel.acceptance == "handoff"


def breakdown_rows(items: Iterable[Any]) -> tuple[tuple[Any, ...], ...]:
    """A score breakdown as stored in a SCORED record: ``((rule, points, detail), ...)``."""
    return tuple([(i.rule, i.points, i.detail) for i in items])


_UNREAD = object()


class ScoredData(Mapping[str, Any]):
    """The ``data`` of a SCORED record whose breakdown rows are written when first read.

    The engine scores every touch but few readers look at a breakdown's text
    (a report, a store, a person): the rows are made from the score's
    breakdown on first access and kept, so the record reads, compares and
    serialises exactly as one whose data was a plain read-only mapping. No
    method changes it.
    """

    __slots__ = ("_data", "_score")

    def __init__(self, data: dict[str, Any], score: Score) -> None:
        self._data = data
        self._score = score

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        if value is _UNREAD:
            value = self._data[key] = breakdown_rows(self._score.breakdown)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of *key*, or *default* when the record has none."""
        value = self._data.get(key, default)
        if value is _UNREAD:
            return self[key]
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._data)

    def copy(self) -> dict[str, Any]:
        """A shallow copy as a dict, as ``MappingProxyType.copy`` gives."""
        return dict(self.items())

    def __or__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**self, **other}

    def __ror__(self, other: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**other, **self}

    def __repr__(self) -> str:
        return f"mappingproxy({dict(self.items())!r})"

    def __reduce__(self) -> NoReturn:
        # as the mappingproxy of every other record's data: a record is not pickled
        msg = "cannot pickle 'mappingproxy' object"
        raise TypeError(msg)


# ---------------------------------------------------------------- record builders
# Each builder takes the record's place in the log (*seq*) and what the step
# knows; the fields and data layout of each kind are decided here only.

_SET = {a.name: Record.__dict__[a.name].__set__ for a in attrs.fields(Record)}
(
    _set_lead_id, _set_seq, _set_at, _set_kind, _set_actor, _set_reason, _set_event,
    _set_source, _set_target, _set_from_team, _set_to_team, _set_score, _set_touch_id,
    _set_data,
) = (
    _SET[name]
    for name in (
        "lead_id", "seq", "at", "kind", "actor", "reason", "event", "source", "target",
        "from_team", "to_team", "score", "touch_id", "data",
    )
)  # fmt: skip
assert len(_SET) == 14, "a field of Record was added: give _record its argument"
_new = object.__new__


def _record(
    *,
    lead_id: str,
    seq: int,
    at: datetime,
    kind: RecordKind,
    actor: Actor = SYSTEM,
    reason: str = "",
    event: str | None = None,
    source: str | None = None,
    target: str | None = None,
    from_team: str | None = None,
    to_team: str | None = None,
    score: float | None = None,
    touch_id: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> Record:
    """A record built without ``__init__``'s converters: the builders' values are frozen already.

    ``data`` must hold only values that are frozen all the way down (touch
    attributes, which their own converter froze; tuples of scalars). The
    slots are set directly, which is several times cheaper than attrs'
    ``__init__`` of a frozen class, and the engine builds a record or two for
    every touch.
    """
    record = _new(Record)
    _set_lead_id(record, lead_id)
    _set_seq(record, seq)
    _set_at(record, at)
    _set_kind(record, kind)
    _set_actor(record, actor)
    _set_reason(record, reason)
    _set_event(record, event)
    _set_source(record, source)
    _set_target(record, target)
    _set_from_team(record, from_team)
    _set_to_team(record, to_team)
    _set_score(record, score)
    _set_touch_id(record, touch_id)
    if type(data) is not ScoredData:
        data = _EMPTY if not data else MappingProxyType(cast("dict[str, Any]", data))
    _set_data(record, data)
    return record


_EMPTY: Mapping[str, Any] = MappingProxyType({})


def created(
    lead_id: str,
    seq: int,
    at: datetime,
    *,
    stage: str,
    team: str,
    touch_id: str | None,
    attributes: Mapping[str, Any],
) -> Record:
    """A journey starts in the funnel's initial *stage*, owned by *team*."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.CREATED,
        target=stage,
        to_team=team,
        touch_id=touch_id,
        data={"attributes": freeze(attributes)} if attributes else {},
    )


def scored(
    lead_id: str,
    seq: int,
    at: datetime,
    *,
    score: float,
    delta: float | None,
    breakdown: Iterable[Any] | Score | None,
    grade: str | None,
    attributes: Mapping[str, Any] | None,
    touch_id: str | None,
) -> Record:
    """A touch scored the lead: the value, and in ``data`` delta, breakdown, grade, new attributes.

    *breakdown* is the score's items (any iterable of them), or the
    :class:`~buyerjourney.scoring.Score` itself: then its rows are written when
    the record's breakdown is first read (see :class:`ScoredData`). *delta* and
    *breakdown* may be ``None`` for a light record (the bulk path's
    summaries); *attributes* are those the touch brought, unless the CREATED
    record of the same touch already carries them.
    """
    data: dict[str, Any] = {}
    if delta is not None:
        data["delta"] = delta
    lazy = isinstance(breakdown, Score)
    if breakdown is not None:
        data["breakdown"] = _UNREAD if lazy else breakdown_rows(cast(Iterable[Any], breakdown))
    if grade is not None:
        data["grade"] = grade
    if attributes:
        data["attributes"] = freeze(attributes)
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.SCORED,
        score=score,
        touch_id=touch_id,
        data=ScoredData(data, cast(Score, breakdown)) if lazy else data,
    )


def threshold(
    lead_id: str, seq: int, at: datetime, *, score: float, limit: float, touch_id: str | None
) -> Record:
    """The score crossed *limit* (see :func:`crossings`)."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.THRESHOLD,
        score=score,
        touch_id=touch_id,
        data={"threshold": limit, "up": score >= limit},
    )


def transition(
    lead_id: str,
    seq: int,
    at: datetime,
    *,
    move: Transition,
    actor: Actor,
    reason: str,
    touch_id: str | None,
) -> Record:
    """The journey takes the funnel transition *move*."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.TRANSITION,
        actor=actor,
        reason=reason,
        event=move.event,
        source=move.source,
        target=move.target,
        touch_id=touch_id,
    )


def handoff(
    lead_id: str,
    seq: int,
    at: datetime,
    *,
    stage: str,
    from_team: str,
    to_team: str,
    actor: Actor,
    reason: str,
    touch_id: str | None,
) -> Record:
    """The owner changes on entering *stage*."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.HANDOFF,
        actor=actor,
        reason=reason,
        target=stage,
        from_team=from_team,
        to_team=to_team,
        touch_id=touch_id,
    )


def escalation(
    lead_id: str,
    seq: int,
    *,
    stage: str,
    entered: datetime,
    deadline: datetime,
    team: str,
    sla: str = STAGE_SLA,
) -> Record:
    """A visit of *stage* passed its SLA (*sla*: the stage's, or a gate's acceptance SLA).

    Dated at its *deadline*; ``data`` holds the deadline, when the clock
    started and, for an acceptance SLA only, ``"sla": "acceptance"`` (so logs
    written before acceptance SLAs existed read the same).
    """
    data = {"deadline": deadline.isoformat(), "entered": entered.isoformat()}
    text = PAST_SLA
    if sla == ACCEPTANCE_SLA:
        data["sla"] = ACCEPTANCE_SLA
        text = PAST_ACCEPT_SLA
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=deadline,
        kind=RecordKind.ESCALATION,
        source=stage,
        to_team=team,
        reason=text.format(stage=stage, entered=entered.isoformat()),
        data=data,
    )


def revised(lead_id: str, seq: int, at: datetime, *, after: int, touch_id: str) -> Record:
    """The late touch *touch_id* (dated *at*) re-folds *lead_id*'s journey.

    The lead's records with a ``seq`` greater than *after* (``-1``: all of
    them) are superseded by the records that follow this one; see
    :func:`effective`.
    """
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.REVISED,
        touch_id=touch_id,
        reason=REVISED_LATE.format(touch_id=touch_id, at=at.isoformat()),
        data={"after": after},
    )


def effective(records: Iterable[Record]) -> list[Record]:
    """The records that count, in log order: without superseded ones and the revisions.

    The one home of how a revision is read: the fold, the reports and the
    stores' rebuild all go through it. A log without revisions comes back
    unchanged (as a list).
    """
    kept: list[Record | None] = []
    by_lead: dict[str, list[int]] = {}
    revised_any = False
    for record in records:
        if record.kind is RecordKind.REVISED:
            revised_any = True
            after = int(record.data.get("after", -1))
            places = by_lead.get(record.lead_id, [])
            while places:
                earlier = kept[places[-1]]
                if earlier is None or earlier.seq <= after:
                    break
                kept[places.pop()] = None
            continue
        by_lead.setdefault(record.lead_id, []).append(len(kept))
        kept.append(record)
    return [r for r in kept if r is not None] if revised_any else cast("list[Record]", kept)


def refused(
    lead_id: str,
    seq: int,
    at: datetime,
    *,
    actor: Actor,
    event: str,
    stage: str | None,
    reason: str,
    touch_id: str | None = None,
) -> Record:
    """An action or decision (*event*) was refused in *stage*; nothing changed."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.REFUSED,
        actor=actor,
        event=event,
        source=stage,
        touch_id=touch_id,
        reason=reason,
    )


def accepted(
    lead_id: str, seq: int, at: datetime, *, actor: Actor, stage: str, team: str, reason: str
) -> Record:
    """The receiving *team* accepted the handoff waiting in *stage*."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.ACCEPTED,
        actor=actor,
        reason=reason,
        source=stage,
        to_team=team,
    )


def rejected(
    lead_id: str,
    seq: int,
    at: datetime,
    *,
    actor: Actor,
    recycle: Transition,
    team: str,
    reason: str,
) -> Record:
    """The receiving *team* rejected the handoff; the *recycle* transition follows."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.REJECTED,
        actor=actor,
        reason=reason,
        event=recycle.event,
        source=recycle.source,
        target=recycle.target,
        from_team=team,
    )


def override(
    lead_id: str, seq: int, at: datetime, *, actor: Actor, source: str, target: str, reason: str
) -> Record:
    """Someone set the stage by hand from *source* to *target*."""
    return _record(
        lead_id=lead_id,
        seq=seq,
        at=at,
        kind=RecordKind.OVERRIDE,
        actor=actor,
        reason=reason,
        source=source,
        target=target,
    )
