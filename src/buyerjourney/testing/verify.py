"""Verify a pipeline: find every problem of a funnel, its owner rules and its hooks.

:func:`verify` (or :func:`verify_pipeline` for a
:class:`~buyerjourney.Pipeline`) returns a :class:`VerificationReport`
listing each problem as a :class:`Finding`: a stable code, a severity, what is
wrong, where (a stage, a transition, an event, a guard, an owner rule, the
scorer or the policy) and, when there is one, a minimal example: a shortest
event path that reaches the problem, or the shrunk steps of the run that hit
it. ::

    from buyerjourney import presets
    from buyerjourney._pipeline import default_pipeline
    from buyerjourney.testing.verify import verify_pipeline

    report = verify_pipeline(default_pipeline(presets.demand_waterfall()))
    assert report.ok, str(report)

The checks come in three passes.

1. **Structure** (nothing runs): owner rules (gaps, shadowed overrides,
   unknown teams ...), guards the hooks do not register, gates that a lead can
   bypass (unless the transition declares ``bypasses_gate``: then the bypass
   is a finding of severity info), gates entered without a change of owning
   team, gates that no member can accept, recycle loops with no way out,
   stages that cannot lead to a won stage, and built-in policies naming
   events or stages the funnel lacks.
   These checks live in :mod:`buyerjourney._checks`, which needs no
   Hypothesis (``buyerjourney verify --structure-only`` runs them alone).
   What :class:`~buyerjourney.Funnel` itself rejects when it is built
   (unreachable stages, dead ends, exits from terminal stages, SLAs on
   terminal stages ...) cannot occur in a funnel, so it is not repeated here.
2. **Model exploration** (deterministic): every guard is asked on a set of
   representative leads (profiles taken from the owner rules, the scorer's
   attribute rules and common segments, at scores around every threshold),
   then with :func:`hypothesis.find` on generated contexts; the funnel is
   walked breadth-first for each profile. This finds guards that are never
   true, events never enabled, stages never reached and handoffs that never
   happen.
3. **Engine exploration** with Hypothesis (deterministic by default): random
   streams of touches and manual actions drive a real
   :class:`~buyerjourney.Engine`; a failing scorer, policy or guard, a
   policy whose events are refused, a log that does not rebuild to the live
   state, or a second run of the same steps giving another log is reported
   with the shrunk steps. Then the stateful harness of
   :mod:`buyerjourney.testing.harness` checks its invariants after every step;
   a violation is reported with its shrunk steps.

Behavioural findings depend on what was explored: raise *budget* to explore
more, and pass *attributes* and *touch_kinds* that your real leads have, so
that guards and hooks see them.

:func:`verify` runs Hypothesis searches of its own; to call it inside a
``@given`` test, suppress :attr:`hypothesis.HealthCheck.nested_given` there.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, configuration, find, given
from hypothesis import settings as Settings  # noqa: N812  (the class, beside `settings` values)
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.errors import Flaky, NoSuchExample

from buyerjourney._adapters.files import load_unchecked_owner_rules
from buyerjourney._checks import (
    CODES,
    DEFAULT_BUDGET,
    CoverageCounter,
    Finding,
    MissingGuards,
    Severity,
    Structure,
    VerificationReport,
    as_missing_guards,
    fmt_attributes,
    funnel_owners,
    hints,
    label,
    lead_profiles,
    where_transition,
)
from buyerjourney._core.funnel import Funnel, Transition
from buyerjourney._core.graph import PathTree, reach
from buyerjourney._core.lifecycle import policy_actor
from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.policies import Policy
from buyerjourney._core.protocols import Context, Guard, Hooks, evaluate_guard, hook_name
from buyerjourney._core.records import Actor, Record, RecordKind, Touch
from buyerjourney._core.scoring import Scorer
from buyerjourney._core.table import CompiledFunnel
from buyerjourney._engine import Engine
from buyerjourney._pipeline import DEFAULT_POINTS, Pipeline
from buyerjourney.errors import ActionRefused, HookError, TransitionNotAllowed
from buyerjourney.testing.harness import (
    NotDeterministic,
    PipelineMachine,
    pipeline_machine,
    run_pipeline_machine,
)
from buyerjourney.testing.strategies import LEAD_ATTRIBUTES, contexts

__all__ = [
    "CODES",
    "DEFAULT_BUDGET",
    "DEFAULT_STEPS",
    "Finding",
    "MissingGuards",
    "Severity",
    "VerificationReport",
    "load_unchecked_owner_rules",
    "project_root",
    "verify",
    "verify_pipeline",
]

DEFAULT_STEPS: Final = 25
"""The most steps (touches and actions) in one explored run."""


_T0: Final = datetime(2024, 1, 1, tzinfo=timezone.utc)
_REASON: Final = "verify"
_BASE_SCORES: Final[tuple[float, ...]] = (0.0, 9.999, 10.0, 49.999, 50.0, 100.0)
_NEUTRAL_KIND: Final = "page_view"
_LEADS: Final = 2
_GAPS_MINUTES: Final[tuple[int, ...]] = (0, 30, 60 * 24, 60 * 80)
_MAX_ROUNDS: Final = 8
_AFTER_PLAY: Final = frozenset({"invariant-violation", "nondeterministic"})
"""The codes :meth:`_Verification.run_steps` finds once a run's steps are all played."""


# ---------------------------------------------------------------- entry points


