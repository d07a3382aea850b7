"""Acceptance follows the handoff: whoever receives a lead accepts it, wherever that happens.

Regression: with an owner rule handing enterprise leads to sales at MQL, the
handoff had no acceptance step, and SAL then waited for sales to accept its
own lead.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from buyerjourney import (
    ActionRefused,
    Actor,
    Condition,
    Engine,
    Funnel,
    OwnerRule,
    OwnerRules,
    RecordKind,
    Stage,
    Touch,
    Transition,
    dumps_funnel,
    loads_funnel,
    presets,
)

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
MIA = Actor("mia", "marketing")
SAM = Actor("sam", "sales")
BIG = {"employees": 5000}


def _engine(acceptance: str) -> Engine:
    funnel = presets.demand_waterfall().extend(acceptance=acceptance)  # type: ignore[arg-type]
    owners = OwnerRules.for_funnel(
        funnel,
        overrides=[
            OwnerRule("sales", stages=("mql",), when=(Condition("employees", (1000,), op="gte"),))
        ],
    )
    engine = Engine(funnel, owners=owners)
    engine.ingest([Touch("t1", "acme", T0, "form_submit", attributes=BIG)])
    engine.send("acme", "qualify", actor=MIA, at=T0 + timedelta(hours=1))  # to sales at MQL
    return engine


def test_by_default_the_gate_waits_even_for_the_team_that_already_owns_the_lead() -> None:
    engine = _engine("stage")
    assert engine.journey("acme").owner == "sales"
    assert not engine.journey("acme").pending_acceptance  # the handoff at MQL waits for no one
    engine.send("acme", "hand_off", actor=SAM, at=T0 + timedelta(hours=2))
    assert engine.journey("acme").pending_acceptance  # SAL waits for sales to accept its own lead


def test_with_acceptance_after_handoff_the_receiver_accepts_where_it_receives() -> None:
    engine = _engine("handoff")
    journey = engine.journey("acme")
    assert (journey.stage, journey.owner, journey.pending_acceptance) == ("mql", "sales", True)
    with pytest.raises(ActionRefused, match="waits for the receiving team"):
        engine.send("acme", "hand_off", actor=SAM, at=T0 + timedelta(hours=2))
    engine.accept("acme", actor=SAM, at=T0 + timedelta(hours=2))
    engine.send("acme", "hand_off", actor=SAM, at=T0 + timedelta(hours=3))
    journey = engine.journey("acme")
    assert (journey.stage, journey.pending_acceptance) == ("sal", False)  # no second wait
    kinds = [r.kind for r in engine.records]
    assert kinds.count(RecordKind.HANDOFF) == 1
    assert kinds.count(RecordKind.ACCEPTED) == 1
    assert engine.rebuild() == dict(engine.journeys)


def test_a_rejection_recycles_along_the_stage_s_backward_transition_or_is_refused() -> None:
    engine = _engine("handoff")
    engine.reject("acme", actor=SAM, at=T0 + timedelta(hours=2), reason="not now")
    journey = engine.journey("acme")
    assert (journey.stage, journey.owner, journey.pending_acceptance) == (
        "inquiry",
        "marketing",
        True,  # handed back to marketing, which accepts it in its turn
    )
    funnel = Funnel(
        "short",
        [
            Stage("a", 10, owner="marketing", initial=True),
            Stage("b", 20, owner="sales"),
            Stage("c", 30, kind="won", owner="sales", terminal=True),
        ],
        [Transition("go", "a", "b"), Transition("win", "b", "c")],
        acceptance="handoff",
    )
    short = Engine(funnel)
    short.ingest([Touch("t1", "x", T0, "visit")])
    short.send("x", "go", actor=MIA, at=T0)
    with pytest.raises(ActionRefused, match="no backward transition"):
        short.reject("x", actor=SAM, at=T0 + timedelta(hours=1), reason="no")
    short.accept("x", actor=SAM, at=T0 + timedelta(hours=1))
    assert not short.journey("x").pending_acceptance


def test_the_bulk_path_leaves_handoff_acceptance_to_the_engine() -> None:
    pytest.importorskip("numpy")
    from buyerjourney import default_pipeline  # noqa: PLC0415
    from buyerjourney.bulk import plan  # noqa: PLC0415

    funnel = presets.demand_waterfall().extend(acceptance="handoff")
    chosen = plan(default_pipeline(funnel))
    assert chosen.mode == "reference"
    assert any("acceptance is 'handoff'" in reason for reason in chosen.reasons)


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_the_acceptance_mode_is_kept_in_funnel_files(fmt: str) -> None:
    funnel = presets.demand_waterfall().extend(acceptance="handoff")
    text = dumps_funnel(funnel, format=fmt)  # type: ignore[arg-type]
    assert "acceptance" in text
    assert loads_funnel(text, format=fmt) == funnel  # type: ignore[arg-type]
    assert "acceptance" not in dumps_funnel(presets.seed(), format=fmt)  # type: ignore[arg-type]


def test_the_verifier_checks_both_forms() -> None:
    from buyerjourney._checks import verify_structure  # noqa: PLC0415

    funnel = presets.demand_waterfall()
    owners = OwnerRules.for_funnel(
        funnel,
        overrides=[
            OwnerRule("sales", stages=("mql",), when=(Condition("employees", (1000,), op="gte"),))
        ],
    )
    staged = verify_structure(funnel, owners, attributes=[BIG, {}])
    assert "gate-no-handoff" in staged.codes
    assert "acceptance='handoff'" in staged.by_code("gate-no-handoff")[0].what
    follows = funnel.extend(acceptance="handoff")
    handed = verify_structure(
        follows,
        OwnerRules.for_funnel(follows, overrides=owners.overrides),
        attributes=[BIG, {}],
    )
    assert "gate-no-handoff" not in handed.codes
    assert "gate-bypass" not in handed.codes
    short = Funnel(
        "short",
        [
            Stage("a", 10, owner="marketing", initial=True),
            Stage("b", 20, owner="sales"),
            Stage("c", 30, kind="won", owner="sales", terminal=True),
        ],
        [Transition("go", "a", "b"), Transition("win", "b", "c")],
        acceptance="handoff",
    )
    assert "handoff-without-recycle" in verify_structure(short).codes
