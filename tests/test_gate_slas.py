"""Gate acceptance SLAs and business-hours SLAs.

Regression: a gate's SLA counted time in the stage, so a lead accepted at SAL
an hour after the handoff was still escalated at 72 h.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from buyerjourney import (
    Actor,
    Engine,
    Funnel,
    RecordKind,
    Stage,
    Touch,
    Transition,
    WorkingCalendar,
)
from buyerjourney.bulk import plan, replay

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)  # a Monday
MIA = Actor("mia", "marketing")
SAM = Actor("sam", "sales")


def _funnel(**sal: object) -> Funnel:
    return Funnel(
        "gated",
        [
            Stage("mql", 10, owner="marketing", initial=True),
            Stage("sal", 20, owner="sales", gate=True, **sal),  # type: ignore[arg-type]
            Stage("won", 30, kind="won", owner="sales", terminal=True),
        ],
        [
            Transition("hand_off", "mql", "sal"),
            Transition("recycle", "sal", "mql", direction="backward"),
            Transition("win", "sal", "won"),
        ],
    )


def _handed_off(funnel: Funnel) -> Engine:
    engine = Engine(funnel)
    engine.ingest([Touch("t1", "acme", T0, "visit")])
    engine.send("acme", "hand_off", actor=MIA, at=T0)
    return engine


def _escalations(engine: Engine) -> list[tuple[str, object]]:
    return [
        (r.reason, r.data.get("sla", "stage"))
        for r in engine.records
        if r.kind is RecordKind.ESCALATION
    ]


def test_an_answer_in_time_stops_the_acceptance_clock() -> None:
    engine = _handed_off(_funnel(accept_sla=timedelta(hours=48)))
    engine.accept("acme", actor=SAM, at=T0 + timedelta(hours=1))
    engine.advance(T0 + timedelta(days=10))
    assert _escalations(engine) == []  # the old SLA counted time in stage: escalated at 72 h


def test_no_answer_escalates_once_at_the_acceptance_deadline() -> None:
    engine = _handed_off(_funnel(accept_sla=timedelta(hours=48), sla=timedelta(days=5)))
    out = engine.advance(T0 + timedelta(days=10))
    assert [(r.at - T0, r.data.get("sla", "stage")) for r in out] == [
        (timedelta(hours=48), "acceptance"),
        (timedelta(days=5), "stage"),
    ]
    assert "acceptance SLA" in out[0].reason
    journey = engine.journey("acme")
    assert journey.acceptance_escalated
    assert journey.escalated
    assert engine.rebuild() == dict(engine.journeys)
    # answering late is still possible, and does not escalate again
    engine.accept("acme", actor=SAM, at=T0 + timedelta(days=11))
    assert engine.advance(T0 + timedelta(days=30)) == []


def test_a_rejection_stops_the_clock_and_a_new_visit_starts_it_again() -> None:
    engine = _handed_off(_funnel(accept_sla=timedelta(hours=8)))
    engine.reject("acme", actor=SAM, at=T0 + timedelta(hours=1), reason="not a fit")
    engine.send("acme", "hand_off", actor=MIA, at=T0 + timedelta(hours=2))
    out = engine.advance(T0 + timedelta(days=1))
    assert [r.at for r in out] == [T0 + timedelta(hours=10)]


def test_acceptance_sla_in_business_hours() -> None:
    calendar = WorkingCalendar("UTC", start=time(9), end=time(17))
    funnel = _funnel(accept_sla=timedelta(hours=8), accept_calendar=calendar)
    friday = datetime(2024, 3, 8, 16, 0, tzinfo=timezone.utc)
    engine = Engine(funnel)
    engine.ingest([Touch("t1", "acme", friday, "visit")])
    engine.send("acme", "hand_off", actor=MIA, at=friday)
    out = engine.advance(friday + timedelta(days=7))
    # one hour on Friday, seven on Monday: Monday 16:00, not Saturday 00:00
    assert [r.at for r in out] == [datetime(2024, 3, 11, 16, 0, tzinfo=timezone.utc)]


def test_stage_sla_in_business_hours() -> None:
    calendar = WorkingCalendar("UTC")
    funnel = _funnel(sla=timedelta(hours=16), sla_calendar=calendar)
    engine = _handed_off(funnel)
    (escalation,) = engine.advance(T0 + timedelta(days=7))
    assert escalation.at == T0 + timedelta(days=1, hours=8)  # Tuesday 17:00


def test_a_resumed_engine_keeps_the_acceptance_deadline() -> None:
    from buyerjourney import MemoryStore  # noqa: PLC0415

    store = MemoryStore()
    funnel = _funnel(accept_sla=timedelta(hours=48))
    first = Engine(funnel, store=store)
    first.ingest([Touch("t1", "acme", T0, "visit")])
    first.send("acme", "hand_off", actor=MIA, at=T0)
    resumed = Engine(funnel, store=store)
    assert [r.at - T0 for r in resumed.advance(T0 + timedelta(days=3))] == [timedelta(hours=48)]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"sla_calendar": WorkingCalendar()}, "no sla"),
        ({"accept_calendar": WorkingCalendar(), "gate": True}, "no accept_sla"),
    ],
)
def test_sla_fields_that_cannot_work_are_refused(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Stage("x", 10, **fields)  # type: ignore[arg-type]


def test_the_bulk_path_leaves_such_funnels_to_the_engine() -> None:
    pytest.importorskip("numpy")
    from buyerjourney import default_pipeline  # noqa: PLC0415

    pipeline = default_pipeline(_funnel(accept_sla=timedelta(hours=48)))
    chosen = plan(pipeline)
    assert chosen.mode == "reference"
    assert any("accept_sla" in reason for reason in chosen.reasons)
    touches = [Touch("t1", "acme", T0, "visit"), Touch("t2", "acme", T0, "hand_off")]
    touches.append(Touch("t3", "acme", T0 + timedelta(days=5), "visit"))
    engine = pipeline.engine()
    engine.ingest(touches)
    assert list(replay(pipeline, touches).records()) == list(engine.records)
    assert any(r.kind is RecordKind.ESCALATION for r in engine.records)


def test_an_acceptance_sla_where_no_lead_waits_is_a_funnel_problem() -> None:
    from buyerjourney import InvalidFunnel  # noqa: PLC0415

    stages = [
        Stage("a", 10, owner="marketing", initial=True, accept_sla=timedelta(hours=1)),
        Stage("b", 20, kind="won", owner="sales", terminal=True),
    ]
    with pytest.raises(InvalidFunnel) as info:
        Funnel("f", stages, [Transition("go", "a", "b")])
    assert [p.code for p in info.value.problems] == ["accept-sla-unused"]
    assert "not a gate" in str(info.value)
    # with acceptance after handoffs, any stage may wait
    Funnel("f", stages, [Transition("go", "a", "b")], acceptance="handoff")