def verify(
    funnel: Funnel,
    owners: OwnerRules | None = None,
    hooks: Hooks | None = None,
    scorer: Scorer | None = None,
    policy: Policy | None = None,
    *,
    thresholds: Iterable[float] = (),
    budget: int = DEFAULT_BUDGET,
    steps: int = DEFAULT_STEPS,
    attributes: Iterable[Mapping[str, Any]] = (),
    touch_kinds: Iterable[str] = (),
    derandomize: bool = True,
    missing_guards: MissingGuards = "error",
    harness: bool = True,
    database: str | os.PathLike[str] | ExampleDatabase | None = None,
    project: str | os.PathLike[str] | None = None,
) -> VerificationReport:
    """Find every problem of *funnel* with its owner rules and hooks.

    Never raises for a problem of the pipeline: each one becomes a finding.

    Args:
        funnel: The funnel to verify.
        owners: The owner rules; by default each stage's ``owner``. They may
            have problems: those are findings too (and then the engine
            cannot be built, so the engine exploration is skipped).
        hooks: The guard hooks. A guard the funnel names but *hooks* lacks is
            a finding (see *missing_guards*); its transitions are explored as
            never enabled.
        scorer: The scorer, or ``None`` (scores stay 0).
        policy: The handoff policy, or ``None`` (journeys move by hand only).
        thresholds: Scores whose crossing the engine records.
        budget: Examples per Hypothesis search (each guard search, each round
            of the engine exploration, the stateful harness). Higher finds
            more and takes longer.
        steps: The most touches and actions in one explored run.
        attributes: Lead profiles (attribute mappings) to try besides the
            built-in ones, such as ``{"plan": "pro"}``: give the attributes
            your guards, owner rules and hooks look at.
        touch_kinds: Touch kinds to send besides those the scorer and policy
            name and the default points kinds.
        derandomize: Explore the same examples on every call (the default),
            so that a report is reproducible; ``False`` explores new ones.
        missing_guards: ``"error"`` reports a guard the hooks lack as
            ``unknown-hook``; ``"warning"`` reports it as ``guard-unavailable``
            (the command line, which has no code to register guards with).
        harness: Also run the stateful harness of
            :mod:`buyerjourney.testing.harness`.
        database: Where Hypothesis keeps the examples it found: a
            directory, or an :class:`~hypothesis.database.ExampleDatabase`.
            By default, the database of the Hypothesis settings in effect
            (your profile's) when *derandomize* is ``False``, and none when
            it is ``True`` (derandomized runs do not need one).
        project: A file or directory of your project (a funnel file, say):
            Hypothesis's files go to ``.hypothesis`` in its root (see
            :func:`project_root`), not into the current directory, unless
            the Hypothesis home is already set (``HYPOTHESIS_STORAGE_DIRECTORY``
            or :func:`hypothesis.configuration.set_hypothesis_home_dir`).
            Default: the project of the current directory.

    Returns:
        The report; :attr:`VerificationReport.ok` when there is no error.

    Raises:
        ValueError: *budget* or *steps* is not a positive int, or
            *missing_guards* is neither ``"error"`` nor ``"warning"``.
    """
    options = _Options(
        budget=_positive("budget", budget),
        steps=_positive("steps", steps),
        attributes=tuple(dict(a) for a in attributes),
        touch_kinds=tuple(touch_kinds),
        derandomize=derandomize,
        missing_guards=as_missing_guards(missing_guards),
        harness=harness,
    )
    run = _Verification(
        funnel,
        owners=owners if owners is not None else funnel_owners(funnel),
        hooks=hooks if hooks is not None else Hooks(),
        scorer=scorer,
        policy=policy,
        thresholds=tuple(thresholds),
        options=options,
    )
    with _hypothesis_home(project):
        run.options = attrs.evolve(options, database=_database(database, derandomize=derandomize))
        return run.run()


def verify_pipeline(
    pipeline: Pipeline,
    *,
    budget: int = DEFAULT_BUDGET,
    steps: int = DEFAULT_STEPS,
    attributes: Iterable[Mapping[str, Any]] = (),
    touch_kinds: Iterable[str] = (),
    derandomize: bool = True,
    missing_guards: MissingGuards = "error",
    harness: bool = True,
    database: str | os.PathLike[str] | ExampleDatabase | None = None,
    project: str | os.PathLike[str] | None = None,
) -> VerificationReport:
    """Verify a :class:`~buyerjourney.Pipeline`; see :func:`verify` for the options.

    Args:
        pipeline: The funnel, owners, hooks, scorer, policy and thresholds.
        budget: Examples per Hypothesis search.
        steps: The most touches and actions in one explored run.
        attributes: Extra lead profiles to try.
        touch_kinds: Extra touch kinds to send.
        derandomize: Explore the same examples on every call.
        missing_guards: How to report guards the hooks lack.
        harness: Also run the stateful harness.
        database: Where Hypothesis keeps its examples.
        project: A file or directory of the project that keeps ``.hypothesis``.

    Returns:
        The report.
    """
    return verify(
        pipeline.funnel,
        pipeline.owners,
        pipeline.hooks,
        pipeline.scorer,
        pipeline.policy,
        thresholds=pipeline.thresholds,
        budget=budget,
        steps=steps,
        attributes=attributes,
        touch_kinds=touch_kinds,
        derandomize=derandomize,
        missing_guards=missing_guards,
        harness=harness,
        database=database,
        project=project,
    )


