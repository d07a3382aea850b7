"""A stateful harness for property-based tests of a whole pipeline.

:class:`PipelineMachine` is a Hypothesis rule-based state machine that drives
one :class:`~buyerjourney.Engine` built from your funnel, owner rules, guard
hooks, scorer and policy. Hypothesis picks the steps: touches for a few leads
(some duplicated, some late), manual ``send`` / ``accept`` / ``reject`` /
``override`` by people who may or may not act, with or without a reason, and
time passing so that SLAs are breached. After every step it checks the
pipeline's invariants and, when one fails, shrinks the steps to a short
program that shows how.

Build a machine from parameters and let pytest or unittest run it::

    from buyerjourney import presets
    from buyerjourney._pipeline import default_pipeline
    from buyerjourney.testing import pipeline_machine

    TestSeedPipeline = pipeline_machine(default_pipeline(presets.seed())).TestCase

or subclass it to add rules and invariants of your own::

    from hypothesis.stateful import invariant
    from buyerjourney.testing import PipelineMachine

    class MyPipeline(PipelineMachine):
        funnel = my_funnel
        scorer = my_scorer  # a plain function works
        policy = my_policy

        @invariant()
        def enterprise_leads_belong_to_sales(self):
            ...

    TestMyPipeline = MyPipeline.TestCase

What every step checks
----------------------

* **The outcome of the step** (:meth:`PipelineMachine.check_outcome`): a
  refused action changed no journey and appended exactly one ``REFUSED``
  record, a rejected touch (duplicate, late, or a failing scorer or policy)
  appended nothing; and what the engine raised, wrote and left behind is
  what the independent oracle (:class:`~buyerjourney.testing.oracle.Oracle`,
  asked before the step) says the rules call for: who may act, which
  transition an event takes (first passing guard, a reason for backward
  moves), the score, thresholds and the policy's move after a touch, the
  handoffs, the escalations that passing time causes, and every field of
  every journey afterwards. The oracle keeps its own journeys and shares no
  code with the engine; the harness does not model the rules itself.
* **The hooks are deterministic**: the scorer, the policy and every guard
  are called twice with the same arguments and must answer the same; a hook
  that does not fails the test with an :class:`AssertionError` naming it.
* **The invariants**, each an ``@invariant`` method of its own:
  :meth:`~PipelineMachine.no_illegal_transitions`,
  :meth:`~PipelineMachine.one_known_owner_per_journey`,
  :meth:`~PipelineMachine.handoff_iff_owner_changes`,
  :meth:`~PipelineMachine.highest_stage_never_goes_down`,
  :meth:`~PipelineMachine.rebuild_equals_live_state`,
  :meth:`~PipelineMachine.log_is_append_only`,
  :meth:`~PipelineMachine.sla_breaches_are_escalated` and
  :meth:`~PipelineMachine.same_operations_same_log`.

Name built-in rules and invariants in :attr:`PipelineMachine.disabled` (or
``pipeline_machine(..., disabled=[...])``) to switch them off; overriding an
invariant with a plain method (no decorator) works too.

**Coverage and steering.** Random steps rarely get deep into a long funnel,
so the ``walk`` rule takes one journey through it: to a transition the run
has not taken yet (one into a stage it has not entered, if it can), by a
shortest way, then on toward stages not entered yet. Only what lies within
the walk's moves of the journeys is looked at, so a walk costs the same on a
funnel of any size. :func:`run_pipeline_machine` returns the
:class:`~buyerjourney._checks.Coverage` of its runs (stages and transitions
reached, with counts); :meth:`PipelineMachine.coverage` gives that of every
run of a class.

**Determinism.** The machine keeps every operation it performed
(:attr:`PipelineMachine.operations`) and feeds each one, as it goes, to
fresh engines on the backends of :attr:`PipelineMachine.replay_backends`;
:meth:`~PipelineMachine.same_operations_same_log` requires their logs to equal
the live one after every step. That is the same as replaying the whole run at
the end, but it names the first step at which the logs part, costs linear
rather than quadratic time, and never raises from ``teardown()`` on top of
another failure.

**Settings.** A machine's ``TestCase`` runs :attr:`PipelineMachine.steps`
steps per example (30) with the other settings of the profile loaded when
the class is created, no deadline, no health checks, and without
Hypothesis's *explain* phase: on a pipeline that phase replays a failure for
minutes to point at lines of code, while the shrunk steps already tell the
story. Set ``steps = None`` to take the profile's ``stateful_step_count``, or
decorate the class with ``@settings(...)`` to choose everything yourself.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, ClassVar, Literal, TypeAlias, cast

import attrs
from hypothesis import Phase, target
from hypothesis import settings as Settings  # noqa: N812  (the class, beside `settings=` arguments)
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from buyerjourney._checks import Coverage, CoverageCounter, label
from buyerjourney._core.funnel import Direction, Funnel, Transition
from buyerjourney._core.graph import PathTree
from buyerjourney._core.journey import Journey, apply
from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.policies import Decision, Policy
from buyerjourney._core.protocols import Context, Hooks
from buyerjourney._core.records import ACTIONS, Action, Actor, Record, RecordKind, Touch
from buyerjourney._core.scoring import Lead, Score, Scorer
from buyerjourney._engine import Engine
from buyerjourney._pipeline import Pipeline
from buyerjourney.errors import (
    ActionRefused,
    BuyerJourneyError,
    HookError,
    TransitionNotAllowed,
)
from buyerjourney.testing.oracle import Advance, Expectation, Operation, Oracle, _describe, _show
from buyerjourney.testing.strategies import (
    GUARD_NAMES,
    PEOPLE,
    UNKNOWN_EVENTS,
    actors,
    lead_attributes,
    standard_hooks,
)

__all__ = [
    "BUILTIN_RULES",
    "DEFAULT_LEADS",
    "DEFAULT_STEPS",
    "GENERIC_TOUCH_KINDS",
    "START",
    "WALK_MOVES",
    "Advance",
    "NotDeterministic",
    "Operation",
    "Outcome",
    "OwnersOf",
    "PipelineMachine",
    "pipeline_machine",
    "run_pipeline_machine",
]

Backend = Literal["table", "statemachine"]

START = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""The time at which a machine's clock starts by default."""

GENERIC_TOUCH_KINDS: tuple[str, ...] = ("page_view", "email_click", "demo_request")
"""Touch kinds a machine sends besides its funnel's events (which event policies act on)."""

DEFAULT_LEADS: tuple[str, ...] = ("lead-1", "lead-2", "lead-3", "lead-4")
"""The leads a machine's touches and actions are about by default."""

DEFAULT_STEPS = 30
"""Steps per example of a machine's ``TestCase`` unless the class says otherwise."""

WALK_MOVES = 32
"""The most moves one ``walk`` step makes (it stops earlier at a terminal stage or a refusal)."""

UNKNOWN_STAGE = "no_such_stage"
"""A stage name the override rule tries now and then; no funnel of the harness has it."""

