"""The forecast: estimates on a hand-made log, the median against a known expectation,
intervals that widen with the horizon and contain the truth at their level."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from buyerjourney import default_pipeline, presets, run
from buyerjourney.analytics import estimate_steps, forecast, simulate
from buyerjourney.errors import UnknownStage

FUNNEL = presets.get("seed")
RATES = {"awareness": 0.5, "consideration": 0.5}
DURATIONS = {"awareness": timedelta(days=3), "consideration": timedelta(days=3)}
AS_OF = datetime(2024, 2, 12, tzinfo=timezone.utc)


def log(seed: int, leads: int = 300, span: timedelta = timedelta(weeks=12)):  # type: ignore[no-untyped-def]
    pipeline = default_pipeline(FUNNEL)
    sim = simulate(
        pipeline,
        leads=leads,
        seed=seed,
        span=span,
        rates=RATES,
        durations=DURATIONS,
        touches_per_week=0.3,
    )
    engine = pipeline.engine()
    run(engine, enumerate(sim.items))
    return engine.records


def test_estimates_count_open_leads_apart() -> None:
    records = log(0)
    steps = estimate_steps(FUNNEL, records, as_of=AS_OF)
    assert [(s.stage, s.next_stage) for s in steps] == [
        ("awareness", "consideration"),
        ("consideration", "conversion"),
    ]
    for step in steps:
        assert step.rate is not None
        n = step.reached
        assert step.rate == pytest.approx(RATES[step.stage], abs=4 * (0.25 / n) ** 0.5)
        assert step.rate >= step.converted / n  # open leads may still convert
        assert step.durations == tuple(sorted(step.durations))


def test_the_median_is_close_to_the_known_expectation() -> None:
    # Every lead arrived in the first week; forecast from day 10, for long enough that all finish.
    records = log(1, leads=1200, span=timedelta(days=7))
    as_of = datetime(2024, 1, 11, tzinfo=timezone.utc)
    result = forecast(FUNNEL, records, as_of=as_of, weeks=10, runs=400, seed=1, arrivals=False)
    # The expectation with the known rates.
    firsts: dict[tuple[str, str], datetime] = {}
    current: dict[str, str] = {}
    for r in records:
        if r.at <= as_of and r.kind.enters_stage and r.target:
            firsts.setdefault((r.lead_id, r.target), r.at)
            current[r.lead_id] = r.target
    expected = 0.0
    for _lead, stage in current.items():
        if stage not in RATES:
            continue
        # Converters and leavers share the duration distribution (both exponential, median
        # 3 days), so an open lead of any age converts with the step's rate.
        chance = RATES[stage]
        if stage == "awareness":
            chance *= RATES["consideration"]
        expected += chance
    final = result.weeks[-1].cumulative_median
    assert final == pytest.approx(expected, rel=0.2, abs=3)


def test_intervals_widen_with_the_horizon_and_the_weeks_follow_each_other() -> None:
    result = forecast(FUNNEL, log(2), as_of=AS_OF, weeks=4, runs=300, seed=0)
    widths = [w.cumulative_high - w.cumulative_low for w in result.weeks]
    assert widths == sorted(widths)
    assert widths[-1] > widths[0]
    for before, after in zip(result.weeks, result.weeks[1:], strict=False):
        assert after.start == before.end
        assert after.cumulative_median >= before.cumulative_median
    assert result.weeks[0].start == AS_OF
    assert result.arrivals_per_week == pytest.approx(300 / 12, rel=0.35)


def test_intervals_contain_the_truth_at_their_level_on_repeated_runs() -> None:
    horizon = timedelta(weeks=3)
    inside = 0
    seeds = range(10)
    for seed in seeds:
        records = log(seed)
        result = forecast(FUNNEL, records, as_of=AS_OF, weeks=3, runs=300, seed=seed, interval=0.8)
        truth = sum(
            1
            for r in records
            if r.kind.enters_stage and r.target == "conversion" and AS_OF < r.at <= AS_OF + horizon
        )
        last = result.weeks[-1]
        inside += last.cumulative_low <= truth <= last.cumulative_high
    # 80 % intervals: at least 6 of 10 (the binomial's 5th percentile), deterministic seeds.
    assert inside >= 6


def test_the_same_seed_gives_the_same_forecast() -> None:
    records = log(3, leads=100)
    first = forecast(FUNNEL, records, as_of=AS_OF, runs=50, seed=7)
    assert first == forecast(FUNNEL, records, as_of=AS_OF, runs=50, seed=7)
    assert "forecast of entries into conversion" in first.format()
    assert first.to_dict()["weeks"][0]["week"] == 1


def test_invalid_arguments() -> None:
    records = log(4, leads=20)
    with pytest.raises(ValueError, match="weeks"):
        forecast(FUNNEL, records, weeks=0)
    with pytest.raises(ValueError, match="interval"):
        forecast(FUNNEL, records, interval=1.0)
    with pytest.raises(ValueError, match="success-path stage after the first"):
        forecast(FUNNEL, records, target="awareness")
    with pytest.raises(UnknownStage):
        forecast(FUNNEL, records, target="nowhere")
    with pytest.raises(ValueError, match="empty"):
        forecast(FUNNEL, [])
    empty = forecast(FUNNEL, [], as_of=AS_OF, runs=10)
    assert all(w.cumulative_high == 0 for w in empty.weeks)
    assert all(s.rate is None for s in empty.steps)
