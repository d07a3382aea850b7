"""The backtest of handoff policies: metrics on a hand-computed history, zero denominators,
objectives, the trade-off curve, and the property that a backtest of the policy that
produced a log reproduces its handoffs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buyerjourney import Actor, Touch, default_pipeline, presets, run
from buyerjourney.analytics import (
    Outcomes,
    PolicyCandidate,
    PredictiveModel,
    backtest,
    handoff_event,
    handoff_stage,
    handoff_times,
    matrix_candidate,
    precision_at_recall,
    predictive_candidates,
    simulate,
    threshold_candidates,
)
from buyerjourney.errors import UnknownStage
from buyerjourney.policies import Decision

T0 = datetime(2024, 3, 4, 9, tzinfo=timezone.utc)  # a Monday


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def pipeline():  # type: ignore[no-untyped-def]
    return default_pipeline(presets.get("waterfall"))


def history() -> list[Touch]:
    """Three leads: a scores 61 early (demo 40 + webinar 15 + 2 pages... ), b scores 50, c 10."""
    return [
        Touch("a1", "a", at(0), "demo_request"),  # 40: qualify (>= 25)
        Touch("b1", "b", at(1), "webinar_attended"),  # 15
        Touch("c1", "c", at(2), "form_submit"),  # 10
        Touch("a2", "a", at(3), "webinar_attended"),  # 55 in mql
        Touch("b2", "b", at(4), "webinar_attended"),  # 30: qualify
        Touch("a3", "a", at(5), "content_download"),  # 65: hand_off at 60
        Touch("b3", "b", at(24 * 8), "webinar_attended"),  # next week; 45 minus decay
    ]


def test_the_default_handoff_stage_and_event() -> None:
    funnel = presets.get("waterfall")
    assert handoff_stage(funnel) == "sal"
    assert handoff_event(funnel, "sal") == "hand_off"
    assert handoff_stage(presets.get("hubspot")) == "sql"
    with pytest.raises(UnknownStage):
        handoff_event(funnel, "nowhere")


def test_metrics_against_a_hand_computed_history(pipeline) -> None:  # type: ignore[no-untyped-def]
    touches = history()
    # Truth: a and b won; a was handed off at hour 5; b at hour 100; c never.
    outcomes = Outcomes({"a", "b"}, {"a": at(5), "b": at(100)})
    candidates = threshold_candidates(pipeline, (30, 60, 200))
    result = backtest(pipeline, touches, outcomes, candidates)
    low, mid, _high = result.candidates
    assert (result.leads, result.won, result.actual_handed_off) == (3, 2, 2)
    # score>=30 in mql: a at hour 3 (55), b at hour 24*8 (b reached mql at hour 4 with 30, so
    # the hand_off fires at the next touch in mql, with a score still >= 30).
    assert low.handed_off == 2
    assert low.won_handed_off == 2
    assert low.precision == 1.0
    assert low.recall == 1.0
    assert low.f1 == 1.0
    assert dict(low.handoffs)["a"] == at(3)
    assert sorted(low.shifts) == sorted([at(3) - at(5), dict(low.handoffs)["b"] - at(100)])
    assert low.earlier == 1
    assert low.later == 1
    # score>=60: only a, at hour 5, exactly as it happened.
    assert mid.handed_off == 1
    assert dict(mid.handoffs) == {"a": at(5)}
    assert mid.precision == 1.0
    assert mid.recall == 0.5
    assert mid.f1 == pytest.approx(2 * 0.5 / 1.5)
    assert mid.shifts == (timedelta(0),)
    assert mid.same == 1
    assert mid.median_shift == timedelta(0)
    # Weekly workload: two ISO weeks between the first touch and the last.
    assert [w for w, _ in mid.weekly] == ["2024-W10", "2024-W11"]
    assert mid.weekly == (("2024-W10", 1), ("2024-W11", 0))
    assert mid.mean_weekly == 0.5
    assert mid.max_weekly == 1
    assert result.best == low.name
    assert [p.threshold for p in result.curve] == [30.0, 60.0, 200.0]


def test_a_candidate_handing_off_nobody_has_undefined_precision(pipeline) -> None:  # type: ignore[no-untyped-def]
    result = backtest(
        pipeline, history(), Outcomes({"a"}, {}), threshold_candidates(pipeline, (500,))
    )
    (nobody,) = result.candidates
    assert nobody.handed_off == 0
    assert nobody.precision is None
    assert nobody.f1 is None
    assert nobody.recall == 0.0
    assert nobody.median_shift is None
    assert nobody.compared == 0
    assert result.best is None  # no candidate has a defined F1
    assert result.actual_precision is None
    assert result.actual_recall == 0.0


def test_no_won_lead_leaves_recall_undefined(pipeline) -> None:  # type: ignore[no-untyped-def]
    result = backtest(pipeline, history(), Outcomes(set()), threshold_candidates(pipeline, (30,)))
    (only,) = result.candidates
    assert only.recall is None
    assert only.precision == 0.0
    assert only.f1 is None
    assert result.to_dict()["candidates"][0]["recall"] is None
    assert "backtest of handoffs into sal" in result.format()


def test_an_empty_history_is_a_result_not_an_error(pipeline) -> None:  # type: ignore[no-untyped-def]
    result = backtest(pipeline, [], Outcomes(set()), threshold_candidates(pipeline, (30,)))
    (only,) = result.candidates
    assert result.leads == 0
    assert only.weekly == ()
    assert only.mean_weekly is None


def test_objectives(pipeline) -> None:  # type: ignore[no-untyped-def]
    outcomes = Outcomes({"a", "b"}, {"a": at(5)})
    candidates = threshold_candidates(pipeline, (30, 60))
    by_precision = backtest(pipeline, history(), outcomes, candidates, objective="precision")
    # Equal precision (1.0): fewer handoffs wins the tie.
    assert by_precision.best == "score>=60"
    at_recall = backtest(
        pipeline, history(), outcomes, candidates, objective="precision@recall>=0.9"
    )
    assert at_recall.best == "score>=30"
    assert at_recall.objective == "precision@recall>=0.9"
    assert at_recall.candidate("score>=60").objective is None
    custom = backtest(
        pipeline, history(), outcomes, candidates, objective=lambda r: -float(r.handed_off)
    )
    assert custom.best == "score>=60"
    assert precision_at_recall(0.5).name == "precision@recall>=0.5"
    with pytest.raises(ValueError, match="objective"):
        backtest(pipeline, history(), outcomes, candidates, objective="accuracy")
    with pytest.raises(ValueError, match="between 0 and 1"):
        precision_at_recall(1.5)


def test_candidates_are_checked(pipeline) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least one"):
        backtest(pipeline, history(), Outcomes(set()), [])
    twice = threshold_candidates(pipeline, (30, 30))
    with pytest.raises(ValueError, match="unique"):
        backtest(pipeline, history(), Outcomes(set()), twice)
    with pytest.raises(ValueError, match="kind"):
        PolicyCandidate("x", lambda j, s, t: Decision(), kind="magic")
    with pytest.raises(TypeError, match="callable"):
        PolicyCandidate("x", 42)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no candidate"):
        backtest(
            pipeline, history(), Outcomes(set()), threshold_candidates(pipeline, (30,))
        ).candidate("y")


def test_outcomes_from_a_log_and_handoff_times(pipeline) -> None:  # type: ignore[no-untyped-def]
    sam = Actor("sam", "sales")
    engine = pipeline.engine()
    engine.ingest(history()[:6])
    engine.accept("a", actor=sam, at=at(6))
    for event in ("qualify_sales", "open_opportunity", "win"):
        engine.send("a", event, actor=sam, at=at(7))
    engine.ingest(history()[6:])
    outcomes = Outcomes.from_log(pipeline.funnel, engine.records)
    assert outcomes.won == {"a"}
    assert dict(outcomes.handoffs) == {"a": at(5)}
    assert handoff_times(pipeline.funnel, engine.records, as_of=at(4)) == {}
    with pytest.raises(TypeError, match="str"):
        Outcomes("a")


def test_matrix_and_predictive_candidates_run(pipeline) -> None:  # type: ignore[no-untyped-def]
    from buyerjourney.scoring import CombinedScorer, FitCriterion, FitGrader  # noqa: PLC0415

    sim = simulate(pipeline, leads=120, seed=2)
    engine = pipeline.engine()
    run(engine, enumerate(sim.items))
    outcomes = Outcomes.from_log(pipeline.funnel, engine.records)
    model = PredictiveModel.from_log(pipeline.funnel, engine.records, fields=("source",))
    fit = FitGrader((FitCriterion("referral", "source", ("referral",)),))
    graded = CombinedScorer(pipeline.scorer, fit)
    candidates = (
        *predictive_candidates(pipeline, model, (0, 101)),
        matrix_candidate(pipeline, {"A1", "B1", "C1", "D1"}, (60, 40, 20), scorer=graded),
    )
    result = backtest(pipeline, sim.items, outcomes, candidates)
    everyone, nobody, matrix = result.candidates
    assert nobody.handed_off == 0
    # Probability >= 0 in mql: every lead that reaches mql is handed off at its next touch.
    mql = {r.lead_id for r in engine.records if r.target == "mql"}
    assert set(everyone.handoffs) <= mql
    assert everyone.handed_off > 0
    # Band 1 (score >= 60) of any grade hands off exactly when the default rule does.
    assert dict(matrix.handoffs) == dict(outcomes.handoffs)
    assert [p.kind for p in result.curve] == ["predictive", "predictive"]


def test_the_bulk_path_gives_the_same_backtest(pipeline) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("numpy")
    from buyerjourney import bulk  # noqa: PLC0415

    sim = simulate(pipeline, leads=60, seed=4)
    outcomes = Outcomes({"lead-00001"}, {})
    candidates = threshold_candidates(pipeline, (40, 70))
    engine_result = backtest(pipeline, sim.items, outcomes, candidates)
    bulk_result = backtest(
        pipeline, sim.items, outcomes, candidates, replay=lambda p, t: bulk.replay(p, t).records()
    )
    assert engine_result == bulk_result


kinds = st.sampled_from(
    [
        "page_view",
        "pricing_view",
        "email_click",
        "content_download",
        "webinar_attended",
        "demo_request",
    ]
)


@st.composite
def streams(draw: st.DrawFn) -> list[Touch]:
    count = draw(st.integers(0, 30))
    leads = draw(st.integers(1, 5))
    gaps = draw(st.lists(st.integers(0, 72), min_size=count, max_size=count))
    touches = []
    when = T0
    for i, gap in enumerate(gaps):
        when += timedelta(hours=gap)
        lead = f"l{draw(st.integers(0, leads - 1))}"
        touches.append(Touch(f"t{i}", lead, when, draw(kinds)))
    return touches


@settings(max_examples=25)
@given(streams(), st.sampled_from(["waterfall", "hubspot", "seed"]))
def test_a_backtest_of_the_policy_that_produced_a_log_reproduces_its_handoffs(
    touches: list[Touch], preset: str
) -> None:
    pipeline = default_pipeline(presets.get(preset))
    stage = pipeline.funnel.success_path[1].name  # the first automated step
    engine = pipeline.engine()
    engine.ingest(touches)
    outcomes = Outcomes.from_log(pipeline.funnel, engine.records, stage=stage)
    assert pipeline.policy is not None
    result = backtest(
        pipeline, touches, outcomes, [PolicyCandidate("actual", pipeline.policy)], stage=stage
    )
    (actual,) = result.candidates
    assert dict(actual.handoffs) == dict(outcomes.handoffs)
    assert actual.handed_off == result.actual_handed_off
    assert all(s == timedelta(0) for s in actual.shifts)
    for value in (actual.precision, actual.recall, actual.f1):
        assert value is None or 0 <= value <= 1


def test_the_property_holds_on_a_simulated_stream_with_actions(pipeline) -> None:  # type: ignore[no-untyped-def]
    sim = simulate(pipeline, leads=150, seed=9)
    engine = pipeline.engine()
    result = run(engine, enumerate(sim.items))
    assert result.quarantined == ()
    assert result.refused == 0
    outcomes = Outcomes.from_log(pipeline.funnel, engine.records)
    assert outcomes.handoffs
    replayed = backtest(pipeline, sim.items, outcomes, [PolicyCandidate("actual", pipeline.policy)])
    assert dict(replayed.candidates[0].handoffs) == dict(outcomes.handoffs)
