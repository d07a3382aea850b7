"""Parsing of manual actions (``Action.from_dict``), found untested by mutation testing.

The core test files never parse an action (the CLI and replay tests do, and they are
too slow to run against every mutant); these check a full parse and the exact error
for each malformed field. See docs/mutation.md.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from buyerjourney._core.records import Action, Actor, Record, RecordKind, Touch, parse_time
from buyerjourney.errors import InvalidTouch

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)
SEND = {"action": "send", "lead_id": "L1", "at": "2024-01-01T09:00:00Z", "actor": "sam",
        "event": "win"}  # fmt: skip


def test_a_full_action_is_read() -> None:
    data = {**SEND, "type": "action", "team": "sales", "reason": "signed"}
    assert Action.from_dict(data) == Action("send", "L1", T0, Actor("sam", "sales"), "win", None,
                                            "signed")  # fmt: skip


def test_optional_fields_default_to_absent() -> None:
    data = {"action": "override", "lead_id": "L1", "at": T0.isoformat(), "actor": "ann",
            "stage": "mql"}  # fmt: skip
    assert Action.from_dict(data) == Action("override", "L1", T0, Actor("ann"), None, "mql", "")
    accept = {"action": "accept", "lead_id": "L1", "at": T0.isoformat(), "actor": "ann"}
    assert Action.from_dict(accept) == Action("accept", "L1", T0, Actor("ann"))


NOT_GIVEN = object()
BAD_FIELDS = [
    ({"action": "fly"}, "action", "fly", "one of send, accept, reject, override"),
    ({"action": NOT_GIVEN}, "action", None, "one of send, accept, reject, override"),
    ({"lead_id": ""}, "lead_id", "", "a non-empty str"),
    ({"actor": NOT_GIVEN}, "actor", None, "a non-empty str"),
    ({"team": ""}, "team", "", "a non-empty str or absent"),
    ({"team": 5}, "team", 5, "a non-empty str or absent"),
    ({"event": NOT_GIVEN}, "event", None, "a non-empty str"),
    ({"action": "override", "event": NOT_GIVEN}, "stage", None, "a non-empty str"),
    ({"reason": 5}, "reason", 5, "a str"),
    ({"zzz": 1, "aaa": 2}, "aaa", 2, "absent (unknown field)"),
]


@pytest.mark.parametrize(("change", "field", "value", "expected"), BAD_FIELDS)
def test_a_malformed_action_names_the_field_the_value_and_the_position(
    change: dict[str, Any], field: str, value: object, expected: str
) -> None:
    data = {k: v for k, v in {**SEND, **change}.items() if v is not NOT_GIVEN}
    with pytest.raises(InvalidTouch) as info:
        Action.from_dict(data, position=3)
    assert (info.value.field, info.value.value, info.value.position) == (field, value, 3)
    assert str(info.value) == (
        f"record 3: touch field {field!r} must be {expected} "
        f"(got {value!r} that is a {type(value).__name__})"
    )


def test_a_naive_time_is_refused_with_its_position() -> None:
    with pytest.raises(InvalidTouch) as info:
        Action.from_dict({**SEND, "at": "2024-01-01T09:00:00"}, position=3)
    assert (info.value.field, info.value.position) == ("at", 3)
    assert str(info.value).startswith(
        "record 3: touch field 'at' must be a timezone-aware datetime or ISO-8601 string "
        "with an offset"
    )


# ---------------------------------------------------------------- touches and records


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (("", "L1", T0, "click"), "touch_id", ""),
        (("t1", None, T0, "click"), "lead_id", None),
        (("t1", "L1", T0, ""), "kind", ""),
    ],
)
def test_a_touch_names_its_bad_field(args: tuple[Any, ...], field: str, value: object) -> None:
    with pytest.raises(InvalidTouch) as info:
        Touch(*args)
    assert (info.value.field, info.value.value, info.value.position) == (field, value, None)
    assert str(info.value) == (
        f"touch field {field!r} must be a non-empty str (got {value!r} that is a "
        f"{type(value).__name__})"
    )


TOUCH = {"touch_id": "t1", "lead_id": "L1", "at": "2024-01-01T09:00:00Z", "kind": "click"}


def test_a_touch_record_may_say_its_type() -> None:
    assert Touch.from_dict({**TOUCH, "type": "touch"}) == Touch("t1", "L1", T0, "click")


@pytest.mark.parametrize(
    ("data", "field", "value", "expected"),
    [
        (["t1"], "<record>", ["t1"], "a JSON object"),
        ({**TOUCH, "zzz": 1, "aaa": 2}, "aaa", 2, "absent (unknown field)"),
        ({**TOUCH, "properties": [1]}, "properties", [1], "an object"),
        ({**TOUCH, "attributes": "x"}, "attributes", "x", "an object"),
    ],
)
def test_a_malformed_touch_record_is_reported_exactly(
    data: Any, field: str, value: object, expected: str
) -> None:
    with pytest.raises(InvalidTouch) as info:
        Touch.from_dict(data, position=7)
    assert (info.value.field, info.value.value, info.value.position) == (field, value, 7)
    assert str(info.value) == (
        f"record 7: touch field {field!r} must be {expected} "
        f"(got {value!r} that is a {type(value).__name__})"
    )


def test_a_naive_touch_time_is_reported_with_its_position() -> None:
    with pytest.raises(InvalidTouch) as info:
        Touch.from_dict({**TOUCH, "at": "2024-01-01T09:00:00"}, position=7)
    assert (info.value.field, info.value.position) == ("at", 7)
    assert str(info.value) == (
        "record 7: touch field 'at' must be a timezone-aware datetime or ISO-8601 string with "
        "an offset (got datetime.datetime(2024, 1, 1, 9, 0) that is a datetime)"
    )


def test_records_leave_out_empty_fields_and_default_to_the_system_actor() -> None:
    record = Record("L1", 0, T0, RecordKind.TRANSITION, reason="", event="go", source="a",
                    target="b")  # fmt: skip
    assert record.to_dict() == {"seq": 0, "lead_id": "L1", "at": "2024-01-01T09:00:00+00:00",
                                "kind": "transition", "actor": "system", "actor_team": None,
                                "event": "go", "source": "a", "target": "b"}  # fmt: skip
    minimal = {"seq": 0, "lead_id": "L1", "at": "2024-01-01T09:00:00+00:00", "kind": "created"}
    assert Record.from_dict(minimal).actor == Actor("system")


def test_an_unreadable_time_string_is_reported_as_received() -> None:
    with pytest.raises(InvalidTouch) as info:
        parse_time("yesterday", field="when", position=2)
    assert (info.value.field, info.value.value, info.value.position) == ("when", "yesterday", 2)
    assert str(info.value) == (
        "record 2: touch field 'when' must be a timezone-aware datetime or ISO-8601 string "
        "with an offset (got 'yesterday' that is a str)"
    )
