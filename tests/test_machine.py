"""The python-statemachine engine: generated classes, the step rules, errors, listeners, restore."""

from __future__ import annotations

from typing import Any

import pytest
import statemachine
import statemachine.exceptions

from buyerjourney import (
    Context,
    Funnel,
    HookError,
    Hooks,
    InvalidFunnel,
    ReasonRequired,
    Stage,
    Transition,
    TransitionNotAllowed,
    UnknownHook,
    UnknownStage,
    presets,
)
from buyerjourney._core.machine import FunnelMachine, build_machine_class, funnel_machine
from sample_funnels import BACK, COLD, ENTERPRISE, HOT, demo_funnel, demo_hooks, raising_hooks


@pytest.fixture(scope="module")
def machine_class() -> type[FunnelMachine]:
    return build_machine_class(demo_funnel(), demo_hooks())


@pytest.fixture
def machine(machine_class: type[FunnelMachine]) -> FunnelMachine:
    return machine_class()


def tiny(name: str = "tiny", stage: str = "a", event: str = "go") -> Funnel:
    return Funnel(
        name,
        [Stage(stage, 1, initial=True), Stage("b", 2, terminal=True)],
        [Transition(event, stage, "b")],
    )


# ---------------------------------------------------------------- the generated class


def test_generated_class(machine_class: type[FunnelMachine]) -> None:
    assert machine_class.__name__ == "DemoMachine"
    assert machine_class.__module__ == "buyerjourney._core.machine"
    assert issubclass(machine_class, FunnelMachine)
    assert issubclass(machine_class, statemachine.StateMachine)
    assert machine_class.funnel == demo_funnel()
    assert [s.id for s in machine_class.states] == ["lead", "mql", "sql", "won", "lost"]
    assert [s.id for s in machine_class.states if s.final] == ["won", "lost"]
    assert machine_class.initial_state is not None
    assert machine_class.initial_state.id == "lead"
    # python-statemachine lists events by state, not in the funnel's order
    assert sorted(e.id for e in machine_class.events) == sorted(demo_funnel().events)
    assert "demo" in (machine_class.__doc__ or "")


@pytest.mark.parametrize(
    ("funnel_name", "class_name"),
    [
        ("seed", "SeedMachine"),
        ("b2b waterfall", "B2bWaterfallMachine"),
        ("demand-waterfall v2", "DemandWaterfallV2Machine"),
        ("2024 plan", "Funnel2024PlanMachine"),
        ("", "UnnamedMachine"),
        ("¡Olé!", "OlMachine"),
    ],
)
def test_class_name_is_derived_from_the_funnel_name(funnel_name: str, class_name: str) -> None:
    cls = build_machine_class(tiny(funnel_name))
    assert cls.__name__ == class_name
    assert cls.__name__.isidentifier()


def test_a_funnel_name_cannot_inject_a_diagram_into_the_docstring() -> None:
    cls = build_machine_class(tiny("{statechart:svg}"))
    assert "<svg" not in (cls.__doc__ or "")


def test_build_rejects_what_is_not_a_funnel() -> None:
    with pytest.raises(TypeError, match=r"must be a buyerjourney\.Funnel"):
        build_machine_class("seed")  # type: ignore[arg-type]


def test_missing_guard_hooks_are_all_listed() -> None:
    with pytest.raises(UnknownHook) as info:
        build_machine_class(demo_funnel())
    assert info.value.names == ("is_enterprise", "is_hot")
    with pytest.raises(UnknownHook) as info:
        funnel_machine(demo_funnel(), Hooks({"is_hot": lambda ctx: True}))
    assert info.value.names == ("is_enterprise",)


@pytest.mark.parametrize(
    ("stage", "event", "code"),
    [
        ("stage", "go", "reserved-stage-name"),
        ("a", "legal_events", "reserved-event-name"),
        ("a", "funnel", "reserved-event-name"),
    ],
)
def test_names_that_would_shadow_the_machine_are_refused(stage: str, event: str, code: str) -> None:
    with pytest.raises(InvalidFunnel) as info:
        build_machine_class(tiny(stage=stage, event=event))
    assert [p.code for p in info.value.problems] == [code]


@pytest.mark.parametrize("name", presets.names())
def test_presets_build(name: str) -> None:
    machine = funnel_machine(presets.get(name))
    assert machine.stage == presets.get(name).initial.name


# ---------------------------------------------------------------- stepping


def test_send_moves_along_the_funnel(machine: FunnelMachine) -> None:
    assert machine.stage == "lead"
    assert machine.legal_events == ("qualify", "lose")
    machine.send("qualify", ctx=COLD)
    assert machine.stage == "mql"
    machine.send("hand_off", ctx=HOT)
    assert machine.stage == "sql"
    machine.send("win")
    assert machine.stage == "won"
    assert machine.legal_events == ()
    assert machine.is_terminated


