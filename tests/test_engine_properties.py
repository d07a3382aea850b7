"""Invariants of the engine, checked with the public stateful harness.

Two properties over random funnels, owner rules (solo or not), touches,
manual actions and time:

* the invariants hold after every step (``TestInvariantsHoldAfterEveryStep``);
* the same input gives the same output, and the python-statemachine backend
  writes the same log as the table (``TestSameInputSameOutput``).

Then the default pipeline of each preset runs through the harness, and the
harness itself is tested: it must catch broken engines and hooks. Last, the
independent oracle the harness holds every step to is read to make sure it
calls none of the engine's own rules.
"""

from __future__ import annotations

import ast
import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import invariant

import buyerjourney._engine as engine_module
import buyerjourney.testing.oracle as oracle_module
from buyerjourney import Actor, Engine, Funnel, OwnerRules, presets
from buyerjourney._core.journey import Journey
from buyerjourney._core.protocols import Context, Hooks
from buyerjourney._core.records import Action, RecordKind, Touch
from buyerjourney._pipeline import default_pipeline
from buyerjourney.errors import InvalidAction
from buyerjourney.policies import Decision
from buyerjourney.scoring import Lead, Score, ScoreItem
from buyerjourney.testing import (
    DEFAULT_STEPS,
    START,
    Advance,
    PipelineMachine,
    funnels,
    owner_rules,
    pipeline_machine,
    run_pipeline_machine,
)
from buyerjourney.testing.oracle import Oracle


def touch_count(lead: Lead, at: datetime) -> Score:
    """Ten points per touch so far."""
    n = len(lead.touches)
    return Score(10.0 * n, (ScoreItem("touches", 10.0 * n),))


def event_touches(journey: Journey, score: Score, touch: Touch) -> Decision:
    """A touch whose kind is an event name (``e0`` ...) sends that event."""
    return Decision(touch.kind, "touch") if touch.kind.startswith("e") else Decision()


# ---------------------------------------------------------------- the two properties


class AnyFunnelPipeline(PipelineMachine):
    """Each example draws a funnel and owner rules (solo or not), then steps through it."""

    funnel = funnels(max_stages=6)
    owners = owner_rules
    scorer = touch_count
    policy = event_touches
    thresholds = (10, 50)
    leads = ("L0", "L1", "L2")
    replay_backends = ()


TestInvariantsHoldAfterEveryStep = AnyFunnelPipeline.TestCase


class SameInputSameOutput(AnyFunnelPipeline):
    """Fresh engines on both backends, fed the same operations, must write the live log."""

    replay_backends = ("table", "statemachine")


TestSameInputSameOutput = SameInputSameOutput.TestCase


# ---------------------------------------------------------------- the presets' default pipelines

TestSeedPipeline = pipeline_machine(default_pipeline(presets.seed())).TestCase
TestHubspotPipeline = pipeline_machine(default_pipeline(presets.hubspot_lifecycle())).TestCase
TestWaterfallPipeline = pipeline_machine(default_pipeline(presets.demand_waterfall())).TestCase


# ---------------------------------------------------------------- the harness catches bugs

FIND = settings(
    max_examples=300,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
    stateful_step_count=DEFAULT_STEPS,
    report_multiple_bugs=False,
)
"""Stop at the first failure found: these tests only show that a failure is found."""

WATERFALL = default_pipeline(presets.demand_waterfall())


def failure(machine: type[PipelineMachine]) -> str:
    """The message of the failure the harness reports for *machine*."""
    with pytest.raises(AssertionError) as info:
        run_pipeline_machine(machine, settings=FIND)
    return str(info.value)


@pytest.fixture
def counter() -> itertools.count[int]:
    return itertools.count()


def test_a_nondeterministic_scorer_is_named(counter: itertools.count[int]) -> None:
    def flaky_scorer(lead: Lead, at: datetime) -> Score:
        return Score(float(next(counter) % 2))

    message = failure(pipeline_machine(presets.seed(), scorer=flaky_scorer))
    assert "the scorer 'flaky_scorer' is not deterministic" in message


