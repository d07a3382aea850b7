"""Invariants of the engine over random funnels, owner rules, touches and actions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from buyerjourney.engine import Engine
from buyerjourney.errors import BuyerJourneyError
from buyerjourney.events import Actor, RecordKind, Touch
from buyerjourney.funnel import Funnel
from buyerjourney.journey import Journey, apply
from buyerjourney.owners import OwnerRules
from buyerjourney.policies import Decision
from buyerjourney.scoring import Lead, Score, ScoreItem
from buyerjourney.testing.strategies import funnels, standard_hooks

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
LEADS = ("L0", "L1", "L2")


def scorer(lead: Lead, at: datetime) -> Score:
    n = len(lead.touches)
    return Score(10.0 * n, (ScoreItem("touches", 10.0 * n),))


def policy(journey: Journey, score: Score, touch: Touch) -> Decision:
    """A touch whose kind is an event name sends that event."""
    return Decision(touch.kind, "touch") if touch.kind.startswith("e") else Decision()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Funnel, OwnerRules, list[tuple[Any, ...]]]:
    funnel = draw(funnels(max_stages=6))
    solo = draw(st.booleans())
    defaults = {s.name: s.owner or "marketing" for s in funnel.stages}
    owners = (
        OwnerRules.solo(
            funnel.extend(
                replace_stages=[attrs.evolve(s, owner=defaults[s.name]) for s in funnel.stages]
            ),
            "founder",
        )
        if solo
        else OwnerRules.for_funnel(funnel, defaults=defaults)
    )
    teams = [*owners.teams, None]
    people = ["founder", "pat"]
    events = [*funnel.events, "no_such_event"]
    lead = st.sampled_from(LEADS)
    actor = st.builds(Actor, st.sampled_from(people), st.sampled_from(teams))
    reason = st.sampled_from(["", "because"])
    op = st.one_of(
        st.tuples(
            st.just("touch"),
            lead,
            st.sampled_from([*funnel.events, "page_view"]),
            st.sampled_from([0, 50, 5000]),
        ),
        st.tuples(st.just("send"), lead, st.sampled_from(events), actor, reason),
        st.tuples(st.just("accept"), lead, actor),
        st.tuples(st.just("reject"), lead, actor, reason),
        st.tuples(st.just("override"), lead, st.sampled_from(funnel.stage_names), actor, reason),
        st.tuples(st.just("advance")),
    )
    steps = draw(st.lists(st.tuples(st.integers(0, 80), op), max_size=25))
    return funnel, owners, steps


def run(
    funnel: Funnel,
    owners: OwnerRules,
    steps: list[tuple[Any, ...]],
    *,
    backend: str = "table",
    check: bool = False,
) -> Engine:
    engine = Engine(
        funnel,
        hooks=standard_hooks(),
        owners=owners,
        scorer=scorer,
        policy=policy,
        thresholds=(10, 50),
        backend=backend,
    )  # type: ignore[arg-type]
    at = T0
    for n, (gap, op) in enumerate(steps):
        at += timedelta(hours=gap)
        if check:
            # let time pass first (SLA escalations), so the op's own effect is isolated
            engine.advance(at)
        before_journeys = dict(engine.journeys)
        before_records = len(engine.records)
        refused = False
        try:
            _do(engine, n, at, op)
        except BuyerJourneyError:
            refused = True
        if check:
            new = engine.records[before_records:]
            if refused:
                # a refused action changes nothing, and is recorded as refused
                assert dict(engine.journeys) == before_journeys
                assert [r.kind for r in new] in ([RecordKind.REFUSED], [])
            check_invariants(engine, before_journeys)
    return engine


def _do(engine: Engine, n: int, at: datetime, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "touch":
        _, lead, touch_kind, employees = op
        engine.ingest_one(Touch(f"t{n}", lead, at, touch_kind, {}, {"employees": employees}))
    elif kind == "send":
        _, lead, event, actor, reason = op
        engine.send(lead, event, actor=actor, at=at, reason=reason or None)
    elif kind == "accept":
        engine.accept(op[1], actor=op[2], at=at)
    elif kind == "reject":
        engine.reject(op[1], actor=op[2], at=at, reason=op[3])
    elif kind == "override":
        engine.override(op[1], op[2], actor=op[3], at=at, reason=op[4])
    else:
        engine.advance(at)


def check_invariants(engine: Engine, before: dict[str, Journey]) -> None:
    funnel = engine.funnel
    legal = {(t.source, t.event, t.target) for t in funnel.transitions}
    records = engine.records
    for record in records:
        if record.kind is RecordKind.TRANSITION:
            # never an illegal transition
            assert (record.source, record.event, record.target) in legal
    # a handoff if and only if the owner changes
    journeys: dict[str, Journey] = {}
    for i, record in enumerate(records):
        current = journeys.get(record.lead_id)
        if current is None and record.kind is RecordKind.REFUSED:
            continue
        after = apply(funnel, current, record)
        if record.kind in (RecordKind.TRANSITION, RecordKind.OVERRIDE):
            following = records[i + 1] if i + 1 < len(records) else None
            changes = engine.owners.owner(after.stage, after.attributes) != after.owner
            is_handoff = (
                following is not None
                and following.kind is RecordKind.HANDOFF
                and following.lead_id == record.lead_id
            )
            assert changes == is_handoff
        if record.kind is RecordKind.HANDOFF:
            assert record.from_team != record.to_team
        if current is not None:
            # the highest stage never goes down
            assert funnel.stage(after.highest).rank >= funnel.stage(current.highest).rank
        journeys[record.lead_id] = after
    for journey in engine.journeys.values():
        # exactly one owner, a known team
        assert journey.owner in engine.owners.teams
        assert not funnel.stage(journey.highest).kind.is_exit
    for lead, old in before.items():
        assert funnel.stage(engine.journey(lead).highest).rank >= funnel.stage(old.highest).rank
    # rebuilding from the records equals the live state
    assert engine.rebuild() == dict(engine.journeys)


@settings(max_examples=150)
@given(scenarios())
def test_invariants_hold_after_every_step(case: tuple[Funnel, OwnerRules, list[Any]]) -> None:
    run(*case, check=True)


@settings(max_examples=60)
@given(scenarios())
def test_same_input_same_output_and_backends_agree(
    case: tuple[Funnel, OwnerRules, list[Any]],
) -> None:
    first = run(*case).records
    assert run(*case).records == first
    assert run(*case, backend="statemachine").records == first
