"""A journey's state, and the pure fold that builds it from the log.

The log is the source of truth: :func:`apply` folds one record into a
journey and :func:`rebuild` folds a whole log into every journey. The engine
uses the same fold for its live state, so rebuilding from the records always
equals the live state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import attrs

from buyerjourney._core import lifecycle
from buyerjourney._core._values import frozen_mapping
from buyerjourney._core.funnel import Funnel
from buyerjourney._core.records import Record, RecordKind
from buyerjourney.errors import CorruptLog

__all__ = ["Journey", "StageTime", "apply", "rebuild"]


@attrs.frozen
class StageTime:
    """Time bookkeeping of one stage for one journey, as HubSpot keeps it.

    Attributes:
        entered: When the journey last entered the stage.
        exited: When it last left it (``None`` while it is in it, or never left).
        first_entered: When it entered the stage the first time.
        cumulative: Total time spent in the stage over *closed* visits; add
            the open visit with :meth:`Journey.time_in`.
        visits: How many times the journey entered the stage.
    """

    entered: datetime
    first_entered: datetime
    exited: datetime | None = None
    cumulative: timedelta = timedelta(0)
    visits: int = 1

    def latest(self, at: datetime) -> timedelta:
        """The length of the latest visit, measured at *at* if it is still open."""
        end = self.exited if self.exited is not None and self.exited >= self.entered else at
        return end - self.entered


@attrs.frozen
class Journey:
    """One lead's journey through a funnel at one point of its log.

    Attributes:
        lead_id: The lead.
        stage: The current stage.
        highest: The highest-ranked success-path stage ever reached; it
            never goes down, even when the journey is recycled or lost.
        owner: The team that owns the journey now.
        score: The latest score.
        grade: The latest fit grade, if the scorer grades fit.
        attributes: The lead's profile as last seen.
        stages: Time bookkeeping per stage visited.
        pending_acceptance: Whether the journey is in a gate stage waiting for
            the receiving team to accept or reject the handoff.
        escalated: Whether the SLA of the current visit was already escalated.
        acceptance_escalated: Whether the acceptance SLA of the gate the
            journey waits in was already escalated.
        created: When the journey started.
        updated: The time of the latest state-changing record.
        version: How many state-changing records were folded in (refusals
            change nothing, so they do not count).
    """

    lead_id: str
    stage: str
    highest: str
    owner: str
    created: datetime
    updated: datetime
    score: float = 0.0
    grade: str | None = None
    attributes: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    stages: Mapping[str, StageTime] = attrs.field(factory=dict, converter=frozen_mapping)
    pending_acceptance: bool = False
    escalated: bool = False
    version: int = 1
    acceptance_escalated: bool = False

    def time_in(self, stage: str, at: datetime) -> timedelta:
        """Cumulative time in *stage* up to *at*, including an open visit."""
        times = self.stages.get(stage)
        if times is None:
            return timedelta(0)
        if stage == self.stage:
            return times.cumulative + (at - times.entered)
        return times.cumulative

    def deadline(self, funnel: Funnel) -> datetime | None:
        """When the current visit breaches the stage's SLA (``None`` without an SLA)."""
        return lifecycle.sla_deadline(funnel, self.stage, self.stages[self.stage].entered)


def _move(funnel: Funnel, journey: Journey, target: str, at: datetime) -> dict[str, Any]:
    """The field changes for leaving the current stage and entering *target*."""
    stages = dict(journey.stages)
    old = stages[journey.stage]
    stages[journey.stage] = attrs.evolve(
        old, exited=at, cumulative=old.cumulative + (at - old.entered)
    )
    previous = stages.get(target)
    if previous is None:
        stages[target] = StageTime(entered=at, first_entered=at)
    else:
        stages[target] = attrs.evolve(previous, entered=at, exited=None, visits=previous.visits + 1)
    new = funnel.stage(target)
    highest = journey.highest
    if not new.kind.is_exit and new.rank > funnel.stage(highest).rank:
        highest = target
    return {
        "stage": target,
        "stages": MappingProxyType(stages),
        "highest": highest,
        "pending_acceptance": lifecycle.waits_after_move(funnel, target),
        "escalated": False,
        "acceptance_escalated": False,
    }


