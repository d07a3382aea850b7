"""The engine's log, field by field, found missing by mutation testing.

The other engine tests check record kinds and journey states; mutation testing showed
that most record fields (actors, reasons, sources, touch ids, data) and the contexts
that guards see could change without a test noticing. The log is the source of truth,
so these tests run one scripted scenario through both backends and compare the whole
log, then check the edges the scenario does not reach: SLA and threshold boundaries,
the quarantine report, the exact ``InvalidTouch`` errors and the hook names. See
docs/mutation.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from buyerjourney import Funnel, Stage, Transition
from buyerjourney._core._values import thaw
from buyerjourney._core.journey import Journey
from buyerjourney._core.owners import Condition, OwnerRule, OwnerRules
from buyerjourney._core.protocols import Context, Hooks
from buyerjourney._core.records import Actor, Record, RecordKind, Touch
from buyerjourney._engine import Engine, IngestReport, Overdue, Quarantined
from buyerjourney.errors import (
    ActionRefused,
    BuyerJourneyError,
    HookError,
    InvalidAction,
    InvalidTouch,
)
from buyerjourney.policies import Decision
from buyerjourney.scoring import Lead, Score, ScoreItem
from sample_funnels import demo_funnel, demo_hooks

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)
MIA = Actor("mia", "marketing")
SAM = Actor("sam", "sales")


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def touch_scorer(lead: Lead, at: datetime) -> Score:
    """10 points per touch, 30 more for a large company, which also grades A."""
    n = len(lead.touches)
    big = lead.attributes.get("employees", 0) >= 1000
    detail = f"{lead.lead_id}: {n} at {at:%H:%M}"
    items = (ScoreItem("touches", 10.0 * n, detail),)
    if big:
        items += (ScoreItem("size", 30.0, "1000+ employees"),)
    return Score(10.0 * n + (30.0 if big else 0.0), items, "A" if big else None)


def by_touch_kind(journey: Journey, score: Score, touch: Touch) -> Decision:
    """A touch named after an event sends it."""
    if touch.kind in ("qualify", "hand_off", "win", "lose"):
        return Decision(touch.kind, f"touch {touch.touch_id}")
    return Decision()


def t(n: int, lead: str, at: float, kind: str, **attributes: Any) -> Touch:
    return Touch(f"t{n}", lead, h(at), kind, {}, attributes)


Row = tuple[Any, ...]

# (seq, lead, hours after T0, kind, actor, reason, event, source, target, from_team,
#  to_team, score, touch_id)
EXPECTED_LOG: list[Row] = [
    (0, "L1", 0, "created", "system", "", None, None, "lead", None, "marketing", None, "t1"),
    (1, "L1", 0, "scored", "system", "", None, None, None, None, None, 10.0, "t1"),
    (2, "L1", 1, "scored", "system", "", None, None, None, None, None, 20.0, "t2"),
    (3, "L1", 1, "transition", "policy:by_touch_kind", "touch t2", "qualify", "lead", "mql",
     None, None, None, "t2"),
    (4, "L1", 2, "scored", "system", "", None, None, None, None, None, 60.0, "t3"),
    (5, "L1", 2, "threshold", "system", "", None, None, None, None, None, 60.0, "t3"),
    (6, "L1", 2, "transition", "policy:by_touch_kind", "touch t3", "hand_off", "mql", "sql",
     None, None, None, "t3"),
    (7, "L1", 2, "handoff", "policy:by_touch_kind", "touch t3", None, None, "sql", "marketing",
     "sales", None, "t3"),
    (8, "L1", 3, "scored", "system", "", None, None, None, None, None, 70.0, "t4"),
    (9, "L1", 3, "refused", "policy:by_touch_kind",
     "stage 'sql' waits for the receiving team to accept", "win", "sql", None, None, None, None,
     "t4"),
    (10, "L1", 4, "refused", "mia (marketing)",
     "the journey is owned by 'sales'; only that team may act on it", "accept", "sql", None,
     None, None, None, None),
    (11, "L1", 4, "refused", "sam (sales)", "a rejection needs a reason", "reject", "sql", None,
     None, None, None, None),
    (12, "L1", 5, "accepted", "sam (sales)", "looks good", None, "sql", None, None, "sales", None,
     None),
    (13, "L1", 5, "refused", "sam (sales)", "no handoff is waiting for acceptance", "accept",
     "sql", None, None, None, None, None),
    (14, "L1", 6, "refused", "sam (sales)",
     "event 'recycle' moves the journey backward from 'sql' to 'lead' and needs a reason; "
     "pass reason='...' (e.g. 'bad timing')", "recycle", "sql", None, None, None, None, None),
    (15, "L1", 6, "transition", "sam (sales)", "bad timing", "recycle", "sql", "lead", None,
     None, None, None),
    (16, "L1", 6, "handoff", "sam (sales)", "bad timing", None, None, "lead", "sales",
     "marketing", None, None),
    (17, "L2", 6, "created", "system", "", None, None, "lead", None, "marketing", None, "t5"),
    (18, "L2", 6, "scored", "system", "", None, None, None, None, None, 40.0, "t5"),
    (19, "L2", 6, "threshold", "system", "", None, None, None, None, None, 40.0, "t5"),
    (20, "L2", 6, "transition", "policy:by_touch_kind", "touch t5", "qualify", "lead", "sql",
     None, None, None, "t5"),
    (21, "L2", 6, "handoff", "policy:by_touch_kind", "touch t5", None, None, "sql", "marketing",
     "sales", None, "t5"),
    (22, "L2", 7, "scored", "system", "", None, None, None, None, None, 50.0, "t6"),
    (23, "L2", 8, "rejected", "sam (sales)", "too small", "recycle", "sql", "lead", "sales",
     None, None, None),
    (24, "L2", 8, "transition", "sam (sales)", "too small", "recycle", "sql", "lead", None, None,
     None, None),
    (25, "L2", 8, "handoff", "sam (sales)", "too small", None, None, "lead", "sales", "marketing",
     None, None),
    (26, "L2", 9, "refused", "sam (sales)",
     "the journey is owned by 'marketing'; only that team may act on it", "override", "lead",
     None, None, None, None, None),
    (27, "L9", 9, "refused", "sam (sales)", "no journey exists for this lead", "win", None, None,
     None, None, None, None),
    (28, "L2", 9, "scored", "system", "", None, None, None, None, None, 60.0, "t7"),
    (29, "L2", 9, "refused", "policy:by_touch_kind",
     "event 'win' is not allowed from stage 'lead'; "
     "allowed events there: qualify, lose", "win", "lead", None, None, None, None, "t7"),
    (30, "L1", 10, "transition", "mia (marketing)", "", "qualify", "lead", "sql", None, None,
     None, None),
    (31, "L1", 10, "handoff", "mia (marketing)", "", None, None, "sql", "marketing", "sales",
     None, None),
    (32, "L3", 10, "created", "system", "", None, None, "lead", None, "marketing", None, "t8"),
    (33, "L3", 10, "scored", "system", "", None, None, None, None, None, 10.0, "t8"),
    (34, "L3", 10, "transition", "policy:by_touch_kind", "touch t8", "qualify", "lead", "mql",
     None, None, None, "t8"),
    (35, "L1", 82, "escalation", "system", "in 'sql' since 2024-01-01T19:00:00+00:00, past its SLA",
     None, "sql", None, None, "sales", None, None),
    (36, "L3", 178, "escalation", "system",
     "in 'mql' since 2024-01-01T19:00:00+00:00, past its SLA", None, "mql", None, None,
     "marketing", None, None),
    (37, "L3", 178, "refused", "mia (marketing)", "an override needs a reason", "override", "mql",
     None, None, None, None, None),
    (38, "L3", 178, "override", "mia (marketing)", "fast track", None, "mql", "sql", None, None,
     None, None),
    (39, "L3", 178, "handoff", "mia (marketing)", "fast track", None, None, "sql", "marketing",
     "sales", None, None),
    (40, "L3", 178, "refused", "sam (sales)", "the journey is already in 'sql'", "override", "sql",
     None, None, None, None, None),
]  # fmt: skip

SIZE = ["size", 30.0, "1000+ employees"]
EXPECTED_DATA: dict[int, dict[str, Any]] = {
    0: {"attributes": {"employees": 10}},
    1: {"delta": 10.0, "breakdown": [["touches", 10.0, "L1: 1 at 09:00"]]},
    2: {"delta": 10.0, "breakdown": [["touches", 20.0, "L1: 2 at 10:00"]]},
    4: {"delta": 40.0, "breakdown": [["touches", 30.0, "L1: 3 at 11:00"], SIZE], "grade": "A",
        "attributes": {"employees": 5000}},
    5: {"threshold": 30, "up": True},
    8: {"delta": 10.0, "breakdown": [["touches", 40.0, "L1: 4 at 12:00"], SIZE], "grade": "A"},
    17: {"attributes": {"employees": 2000}},
    18: {"delta": 40.0, "breakdown": [["touches", 10.0, "L2: 1 at 15:00"], SIZE], "grade": "A"},
    19: {"threshold": 30, "up": True},
    22: {"delta": 10.0, "breakdown": [["touches", 20.0, "L2: 2 at 16:00"], SIZE], "grade": "A"},
    28: {"delta": 10.0, "breakdown": [["touches", 30.0, "L2: 3 at 18:00"], SIZE], "grade": "A"},
    33: {"delta": 10.0, "breakdown": [["touches", 10.0, "L3: 1 at 19:00"]]},
    35: {"deadline": "2024-01-04T19:00:00+00:00", "entered": "2024-01-01T19:00:00+00:00"},
    36: {"deadline": "2024-01-08T19:00:00+00:00", "entered": "2024-01-01T19:00:00+00:00"},
}  # fmt: skip

# What each guard saw: (guard, lead, stage, event, attributes, score, hours after T0).
EXPECTED_CONTEXTS: list[Row] = [
    ("is_enterprise", "L1", "lead", "qualify", {"employees": 10}, 20.0, 1),
    ("is_hot", "L1", "lead", "qualify", {"employees": 10}, 20.0, 1),
    ("is_hot", "L1", "mql", "hand_off", {"employees": 5000}, 60.0, 2),
    ("is_enterprise", "L2", "lead", "qualify", {"employees": 2000}, 40.0, 6),
    ("is_enterprise", "L1", "lead", "qualify", {"employees": 5000}, 70.0, 10),
    ("is_enterprise", "L3", "lead", "qualify", {}, 10.0, 10),
    ("is_hot", "L3", "lead", "qualify", {}, 10.0, 10),
]


class Scenario:
    """Three leads through the demo funnel: policy moves, people, refusals and SLAs."""

    def __init__(self, backend: str) -> None:
        self.contexts: list[Row] = []
        self.clock_at_notice: list[tuple[Record, datetime | None]] = []
        self.errors: list[BuyerJourneyError] = []
        self.engine = Engine(
            demo_funnel(),
            hooks=Hooks({"is_enterprise": self.is_enterprise, "is_hot": self.is_hot}),
            scorer=touch_scorer,
            policy=by_touch_kind,
            thresholds=(30,),
            listeners=[self],
            backend=backend,  # type: ignore[arg-type]
        )

    def _saw(self, guard: str, ctx: Context) -> None:
        assert ctx.at is not None
        hours = (ctx.at - T0) / timedelta(hours=1)
        row = (guard, ctx.lead_id, ctx.stage, ctx.event, dict(ctx.attributes), ctx.score, hours)
        self.contexts.append(row)

    def is_enterprise(self, ctx: Context) -> bool:
        self._saw("is_enterprise", ctx)
        return bool(ctx.attributes.get("employees", 0) >= 1000)

    def is_hot(self, ctx: Context) -> bool:
        self._saw("is_hot", ctx)
        return ctx.score >= 50

    def on_record(self, record: Record, journey: Journey | None) -> None:
        self.clock_at_notice.append((record, self.engine.clock))

    def attempt(self, action: str, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(BuyerJourneyError) as info:
            getattr(self.engine, action)(*args, **kwargs)
        self.errors.append(info.value)

    def run(self) -> Scenario:
        e = self.engine
        e.ingest_one(t(1, "L1", 0, "visit", employees=10))
        e.ingest_one(t(2, "L1", 1, "qualify"))
        e.ingest_one(t(3, "L1", 2, "hand_off", employees=5000))
        e.ingest_one(t(4, "L1", 3, "win"))
        self.attempt("accept", "L1", actor=MIA, at=h(4))
        self.attempt("reject", "L1", actor=SAM, at=h(4), reason=" ")
        e.accept("L1", actor=SAM, at=h(5), reason="looks good")
        self.attempt("accept", "L1", actor=SAM, at=h(5))
        self.attempt("send", "L1", "recycle", actor=SAM, at=h(6))
        e.send("L1", "recycle", actor=SAM, at=h(6), reason="bad timing")
        e.ingest_one(t(5, "L2", 6, "qualify", employees=2000))
        e.ingest_one(t(6, "L2", 7, "visit"))
        e.reject("L2", actor=SAM, at=h(8), reason="too small")
        self.attempt("override", "L2", "mql", actor=SAM, at=h(9), reason="")
        self.attempt("send", "L9", "win", actor=SAM, at=h(9))
        e.ingest_one(t(7, "L2", 9, "win"))
        e.send("L1", "qualify", actor=MIA, at=h(10))
        e.ingest_one(t(8, "L3", 10, "qualify"))
        self.escalations = e.advance(h(178))  # exactly the deadline of L3's SLA in mql
        self.attempt("override", "L3", "sql", actor=MIA, at=h(178), reason=" ")
        e.override("L3", "sql", actor=MIA, at=h(178), reason="fast track")
        self.attempt("override", "L3", "sql", actor=SAM, at=h(178), reason="again")
        return self


def row(record: Record) -> Row:
    hours = (record.at - T0) / timedelta(hours=1)
    return (record.seq, record.lead_id, hours, record.kind.value, str(record.actor),
            record.reason, record.event, record.source, record.target, record.from_team,
            record.to_team, record.score, record.touch_id)  # fmt: skip


@pytest.fixture(params=["table", "statemachine"])
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return Scenario(request.param).run()


def test_the_scenario_writes_exactly_this_log(scenario: Scenario) -> None:
    records = scenario.engine.records
    assert [row(r) for r in records] == EXPECTED_LOG
    assert {r.seq: thaw(r.data) for r in records if r.data} == EXPECTED_DATA


def test_guards_see_the_journey_the_event_and_the_time(scenario: Scenario) -> None:
    assert scenario.contexts == EXPECTED_CONTEXTS


def test_advance_returns_the_escalations_dated_at_their_deadlines(scenario: Scenario) -> None:
    assert [row(r) for r in scenario.escalations] == EXPECTED_LOG[35:37]
    assert scenario.engine.clock == h(178)


def test_listeners_never_see_the_clock_behind_a_record(scenario: Scenario) -> None:
    assert len(scenario.clock_at_notice) == len(EXPECTED_LOG)
    for record, clock in scenario.clock_at_notice:
        assert clock is not None
        assert clock >= record.at


def test_refused_actions_raise_with_the_recorded_details(scenario: Scenario) -> None:
    refusals = [
        (type(e).__name__, e.lead_id, e.action, e.actor, e.reason)
        if isinstance(e, ActionRefused)
        else (type(e).__name__, str(e))
        for e in scenario.errors
    ]
    owned_by_sales = "the journey is owned by 'sales'; only that team may act on it"
    owned_by_marketing = "the journey is owned by 'marketing'; only that team may act on it"
    assert refusals == [
        ("ActionRefused", "L1", "accept", MIA, owned_by_sales),
        ("ActionRefused", "L1", "reject", SAM, "a rejection needs a reason"),
        ("ActionRefused", "L1", "accept", SAM, "no handoff is waiting for acceptance"),
        ("ReasonRequired", EXPECTED_LOG[14][5]),
        ("ActionRefused", "L2", "override", SAM, owned_by_marketing),
        ("ActionRefused", "L9", "win", SAM, "no journey exists for this lead"),
        ("ActionRefused", "L3", "override", MIA, "an override needs a reason"),
        ("ActionRefused", "L3", "override", SAM, "the journey is already in 'sql'"),
    ]


def test_the_log_rebuilds_the_live_journeys(scenario: Scenario) -> None:
    engine = scenario.engine
    assert engine.rebuild() == dict(engine.journeys)
    l1 = engine.journey("L1")
    assert (l1.stage, l1.owner, l1.score, l1.grade, l1.escalated) == ("sql", "sales", 70.0, "A",
                                                                      True)  # fmt: skip


def test_a_journey_in_a_gate_refuses_a_person_too() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit", employees=5000))
    engine.send("L1", "qualify", actor=MIA, at=h(1))
    with pytest.raises(ActionRefused) as info:
        engine.send("L1", "win", actor=SAM, at=h(2))
    assert (info.value.lead_id, info.value.action, info.value.actor, info.value.reason) == (
        "L1",
        "win",
        SAM,
        "stage 'sql' waits for the receiving team to accept or reject",
    )
    refused = engine.records[-1]
    assert (refused.kind, refused.actor, refused.event, refused.source, refused.reason) == (
        RecordKind.REFUSED,
        SAM,
        "win",
        "sql",
        "stage 'sql' waits for the receiving team to accept or reject",
    )


# ---------------------------------------------------------------- SLAs


def test_overdue_includes_the_deadline_itself_and_sorts_ties_by_lead() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    for n, (lead, at) in enumerate([("L2", 0), ("L1", 0), ("L0", 1)]):
        engine.ingest_one(t(n, lead, at, "visit"))
        engine.send(lead, "qualify", actor=MIA, at=h(at))  # into mql: a 7-day SLA
    week = timedelta(days=7)
    assert engine.overdue(h(0) + week - timedelta(seconds=1)) == []
    assert engine.overdue(h(0) + week) == [
        Overdue("L1", "mql", "marketing", h(0) + week, timedelta(0)),
        Overdue("L2", "mql", "marketing", h(0) + week, timedelta(0)),
    ]
    assert [(o.lead_id, o.overdue_by) for o in engine.overdue(h(2) + week)] == [
        ("L1", timedelta(hours=2)),
        ("L2", timedelta(hours=2)),
        ("L0", timedelta(hours=1)),
    ]


def test_an_escalation_is_not_repeated_and_not_raised_before_the_deadline() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit"))
    engine.send("L1", "qualify", actor=MIA, at=h(0))
    deadline = h(0) + timedelta(days=7)
    assert engine.advance(deadline - timedelta(seconds=1)) == []
    assert [r.at for r in engine.advance(deadline)] == [deadline]
    assert engine.advance(deadline + timedelta(days=30)) == []
    assert engine.journey("L1").escalated is True


def test_stale_deadlines_do_not_hide_later_ones() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit"))
    engine.ingest_one(t(2, "L2", 0, "visit"))
    engine.send("L1", "qualify", actor=MIA, at=h(0))  # L1 deadline: 7 days
    engine.send("L1", "lose", actor=MIA, at=h(1))  # ... which goes stale here
    engine.send("L2", "qualify", actor=MIA, at=h(2))  # L2 deadline: 7 days + 2 hours
    escalations = engine.advance(h(2) + timedelta(days=7))
    assert [(r.lead_id, r.source) for r in escalations] == [("L2", "mql")]


def test_a_new_visit_to_the_same_stage_gets_a_new_deadline() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit"))
    engine.send("L1", "qualify", actor=MIA, at=h(0))
    engine.override("L1", "lead", actor=MIA, at=h(1), reason="not yet")
    engine.send("L1", "qualify", actor=MIA, at=h(3))  # back in mql, entered 3 hours later
    week = timedelta(days=7)
    assert engine.advance(h(0) + week) == []
    escalations = engine.advance(h(3) + week)
    assert [(r.at, r.data["entered"]) for r in escalations] == [
        (h(3) + week, "2024-01-01T12:00:00+00:00")
    ]


def test_advance_moves_the_clock_even_with_nothing_to_escalate() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    assert engine.clock is None
    assert engine.advance(h(5)) == []
    assert engine.clock == h(5)
    assert engine.advance(h(5)) == []
    assert engine.clock == h(5)


# ---------------------------------------------------------------- ingest


def test_ingest_quarantines_by_default_and_counts_what_landed() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    first, later = t(1, "L1", 1, "visit"), t(2, "L1", 2, "visit")
    early = t(3, "L1", 0, "visit")
    not_a_touch: Any = {"touch_id": "t4"}
    report = engine.ingest([first, first, early, not_a_touch, later])
    assert (report.accepted, report.records) == (2, 3)  # CREATED, SCORED, SCORED
    assert (report.read, report.duplicates, report.late) == (5, 1, 0)  # the repeat: counted
    assert [(q.position, q.touch) for q in report.quarantined] == [
        (2, early),
        (3, not_a_touch),
    ]
    for q in report.quarantined:
        assert isinstance(q.error, InvalidTouch)
        assert q.reason == str(q.error)
    assert [q.error.field for q in report.quarantined] == ["at", "<touch>"]
    assert report == IngestReport(2, 3, report.quarantined, 1, 5)
    assert isinstance(report.quarantined[0], Quarantined)


def test_ingest_can_raise_at_the_first_bad_touch() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    first = t(1, "L1", 1, "visit")
    report = engine.ingest([first, first], errors="raise")  # a repeat is no error
    assert (report.accepted, report.duplicates) == (1, 1)
    with pytest.raises(InvalidTouch) as info:
        engine.ingest([t(2, "L1", 0, "visit"), t(3, "L1", 2, "visit")], errors="raise")
    assert info.value.field == "at"
    assert [r.touch_id for r in engine.records] == ["t1", "t1"]


def test_invalid_touches_are_reported_exactly() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    with pytest.raises(InvalidTouch) as info:
        engine.ingest_one({"lead_id": "L1"})  # type: ignore[arg-type]
    assert (info.value.field, info.value.value) == ("<touch>", {"lead_id": "L1"})
    assert str(info.value) == (
        "touch field '<touch>' must be a buyerjourney.Touch (got {'lead_id': 'L1'} that is a dict)"
    )
    engine.ingest_one(t(1, "L1", 1, "visit"))
    with pytest.raises(InvalidTouch) as info:
        engine.ingest_one(t(1, "L2", 2, "visit"))
    assert (info.value.field, info.value.value) == ("touch_id", "t1")
    assert str(info.value) == (
        "touch field 'touch_id' must be an id not seen before (duplicate) (got 't1' that is a str)"
    )


@pytest.mark.parametrize("what", ["touch", "advance"])
def test_time_going_backwards_is_reported_exactly(what: str) -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 1, "visit"))
    late: Any = (
        (lambda: engine.ingest_one(t(2, "L1", 0, "visit")))
        if what == "touch"
        else (lambda: engine.advance(h(0)))
    )
    error = InvalidTouch if what == "touch" else InvalidAction
    with pytest.raises(error) as info:
        late()
    assert (info.value.field, info.value.value) == ("at", h(0))  # the value as given
    prefix = "touch field 'at'" if what == "touch" else "action 'advance': 'at'"
    assert str(info.value) == (
        f"{prefix} must be a time not before the engine's clock "
        "2024-01-01T10:00:00+00:00; feed the engine in time order "
        "(or allow some lateness: Engine(..., lateness=...)) "
        f"(got {h(0)!r} that is a datetime)"
    )


def test_without_a_scorer_every_score_is_zero() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit", segment="smb"))
    engine.ingest_one(t(2, "L1", 1, "visit", segment="mid"))
    scored = [r for r in engine.records if r.kind is RecordKind.SCORED]
    assert [(r.score, thaw(r.data)) for r in scored] == [
        (0.0, {"delta": 0.0, "breakdown": []}),
        (0.0, {"delta": 0.0, "breakdown": [], "attributes": {"segment": "mid"}}),
    ]
    assert engine.journey("L1").attributes == {"segment": "mid"}


def test_thresholds_are_crossed_at_the_threshold_itself() -> None:
    values = iter([10.0, 30.0, 5.0, 30.0, 40.0, 30.0])

    def scripted(lead: Lead, at: datetime) -> Score:
        return Score(next(values))

    engine = Engine(demo_funnel(), hooks=demo_hooks(), scorer=scripted, thresholds=(30,))
    engine.ingest([t(n, "L1", n, "visit") for n in range(6)])
    crossings = [(r.score, r.touch_id, dict(r.data)) for r in engine.records
                 if r.kind is RecordKind.THRESHOLD]  # fmt: skip
    assert crossings == [
        (30.0, "t1", {"threshold": 30, "up": True}),
        (5.0, "t2", {"threshold": 30, "up": False}),
        (30.0, "t3", {"threshold": 30, "up": True}),
    ]


# ---------------------------------------------------------------- hooks and names


class CallableScorer:
    def __call__(self, lead: Lead, at: datetime) -> Score:
        return Score(1.0)


def test_hook_names_default_to_the_function_or_class_name() -> None:
    plain = Engine(demo_funnel(), hooks=demo_hooks())
    assert (plain.scorer_name, plain.policy_name) == ("scorer", "policy")
    named = Engine(demo_funnel(), hooks=demo_hooks(), scorer=touch_scorer, policy=by_touch_kind)
    assert (named.scorer_name, named.policy_name) == ("touch_scorer", "by_touch_kind")
    instance = Engine(demo_funnel(), hooks=demo_hooks(), scorer=CallableScorer())
    assert instance.scorer_name == "CallableScorer"
    chosen = Engine(demo_funnel(), hooks=demo_hooks(), scorer=touch_scorer, scorer_name="fit",
                    policy=by_touch_kind, policy_name="route")  # fmt: skip
    assert (chosen.scorer_name, chosen.policy_name) == ("fit", "route")


def test_failing_hooks_are_reported_under_their_names() -> None:
    def broken_scorer(lead: Lead, at: datetime) -> Score:
        msg = "no CRM"
        raise ConnectionError(msg)

    def broken_policy(journey: Journey, score: Score, touch: Touch) -> Decision:
        msg = "no rules"
        raise LookupError(msg)

    engine = Engine(demo_funnel(), hooks=demo_hooks(), scorer=broken_scorer)
    with pytest.raises(HookError) as info:
        engine.ingest_one(t(1, "L1", 0, "visit"))
    assert (info.value.hook, info.value.subject) == ("broken_scorer", "t1")
    engine = Engine(demo_funnel(), hooks=demo_hooks(), policy=broken_policy, policy_name="rules")
    with pytest.raises(HookError) as info:
        engine.ingest_one(t(1, "L1", 0, "visit"))
    assert info.value.hook == "rules"
    assert engine.records == ()


def test_engine_keeps_its_registry_and_backend() -> None:
    tiny = Funnel(
        "tiny",
        [
            Stage("a", 1, initial=True, owner="marketing"),
            Stage("b", 2, terminal=True, owner="sales"),
        ],
        [Transition("go", "a", "b")],
    )
    plain = Engine(tiny)
    assert isinstance(plain.hooks, Hooks)
    assert dict(plain.hooks.guards) == {}
    assert plain.backend == "table"
    hooks = demo_hooks()
    engine = Engine(demo_funnel(), hooks=hooks, backend="statemachine")
    assert engine.hooks is hooks
    assert engine.backend == "statemachine"


# ---------------------------------------------------------------- refusals of each action

ACTIONS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "qualify": (("send", "qualify"), {}),
    "accept": (("accept",), {}),
    "reject": (("reject",), {"reason": "too small"}),
    "override": (("override",), {"stage": "mql", "reason": "fast track"}),
}


def act(engine: Engine, action: str, lead: str, actor: Actor, at: datetime) -> None:
    (method, *event), kwargs = ACTIONS[action]
    if method == "override":
        engine.override(lead, kwargs["stage"], actor=actor, at=at, reason=kwargs["reason"])
    else:
        getattr(engine, method)(lead, *event, actor=actor, at=at, **kwargs)


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_on_an_unknown_lead_is_refused_and_recorded(action: str) -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    with pytest.raises(ActionRefused) as info:
        act(engine, action, "L9", MIA, h(1))
    error = info.value
    assert (error.lead_id, error.action, error.actor, error.reason) == (
        "L9",
        action,
        MIA,
        "no journey exists for this lead",
    )
    (record,) = engine.records
    assert row(record) == (0, "L9", 1, "refused", "mia (marketing)",
                           "no journey exists for this lead", action, None, None, None, None,
                           None, None)  # fmt: skip


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_by_another_team_is_refused_and_recorded(action: str) -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit"))
    with pytest.raises(ActionRefused) as info:
        act(engine, action, "L1", SAM, h(1))
    reason = "the journey is owned by 'marketing'; only that team may act on it"
    assert (info.value.action, info.value.actor, info.value.reason) == (action, SAM, reason)
    assert row(engine.records[-1]) == (2, "L1", 1, "refused", "sam (sales)", reason, action,
                                       "lead", None, None, None, None, None)  # fmt: skip


@pytest.mark.parametrize("action", ["accept", "reject"])
def test_nothing_to_accept_or_reject_is_refused_and_recorded(action: str) -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit"))
    with pytest.raises(ActionRefused) as info:
        act(engine, action, "L1", MIA, h(1))
    reason = "no handoff is waiting for acceptance"
    assert (info.value.lead_id, info.value.action, info.value.actor, info.value.reason) == (
        "L1",
        action,
        MIA,
        reason,
    )
    assert row(engine.records[-1]) == (2, "L1", 1, "refused", "mia (marketing)", reason,
                                       action, "lead", None, None, None, None, None)  # fmt: skip


def test_an_acceptance_without_a_reason_records_an_empty_reason() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest_one(t(1, "L1", 0, "visit", employees=5000))
    engine.send("L1", "qualify", actor=MIA, at=h(1))
    engine.accept("L1", actor=SAM, at=h(2))
    assert row(engine.records[-1]) == (
        4, "L1", 2, "accepted", "sam (sales)", "", None, "sql", None, None, "sales", None, None
    )  # fmt: skip


# ---------------------------------------------------------------- what the hooks see


def test_a_backward_policy_decision_carries_its_reason() -> None:
    def cool_down(journey: Journey, score: Score, touch: Touch) -> Decision:
        if touch.kind == "unsubscribe":
            return Decision("recycle", "went cold")
        return Decision("qualify", "engaged") if journey.stage == "lead" else Decision()

    def hot(lead: Lead, at: datetime) -> Score:
        return Score(60.0)

    engine = Engine(demo_funnel(), hooks=demo_hooks(), scorer=hot, policy=cool_down)
    engine.ingest_one(t(1, "L1", 0, "visit"))
    assert engine.journey("L1").stage == "mql"
    engine.ingest_one(t(2, "L1", 1, "unsubscribe"))
    moved = engine.records[-1]
    assert (moved.kind, moved.event, moved.source, moved.target, moved.reason) == (
        RecordKind.TRANSITION,
        "recycle",
        "mql",
        "lead",
        "went cold",
    )


def test_the_scorer_sees_the_whole_touch_history_in_order() -> None:
    histories: list[list[str]] = []

    def spy(lead: Lead, at: datetime) -> Score:
        histories.append([f"{x.touch_id}:{x.kind}" for x in lead.touches])
        return Score(0.0)

    engine = Engine(demo_funnel(), hooks=demo_hooks(), scorer=spy)
    engine.ingest([t(1, "L1", 0, "visit"), t(2, "L2", 1, "click"), t(3, "L1", 2, "demo")])
    assert histories == [["t1:visit"], ["t2:click"], ["t1:visit", "t3:demo"]]


def test_the_first_owner_is_routed_by_the_first_touch_attributes() -> None:
    rules = OwnerRules.for_funnel(
        demo_funnel(),
        overrides=(OwnerRule("sales", ("lead",), (Condition("segment", ("enterprise",)),)),),
    )
    engine = Engine(demo_funnel(), hooks=demo_hooks(), owners=rules)
    engine.ingest_one(t(1, "L1", 0, "visit", segment="enterprise"))
    engine.ingest_one(t(2, "L2", 0, "visit", segment="smb"))
    assert [(r.lead_id, r.to_team) for r in engine.records if r.kind is RecordKind.CREATED] == [
        ("L1", "sales"),
        ("L2", "marketing"),
    ]


def test_a_second_ingest_reports_only_its_own_records() -> None:
    engine = Engine(demo_funnel(), hooks=demo_hooks())
    engine.ingest([t(1, "L1", 0, "visit"), t(2, "L2", 0, "visit")])
    report = engine.ingest([t(3, "L1", 1, "visit")])
    assert (report.accepted, report.records, report.quarantined) == (1, 1, ())
    assert len(engine.records) == 5