_PROJECT_MARKERS: Final = ("pyproject.toml", "setup.cfg", "setup.py", ".git", ".hypothesis")


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The root of the project holding *start*: where its ``.hypothesis`` belongs.

    The nearest directory, from *start* (a file's directory, or the
    directory itself) up, that holds ``pyproject.toml``, ``setup.cfg``,
    ``setup.py``, ``.git`` or ``.hypothesis``; *start* itself when none does.

    Args:
        start: A file or directory of the project (default: the current directory).

    Returns:
        The project's root directory.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    if not here.is_dir():
        here = here.parent
    for directory in (here, *here.parents):
        if any((directory / marker).exists() for marker in _PROJECT_MARKERS):
            return directory
    return here


@contextlib.contextmanager
def _hypothesis_home(project: str | os.PathLike[str] | None) -> Iterator[None]:
    """Point Hypothesis's home at the project's ``.hypothesis`` while verifying.

    A home the user chose (``HYPOTHESIS_STORAGE_DIRECTORY``, or one set in
    code) is kept; Hypothesis's own default, ``.hypothesis`` in the directory
    Python started in, is not.
    """
    key = "__hypothesis_home_directory"
    current = getattr(configuration, key, None)
    default = getattr(configuration, key + "_default", None)
    chosen = current is not None and current != default
    if chosen or (current is None and os.getenv("HYPOTHESIS_STORAGE_DIRECTORY")):
        yield
        return
    configuration.set_hypothesis_home_dir(project_root(project) / ".hypothesis")
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(current)


def _database(
    database: str | os.PathLike[str] | ExampleDatabase | None, *, derandomize: bool
) -> ExampleDatabase | None:
    if isinstance(database, ExampleDatabase):
        return database
    if database is not None:
        return DirectoryBasedExampleDatabase(os.fspath(database))
    if derandomize:
        return None
    return Settings().database  # the profile's, under the project's home by now


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive int (got {value!r})"
        raise ValueError(msg)
    return value


@attrs.frozen
class _Options:
    budget: int
    steps: int
    attributes: tuple[Mapping[str, Any], ...]
    touch_kinds: tuple[str, ...]
    derandomize: bool
    missing_guards: MissingGuards
    harness: bool
    database: ExampleDatabase | None = None

    def settings(self, *, verbosity: Verbosity = Verbosity.quiet) -> Settings:
        return Settings(
            max_examples=self.budget,
            derandomize=self.derandomize,
            database=self.database,
            deadline=None,
            print_blob=False,
            verbosity=verbosity,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
        )


_TYPICAL_LEADS: Final[tuple[Mapping[str, Any], ...]] = tuple(
    {key: value} for key, values in LEAD_ATTRIBUTES.items() for value in values
)
"""One lead per typical attribute value of the strategies, tried after the rule profiles."""


def _scores(hints: Any) -> list[float]:
    values = set(_BASE_SCORES)
    for t in hints.scores:
        if isinstance(t, (int, float)) and math.isfinite(t):
            values |= {float(t), float(t) - 0.001, float(t) + 0.001}
    return sorted(values)


# ---------------------------------------------------------------- observations


class _Observer:
    """Collects what happened: guard answers, stages entered, transitions, handoffs."""

    def __init__(self) -> None:
        self.guard_true: set[str] = set()
        self.reached: set[str] = set()
        self.handoffs: set[tuple[str, str, str, str]] = set()
        self._last_move: dict[str, tuple[str, str]] = {}

    def record_guard(self, name: str, result: object) -> None:
        if result is True:
            self.guard_true.add(name)

    def on_record(self, record: Record, journey: object) -> None:
        """Listener hook: learn stages entered and handoffs made from the log."""
        if record.kind is RecordKind.CREATED and record.target is not None:
            self.reached.add(record.target)
        elif record.kind is RecordKind.TRANSITION:
            if record.source is not None and record.target is not None:
                self.reached.add(record.target)
                self._last_move[record.lead_id] = (record.source, record.target)
        elif record.kind is RecordKind.OVERRIDE:
            # A stage set by hand says nothing about what the funnel lets leads reach.
            self._last_move.pop(record.lead_id, None)
        elif record.kind is RecordKind.HANDOFF:
            move = self._last_move.get(record.lead_id)
            if move is not None and record.from_team is not None and record.to_team is not None:
                self.handoffs.add((*move, record.from_team, record.to_team))


class _Log:
    """Listener keeping the records an engine commits, as they come.

    Reading ``engine.records`` after every step would copy the whole log
    each time: quadratic in a long run.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []

    def on_record(self, record: Record, journey: object) -> None:
        """Listener hook: keep the record."""
        self.records.append(record)


def _recording_hooks(funnel: Funnel, hooks: Hooks, observer: _Observer) -> Hooks:
    """Hooks that record each guard's answers, with never-true stand-ins for missing guards."""
    out = Hooks()
    for name in funnel.guards:
        out.add_guard(name, _recorder(name, hooks.guards.get(name), observer))
    return out


def _recorder(name: str, fn: Guard | None, observer: _Observer) -> Guard:
    def guard(ctx: Context) -> bool:
        if fn is None:
            return False
        result = fn(ctx)
        observer.record_guard(name, result)
        return result

    return guard


# ---------------------------------------------------------------- engine exploration steps

_Step = tuple[Any, ...]