def test_a_nondeterministic_policy_is_named(counter: itertools.count[int]) -> None:
    def coin(journey: Journey, score: Score, touch: Touch) -> Decision:
        return Decision("engage" if next(counter) % 2 else None, "coin")

    message = failure(pipeline_machine(presets.seed(), policy=coin))
    assert "the policy 'coin' is not deterministic" in message


def test_a_nondeterministic_guard_is_named(counter: itertools.count[int]) -> None:
    funnel = presets.seed()
    engage = next(t for t in funnel.transitions if t.event == "engage")
    guarded = funnel.extend(
        remove_transitions=[engage],
        add_transitions=[attrs.evolve(engage, guard="lucky")],
    )

    def lucky(ctx: Context) -> bool:
        return next(counter) % 2 == 0

    machine = pipeline_machine(guarded, hooks=Hooks({"lucky": lucky}), touch_kinds=("engage",))
    assert "the guard 'lucky' is not deterministic" in failure(machine)


def test_an_engine_that_lets_anyone_act_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Engine, "_permit", lambda self, *args, **kwargs: None)
    message = failure(pipeline_machine(WATERFALL))
    assert "the oracle expects ActionRefused" in message


def test_an_engine_that_forgets_handoffs_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Engine, "_handoff", lambda self, pending, journey, **kwargs: journey)
    message = failure(pipeline_machine(WATERFALL))
    assert "handoff" in message or "HANDOFF" in message.upper()


def test_an_engine_that_does_not_log_refusals_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_quietly(
        self: Engine, lead_id: str, action: str, actor: Actor, *rest: Any, **kw: Any
    ) -> None:
        cause = kw.get("cause")
        if cause is not None:
            raise cause
        raise engine_module.ActionRefused(lead_id, action, actor, rest[-1])

    monkeypatch.setattr(Engine, "_refuse", refuse_quietly)
    message = failure(pipeline_machine(WATERFALL))
    assert "a refusal appends exactly one 'refused' record" in message


def test_an_engine_that_never_escalates_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def advance_quietly(self: Engine, at: datetime) -> list[Any]:
        self._clock = at if self._clock is None or at > self._clock else self._clock
        return []

    monkeypatch.setattr(Engine, "advance", advance_quietly)
    message = failure(pipeline_machine(WATERFALL))
    assert "escalation" in message