BUILTIN_RULES: tuple[str, ...] = (
    "ingest",
    "ingest_duplicate",
    "ingest_late",
    "send",
    "accept",
    "reject",
    "override",
    "advance",
    "walk",
    "no_illegal_transitions",
    "one_known_owner_per_journey",
    "handoff_iff_owner_changes",
    "highest_stage_never_goes_down",
    "rebuild_equals_live_state",
    "log_is_append_only",
    "sla_breaches_are_escalated",
    "same_operations_same_log",
)
"""The rules and invariants of :class:`PipelineMachine` that :attr:`~PipelineMachine.disabled`
may name."""

_REASONS: tuple[str, ...] = ("", "   ", "checked with the buyer")
_BACKENDS: tuple[str, ...] = ("table", "statemachine")


# ---------------------------------------------------------------- operations


OwnersOf: TypeAlias = Callable[[Funnel], st.SearchStrategy[OwnerRules]]
"""A function of a funnel returning a strategy of owner rules, such as
:func:`~buyerjourney.testing.owner_rules`."""


@attrs.frozen
class Outcome:
    """What one operation did to the engine.

    Attributes:
        operation: The operation performed.
        records: The records it appended to the log.
        error: The library error it raised (a refusal, a rejected touch), or
            ``None`` when it succeeded.
    """

    operation: Operation
    records: tuple[Record, ...]
    error: BuyerJourneyError | None = None

    @property
    def refused(self) -> bool:
        """Whether the operation raised a library error."""
        return self.error is not None


def _apply(engine: Engine, operation: Operation) -> None:
    """Perform *operation* on *engine*, raising whatever the engine raises."""
    if isinstance(operation, Touch):
        engine.ingest_one(operation)
    elif isinstance(operation, Advance):
        engine.advance(operation.at)
    elif operation.action in ACTIONS:
        engine.perform(operation)
    else:
        msg = f"unknown action {operation.action!r}; use 'send', 'accept', 'reject' or 'override'"
        raise InvalidArgument(msg)


def _records_refusal(operation: Operation, error: BuyerJourneyError) -> bool:
    """Whether the engine logs *error* as a ``REFUSED`` record (manual actions only)."""
    return isinstance(operation, Action) and isinstance(
        error, (ActionRefused, TransitionNotAllowed, HookError)
    )


# ---------------------------------------------------------------- determinism of hooks


class _Raised:
    """What a hook call raised, kept to compare two calls."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __repr__(self) -> str:
        return f"raised {type(self.exc).__name__}: {self.exc}"


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        return _Raised(exc)


def _same(first: Any, second: Any) -> bool:
    if isinstance(first, _Raised) or isinstance(second, _Raised):
        return repr(first) == repr(second)
    try:
        if first == second:
            return True
    except Exception:
        return False
    return repr(first) == repr(second)  # NaN is not equal to itself, but prints the same


class NotDeterministic(AssertionError):
    """The harness found a hook, or the engine, giving two answers to the same input.

    Attributes:
        hooks: The hooks that answered twice differently, as ``(kind, name)``
            with kind ``"scorer"``, ``"policy"`` or ``"guard"``; empty when it
            is the engine (two fresh engines fed the same operations wrote
            different logs).
    """

    def __init__(self, notes: Sequence[tuple[str, str, str]], *, engine: bool = False) -> None:
        self.hooks = () if engine else tuple((kind, name) for kind, name, _ in notes)
        lines = [text for _, _, text in notes]
        head = "the same input gave another output:\n" if engine else ""
        super().__init__(head + "\n".join(lines))


class _Twice:
    """Call a hook twice with the same arguments; note the hook if the answers differ."""

    def __init__(
        self, kind: str, name: str, fn: Callable[..., Any], notes: list[tuple[str, str, str]]
    ) -> None:
        self.kind = kind
        self.name = name
        self.fn = fn
        self.notes = notes
        self.__name__ = name

    def twice(self, *args: Any) -> Any:
        first = _call(self.fn, args)
        second = _call(self.fn, args)
        if not _same(first, second):
            self.notes.append(
                (
                    self.kind,
                    self.name,
                    f"the {self.kind} {self.name!r} is not deterministic: called twice with the "
                    f"same arguments it gave {first!r}, then {second!r}. Hooks must not read the "
                    "clock, draw random numbers or keep state between calls.",
                )
            )
        if isinstance(first, _Raised):
            raise first.exc
        return first


class _TwiceScorer(_Twice):
    def __call__(self, lead: Lead, at: datetime) -> Score:
        result: Score = self.twice(lead, at)
        return result


class _TwicePolicy(_Twice):
    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        result: Decision = self.twice(journey, score, touch)
        return result


class _TwiceGuard(_Twice):
    def __call__(self, ctx: Context, /) -> bool:
        result: bool = self.twice(ctx)
        return result


def _hook_name(hook: object, default: str) -> str:
    if hook is None:
        return default
    return str(getattr(hook, "__name__", None) or type(hook).__name__)


# ---------------------------------------------------------------- the plan of a machine class


def _check_names(owner: str, name: str, value: object) -> tuple[str, ...]:
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        msg = f"{owner}.{name} must be a non-empty tuple of non-empty str (got {value!r})"
        raise InvalidArgument(msg)
    return tuple(dict.fromkeys(value))


@attrs.frozen
class _Plan:
    """A machine class's configuration, validated, with the strategies its rules draw from."""

    funnel: Funnel
    owners: OwnerRules
    hooks: Hooks
    scorer: Scorer | None
    policy: Policy | None
    scorer_name: str
    policy_name: str
    thresholds: tuple[float, ...]
    touch_kinds: tuple[str, ...]
    leads: tuple[str, ...]
    start: datetime
    backend: Backend
    replay_backends: tuple[Backend, ...]
    lead: st.SearchStrategy[str]
    kind: st.SearchStrategy[str]
    event: st.SearchStrategy[str]
    stage: st.SearchStrategy[str]
    actor: st.SearchStrategy[Actor]
    reason: st.SearchStrategy[str]
    gap: st.SearchStrategy[timedelta]
    back: st.SearchStrategy[timedelta]
    goal: st.SearchStrategy[str | None]
    goals: Mapping[str, int]
    """The index of each transition by its label (``"event: source -> target [if guard]"``)."""
    order: Mapping[Transition, int]
    """The index of each transition of the funnel."""
    legal: frozenset[tuple[str, str, str]]
    """Every (source, event, target) of the funnel's transitions."""

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline the machine's engines are built from."""
        return Pipeline(
            self.funnel, self.owners, self.hooks, self.scorer, self.policy, self.thresholds
        )

    @classmethod
    def of(cls, machine: type[PipelineMachine], funnel: object, owners: object) -> _Plan:
        """Validate *machine*'s configuration for *funnel* and *owners* (drawn or fixed)."""
        owner = machine.__name__
        if not isinstance(funnel, Funnel):
            msg = (
                f"{owner}.funnel must be a buyerjourney.Funnel or a strategy of funnels "
                f"(got {funnel!r}); set `funnel = ...` on the class, or build it with "
                "pipeline_machine(funnel)"
            )
            raise InvalidArgument(msg)
        if owners is None:
            owners = OwnerRules.for_funnel(funnel)
        elif not isinstance(owners, OwnerRules):
            msg = (
                f"{owner}.owners must be buyerjourney.OwnerRules, a function of the funnel "
                f"returning a strategy of them (such as owner_rules), or None (got {owners!r})"
            )
            raise InvalidArgument(msg)
        else:
            owners.validate(funnel)
        hooks = machine.hooks
        if hooks is None:
            hooks = standard_hooks() if set(funnel.guards) <= set(GUARD_NAMES) else Hooks()
        elif not isinstance(hooks, Hooks):
            msg = f"{owner}.hooks must be buyerjourney.Hooks or None (got {hooks!r})"
            raise InvalidArgument(msg)
        scorer, policy = machine.scorer, machine.policy
        for name, hook in (("scorer", scorer), ("policy", policy)):
            if hook is not None and not callable(hook):
                msg = f"{owner}.{name} must be callable or None (got {hook!r})"
                raise InvalidArgument(msg)
        thresholds = machine.thresholds
        if isinstance(thresholds, (str, bytes)) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds
        ):
            msg = f"{owner}.thresholds must be a tuple of numbers (got {thresholds!r})"
            raise InvalidArgument(msg)
        kinds = machine.touch_kinds
        if kinds is None:
            kinds = (*funnel.events, *GENERIC_TOUCH_KINDS)
        touch_kinds = _check_names(owner, "touch_kinds", kinds)
        leads = _check_names(owner, "leads", machine.leads)
        max_gap = machine.max_gap
        if not isinstance(max_gap, timedelta) or max_gap < timedelta(seconds=1):
            msg = f"{owner}.max_gap must be a timedelta of at least a second (got {max_gap!r})"
            raise InvalidArgument(msg)
        start = machine.start
        if not isinstance(start, datetime) or start.utcoffset() is None:
            msg = f"{owner}.start must be a timezone-aware datetime (got {start!r})"
            raise InvalidArgument(msg)
        backends = (machine.backend, *machine.replay_backends)
        if any(b not in _BACKENDS for b in backends):
            msg = (
                f"{owner}.backend and .replay_backends must name 'table' or 'statemachine' "
                f"(got {machine.backend!r} and {machine.replay_backends!r})"
            )
            raise InvalidArgument(msg)
        goals = {label(t): i for i, t in enumerate(funnel.transitions)}
        unit = "hours" if max_gap >= timedelta(hours=1) else "seconds"
        units = max_gap // timedelta(**{unit: 1})
        return cls(
            funnel=funnel,
            owners=owners,
            hooks=hooks,
            scorer=scorer,
            policy=policy,
            scorer_name=_hook_name(scorer, "scorer"),
            policy_name=_hook_name(policy, "policy"),
            thresholds=tuple(sorted(set(thresholds))),
            touch_kinds=touch_kinds,
            leads=leads,
            start=start,
            backend=machine.backend,
            replay_backends=tuple(machine.replay_backends),
            lead=st.sampled_from(leads),
            kind=st.sampled_from(touch_kinds),
            event=st.sampled_from((*funnel.events, UNKNOWN_EVENTS[0])),
            stage=st.sampled_from((*funnel.stage_names, UNKNOWN_STAGE)),
            actor=actors(owner_rules=owners, system=True),
            reason=st.sampled_from(_REASONS),
            gap=st.builds(timedelta, **{unit: st.integers(0, units)}),
            back=st.builds(timedelta, **{unit: st.integers(1, units)}),
            goal=st.sampled_from(tuple(goals)) if goals else st.none(),
            goals=goals,
            order={t: i for i, t in enumerate(funnel.transitions)},
            legal=frozenset((t.source, t.event, t.target) for t in funnel.transitions),
        )


