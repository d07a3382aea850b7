"""What goes in and what comes out: touches, actors and the records of the log.

A :class:`Touch` is an engagement event (a page view, an email click, a demo
request) that the engine ingests. A :class:`Record` is one append-only entry
of the journey log: every transition, handoff, acceptance, rejection,
escalation, score change, manual override and refused action. A journey's
state is a fold over its records (see :mod:`buyerjourney._core.journey`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from buyerjourney._core._values import frozen_mapping, thaw
from buyerjourney.errors import InvalidTouch

__all__ = ["SYSTEM", "Action", "Actor", "Record", "RecordKind", "Touch", "parse_time"]


def parse_time(value: object, *, field: str = "at", position: int | None = None) -> datetime:
    """Return *value* as a timezone-aware datetime.

    Accepts an aware :class:`~datetime.datetime` or an ISO-8601 string with an
    offset (``2024-03-01T09:30:00+00:00`` or ``...Z``), and returns it in UTC,
    so that times with different offsets (a ``zoneinfo`` zone across a DST
    change included) compare and store consistently.

    Raises:
        InvalidTouch: The value is naive, malformed or of another type.
    """
    expected = "a timezone-aware datetime or ISO-8601 string with an offset"
    given = value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00", 1))
        except ValueError:
            raise InvalidTouch(field, value, expected, position=position) from None
        value = parsed
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidTouch(field, value, expected, position=position)
    if value.tzinfo is timezone.utc:
        return value
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidTouch(
            field, given, "a time that is within the calendar in UTC", position=position
        ) from None


def _check_id(field: str, value: object, position: int | None) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidTouch(field, value, "a non-empty str", position=position)
    return value


def _touch_mapping(field: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidTouch(field, value, "a mapping (a dict of names to values)")
    return frozen_mapping(value)


def _properties(value: object) -> Mapping[str, Any]:
    return _touch_mapping("properties", value)


def _attributes(value: object) -> Mapping[str, Any]:
    return _touch_mapping("attributes", value)


@attrs.frozen
class Touch:
    """One engagement event for one lead.

    Args:
        touch_id: Unique id of the touch (duplicates are quarantined).
        lead_id: The lead it belongs to.
        at: When it happened; must be timezone-aware.
        kind: What happened (``"email_click"``, ``"demo_request"`` ...).
        properties: Free-form details of the touch (campaign, page ...).
        attributes: Lead attributes learned with this touch (segment,
            country, employees ...); they are merged into the lead's profile.

    Raises:
        InvalidTouch: A field is missing, of the wrong type, or the time is naive.
    """

    touch_id: str
    lead_id: str
    at: datetime = attrs.field(converter=parse_time)
    kind: str
    properties: Mapping[str, Any] = attrs.field(factory=dict, converter=_properties)
    attributes: Mapping[str, Any] = attrs.field(factory=dict, converter=_attributes)

    def __attrs_post_init__(self) -> None:
        _check_id("touch_id", self.touch_id, None)
        _check_id("lead_id", self.lead_id, None)
        _check_id("kind", self.kind, None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, position: int | None = None) -> Touch:
        """Build a touch from a JSON-like mapping (``at`` as an ISO-8601 string).

        Required keys: ``touch_id``, ``lead_id``, ``at``, ``kind``; optional:
        ``properties``, ``attributes`` (objects).

        Raises:
            InvalidTouch: Names the field, the value received and the record position.
        """
        if not isinstance(data, Mapping):
            raise InvalidTouch("<record>", data, "a JSON object", position=position)
        for key in ("touch_id", "lead_id", "kind"):
            _check_id(key, data.get(key), position)
        at = parse_time(data.get("at"), position=position)
        extra = sorted(
            set(data) - {"type", "touch_id", "lead_id", "at", "kind", "properties", "attributes"}
        )
        if extra:
            raise InvalidTouch(
                extra[0], data[extra[0]], "absent (unknown field)", position=position
            )
        mappings: dict[str, Mapping[str, Any]] = {}
        for key in ("properties", "attributes"):
            value = data.get(key, {})
            if not isinstance(value, Mapping):
                raise InvalidTouch(key, value, "an object", position=position)
            mappings[key] = value
        return cls(data["touch_id"], data["lead_id"], at, data["kind"], **mappings)

    def to_dict(self) -> dict[str, Any]:
        """The touch as a JSON-ready dict (inverse of :meth:`from_dict`)."""
        out: dict[str, Any] = {
            "touch_id": self.touch_id,
            "lead_id": self.lead_id,
            "at": self.at.isoformat(),
            "kind": self.kind,
        }
        if self.properties:
            out["properties"] = thaw(self.properties)
        if self.attributes:
            out["attributes"] = thaw(self.attributes)
        return out


@attrs.frozen
class Actor:
    """Who did something: a person acting for a team, or the system.

    Args:
        name: A person's id, or ``"system"`` for automated decisions.
        team: The team the person acts for, or ``None`` (the system; or a
            person whose teams come from the owner rules' members).
    """

    name: str
    team: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.team})" if self.team else self.name


SYSTEM = Actor("system")
"""The actor of automated changes: scoring, policies and SLA escalations."""


ACTIONS = ("send", "accept", "reject", "override")


@attrs.frozen
class Action:
    """A manual action by a person, as it appears in an input stream.

    Streams (JSON Lines) mix touches with actions, marked ``"type": "action"``.

    Args:
        action: ``"send"`` (a funnel event), ``"accept"``, ``"reject"`` or
            ``"override"`` (set a stage by hand).
        lead_id: The lead acted on.
        at: When; timezone-aware.
        actor: Who acted.
        event: The funnel event, for ``send``.
        stage: The target stage, for ``override``.
        reason: Why (required for rejections, overrides and backward events).
        action_id: An id that makes the action idempotent: an action whose id
            a store has seen is skipped and counted as a duplicate (``None``:
            no id, the action is applied each time it is given).
    """

    action: str
    lead_id: str
    at: datetime = attrs.field(converter=parse_time)
    actor: Actor
    event: str | None = None
    stage: str | None = None
    reason: str = ""
    action_id: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, position: int | None = None) -> Action:
        """Build an action from a JSON-like mapping.

        Keys: ``action``, ``lead_id``, ``at``, ``actor`` (a person id),
        optional ``team``, ``event``, ``stage``, ``reason``, ``action_id``.

        Raises:
            InvalidTouch: Names the field, the value received and the position.
        """
        action = data.get("action")
        if action not in ACTIONS:
            raise InvalidTouch("action", action, f"one of {', '.join(ACTIONS)}", position=position)
        lead_id = _check_id("lead_id", data.get("lead_id"), position)
        actor = _check_id("actor", data.get("actor"), position)
        if actor == SYSTEM.name or actor.startswith("policy:"):
            raise InvalidTouch(
                "actor",
                actor,
                "a person's id: the system and policies act on their own, input cannot "
                "claim to be them",
                position=position,
            )
        team = data.get("team")
        if team is not None and (not isinstance(team, str) or not team):
            raise InvalidTouch("team", team, "a non-empty str or absent", position=position)
        at = parse_time(data.get("at"), position=position)
        needs = {"send": "event", "override": "stage"}.get(action)
        if needs is not None:
            _check_id(needs, data.get(needs), position)
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise InvalidTouch("reason", reason, "a str", position=position)
        action_id = data.get("action_id")
        if action_id is not None:
            _check_id("action_id", action_id, position)
        extra = sorted(
            set(data)
            - {
                "type",
                "action",
                "lead_id",
                "at",
                "actor",
                "team",
                "event",
                "stage",
                "reason",
                "action_id",
            }
        )
        if extra:
            raise InvalidTouch(
                extra[0], data[extra[0]], "absent (unknown field)", position=position
            )
        return cls(
            action,
            lead_id,
            at,
            Actor(actor, team),
            data.get("event"),
            data.get("stage"),
            reason,
            action_id,
        )


class RecordKind(enum.Enum):
    """The kinds of entry in the journey log."""

    CREATED = "created"
    """A journey started in the funnel's initial stage."""
    SCORED = "scored"
    """A touch changed the lead's score (value, delta and breakdown)."""
    THRESHOLD = "threshold"
    """The score crossed a configured threshold, upwards or downwards."""
    TRANSITION = "transition"
    """The journey moved from one stage to another."""
    HANDOFF = "handoff"
    """The owning team changed with a transition."""
    ACCEPTED = "accepted"
    """The receiving team accepted a handoff into a gate stage."""
    REJECTED = "rejected"
    """The receiving team rejected a handoff; a recycle transition follows."""
    ESCALATION = "escalation"
    """A journey stayed in a stage past the stage's SLA."""
    OVERRIDE = "override"
    """Someone set the stage by hand, outside the funnel's transitions."""
    REFUSED = "refused"
    """An action was refused; nothing changed."""
    REVISED = "revised"
    """A late touch re-folded the journey: the lead's records after ``data["after"]``
    (a ``seq``) are superseded by the records that follow this one."""

    @property
    def enters_stage(self) -> bool:
        """Whether a record of this kind puts the journey into its ``target`` stage.

        The one home of this rule: the fold, the engine's SLA deadlines, the
        reports, the bulk path and the verifier all ask here.
        """
        return self in _ENTERS_STAGE

    @property
    def changes_journey(self) -> bool:
        """Whether a record of this kind is folded into the journey.

        A refusal changes nothing; a revision marks records as superseded (see
        :func:`buyerjourney.effective_records`) and is not folded itself.
        """
        return self is not RecordKind.REFUSED and self is not RecordKind.REVISED


_ENTERS_STAGE: frozenset[RecordKind] = frozenset(
    {RecordKind.CREATED, RecordKind.TRANSITION, RecordKind.OVERRIDE}
)


@attrs.frozen
class Record:
    """One append-only entry of the journey log.

    Fields that do not apply to a kind are ``None`` (or empty). Records are
    flat on purpose: the log is stored and analysed as columns.

    Attributes:
        lead_id: The journey's lead.
        seq: Position in the whole log (0-based, gap-free).
        at: When it happened (timezone-aware).
        kind: What happened.
        actor: Who did it.
        reason: Why (required for backward moves, rejections, overrides).
        event: The funnel event, for transitions and refusals.
        source: The stage before (transitions, overrides, escalations).
        target: The stage after.
        from_team: The team before (handoffs).
        to_team: The team after (handoffs, and the owner set by CREATED).
        score: The score after the change (SCORED, THRESHOLD).
        touch_id: The touch that caused it, if any.
        data: Extra details: the score breakdown, the threshold crossed,
            lead attributes (CREATED, SCORED), the SLA deadline.
    """

    lead_id: str
    seq: int
    at: datetime
    kind: RecordKind
    actor: Actor = SYSTEM
    reason: str = ""
    event: str | None = None
    source: str | None = None
    target: str | None = None
    from_team: str | None = None
    to_team: str | None = None
    score: float | None = None
    touch_id: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "lead_id": self.lead_id,
            "at": self.at.isoformat(),
            "kind": self.kind.value,
            "actor": self.actor.name,
            "actor_team": self.actor.team,
        }
        for key in (
            "reason",
            "event",
            "source",
            "target",
            "from_team",
            "to_team",
            "score",
            "touch_id",
        ):
            value = getattr(self, key)
            if value not in (None, ""):
                out[key] = value
        if self.data:
            out["data"] = thaw(self.data)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Rebuild a record from :meth:`to_dict` output."""
        score = data.get("score")
        return cls(
            lead_id=data["lead_id"],
            seq=int(data["seq"]),
            at=parse_time(data["at"]),
            kind=RecordKind(data["kind"]),
            actor=Actor(data.get("actor", "system"), data.get("actor_team")),
            reason=data.get("reason", ""),
            event=data.get("event"),
            source=data.get("source"),
            target=data.get("target"),
            from_team=data.get("from_team"),
            to_team=data.get("to_team"),
            score=None if score is None else float(score),
            touch_id=data.get("touch_id"),
            data=data.get("data", {}),
        )


def is_finite_number(value: object) -> bool:
    """Whether *value* is a real, finite number a float can hold (``bool`` excluded)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float, such as 10**400
        return False