def test_an_engine_that_differs_from_run_to_run_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines built second, fourth ... never escalate: the replay finds the live log differs."""
    built = itertools.count()
    original_init, original_advance = Engine.__init__, Engine.advance

    def init(self: Engine, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._odd = next(built) % 2 == 1  # type: ignore[attr-defined]

    def advance(self: Engine, at: datetime) -> list[Any]:
        if getattr(self, "_odd", False):
            self._clock = at if self._clock is None or at > self._clock else self._clock
            return []
        return original_advance(self, at)

    monkeypatch.setattr(Engine, "__init__", init)
    monkeypatch.setattr(Engine, "advance", advance)
    message = failure(pipeline_machine(WATERFALL))
    assert message.startswith("the same input gave another output")


def test_own_invariants_run_and_shrink_to_a_short_program() -> None:
    class NobodyIsLost(pipeline_machine(default_pipeline(presets.seed()))):  # type: ignore[misc]
        @invariant()
        def nobody_is_lost(self) -> None:
            assert all(j.stage != "lost" for j in self.engine.journeys.values()), "a lead is lost"

    shrinking = settings(FIND, phases=[Phase.generate, Phase.shrink])
    with pytest.raises(AssertionError, match="a lead is lost") as info:
        run_pipeline_machine(NobodyIsLost, settings=shrinking)
    steps = [n for n in info.value.__notes__ if n.startswith("state.") and not n.endswith("()")]
    # usually one touch of kind "lose", which makes a journey and loses it at once, or a
    # touch and a walk (the steering rule) that takes the lead to 'lost'
    assert 1 <= len(steps) <= 5
    assert "'lose'" in steps[-1] or steps[-1].startswith("state.walk(")


# ---------------------------------------------------------------- the harness's own API


def test_perform_checks_a_refusal_and_keeps_the_operations() -> None:
    machine = pipeline_machine(presets.seed())()
    created = machine.perform(Touch("t1", "lead-1", START, "page_view"))
    assert created.error is None
    assert [r.kind for r in created.records] == [RecordKind.CREATED, RecordKind.SCORED]
    later = START + timedelta(hours=1)
    refused = machine.perform(
        Action("send", "lead-1", later, Actor("rep_a", "sales"), event="engage")
    )
    assert refused.refused
    assert [r.kind for r in refused.records] == [RecordKind.REFUSED]
    assert machine.operations == (
        Advance(START),
        Touch("t1", "lead-1", START, "page_view"),
        Advance(later),
        Action("send", "lead-1", later, Actor("rep_a", "sales"), event="engage"),
    )
    assert machine.now == later
    assert machine.replay("statemachine").records == machine.records


def test_a_late_touch_changes_nothing_and_is_not_advanced_to() -> None:
    machine = pipeline_machine(presets.seed())()
    machine.perform(Touch("t1", "lead-1", START + timedelta(hours=5), "page_view"))
    outcome = machine.perform(Touch("t2", "lead-1", START, "page_view"))
    assert outcome.refused
    assert outcome.records == ()
    assert machine.now == START + timedelta(hours=5)


def test_plain_function_hooks_are_not_bound_as_methods() -> None:
    class Direct(PipelineMachine):
        funnel = presets.seed()
        scorer = touch_count
        policy = event_touches

    machine = Direct()
    outcome = machine.perform(Touch("t1", "lead-1", START, "page_view"))
    assert [r.score for r in outcome.records if r.kind is RecordKind.SCORED] == [10.0]


def test_a_pipeline_gives_its_parts_and_arguments_win() -> None:
    machine_class = pipeline_machine(WATERFALL, thresholds=(5,), leads=("a", "b"))
    assert machine_class.__name__ == "WaterfallPipelineMachine"
    assert machine_class.funnel == WATERFALL.funnel
    assert machine_class.owners == WATERFALL.owners
    assert machine_class.thresholds == (5,)
    assert machine_class.leads == ("a", "b")


def test_test_case_settings_are_quick_and_skip_the_explain_phase() -> None:
    chosen = pipeline_machine(presets.seed()).TestCase.settings
    assert chosen.stateful_step_count == DEFAULT_STEPS
    assert Phase.explain not in chosen.phases
    assert chosen.deadline is None

    class ProfileSteps(PipelineMachine):
        funnel = presets.seed()
        steps: ClassVar[int | None] = None

    assert ProfileSteps.TestCase.settings.stateful_step_count == settings().stateful_step_count


@pytest.mark.parametrize(
    ("attributes", "complaint"),
    [
        ({"funnel": "seed"}, "funnel must be a buyerjourney.Funnel"),
        ({"owners": "sales"}, "owners must be"),
        ({"leads": "lead-1"}, "leads must be a non-empty tuple"),
        ({"touch_kinds": ()}, "touch_kinds must be a non-empty tuple"),
        ({"max_gap": timedelta(0)}, "max_gap must be a timedelta of at least a second"),
        ({"thresholds": ("10",)}, "thresholds must be a tuple of numbers"),
        ({"replay_backends": ("numpy",)}, "must name 'table' or 'statemachine'"),
        ({"steps": 0}, "steps must be a positive int or None"),
    ],
)
def test_bad_configuration_is_refused_when_the_class_is_made(
    attributes: dict[str, Any], complaint: str
) -> None:
    namespace = {"funnel": presets.seed(), **attributes}
    with pytest.raises(InvalidArgument, match=complaint):
        type("Bad", (PipelineMachine,), namespace)


def test_pipeline_machine_and_runner_refuse_what_they_cannot_run() -> None:
    with pytest.raises(InvalidArgument, match="Funnel, a Pipeline or a strategy"):
        pipeline_machine("seed")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="must be an identifier"):
        pipeline_machine(presets.seed(), name="not a name")
    with pytest.raises(InvalidArgument, match="PipelineMachine subclass"):
        run_pipeline_machine(Engine)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="run a subclass"):
        run_pipeline_machine(PipelineMachine)


def test_owner_rules_that_do_not_fit_the_funnel_are_refused() -> None:
    other = OwnerRules.for_funnel(presets.hubspot_lifecycle())
    with pytest.raises(ValueError, match="not in funnel"):
        pipeline_machine(presets.seed(), owners=other)


def test_generated_funnels_are_drawn_in_a_first_step() -> None:
    drawn: list[Funnel] = []

    class Recording(AnyFunnelPipeline):
        def teardown(self) -> None:
            drawn.append(self.plan.funnel)

    run_pipeline_machine(Recording, settings=settings(FIND, max_examples=5))
    assert drawn
    assert all(isinstance(f, Funnel) and f.stage_names[0] == "s0" for f in drawn)


# ---------------------------------------------------------------- the oracle is independent

ORACLE_SOURCE = Path(oracle_module.__file__).read_text("utf-8")

FORBIDDEN_IMPORTS = {
    "buyerjourney._core.lifecycle",
    "buyerjourney._core.table",
    "buyerjourney._core.machine",
    "buyerjourney._engine",
    "buyerjourney.bulk",
}
FORBIDDEN_NAMES = {
    "apply",
    "rebuild",
    "evaluate_guard",
    "checked_score",
    "checked_decision",
    "compile_funnel",
    "CompiledFunnel",
    "build_machine_class",
    "hook_name",
    "Engine",
    "lifecycle",
}
FORBIDDEN_CALLS = {
    "owner",
    "may_act",
    "matching_rule",
    "matches",
    "teams_of",
    "transitions_from",
    "allowed_events",
    "stage",
    "deadline",
    "time_in",
    "step",
    "step_index",
}
FORBIDDEN_ATTRIBUTES = {"enters_stage", "changes_journey", "is_exit", "initial_stage"}


def test_the_oracle_calls_none_of_the_engines_rules() -> None:
    """The oracle states the rules again: it imports and calls none of the engine's own."""
    tree = ast.parse(ORACLE_SOURCE)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if any(module == m or module.startswith(m + ".") for m in FORBIDDEN_IMPORTS):
                problems.append(f"line {node.lineno}: imports {module}")
            problems.extend(
                f"line {node.lineno}: imports {alias.name}"
                for alias in node.names
                if alias.name in FORBIDDEN_NAMES
            )
        elif isinstance(node, ast.Import):
            problems.extend(
                f"line {node.lineno}: imports {alias.name}"
                for alias in node.names
                if alias.name in FORBIDDEN_IMPORTS
            )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in FORBIDDEN_CALLS:
                problems.append(f"line {node.lineno}: calls .{node.func.attr}()")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            problems.append(f"line {node.lineno}: asks .{node.attr}")
    assert problems == []