def _disable(cls: type[PipelineMachine], names: object) -> None:
    """Switch off the built-in rules and invariants *names* on *cls*.

    Each is replaced by a plain method that calls the original (so a
    subclass may still call it) but carries no Hypothesis marker.
    """
    if isinstance(names, str) or not isinstance(names, Sequence):
        msg = f"{cls.__name__}.disabled must be a tuple of rule names (got {names!r})"
        raise InvalidArgument(msg)
    unknown = [n for n in names if n not in BUILTIN_RULES]
    if unknown:
        msg = (
            f"{cls.__name__}.disabled names {unknown!r}, not built-in rules of "
            f"PipelineMachine; choose among {', '.join(BUILTIN_RULES)}"
        )
        raise InvalidArgument(msg)
    for name in names:
        original = getattr(PipelineMachine, name)

        def switched_off(self: PipelineMachine, *args: Any, _f: Any = original, **kw: Any) -> Any:
            return _f(self, *args, **kw)

        switched_off.__name__ = name
        switched_off.__doc__ = f"{original.__doc__} (switched off: not run by Hypothesis)"
        setattr(cls, name, switched_off)


def _drawn(field: str) -> st.SearchStrategy[Any]:
    """Draw from the strategy *field* of the running machine's plan."""
    return st.runner().flatmap(lambda machine: getattr(machine.plan, field))


def _has_journeys(machine: PipelineMachine) -> bool:
    """Manual actions wait for a first journey (they would all be refused before)."""
    return bool(machine.engine.journeys)


def _current(what: str) -> st.SearchStrategy[Any]:
    """Draw *what* (a lead, an event, an actor) half the time from the machine's state.

    Random leads, events and actors are mostly refused; drawing also from the
    journeys that exist, the events legal where they are and the teams that
    own them lets runs go deep into the funnel.
    """
    return st.runner().flatmap(lambda machine: machine._choices(what))


@lru_cache(maxsize=1024)
def _either(values: tuple[Any, ...], fallback: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values) | fallback if values else fallback


@lru_cache(maxsize=1024)
def _owning_actors(
    people: tuple[str, ...], teams: tuple[str, ...], fallback: st.SearchStrategy[Actor]
) -> st.SearchStrategy[Actor]:
    if not teams:
        return fallback
    return st.builds(Actor, st.sampled_from(people), st.sampled_from(teams)) | fallback


def _journey_difference(live: Journey | None, oracle: Journey | None) -> str:
    """How a live journey differs from the oracle's, field by field."""
    if live is None or oracle is None:
        return f"the engine has {live}, the oracle {oracle}"
    return "; ".join(
        f"{f.name} is {getattr(live, f.name)!r}, the oracle says {getattr(oracle, f.name)!r}"
        for f in attrs.fields(Journey)
        if getattr(live, f.name) != getattr(oracle, f.name)
    )


# ---------------------------------------------------------------- the machine


def _choose_pipeline_rule() -> Callable[..., None]:
    """An ``@initialize`` rule that draws the funnel and owner rules of one example."""

    def choose_pipeline(self: PipelineMachine, setup: tuple[Funnel, OwnerRules | None]) -> None:
        """Draw this example's funnel (and owner rules) and build its engines."""
        funnel, owners = setup
        self._set_up(_Plan.of(type(self), funnel, owners))

    strategy = st.runner().flatmap(lambda machine: type(machine)._setups())
    rule_function: Callable[..., None] = initialize(setup=strategy)(choose_pipeline)
    return rule_function


