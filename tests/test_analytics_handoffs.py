"""Handoff metrics against a hand-computed log driven through the engine.

On the demand waterfall (SAL is a gate with a 72-hour SLA), times in hours:

====  ========================================================================
lead  what happens
====  ========================================================================
l0    inquiry 0, qualified 10, handed off 12, accepted by sam 20, SQL 30
l1    inquiry 1, qualified 11, handed off 13, rejected by sam 21 ("no budget")
l2    inquiry 2, qualified 14, handed off 15, never answered: escalated at 87
l3    inquiry 3; sam's accept at 40 is refused (nothing waits)
====  ========================================================================
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from buyerjourney import ActionRefused, Actor, Engine, Record, Touch, presets
from buyerjourney.analytics import (
    ActorLoad,
    Durations,
    HandoffReport,
    HandoffRoute,
    Recycle,
    TeamLoad,
    handoff_report,
)
from test_analytics_helpers import T0, Log, h

FUNNEL = presets.demand_waterfall()
MIA = Actor("mia", "marketing")
SAM = Actor("sam", "sales")
HOUR = timedelta(hours=1)


def engine_log() -> tuple[Record, ...]:
    engine = Engine(FUNNEL)
    for i in range(4):
        engine.ingest_one(Touch(f"t{i}", f"l{i}", h(i), "page_view"))
    engine.send("l0", "qualify", actor=MIA, at=h(10))
    engine.send("l1", "qualify", actor=MIA, at=h(11))
    engine.send("l0", "hand_off", actor=MIA, at=h(12))
    engine.send("l1", "hand_off", actor=MIA, at=h(13))
    engine.send("l2", "qualify", actor=MIA, at=h(14))
    engine.send("l2", "hand_off", actor=MIA, at=h(15))
    engine.accept("l0", actor=SAM, at=h(20))
    engine.reject("l1", actor=SAM, at=h(21), reason="no budget")
    engine.send("l0", "qualify_sales", actor=SAM, at=h(30))
    with pytest.raises(ActionRefused):
        engine.accept("l3", actor=SAM, at=h(40))
    engine.advance(h(100))
    return engine.records


def report(**options: object) -> HandoffReport:
    return handoff_report(FUNNEL, engine_log(), **options)  # type: ignore[arg-type]


def test_handoffs_are_counted_by_route() -> None:
    result = report()
    assert result.handoffs == 4
    assert result.routes == (
        HandoffRoute("sal", "marketing", "sales", 3),
        HandoffRoute("inquiry", "sales", "marketing", 1),
    )


def test_acceptance_rate_is_accepted_over_answered() -> None:
    result = report()
    assert (result.gate_entries, result.accepted, result.rejected) == (3, 1, 1)
    assert result.answered == 2
    assert result.acceptance_rate == 0.5


def test_handoffs_still_waiting_are_counted_apart() -> None:
    assert report().pending == 1  # l2


def test_time_to_accept_runs_from_the_gate_entry() -> None:
    result = report()
    assert result.time_to_accept == Durations([8 * HOUR])
    assert result.time_to_accept.median == 8 * HOUR
    assert result.time_to_accept.p90 == 8 * HOUR


def test_sla_breaches_per_stage() -> None:
    assert dict(report().breaches) == {"sal": 1}


def test_rejections_and_recycles_keep_their_reasons() -> None:
    result = report()
    assert dict(result.rejection_reasons) == {"no budget": 1}
    assert result.recycles == (Recycle("sal", "inquiry", "no budget", 1),)


def test_workload_per_team() -> None:
    assert report().teams == (
        TeamLoad("marketing", received=1, handed_off=3, open=2),
        TeamLoad(
            "sales",
            received=3,
            handed_off=1,
            accepted=1,
            rejected=1,
            breaches=1,
            open=2,
            waiting=1,
        ),
    )


def test_workload_per_person_leaves_the_system_out() -> None:
    assert report().actors == (
        ActorLoad("mia", "marketing", moves=6),
        ActorLoad("sam", "sales", moves=2, accepted=1, rejected=1, refused=1),
    )


def test_as_of_ignores_later_records() -> None:
    result = report(as_of=h(14))
    assert (result.handoffs, result.accepted, result.rejected, result.pending) == (2, 0, 0, 2)
    assert result.acceptance_rate is None
    assert result.time_to_accept.count == 0
    records = engine_log()
    assert result == handoff_report(FUNNEL, [r for r in records if r.at <= h(14)], as_of=h(14))


def test_since_counts_what_happened_in_the_period() -> None:
    result = report(since=h(16))
    assert result.basis == "period"
    assert result.handoffs == 1  # the recycle back to marketing
    assert result.gate_entries == 0
    assert (result.accepted, result.rejected) == (1, 1)
    # the gate was entered before the period; the wait is still measured from it
    assert result.time_to_accept.values == (8 * HOUR,)
    assert dict(result.breaches) == {"sal": 1}


def test_dates_with_no_data_give_an_empty_report() -> None:
    result = report(as_of=T0 - HOUR)
    assert result.empty
    assert result.acceptance_rate is None
    assert result.teams == ()
    assert "no data" in result.format()
    json.dumps(result.to_dict())
    assert handoff_report(FUNNEL, []).empty


def test_a_period_after_the_log_counts_nothing_but_the_state_remains() -> None:
    result = report(since=h(1000))
    assert (result.handoffs, result.answered, result.gate_entries) == (0, 0, 0)
    assert result.acceptance_rate is None
    assert dict(result.breaches) == {}
    assert result.pending == 1  # l2 still waits at the end of the log
    json.dumps(result.to_dict())


def test_the_report_is_labelled_period_based() -> None:
    assert report(since=h(16)).describe().startswith("period-based: what happened from ")


def test_to_dict_is_json_ready() -> None:
    data = json.loads(json.dumps(report().to_dict()))
    assert data["acceptance_rate"] == 0.5
    assert data["breaches"] == {"sal": 1}
    assert data["time_to_accept"]["median_seconds"] == 8 * 3600
    assert data["teams"][1]["team"] == "sales"
    assert data["actors"][1] == {
        "actor": "sam",
        "team": "sales",
        "moves": 2,
        "overrides": 0,
        "accepted": 1,
        "rejected": 1,
        "refused": 1,
    }


def test_format_prints_every_section() -> None:
    text = report().format()
    for expected in (
        "handoffs: 4",
        "marketing -> sales into sal: 3",
        "acceptance rate: 50.0%",
        "time to accept: median 8.0h, p90 8.0h (n=1)",
        "  sal: 1",
        "  1 x no budget",
        "  sal -> inquiry: 1 x no budget",
    ):
        assert expected in text
    assert any(
        line.split() == ["sam", "sales", "2", "0", "1", "1", "1"] for line in text.split("\n")
    )


def test_overrides_and_backward_moves_by_rank() -> None:
    log = Log(FUNNEL).create("x", 0)
    pat = Actor("pat", "marketing")
    log.move("x", 1, "mql", actor=pat)
    log.move("x", 2, "inquiry", actor=pat, reason="too early")  # the funnel's nurture
    log.move("x", 3, "opportunity", actor=pat, override=True, reason="known buyer")
    result = handoff_report(FUNNEL, log.records)
    assert result.recycles == (Recycle("mql", "inquiry", "too early", 1),)
    assert result.actors == (ActorLoad("pat", "marketing", moves=2, overrides=1),)
    assert result.routes == (HandoffRoute("opportunity", "marketing", "sales", 1),)
