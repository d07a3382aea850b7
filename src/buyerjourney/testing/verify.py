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
   bypass, gates entered without a change of owning team, gates that no member
   can accept, recycle loops with no way out, stages that cannot lead to a won
   stage, and built-in policies naming events or stages the funnel lacks.
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

import enum
import json
import math
import os
import re
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, find, given
from hypothesis import settings as Settings  # noqa: N812  (the class, beside `settings` values)
from hypothesis import strategies as st
from hypothesis.errors import Flaky, NoSuchExample

from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney._core.owners import Condition, OwnerRule, OwnerRules
from buyerjourney._core.policies import (
    AllOf,
    AnyOf,
    MatrixPolicy,
    Policy,
    ThresholdPolicy,
    TouchKindPolicy,
)
from buyerjourney._core.protocols import Context, Guard, Hooks, evaluate_guard
from buyerjourney._core.records import Actor, Record, RecordKind, Touch
from buyerjourney._core.scoring import AttributeRule, FitCriterion, PointsRule, Scorer
from buyerjourney._core.table import CompiledFunnel
from buyerjourney._engine import Engine
from buyerjourney._pipeline import DEFAULT_POINTS, Pipeline
from buyerjourney.errors import (
    ActionRefused,
    HookError,
    InvalidOwnerRules,
    TransitionNotAllowed,
)
from buyerjourney.testing.harness import PipelineMachine, pipeline_machine, run_pipeline_machine
from buyerjourney.testing.strategies import LEAD_ATTRIBUTES, contexts

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "CODES",
    "DEFAULT_BUDGET",
    "DEFAULT_STEPS",
    "Finding",
    "MissingGuards",
    "Severity",
    "VerificationReport",
    "load_unchecked_owner_rules",
    "verify",
    "verify_pipeline",
]

DEFAULT_BUDGET: Final = 100
"""Examples per Hypothesis search when no *budget* is given."""

DEFAULT_STEPS: Final = 25
"""The most steps (touches and actions) in one explored run."""


class Severity(enum.Enum):
    """How bad a finding is.

    ``ERROR``: the pipeline is wrong: it cannot run, or a lead can end up
    somewhere the model forbids. ``WARNING``: something looks unintended
    (dead guards, stages never reached), or could not be checked.
    """

    ERROR = "error"
    WARNING = "warning"


CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "owner-gap": "a stage where some lead would have no owning team",
        "owner-shadowed": "an owner override that can never apply",
        "owner-rules": "another problem of the owner rules (unknown team or stage, duplicate ...)",
        "unknown-hook": "a guard the funnel names is not registered in the hooks",
        "guard-unavailable": "a guard the funnel names is not available (command line)",
        "gate-bypass": "a lead can get past a gate stage without entering it",
        "gate-no-handoff": "a transition into a gate keeps the same owning team",
        "gate-nobody-accepts": "no member holds a team that owns a gate",
        "no-way-out": "a recycle loop of stages from which no terminal stage is reachable",
        "no-won-stage": "the funnel has no won stage",
        "no-path-to-won": "an open stage from which no won stage is reachable",
        "policy-unknown-event": "a built-in policy sends an event the funnel does not define",
        "policy-unknown-stage": "a built-in policy names a stage the funnel does not define",
        "policy-event-not-allowed": "a built-in policy fires an event from a stage that forbids it",
        "guard-error": "a guard raised or returned something other than a bool",
        "guard-never-true": "a guard returned False on every lead and context tried",
        "event-never-enabled": "every transition of an event is guarded by guards never true",
        "stage-never-reached": "a stage no explored lead ever entered",
        "handoff-never-observed": "a change of owning team the funnel allows but no lead made",
        "scorer-error": "the scorer raised or broke its contract on some touch",
        "policy-error": "the policy raised or broke its contract on some touch",
        "policy-refused": "the policy fired an event the engine refused, on an ordinary touch",
        "nondeterministic": "the same steps gave two different logs (scorer or policy not pure)",
        "invariant-violation": "an engine invariant failed (from the stateful harness)",
        "not-explored": "the behavioural checks could not run",
    }
)
"""Every finding code with what it means (read-only)."""

MissingGuards = Literal["error", "warning"]
"""How :func:`verify` reports a guard the hooks lack: ``unknown-hook`` or ``guard-unavailable``."""