class PipelineMachine(RuleBasedStateMachine):
    """A rule-based state machine that tests a pipeline end to end; subclass it.

    Configure it with class attributes (only :attr:`funnel` is required), or
    build a subclass with :func:`pipeline_machine`. Run it with its
    ``TestCase`` (collected by pytest and unittest) or with
    :func:`run_pipeline_machine`.

    Attributes:
        funnel: The funnel (required), or a strategy of funnels (such as
            :func:`~buyerjourney.testing.funnels`): each example then draws
            one in a first step, ``choose_pipeline``.
        owners: Owner rules (default ``OwnerRules.for_funnel(funnel)``), or a
            function of the funnel returning a strategy of owner rules (such
            as :func:`~buyerjourney.testing.owner_rules`), drawn per example.
        hooks: Guard hooks (default :func:`~buyerjourney.testing.standard_hooks`
            when the funnel's guards are all in
            :data:`~buyerjourney.testing.GUARD_NAMES`, else an empty registry).
        scorer: The scorer, or ``None``. A plain function works: the class
            does not turn it into a method.
        policy: The policy, or ``None`` (a plain function works too).
        thresholds: Scores whose crossing the engine records.
        touch_kinds: Touch kinds to send (default: the funnel's events, so
            that event policies fire, and :data:`GENERIC_TOUCH_KINDS`).
        leads: The lead ids touches and actions are about.
        max_gap: The longest time one step moves the clock (whole hours are
            drawn when it is an hour or more, else whole seconds).
        start: When the clock starts.
        backend: The live engine's backend.
        replay_backends: Backends on which fresh engines replay every
            operation to check that the same input gives the same log (empty
            to skip the check).
        steps: Steps per example of the ``TestCase``, or ``None`` for the
            loaded profile's ``stateful_step_count``.
        disabled: Names of built-in rules and invariants (see
            :data:`BUILTIN_RULES`) to switch off, such as ``("override",
            "ingest_late")``.

    For rules and invariants of your own, use :attr:`engine`, :attr:`records`,
    :attr:`now`, :attr:`operations`, :attr:`oracle` and :meth:`perform`
    (which checks the outcome of any operation you build). Act on the engine
    through :meth:`perform` only: the oracle follows the operations it is
    given, and an engine changed behind its back no longer matches it.
    """

    funnel: ClassVar[Funnel | st.SearchStrategy[Funnel]]
    owners: ClassVar[OwnerRules | OwnersOf | None] = None
    hooks: ClassVar[Hooks | None] = None
    scorer: ClassVar[Scorer | None] = None
    policy: ClassVar[Policy | None] = None
    thresholds: ClassVar[tuple[float, ...]] = ()
    touch_kinds: ClassVar[tuple[str, ...] | None] = None
    leads: ClassVar[tuple[str, ...]] = DEFAULT_LEADS
    max_gap: ClassVar[timedelta] = timedelta(hours=72)
    start: ClassVar[datetime] = START
    backend: ClassVar[Backend] = "table"
    replay_backends: ClassVar[tuple[Backend, ...]] = ("table",)
    steps: ClassVar[int | None] = DEFAULT_STEPS
    disabled: ClassVar[tuple[str, ...]] = ()

    _coverage_counter: ClassVar[CoverageCounter | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _disable(cls, cls.__dict__.get("disabled", ()))
        cls._coverage_counter = None
        for name in ("scorer", "policy", "owners"):
            value = cls.__dict__.get(name)
            if inspect.isfunction(value):
                setattr(cls, name, staticmethod(value))
        if cls._drawn_per_example():
            if not hasattr(cls, "choose_pipeline"):
                cls.choose_pipeline = _choose_pipeline_rule()
        elif getattr(cls, "funnel", None) is not None:
            cls._plan()
        parent = cls.TestCase.settings
        phases = tuple(p for p in parent.phases if p is not Phase.explain)
        steps = cls.steps
        if steps is None:
            cls.TestCase.settings = Settings(parent, phases=phases)
        elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            msg = f"{cls.__name__}.steps must be a positive int or None (got {steps!r})"
            raise InvalidArgument(msg)
        else:
            cls.TestCase.settings = Settings(parent, phases=phases, stateful_step_count=steps)

    @classmethod
    def _drawn_per_example(cls) -> bool:
        """Whether each example draws its funnel or owner rules (in ``choose_pipeline``)."""
        funnel, owners = getattr(cls, "funnel", None), cls.owners
        return isinstance(funnel, st.SearchStrategy) or (
            callable(owners) and not isinstance(owners, OwnerRules)
        )

    @classmethod
    def _setups(cls) -> st.SearchStrategy[tuple[Funnel, OwnerRules | None]]:
        """The (funnel, owner rules) pairs an example of this class may draw."""
        funnel, owners = cls.funnel, cls.owners
        funnels = funnel if isinstance(funnel, st.SearchStrategy) else st.just(funnel)
        if owners is None or isinstance(owners, OwnerRules):
            fixed = owners
            return funnels.map(lambda f: (f, fixed))
        if not callable(owners):
            msg = f"{cls.__name__}.owners must be OwnerRules, a function or None (got {owners!r})"
            raise InvalidArgument(msg)
        draw_owners = owners
        return funnels.flatmap(lambda f: st.tuples(st.just(f), draw_owners(f)))

    @classmethod
    def _plan(cls) -> _Plan | None:
        """The class's plan, or ``None`` when each example draws its own."""
        if cls._drawn_per_example():
            return None
        plan = cls.__dict__.get("_plan_cache")
        if plan is None:
            plan = _Plan.of(cls, getattr(cls, "funnel", None), cls.owners)
            cls._plan_cache = plan
        return plan

    _plan_cache: ClassVar[_Plan | None] = None

    def __init__(self) -> None:
        super().__init__()
        self._hook_notes: list[tuple[str, str, str]] = []
        self._operations: list[Operation] = []
        self._replay_notes: list[tuple[str, str, str]] = []
        self._ingested: list[Touch] = []
        self._touches_made = 0
        self._checked_legal = 0
        self._checked_handoffs = 0
        self._folded: dict[str, Journey] = {}
        self._seen: tuple[Record, ...] = ()
        self._highest: dict[str, str] = {}
        self._entered: set[str] = set()
        self._taken: set[tuple[str | None, str | None, str | None]] = set()
        plan = type(self)._plan()
        if plan is not None:
            self._set_up(plan)

    def _set_up(self, plan: _Plan) -> None:
        self.plan = plan
        """The validated configuration (funnel, owners, hooks ...) of this run."""
        self.oracle = Oracle(
            plan.funnel,
            owners=plan.owners,
            hooks=plan.hooks,
            scorer=plan.scorer,
            policy=plan.policy,
            thresholds=plan.thresholds,
            scorer_name=plan.scorer_name,
            policy_name=plan.policy_name,
        )
        """The independent oracle (:mod:`buyerjourney.testing.oracle`) every step is held to."""
        self.engine = self._engine(plan.backend, checked=True)
        """The live engine under test."""
        self._shadows = [self._engine(backend, checked=False) for backend in plan.replay_backends]
        self._legal = plan.legal

    def _engine(self, backend: Backend, *, checked: bool) -> Engine:
        """A fresh engine for the plan's pipeline; *checked*: its hooks are called twice."""
        plan = self.plan
        pipeline = plan.pipeline
        if checked:
            notes = self._hook_notes
            hooks = Hooks(
                {
                    name: _TwiceGuard("guard", name, fn, notes)
                    for name, fn in plan.hooks.guards.items()
                }
            )
            scorer, policy = plan.scorer, plan.policy
            if scorer is not None:
                scorer = _TwiceScorer("scorer", plan.scorer_name, scorer, notes)
            if policy is not None:
                policy = _TwicePolicy("policy", plan.policy_name, policy, notes)
            pipeline = attrs.evolve(pipeline, hooks=hooks, scorer=scorer, policy=policy)
        return pipeline.engine(backend=backend)

    # ------------------------------------------------------------ coverage

    @classmethod
    def coverage(cls) -> Coverage | None:
        """What the runs of this class reached so far, or ``None`` before any run.

        :func:`run_pipeline_machine` returns the coverage of its own runs;
        this is every run of the class (a ``TestCase`` run by pytest too).
        With a strategy of funnels, the coverage is that of the first funnel
        drawn.
        """
        counter = cls.__dict__.get("_coverage_counter")
        return None if counter is None else counter.result()

    @classmethod
    def reset_coverage(cls) -> None:
        """Forget the coverage counted so far."""
        cls._coverage_counter = None

    def teardown(self) -> None:
        """Count this run's log in the class's coverage (and target distinct stages)."""
        plan = getattr(self, "plan", None)
        if plan is not None:
            cls = type(self)
            counter = cls.__dict__.get("_coverage_counter")
            if counter is None:
                counter = CoverageCounter(plan.funnel)
                cls._coverage_counter = counter
            if counter.funnel is plan.funnel:
                counter.add(self.engine.records)
            with contextlib.suppress(InvalidArgument):  # outside a Hypothesis test
                target(float(len(self._entered)), label="distinct stages entered")
        super().teardown()

    # ------------------------------------------------------------ for subclasses

    @property
    def records(self) -> Sequence[Record]:
        """The live engine's log."""
        return self.engine.records

    @property
    def now(self) -> datetime:
        """The live engine's clock (the start time before anything happened)."""
        clock = self.engine.clock
        return clock if clock is not None else self.plan.start

    @property
    def operations(self) -> tuple[Operation, ...]:
        """Every operation performed so far, in order (clock advances included)."""
        return tuple(self._operations)

    def replay(self, backend: Backend | None = None) -> Engine:
        """A fresh engine (unchecked hooks) fed every operation so far; errors are ignored.

        Args:
            backend: The engine's backend (default: the machine's).
        """
        engine = self._engine(backend or self.plan.backend, checked=False)
        for operation in self._operations:
            with contextlib.suppress(BuyerJourneyError):
                _apply(engine, operation)
        return engine

    def perform(self, operation: Operation) -> Outcome:
        """Perform *operation* on the engine and check what it did.

        The clock is first advanced to the operation's time (as an
        :class:`Advance` of its own) when it is later than the engine's, so
        that SLA escalations are checked apart from the operation. The
        oracle is asked first what the operation must do; library errors
        (refusals, rejected touches) are caught and returned in the outcome;
        anything else propagates.

        Raises:
            AssertionError: A hook is not deterministic, or
                :meth:`check_outcome` finds a problem.
        """
        clock = self.engine.clock
        if not isinstance(operation, Advance) and (clock is None or operation.at > clock):
            self.perform(Advance(operation.at))
        if isinstance(operation, Action) and operation.action not in ACTIONS:
            msg = (
                f"unknown action {operation.action!r}; use 'send', 'accept', 'reject' or 'override'"
            )
            raise InvalidArgument(msg)
        before = dict(self.engine.journeys)
        before_clock = self.engine.clock
        expected = self.oracle.perform(operation)
        count = len(self.engine.records)
        error: BuyerJourneyError | None = None
        try:
            _apply(self.engine, operation)
        except BuyerJourneyError as exc:
            error = exc
        if self._hook_notes:
            raise NotDeterministic(self._hook_notes)
        outcome = Outcome(operation, tuple(self.engine.records[count:]), error)
        for record in outcome.records:
            if record.kind in (RecordKind.CREATED, RecordKind.TRANSITION) and record.target:
                self._entered.add(record.target)
            if record.kind is RecordKind.TRANSITION:
                self._taken.add((record.source, record.event, record.target))
        self._operations.append(operation)
        if isinstance(operation, Touch) and error is None:
            self._ingested.append(operation)
        self._replay(outcome)
        self.check_outcome(outcome, before, before_clock, expected)
        return outcome

    def check_outcome(
        self,
        outcome: Outcome,
        before: Mapping[str, Journey],
        before_clock: datetime | None,
        expected: Expectation,
    ) -> None:
        """Check one operation's outcome: the refusal contract, then the oracle.

        A refused manual action changes no journey and appends exactly one
        ``REFUSED`` record; a rejected touch, an unknown stage, or time that
        would go backwards appends nothing. Either way the clock does not
        move. Then the error, the records and the live journeys afterwards
        must be those of the oracle.

        Args:
            outcome: What the operation did.
            before: The journeys before it.
            before_clock: The engine's clock before it.
            expected: What the oracle said the operation must do.

        Raises:
            AssertionError: Naming the operation, what happened and what was expected.
        """
        op, error, new = outcome.operation, outcome.error, outcome.records
        what = _describe(op)
        if error is not None:
            if dict(self.engine.journeys) != dict(before):
                raise AssertionError(
                    f"{what} raised {type(error).__name__} but changed a journey: {error}"
                )
            if self.engine.clock != before_clock:
                raise AssertionError(f"{what} raised {type(error).__name__} but moved the clock")
            kinds = [r.kind for r in new]
            wanted = [RecordKind.REFUSED] if _records_refusal(op, error) else []
            if kinds != wanted:
                raise AssertionError(
                    f"{what} raised {type(error).__name__} ({error}) and appended "
                    f"{[k.value for k in kinds]}; a refusal appends exactly one 'refused' record, "
                    "a rejected touch nothing"
                )
        problem = expected.mismatch(new, error, who="the engine")
        if problem is not None:
            raise AssertionError(problem)
        live, oracle = dict(self.engine.journeys), dict(self.oracle.journeys)
        if live != oracle:
            lead = sorted(k for k in live.keys() | oracle.keys() if live.get(k) != oracle.get(k))[0]
            raise AssertionError(
                f"after {what}: the journey of {lead!r} is not the oracle's: "
                + _journey_difference(live.get(lead), oracle.get(lead))
            )

    def _replay(self, outcome: Outcome) -> None:
        """Feed the operation to the replay engines and note any difference."""
        op = outcome.operation
        for shadow in self._shadows:
            count = len(shadow.records)
            error: Exception | None = None
            try:
                _apply(shadow, op)
            except Exception as exc:
                error = exc
            same_error = type(error) is type(outcome.error) and str(error) == str(outcome.error)
            if tuple(shadow.records[count:]) != outcome.records or not same_error:
                self._replay_notes.append(
                    (
                        "engine",
                        shadow.backend,
                        f"step {len(self._operations)} ({_describe(op)}): a fresh "
                        f"{shadow.backend!r} engine fed the same operations wrote "
                        f"{[_show(r) for r in shadow.records[count:]]} and raised {error!r}; "
                        f"the live engine wrote {[_show(r) for r in outcome.records]} and "
                        f"raised {outcome.error!r}",
                    )
                )

    def _choices(self, what: str) -> st.SearchStrategy[Any]:
        plan, journeys = self.plan, self.engine.journeys
        if what == "lead":
            return _either(tuple(sorted(journeys)), plan.lead)
        if what == "pending_lead":
            pending = tuple(sorted(k for k, j in journeys.items() if j.pending_acceptance))
            return _either(pending, _either(tuple(sorted(journeys)), plan.lead))
        if what == "event":
            stages = sorted({j.stage for j in journeys.values()})
            legal = (e for stage in stages for e in plan.funnel.allowed_events(stage))
            return _either(tuple(dict.fromkeys(legal)), plan.event)
        people = tuple(dict.fromkeys((*PEOPLE, *plan.owners.members)))
        teams = tuple(sorted({j.owner for j in journeys.values()}))
        return _owning_actors(people, teams, plan.actor)

    # ------------------------------------------------------------ rules

    def _touch_id(self) -> str:
        self._touches_made += 1
        return f"t{self._touches_made}"

    @rule(
        lead=_drawn("lead"),
        kind=_drawn("kind"),
        attributes=lead_attributes(),
        gap=_drawn("gap"),
    )
    def ingest(self, lead: str, kind: str, attributes: dict[str, Any], gap: timedelta) -> None:
        """Ingest a new touch, *gap* after the clock."""
        self.perform(Touch(self._touch_id(), lead, self.now + gap, kind, {}, attributes))

    @precondition(lambda self: bool(self._ingested))
    @rule(which=st.integers(0, 2**16), gap=_drawn("gap"))
    def ingest_duplicate(self, which: int, gap: timedelta) -> None:
        """Send an ingested touch again, *gap* after the clock: the engine rejects it."""
        earlier = self._ingested[which % len(self._ingested)]
        self.perform(attrs.evolve(earlier, at=self.now + gap))

    @precondition(lambda self: self.engine.clock is not None)
    @rule(lead=_drawn("lead"), kind=_drawn("kind"), back=_drawn("back"))
    def ingest_late(self, lead: str, kind: str, back: timedelta) -> None:
        """Ingest a touch dated *back* before the clock: the engine rejects it."""
        self.perform(Touch(self._touch_id(), lead, self.now - back, kind))

    @precondition(_has_journeys)
    @rule(
        lead=_current("lead"),
        event=_current("event"),
        actor=_current("actor"),
        reason=_drawn("reason"),
        gap=_drawn("gap"),
    )
    def send(self, lead: str, event: str, actor: Actor, reason: str, gap: timedelta) -> None:
        """Send an event by hand (legal or not, permitted or not, with a reason or not)."""
        self.perform(Action("send", lead, self.now + gap, actor, event=event, reason=reason))

    @precondition(_has_journeys)
    @rule(lead=_current("pending_lead"), actor=_current("actor"), gap=_drawn("gap"))
    def accept(self, lead: str, actor: Actor, gap: timedelta) -> None:
        """Accept a handoff (waiting or not, by the receiving team or not)."""
        self.perform(Action("accept", lead, self.now + gap, actor))

    @precondition(_has_journeys)
    @rule(
        lead=_current("pending_lead"),
        actor=_current("actor"),
        reason=_drawn("reason"),
        gap=_drawn("gap"),
    )
    def reject(self, lead: str, actor: Actor, reason: str, gap: timedelta) -> None:
        """Reject a handoff (waiting or not, with a reason or not)."""
        self.perform(Action("reject", lead, self.now + gap, actor, reason=reason))

    @precondition(_has_journeys)
    @rule(
        lead=_current("lead"),
        stage=_drawn("stage"),
        actor=_current("actor"),
        reason=_drawn("reason"),
        gap=_drawn("gap"),
    )
    def override(self, lead: str, stage: str, actor: Actor, reason: str, gap: timedelta) -> None:
        """Set a stage by hand (any stage, an unknown one now and then)."""
        self.perform(Action("override", lead, self.now + gap, actor, stage=stage, reason=reason))

    @rule(gap=_drawn("gap"))
    def advance(self, gap: timedelta) -> None:
        """Let time pass: SLAs breached by then are escalated."""
        self.perform(Advance(self.now + gap))

    @precondition(_has_journeys)
    @rule(lead=_current("lead"), goal=_drawn("goal"), rnd=st.randoms(use_true_random=False))
    def walk(self, lead: str, goal: str | None, rnd: random.Random) -> None:
        """Walk a journey to a transition this run has not taken yet, take it, then go on.

        At most :data:`WALK_MOVES` moves, so that a step costs the same on
        a funnel of any size; the walk stops earlier at a terminal stage or
        when a move is refused.

        Each step is an ordinary checked operation: the owning team accepts a
        waiting handoff, or sends an event leaving the journey's stage.
        The walk aims at a transition this run has not taken yet and that an
        open journey can get to within the walk's moves: one into a stage
        not entered yet in this run if there is one, an exit (to lost,
        churned) only when no other is left, an unguarded one before a
        guarded one (whose guard may refuse and end the walk), and among
        equals the first in the funnel's order from *goal* on (a
        transition's label, drawn by Hypothesis), round to the start. So every walk takes
        something new, each run heads for the stages it has not seen, and
        every transition is aimed at, whatever the branches and however
        deep. The journey walked is *lead*'s if it can get
        there, else the one nearest to it; it follows a shortest way, then
        takes the transition. After that (or if a guard sends it elsewhere,
        or nothing is left to aim at) each event is a forward one (toward
        the won stages) into a stage not entered yet in this run, then any
        forward one, then one into a stage not entered yet, then any; *rnd*
        (drawn by Hypothesis, so the same on every replay) picks among
        equals. Without this rule most runs stay in the first stages of a
        long funnel.
        """
        lead, way = self._aim(lead, goal)
        for _ in range(WALK_MOVES):
            journey = self.engine.journeys.get(lead)
            if journey is None:
                return
            actor = Actor(PEOPLE[0], journey.owner)
            if journey.pending_acceptance:
                operation: Operation = Action("accept", lead, self.now, actor)
            else:
                if way and way[0].source != journey.stage:
                    way.clear()  # a guard took another way: steer from here
                move = way.pop(0) if way else self._steer(journey.stage, rnd)
                if move is None:
                    return
                operation = Action(
                    "send", lead, self.now, actor, event=move.event, reason=_REASONS[-1]
                )
            if self.perform(operation).refused:
                return

    def _aim(self, lead: str, goal: str | None) -> tuple[str, list[Transition]]:
        """The journey to walk and the moves to make: a shortest way to the aim, then the aim.

        Only what lies within the walk's moves of the open journeys is looked
        at, so this costs the same on a funnel of any size.
        """
        plan, journeys = self.plan, self.engine.journeys
        funnel = plan.funnel
        at: dict[str, str] = {}
        for key in (lead, *sorted(journeys)):
            journey = journeys.get(key)
            if journey is not None and funnel.transitions_from(journey.stage):
                at.setdefault(journey.stage, key)
        if goal is None or not at:
            return lead, []
        first, *others = at
        near = PathTree(funnel.transitions_from, first, also=others, limit=WALK_MOVES - 1)
        start, count = plan.goals[goal], len(plan.order)
        best: tuple[tuple[bool, bool, bool, int], Transition] | None = None
        for stage in near:
            for t in funnel.transitions_from(stage):
                if (t.source, t.event, t.target) in self._taken:
                    continue
                entered = t.target in self._entered
                exit = t.direction is Direction.EXIT
                rank = (entered, exit, t.guard is not None, (plan.order[t] - start) % count)
                if best is None or rank < best[0]:
                    best = (rank, t)
        if best is None:
            return lead, []
        aim = best[1]
        origin = near.origin(aim.source)
        assert origin is not None  # the aim's source is in the tree
        return at[origin], [*near.path(aim.source), aim]

    def _steer(self, stage: str, rnd: random.Random) -> Transition | None:
        """The move out of *stage* that best heads toward unreached stages, or ``None``."""
        funnel = self.plan.funnel
        out = funnel.transitions_from(stage)
        if not out:
            return None
        forward = [
            t
            for t in out
            if t.direction is Direction.FORWARD and not funnel.stage(t.target).kind.is_exit
        ]
        new = [t for t in out if t.target not in self._entered]
        pool = [t for t in forward if t in new] or forward or new or list(out)
        return rnd.choice(pool)

    # ------------------------------------------------------------ invariants

    @invariant()
    def no_illegal_transitions(self) -> None:
        """Every transition in the log is one of the funnel's; a rejection recycles backward."""
        records = self.engine.records
        for record in records[self._checked_legal :]:
            if record.kind is RecordKind.TRANSITION:
                if (record.source, record.event, record.target) not in self._legal:
                    raise AssertionError(f"illegal transition in the log: {_show(record)}")
            elif record.kind is RecordKind.REJECTED:
                key = (record.source, record.event, record.target)
                recycles = any(
                    t.direction is Direction.BACKWARD
                    for t in self.plan.funnel.transitions
                    if (t.source, t.event, t.target) == key
                )
                if not recycles:
                    raise AssertionError(
                        f"a rejection that is not a recycle transition: {_show(record)}"
                    )
        self._checked_legal = len(records)

    @invariant()
    def one_known_owner_per_journey(self) -> None:
        """Every journey has one owner, and it is a team the owner rules know."""
        teams = self.plan.owners.teams
        for journey in self.engine.journeys.values():
            if journey.owner not in teams:
                raise AssertionError(
                    f"journey {journey.lead_id!r} is owned by {journey.owner!r}, "
                    f"not one of the known teams {teams}"
                )

    @invariant()
    def handoff_iff_owner_changes(self) -> None:
        """A handoff follows a transition or override exactly when the owner rules change team.

        The new owner is the rules' owner of the stage entered, for the
        lead's attributes at that moment (routing time); a journey's first
        owner is the rules' owner of the initial stage.
        """
        funnel, owners = self.plan.funnel, self.plan.owners
        records = self.engine.records
        for i in range(self._checked_handoffs, len(records)):
            record = records[i]
            current = self._folded.get(record.lead_id)
            if current is None and record.kind is RecordKind.REFUSED:
                continue
            after = apply(funnel, current, record)
            if record.kind is RecordKind.CREATED:
                expected = owners.owner(after.stage, after.attributes)
                if after.owner != expected:
                    raise AssertionError(
                        f"{_show(record)} starts with owner {after.owner!r}; "
                        f"the rules say {expected!r}"
                    )
            if record.kind in (RecordKind.TRANSITION, RecordKind.OVERRIDE):
                expected = owners.owner(after.stage, after.attributes)
                following = records[i + 1] if i + 1 < len(records) else None
                handoff = (
                    following is not None
                    and following.kind is RecordKind.HANDOFF
                    and following.lead_id == record.lead_id
                )
                changes = expected != after.owner
                if handoff != changes:
                    raise AssertionError(
                        f"{_show(record)}: the owner goes from {after.owner!r} to {expected!r} but "
                        + ("no handoff follows" if changes else f"a handoff follows: {following}")
                    )
                if handoff:
                    assert following is not None
                    if (following.from_team, following.to_team) != (after.owner, expected):
                        raise AssertionError(
                            f"{_show(following)} should hand off from {after.owner!r} "
                            f"to {expected!r}"
                        )
            if record.kind is RecordKind.HANDOFF:
                previous = records[i - 1] if i > 0 else None
                follows = (
                    previous is not None
                    and previous.lead_id == record.lead_id
                    and previous.kind in (RecordKind.TRANSITION, RecordKind.OVERRIDE)
                )
                if not follows:
                    raise AssertionError(
                        f"{_show(record)} does not follow a transition or override of its lead"
                    )
            self._folded[record.lead_id] = after
        self._checked_handoffs = len(records)

    @invariant()
    def highest_stage_never_goes_down(self) -> None:
        """The highest stage reached never loses rank.

        It is also on the success path, and never below the current stage
        (when that is on the success path).
        """
        funnel = self.plan.funnel
        for lead_id, journey in self.engine.journeys.items():
            highest = funnel.stage(journey.highest)
            if highest.kind.is_exit:
                raise AssertionError(
                    f"journey {lead_id!r} has exit stage {highest.name!r} as its highest stage"
                )
            stage = funnel.stage(journey.stage)
            if not stage.kind.is_exit and highest.rank < stage.rank:
                raise AssertionError(
                    f"journey {lead_id!r} is in {stage.name!r} (rank {stage.rank}) but its "
                    f"highest stage is {highest.name!r} (rank {highest.rank})"
                )
            previous = self._highest.get(lead_id)
            if previous is not None and highest.rank < funnel.stage(previous).rank:
                raise AssertionError(
                    f"journey {lead_id!r}'s highest stage went down from {previous!r} "
                    f"to {highest.name!r}"
                )
            self._highest[lead_id] = journey.highest

    @invariant()
    def rebuild_equals_live_state(self) -> None:
        """Folding the log from scratch gives exactly the live journeys."""
        rebuilt = self.engine.rebuild()
        live = dict(self.engine.journeys)
        if rebuilt != live:
            differing = sorted(
                k for k in rebuilt.keys() | live.keys() if rebuilt.get(k) != live.get(k)
            )
            lead = differing[0]
            raise AssertionError(
                f"rebuilding from the log differs from the live state for {differing}; "
                f"for {lead!r}:\n  rebuilt: {rebuilt.get(lead)}\n  live:    {live.get(lead)}"
            )

    @invariant()
    def log_is_append_only(self) -> None:
        """Records are only appended, in order.

        Earlier records never change, ``seq`` counts 0, 1, 2 ... without gaps,
        and times never go backwards.
        """
        records = tuple(self.engine.records)
        seen = self._seen
        if records[: len(seen)] != seen:
            raise AssertionError("an earlier record of the log changed or vanished")
        for i in range(len(seen), len(records)):
            record = records[i]
            if record.seq != i:
                raise AssertionError(f"record {i} has seq {record.seq}: {_show(record)}")
            if i > 0 and record.at < records[i - 1].at:
                raise AssertionError(
                    f"{_show(record)} at {record.at.isoformat()} comes after a record at "
                    f"{records[i - 1].at.isoformat()}"
                )
        self._seen = records

    @invariant()
    def sla_breaches_are_escalated(self) -> None:
        """Every journey past its stage's SLA at the engine's clock has been escalated."""
        clock = self.engine.clock
        if clock is None:
            return
        for late in self.engine.overdue(clock):
            journey = self.engine.journey(late.lead_id)
            if not journey.escalated:
                raise AssertionError(
                    f"journey {late.lead_id!r} is past its SLA in {late.stage!r} since "
                    f"{late.deadline.isoformat()} (clock {clock.isoformat()}) but was not escalated"
                )

    @invariant()
    def same_operations_same_log(self) -> None:
        """Fresh engines fed the same operations (on each replay backend) write the same log."""
        if self._replay_notes:
            raise NotDeterministic(self._replay_notes, engine=True)
        live = self.engine.records
        for shadow in self._shadows:
            if shadow.records != live:
                raise AssertionError(
                    f"a fresh {shadow.backend!r} engine fed the same operations wrote another log"
                )


# ---------------------------------------------------------------- building and running


def _class_name(funnel: Funnel | st.SearchStrategy[Funnel]) -> str:
    if not isinstance(funnel, Funnel):
        return "GeneratedPipelineMachine"
    words = [w for w in re.split(r"[^0-9A-Za-z]+", funnel.name) if w]
    stem = "".join(w[:1].upper() + w[1:] for w in words)
    if not stem or not stem[0].isalpha():
        stem = "Funnel" + stem
    return f"{stem}PipelineMachine"


def pipeline_machine(
    funnel: Funnel | Pipeline | st.SearchStrategy[Funnel],
    *,
    owners: OwnerRules | OwnersOf | None = None,
    hooks: Hooks | None = None,
    scorer: Scorer | None = None,
    policy: Policy | None = None,
    thresholds: Sequence[float] | None = None,
    touch_kinds: Sequence[str] | None = None,
    leads: Sequence[str] | None = None,
    max_gap: timedelta | None = None,
    replay_backends: Sequence[Backend] | None = None,
    disabled: Sequence[str] | None = None,
    name: str | None = None,
) -> type[PipelineMachine]:
    """Build a :class:`PipelineMachine` subclass for a funnel or a whole pipeline.

    Run it by exposing its ``TestCase`` in a test module, which pytest and
    unittest collect::

        TestSeedPipeline = pipeline_machine(default_pipeline(presets.seed())).TestCase

    or call :func:`run_pipeline_machine` on it, or subclass it to add rules
    and invariants.

    Args:
        funnel: The funnel, a strategy of funnels (one drawn per example), or
            a :class:`~buyerjourney.Pipeline` whose funnel, owners, hooks,
            scorer, policy and thresholds are used unless given below.
        owners: Owner rules (default: the pipeline's, or the funnel's owners),
            or a function of the funnel returning a strategy of them.
        hooks: Guard hooks (default: see :attr:`PipelineMachine.hooks`).
        scorer: The scorer.
        policy: The policy.
        thresholds: Scores whose crossing is recorded.
        touch_kinds: See :attr:`PipelineMachine.touch_kinds`.
        leads: See :attr:`PipelineMachine.leads`.
        max_gap: See :attr:`PipelineMachine.max_gap`.
        replay_backends: See :attr:`PipelineMachine.replay_backends`.
        disabled: Built-in rules and invariants to switch off, by name (see
            :data:`BUILTIN_RULES`), such as ``["override"]``.
        name: The class name (default from the funnel's name, e.g.
            ``SeedPipelineMachine``).

    Raises:
        InvalidArgument: The configuration is invalid (the message names the
            attribute); InvalidOwnerRules or UnknownHook when the rules or
            hooks do not fit the funnel.
    """
    namespace: dict[str, Any] = {}
    if isinstance(funnel, Pipeline):
        namespace.update(
            funnel=funnel.funnel,
            owners=funnel.owners,
            hooks=funnel.hooks,
            scorer=funnel.scorer,
            policy=funnel.policy,
            thresholds=tuple(funnel.thresholds),
        )
    elif isinstance(funnel, (Funnel, st.SearchStrategy)):
        namespace["funnel"] = funnel
    else:
        msg = (
            "funnel must be a buyerjourney.Funnel, a Pipeline or a strategy of funnels "
            f"(got {funnel!r})"
        )
        raise InvalidArgument(msg)
    given = {
        "owners": owners,
        "hooks": hooks,
        "scorer": scorer,
        "policy": policy,
        "thresholds": None if thresholds is None else tuple(thresholds),
        "touch_kinds": None if touch_kinds is None else tuple(touch_kinds),
        "leads": None if leads is None else tuple(leads),
        "max_gap": max_gap,
        "replay_backends": None if replay_backends is None else tuple(replay_backends),
        "disabled": None if disabled is None else tuple(disabled),
    }
    namespace.update({k: v for k, v in given.items() if v is not None})
    for key in ("scorer", "policy", "owners"):
        if inspect.isfunction(namespace.get(key)):
            namespace[key] = staticmethod(namespace[key])
    chosen = namespace["funnel"]
    class_name = name or _class_name(chosen)
    if not class_name.isidentifier():
        msg = f"name must be an identifier (got {class_name!r})"
        raise InvalidArgument(msg)
    namespace["__module__"] = __name__
    namespace["__qualname__"] = class_name
    about = f"funnel {chosen.name!r}" if isinstance(chosen, Funnel) else "generated funnels"
    namespace["__doc__"] = f"A PipelineMachine for {about}."
    return type(class_name, (PipelineMachine,), namespace)


def run_pipeline_machine(
    machine_class: type[PipelineMachine], *, settings: Settings | None = None
) -> Coverage | None:
    """Run a :class:`PipelineMachine` class as a test now; raise on the first failure found.

    Args:
        machine_class: The machine class (a subclass of :class:`PipelineMachine`).
        settings: Hypothesis settings (default: the class's ``TestCase.settings``,
            :data:`DEFAULT_STEPS` steps per example on the profile loaded when
            the class was created).

    Returns:
        The coverage of the runs: the stages and transitions reached, with
        counts (``None`` if no run set up a pipeline). After a failure, the
        coverage so far is :meth:`PipelineMachine.coverage`.

    Raises:
        InvalidArgument: *machine_class* is not a :class:`PipelineMachine` subclass.
        AssertionError: An invariant or check failed (after shrinking; the
            report shows the steps).
    """
    if not (isinstance(machine_class, type) and issubclass(machine_class, PipelineMachine)):
        msg = f"machine_class must be a PipelineMachine subclass (got {machine_class!r})"
        raise InvalidArgument(msg)
    if machine_class is PipelineMachine:
        msg = "run a subclass of PipelineMachine that sets `funnel`, or use pipeline_machine()"
        raise InvalidArgument(msg)
    chosen = settings if settings is not None else machine_class.TestCase.settings
    machine_class.reset_coverage()
    run_state_machine_as_test(_factory(machine_class), settings=chosen)
    return machine_class.coverage()


def _factory(machine_class: type[PipelineMachine]) -> type[PipelineMachine]:
    """What Hypothesis should build machines with: the class, unless its source is not Python.

    Hypothesis reads a machine class's source to key its example database. A
    class written in a file that is not Python (a Markdown page run by a
    documentation runner) makes :func:`inspect.getsource` raise
    :class:`SyntaxError`, which Hypothesis does not expect; a plain factory
    stands in for such a class (its examples then share one database key).
    """
    try:
        inspect.getsource(machine_class)
    except SyntaxError:

        def build() -> PipelineMachine:
            return machine_class()

        return cast("type[PipelineMachine]", build)
    except (OSError, TypeError):
        pass
    return machine_class