def test_the_oracle_refuses_what_is_no_operation() -> None:
    oracle = Oracle.of(default_pipeline(presets.seed()))
    with pytest.raises(ValueError, match="unknown action 'archive'"):
        oracle.perform(Action("archive", "lead-1", START, Actor("rep_a", "sales")))
    with pytest.raises(TypeError, match="a Touch, an Action or an Advance"):
        oracle.perform("touch")  # type: ignore[arg-type]


def test_an_expectation_names_what_differs() -> None:
    oracle = Oracle.of(default_pipeline(presets.seed()))
    touch = Touch("t1", "lead-1", START, "page_view")
    expected = oracle.perform(touch)
    engine = default_pipeline(presets.seed()).engine()
    engine.ingest_one(touch)
    assert expected.mismatch(engine.records, None) is None
    assert expected.mismatch(engine.records, "InvalidTouch") == (
        f"ingest touch 't1' (page_view) of 'lead-1' at {START.isoformat()}: the engine raised "
        "InvalidTouch, the oracle expects success"
    )
    wrong = expected.mismatch(engine.records[:1], None, who="the store")
    assert wrong is not None
    assert "1 record(s) where the oracle expects 2" in wrong
    assert "The store wrote" in wrong
    late = oracle.perform(Advance(START - timedelta(hours=1)))
    assert late.error is InvalidAction
    assert late.set_aside
