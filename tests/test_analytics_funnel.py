"""The funnel report against hand-computed logs: one test per metric and option.

The sample log (see ``test_analytics_helpers.sample_log``), times in hours:

=====  ==================================================================
lead   stage entries
=====  ==================================================================
a      awareness 0, consideration 10, conversion 20
b      awareness 1, consideration 5, trial 6, conversion 30
c      awareness 2, consideration 4, lost 50
d      awareness 3
e      awareness 3, consideration 7, awareness 8 (recycled), consideration 9
=====  ==================================================================
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from buyerjourney import Actor, Engine, Touch, UnknownStage, presets
from buyerjourney.analytics import (
    Branch,
    Durations,
    FunnelReport,
    funnel_breakdown,
    funnel_cohorts,
    funnel_report,
)
from test_analytics_helpers import T0, Log, h, sample_log, trial_funnel

PATH = ("awareness", "consideration", "conversion")
HOUR = timedelta(hours=1)


def report(**options: object) -> FunnelReport:
    log = sample_log()
    options.setdefault("path", PATH)
    return funnel_report(log.funnel, log.records, **options)  # type: ignore[arg-type]


def entered(result: FunnelReport) -> list[int]:
    return [row.entered for row in result.steps]


# ---------------------------------------------------------------- counts and rates


def test_entered_counts_leads_reaching_each_step_in_order() -> None:
    result = report()
    assert result.path == PATH
    assert entered(result) == [5, 4, 2]
    assert result.leads == 5
    assert result.journeys == 5


def test_step_conversion_divides_leads_of_consecutive_steps() -> None:
    rows = report().steps
    assert rows[0].step_conversion is None
    assert rows[1].step_conversion == 4 / 5
    assert rows[2].step_conversion == 2 / 4


def test_overall_conversion_divides_by_the_leads_entering_step_one() -> None:
    result = report()
    assert [row.overall_conversion for row in result.steps] == [1.0, 4 / 5, 2 / 5]
    assert result.overall_conversion == 2 / 5


def test_drop_off_is_one_minus_step_conversion() -> None:
    rows = report().steps
    assert rows[0].drop_off is None
    assert rows[1].drop_off == pytest.approx(0.2)
    assert rows[2].drop_off == 0.5


def test_converted_is_the_next_steps_entered() -> None:
    rows = report().steps
    assert [row.converted for row in rows] == [4, 2, None]


def test_exited_and_balance_follow_each_steps_visit() -> None:
    rows = report().steps
    # awareness: only d never left; consideration: e's counted visit (entered at 7)
    # was left at 8, so it is exited although e is back in consideration now.
    assert [(row.exited, row.balance) for row in rows] == [(4, 1), (4, 0), (0, 2)]


def test_exits_say_where_leads_went_and_whether_they_converted_anyway() -> None:
    rows = report().steps
    assert rows[0].exits == (Branch("consideration", "next", 4, 4),)
    assert rows[1].exits == (
        Branch("awareness", "back", 1, 0),
        Branch("conversion", "next", 1, 1),
        Branch("lost", "exit", 1, 0),
        Branch("trial", "detour", 1, 1),
    )


def test_a_later_step_is_a_skip() -> None:
    result = report(path=("awareness", "consideration", "trial", "conversion"))
    consideration = result.step("consideration")
    assert Branch("conversion", "skip", 1, 0) in consideration.exits
    assert Branch("trial", "next", 1, 1) in consideration.exits


def test_time_in_stage_is_the_length_of_the_completed_visits() -> None:
    rows = report().steps
    assert rows[0].time_in_stage == Durations([10 * HOUR, 4 * HOUR, 2 * HOUR, 4 * HOUR])
    assert rows[0].time_in_stage.median == 4 * HOUR
    assert rows[0].time_in_stage.p90 == 8.2 * HOUR  # 4h + 0.7 x (10h - 4h)
    assert rows[1].time_in_stage.values == (HOUR, HOUR, 10 * HOUR, 46 * HOUR)
    assert rows[1].time_in_stage.median == 5.5 * HOUR
    assert rows[2].time_in_stage.count == 0


def test_velocity_is_the_median_time_in_stage() -> None:
    rows = report().steps
    assert rows[0].velocity == 4 * HOUR
    assert rows[1].velocity == 5.5 * HOUR
    assert rows[2].velocity is None


def test_time_to_convert_runs_from_one_step_to_the_next() -> None:
    rows = report().steps
    assert rows[0].time_to_convert.values == (2 * HOUR, 4 * HOUR, 4 * HOUR, 10 * HOUR)
    assert rows[1].time_to_convert.values == (10 * HOUR, 25 * HOUR)
    assert rows[1].time_to_convert.median == 17.5 * HOUR
    assert rows[2].time_to_convert.count == 0


def test_time_from_start_runs_from_the_entry_into_step_one() -> None:
    rows = report().steps
    assert rows[2].time_from_start.values == (20 * HOUR, 29 * HOUR)
    assert rows[0].time_from_start.values == (timedelta(0),) * 5


# ---------------------------------------------------------------- the path


def test_the_default_path_is_the_success_path() -> None:
    log = sample_log()
    result = funnel_report(log.funnel, log.records)
    assert result.path == ("awareness", "consideration", "trial", "conversion")
    # the optional trial on the path: a skipped it, so only b reaches conversion
    assert entered(result) == [5, 4, 1, 1]


def test_an_optional_stage_off_the_path_keeps_conversion_at_most_one() -> None:
    # The per-stage summary divides stages reached independently; here a lead that
    # went through the trial still counts once, and conversion never exceeds 100 %.
    result = report(path=("consideration", "trial", "conversion"))
    assert entered(result) == [4, 1, 1]
    assert all(r.step_conversion is None or r.step_conversion <= 1 for r in result.steps)


def test_a_path_may_start_anywhere_and_anchors_at_its_first_stage() -> None:
    result = report(path=("consideration", "conversion"))
    assert entered(result) == [4, 2]
    assert result.steps[1].time_from_start.values == (10 * HOUR, 25 * HOUR)


def test_an_unknown_stage_in_the_path_is_named() -> None:
    log = sample_log()
    with pytest.raises(UnknownStage, match="nowhere"):
        funnel_report(log.funnel, log.records, path=("awareness", "nowhere"))


@pytest.mark.parametrize(
    ("path", "message"),
    [((), "at least one"), (("awareness", "awareness"), "twice")],
)
def test_a_bad_path_is_refused(path: tuple[str, ...], message: str) -> None:
    log = sample_log()
    with pytest.raises(ValueError, match=message):
        funnel_report(log.funnel, log.records, path=path)


def test_a_path_given_as_a_str_is_refused() -> None:
    log = sample_log()
    with pytest.raises(TypeError, match="not a str"):
        funnel_report(log.funnel, log.records, path="awareness")


# ---------------------------------------------------------------- order modes


def test_strict_order_allows_nothing_in_between() -> None:
    result = report(order="strict")
    # b went consideration -> trial -> conversion: not strict.
    assert entered(result) == [5, 4, 1]
    assert result.steps[1].exits == (
        Branch("awareness", "back", 1, 0),
        Branch("conversion", "next", 1, 1),
        Branch("lost", "exit", 1, 0),
        Branch("trial", "detour", 1, 0),
    )


def test_strict_order_lets_a_recycled_lead_try_again() -> None:
    log = Log(trial_funnel()).create("x", 0)
    log.move("x", 1, "consideration").move("x", 2, "awareness", reason="later")
    log.move("x", 3, "consideration").move("x", 4, "conversion")
    result = funnel_report(log.funnel, log.records, path=PATH, order="strict")
    assert entered(result) == [1, 1, 1]
    # the chain that counts starts at the second entry; the anchor stays the first
    assert result.steps[0].time_in_stage.values == (HOUR,)
    assert result.steps[2].time_from_start.values == (4 * HOUR,)
    ordered = funnel_report(log.funnel, log.records, path=PATH)
    assert ordered.steps[1].exits == (Branch("awareness", "back", 1, 1),)


def test_any_order_needs_every_stage_but_not_their_order() -> None:
    path = ("awareness", "trial", "consideration")
    ordered = report(path=path)
    anywise = report(path=path, order="any")
    # b entered consideration (5) before trial (6)
    assert entered(ordered) == [5, 1, 0]
    assert entered(anywise) == [5, 1, 1]
    # step 3 is reached when the last of the stages was entered: trial at 6
    assert anywise.steps[1].time_to_convert.values == (timedelta(0),)
    assert anywise.steps[2].time_from_start.values == (5 * HOUR,)


def test_an_unknown_order_is_refused() -> None:
    with pytest.raises(ValueError, match="ordered, strict, any"):
        report(order="sideways")


# ---------------------------------------------------------------- the conversion window


def test_the_window_runs_from_the_first_entry_into_step_one() -> None:
    assert entered(report(window=12 * HOUR)) == [5, 4, 0]
    # a converts 20h after its start, b 29h after
    assert entered(report(window=24 * HOUR)) == [5, 4, 1]
    assert entered(report(window=29 * HOUR)) == [5, 4, 2]


def test_the_window_is_not_reset_by_a_repeat_of_step_one() -> None:
    log = Log(trial_funnel()).create("x", 0)
    log.move("x", 1, "consideration").move("x", 20, "awareness", reason="later")
    log.move("x", 21, "consideration").move("x", 22, "conversion")
    assert entered(
        funnel_report(log.funnel, log.records, path=PATH, order="strict", window=12 * HOUR)
    ) == [1, 1, 0]


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        report(window=-HOUR)


# ---------------------------------------------------------------- dates


def test_as_of_ignores_later_records() -> None:
    result = report(as_of=h(9))
    assert result.as_of == h(9)
    assert entered(result) == [5, 3, 0]  # c, b and e had reached consideration by 9
    log = sample_log()
    truncated = [r for r in log.records if r.at <= h(9)]
    assert result == funnel_report(log.funnel, truncated, path=PATH, as_of=h(9))


def test_as_of_accepts_an_iso_string() -> None:
    assert report(as_of="2024-03-04T18:00:00+00:00") == report(as_of=h(9))


def test_since_counts_leads_entering_step_one_from_that_date() -> None:
    result = report(since=h(2))
    assert entered(result) == [3, 2, 0]  # c, d and e
    assert result.journeys == 5


def test_dates_with_no_data_give_an_empty_report_not_an_error() -> None:
    for result in (report(as_of=T0 - HOUR), report(since=h(1000))):
        assert result.empty
        assert entered(result) == [0, 0, 0]
        assert all(row.step_conversion is None for row in result.steps)
        assert all(row.overall_conversion is None for row in result.steps)
        assert "no data" in result.format()
        json.dumps(result.to_dict())


def test_an_empty_log_gives_an_empty_report() -> None:
    result = funnel_report(presets.demand_waterfall(), [])
    assert result.empty
    assert result.journeys == 0
    assert result.overall_conversion is None


def test_a_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        report(as_of=h(1).replace(tzinfo=None))


# ---------------------------------------------------------------- labels and output


def test_the_report_is_labelled_cohort_based() -> None:
    result = report(since=h(2), as_of=h(40), window=24 * HOUR)
    assert result.basis == "cohort"
    assert result.describe().startswith("cohort-based: leads that entered awareness from ")
    assert "conversion window 1 day" in result.describe()
    assert "window 7 days" in report(window=timedelta(days=7)).describe()
    assert "window 1.5h" in report(window=1.5 * HOUR).describe()
    assert "window none" in report().describe()


def test_to_dict_is_json_ready() -> None:
    data = json.loads(json.dumps(report().to_dict()))
    assert data["basis"] == "cohort"
    assert data["leads"] == 5
    step = data["steps"][1]
    assert step["stage"] == "consideration"
    assert step["step_conversion"] == 0.8
    assert step["exits"][0] == {"stage": "awareness", "kind": "back", "leads": 1, "converted": 0}
    assert step["time_in_stage"]["median_seconds"] == 5.5 * 3600
    assert step["velocity_seconds"] == 5.5 * 3600


def test_format_prints_the_table() -> None:
    text = report().format()
    assert "funnel trial: awareness > consideration > conversion" in text
    assert "5 leads entered awareness" in text
    assert "consideration -> trial (detour): 1 (1 converted)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("consideration "))
    assert line.split()[:7] == ["consideration", "4", "4", "0", "80.0%", "80.0%", "20.0%"]


def test_step_looks_a_row_up_by_stage() -> None:
    result = report()
    assert result.step("conversion").entered == 2
    with pytest.raises(KeyError, match="no step at stage 'trial'"):
        result.step("trial")


# ---------------------------------------------------------------- breakdowns


def test_breakdown_first_touch_uses_the_first_value_recorded() -> None:
    log = sample_log()
    result = funnel_breakdown(log.funnel, log.records, "segment", path=PATH)
    assert [(g.label, entered(g.report)) for g in result.groups] == [
        ("enterprise", [2, 2, 1]),  # a, and e whose segment came after its start
        ("smb", [1, 1, 1]),  # b, first seen as smb
        ("unknown", [1, 1, 0]),  # c: a real value, not the missing group
        ("(missing)", [1, 0, 0]),  # d
    ]
    assert entered(result.total) == [5, 4, 2]


def test_breakdown_last_touch_uses_the_latest_value_as_of_the_date() -> None:
    log = sample_log()
    last = funnel_breakdown(log.funnel, log.records, "segment", attribution="last", path=PATH)
    assert [(g.label, g.report.leads) for g in last.groups] == [
        ("enterprise", 3),
        ("unknown", 1),
        ("(missing)", 1),
    ]
    early = funnel_breakdown(
        log.funnel, log.records, "segment", attribution="last", path=PATH, as_of=h(10)
    )
    assert early.group("smb").report.leads == 1  # b became enterprise at 15


def test_leads_missing_the_property_form_their_own_group() -> None:
    log = sample_log()
    result = funnel_breakdown(log.funnel, log.records, "segment", path=PATH)
    missing = result.group(missing=True)
    assert missing.missing
    assert missing.value is None
    assert result.group("unknown").missing is False
    assert result.group("unknown") != missing
    nobody = funnel_breakdown(log.funnel, log.records, "country", path=PATH)
    assert [(g.label, g.missing, g.report.leads) for g in nobody.groups] == [("(missing)", True, 5)]
    with pytest.raises(KeyError, match="no lead has the value 'FR'"):
        nobody.group("FR")


def test_an_explicit_none_is_no_value_the_missing_group() -> None:
    log = Log(trial_funnel()).create("x", 0, {"segment": None}).create("y", 1)
    result = funnel_breakdown(log.funnel, log.records, "segment", path=PATH)
    assert [(g.value, g.missing, g.report.leads) for g in result.groups] == [(None, True, 2)]


def test_breakdown_output() -> None:
    log = sample_log()
    result = funnel_breakdown(log.funnel, log.records, "segment", path=PATH)
    text = result.format()
    assert text.startswith("breakdown by segment (first-touch attribution); cohort-based")
    assert "(missing)" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["groups"][-1]["missing"] is True
    assert data["groups"][-1]["value"] is None


def test_an_unknown_attribution_is_refused() -> None:
    log = sample_log()
    with pytest.raises(ValueError, match="first, last"):
        funnel_breakdown(log.funnel, log.records, "segment", attribution="middle")  # type: ignore[arg-type]


# ---------------------------------------------------------------- cohorts


def cohort_log() -> Log:
    log = Log(trial_funnel())
    log.create("w10a", 0).create("w10b", 24)  # Monday 4 and Tuesday 5 March
    log.create("w11", 7 * 24)  # Monday 11 March
    log.create("apr", 29 * 24)  # Tuesday 2 April
    log.move("w10a", 30, "consideration").move("w11", 7 * 24 + 1, "consideration")
    return log


def test_cohorts_by_week_group_leads_by_their_entry_into_step_one() -> None:
    log = cohort_log()
    result = funnel_cohorts(log.funnel, log.records, path=PATH)
    assert result.basis == "cohort"
    assert [(c.label, entered(c.report)) for c in result.cohorts] == [
        ("2024-W10", [2, 1, 0]),
        ("2024-W11", [1, 1, 0]),
        ("2024-W14", [1, 0, 0]),
    ]
    first = result.cohorts[0]
    assert (first.start, first.end) == (T0.replace(hour=0), T0.replace(hour=0) + timedelta(7))
    assert entered(result.total) == [4, 2, 0]


def test_cohorts_by_month() -> None:
    log = cohort_log()
    result = funnel_cohorts(log.funnel, log.records, period="month", path=PATH)
    assert [(c.label, c.report.leads) for c in result.cohorts] == [("2024-03", 3), ("2024-04", 1)]
    assert result.cohorts[1].start.isoformat() == "2024-04-01T00:00:00+00:00"
    assert result.cohorts[1].end.isoformat() == "2024-05-01T00:00:00+00:00"


def test_december_cohorts_end_in_january() -> None:
    log = Log(trial_funnel()).create("x", (T0.replace(month=12, day=30) - T0) / HOUR)
    result = funnel_cohorts(log.funnel, log.records, period="month")
    assert result.cohorts[0].label == "2024-12"
    assert result.cohorts[0].end.isoformat() == "2025-01-01T00:00:00+00:00"


def test_cohorts_output_and_empty_cohorts() -> None:
    log = cohort_log()
    result = funnel_cohorts(log.funnel, log.records, path=PATH)
    assert "cohorts by entry week; cohort-based" in result.format()
    json.dumps(result.to_dict())
    empty = funnel_cohorts(log.funnel, log.records, since=h(10_000))
    assert empty.cohorts == ()
    assert empty.total.empty


def test_an_unknown_period_is_refused() -> None:
    log = cohort_log()
    with pytest.raises(ValueError, match="week, month"):
        funnel_cohorts(log.funnel, log.records, period="year")  # type: ignore[arg-type]


# ---------------------------------------------------------------- from a real engine


def test_the_report_of_an_engine_log() -> None:
    funnel = presets.seed()
    engine = Engine(funnel)
    for i in range(4):
        engine.ingest_one(Touch(f"t{i}", f"l{i}", h(i), "page_view"))
    mia = Actor("mia", "marketing")
    engine.send("l0", "engage", actor=mia, at=h(5))
    engine.send("l1", "engage", actor=mia, at=h(6))
    engine.send("l1", "nurture", actor=mia, at=h(7), reason="not yet")
    engine.send("l2", "lose", actor=mia, at=h(8))
    engine.send("l0", "convert", actor=mia, at=h(9))
    result = funnel_report(
        funnel, engine.records, path=("awareness", "consideration", "conversion")
    )
    assert entered(result) == [4, 2, 1]
    assert {b.stage: b.leads for b in result.steps[0].exits} == {"consideration": 2, "lost": 1}
    assert result.steps[0].balance == 1
