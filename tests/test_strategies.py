"""The public Hypothesis toolkit: funnels, contexts and event streams."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from buyerjourney import (
    BuyerJourneyError,
    Context,
    Direction,
    Funnel,
    StageKind,
    find_problems,
    presets,
)
from buyerjourney._core.machine import build_machine_class
from buyerjourney._core.table import compile_funnel
from buyerjourney.testing import (
    GUARD_NAMES,
    OWNERS,
    UNKNOWN_EVENTS,
    contexts,
    event_sequences,
    funnels,
    standard_hooks,
)

EXISTS = settings(max_examples=2000, database=None, phases=[Phase.generate])
"""For ``find()`` calls that only show an example exists: stop at the first, do not shrink."""

# ---------------------------------------------------------------- funnels()


@settings(max_examples=300, deadline=None)
@given(funnels(min_stages=1))
def test_every_funnel_is_valid_and_builds_both_engines(funnel: Funnel) -> None:
    assert find_problems(funnel.stages, funnel.transitions) == []
    assert set(funnel.guards) <= set(GUARD_NAMES)
    machine = build_machine_class(funnel, standard_hooks())()
    assert machine.stage == funnel.initial.name
    table = compile_funnel(funnel, standard_hooks())
    assert table.stage_names == funnel.stage_names


@settings(max_examples=200, deadline=None)
@given(funnels())
def test_funnels_have_the_promised_shape(funnel: Funnel) -> None:
    assert 2 <= len(funnel.stages) <= 8
    assert funnel.stages[0].initial
    for stage in funnel.stages:
        assert stage.owner in (None, *OWNERS)
        if stage.sla is not None:
            assert not stage.terminal
        if stage.kind.is_exit:
            assert stage.terminal
        if stage.gate:
            assert any(
                t.direction is Direction.BACKWARD for t in funnel.transitions_from(stage.name)
            )
    for (source, event), group in _groups(funnel).items():
        unguarded = [t for t in group if t.guard is None]
        assert len(unguarded) <= 1, (source, event)
        assert not unguarded or group[-1].guard is None, (source, event)


def _groups(funnel: Funnel) -> dict[tuple[str, str], list[object]]:
    groups: dict[tuple[str, str], list[object]] = {}
    for t in funnel.transitions:
        groups.setdefault((t.source, t.event), []).append(t)
    return groups


@settings(max_examples=100, deadline=None)
@given(
    funnels(
        min_stages=3,
        max_stages=4,
        guards=False,
        slas=False,
        gates=False,
        exits=False,
        backward=False,
    )
)
def test_options_switch_features_off(funnel: Funnel) -> None:
    assert 3 <= len(funnel.stages) <= 4
    assert funnel.guards == ()
    assert all(s.sla is None and not s.gate and not s.kind.is_exit for s in funnel.stages)
    assert all(t.direction is Direction.FORWARD for t in funnel.transitions)


@settings(max_examples=50, deadline=None)
@given(funnels(guard_names=["vip"]))
def test_custom_guard_names(funnel: Funnel) -> None:
    assert set(funnel.guards) <= {"vip"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_stages": 0},
        {"min_stages": 3, "max_stages": 2},
        {"max_stages": 2.5},
        {"guard_names": []},
        {"guard_names": [""]},
    ],
)
def test_funnels_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        funnels(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("condition", "what"),
    [
        (lambda f: any(t.direction is Direction.BACKWARD for t in f.transitions), "backward"),
        (lambda f: any(t.direction is Direction.EXIT for t in f.transitions), "exit"),
        (lambda f: any(s.gate for s in f.stages), "gate"),
        (lambda f: any(s.sla is not None for s in f.stages), "sla"),
        (lambda f: len(f.transitions_from(f.initial.name)) >= 3, "alternatives"),
        (lambda f: len({t.source for t in f.transitions if t.event == "e0"}) >= 2, "shared"),
        (lambda f: any(s.terminal and s.kind is StageKind.WON for s in f.stages), "won"),
    ],
)
def test_features_occur(condition: object, what: str) -> None:
    find(funnels(), condition, settings=EXISTS)  # type: ignore[arg-type]


def test_funnels_shrink_to_two_stages_and_one_move() -> None:
    smallest = find(
        funnels(),
        lambda f: len(f.transitions) >= 1,
        settings=settings(max_examples=500, database=None, derandomize=True),
    )
    assert len(smallest.stages) == 2
    assert len(smallest.transitions) == 1
    assert smallest.transitions[0].guard is None
    assert smallest.transitions[0].direction is not Direction.BACKWARD
    for stage in smallest.stages:
        assert (stage.sla, stage.gate, stage.description, stage.owner) == (None, False, "", None)


def test_from_type_uses_the_registered_strategies() -> None:
    @settings(max_examples=10, deadline=None)
    @given(st.from_type(Funnel), st.from_type(Context))
    def check(funnel: Funnel, ctx: Context) -> None:
        assert find_problems(funnel.stages, funnel.transitions) == []
        assert isinstance(ctx, Context)

    check()


# ---------------------------------------------------------------- guards and contexts


def test_standard_hooks_cover_the_guard_names() -> None:
    hooks = standard_hooks()
    assert set(hooks.guards) == set(GUARD_NAMES)
    assert hooks is not standard_hooks()


@pytest.mark.parametrize(
    ("name", "ctx", "expected"),
    [
        ("always", Context(), True),
        ("never", Context(score=1e9), False),
        ("score_at_least_10", Context(score=9.999), False),
        ("score_at_least_10", Context(score=10), True),
        ("score_at_least_50", Context(score=49.999), False),
        ("score_at_least_50", Context(score=50.0), True),
        ("is_enterprise", Context(), False),
        ("is_enterprise", Context(attributes={"employees": 999}), False),
        ("is_enterprise", Context(attributes={"employees": 1000}), True),
    ],
)
def test_standard_guards_on_their_boundaries(name: str, ctx: Context, expected: bool) -> None:
    assert standard_hooks().guards[name](ctx) is expected


@pytest.mark.parametrize("score", [9.999, 10.0, 49.999, 50.0])
def test_contexts_hit_the_score_boundaries(score: float) -> None:
    find(contexts(), lambda c: c.score == score, settings=EXISTS)


def test_contexts_hit_the_company_size_boundary() -> None:
    find(
        contexts(),
        lambda c: c.attributes.get("employees") == 1000,
        settings=EXISTS,
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_contexts_of_a_funnel(data: st.DataObject) -> None:
    funnel = data.draw(funnels())
    ctx = data.draw(contexts(funnel=funnel))
    assert ctx.stage in funnel.stage_names
    assert ctx.event in funnel.events or (not funnel.events and ctx.event == "")
    assert ctx.at is None or ctx.at.tzinfo is not None


def test_contexts_rejects_what_is_not_a_funnel() -> None:
    with pytest.raises(InvalidArgument):
        contexts(funnel="seed")  # type: ignore[arg-type]


# ---------------------------------------------------------------- event_sequences()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_event_sequences(data: st.DataObject) -> None:
    funnel = data.draw(funnels())
    steps = data.draw(event_sequences(funnel, max_size=12))
    assert len(steps) <= 12
    for event, ctx, reason in steps:
        assert event in funnel.events or event in UNKNOWN_EVENTS
        assert isinstance(ctx, Context)
        assert ctx.event == event
        assert ctx.stage in funnel.stage_names
        assert reason is None or isinstance(reason, str)


def test_event_sequences_follow_the_journey() -> None:
    funnel = find(
        funnels(),
        lambda f: len(f.success_path) >= 4 and f.guards == (),
        settings=EXISTS,
    )
    table = compile_funnel(funnel)
    deepest = funnel.success_path[-1].name

    def reaches_the_last_stage(steps: list[tuple[str, Context, str | None]]) -> bool:
        stage = funnel.initial.name
        for event, ctx, reason in steps:
            try:
                stage = table.step(stage, event, ctx, reason=reason).target
            except BuyerJourneyError:
                continue  # a refused step leaves the journey where it was
            if stage == deepest:
                return True
        return False

    reachable = any(t.target == deepest for t in funnel.transitions)
    if reachable:
        find(event_sequences(funnel), reaches_the_last_stage, settings=EXISTS)


@pytest.mark.parametrize(
    "condition",
    [
        lambda steps: any(e in UNKNOWN_EVENTS for e, _, _ in steps),
        lambda steps: any(r is None for _, _, r in steps),
        lambda steps: any(r is not None and not r.strip() for _, _, r in steps),
        lambda steps: any(r and r.strip() for _, _, r in steps),
    ],
)
def test_event_sequences_mix_illegal_events_and_reasons(condition: object) -> None:
    find(event_sequences(presets.seed()), condition, settings=EXISTS)  # type: ignore[arg-type]


def test_event_sequences_start_where_asked() -> None:
    funnel = presets.seed()
    steps = find(
        event_sequences(funnel, stage="retention"),
        lambda s: len(s) >= 1,
        settings=EXISTS,
    )
    assert steps[0][1].stage == "retention"


@pytest.mark.parametrize("kwargs", [{"max_size": -1}, {"stage": "nowhere"}])
def test_event_sequences_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        event_sequences(presets.seed(), **kwargs)  # type: ignore[arg-type]


def test_event_sequences_rejects_what_is_not_a_funnel() -> None:
    with pytest.raises(InvalidArgument):
        event_sequences("seed")  # type: ignore[arg-type]


# ---------------------------------------------------------------- isolation


def test_the_core_never_imports_the_testing_toolkit() -> None:
    code = textwrap.dedent(
        """
        import sys
        import buyerjourney
        import buyerjourney._adapters.diagram
        prefixes = ("hypothesis", "buyerjourney.testing")
        print(sorted(m for m in sys.modules if m.startswith(prefixes)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
