"""The compiled transition table: layout, the step rules and every error path."""

from __future__ import annotations

import pytest

from buyerjourney import (
    Context,
    Funnel,
    HookError,
    Hooks,
    ReasonRequired,
    Stage,
    Transition,
    TransitionNotAllowed,
    UnknownHook,
    UnknownStage,
    presets,
)
from buyerjourney._core.table import CompiledFunnel, compile_funnel
from sample_funnels import COLD, ENTERPRISE, HOT, demo_funnel, demo_hooks, raising_hooks


@pytest.fixture
def table() -> CompiledFunnel:
    return compile_funnel(demo_funnel(), demo_hooks())


def test_layout(table: CompiledFunnel) -> None:
    funnel = table.funnel
    assert table.stage_names == ("lead", "mql", "sql", "won", "lost")
    assert table.event_names == ("qualify", "hand_off", "recycle", "win", "lose")
    assert dict(table.stage_index) == {n: i for i, n in enumerate(table.stage_names)}
    assert dict(table.event_index) == {n: i for i, n in enumerate(table.event_names)}
    assert table.transitions == funnel.transitions
    assert table.initial_index == 0
    candidates = table.table[(0, 0)]  # lead, qualify
    assert [c[0] for c in candidates] == [0, 1, 2]
    assert [c[1] for c in candidates] == [2, 1, 1]
    assert candidates[0][2] is not None
    assert candidates[2][2] is None
    assert not any(c[3] for c in candidates)
    assert table.table[(2, 2)] == ((4, 0, None, True),)  # sql, recycle: backward, unguarded
    assert (3, 0) not in table.table  # nothing leaves the terminal stage
    for i, t in enumerate(table.transitions):
        assert table.stage_names[table.target_of(i)] == t.target
    assert "demo" in repr(table)


def test_compiled_funnel_is_slotted(table: CompiledFunnel) -> None:
    assert not hasattr(table, "__dict__")
    assert CompiledFunnel(demo_funnel(), demo_hooks()).table.keys() == table.table.keys()


def test_step_returns_the_transition_taken(table: CompiledFunnel) -> None:
    t = table.step("lead", "qualify", ENTERPRISE)
    assert (t.source, t.target, t.guard) == ("lead", "sql", "is_enterprise")
    assert table.step("lead", "qualify", HOT).guard == "is_hot"
    assert table.step("lead", "qualify", COLD).guard is None
    assert table.step("sql", "win").target == "won"


def test_step_index_matches_step(table: CompiledFunnel) -> None:
    s, e = table.stage_index["lead"], table.event_index["qualify"]
    idx = table.step_index(s, e, HOT)
    assert table.transitions[idx] == table.step("lead", "qualify", HOT)
    assert table.stage_names[table.target_of(idx)] == "mql"


def test_guards_are_called_lazily_in_declaration_order() -> None:
    calls: list[str] = []
    table = compile_funnel(demo_funnel(), demo_hooks(calls))
    table.step("lead", "qualify", ENTERPRISE)
    assert calls == ["is_enterprise"]
    calls.clear()
    table.step("lead", "qualify", COLD)
    assert calls == ["is_enterprise", "is_hot"]
    calls.clear()
    table.step("sql", "win", COLD)
    assert calls == []


def test_guard_sees_a_default_context_when_none_is_given() -> None:
    seen: list[Context] = []

    def spy(ctx: Context) -> bool:
        seen.append(ctx)
        return False

    hooks = Hooks({"is_enterprise": spy, "is_hot": spy})
    compile_funnel(demo_funnel(), hooks).step("lead", "qualify")
    assert seen == [Context(stage="lead", event="qualify")] * 2


def test_illegal_event_lists_the_allowed_ones(table: CompiledFunnel) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step("lead", "win")
    assert (info.value.event, info.value.stage) == ("win", "lead")
    assert info.value.allowed == ("qualify", "lose")
    assert not isinstance(info.value, ReasonRequired)


@pytest.mark.parametrize("event", ["no_such_event", "", "lead", "send"])
def test_unknown_event_is_not_allowed_not_a_key_error(table: CompiledFunnel, event: str) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step("mql", event)
    assert info.value.event == event
    assert info.value.stage == "mql"
    assert info.value.allowed == ("hand_off", "recycle", "lose")


def test_no_guard_lets_it_through(table: CompiledFunnel) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step("mql", "hand_off", COLD)
    assert info.value.allowed == ("hand_off", "recycle", "lose")


def test_terminal_stage_has_no_way_out(table: CompiledFunnel) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step("won", "lose")
    assert info.value.allowed == ()
    assert "no way out" in str(info.value)