def test_guarded_alternatives_take_the_first_that_passes(
    machine_class: type[FunnelMachine],
) -> None:
    for ctx, target in [(ENTERPRISE, "sql"), (HOT, "mql"), (COLD, "mql")]:
        machine = machine_class()
        machine.send("qualify", ctx=ctx)
        assert machine.stage == target


def test_guards_are_called_lazily_in_declaration_order() -> None:
    calls: list[str] = []
    cls = build_machine_class(demo_funnel(), demo_hooks(calls))
    cls().send("qualify", ctx=ENTERPRISE)
    assert calls == ["is_enterprise"]
    calls.clear()
    cls().send("qualify", ctx=COLD)
    assert calls == ["is_enterprise", "is_hot"]


def test_guard_sees_a_default_context_when_none_is_given() -> None:
    seen: list[Context] = []

    def spy(ctx: Context) -> bool:
        seen.append(ctx)
        return False

    funnel_machine(demo_funnel(), Hooks({"is_enterprise": spy, "is_hot": spy})).send("qualify")
    assert seen == [Context(stage="lead", event="qualify")] * 2


def test_events_are_methods_too(machine: FunnelMachine) -> None:
    machine.qualify(ctx=HOT)  # type: ignore[attr-defined]
    assert machine.stage == "mql"
    with pytest.raises(TransitionNotAllowed) as info:
        machine.win()  # type: ignore[attr-defined]
    assert (info.value.event, info.value.stage) == ("win", "mql")


def test_python_statemachine_names_are_not_shadowed(machine: FunnelMachine) -> None:
    assert [e.id for e in machine.allowed_events] == ["qualify", "lose"]
    assert machine.current_state_value == "lead"


# ---------------------------------------------------------------- errors


def test_illegal_event(machine: FunnelMachine) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        machine.send("win")
    exc = info.value
    assert (exc.event, exc.stage, exc.allowed) == ("win", "lead", ("qualify", "lose"))
    assert not isinstance(exc, statemachine.exceptions.TransitionNotAllowed)
    assert isinstance(exc.__cause__, statemachine.exceptions.TransitionNotAllowed)
    assert machine.stage == "lead"


@pytest.mark.parametrize(
    "event", ["no_such_event", "", "send", "stage", "model", "lead", "error_x", "done.state.x"]
)
def test_unknown_event(machine: FunnelMachine, event: str) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        machine.send(event)
    assert (info.value.event, info.value.stage) == (event, "lead")
    assert info.value.allowed == ("qualify", "lose")
    assert machine.stage == "lead"


def test_no_guard_lets_it_through(machine_class: type[FunnelMachine]) -> None:
    machine = machine_class(start_value="mql")
    with pytest.raises(TransitionNotAllowed) as info:
        machine.send("hand_off", ctx=COLD)
    assert info.value.allowed == ("hand_off", "recycle", "lose")
    assert machine.stage == "mql"


def test_terminal_stage_has_no_way_out(machine_class: type[FunnelMachine]) -> None:
    machine = machine_class()
    machine.send("lose")
    with pytest.raises(TransitionNotAllowed) as info:
        machine.send("qualify")
    assert (info.value.stage, info.value.allowed) == ("lost", ())


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_backward_move_needs_a_reason(
    machine_class: type[FunnelMachine], reason: str | None
) -> None:
    machine = machine_class(start_value="sql")
    with pytest.raises(ReasonRequired) as info:
        machine.send("recycle", reason=reason)
    assert (info.value.event, info.value.stage, info.value.target) == ("recycle", "sql", "lead")
    assert machine.stage == "sql"
    machine.send("recycle", reason="bad timing")
    assert machine.stage == "lead"


def test_guarded_backward_move_asks_the_guard_before_the_reason(
    machine_class: type[FunnelMachine],
) -> None:
    machine = machine_class(start_value="mql")
    with pytest.raises(TransitionNotAllowed) as info:
        machine.send("recycle", ctx=COLD)
    assert not isinstance(info.value, ReasonRequired)
    with pytest.raises(ReasonRequired):
        machine.send("recycle", ctx=HOT)
    assert machine.stage == "mql"


def test_raising_guard_is_a_hook_error_and_the_stage_is_unchanged() -> None:
    machine = funnel_machine(demo_funnel(), raising_hooks())
    with pytest.raises(HookError) as info:
        machine.send("qualify", ctx=ENTERPRISE)
    assert type(info.value) is HookError
    assert info.value.hook == "is_enterprise"
    assert isinstance(info.value.__cause__, ConnectionError)
    assert machine.stage == "lead"
    machine.send("lose")  # the machine still works afterwards
    assert machine.stage == "lost"


def test_non_bool_guard_is_a_hook_error() -> None:
    machine = funnel_machine(demo_funnel(), raising_hooks(), stage="mql")
    with pytest.raises(HookError) as info:
        machine.send("hand_off", ctx=HOT)
    assert info.value.received == 80
    assert machine.stage == "mql"