def apply(funnel: Funnel, journey: Journey | None, record: Record) -> Journey:
    """Fold one record into a journey and return the new journey.

    Pure: the same funnel, journey and record always give the same result.

    Raises:
        CorruptLog: The record does not fit (no CREATED record first, a
            transition from another stage, an unknown stage ...).
    """
    if journey is None:
        if record.kind is not RecordKind.CREATED or record.target is None:
            raise CorruptLog(record, "the first record of a journey must be CREATED")
        if record.target not in funnel or record.to_team is None:
            raise CorruptLog(record, f"unknown initial stage {record.target!r} or no owner")
        return Journey(
            lead_id=record.lead_id,
            stage=record.target,
            highest=record.target,
            owner=record.to_team,
            created=record.at,
            updated=record.at,
            attributes=record.data.get("attributes", {}),
            stages={record.target: StageTime(entered=record.at, first_entered=record.at)},
            pending_acceptance=lifecycle.waits_after_move(funnel, record.target),
        )
    kind = record.kind
    if kind is RecordKind.SCORED:
        return _scored(journey, record)
    if not kind.changes_journey:  # a refusal
        return journey
    changes: dict[str, Any] = {"version": journey.version + 1, "updated": record.at}
    if kind is RecordKind.CREATED:
        raise CorruptLog(record, "the journey already exists")
    if kind.enters_stage:  # CREATED was handled above
        if record.source != journey.stage or record.target is None or record.target not in funnel:
            raise CorruptLog(
                record,
                f"moves {record.source!r} -> {record.target!r} but the journey is in "
                f"{journey.stage!r}",
            )
        changes.update(_move(funnel, journey, record.target, record.at))
    elif kind is RecordKind.HANDOFF:
        if record.from_team != journey.owner or record.to_team is None:
            raise CorruptLog(record, f"hands off from {record.from_team!r}, not {journey.owner!r}")
        changes["owner"] = record.to_team
        if lifecycle.waits_after_handoff(funnel):
            changes["pending_acceptance"] = True
    elif kind is RecordKind.ACCEPTED:
        changes["pending_acceptance"] = False
    elif kind is RecordKind.ESCALATION:
        if record.data.get("sla") == lifecycle.ACCEPTANCE_SLA:
            changes["acceptance_escalated"] = True
        else:
            changes["escalated"] = True
    # THRESHOLD and REJECTED change nothing but the version: the transition
    # that follows a rejection is a record of its own.
    return _evolve(journey, changes)


_FIELDS = tuple(a.name for a in attrs.fields(Journey))
_SLOTS = tuple((Journey.__dict__[n].__get__, Journey.__dict__[n].__set__) for n in _FIELDS)
_SET = {name: set_ for name, (_, set_) in zip(_FIELDS, _SLOTS, strict=True)}
_set_version, _set_updated, _set_score, _set_grade, _set_attributes = (
    _SET[name] for name in ("version", "updated", "score", "grade", "attributes")
)
_new = object.__new__
_MISSING = object()


def _copy(journey: Journey) -> Journey:
    """A copy of *journey*, slot by slot (the fold then sets what changed)."""
    new: Journey = _new(Journey)
    for get, set_ in _SLOTS:
        set_(new, get(journey))
    return new


def _evolve(journey: Journey, changes: Mapping[str, Any]) -> Journey:
    """``attrs.evolve`` without validators or converters: the fold's values are frozen already.

    The fold is the only writer of journeys and runs once per record, so it
    copies the slots directly rather than going through ``__init__``.
    """
    new = _copy(journey)
    for name, value in changes.items():
        _SET[name](new, value)
    return new


def _scored(journey: Journey, record: Record) -> Journey:
    """:func:`apply` of a SCORED record, the most frequent kind, without a changes dict."""
    new = _copy(journey)
    _set_version(new, journey.version + 1)
    _set_updated(new, record.at)
    if record.score is not None:
        _set_score(new, record.score)
    data = record.data
    if data:
        grade = data.get("grade", _MISSING)
        if grade is not _MISSING:
            _set_grade(new, grade)
        learned = data.get("attributes")
        if learned:  # both sides are frozen already: a read-only view of the merge suffices
            _set_attributes(new, MappingProxyType({**journey.attributes, **learned}))
    return new


def rebuild(funnel: Funnel, records: Iterable[Record]) -> dict[str, Journey]:
    """Fold a whole log (in order) into every journey, by lead id.

    Records a revision superseded (a late touch re-folded the journey) are
    left out, as :func:`~buyerjourney._core.lifecycle.effective` says.
    """
    journeys: dict[str, Journey] = {}
    for record in lifecycle.effective(records):
        current = journeys.get(record.lead_id)
        if current is None and not record.kind.changes_journey:
            continue  # an action refused because the lead had no journey yet
        journeys[record.lead_id] = apply(funnel, current, record)
    return journeys
