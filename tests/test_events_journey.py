"""Touches, records, the guard registry and the pure fold of the log."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import Engine, Lead, Score, ScoreItem, presets
from buyerjourney._adapters.sqlite import read_jsonl_records, write_jsonl_records
from buyerjourney._core.journey import apply, rebuild
from buyerjourney._core.protocols import Context, Hooks, evaluate_guard
from buyerjourney._core.records import Actor, Record, RecordKind, Touch, parse_time
from buyerjourney.errors import CorruptLog, HookError, InvalidTouch, UnknownHook

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_parse_time_accepts_aware_values_only() -> None:
    assert parse_time("2024-01-01T00:00:00Z") == T0
    assert parse_time(T0) is T0
    for bad in ["2024-01-01T00:00:00", "yesterday", 1704067200, None, datetime(2024, 1, 1)]:
        with pytest.raises(InvalidTouch) as info:
            parse_time(bad, position=4)
        assert info.value.field == "at"
        assert info.value.position == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [("touch_id", ""), ("lead_id", 3), ("kind", None), ("properties", [1]), ("attributes", "x"),
     ("surprise", 1)],
)  # fmt: skip
def test_touch_from_dict_names_the_bad_field(field: str, value: object) -> None:
    data: dict[str, Any] = {"touch_id": "t", "lead_id": "l", "at": "2024-01-01T00:00:00+00:00",
                            "kind": "k", field: value}  # fmt: skip
    with pytest.raises(InvalidTouch) as info:
        Touch.from_dict(data, position=9)
    assert info.value.field == field
    assert info.value.value == value
    assert str(info.value).startswith("record 9: ")


def test_touch_round_trips_and_refuses_naive_times() -> None:
    touch = Touch("t", "l", T0, "click", {"page": "/"}, {"segment": "smb"})
    assert Touch.from_dict(touch.to_dict()) == touch
    with pytest.raises(InvalidTouch):
        Touch("t", "l", datetime(2024, 1, 1), "click")
    with pytest.raises(InvalidTouch):
        Touch.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]


def test_records_round_trip_through_json_lines() -> None:
    records = [
        Record("l", 0, T0, RecordKind.CREATED, target="inquiry", to_team="marketing"),
        Record("l", 1, T0, RecordKind.SCORED, score=1.5, touch_id="t",
               data={"breakdown": [["r", 1.5, ""]]}),
        Record("l", 2, T0, RecordKind.REFUSED, Actor("mia", "marketing"), reason="no",
               event="win", source="inquiry"),
    ]  # fmt: skip
    out = io.StringIO()
    assert write_jsonl_records(records, out) == 3
    path_text = out.getvalue()
    assert path_text.count("\n") == 3
    assert [Record.from_dict(r.to_dict()) for r in records] == records


def test_jsonl_file_reader(tmp_path: Any) -> None:
    record = Record("l", 0, T0, RecordKind.CREATED, target="inquiry", to_team="marketing")
    path = tmp_path / "log.jsonl"
    with path.open("w") as handle:
        write_jsonl_records([record], handle)
    assert list(read_jsonl_records(path)) == [record]


def test_hooks_registry() -> None:
    hooks = Hooks()

    @hooks.guard()
    def is_big(ctx: Context) -> bool:
        return ctx.score > 10

    hooks.add_guard("is_big", is_big)  # same function again: fine
    with pytest.raises(ValueError, match="already registered"):
        hooks.add_guard("is_big", lambda ctx: True)
    with pytest.raises(TypeError):
        hooks.add_guard("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(UnknownHook) as info:
        hooks.resolve(["is_big", "a", "b"])
    assert info.value.names == ("a", "b")
    assert set(hooks.resolve(["is_big"])) == {"is_big"}
    assert "is_big" in repr(hooks)


def test_evaluate_guard_insists_on_a_bool() -> None:
    assert evaluate_guard("g", lambda ctx: ctx.score >= 1, Context(score=1)) is True
    with pytest.raises(HookError, match="must return a bool"):
        evaluate_guard("g", lambda ctx: 1, Context(lead_id="L"))  # type: ignore[arg-type,return-value]
    with pytest.raises(HookError, match="raised ZeroDivisionError") as info:
        evaluate_guard("g", lambda ctx: 1 / 0 > 0, Context(lead_id="L"))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_fold_rejects_records_that_do_not_fit() -> None:
    funnel = presets.demand_waterfall()
    created = Record("l", 0, T0, RecordKind.CREATED, target="inquiry", to_team="marketing")
    journey = apply(funnel, None, created)
    with pytest.raises(CorruptLog, match="must be CREATED"):
        apply(funnel, None, Record("l", 0, T0, RecordKind.SCORED, score=1.0))
    with pytest.raises(CorruptLog, match="already exists"):
        apply(funnel, journey, created)
    with pytest.raises(CorruptLog, match="but the journey is in 'inquiry'"):
        apply(funnel, journey, Record("l", 1, T0, RecordKind.TRANSITION, source="mql",
                                      target="sal"))  # fmt: skip
    with pytest.raises(CorruptLog, match="hands off from 'sales'"):
        apply(funnel, journey, Record("l", 1, T0, RecordKind.HANDOFF, from_team="sales",
                                      to_team="marketing"))  # fmt: skip


def test_fold_keeps_hubspot_style_stage_times() -> None:
    funnel = presets.demand_waterfall()
    hour = timedelta(hours=1)
    log = [
        Record("l", 0, T0, RecordKind.CREATED, target="inquiry", to_team="marketing"),
        Record("l", 1, T0 + hour, RecordKind.TRANSITION, event="qualify", source="inquiry",
               target="mql"),
        Record("l", 2, T0 + 3 * hour, RecordKind.TRANSITION, event="nurture",
               source="mql", target="inquiry", reason="bad timing"),
        Record("l", 3, T0 + 6 * hour, RecordKind.TRANSITION, event="qualify",
               source="inquiry", target="mql"),
        Record("l", 4, T0 + 7 * hour, RecordKind.REFUSED, event="win", source="mql"),
    ]  # fmt: skip
    journey = rebuild(funnel, log)["l"]
    assert journey.version == 4  # the refusal changed nothing
    inquiry = journey.stages["inquiry"]
    assert (inquiry.visits, inquiry.first_entered, inquiry.entered) == (2, T0, T0 + 3 * hour)
    assert inquiry.cumulative == 4 * hour
    assert inquiry.exited == T0 + 6 * hour
    assert journey.time_in("mql", T0 + 10 * hour) == 2 * hour + 4 * hour
    assert journey.stages["mql"].latest(T0 + 10 * hour) == 4 * hour
    assert journey.time_in("sal", T0) == timedelta(0)
    assert journey.highest == "mql"
    assert journey.deadline(funnel) is None


@given(st.lists(st.sampled_from(["qualify", "nurture"]), max_size=20))
def test_highest_never_goes_down_in_the_fold(moves: list[str]) -> None:
    funnel = presets.demand_waterfall()
    journey = apply(funnel, None, Record("l", 0, T0, RecordKind.CREATED, target="inquiry",
                                         to_team="marketing"))  # fmt: skip
    for n, event in enumerate(moves, start=1):
        transition = next((t for t in funnel.transitions_from(journey.stage) if t.event == event),
                          None)  # fmt: skip
        if transition is None:
            continue
        before = funnel.stage(journey.highest).rank
        journey = apply(funnel, journey, Record("l", n, T0 + timedelta(hours=n),
                                                RecordKind.TRANSITION, event=event,
                                                source=transition.source,
                                                target=transition.target))  # fmt: skip
        assert funnel.stage(journey.highest).rank >= before


def test_attributes_and_data_are_frozen_all_the_way_down() -> None:
    """Regression: a caller or hook mutating a nested list changed the live journey and log."""
    products = ["crm", "cms"]
    touch = Touch("t1", "acme", T0, "visit", attributes={"products": products, "meta": {"a": [1]}})
    products.append("ads")  # the caller keeps a reference
    assert touch.attributes["products"] == ("crm", "cms")
    with pytest.raises(TypeError):
        touch.attributes["meta"]["a"] = [2]  # type: ignore[index]

    seen: list[object] = []

    def meddling(lead: Lead, at: datetime) -> Score:
        seen.append(lead.attributes["products"])
        with pytest.raises((TypeError, AttributeError)):
            lead.attributes["products"].append("x")  # type: ignore[attr-defined]
        return Score.from_breakdown([ScoreItem("visits", 5.0, "1 visit")])

    engine = Engine(presets.seed(), scorer=meddling)
    engine.ingest([touch])
    journey = engine.journey("acme")
    assert journey.attributes["products"] == ("crm", "cms")
    created = engine.records[0]
    assert created.data["attributes"]["products"] == ("crm", "cms")
    assert engine.records[1].data["breakdown"] == (("visits", 5.0, "1 visit"),)
    # the JSON form thaws back to plain lists and dicts, and reads back equal
    as_json = created.to_dict()
    assert as_json["data"] == {"attributes": {"products": ["crm", "cms"], "meta": {"a": [1]}}}
    assert Record.from_dict(json.loads(json.dumps(as_json))) == created
    assert engine.rebuild() == dict(engine.journeys)