def test_unknown_persisted_stage_is_refused_at_once() -> None:
    with pytest.raises(UnknownStage) as info:
        funnel_machine(demo_funnel(), demo_hooks(), stage="opportunity")
    assert info.value.stage == "opportunity"
    assert info.value.known == demo_funnel().stage_names
    with pytest.raises(UnknownStage):
        build_machine_class(demo_funnel(), demo_hooks())(start_value="opportunity")


def test_model_holding_an_unknown_stage_is_refused() -> None:
    class Lead:
        state = "opportunity"

    with pytest.raises(UnknownStage):
        funnel_machine(demo_funnel(), demo_hooks(), model=Lead())


def test_model_and_start_value_must_agree() -> None:
    class Lead:
        state = "mql"

    with pytest.raises(ValueError, match="already holds stage 'mql'"):
        funnel_machine(demo_funnel(), demo_hooks(), model=Lead(), stage="sql")
    assert funnel_machine(demo_funnel(), demo_hooks(), model=Lead(), stage="mql").stage == "mql"


# ---------------------------------------------------------------- restore, model, listeners


def test_restore_at_a_persisted_stage() -> None:
    machine = funnel_machine(demo_funnel(), demo_hooks(), stage="sql")
    assert machine.stage == "sql"
    assert machine.legal_events == ("recycle", "win", "lose")
    machine.send("win")
    assert machine.stage == "won"


def test_restore_at_a_terminal_stage() -> None:
    machine = funnel_machine(demo_funnel(), demo_hooks(), stage="lost")
    assert machine.stage == "lost"
    with pytest.raises(TransitionNotAllowed) as info:
        machine.send("qualify")
    assert (info.value.stage, info.value.allowed) == ("lost", ())


def test_model_stores_the_stage() -> None:
    class Lead:
        state: str | None = None

    lead = Lead()
    machine = funnel_machine(demo_funnel(), demo_hooks(), model=lead)
    assert lead.state == "lead"
    machine.send("qualify", ctx=HOT)
    assert lead.state == "mql"
    again = funnel_machine(demo_funnel(), demo_hooks(), model=lead)
    assert again.stage == "mql"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def after_transition(self, event: str, source: Any, target: Any) -> None:
        self.calls.append(("after", str(event), source.id, target.id))

    def on_enter_sql(self, ctx: Context | None, reason: str | None) -> None:
        self.calls.append(("enter sql", ctx, reason))

    def before_recycle(self, reason: str) -> None:
        self.calls.append(("before recycle", reason))


def test_listeners_receive_callbacks() -> None:
    recorder = Recorder()
    machine = funnel_machine(demo_funnel(), demo_hooks(), listeners=[recorder])
    machine.send("qualify", ctx=ENTERPRISE)
    machine.send("recycle", reason="no budget")
    assert recorder.calls == [
        ("enter sql", ENTERPRISE, None),
        ("after", "qualify", "lead", "sql"),
        ("before recycle", "no budget"),
        ("after", "recycle", "sql", "lead"),
    ]


def test_listeners_are_not_called_for_refused_moves() -> None:
    recorder = Recorder()
    machine = funnel_machine(demo_funnel(), demo_hooks(), stage="sql", listeners=[recorder])
    recorder.calls.clear()
    with pytest.raises(ReasonRequired):
        machine.send("recycle")
    with pytest.raises(TransitionNotAllowed):
        machine.send("qualify")
    assert recorder.calls == []


def test_restore_runs_entry_callbacks_of_the_restored_stage() -> None:
    recorder = Recorder()
    funnel_machine(demo_funnel(), demo_hooks(), stage="sql", listeners=[recorder])
    assert recorder.calls == [("enter sql", None, None)]


def test_backward_transition_in_a_preset_needs_a_reason() -> None:
    funnel = presets.seed()
    assert any(t.direction is BACK for t in funnel.transitions)
    machine = funnel_machine(funnel, stage="consideration")
    with pytest.raises(ReasonRequired):
        machine.send("nurture")
    machine.send("nurture", reason="not now")
    assert machine.stage == "awareness"


# ---------------------------------------------------------------- which guard said no


def test_a_guard_refusal_names_the_guard_as_the_table_does() -> None:
    from buyerjourney._core.table import compile_funnel  # noqa: PLC0415

    table = compile_funnel(demo_funnel(), demo_hooks())
    for stage, event in (("mql", "hand_off"), ("lead", "win"), ("won", "lose")):
        machine = funnel_machine(demo_funnel(), demo_hooks(), stage=stage)
        with pytest.raises(TransitionNotAllowed) as by_machine:
            machine.send(event, ctx=COLD)
        with pytest.raises(TransitionNotAllowed) as by_table:
            table.step(stage, event, COLD)
        assert str(by_machine.value) == str(by_table.value)
        assert by_machine.value.refused_by == by_table.value.refused_by
        assert machine.stage == stage
    machine = funnel_machine(demo_funnel(), demo_hooks(), stage="mql")
    with pytest.raises(TransitionNotAllowed) as info:
        machine.hand_off(ctx=COLD)  # the event called as a method
    assert info.value.refused_by == ("is_hot",)
    assert "guard 'is_hot' refused it" in str(info.value)