_T0: Final = datetime(2024, 1, 1, tzinfo=timezone.utc)
_REASON: Final = "verify"
_BASE_SCORES: Final[tuple[float, ...]] = (0.0, 9.999, 10.0, 49.999, 50.0, 100.0)
_STANDARD_PROFILES: Final[tuple[Mapping[str, Any], ...]] = (
    {},
    {"segment": "smb", "employees": 10, "country": "BR"},
    {"segment": "mid_market", "employees": 999, "country": "DE"},
    {"segment": "enterprise", "employees": 1000, "country": "US"},
    {"segment": "enterprise", "employees": 50_000, "country": "US"},
)
_NEUTRAL_KIND: Final = "page_view"
_LEADS: Final = 2
_GAPS_MINUTES: Final[tuple[int, ...]] = (0, 30, 60 * 24, 60 * 80)
_MAX_ROUNDS: Final = 8


# ---------------------------------------------------------------- the report


def _as_example(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class Finding:
    """One problem found by :func:`verify`.

    Attributes:
        code: A stable code from :data:`CODES`, such as ``"gate-bypass"``.
        severity: :attr:`Severity.ERROR` or :attr:`Severity.WARNING`.
        what: What is wrong and what to do about it.
        where: What it is about, as ``"<kind> <name>"``: ``"stage sal"``,
            ``"transition fast_track: mql -> sql [if is_enterprise]"``,
            ``"event hand_off"``, ``"guard vip"``, ``"owner rules overrides[1]"``,
            ``"scorer my_scorer"``, ``"policy my_policy"``, ``"funnel demo"``,
            ``"invariant rebuild_equals_live_state"`` (a harness invariant)
            or ``"engine"``.
        example: A minimal example, one step per item, or empty: a shortest
            event path (``"qualify: inquiry -> mql"``) or the shrunk steps of
            an explored run (``"touch lead-0 'page_view' ..."``), ending with
            what went wrong.
    """

    code: str
    severity: Severity
    what: str
    where: str
    example: tuple[str, ...] = attrs.field(default=(), converter=_as_example)

    def __str__(self) -> str:
        lines = [f"{self.severity.value}: [{self.code}] {self.where}", f"  {self.what}"]
        if self.example:
            lines.append("  example:")
            lines += [f"    {i}. {step}" for i, step in enumerate(self.example, start=1)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "what": self.what,
            "where": self.where,
            "example": list(self.example),
        }


@attrs.frozen
class VerificationReport:
    """Everything :func:`verify` found, errors first.

    Attributes:
        funnel: The name of the funnel verified.
        findings: Every finding, errors first, each group in the order found.
        examples: How many runs the engine exploration made (shrinking included).
        budget: The budget the verification ran with.
    """

    funnel: str
    findings: tuple[Finding, ...]
    examples: int = 0
    budget: int = DEFAULT_BUDGET

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings of severity error."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings of severity warning."""
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        """Whether there is no error (warnings are allowed)."""
        return not self.errors

    @property
    def codes(self) -> frozenset[str]:
        """The codes of every finding."""
        return frozenset(f.code for f in self.findings)

    def by_code(self, code: str) -> tuple[Finding, ...]:
        """The findings with *code*, in report order.

        Args:
            code: A code from :data:`CODES`.
        """
        return tuple(f for f in self.findings if f.code == code)

    def __str__(self) -> str:
        errors, warnings = len(self.errors), len(self.warnings)
        head = (
            f"verification of funnel {self.funnel!r}: "
            f"{errors} error{'' if errors == 1 else 's'}, "
            f"{warnings} warning{'' if warnings == 1 else 's'} "
            f"({self.examples} explored runs, budget {self.budget})"
        )
        if not self.findings:
            return head + "\nno problem found"
        return "\n".join([head, *map(str, self.findings)])

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {
            "funnel": self.funnel,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "examples": self.examples,
            "budget": self.budget,
            "findings": [f.to_dict() for f in self.findings],
        }


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
        missing_guards=_missing_guards(missing_guards),
        harness=harness,
    )
    run = _Verification(
        funnel,
        owners=owners if owners is not None else _funnel_owners(funnel),
        hooks=hooks if hooks is not None else Hooks(),
        scorer=scorer,
        policy=policy,
        thresholds=tuple(thresholds),
        options=options,
    )
    return run.report()


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
    )


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive int (got {value!r})"
        raise ValueError(msg)
    return value


