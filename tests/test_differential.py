"""Differential test: the python-statemachine class and the compiled table agree at every step.

Random funnels (with guards that raise, return non-bools or change their
answer on every call) are driven by random event streams through a
:class:`~buyerjourney._core.machine.FunnelMachine` and a
:class:`~buyerjourney._core.table.CompiledFunnel` side by side. After every event
both must be in the same stage, or have raised the same exception with the
same attributes and message, and must have called the same guards in the same
order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buyerjourney import BuyerJourneyError, Context, Funnel, Hooks
from buyerjourney._core.machine import build_machine_class
from buyerjourney._core.table import compile_funnel
from buyerjourney.testing import GUARD_NAMES, event_sequences, funnels, standard_hooks

FAULTY_GUARDS = ("raises", "not_bool", "flip_flop")
Step = tuple[str, Context | None, str | None]


def recording_hooks(log: list[str]) -> Hooks:
    """The standard guards plus faulty and stateful ones, each logging its name when called."""
    hooks = Hooks()
    for name, fn in standard_hooks().guards.items():

        def logged(ctx: Context, name: str = name, fn: Any = fn) -> bool:
            log.append(name)
            return bool(fn(ctx))

        hooks.add_guard(name, logged)
    calls = [0]

    def raises(ctx: Context) -> bool:
        log.append("raises")
        msg = "scoring service down"
        raise RuntimeError(msg)

    def not_bool(ctx: Context) -> bool:
        log.append("not_bool")
        return None  # type: ignore[return-value]

    def flip_flop(ctx: Context) -> bool:
        log.append("flip_flop")
        calls[0] += 1
        return calls[0] % 2 == 0

    for fn in (raises, not_bool, flip_flop):
        hooks.add_guard(fn.__name__, fn)
    return hooks


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Funnel, str | None, list[Step]]:
    funnel = draw(funnels(min_stages=1, guard_names=(*GUARD_NAMES, *FAULTY_GUARDS)))
    start = draw(st.none() | st.sampled_from(funnel.stage_names))
    steps = draw(event_sequences(funnel, stage=start, hooks=recording_hooks([])))
    without_ctx = draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
    return (
        funnel,
        start,
        [
            (e, None if drop else ctx, r)
            for (e, ctx, r), drop in zip(steps, without_ctx, strict=True)
        ],
    )


def outcome(action: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What ``action(*args, **kwargs)`` did: returned a value, or raised which exception how."""
    try:
        return ("moved", action(*args, **kwargs))
    except BuyerJourneyError as exc:
        return (
            type(exc),
            str(exc),
            *(getattr(exc, a, None) for a in ("event", "stage", "allowed", "target", "hook")),
        )


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_machine_and_table_agree(scenario: tuple[Funnel, str | None, list[Step]]) -> None:
    funnel, start, steps = scenario
    machine_log: list[str] = []
    table_log: list[str] = []
    machine = build_machine_class(funnel, recording_hooks(machine_log))(start_value=start)
    table = compile_funnel(funnel, recording_hooks(table_log))
    stage = start if start is not None else funnel.initial.name
    assert machine.stage == stage

    for i, (event, ctx, reason) in enumerate(steps):
        machine_log.clear()
        table_log.clear()
        by_machine = outcome(machine.send, event, ctx=ctx, reason=reason)
        by_table = outcome(table.step, stage, event, ctx, reason=reason)
        where = f"step {i}: {event!r} from {stage!r} (reason {reason!r})"
        assert by_machine[0] == by_table[0], where
        if by_table[0] == "moved":
            stage = by_table[1].target
        else:
            assert by_machine == by_table, where
        assert machine_log == table_log, where
        assert machine.stage == stage, where
        assert machine.legal_events == funnel.allowed_events(stage), where
