"""How records, touches, actions and journeys become rows of a database, and back.

The one home of the stored shapes: every store (SQLite, PostgreSQL) writes
and reads these tuples, so a log written by one reads back the same through
another. Times are ISO-8601 text in UTC (exact, and ordered as text),
mappings are JSON with sorted keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from buyerjourney._core._values import thaw
from buyerjourney._core.journey import Journey, StageTime
from buyerjourney._core.records import Action, Actor, Record, Touch, parse_time
from buyerjourney.errors import StoreError

__all__ = [
    "ACTION_COLUMNS",
    "RECORD_COLUMNS",
    "TOUCH_COLUMNS",
    "action_from_row",
    "action_row",
    "journey_from_json",
    "journey_to_json",
    "record_from_row",
    "record_row",
    "touch_from_row",
    "touch_row",
]

RECORD_COLUMNS = (
    "seq", "lead_id", "at", "kind", "actor", "actor_team", "reason", "event", "source",
    "target", "from_team", "to_team", "score", "touch_id", "data",
)  # fmt: skip
"""The columns of the records table, in the order of :func:`record_row`."""

TOUCH_COLUMNS = ("touch_id", "lead_id", "at", "kind", "properties", "attributes")
"""The columns of a stored touch, in the order of :func:`touch_row`."""

ACTION_COLUMNS = (
    "action_id", "lead_id", "at", "action", "actor", "team", "event", "stage", "reason",
)  # fmt: skip
"""The columns of a stored action, in the order of :func:`action_row`."""


def _plain(value: object) -> Any:
    """What JSON cannot encode itself: frozen mappings and sets (``thaw``'s rule), else text."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    return str(value)


_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=_plain)


def _json(value: Any) -> str:
    """*value* as JSON text with sorted keys, without copying the frozen value first.

    The same text as ``json.dumps(thaw(value), sort_keys=True, ensure_ascii=False,
    default=str)``: a value JSON cannot encode is written as its ``str()``.
    """
    if not value:
        return "{}" if isinstance(value, Mapping) else _ENCODER.encode(thaw(value))
    return _ENCODER.encode(value)


def record_row(record: Record) -> tuple[Any, ...]:
    """*record* as the values of :data:`RECORD_COLUMNS`."""
    return (
        record.seq,
        record.lead_id,
        record.at.isoformat(),
        record.kind.value,
        record.actor.name,
        record.actor.team,
        record.reason,
        record.event,
        record.source,
        record.target,
        record.from_team,
        record.to_team,
        record.score,
        record.touch_id,
        _json(record.data),
    )


def _unreadable(what: str, row: object, exc: Exception) -> StoreError:
    """The error for a stored row that does not decode: the store was changed by hand."""
    shown = repr(row)
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    return StoreError(
        f"a stored {what} cannot be read ({type(exc).__name__}: {exc}): {shown}; the store "
        "was changed outside buyerjourney: restore it from a backup, or ingest the inputs "
        "into a new store"
    )


_DECODE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)
"""What a row changed by hand raises while it is decoded (``json``, ``parse_time``, attrs)."""


def record_from_row(row: Sequence[Any]) -> Record:
    """The record a :func:`record_row` tuple holds.

    Raises:
        StoreError: The row does not decode (it was changed outside buyerjourney).
    """
    try:
        values = dict(zip(RECORD_COLUMNS, row, strict=True))
        values["data"] = json.loads(values["data"])
        return Record.from_dict({k: v for k, v in values.items() if v is not None})
    except _DECODE_ERRORS as exc:
        raise _unreadable("record", row, exc) from None


def touch_row(touch: Touch) -> tuple[Any, ...]:
    """*touch* as the values of :data:`TOUCH_COLUMNS`."""
    return (
        touch.touch_id,
        touch.lead_id,
        touch.at.isoformat(),
        touch.kind,
        _json(touch.properties),
        _json(touch.attributes),
    )


def touch_from_row(row: Sequence[Any]) -> Touch:
    """The touch a :func:`touch_row` tuple holds.

    Raises:
        StoreError: The row does not decode (it was changed outside buyerjourney).
    """
    try:
        touch_id, lead_id, at, kind, properties, attributes = row
        return Touch(
            touch_id,
            lead_id,
            parse_time(at),
            kind,
            properties=json.loads(properties),
            attributes=json.loads(attributes),
        )
    except _DECODE_ERRORS as exc:
        raise _unreadable("touch", row, exc) from None


def action_row(action: Action) -> tuple[Any, ...]:
    """*action* as the values of :data:`ACTION_COLUMNS`."""
    return (
        action.action_id,
        action.lead_id,
        action.at.isoformat(),
        action.action,
        action.actor.name,
        action.actor.team,
        action.event,
        action.stage,
        action.reason,
    )


def action_from_row(row: Sequence[Any]) -> Action:
    """The action an :func:`action_row` tuple holds.

    Raises:
        StoreError: The row does not decode (it was changed outside buyerjourney).
    """
    try:
        action_id, lead_id, at, action, actor, team, event, stage, reason = row
        return Action(
            action,
            lead_id,
            parse_time(at),
            Actor(actor, team),
            event,
            stage,
            reason,
            action_id,
        )
    except _DECODE_ERRORS as exc:
        raise _unreadable("action", row, exc) from None


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _micros(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def journey_to_json(journey: Journey) -> str:
    """*journey* as JSON text (exact: :func:`journey_from_json` gives an equal journey)."""
    stages = {
        name: {
            "entered": times.entered.isoformat(),
            "first_entered": times.first_entered.isoformat(),
            "exited": _time(times.exited),
            "cumulative_us": _micros(times.cumulative),
            "visits": times.visits,
        }
        for name, times in journey.stages.items()
    }
    document = {
        "lead_id": journey.lead_id,
        "stage": journey.stage,
        "highest": journey.highest,
        "owner": journey.owner,
        "created": journey.created.isoformat(),
        "updated": journey.updated.isoformat(),
        "score": journey.score,
        "grade": journey.grade,
        "attributes": thaw(journey.attributes),
        "stages": stages,
        "pending_acceptance": journey.pending_acceptance,
        "escalated": journey.escalated,
        "acceptance_escalated": journey.acceptance_escalated,
        "version": journey.version,
    }
    return json.dumps(document, sort_keys=True, default=str, ensure_ascii=False)


def journey_from_json(text: str) -> Journey:
    """The journey :func:`journey_to_json` wrote.

    Raises:
        StoreError: The text does not decode (it was changed outside buyerjourney).
    """
    try:
        return _journey_from_json(text)
    except _DECODE_ERRORS as exc:
        raise _unreadable("journey", text, exc) from None


def _journey_from_json(text: str) -> Journey:
    data: Mapping[str, Any] = json.loads(text)
    stages = {
        name: StageTime(
            entered=parse_time(times["entered"]),
            first_entered=parse_time(times["first_entered"]),
            exited=None if times["exited"] is None else parse_time(times["exited"]),
            cumulative=timedelta(microseconds=times["cumulative_us"]),
            visits=times["visits"],
        )
        for name, times in data["stages"].items()
    }
    return Journey(
        lead_id=data["lead_id"],
        stage=data["stage"],
        highest=data["highest"],
        owner=data["owner"],
        created=parse_time(data["created"]),
        updated=parse_time(data["updated"]),
        score=data["score"],
        grade=data["grade"],
        attributes=data["attributes"],
        stages=stages,
        pending_acceptance=data["pending_acceptance"],
        escalated=data["escalated"],
        acceptance_escalated=data["acceptance_escalated"],
        version=data["version"],
    )