def _missing_guards(value: str) -> MissingGuards:
    if value == "error":
        return "error"
    if value == "warning":
        return "warning"
    msg = f"missing_guards must be 'error' or 'warning' (got {value!r})"
    raise ValueError(msg)


def _funnel_owners(funnel: Funnel) -> OwnerRules:
    """The funnel's stage owners as rules, unvalidated: a gap becomes a finding, not an error."""
    return _merge(funnel, OwnerRules(defaults={}), None)


def _merge(funnel: Funnel, rules: OwnerRules, solo: object) -> OwnerRules:
    """*rules* completed with the funnel's stage owners and teams, as the file loader does."""
    stage_owners = {s.name: s.owner for s in funnel.stages if s.owner is not None}
    teams = tuple(dict.fromkeys((*stage_owners.values(), *rules.teams)))
    members = dict(rules.members)
    if isinstance(solo, str) and solo:
        members[solo] = (*members.get(solo, ()), *teams)
    return OwnerRules(
        defaults={**stage_owners, **rules.defaults},
        overrides=rules.overrides,
        teams=teams,
        members=members,
    )


def load_unchecked_owner_rules(path: str | os.PathLike[str], funnel: Funnel) -> OwnerRules:
    """Read owner rules for *funnel* from a file **without** checking them against it.

    :func:`~buyerjourney.load_owner_rules` refuses rules with a gap or
    a shadowed override; this reads them anyway (the file must still follow
    the schema), so that :func:`verify` can report each problem as a finding
    together with everything else. Stages the file does not list keep the
    funnel's stage owner, as with ``load_owner_rules``.

    Args:
        path: A ``.toml`` or ``.json`` owner rules file.
        funnel: The funnel the rules are for.

    Returns:
        The rules, possibly with problems: pass them to :func:`verify`.

    Raises:
        InvalidOwnerRules: The file is not valid TOML or JSON, or does not
            follow the schema; each message starts with the file name.
        OSError: The file cannot be read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise InvalidOwnerRules(
            [f"{path}: expected a .toml or .json file (got suffix {path.suffix!r})"]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidOwnerRules([f"{path}: not UTF-8 text ({exc.reason})"]) from None
    data: object
    try:
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:
        kind = "JSON" if suffix == ".json" else "TOML"
        raise InvalidOwnerRules([f"{path}: not valid {kind}: {exc}"]) from None
    if not isinstance(data, Mapping):
        raise InvalidOwnerRules([f"{path}: expected a table of owner rules (got {data!r})"])
    try:
        rules = OwnerRules.from_dict(data)
    except InvalidOwnerRules as exc:
        raise InvalidOwnerRules([f"{path}: {p}" for p in exc.problems]) from None
    return _merge(funnel, rules, data.get("solo"))


@attrs.frozen
class _Options:
    budget: int
    steps: int
    attributes: tuple[Mapping[str, Any], ...]
    touch_kinds: tuple[str, ...]
    derandomize: bool
    missing_guards: MissingGuards
    harness: bool

    def settings(self, *, verbosity: Verbosity = Verbosity.quiet) -> Settings:
        return Settings(
            max_examples=self.budget,
            derandomize=self.derandomize,
            database=None,
            deadline=None,
            print_blob=False,
            verbosity=verbosity,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
        )


# ---------------------------------------------------------------- labels and paths


def _label(t: Transition) -> str:
    guard = f" [if {t.guard}]" if t.guard else ""
    return f"{t.event}: {t.source} -> {t.target}{guard}"


def _where_transition(t: Transition) -> str:
    return f"transition {_label(t)}"


def _path_to(funnel: Funnel, stage: str) -> list[str]:
    """A shortest event path from the initial stage to *stage* (empty if it is initial)."""
    return [_label(t) for t in _shortest_paths(funnel).get(stage, ())]


def _shortest_paths(
    funnel: Funnel,
    *,
    avoid: frozenset[str] = frozenset(),
    usable: Callable[[Transition], bool] | None = None,
) -> dict[str, tuple[Transition, ...]]:
    """Breadth-first shortest paths from the initial stage, never entering *avoid*."""
    start = funnel.initial.name
    paths: dict[str, tuple[Transition, ...]] = {start: ()}
    queue = deque([start])
    while queue:
        stage = queue.popleft()
        for t in funnel.transitions_from(stage):
            if t.target in paths or t.target in avoid:
                continue
            if usable is not None and not usable(t):
                continue
            paths[t.target] = (*paths[stage], t)
            queue.append(t.target)
    return paths


def _reach(funnel: Funnel, stage: str) -> set[str]:
    """The stages reachable from *stage* (itself included), guards aside."""
    seen = {stage}
    queue = deque([stage])
    while queue:
        for t in funnel.transitions_from(queue.popleft()):
            if t.target not in seen:
                seen.add(t.target)
                queue.append(t.target)
    return seen


def _forward_reach(funnel: Funnel, stage: str) -> set[str]:
    """The stages reachable from *stage* by forward transitions only (itself excluded)."""
    seen: set[str] = set()
    queue = deque([stage])
    while queue:
        for t in funnel.transitions_from(queue.popleft()):
            if t.direction is Direction.FORWARD and t.target not in seen:
                seen.add(t.target)
                queue.append(t.target)
    return seen


def _fmt_attributes(attributes: Mapping[str, Any]) -> str:
    return repr(dict(sorted(attributes.items())))


# ---------------------------------------------------------------- what the hooks reveal


@attrs.define
class _Hints:
    """What the scorer and the policy say about the leads and touches that matter."""

    kinds: list[str] = attrs.Factory(list)
    scores: list[float] = attrs.Factory(list)
    profiles: list[dict[str, Any]] = attrs.Factory(list)


def _walk(obj: object, depth: int = 0) -> Iterator[object]:
    """*obj* and the attrs instances, tuples and mappings inside it, depth first."""
    yield obj
    if depth > 6:
        return
    if isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _walk(item, depth + 1)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from _walk(item, depth + 1)
    elif attrs.has(cls := type(obj)):
        for field in attrs.fields(cls):
            yield from _walk(getattr(obj, field.name), depth + 1)


def _hints(scorer: object, policy: object, thresholds: Iterable[float]) -> _Hints:
    hints = _Hints(scores=list(thresholds))
    for obj in (*_walk(scorer), *_walk(policy)):
        if isinstance(obj, PointsRule) and obj.kind is not None:
            hints.kinds.append(obj.kind)
        elif isinstance(obj, TouchKindPolicy):
            hints.kinds.extend(obj.mapping)
        elif isinstance(obj, ThresholdPolicy):
            hints.scores.append(obj.threshold)
        elif isinstance(obj, (AttributeRule, FitCriterion)):
            hints.profiles.extend({obj.attribute: v} for v in obj.values[:2])
    return hints


def _satisfying(condition: Condition) -> Any:
    """A value of the condition's attribute that matches it."""
    if condition.op == "in":
        return condition.values[0]
    if condition.op == "gte":
        return condition.values[0]
    if condition.op == "lt":
        return condition.values[0] - 1  # type: ignore[operator]
    taken = {v for v in condition.values if isinstance(v, str)}
    other = "other"
    while other in taken:
        other += "_"
    return other


