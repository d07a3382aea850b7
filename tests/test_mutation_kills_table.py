"""Error details of the compiled table, found missing by mutation testing.

The other table tests check which exception is raised; these check what it carries:
the stage that was asked for and the funnel's name on ``UnknownStage``, and the event
named by ``TransitionNotAllowed`` at the edges of the event index range. See
docs/mutation.md.
"""

from __future__ import annotations

import pytest

from buyerjourney import TransitionNotAllowed, UnknownStage
from buyerjourney._core.table import CompiledFunnel, compile_funnel
from sample_funnels import demo_funnel, demo_hooks

WON = 3  # demo funnel: lead, mql, sql, won, lost; won is terminal
EVENTS = ("qualify", "hand_off", "recycle", "win", "lose")


@pytest.fixture
def table() -> CompiledFunnel:
    compiled = compile_funnel(demo_funnel(), demo_hooks())
    assert compiled.event_names == EVENTS
    assert compiled.stage_names[WON] == "won"
    return compiled


@pytest.mark.parametrize("stage", ["nowhere", ""])
def test_step_with_an_unknown_stage_names_the_stage_and_the_funnel(
    table: CompiledFunnel, stage: str
) -> None:
    with pytest.raises(UnknownStage) as info:
        table.step(stage, "qualify")
    assert info.value.stage == stage
    assert info.value.funnel_name == "demo"
    assert str(info.value).startswith(f"{stage!r} is not a stage of funnel 'demo'; ")


@pytest.mark.parametrize("stage_idx", [-1, 5])
def test_step_index_with_a_bad_stage_index_names_the_index_and_the_funnel(
    table: CompiledFunnel, stage_idx: int
) -> None:
    with pytest.raises(UnknownStage) as info:
        table.step_index(stage_idx, 0)
    assert info.value.stage == stage_idx
    assert info.value.funnel_name == "demo"
    assert str(info.value).startswith(f"{stage_idx} is not a stage of funnel 'demo'; ")


@pytest.mark.parametrize(("event_idx", "event"), [(0, "qualify"), (4, "lose")])
def test_the_first_and_last_event_indexes_are_reported_by_name(
    table: CompiledFunnel, event_idx: int, event: str
) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step_index(WON, event_idx)
    assert (info.value.event, info.value.stage, info.value.allowed) == (event, "won", ())


@pytest.mark.parametrize("event_idx", [-1, 5, 42])
def test_an_event_index_out_of_range_is_reported_as_such(
    table: CompiledFunnel, event_idx: int
) -> None:
    with pytest.raises(TransitionNotAllowed) as info:
        table.step_index(WON, event_idx)
    assert info.value.event == f"<event index {event_idx}>"
    assert str(info.value) == (
        f"event '<event index {event_idx}>' is not allowed: stage 'won' has no way out"
    )