class _Found(Exception):
    """A new problem, raised inside the Hypothesis search so that it shrinks the run."""

    def __init__(self, code: str, where: str, what: str, detail: str) -> None:
        super().__init__(f"{code} {where}: {what}")
        self.code = code
        self.where = where
        self.what = what
        self.detail = detail


_Report = Callable[[str, str, str, str], None]


@attrs.define
class _Outcome:
    found: _Found | None = None
    lines: list[str] = attrs.Factory(list)


class _Verification(Structure):
    """One call of :func:`verify`: the structural checks, then the explorations."""

    def __init__(
        self,
        funnel: Funnel,
        *,
        owners: OwnerRules,
        hooks: Hooks,
        scorer: Scorer | None,
        policy: Policy | None,
        thresholds: tuple[float, ...],
        options: _Options,
    ) -> None:
        self.hints = hints(scorer, policy, thresholds)
        super().__init__(
            funnel,
            owners=owners,
            hooks=hooks,
            policy=policy,
            profiles=lead_profiles(owners, self.hints, _TYPICAL_LEADS, options.attributes),
            missing_guards=options.missing_guards,
        )
        self.scorer = scorer
        self.thresholds = thresholds
        self.options = options
        self.observer = _Observer()
        self.counter = CoverageCounter(funnel)
        self.hooks = _recording_hooks(funnel, hooks, self.observer)
        self.scores = _scores(self.hints)
        self.kinds = list(
            dict.fromkeys(
                [
                    _NEUTRAL_KIND,
                    *(r.kind for r in DEFAULT_POINTS if r.kind is not None),
                    *self.hints.kinds,
                    *options.touch_kinds,
                    *funnel.events,
                ]
            )
        )
        self.examples = 0
        self.guard_errors: set[str] = set()
        self.events = frozenset(funnel.events)
        self.guarding: dict[str, list[Transition]] = {}
        """The transitions each guard decides, in the funnel's order."""
        for t in funnel.transitions:
            if t.guard is not None:
                self.guarding.setdefault(t.guard, []).append(t)
        # The engine names its scorer and policy in its errors and records; tell them
        # apart even when both go by the same name (two lambdas, say).
        self.scorer_name = hook_name(scorer, "scorer")
        self.policy_name = hook_name(policy, "policy")
        if self.policy_name == self.scorer_name:
            self.policy_name += " (policy)"
        self.policy_actor = policy_actor(self.policy_name)

    def run(self) -> VerificationReport:
        self.check()
        self.explore_model()
        self.probe_guards()
        if self.owner_problems:
            self.add(
                "not-explored",
                Severity.WARNING,
                f"funnel {self.funnel.name}",
                "the engine was not explored: it cannot be built while the owner rules have "
                "problems; fix them and verify again",
            )
        else:
            self.explore_engine()
            if self.options.harness:
                self.run_harness()
        self.check_coverage()
        named = [k for k in self.findings if k[0] == "nondeterministic" and k[1] != "engine"]
        if named:
            # The harness named the hook; the engine-wide finding says less about the same bug.
            self.findings.pop(("nondeterministic", "engine"), None)
        coverage = self.counter.result() if self.counter.runs else None
        return self.report(examples=self.examples, budget=self.options.budget, coverage=coverage)

    # ------------------------------------------------------------ model exploration

    def context(self, stage: str, event: str, profile: Mapping[str, Any], score: float) -> Context:
        return Context(
            lead_id="verify", stage=stage, event=event, attributes=profile, score=score, at=_T0
        )

    def guard_error(self, name: str, error: HookError, example: Iterable[str]) -> None:
        self.guard_errors.add(name)
        self.add(
            "guard-error",
            Severity.ERROR,
            f"guard {name}",
            f"{error}. A guard must return True or False for every lead; the engine refuses "
            "the move (or quarantines the touch) when it fails.",
            example,
        )

    def explore_model(self) -> None:
        """Ask every guard on every profile, then walk the funnel for each profile."""
        funnel = self.funnel
        for t in funnel.transitions:
            fn = self.user_hooks.guards.get(t.guard) if t.guard is not None else None
            if t.guard is None or fn is None or t.guard in self.guard_errors:
                continue
            for profile in self.profiles:
                for score in self.scores:
                    ctx = self.context(t.source, t.event, profile, score)
                    try:
                        result = evaluate_guard(t.guard, fn, ctx)
                    except HookError as exc:
                        self.guard_error(t.guard, exc, [*self.path_to(t.source), repr(ctx)])
                        break
                    self.observer.record_guard(t.guard, result)
                else:
                    continue
                break
        if not funnel.guards:
            # Nothing a lead is or scores changes where it may go: one walk finds every
            # move, and each profile only decides who owns the stages at both ends.
            reached = reach(funnel.transitions_from, funnel.initial.name)
            self.observer.reached |= reached
            for profile in self.profiles:
                for t in funnel.transitions:
                    if t.source in reached:
                        self._note_model_move(t, profile)
            return
        table = CompiledFunnel(funnel, self.hooks)
        for profile in self.profiles:
            for score in self.scores:
                self._walk_profile(table, profile, score)

    def _walk_profile(
        self, table: CompiledFunnel, profile: Mapping[str, Any], score: float
    ) -> None:
        """Walk the funnel breadth first for one lead, the guards deciding each move."""

        def moves(stage: str) -> Iterator[Transition]:
            for event in self.funnel.allowed_events(stage):
                ctx = self.context(stage, event, profile, score)
                try:
                    t = table.step(stage, event, ctx, reason=_REASON)
                except TransitionNotAllowed:
                    continue
                except HookError:
                    continue  # reported by the guard probe
                self._note_model_move(t, profile)
                yield t

        self.observer.reached |= set(PathTree(moves, self.funnel.initial.name))

    def _note_model_move(self, t: Transition, profile: Mapping[str, Any]) -> None:
        before = self.owner(t.source, profile)
        after = self.owner(t.target, profile)
        if before is not None and after is not None and before != after:
            self.observer.handoffs.add((t.source, t.target, before, after))

    def probe_guards(self) -> None:
        """Search generated contexts for a True answer of each guard not yet seen True."""
        funnel = self.funnel
        profiles = st.sampled_from(self.profiles)
        for name in funnel.guards:
            fn = self.user_hooks.guards.get(name)
            if fn is None or name in self.observer.guard_true or name in self.guard_errors:
                continue
            users = self.guarding[name]
            failure: list[tuple[HookError, Context]] = []

            def passes(
                case: tuple[Transition, Context, Mapping[str, Any] | None],
                name: str = name,
                fn: Guard = fn,
                failure: list[tuple[HookError, Context]] = failure,
            ) -> bool:
                t, ctx, profile = case
                attributes = ctx.attributes if profile is None else profile
                ctx = attrs.evolve(ctx, stage=t.source, event=t.event, attributes=attributes)
                try:
                    return evaluate_guard(name, fn, ctx)
                except HookError as error:
                    if not failure:
                        failure.append((error, ctx))
                    return False

            cases = st.tuples(st.sampled_from(users), contexts(), st.none() | profiles)
            try:
                find(cases, passes, settings=self.options.settings())
            except NoSuchExample:
                pass
            else:
                self.observer.guard_true.add(name)
            if failure:
                exc, ctx = failure[0]
                self.guard_error(name, exc, [*self.path_to(ctx.stage), repr(ctx)])

    # ------------------------------------------------------------ engine exploration

    def engine(self, listeners: Iterable[object] = ()) -> Engine:
        return Engine(
            self.funnel,
            hooks=self.hooks,
            owners=self.owners,
            scorer=self.scorer,
            policy=self.policy,
            thresholds=self.thresholds,
            listeners=listeners,
            scorer_name=self.scorer_name,
            policy_name=self.policy_name,
        )

    def steps_strategy(self) -> st.SearchStrategy[list[_Step]]:
        lead = st.integers(0, _LEADS - 1)
        touch = st.tuples(
            st.just("touch"),
            lead,
            st.sampled_from(self.kinds),
            st.sampled_from(_GAPS_MINUTES),
            st.integers(0, len(self.profiles) - 1),
        )
        actions: list[st.SearchStrategy[_Step]] = [touch]
        if self.funnel.events:
            # Which of the events legal where the journey is: it follows the journey deep.
            # Listed twice: moving journeys on matters more than any other action.
            actions += [st.tuples(st.just("send"), lead, st.integers(0, 7)) for _ in range(2)]
        if any(s.gate for s in self.funnel.stages):
            actions.append(st.tuples(st.just("accept"), lead))
            actions.append(st.tuples(st.just("reject"), lead))
        step = st.one_of(actions)
        count = st.integers(0, self.options.steps)

        @st.composite
        def runs(draw: st.DrawFn) -> list[_Step]:
            # Not st.lists: its short average runs rarely get past a gate.
            return [draw(step) for _ in range(draw(count))]

        return runs()

    def explore_engine(self) -> None:
        """Run random streams through an engine, one search per problem found."""
        known: set[tuple[str, str]] = set()
        self._probe_touches(known)
        strategy = self.steps_strategy()
        for _ in range(_MAX_ROUNDS):
            outcome = _Outcome()
            try:
                self._search(strategy, outcome, known)
            except _Found:
                found = outcome.found
                assert found is not None
                severity = Severity.WARNING if found.code == "policy-refused" else Severity.ERROR
                self.add(found.code, severity, found.where, found.what, outcome.lines)
                known.add((found.code, found.where))
                continue
            except Flaky as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else ""
                self.add(
                    "nondeterministic",
                    Severity.ERROR,
                    "engine",
                    "the same steps did not always give the same outcome: a scorer, policy or "
                    f"guard is not deterministic ({type(exc).__name__}: {first_line})",
                    outcome.lines,
                )
            break

    def _probe_touches(self, known: set[tuple[str, str]]) -> None:
        """One touch of every kind, and one for every profile, each for a lead of its own.

        What fails on one kind of touch or for one segment is then found
        without luck; combinations are left to the random exploration. The
        probes run together on one engine, a lead each (journeys do not
        share state), so that their cost does not grow with the funnel's
        size times the number of kinds; a problem found is shown with the
        one touch that causes it, played alone on a fresh engine.
        """
        # A touch named after an event not allowed in the initial stage does nothing more on
        # a fresh journey than any other touch, unless a hook names that kind. The random
        # runs still send them.
        funnel = self.funnel
        named = {*self.hints.kinds, *self.options.touch_kinds}
        first = set(funnel.allowed_events(funnel.initial.name))
        probes = [
            (kind, 0)
            for kind in self.kinds
            if kind not in self.events or kind in first or kind in named
        ]
        probes += [(_NEUTRAL_KIND, profile) for profile in range(1, len(self.profiles))]
        self.examples += len(probes)
        while probes:
            found = self._probe(probes, known)
            if found is None:
                return
            problem, lines = found
            if problem.code in _AFTER_PLAY:
                # Found once every touch was played: halve the probes down to one that shows it.
                shown, index = self._isolate(probes, known)
            else:  # found while playing the touch of the last line
                index = sum(1 for line in lines if not line.startswith("-> ")) - 1
                shown = self._probe(probes[index : index + 1], known)
            if shown is not None:
                problem, lines = shown
            severity = Severity.WARNING if problem.code == "policy-refused" else Severity.ERROR
            self.add(problem.code, severity, problem.where, problem.what, lines)
            known.add((problem.code, problem.where))
            probes = probes[index + 1 :]

    def _probe(
        self, probes: Sequence[tuple[str, int]], known: set[tuple[str, str]]
    ) -> tuple[_Found, list[str]] | None:
        """Play *probes* on a fresh engine, a lead each: the new problem found, with its lines."""
        steps = [("touch", lead, kind, 0, profile) for lead, (kind, profile) in enumerate(probes)]
        lines: list[str] = []
        try:
            self.run_steps(steps, lines, known)
        except _Found as found:
            return found, lines
        return None

    def _isolate(
        self, probes: Sequence[tuple[str, int]], known: set[tuple[str, str]]
    ) -> tuple[tuple[_Found, list[str]] | None, int]:
        """The first probe that finds a new problem alone, by halving: it and its index.

        ``None`` (and the last index) when no single probe does: the problem
        then needs several of them together.
        """
        start, end = 0, len(probes)
        while end - start > 1:
            middle = (start + end) // 2
            self.examples += 1
            if self._probe(probes[start:middle], known) is not None:
                end = middle
            else:
                start = middle
        self.examples += 1
        shown = self._probe(probes[start:end], known)
        return shown, (start if shown is not None else len(probes) - 1)

    def _search(
        self,
        strategy: st.SearchStrategy[list[_Step]],
        outcome: _Outcome,
        known: set[tuple[str, str]],
    ) -> None:
        @self.options.settings()
        @given(strategy)
        def explore(steps: list[_Step]) -> None:
            self.examples += 1
            outcome.lines = []
            outcome.found = None
            try:
                self.run_steps(steps, outcome.lines, known)
            except _Found as found:
                outcome.found = found
                raise

        explore()

    def run_steps(
        self, steps: Sequence[_Step], lines: list[str], known: set[tuple[str, str]]
    ) -> None:
        """Run *steps* on a fresh engine; raise :class:`_Found` for a new problem."""

        def found(code: str, where: str, what: str, detail: str) -> None:
            if (code, where) not in known:
                lines.append(f"-> {detail}")
                raise _Found(code, where, what, detail)

        written = _Log()
        engine = self.engine([self.observer, written])
        try:
            log = self._play(engine, written, steps, lines, found)
        finally:
            self.counter.add(written.records)
        if engine.rebuild() != dict(engine.journeys):
            found(
                "invariant-violation",
                "engine",
                "rebuilding the journeys from the log does not give the live state",
                "rebuild() differs from the live journeys",
            )
        rewritten = _Log()
        again = self.engine([rewritten])
        self._play(again, rewritten, steps, [], _ignore)
        replay = [r.to_dict() for r in again.records]
        if replay != log:
            self._nondeterministic(log, replay, found)

    def _nondeterministic(
        self, log: list[dict[str, Any]], replay: list[dict[str, Any]], found: _Report
    ) -> None:
        index = next(
            (i for i, (a, b) in enumerate(zip(log, replay, strict=False)) if a != b),
            min(len(log), len(replay)),
        )
        first = log[index] if index < len(log) else replay[index]
        other = replay[index] if index < len(replay) else {}
        where = self._culprit(first, other)
        changed = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
        diff = ", ".join(f"{k}: {first.get(k)!r} then {other.get(k)!r}" for k in changed)
        found(
            "nondeterministic",
            where,
            f"the same steps fed to a new engine gave another log: {where} is not "
            "deterministic (global state, randomness or the wall clock?). Hooks must depend "
            "only on their arguments, or replays and rebuilt scores will not match.",
            f"a second engine fed the same steps logged record {index} "
            f"({first.get('kind')}) differently: {diff}",
        )

    def _culprit(self, first: Mapping[str, Any], other: Mapping[str, Any]) -> str:
        """Which hook two differing records of the same step point at, as a ``where``."""
        if "scored" in (first.get("kind"), other.get("kind")):
            return f"scorer {self.scorer_name}"
        event, source = first.get("event"), first.get("source")
        same_move = event == other.get("event") and source == other.get("source")
        if same_move and isinstance(source, str) and source in self.funnel:
            guards = {t.guard for t in self.funnel.transitions_from(source) if t.event == event}
            named = sorted(g for g in guards if g is not None)
            if len(named) == 1:
                return f"guard {named[0]}"  # same event, other outcome: the guard decided
        if self.policy_actor.name in (first.get("actor"), other.get("actor")):
            return f"policy {self.policy_name}"
        return "engine"

    def _play(
        self,
        engine: Engine,
        written: _Log,
        steps: Sequence[_Step],
        lines: list[str],
        found: _Report,
    ) -> list[dict[str, Any]]:
        clock = _T0
        for n, step in enumerate(steps):
            kind, lead = step[0], f"lead-{step[1]}"
            journey = engine.journeys.get(lead)
            if kind == "touch":
                _, _, touch_kind, minutes, profile_index = step
                clock += timedelta(minutes=minutes)
                attributes = self.profiles[profile_index] if journey is None else {}
                touch = Touch(f"t{n}", lead, clock, touch_kind, attributes=attributes)
                shown = f" with {fmt_attributes(attributes)}" if attributes else ""
                lines.append(f"touch {lead} {touch_kind!r} at +{_elapsed(clock)}{shown}")
                before = len(written.records)
                try:
                    engine.ingest_one(touch)
                except HookError as exc:
                    found(*self._hook_failure(exc, engine))
                    continue
                self._check_refusals(written.records[before:], touch, found)
                continue
            if journey is None:
                lines.append(f"{kind} {lead} (no journey yet: skipped)")
                continue
            actor = Actor("verifier", journey.owner)
            try:
                if kind == "send":
                    allowed = self.funnel.allowed_events(journey.stage)
                    if not allowed:
                        lines.append(f"send {lead}: no event leaves {journey.stage!r} (skipped)")
                        continue
                    event = allowed[step[2] % len(allowed)]
                    lines.append(f"send {lead} {event!r} as {journey.owner}")
                    engine.send(lead, event, actor=actor, at=clock, reason=_REASON)
                elif kind == "accept":
                    lines.append(f"accept {lead} as {journey.owner}")
                    engine.accept(lead, actor=actor, at=clock)
                else:
                    lines.append(f"reject {lead} as {journey.owner}")
                    engine.reject(lead, actor=actor, at=clock, reason=_REASON)
            except HookError as exc:
                found(*self._hook_failure(exc, engine))
            except (ActionRefused, TransitionNotAllowed):
                lines[-1] += " (refused)"
        return [r.to_dict() for r in written.records]

    def _hook_failure(self, exc: HookError, engine: Engine) -> tuple[str, str, str, str]:
        """The finding for a hook that failed while the engine ran: code, where, what, detail."""
        if exc.hook in self.funnel.guards:
            self.guard_errors.add(exc.hook)
            return (
                "guard-error",
                f"guard {exc.hook}",
                f"guard {exc.hook!r} failed on a lead: a guard must return True or False for "
                "every lead; the engine refuses the move (or quarantines the touch).",
                str(exc),
            )
        if exc.hook == engine.scorer_name:
            return (
                "scorer-error",
                f"scorer {exc.hook}",
                f"scorer {exc.hook!r} failed on a touch: a scorer must return a Score with a "
                "finite value for every lead and touch; the engine quarantines the touch "
                "and the lead's journey stops moving.",
                str(exc),
            )
        return (
            "policy-error",
            f"policy {exc.hook}",
            f"policy {exc.hook!r} failed on a touch: a policy must return a Decision for "
            "every journey; the engine quarantines the touch and the journey stops moving.",
            str(exc),
        )

    def _check_refusals(self, records: Sequence[Record], touch: Touch, found: _Report) -> None:
        if touch.kind in self.events:
            return  # the touch itself asked for the event: the input is wrong, not the policy
        for record in records:
            if record.kind is RecordKind.REFUSED and record.actor == self.policy_actor:
                name = self.policy_name
                found(
                    "policy-refused",
                    f"policy {name}",
                    f"policy {name!r} fired {record.event!r} in stage {record.source!r} on an "
                    f"ordinary {touch.kind!r} touch and the engine refused it: "
                    "it will log a refusal on every such touch. Limit the policy to the stages "
                    "that allow the event (stages=stages_allowing(funnel, event)).",
                    f"policy fired {record.event!r} in {record.source!r}: refused "
                    f"({record.reason})",
                )

    # ------------------------------------------------------------ the stateful harness

    def run_harness(self) -> None:
        """Run the stateful harness of :mod:`buyerjourney.testing.harness`; report a failure."""
        observer = self.observer
        base = pipeline_machine(
            self.funnel,
            owners=self.owners,
            hooks=self.hooks,
            scorer=self.scorer,
            policy=self.policy,
            thresholds=self.thresholds,
            touch_kinds=self.kinds,
            name="VerifiedPipelineMachine",
        )

        counter = self.counter

        def teardown(machine: PipelineMachine) -> None:
            for record in machine.records:
                observer.on_record(record, None)
            counter.add(machine.records)
            base.teardown(machine)

        machine_class = type(base.__name__, (base,), {"teardown": teardown})
        settings = self.options.settings(verbosity=Verbosity.normal)
        settings = Settings(settings, stateful_step_count=self.options.steps)
        try:
            run_pipeline_machine(machine_class, settings=settings)
        except Flaky as exc:
            self.add(
                "nondeterministic",
                Severity.ERROR,
                "engine",
                "the stateful harness saw the same steps fail once and pass once: a scorer, "
                f"policy or guard is not deterministic ({_first_line(exc)})",
                _harness_steps(exc),
            )
        except AssertionError as exc:
            code, where, what = _harness_failure(exc)
            example = [*_harness_steps(exc), f"-> {_first_line(exc)}"]
            self.add(code, Severity.ERROR, where, what, example)

    # ------------------------------------------------------------ coverage

    def check_coverage(self) -> None:
        funnel = self.funnel
        observer = self.observer
        unavailable = set(self.missing) | self.guard_errors
        explored_by = " and ".join(
            [f"{len(self.profiles)} lead profiles at {len(self.scores)} scores"]
            + ([f"{self.examples} engine runs"] if self.examples else [])
        )
        never = [g for g in funnel.guards if g not in unavailable and g not in observer.guard_true]
        for name in never:
            users = "; ".join(label(t) for t in self.guarding[name])
            self.add(
                "guard-never-true",
                Severity.WARNING,
                f"guard {name}",
                f"guard {name!r} returned False on every lead tried ({explored_by}, and "
                f"{self.options.budget} generated contexts), so {users} never happens. "
                "If real leads can pass it, give verify() such attributes=.",
            )
        never_true = set(never)
        dead = never_true | unavailable
        by_event: dict[str, list[Transition]] = {}
        entering: dict[str, list[Transition]] = {}
        for t in funnel.transitions:
            by_event.setdefault(t.event, []).append(t)
            entering.setdefault(t.target, []).append(t)
        for event, ts in by_event.items():
            if all(t.guard is not None and t.guard in never_true for t in ts):
                guards = ", ".join(dict.fromkeys(t.guard or "" for t in ts))
                self.add(
                    "event-never-enabled",
                    Severity.WARNING,
                    f"event {event}",
                    f"every transition of event {event!r} is guarded by {guards}, never true "
                    "on any lead tried: sending it is always refused",
                )
        live = PathTree(
            funnel.transitions_from,
            funnel.initial.name,
            usable=lambda t: t.guard is None or t.guard not in unavailable,
        )
        for stage in funnel.stage_names:
            if stage in observer.reached or stage not in live:
                continue
            entries = entering.get(stage, [])
            dead_entries = [t for t in entries if t.guard in dead]
            why = ""
            if dead_entries and len(dead_entries) == len(entries):
                listed = ", ".join(label(t) for t in dead_entries)
                why = f"; its only entries are guarded by never-true guards ({listed})"
            self.add(
                "stage-never-reached",
                Severity.WARNING,
                f"stage {stage}",
                f"no explored lead ever entered {stage!r} ({explored_by}){why}",
                self.path_to(stage),
            )
        self._check_handoffs(explored_by, live)

    def _check_handoffs(self, explored_by: str, live: PathTree[Transition]) -> None:
        funnel = self.funnel
        allowed: dict[tuple[str, str, str, str], tuple[Transition, dict[str, Any]]] = {}
        for t in funnel.transitions:
            for profile in self.profiles:
                before = self.owner(t.source, profile)
                after = self.owner(t.target, profile)
                if before is not None and after is not None and before != after:
                    allowed.setdefault((t.source, t.target, before, after), (t, profile))
        unavailable = set(self.missing) | self.guard_errors
        for key, (t, profile) in allowed.items():
            if key in self.observer.handoffs or t.source not in self.observer.reached:
                continue
            if t.source not in live or t.guard in unavailable:
                continue
            self.add(
                "handoff-never-observed",
                Severity.WARNING,
                where_transition(t),
                f"the funnel allows a handoff from {key[2]!r} to {key[3]!r} on {label(t)} "
                f"(for leads like {fmt_attributes(profile)}), but no explored lead made it "
                f"({explored_by})",
                [*self.path_to(t.source), label(t)],
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _harness_failure(exc: AssertionError) -> tuple[str, str, str]:
    """The code, where and what of a failure of the stateful harness."""
    message = str(exc)
    if isinstance(exc, NotDeterministic):
        if exc.hooks:
            kind, name = exc.hooks[0]
            return (
                "nondeterministic",
                f"{kind} {name}",
                f"{message.splitlines()[0]} (found by the stateful harness)",
            )
        return "nondeterministic", "engine", message
    failed = [
        frame.name
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.name in _harness_invariants() or frame.name == "check_outcome"
    ]
    if not failed or failed[-1] == "check_outcome":
        return (
            "invariant-violation",
            "engine",
            f"the stateful harness found the engine doing other than its documented semantics: "
            f"{message}",
        )
    return (
        "invariant-violation",
        f"invariant {failed[-1]}",
        f"the stateful harness found invariant {failed[-1]!r} broken: {message}",
    )


def _harness_invariants() -> frozenset[str]:
    return frozenset(
        name
        for name, value in vars(PipelineMachine).items()
        if getattr(value, "hypothesis_stateful_invariant", None) is not None
    )


def _harness_steps(exc: BaseException) -> list[str]:
    """The shrunk steps Hypothesis attached to *exc*, without the invariant checks."""
    invariants = _harness_invariants()
    steps: list[str] = []
    for note in getattr(exc, "__notes__", ()):
        if not note.startswith("state."):
            continue
        name = note.removeprefix("state.").split("(", 1)[0]
        if name in invariants or name == "teardown":
            continue
        call = re.sub(r"\s*\n\s*", " ", note.removeprefix("state."))
        steps.append(call.replace("( ", "(").replace(", )", ")").replace(" )", ")"))
    return steps


def _ignore(code: str, where: str, what: str, detail: str) -> None:
    """A :data:`_Report` that ignores every problem (the replay of the determinism check)."""


def _elapsed(at: datetime) -> str:
    delta = at - _T0
    hours, rest = divmod(int(delta.total_seconds()) // 60, 60)
    return f"{hours}h{rest:02d}"
