"""The simulator: determinism, time order, valid items, and rates recovered by the engine."""

from __future__ import annotations

import json
import math
import random
import statistics
from collections import defaultdict
from datetime import timedelta

import attrs
import pytest

from buyerjourney import Action, RecordKind, Touch, default_pipeline, presets, read_stream, run
from buyerjourney._analytics.simulate import _after_answer, _exponential
from buyerjourney.analytics import DEFAULT_RATES, funnel_report, handoff_report, simulate


def test_the_same_seed_gives_the_same_stream_and_another_seed_another() -> None:
    funnel = presets.get("waterfall")
    first = simulate(funnel, leads=80, seed=5)
    assert first == simulate(funnel, leads=80, seed=5)
    assert first.to_jsonl() == simulate(funnel, leads=80, seed=5).to_jsonl()
    assert first.items != simulate(funnel, leads=80, seed=6).items


@pytest.mark.parametrize("preset", ["waterfall", "hubspot", "seed"])
def test_items_are_in_time_order_valid_and_ingested_without_quarantine(preset: str) -> None:
    pipeline = default_pipeline(presets.get(preset))
    sim = simulate(pipeline, leads=150, seed=1)
    times = [item.at for item in sim.items]
    assert times == sorted(times)
    assert sim.leads == 150
    assert {type(i) for i in sim.items} <= {Touch, Action}
    assert len({t.touch_id for t in sim.touches}) == len(sim.touches)
    # The JSON Lines round trip reads every line back as a valid touch or action.
    read = list(read_stream(sim.lines()))
    assert len(read) == len(sim.items)
    assert all(isinstance(item, (Touch, Action)) for _, item in read)
    engine = pipeline.engine()
    result = run(engine, read)
    assert result.quarantined == ()
    assert result.refused == 0
    assert result.touches == len(sim.touches)
    assert result.actions == len(sim.actions)
    assert engine.rebuild() == dict(engine.journeys)


def test_rates_and_acceptance_are_recovered_on_a_large_seeded_sample() -> None:
    pipeline = default_pipeline(presets.get("waterfall"))
    rates = {"inquiry": 0.5, "mql": 0.6, "sal": 0.7, "sql": 0.5, "opportunity": 0.4}
    sim = simulate(pipeline, leads=1500, seed=11, rates=rates, acceptance=0.9, touches_per_week=0.3)
    assert sim.rates == rates
    engine = pipeline.engine()
    run(engine, enumerate(sim.items))
    report = funnel_report(pipeline.funnel, engine.records)
    for row in report.steps[1:]:
        previous = report.steps[report.steps.index(row) - 1]
        n = previous.entered
        expected = rates[previous.stage]
        tolerance = 4 * (expected * (1 - expected) / n) ** 0.5  # four standard errors
        assert row.step_conversion == pytest.approx(expected, abs=tolerance), row.stage
    handoffs = handoff_report(pipeline.funnel, engine.records)
    answered = handoffs.accepted + handoffs.rejected
    assert handoffs.acceptance_rate == pytest.approx(0.9, abs=4 * (0.09 / answered) ** 0.5)


def test_durations_are_recovered_as_medians() -> None:
    funnel = presets.get("seed")
    durations = {"awareness": timedelta(days=2), "consideration": timedelta(days=5)}
    sim = simulate(
        funnel,
        leads=1000,
        seed=3,
        rates={"awareness": 0.5, "consideration": 0.5},
        durations=durations,
        touches_per_week=0.3,
    )
    engine = default_pipeline(funnel).engine()
    run(engine, enumerate(sim.items))
    report = funnel_report(funnel, engine.records)
    for row in report.steps[:2]:
        median = row.time_to_convert.median
        assert median is not None
        # The standard error of an exponential sample's median is median / (ln 2 * sqrt(n)).
        tolerance = 4 / (0.693 * row.time_to_convert.count**0.5)
        assert median / durations[row.stage] == pytest.approx(1, abs=tolerance), row.stage


def test_a_gate_duration_is_the_time_in_stage_with_the_answer_inside_it() -> None:
    # Regression: the answer delay was added on top of a gate's duration, so the time from
    # entering the gate to the next step came out as accept_delay + duration (here 1.5 times
    # the duration, and +4-6 % for a week-long gate answered in 8 hours).
    pipeline = default_pipeline(presets.get("waterfall"))
    day = timedelta(days=1)
    sim = simulate(
        pipeline,
        leads=800,
        seed=4,
        touches_per_week=0.1,
        rates={"inquiry": 0.95, "mql": 0.95, "sal": 0.8},
        durations={"sal": day},
        accept_delay=timedelta(hours=12),
    )
    engine = pipeline.engine()
    run(engine, enumerate(sim.items))
    row = funnel_report(pipeline.funnel, engine.records).steps[2]
    assert row.stage == "sal"
    times = [t / day for t in row.time_to_convert.values]
    n = len(times)
    assert n > 400
    # An exponential of median 1: its mean is 1 / ln 2, its median's standard error is
    # 1 / (ln 2 * sqrt(n)); both checked at four standard errors of this sample.
    mean = statistics.fmean(times) * math.log(2)
    mean_error = statistics.stdev(times) * math.log(2) / math.sqrt(n)
    assert mean == pytest.approx(1, abs=4 * mean_error)
    assert statistics.median(times) == pytest.approx(1, abs=4 / (math.log(2) * math.sqrt(n)))