@pytest.mark.parametrize("reason", [None, "", "   ", "\n"])
def test_backward_move_needs_a_reason(table: CompiledFunnel, reason: str | None) -> None:
    with pytest.raises(ReasonRequired) as info:
        table.step("sql", "recycle", reason=reason)
    assert (info.value.event, info.value.stage, info.value.target) == ("recycle", "sql", "lead")
    assert table.step("sql", "recycle", reason="bad timing").target == "lead"


def test_guarded_backward_move_asks_the_guard_before_the_reason(table: CompiledFunnel) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step("mql", "recycle", COLD)
    assert not isinstance(info.value, ReasonRequired)
    with pytest.raises(ReasonRequired):
        table.step("mql", "recycle", HOT)


def test_raising_guard_is_a_hook_error() -> None:
    table = compile_funnel(demo_funnel(), raising_hooks())
    with pytest.raises(HookError) as info:
        table.step("lead", "qualify", ENTERPRISE)
    assert info.value.hook == "is_enterprise"
    assert info.value.subject == "L1"
    assert isinstance(info.value.__cause__, ConnectionError)


def test_non_bool_guard_is_a_hook_error() -> None:
    table = compile_funnel(demo_funnel(), raising_hooks())
    with pytest.raises(HookError) as info:
        table.step("mql", "hand_off", HOT)
    assert info.value.hook == "is_hot"
    assert info.value.received == 80


@pytest.mark.parametrize("stage", ["nowhere", "", None, ["lead"]])
def test_unknown_stage(table: CompiledFunnel, stage: object) -> None:
    with pytest.raises(UnknownStage) as info:
        table.step(stage, "qualify")  # type: ignore[arg-type]
    assert info.value.known == table.stage_names


@pytest.mark.parametrize("stage_idx", [-1, 5, 99])
def test_step_index_with_a_bad_stage_index(table: CompiledFunnel, stage_idx: int) -> None:
    with pytest.raises(UnknownStage):
        table.step_index(stage_idx, 0)


def test_step_index_with_a_bad_event_index(table: CompiledFunnel) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step_index(0, 42)
    assert info.value.stage == "lead"
    assert info.value.allowed == ("qualify", "lose")


def test_missing_guards_are_all_listed() -> None:
    with pytest.raises(UnknownHook) as info:
        compile_funnel(demo_funnel(), Hooks({"is_hot": lambda ctx: True}))
    assert info.value.names == ("is_enterprise",)
    with pytest.raises(UnknownHook) as info:
        compile_funnel(demo_funnel())
    assert info.value.names == ("is_enterprise", "is_hot")


def test_hooks_are_optional_without_guards() -> None:
    funnel = Funnel(
        "tiny",
        [Stage("a", 1, initial=True), Stage("b", 2, terminal=True)],
        [Transition("go", "a", "b")],
    )
    assert compile_funnel(funnel).step("a", "go").target == "b"


@pytest.mark.parametrize("name", presets.names())
def test_presets_take_each_of_their_transitions(name: str) -> None:
    funnel = presets.get(name)
    table = compile_funnel(funnel)
    for t in funnel.transitions:
        reason = "because" if t.direction.value == "backward" else None
        assert table.step(t.source, t.event, reason=reason) == t


# ---------------------------------------------------------------- which guard said no


def test_a_guard_refusal_names_the_guard(table: CompiledFunnel) -> None:
    """It used to say "not allowed ... allowed events there: hand_off, ...", listing hand_off."""
    with pytest.raises(TransitionNotAllowed) as info:
        table.step("mql", "hand_off", COLD)
    assert info.value.refused_by == ("is_hot",)
    assert str(info.value) == (
        "event 'hand_off' from stage 'mql': guard 'is_hot' refused it, "
        "so the journey stays in 'mql'"
    )
    assert info.value.allowed == ("hand_off", "recycle", "lose")


def test_every_guard_that_said_no_is_named() -> None:
    funnel = presets.demand_waterfall().extend(
        add_transitions=[
            Transition("fast_track", "mql", "sal", guard="vip"),
            Transition("fast_track", "mql", "sql", guard="partner"),
        ]
    )
    no = Hooks({"vip": lambda ctx: False, "partner": lambda ctx: False})
    with pytest.raises(TransitionNotAllowed) as info:
        compile_funnel(funnel, no).step("mql", "fast_track")
    assert info.value.refused_by == ("vip", "partner")
    assert "guards 'vip' and 'partner' refused it" in str(info.value)


def test_an_event_not_legal_from_the_stage_names_no_guard(table: CompiledFunnel) -> None:
    for stage, event in (("won", "win"), ("lead", "win"), ("lead", "fly")):
        with pytest.raises(TransitionNotAllowed) as info:
            table.step(stage, event, COLD)
        assert info.value.refused_by == ()
        assert "refused it" not in str(info.value)