def _rule_profile(rule: OwnerRule) -> dict[str, Any]:
    return {c.attribute: _satisfying(c) for c in rule.when}


def _profiles(
    owners: OwnerRules, hints: _Hints, extra: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Representative lead profiles, simplest first, each once."""
    candidates: list[Mapping[str, Any]] = [*_STANDARD_PROFILES]
    candidates += [_rule_profile(r) for r in owners.overrides if r.when]
    candidates += hints.profiles
    candidates += [{key: value} for key, values in LEAD_ATTRIBUTES.items() for value in values]
    candidates += list(extra)
    out: dict[str, dict[str, Any]] = {}
    for profile in candidates:
        out.setdefault(_fmt_attributes(profile), dict(profile))
    return list(out.values())


def _scores(hints: _Hints) -> list[float]:
    values = set(_BASE_SCORES)
    for t in hints.scores:
        if isinstance(t, (int, float)) and math.isfinite(t):
            values |= {float(t), float(t) - 0.001, float(t) + 0.001}
    return sorted(values)


def _policy_parts(policy: object, name: str) -> Iterator[tuple[str, object]]:
    """Each built-in policy inside *policy*, named as the engine names it in errors."""
    yield name, policy
    if isinstance(policy, (AnyOf, AllOf)):
        kind = type(policy).__name__
        for i, part in enumerate(policy.policies):
            yield from _policy_parts(part, f"{kind}[{i}]:{_hook_name(part)}")


def _hook_name(hook: object) -> str:
    return str(getattr(hook, "__name__", None) or type(hook).__name__)


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


def _recording_hooks(funnel: Funnel, hooks: Hooks, observer: _Observer) -> tuple[Hooks, list[str]]:
    """Hooks that record each guard's answers, with never-true stand-ins for missing guards."""
    out = Hooks()
    missing: list[str] = []
    for name in funnel.guards:
        fn = hooks.guards.get(name)
        if fn is None:
            missing.append(name)
        out.add_guard(name, _recorder(name, fn, observer))
    return out, missing


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


class _Verification:
    """One call of :func:`verify`: the passes, their observations and the findings."""

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
        self.funnel = funnel
        self.owners = owners
        self.scorer = scorer
        self.policy = policy
        self.thresholds = thresholds
        self.options = options
        self.observer = _Observer()
        self.hooks, self.missing = _recording_hooks(funnel, hooks, self.observer)
        self.user_hooks = hooks
        self.hints = _hints(scorer, policy, thresholds)
        self.profiles = _profiles(owners, self.hints, options.attributes)
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
        self.findings: dict[tuple[str, str], Finding] = {}
        self.examples = 0
        self.owner_problems = owners.problems(funnel)
        self.guard_errors: set[str] = set()

    # ------------------------------------------------------------ bookkeeping

    def add(
        self,
        code: str,
        severity: Severity,
        where: str,
        what: str,
        example: Iterable[str] = (),
    ) -> None:
        key = (code, where)
        if key not in self.findings:
            self.findings[key] = Finding(code, severity, what, where, tuple(example))

    def report(self) -> VerificationReport:
        self.check_owner_rules()
        self.check_hooks()
        self.check_gates()
        self.check_loops()
        self.check_won()
        self.check_policies()
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
        findings = sorted(self.findings.values(), key=lambda f: f.severity is not Severity.ERROR)
        return VerificationReport(
            self.funnel.name, tuple(findings), self.examples, self.options.budget
        )

    def owner(self, stage: str, attributes: Mapping[str, Any]) -> str | None:
        try:
            return self.owners.owner(stage, attributes)
        except InvalidOwnerRules:
            return None

    # ------------------------------------------------------------ structure

    def check_owner_rules(self) -> None:
        for problem in self.owner_problems:
            if problem.startswith("gap: stage "):
                stage = problem.split("'")[1]
                example = [*_path_to(self.funnel, stage)]
                example.append(f"a lead with attributes {{}} enters {stage!r}: no team owns it")
                self.add("owner-gap", Severity.ERROR, f"stage {stage}", problem, example)
            elif problem.startswith("overrides[") and "can never apply" in problem:
                index = problem[len("overrides[") : problem.index("]")]
                self.add(
                    "owner-shadowed",
                    Severity.ERROR,
                    f"owner rules overrides[{index}]",
                    problem,
                )
            else:
                where = "owner rules"
                if problem.startswith("overrides["):
                    where += " " + problem[: problem.index("]") + 1]
                self.add("owner-rules", Severity.ERROR, where, problem)

    def check_hooks(self) -> None:
        for name in self.missing:
            users = [t for t in self.funnel.transitions if t.guard == name]
            used = "; ".join(_label(t) for t in users)
            if self.options.missing_guards == "error":
                self.add(
                    "unknown-hook",
                    Severity.ERROR,
                    f"guard {name}",
                    f"guard {name!r} is not registered in the hooks (used by {used}); "
                    f"register it with hooks.add_guard({name!r}, fn). Its transitions were "
                    "explored as never enabled.",
                )
            else:
                self.add(
                    "guard-unavailable",
                    Severity.WARNING,
                    f"guard {name}",
                    f"guard {name!r} is not available on the command line (used by {used}); "
                    "its transitions were explored as never enabled. Verify in Python with "
                    "your hooks: buyerjourney.testing.verify.verify(funnel, hooks=...).",
                )

    def check_gates(self) -> None:
        funnel = self.funnel
        gates = [s for s in funnel.stages if s.gate]
        for gate in gates:
            self._check_bypass(gate, gates)
            for t in funnel.transitions:
                if t.target == gate.name:
                    self._check_gate_handoff(t, gate)
            self._check_gate_members(gate)

    def _check_bypass(self, gate: Stage, gates: Sequence[Stage]) -> None:
        funnel = self.funnel
        behind = {
            name
            for name in _forward_reach(funnel, gate.name)
            if not funnel.stage(name).kind.is_exit and funnel.stage(name).rank > gate.rank
        }
        avoid = frozenset(g.name for g in gates if g.rank <= gate.rank)
        paths = _shortest_paths(funnel, avoid=avoid)
        bypassed = sorted(
            (name for name in behind if name in paths), key=lambda n: (len(paths[n]), n)
        )
        if not bypassed:
            return
        path = paths[bypassed[0]]
        crossing = path[-1]
        guard = f", when guard {crossing.guard!r} passes" if crossing.guard else ""
        self.add(
            "gate-bypass",
            Severity.ERROR,
            _where_transition(crossing),
            f"a lead can reach {bypassed[0]!r} (behind gate {gate.name!r}) without entering "
            f"the gate, through {_label(crossing)}{guard}: the receiving team never accepts "
            f"it. Route the transition into {gate.name!r}, or remove it.",
            [_label(t) for t in path],
        )

    def _check_gate_handoff(self, t: Transition, gate: Stage) -> None:
        for profile in self.profiles:
            before = self.owner(t.source, profile)
            after = self.owner(gate.name, profile)
            if before is None or before != after:
                continue
            example = [*_path_to(self.funnel, t.source), _label(t)]
            example.append(
                f"a lead with attributes {_fmt_attributes(profile)} is owned by {before!r} "
                f"in both {t.source!r} and {gate.name!r}"
            )
            self.add(
                "gate-no-handoff",
                Severity.ERROR,
                _where_transition(t),
                f"{_label(t)} enters gate {gate.name!r} but the owning team stays {before!r}: "
                "the team would accept its own lead, and no handoff is recorded. Give the "
                "gate the receiving team, or make it an ordinary stage.",
                example,
            )
            return

    def _check_gate_members(self, gate: Stage) -> None:
        members = self.owners.members
        if not members:
            return
        teams = [self.owners.defaults.get(gate.name)]
        teams += [r.team for r in self.owners.overrides if r.applies_to(gate.name)]
        for team in dict.fromkeys(t for t in teams if t is not None):
            if any(team in held for held in members.values()):
                continue
            self.add(
                "gate-nobody-accepts",
                Severity.WARNING,
                f"stage {gate.name}",
                f"gate {gate.name!r} may be owned by {team!r}, which no member holds "
                f"(members: {', '.join(sorted(members))}): only an Actor declaring "
                f"team={team!r} can accept or reject, and policies wait. Add {team!r} to a "
                "member's teams.",
                _path_to(self.funnel, gate.name),
            )

    def check_loops(self) -> None:
        funnel = self.funnel
        reach = {name: _reach(funnel, name) for name in funnel.stage_names}
        terminal = {s.name for s in funnel.stages if s.terminal}
        stuck = [n for n in funnel.stage_names if not reach[n] & terminal]
        seen: set[str] = set()
        for name in stuck:
            if name in seen:
                continue
            component = {m for m in reach[name] if name in reach[m]}
            seen |= component
            if any(not reach[m] <= component for m in component):
                continue  # leads into a closed loop further on, reported there
            members = [n for n in funnel.stage_names if n in component]
            open_kind = any(funnel.stage(m).kind is StageKind.OPEN for m in members)
            self.add(
                "no-way-out",
                Severity.ERROR if open_kind else Severity.WARNING,
                f"stages {', '.join(members)}",
                f"stages {', '.join(members)} form a loop with no way out: no terminal stage "
                "can be reached from them, so a lead that enters cycles forever. Add an exit "
                "(e.g. to a lost stage) or a way forward.",
                _path_to(funnel, members[0]),
            )

    def check_won(self) -> None:
        funnel = self.funnel
        won = {s.name for s in funnel.stages if s.kind is StageKind.WON}
        if not won:
            self.add(
                "no-won-stage",
                Severity.WARNING,
                f"funnel {funnel.name}",
                f"funnel {funnel.name!r} has no won stage (kind='won'): no lead can ever buy",
            )
            return
        trapped = {
            name
            for key, finding in self.findings.items()
            if key[0] == "no-way-out"
            for name in finding.where.removeprefix("stages ").split(", ")
        }
        for stage in funnel.stages:
            if stage.kind is not StageKind.OPEN or stage.name in trapped:
                continue
            if not _reach(funnel, stage.name) & won:
                self.add(
                    "no-path-to-won",
                    Severity.WARNING,
                    f"stage {stage.name}",
                    f"open stage {stage.name!r} has no path to a won stage "
                    f"({', '.join(sorted(won))}); leads there can only be lost",
                    _path_to(funnel, stage.name),
                )

    def check_policies(self) -> None:
        if self.policy is None:
            return
        funnel = self.funnel
        for name, part in _policy_parts(self.policy, _hook_name(self.policy)):
            events: list[str] = []
            stages: tuple[str, ...] = ()
            scoped = False
            if isinstance(part, (ThresholdPolicy, MatrixPolicy)):
                events, stages, scoped = [part.event], part.stages, True
            elif isinstance(part, TouchKindPolicy):
                events, stages = list(part.mapping.values()), part.stages
            else:
                continue
            where = f"policy {name}"
            for event in dict.fromkeys(events):
                if event not in funnel.events:
                    self.add(
                        "policy-unknown-event",
                        Severity.ERROR,
                        where,
                        f"{name} sends event {event!r}, which funnel {funnel.name!r} does not "
                        f"define (events: {', '.join(funnel.events)})",
                    )
            unknown = [s for s in stages if s not in funnel]
            if unknown:
                self.add(
                    "policy-unknown-stage",
                    Severity.ERROR,
                    where,
                    f"{name} names stage(s) {', '.join(map(repr, unknown))}, not in funnel "
                    f"{funnel.name!r} (stages: {', '.join(funnel.stage_names)})",
                )
            if not scoped:
                continue
            event = events[0]
            listed = [s for s in (stages or funnel.stage_names) if s in funnel]
            refused = [s for s in listed if event not in funnel.allowed_events(s)]
            if refused and event in funnel.events:
                self.add(
                    "policy-event-not-allowed",
                    Severity.WARNING,
                    where,
                    f"{name} may fire {event!r} from {', '.join(refused)}, where the funnel "
                    "forbids it: each such touch logs a refusal. Use "
                    f"stages=stages_allowing(funnel, {event!r}).",
                )

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
                        self.guard_error(t.guard, exc, [*_path_to(funnel, t.source), repr(ctx)])
                        break
                    self.observer.record_guard(t.guard, result)
                else:
                    continue
                break
        table = CompiledFunnel(funnel, self.hooks)
        for profile in self.profiles:
            for score in self.scores:
                self._walk_profile(table, profile, score)

    def _walk_profile(
        self, table: CompiledFunnel, profile: Mapping[str, Any], score: float
    ) -> None:
        funnel = self.funnel
        start = funnel.initial.name
        seen = {start}
        self.observer.reached.add(start)
        queue = deque([start])
        while queue:
            stage = queue.popleft()
            for event in funnel.allowed_events(stage):
                ctx = self.context(stage, event, profile, score)
                try:
                    t = table.step(stage, event, ctx, reason=_REASON)
                except TransitionNotAllowed:
                    continue
                except HookError:
                    continue  # reported by the guard probe
                self._note_model_move(t, profile)
                if t.target not in seen:
                    seen.add(t.target)
                    self.observer.reached.add(t.target)
                    queue.append(t.target)

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
            users = [t for t in funnel.transitions if t.guard == name]
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
                self.guard_error(name, exc, [*_path_to(funnel, ctx.stage), repr(ctx)])

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
        """One touch of every kind, and one for every profile, each on a fresh engine.

        What fails on one kind of touch or for one segment is then found
        without luck; combinations are left to the random exploration.
        """
        probes = [(kind, 0) for kind in self.kinds]
        probes += [(_NEUTRAL_KIND, profile) for profile in range(1, len(self.profiles))]
        for kind, profile in probes:
            lines: list[str] = []
            self.examples += 1
            try:
                self.run_steps([("touch", 0, kind, 0, profile)], lines, known)
            except _Found as found:
                severity = Severity.WARNING if found.code == "policy-refused" else Severity.ERROR
                self.add(found.code, severity, found.where, found.what, lines)
                known.add((found.code, found.where))

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

        engine = self.engine([self.observer])
        log = self._play(engine, steps, lines, found)
        if engine.rebuild() != dict(engine.journeys):
            found(
                "invariant-violation",
                "engine",
                "rebuilding the journeys from the log does not give the live state",
                "rebuild() differs from the live journeys",
            )
        again = self.engine()
        self._play(again, steps, [], _ignore)
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
            return f"scorer {_hook_name(self.scorer)}"
        event, source = first.get("event"), first.get("source")
        same_move = event == other.get("event") and source == other.get("source")
        if same_move and isinstance(source, str) and source in self.funnel:
            guards = {t.guard for t in self.funnel.transitions_from(source) if t.event == event}
            named = sorted(g for g in guards if g is not None)
            if len(named) == 1:
                return f"guard {named[0]}"  # same event, other outcome: the guard decided
        actors = (str(first.get("actor", "")), str(other.get("actor", "")))
        if any(a.startswith("policy:") for a in actors):
            return f"policy {_hook_name(self.policy)}"
        return "engine"

    def _play(
        self,
        engine: Engine,
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
                shown = f" with {_fmt_attributes(attributes)}" if attributes else ""
                lines.append(f"touch {lead} {touch_kind!r} at +{_elapsed(clock)}{shown}")
                before = len(engine.records)
                try:
                    engine.ingest_one(touch)
                except HookError as exc:
                    found(*self._hook_failure(exc, engine))
                    continue
                self._check_refusals(engine.records[before:], touch, found)
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
        return [r.to_dict() for r in engine.records]

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
        if exc.hook == engine.scorer_name and "scor" in str(exc):
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
        if touch.kind in self.funnel.events:
            return  # the touch itself asked for the event: the input is wrong, not the policy
        for record in records:
            if record.kind is RecordKind.REFUSED and record.actor.name.startswith("policy:"):
                name = record.actor.name.removeprefix("policy:")
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

        def teardown(machine: PipelineMachine) -> None:
            for record in machine.records:
                observer.on_record(record, None)
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
            users = "; ".join(_label(t) for t in funnel.transitions if t.guard == name)
            self.add(
                "guard-never-true",
                Severity.WARNING,
                f"guard {name}",
                f"guard {name!r} returned False on every lead tried ({explored_by}, and "
                f"{self.options.budget} generated contexts), so {users} never happens. "
                "If real leads can pass it, give verify() such attributes=.",
            )
        dead = set(never) | unavailable
        for event in funnel.events:
            ts = [t for t in funnel.transitions if t.event == event]
            if all(t.guard is not None and t.guard in never for t in ts):
                guards = ", ".join(dict.fromkeys(t.guard or "" for t in ts))
                self.add(
                    "event-never-enabled",
                    Severity.WARNING,
                    f"event {event}",
                    f"every transition of event {event!r} is guarded by {guards}, never true "
                    "on any lead tried: sending it is always refused",
                )
        live = _shortest_paths(
            funnel, usable=lambda t: t.guard is None or t.guard not in unavailable
        )
        for stage in funnel.stage_names:
            if stage in observer.reached or stage not in live:
                continue
            entries = [t for t in funnel.transitions if t.target == stage]
            dead_entries = [t for t in entries if t.guard in dead]
            why = ""
            if dead_entries and len(dead_entries) == len(entries):
                listed = ", ".join(_label(t) for t in dead_entries)
                why = f"; its only entries are guarded by never-true guards ({listed})"
            self.add(
                "stage-never-reached",
                Severity.WARNING,
                f"stage {stage}",
                f"no explored lead ever entered {stage!r} ({explored_by}){why}",
                [_label(t) for t in _shortest_paths(funnel)[stage]],
            )
        self._check_handoffs(explored_by, live)

    def _check_handoffs(self, explored_by: str, live: Mapping[str, tuple[Transition, ...]]) -> None:
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
                _where_transition(t),
                f"the funnel allows a handoff from {key[2]!r} to {key[3]!r} on {_label(t)} "
                f"(for leads like {_fmt_attributes(profile)}), but no explored lead made it "
                f"({explored_by})",
                [*(_label(x) for x in _shortest_paths(funnel)[t.source]), _label(t)],
            )


_NOT_DETERMINISTIC = re.compile(r"the (scorer|policy|guard) '([^']*)' is not deterministic")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _harness_failure(exc: AssertionError) -> tuple[str, str, str]:
    """The code, where and what of a failure of the stateful harness."""
    message = str(exc)
    match = _NOT_DETERMINISTIC.search(message)
    if match is not None:
        return (
            "nondeterministic",
            f"{match[1]} {match[2]}",
            f"{message.splitlines()[0]} (found by the stateful harness)",
        )
    if message.startswith("the same input gave another output"):
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