def test_the_rest_after_an_answer_makes_the_time_in_stage_exponential() -> None:
    rng = random.Random(0)
    answer, median = timedelta(hours=8), timedelta(days=2)
    rests = [_after_answer(rng, answer, median) for _ in range(20000)]
    totals = [(_exponential(rng, answer) + rest) / median for rest in rests]
    n = len(totals)
    # P(rest = 0) is answer / median; the total is exponential of median 1 (mean 1 / ln 2).
    zero = sum(rest == timedelta(0) for rest in rests) / n
    p = answer / median
    assert zero == pytest.approx(p, abs=4 * (p * (1 - p) / n) ** 0.5)
    mean = statistics.fmean(totals)
    assert mean == pytest.approx(1 / math.log(2), abs=4 * statistics.stdev(totals) / n**0.5)
    assert statistics.median(totals) == pytest.approx(1, abs=4 / (math.log(2) * n**0.5))
    # An answer slower than the stage: the lead moves on when accepted.
    assert _after_answer(rng, timedelta(days=3), timedelta(days=1)) == timedelta(0)


def test_a_rejected_lead_stays_where_it_was_recycled_to() -> None:
    # Regression: after a rejection the simulator still thought the lead was at the gate, so
    # the engine's own policy re-qualified and re-handed off every rejected lead (moves nobody
    # planned), and left those second handoffs waiting for an answer for ever.
    pipeline = default_pipeline(presets.get("waterfall"))
    sim = simulate(pipeline, leads=600, seed=1, acceptance=0.5)
    engine = pipeline.engine()
    run(engine, enumerate(sim.items))
    kinds: dict[str, list[RecordKind]] = defaultdict(list)
    for record in engine.records:
        kinds[record.lead_id].append(record.kind)
    rejected = [lead for lead, seen in kinds.items() if RecordKind.REJECTED in seen]
    assert rejected
    for lead in rejected:
        after = kinds[lead][kinds[lead].index(RecordKind.REJECTED) + 1 :]
        assert after.count(RecordKind.TRANSITION) == 1, lead  # the recycle itself, only
    assert not any(j.pending_acceptance for j in engine.journeys.values())


@pytest.mark.parametrize("preset", ["waterfall", "hubspot", "seed"])
def test_a_funnel_accepting_after_every_handoff_gets_its_handoffs_answered(preset: str) -> None:
    funnel = attrs.evolve(presets.get(preset), acceptance="handoff")
    pipeline = default_pipeline(funnel)
    sim = simulate(pipeline, leads=300, seed=2, acceptance=0.6)
    engine = pipeline.engine()
    result = run(engine, enumerate(sim.items))
    assert result.quarantined == ()
    assert result.refused == 0
    assert not [r for r in engine.records if r.kind is RecordKind.REFUSED]
    assert not any(j.pending_acceptance for j in engine.journeys.values())
    handoffs = handoff_report(funnel, engine.records)
    assert handoffs.accepted > 0


def test_defaults_follow_the_domain_ranges() -> None:
    sim = simulate(presets.get("waterfall"), leads=0)
    assert sim.items == ()
    assert sim.rates == {
        "inquiry": DEFAULT_RATES[0],
        "mql": DEFAULT_RATES[1],
        "sal": DEFAULT_RATES[2],
        "sql": DEFAULT_RATES[3],
        "opportunity": DEFAULT_RATES[3],
    }
    assert 0.10 <= sim.rates["inquiry"] <= 0.25
    assert 0.40 <= sim.rates["mql"] <= 0.60
    assert 0.50 <= sim.rates["sal"] <= 0.70
    assert 0.20 <= sim.rates["sql"] * sim.rates["opportunity"] <= 0.30


def test_engagement_carries_a_signal_about_outcomes() -> None:
    pipeline = default_pipeline(presets.get("waterfall"))
    sim = simulate(pipeline, leads=600, seed=2)
    engine = pipeline.engine()
    run(engine, enumerate(sim.items))
    journeys = engine.journeys
    far = [j for j in journeys.values() if j.highest in ("sql", "opportunity", "won")]
    near = [j for j in journeys.values() if j.highest == "inquiry"]
    touches = dict.fromkeys(journeys, 0)
    for touch in sim.touches:
        touches[touch.lead_id] += 1
    assert sum(touches[j.lead_id] for j in far) / len(far) > 2 * sum(
        touches[j.lead_id] for j in near
    ) / len(near)


def test_invalid_arguments_say_what_is_wrong() -> None:
    funnel = presets.get("waterfall")
    with pytest.raises(ValueError, match="between 0 and 1"):
        simulate(funnel, rates={"mql": 1.5})
    with pytest.raises(ValueError, match="not success-path stages"):
        simulate(funnel, rates={"lost": 0.5})
    with pytest.raises(ValueError, match="leads"):
        simulate(funnel, leads=-1)
    with pytest.raises(ValueError, match="timedelta"):
        simulate(funnel, durations={"mql": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="touch_mix"):
        simulate(funnel, touch_mix={})
    with pytest.raises(TypeError, match="Funnel or a Pipeline"):
        simulate("waterfall")  # type: ignore[arg-type]


def test_actions_serialise_as_the_stream_format() -> None:
    sim = simulate(presets.get("waterfall"), leads=40, seed=0)
    lines = [json.loads(line) for line in sim.lines()]
    actions = [line for line in lines if line.get("type") == "action"]
    assert actions
    assert all(line["team"] == "sales" for line in actions)
    assert {line["action"] for line in actions} <= {"send", "accept", "reject"}
