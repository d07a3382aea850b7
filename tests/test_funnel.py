"""Funnel definitions: value objects, whole-definition validation, extension, presets."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import presets
from buyerjourney._core.funnel import (
    RESERVED_NAMES,
    Direction,
    Funnel,
    Stage,
    StageKind,
    Transition,
    find_problems,
)
from buyerjourney._core.machine import build_machine_class
from buyerjourney.errors import InvalidFunnel, UnknownPreset, UnknownStage
from buyerjourney.testing.strategies import funnels, standard_hooks

FWD, BACK, EXIT = Direction.FORWARD, Direction.BACKWARD, Direction.EXIT


def small() -> Funnel:
    return Funnel(
        "small",
        [
            Stage("a", 10, initial=True, owner="marketing"),
            Stage("b", 20, owner="sales", sla=timedelta(days=1)),
            Stage("won", 30, StageKind.WON, terminal=True, owner="sales"),
            Stage("lost", 0, StageKind.LOST, owner="sales"),
        ],
        [
            Transition("go", "a", "b"),
            Transition("win", "b", "won"),
            Transition("back", "b", "a", BACK),
            Transition("lose", "a", "lost", EXIT),
            Transition("lose", "b", "lost", EXIT),
        ],
    )


def codes(stages: list[Stage], transitions: list[Transition]) -> list[str]:
    return sorted(p.code for p in find_problems(stages, transitions))


def test_a_valid_funnel_and_its_lookups() -> None:
    funnel = small()
    assert funnel.initial.name == "a"
    assert funnel.stage_names == ("a", "b", "won", "lost")
    assert funnel.events == ("go", "win", "back", "lose")
    assert funnel.allowed_events("b") == ("win", "back", "lose")
    assert [s.name for s in funnel.success_path] == ["a", "b", "won"]
    assert funnel.owners["b"] == "sales"
    assert funnel.stage("lost").terminal
    assert "b" in funnel
    assert "z" not in funnel
    assert funnel.transitions_from("won") == ()


def test_unknown_stage_lookups_are_typed_and_helpful() -> None:
    with pytest.raises(UnknownStage) as info:
        small().stage("c")
    assert isinstance(info.value, KeyError)
    assert info.value.known == ("a", "b", "won", "lost")
    assert "'c' is not a stage of funnel 'small'" in str(info.value)
    with pytest.raises(UnknownStage):
        small().transitions_from("c")


def test_stage_and_transition_field_types_are_checked() -> None:
    with pytest.raises(TypeError, match="'rank' must be an int"):
        Stage("a", "10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'rank' must be an int"):
        Stage("a", True)
    with pytest.raises(ValueError, match=r"positive datetime\.timedelta"):
        Stage("a", 1, sla=timedelta(0))
    with pytest.raises(ValueError, match=r"'direction' must be one of forward, backward, exit"):
        Transition("e", "a", "b", "sideways")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'stages\[1\]' must be a Stage"):
        Funnel("f", [Stage("a", 1, initial=True), "b"], [])  # type: ignore[list-item]
    assert Stage("x", 1, "won").kind is StageKind.WON
    assert Transition("e", "a", "b", "exit").direction is EXIT


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidFunnel) as info:
        Funnel(
            "broken",
            [
                Stage("a", 10, initial=True),
                Stage("a", 11),
                Stage("send", 20),
                Stage("c", 30, initial=True),
                Stage("orphan", 40, terminal=True),
                Stage("lost", 0, StageKind.LOST),
            ],
            [
                Transition("go", "a", "ghost"),
                Transition("a", "a", "c"),
                Transition("lose", "lost", "a", BACK),
            ],
        )
    found = sorted({p.code for p in info.value.problems})
    assert found == [
        "backward-not-backward",
        "dead-end",
        "duplicate-stage",
        "event-is-stage-name",
        "exit-from-terminal",
        "reserved-stage-name",
        "several-initial-stages",
        "unknown-stage",
    ]
    assert info.value.funnel_name == "broken"
    assert str(info.value).startswith("funnel 'broken' has ")
    assert "Fix each one" in str(info.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"stages": []}, ["no-stages"]),
        ({"initial": False}, ["no-initial-stage"]),
        ({"extra_stage": Stage("island", 50)}, ["dead-end", "unreachable-stage"]),
        (
            {"extra_stage": Stage("9lives", 50, terminal=True)},
            ["invalid-stage-name", "unreachable-stage"],
        ),
        (
            {"extra_stage": Stage("_x", 50, terminal=True)},
            ["invalid-stage-name", "unreachable-stage"],
        ),
        (
            {"extra_stage": Stage("class", 50, terminal=True)},
            ["invalid-stage-name", "unreachable-stage"],
        ),
        (
            {"extra_stage": Stage("stage", 50, terminal=True)},
            ["reserved-stage-name", "unreachable-stage"],
        ),
        (
            {"extra_stage": Stage("d", 50, terminal=True, sla=timedelta(1))},
            ["sla-on-terminal", "unreachable-stage"],
        ),
        ({"extra_stage": Stage("d", -1, terminal=True)}, ["negative-rank", "unreachable-stage"]),
        (
            {"extra_stage": Stage("d", 5, owner="two words", terminal=True)},
            ["invalid-owner", "unreachable-stage"],
        ),
        ({"extra": Transition("go", "a", "won")}, ["ambiguous-event"]),
        ({"append": Transition("go", "a", "lost", EXIT, guard="g")}, ["shadowed-transition"]),
        ({"extra": Transition("go", "a", "b")}, ["duplicate-transition"]),
        ({"extra": Transition("win", "a", "a")}, ["self-transition"]),
        ({"extra": Transition("drop", "a", "b", EXIT)}, ["exit-to-open-stage"]),
        ({"extra": Transition("drop", "b", "lost")}, ["unmarked-exit"]),
        ({"extra": Transition("skip", "b", "a")}, ["forward-not-forward"]),
        ({"extra": Transition("skip", "a", "won", BACK)}, ["backward-not-backward"]),
        ({"extra": Transition("to", "a", "won")}, ["reserved-event-name"]),
        ({"extra": Transition("e", "a", "won", guard="")}, ["invalid-guard"]),
    ],
)
def test_each_rule(change: dict[str, object], expected: list[str]) -> None:
    base = small()
    stages = list(base.stages)
    transitions = list(base.transitions)
    if "stages" in change:
        stages, transitions = [], []
    if change.get("initial") is False:
        stages[0] = attrs.evolve(stages[0], initial=False)
    if "extra_stage" in change:
        stages.append(change["extra_stage"])  # type: ignore[arg-type]
    if "extra" in change:
        transitions.insert(0, change["extra"])  # type: ignore[arg-type]
    if "append" in change:
        transitions.append(change["append"])  # type: ignore[arg-type]
    assert codes(stages, transitions) == expected


def test_guards_tell_alternatives_apart() -> None:
    base = small()
    funnel = base.extend(
        remove_transitions=["go"],
        add_transitions=[
            Transition("go", "a", "won", guard="is_enterprise"),
            Transition("go", "a", "b"),
        ],
    )
    assert [t.guard for t in funnel.transitions_from("a") if t.event == "go"] == [
        "is_enterprise",
        None,
    ]
    assert funnel.guards == ("is_enterprise",)
    stages, transitions = (
        list(funnel.stages),
        [
            *funnel.transitions,
            Transition("go", "a", "lost", EXIT, guard="is_enterprise"),
        ],
    )
    assert "ambiguous-event" in codes(stages, transitions)


def test_gates_need_a_recycle_and_cannot_start_or_end() -> None:
    base = small()
    gated = base.extend(replace_stages=[attrs.evolve(base.stage("b"), gate=True)])
    assert gated.stage("b").gate
    assert codes(
        [attrs.evolve(s, gate=s.name == "b") for s in base.stages],
        [t for t in base.transitions if t.event != "back"],
    ) == ["gate-without-recycle"]
    assert "invalid-gate" in codes(
        [attrs.evolve(s, gate=s.name == "a") for s in base.stages], list(base.transitions)
    )


def test_extend_adds_replaces_and_removes_in_one_validated_step() -> None:
    base = small()
    bigger = base.extend(
        name="bigger",
        description="with a trial",
        add_stages=[Stage("trial", 25, owner="sales")],
        replace_stages=[attrs.evolve(base.stage("b"), description="warm")],
        add_transitions=[
            Transition("start_trial", "b", "trial"),
            Transition("buy", "trial", "won"),
        ],
        replace_transitions=[Transition("win", "b", "won", description="closed")],
    )
    assert bigger.name == "bigger"
    assert bigger.description == "with a trial"
    assert bigger.stage("b").description == "warm"
    assert bigger.stage_names.index("b") == 1  # replaced in place
    assert next(t for t in bigger.transitions if t.event == "win").description == "closed"
    assert "trial" not in base
    smaller = bigger.extend(remove_stages=["trial"], remove_transitions=["back"])
    assert "trial" not in smaller
    assert "back" not in smaller.events
    assert all("trial" not in (t.source, t.target) for t in smaller.transitions)
    exact = base.extend(remove_transitions=[Transition("lose", "a", "lost", EXIT)])
    assert exact.allowed_events("a") == ("go",)


def test_extend_reports_unknown_names_with_the_resulting_problems() -> None:
    with pytest.raises(InvalidFunnel) as info:
        small().extend(
            remove_stages=["nope"],
            remove_transitions=["ghost", Transition("x", "a", "b")],
            replace_transitions=[Transition("fly", "a", "b")],
            add_stages=[Stage("d", 50)],
        )
    found = [p.code for p in info.value.problems]
    assert found.count("unknown-stage") == 1
    assert found.count("unknown-transition") == 3
    assert "unreachable-stage" in found


@given(funnels(), st.data())
def test_extension_never_mutates_the_original(funnel: Funnel, data: st.DataObject) -> None:
    snapshot = (funnel.stages, funnel.transitions, funnel.name)
    victim = data.draw(st.sampled_from([s.name for s in funnel.stages if not s.initial] or [""]))
    with contextlib.suppress(InvalidFunnel):
        funnel.extend(
            name="derived",
            add_stages=[Stage("extra", 1000, terminal=True)],
            add_transitions=[Transition("jump", funnel.initial.name, "extra")],
            remove_stages=[victim] if victim else [],
        )
    assert (funnel.stages, funnel.transitions, funnel.name) == snapshot
    assert find_problems(funnel.stages, funnel.transitions) == []


@given(funnels())
def test_a_validated_funnel_always_builds_a_machine_class(funnel: Funnel) -> None:
    cls = build_machine_class(funnel, standard_hooks())
    assert {s.id for s in cls.states} == set(funnel.stage_names)


def test_reserved_names_cover_the_machine_api() -> None:
    assert {"send", "model", "current_state", "stage", "funnel", "legal_events"} <= RESERVED_NAMES


@pytest.mark.parametrize("name", presets.names())
def test_presets_are_valid_owned_and_fresh(name: str) -> None:
    funnel = presets.get(name)
    assert funnel.name == name
    assert all(stage.owner in ("marketing", "sales") for stage in funnel.stages)
    assert presets.get(name) == funnel
    assert presets.get(name) is not funnel
    assert funnel.description


def test_preset_shapes() -> None:
    seed = presets.seed()
    assert [s.name for s in seed.success_path] == [
        "awareness", "consideration", "conversion", "retention", "advocacy",
    ]  # fmt: skip
    nurture = next(t for t in seed.transitions if t.event == "nurture")
    assert (nurture.source, nurture.target, nurture.direction) == (
        "consideration", "awareness", BACK,
    )  # fmt: skip
    hubspot = presets.hubspot_lifecycle()
    assert [s.name for s in hubspot.success_path] == [
        "subscriber", "lead", "mql", "sql", "opportunity", "customer", "evangelist",
    ]  # fmt: skip
    assert hubspot.stage("other").kind is StageKind.DISQUALIFIED
    waterfall = presets.demand_waterfall()
    assert waterfall.stage("sal").gate
    assert waterfall.stage("sal").sla == timedelta(hours=72)
    recycle = next(t for t in waterfall.transitions_from("sal") if t.direction is BACK)
    assert recycle.target == "inquiry"
    assert waterfall.stage("mql").owner == "marketing"
    assert waterfall.stage("sal").owner == "sales"


def test_unknown_preset() -> None:
    with pytest.raises(UnknownPreset) as info:
        presets.get("salesforce")
    assert isinstance(info.value, KeyError)
    assert "choose one of seed, hubspot, waterfall" in str(info.value)


# ---------------------------------------------------------------- messages that used to mislead


def test_a_team_given_as_the_kind_suggests_owner() -> None:
    """``Stage("trial", 25, "sales")`` used to say only "'sales' is not a valid StageKind"."""
    with pytest.raises(ValueError, match="'kind' must be one of") as info:
        Stage("trial", 25, "sales")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(
        "'kind' must be one of open, won, lost, disqualified, after_purchase (got 'sales')"
    )
    assert "pass it as owner='sales'" in message
    with pytest.raises(ValueError, match="pass it as owner='customer_success'"):
        Stage("retention", 40, "customer_success")  # type: ignore[arg-type]


def test_a_misspelt_kind_suggests_the_kind() -> None:
    with pytest.raises(ValueError, match=r"\(got 'wonn'\); did you mean 'won'\?$"):
        Stage("done", 40, "wonn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="did you mean 'backward'"):
        Transition("e", "a", "b", "backwards")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass it as guard='is_hot'"):
        Transition("e", "a", "b", "is_hot")  # type: ignore[arg-type]


def test_a_renamed_extension_does_not_claim_the_preset_description() -> None:
    """extend(name=...) used to keep "The seed funnel: ..." silently."""
    seed = presets.seed()
    assert seed.description
    assert seed.extend(name="ours").description == ""
    assert seed.extend(name="ours", description="Ours.").description == "Ours."
    kept = seed.extend(name="ours", description=seed.description)
    assert kept.description == seed.description
    assert seed.extend(name="seed").description == seed.description  # same name: kept
    lost = attrs.evolve(seed.stage("lost"), description="Gone.")
    assert seed.extend(replace_stages=[lost]).description == seed.description


def test_bypasses_gate_is_a_keyword_only_bool() -> None:
    assert not Transition("e", "a", "b").bypasses_gate
    assert Transition("e", "a", "b", bypasses_gate=True).bypasses_gate
    with pytest.raises(TypeError, match="bypasses_gate"):
        Transition("e", "a", "b", bypasses_gate="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Transition("e", "a", "b", Direction.FORWARD, None, "", True)  # type: ignore[misc]
