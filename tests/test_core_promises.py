"""Regressions for promises the core did not keep, each failing on the code before its fix."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from buyerjourney import (
    SYSTEM,
    Actor,
    Engine,
    InvalidAction,
    InvalidTouch,
    ListenerFailed,
    Record,
    Touch,
    default_pipeline,
    presets,
    read_stream,
    run,
)
from buyerjourney.scoring import Lead, PointsRule, PointsScorer, Score, ScoreGroup, ScoreItem

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)


def _engine_with(scorer: object) -> Engine:
    return Engine(presets.seed(), scorer=scorer)  # type: ignore[arg-type]


def test_a_breakdown_that_does_not_add_up_is_a_hook_error() -> None:
    def liar(lead: Lead, at: datetime) -> Score:
        return Score(10, (ScoreItem("a", 5, ""),))

    report = _engine_with(liar).ingest([Touch("t1", "acme", T0, "visit")])
    assert len(report.quarantined) == 1
    assert "adds up to 5, not its value 10" in report.quarantined[0].reason
    assert "Score.from_breakdown" in report.quarantined[0].reason


def test_fit_items_are_not_part_of_the_total() -> None:
    def graded(lead: Lead, at: datetime) -> Score:
        return Score(5, (ScoreItem("a", 5, ""), ScoreItem("fit:size", 9, "")), "A")

    assert _engine_with(graded).ingest([Touch("t1", "acme", T0, "visit")]).quarantined == ()


def test_a_score_too_large_for_a_float_is_a_hook_error_not_an_overflow() -> None:
    def huge(lead: Lead, at: datetime) -> Score:
        return Score(10**400)

    report = _engine_with(huge).ingest([Touch("t1", "acme", T0, "visit")])
    assert len(report.quarantined) == 1
    assert "not a finite number" in report.quarantined[0].reason


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_record(self, record: Record, journey: object) -> None:
        self.seen.append(record.seq)


class _Broken:
    def on_record(self, record: Record, journey: object) -> None:
        raise OSError("disk full")


def test_a_listener_that_raises_does_not_hide_records_from_the_others() -> None:
    after = _Recorder()
    engine = Engine(presets.seed(), listeners=[_Broken(), after])
    with pytest.raises(ListenerFailed) as info:
        engine.ingest_one(Touch("t1", "acme", T0, "visit"))
    assert info.value.listener == "_Broken"
    assert isinstance(info.value.__cause__, OSError)
    assert "committed" in str(info.value)
    assert after.seen == [r.seq for r in engine.records] == [0, 1]  # committed and heard


def test_touch_mappings_of_the_wrong_type_are_invalid_touches() -> None:
    with pytest.raises(InvalidTouch) as info:
        Touch("t1", "acme", T0, "visit", attributes=None)  # type: ignore[arg-type]
    assert info.value.field == "attributes"
    with pytest.raises(InvalidTouch):
        Touch("t1", "acme", T0, "visit", properties=["a"])  # type: ignore[arg-type]


def test_a_touch_never_keeps_a_string_time_and_times_are_utc() -> None:
    touch = Touch("t1", "acme", "2024-03-04T10:00:00+01:00", "visit")  # type: ignore[arg-type]
    assert touch.at == T0
    assert touch.at.tzinfo is timezone.utc
    engine = Engine(presets.seed())
    assert engine.ingest([touch]).quarantined == ()
    with pytest.raises(InvalidTouch):
        Touch("t1", "acme", "yesterday", "visit")  # type: ignore[arg-type]


def test_times_across_a_dst_change_compare_and_store_consistently() -> None:
    """Regression: a touch 45 minutes later was quarantined as out of order."""
    berlin = ZoneInfo("Europe/Berlin")
    # 2024-10-27 02:30 happens twice in Berlin; fold=1 is the later one (UTC+1)
    first = datetime(2024, 10, 27, 2, 30, tzinfo=berlin)  # 00:30 UTC
    later = datetime(2024, 10, 27, 2, 15, fold=1, tzinfo=berlin)  # 01:15 UTC, 45 min later
    engine = default_pipeline(presets.seed()).engine()
    report = engine.ingest([Touch("t1", "a", first, "visit"), Touch("t2", "a", later, "engage")])
    assert report.quarantined == ()
    journey = engine.journey("a")
    assert journey.stage == "consideration"
    assert journey.stages["awareness"].cumulative == timedelta(minutes=45)
    assert engine.rebuild() == dict(engine.journeys)
    stored = [Record.from_dict(json.loads(json.dumps(r.to_dict()))) for r in engine.records]
    assert stored == list(engine.records)


def test_input_cannot_claim_the_system_actor() -> None:
    lines = [
        json.dumps({"touch_id": "t1", "lead_id": "a", "at": T0.isoformat(), "kind": "visit"}),
        json.dumps(
            {
                "type": "action",
                "action": "override",
                "lead_id": "a",
                "at": (T0 + timedelta(hours=1)).isoformat(),
                "actor": "system",
                "stage": "conversion",
                "reason": "because",
            }
        ),
    ]
    engine = default_pipeline(presets.seed()).engine()
    result = run(engine, read_stream(lines))
    assert result.actions == 0
    assert len(result.quarantined) == 1
    assert "system" in str(result.quarantined[0])
    assert engine.journey("a").stage == "awareness"


def test_an_action_before_the_clock_is_an_invalid_action_with_the_value_as_given() -> None:
    engine = Engine(presets.seed())
    engine.ingest([Touch("t1", "a", T0, "visit")])
    early = T0 - timedelta(hours=1)
    with pytest.raises(InvalidAction) as info:
        engine.send("a", "engage", actor=Actor("mia", "marketing"), at=early)
    assert (info.value.action, info.value.field, info.value.value) == ("engage", "at", early)
    assert "that is a datetime" in str(info.value)
    with pytest.raises(InvalidAction):
        engine.send("a", "engage", actor=SYSTEM, at="not a time")  # type: ignore[arg-type]


def test_the_default_group_needs_no_declaration() -> None:
    """Regression: declaring any group required declaring the implicit 'engagement' group."""
    scorer = PointsScorer(
        [PointsRule("visit", 1, kind="visit"), PointsRule("web", 5, kind="page", group="web")],
        groups=[ScoreGroup("web", cap=5)],
    )
    touches = [Touch(f"t{i}", "a", T0 + timedelta(minutes=i), "page") for i in range(3)]
    touches.append(Touch("t9", "a", T0 + timedelta(hours=1), "visit"))
    score = scorer(Lead("a", {}, tuple(touches)), T0 + timedelta(hours=1))
    assert score.value == 6  # web capped at 5, plus one uncapped visit
    with pytest.raises(ValueError, match="'wbe' is used by a rule but not declared"):
        PointsScorer([PointsRule("x", 1, group="wbe")], groups=[ScoreGroup("web")])


def test_a_breakdown_item_with_a_detail_that_is_not_text_is_a_hook_error() -> None:
    def listy(lead: Lead, at: datetime) -> Score:
        return Score(5, (ScoreItem("a", 5, ["not", "text"]),))  # type: ignore[arg-type]

    report = _engine_with(listy).ingest([Touch("t1", "acme", T0, "visit")])
    assert len(report.quarantined) == 1
    assert "rule or detail that is not a str" in report.quarantined[0].reason
