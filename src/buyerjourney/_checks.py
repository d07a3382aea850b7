"""The structural checks of a pipeline, and the report every verification returns.

This is the half of the verifier that needs nothing beyond the core: no
Hypothesis, no engine. :func:`verify_structure` looks at a funnel with its
owner rules, hooks and policy without running anything: owner rules (gaps,
shadowed overrides, unknown teams ...), guards the hooks do not register,
gates that a lead can bypass (a transition declared ``bypasses_gate`` is
reported as information, not as a problem), gates entered without a change
of owning team, gates that no member can accept, recycle loops with no way out,
stages that cannot lead to a won stage, and built-in policies naming events
or stages the funnel lacks. :func:`buyerjourney.testing.verify.verify`
runs the same checks, then explores the pipeline with Hypothesis; both
return a :class:`VerificationReport`. ::

    from buyerjourney import presets
    from buyerjourney._checks import verify_structure

    report = verify_structure(presets.demand_waterfall())
    assert report.ok and not report.explored

Every check reads what it needs from codes and fields (a
:class:`~buyerjourney.errors.Problem`'s ``code`` and ``subject``), never from
message texts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal

import attrs

from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney._core.graph import PathTree, backward_reach, components
from buyerjourney._core.owners import Condition, OwnerRules
from buyerjourney._core.policies import (
    AllOf,
    AnyOf,
    MatrixPolicy,
    Policy,
    ThresholdPolicy,
    TouchKindPolicy,
)
from buyerjourney._core.protocols import Hooks, hook_name
from buyerjourney._core.scoring import AttributeRule, FitCriterion, PointsRule, Scorer
from buyerjourney.errors import InvalidOwnerRules

__all__ = [
    "CODES",
    "DEFAULT_BUDGET",
    "STANDARD_PROFILES",
    "Coverage",
    "CoverageCounter",
    "Finding",
    "Hints",
    "MissingGuards",
    "Severity",
    "Structure",
    "VerificationReport",
    "as_missing_guards",
    "fmt_attributes",
    "funnel_owners",
    "hints",
    "label",
    "lead_profiles",
    "verify_structure",
    "where_transition",
]

DEFAULT_BUDGET: Final = 100
"""Examples per Hypothesis search when no *budget* is given."""

STANDARD_PROFILES: Final[tuple[Mapping[str, Any], ...]] = (
    {},
    {"segment": "smb", "employees": 10, "country": "BR"},
    {"segment": "mid_market", "employees": 999, "country": "DE"},
    {"segment": "enterprise", "employees": 1000, "country": "US"},
    {"segment": "enterprise", "employees": 50_000, "country": "US"},
)
"""The lead profiles every verification tries first, simplest first."""


class Severity(enum.Enum):
    """How bad a finding is.

    ``ERROR``: the pipeline is wrong: it cannot run, or a lead can end up
    somewhere the model forbids. ``WARNING``: something looks unintended
    (dead guards, stages never reached), or could not be checked. ``INFO``:
    nothing is wrong; the report notes something the definition declares on
    purpose (a gate bypass marked ``bypasses_gate``), so a reviewer sees it.
    """

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


_SEVERITY_ORDER: Final[Mapping[Severity, int]] = MappingProxyType(
    {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
)


CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "owner-gap": "a stage where some lead would have no owning team",
        "owner-shadowed": "an owner override that can never apply",
        "owner-rules": "another problem of the owner rules (unknown team or stage, duplicate ...)",
        "unknown-hook": "a guard the funnel names is not registered in the hooks",
        "guard-unavailable": "a guard the funnel names is not available (command line)",
        "gate-bypass": "a lead can get past a gate stage without entering it",
        "gate-bypass-declared": "a transition declared bypasses_gate skips a gate, on purpose",
        "gate-bypass-unused": "a transition declared bypasses_gate skips no gate",
        "gate-no-handoff": "a transition into a gate keeps the same owning team",
        "gate-nobody-accepts": "no member holds a team that owns a gate",
        "handoff-without-recycle": (
            "with acceptance after handoffs, a stage a lead is handed off at has no backward "
            "transition, so the receiving team can only accept there"
        ),
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
        severity: :attr:`Severity.ERROR`, :attr:`Severity.WARNING` or
            :attr:`Severity.INFO`.
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
    """Everything :func:`verify` found, errors first, then warnings, then information.

    Attributes:
        funnel: The name of the funnel verified.
        findings: Every finding, errors first, then warnings, then
            information, each group in the order found.
        examples: How many runs the engine exploration made (shrinking included).
        budget: The budget the verification ran with.
        explored: Whether the behavioural passes (model and engine
            exploration) ran; ``False`` for the structural checks alone.
        coverage: The stages and transitions the engine runs reached, with
            counts, or ``None`` when nothing ran.
    """

    funnel: str
    findings: tuple[Finding, ...]
    examples: int = 0
    budget: int = DEFAULT_BUDGET
    explored: bool = True
    coverage: Coverage | None = None

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings of severity error."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings of severity warning."""
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def infos(self) -> tuple[Finding, ...]:
        """The findings of severity info: things declared on purpose, not problems."""
        return tuple(f for f in self.findings if f.severity is Severity.INFO)

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
        counts = (
            f"{errors} error{'' if errors == 1 else 's'}, "
            f"{warnings} warning{'' if warnings == 1 else 's'}"
        )
        if self.infos:
            counts += f", {len(self.infos)} info"
        if self.explored:
            head = (
                f"verification of funnel {self.funnel!r}: {counts} "
                f"({self.examples} explored runs, budget {self.budget})"
            )
        else:
            head = f"verification of funnel {self.funnel!r} (structure only): {counts}"
        if self.coverage is not None:
            head += f"\n{self.coverage}"
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
            "infos": len(self.infos),
            "examples": self.examples,
            "budget": self.budget,
            "explored": self.explored,
            "findings": [f.to_dict() for f in self.findings],
            "coverage": None if self.coverage is None else self.coverage.to_dict(),
        }


# ---------------------------------------------------------------- coverage


def _frozen_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(counts))


@attrs.frozen
class Coverage:
    """Which stages and transitions explored runs reached, and how often.

    A stage counts as reached when a lead is created in it or enters it by a
    transition of the funnel; a stage set by hand (``override``) says nothing
    about what the funnel lets leads reach, so it does not count.

    Attributes:
        stages: Each stage of the funnel with the number of times a lead
            entered it (0: never), in the funnel's order.
        transitions: Each transition, labelled ``"event: source -> target"``
            (as in examples), with the number of times a lead took it.
        reachable: The stages a lead can reach from the initial stage
            (guards aside): what a thorough exploration reaches.
        runs: How many runs (examples, shrinking included) were counted.
    """

    stages: Mapping[str, int] = attrs.field(converter=_frozen_counts)
    transitions: Mapping[str, int] = attrs.field(converter=_frozen_counts)
    reachable: tuple[str, ...] = ()
    runs: int = 0

    @property
    def reached(self) -> tuple[str, ...]:
        """The stages some lead entered."""
        return tuple(name for name, count in self.stages.items() if count)

    @property
    def unreached(self) -> tuple[str, ...]:
        """The reachable stages no lead entered."""
        return tuple(name for name in self.reachable if not self.stages.get(name))

    @property
    def untaken(self) -> tuple[str, ...]:
        """The transitions no lead took."""
        return tuple(name for name, count in self.transitions.items() if not count)

    @property
    def complete(self) -> bool:
        """Whether every reachable stage was reached."""
        return not self.unreached

    def __str__(self) -> str:
        taken = sum(1 for count in self.transitions.values() if count)
        text = (
            f"coverage: {len(self.reached)}/{len(self.reachable)} reachable stages, "
            f"{taken}/{len(self.transitions)} transitions in {self.runs} runs"
        )
        if self.unreached:
            text += f"; never reached: {', '.join(self.unreached)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The coverage as a JSON-ready dict."""
        return {
            "runs": self.runs,
            "stages": dict(self.stages),
            "transitions": dict(self.transitions),
            "reached": list(self.reached),
            "unreached": list(self.unreached),
            "untaken": list(self.untaken),
            "complete": self.complete,
        }


class CoverageCounter:
    """Counts the stages and transitions in the logs of runs, for a :class:`Coverage`.

    Args:
        funnel: The funnel the runs ran on.
    """

    def __init__(self, funnel: Funnel) -> None:
        self.funnel = funnel
        self.stages: dict[str, int] = dict.fromkeys(funnel.stage_names, 0)
        self._labels: dict[tuple[str, str, str], str] = {}
        for t in funnel.transitions:
            self._labels.setdefault((t.source, t.event, t.target), label(t))
        self.transitions: dict[str, int] = dict.fromkeys(self._labels.values(), 0)
        self.runs = 0

    def add(self, records: Iterable[Any]) -> None:
        """Count one run's log (records with ``kind``, ``source``, ``event`` and ``target``).

        Args:
            records: The records of the run, in order.
        """
        self.runs += 1
        for record in records:
            kind = getattr(record.kind, "value", record.kind)
            if kind == "created" and record.target in self.stages:
                self.stages[record.target] += 1
            elif kind == "transition" and record.target in self.stages:
                self.stages[record.target] += 1
                key = self._labels.get((record.source, record.event, record.target))
                if key is not None:
                    self.transitions[key] += 1

    def result(self) -> Coverage:
        """The coverage counted so far."""
        funnel = self.funnel
        reachable = PathTree(funnel.transitions_from, funnel.initial.name)
        return Coverage(
            self.stages,
            self.transitions,
            tuple(n for n in funnel.stage_names if n in reachable),
            self.runs,
        )


# ---------------------------------------------------------------- labels


def label(t: Transition) -> str:
    """A transition as a step of an example: ``"event: source -> target [if guard]"``.

    Args:
        t: The transition.
    """
    guard = f" [if {t.guard}]" if t.guard else ""
    return f"{t.event}: {t.source} -> {t.target}{guard}"


def where_transition(t: Transition) -> str:
    """The ``where`` of a finding about *t*.

    Args:
        t: The transition.
    """
    return f"transition {label(t)}"


def fmt_attributes(attributes: Mapping[str, Any]) -> str:
    """Lead attributes as an example shows them, keys sorted.

    Args:
        attributes: The attributes.
    """
    return repr(dict(sorted(attributes.items())))


def funnel_owners(funnel: Funnel) -> OwnerRules:
    """The funnel's stage owners as owner rules, unchecked: a gap becomes a finding.

    Args:
        funnel: The funnel.
    """
    stage_owners = {s.name: s.owner for s in funnel.stages if s.owner is not None}
    return OwnerRules(defaults=stage_owners, teams=tuple(stage_owners.values()))


# ---------------------------------------------------------------- what the hooks reveal


@attrs.define
class Hints:
    """What the scorer and the policy say about the leads and touches that matter.

    Attributes:
        kinds: Touch kinds the scorer or policy names.
        scores: Scores where something changes (thresholds).
        profiles: Lead attributes the scorer's rules look at.
    """

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


def hints(scorer: object, policy: object, thresholds: Iterable[float]) -> Hints:
    """Read the built-in scorer and policy parts for kinds, scores and profiles.

    Args:
        scorer: The scorer, or ``None``.
        policy: The policy, or ``None``.
        thresholds: The engine's thresholds.
    """
    found = Hints(scores=list(thresholds))
    for obj in (*_walk(scorer), *_walk(policy)):
        if isinstance(obj, PointsRule) and obj.kind is not None:
            found.kinds.append(obj.kind)
        elif isinstance(obj, TouchKindPolicy):
            found.kinds.extend(obj.mapping)
        elif isinstance(obj, ThresholdPolicy):
            found.scores.append(obj.threshold)
        elif isinstance(obj, (AttributeRule, FitCriterion)):
            found.profiles.extend({obj.attribute: v} for v in obj.values[:2])
    return found


def _satisfying(condition: Condition) -> Any:
    """A value of the condition's attribute that matches it."""
    if condition.op in ("in", "gte"):
        return condition.values[0]
    if condition.op == "lt":
        return condition.values[0] - 1  # type: ignore[operator]
    taken = {v for v in condition.values if isinstance(v, str)}
    other = "other"
    while other in taken:
        other += "_"
    return other


def lead_profiles(
    owners: OwnerRules,
    found: Hints,
    typical: Iterable[Mapping[str, Any]] = (),
    extra: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Representative lead profiles, simplest first, each once.

    Args:
        owners: The owner rules: a lead matching each override is tried.
        found: What the scorer and the policy look at.
        typical: Typical leads to try next (the verifier's strategies give them).
        extra: The caller's own profiles, tried last.
    """
    candidates: list[Mapping[str, Any]] = [*STANDARD_PROFILES]
    candidates += [
        {c.attribute: _satisfying(c) for c in rule.when} for rule in owners.overrides if rule.when
    ]
    candidates += found.profiles
    candidates += list(typical)
    candidates += list(extra)
    out: dict[str, dict[str, Any]] = {}
    for profile in candidates:
        out.setdefault(fmt_attributes(profile), dict(profile))
    return list(out.values())


def _policy_parts(policy: object, name: str) -> Iterator[tuple[str, object]]:
    """Each built-in policy inside *policy*, named as the engine names it in errors."""
    yield name, policy
    if isinstance(policy, (AnyOf, AllOf)):
        kind = type(policy).__name__
        for i, part in enumerate(policy.policies):
            yield from _policy_parts(part, f"{kind}[{i}]:{hook_name(part, 'policy')}")


def as_missing_guards(value: str) -> MissingGuards:
    """*value* as a :data:`MissingGuards` option.

    Args:
        value: ``"error"`` or ``"warning"``.

    Raises:
        ValueError: *value* is neither.
    """
    if value == "error":
        return "error"
    if value == "warning":
        return "warning"
    msg = f"missing_guards must be 'error' or 'warning' (got {value!r})"
    raise ValueError(msg)


# ---------------------------------------------------------------- the checks


class Structure:
    """The structural checks of one pipeline, and the findings they make.

    :meth:`check` runs every structural check; the verifier's exploration
    builds on this class and adds its findings to the same
    :attr:`findings`, so that each ``(code, where)`` is reported once.

    Args:
        funnel: The funnel.
        owners: The owner rules, possibly with problems.
        hooks: The guard hooks the user registered.
        policy: The handoff policy, or ``None``.
        profiles: The lead profiles to try (see :func:`lead_profiles`).
        missing_guards: ``"error"`` or ``"warning"`` for a guard the hooks lack.
    """

    def __init__(
        self,
        funnel: Funnel,
        *,
        owners: OwnerRules,
        hooks: Hooks,
        policy: Policy | None,
        profiles: Sequence[Mapping[str, Any]],
        missing_guards: MissingGuards,
    ) -> None:
        self.funnel = funnel
        self.owners = owners
        self.user_hooks = hooks
        self.policy = policy
        self.profiles = [dict(p) for p in profiles]
        self.missing_guards = as_missing_guards(missing_guards)
        self.missing = [g for g in funnel.guards if g not in hooks.guards]
        self.owner_problems = owners.problems(funnel)
        self.findings: dict[tuple[str, str], Finding] = {}
        self.paths = PathTree(funnel.transitions_from, funnel.initial.name)
        self.trapped: set[str] = set()
        self.declared_bypasses: set[Transition] = set()

    # ------------------------------------------------------------ bookkeeping

    def add(
        self,
        code: str,
        severity: Severity,
        where: str,
        what: str,
        example: Iterable[str] = (),
    ) -> None:
        """Record a finding, unless one with the same code and where exists.

        Args:
            code: A code from :data:`CODES`.
            severity: How bad it is.
            where: What it is about.
            what: What is wrong and what to do.
            example: A minimal example, one step per item.
        """
        key = (code, where)
        if key not in self.findings:
            self.findings[key] = Finding(code, severity, what, where, tuple(example))

    def report(
        self,
        *,
        examples: int = 0,
        budget: int = DEFAULT_BUDGET,
        explored: bool = True,
        coverage: Coverage | None = None,
    ) -> VerificationReport:
        """The findings so far as a report, errors first.

        Args:
            examples: How many runs were explored.
            budget: The budget of the exploration.
            explored: Whether the behavioural passes ran.
            coverage: What the engine runs reached.
        """
        findings = sorted(self.findings.values(), key=lambda f: _SEVERITY_ORDER[f.severity])
        return VerificationReport(
            self.funnel.name, tuple(findings), examples, budget, explored, coverage
        )

    def owner(self, stage: str, attributes: Mapping[str, Any]) -> str | None:
        """The team owning *stage* for a lead, or ``None`` where the rules have a gap.

        Args:
            stage: The stage entered.
            attributes: The lead's attributes.
        """
        try:
            return self.owners.owner(stage, attributes)
        except InvalidOwnerRules:
            return None

    def path_to(self, stage: str) -> list[str]:
        """A shortest event path from the initial stage to *stage* (empty if it is initial).

        Args:
            stage: The stage to reach.
        """
        return [label(t) for t in self.paths.path(stage)]

    # ------------------------------------------------------------ the checks

    def check(self) -> None:
        """Run every structural check, in report order."""
        self.check_owner_rules()
        self.check_hooks()
        self.check_gates()
        self.check_loops()
        self.check_won()
        self.check_policies()

    def check_owner_rules(self) -> None:
        """One finding per problem of the owner rules, by its code."""
        for problem in self.owner_problems:
            if problem.code == "no-owner":
                stage = problem.subject
                example = [
                    *self.path_to(stage),
                    f"a lead with attributes {{}} enters {stage!r}: no team owns it",
                ]
                self.add("owner-gap", Severity.ERROR, f"stage {stage}", problem.message, example)
            elif problem.code == "shadowed-override":
                where = f"owner rules {problem.subject}"
                self.add("owner-shadowed", Severity.ERROR, where, problem.message)
            else:
                where = f"owner rules {problem.subject}" if problem.subject else "owner rules"
                earlier = self.findings.get(("owner-rules", where))
                if earlier is None:
                    self.add("owner-rules", Severity.ERROR, where, problem.message)
                else:  # one finding per place, listing every problem there
                    what = f"{earlier.what}; {problem.message}"
                    self.findings[("owner-rules", where)] = attrs.evolve(earlier, what=what)

    def check_hooks(self) -> None:
        """A finding for each guard the funnel names and the hooks lack."""
        missing = set(self.missing)
        using: dict[str, list[Transition]] = {}
        for t in self.funnel.transitions:
            if t.guard in missing:
                using.setdefault(t.guard, []).append(t)
        for name in self.missing:
            users = using[name]
            used = "; ".join(label(t) for t in users)
            if self.missing_guards == "error":
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
        """Gates a lead can bypass, entered without a handoff, or that nobody can accept.

        With the funnel's ``acceptance="handoff"`` gates mean nothing: the
        check is then that a lead can be rejected wherever it is handed off.
        """
        funnel = self.funnel
        if funnel.acceptance == "handoff":
            self._check_handoff_acceptance()
            return
        gates = [s for s in funnel.stages if s.gate]
        into: dict[str, list[Transition]] = {gate.name: [] for gate in gates}
        for t in funnel.transitions:
            if t.target in into:
                into[t.target].append(t)
        for gate in gates:
            self._check_bypass(gate, gates)
            for t in into[gate.name]:
                self._check_gate_handoff(t, gate)
            self._check_gate_members(gate)
        for t in funnel.transitions:
            if t.bypasses_gate and t not in self.declared_bypasses:
                self.add(
                    "gate-bypass-unused",
                    Severity.WARNING,
                    where_transition(t),
                    f"{label(t)} is declared bypasses_gate=True but takes no lead past a gate; "
                    "remove the declaration, or check the funnel's gates and ranks.",
                )

    def _check_bypass(self, gate: Stage, gates: Sequence[Stage]) -> None:
        """A path past *gate* is an error, unless a transition on it declares ``bypasses_gate``.

        The stages behind the gate are those forward of it with a higher
        rank. A path from the initial stage that reaches one of them without
        entering the gate (nor an earlier gate) is a bypass. Paths through a
        declared transition are intended: each declared transition that
        carries a lead past the gate is reported as information, and only a
        bypass using none of them is an error.
        """
        funnel = self.funnel
        forward = PathTree(
            funnel.transitions_from, gate.name, usable=lambda t: t.direction is Direction.FORWARD
        )
        behind = {
            name
            for name in forward
            if not funnel.stage(name).kind.is_exit and funnel.stage(name).rank > gate.rank
        }
        avoid = frozenset(g.name for g in gates if g.rank <= gate.rank)
        everywhere = PathTree(funnel.transitions_from, funnel.initial.name, avoid=avoid)
        for t in funnel.transitions:
            if not t.bypasses_gate or t.source not in everywhere or t.source in behind:
                continue
            if t.target in behind and t.target not in avoid:
                self.declared_bypasses.add(t)
                self.add(
                    "gate-bypass-declared",
                    Severity.INFO,
                    where_transition(t),
                    f"{label(t)} takes leads to {t.target!r} past gate {gate.name!r}, "
                    "declared on purpose (bypasses_gate): the receiving team does not "
                    "accept these leads.",
                    [*(label(step) for step in everywhere.path(t.source)), label(t)],
                )
        paths = PathTree(
            funnel.transitions_from,
            funnel.initial.name,
            avoid=avoid,
            usable=lambda t: not t.bypasses_gate,
        )
        bypassed = sorted(
            (name for name in behind if name in paths), key=lambda n: (paths.depth[n], n)
        )
        if not bypassed:
            return
        path = paths.path(bypassed[0])
        crossing = path[-1]
        guard = f", when guard {crossing.guard!r} passes" if crossing.guard else ""
        self.add(
            "gate-bypass",
            Severity.ERROR,
            where_transition(crossing),
            f"a lead can reach {bypassed[0]!r} (behind gate {gate.name!r}) without entering "
            f"the gate, through {label(crossing)}{guard}: the receiving team never accepts "
            f"it. Route the transition into {gate.name!r}, remove it, or, if skipping the "
            "gate is intended (a self-serve purchase), declare it with bypasses_gate=True.",
            [label(t) for t in path],
        )

    def _check_gate_handoff(self, t: Transition, gate: Stage) -> None:
        for profile in self.profiles:
            before = self.owner(t.source, profile)
            after = self.owner(gate.name, profile)
            if before is None or before != after:
                continue
            example = [*self.path_to(t.source), label(t)]
            example.append(
                f"a lead with attributes {fmt_attributes(profile)} is owned by {before!r} "
                f"in both {t.source!r} and {gate.name!r}"
            )
            self.add(
                "gate-no-handoff",
                Severity.ERROR,
                where_transition(t),
                f"{label(t)} enters gate {gate.name!r} but the owning team stays {before!r}: "
                "the team would accept its own lead, and no handoff is recorded. Give the "
                "gate the receiving team, make it an ordinary stage, or let acceptance "
                "follow the handoff (the funnel's acceptance='handoff').",
                example,
            )
            return

    def _check_handoff_acceptance(self) -> None:
        recycles = {t.source for t in self.funnel.transitions if t.direction is Direction.BACKWARD}
        for t in self.funnel.transitions:
            if t.target in recycles:
                continue
            for profile in self.profiles:
                before = self.owner(t.source, profile)
                after = self.owner(t.target, profile)
                if before is None or after is None or before == after:
                    continue
                example = [*self.path_to(t.source), label(t)]
                example.append(
                    f"a lead with attributes {fmt_attributes(profile)} is handed from "
                    f"{before!r} to {after!r} in {t.target!r}"
                )
                self.add(
                    "handoff-without-recycle",
                    Severity.WARNING,
                    where_transition(t),
                    f"{label(t)} hands leads to {after!r} in {t.target!r}, which has no "
                    f"backward transition: {after!r} can accept them there but not reject "
                    f"them. Add a backward transition out of {t.target!r} if rejecting "
                    "should recycle the lead.",
                    example,
                )
                break

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
                self.path_to(gate.name),
            )

    def check_loops(self) -> None:
        """Loops of stages from which no terminal stage can be reached."""
        funnel = self.funnel
        terminal = [s.name for s in funnel.stages if s.terminal]
        finishing = backward_reach(funnel, terminal)
        stuck = [n for n in funnel.stage_names if n not in finishing]
        # Every move out of a stuck stage leads to a stuck stage. A loop is reported once,
        # at its component, unless it leads into a closed loop further on (reported there).
        of = components(funnel, stuck)
        open_ends = {
            of[name]
            for name in stuck
            for t in funnel.transitions_from(name)
            if of[t.target] != of[name]
        }
        groups: dict[int, list[str]] = {}
        for name in stuck:
            groups.setdefault(of[name], []).append(name)
        for ident, members in groups.items():
            if ident in open_ends:
                continue
            component = set(members)
            self.trapped |= component
            open_kind = any(funnel.stage(m).kind is StageKind.OPEN for m in members)
            self.add(
                "no-way-out",
                Severity.ERROR if open_kind else Severity.WARNING,
                f"stages {', '.join(members)}",
                f"stages {', '.join(members)} form a loop with no way out: no terminal stage "
                "can be reached from them, so a lead that enters cycles forever. Add an exit "
                "(e.g. to a lost stage) or a way forward.",
                self.path_to(members[0]),
            )

    def check_won(self) -> None:
        """A funnel without a won stage, and open stages that cannot lead to one."""
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
        winning = backward_reach(funnel, won)
        for stage in funnel.stages:
            if stage.kind is not StageKind.OPEN or stage.name in self.trapped:
                continue
            if stage.name not in winning:
                self.add(
                    "no-path-to-won",
                    Severity.WARNING,
                    f"stage {stage.name}",
                    f"open stage {stage.name!r} has no path to a won stage "
                    f"({', '.join(sorted(won))}); leads there can only be lost",
                    self.path_to(stage.name),
                )

    def check_policies(self) -> None:
        """Built-in policies naming events or stages the funnel lacks, or firing where refused."""
        if self.policy is None:
            return
        funnel = self.funnel
        known = frozenset(funnel.events)
        for name, part in _policy_parts(self.policy, hook_name(self.policy, "policy")):
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
                if event not in known:
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
            if refused and event in known:
                self.add(
                    "policy-event-not-allowed",
                    Severity.WARNING,
                    where,
                    f"{name} may fire {event!r} from {', '.join(refused)}, where the funnel "
                    "forbids it: each such touch logs a refusal. Use "
                    f"stages=stages_allowing(funnel, {event!r}).",
                )


def verify_structure(
    funnel: Funnel,
    owners: OwnerRules | None = None,
    hooks: Hooks | None = None,
    scorer: Scorer | None = None,
    policy: Policy | None = None,
    *,
    thresholds: Iterable[float] = (),
    attributes: Iterable[Mapping[str, Any]] = (),
    missing_guards: MissingGuards = "error",
    not_explored: str = "",
) -> VerificationReport:
    """Run the structural checks of :func:`~buyerjourney.testing.verify.verify` alone.

    Nothing runs: no guard, scorer or policy is called, and Hypothesis is
    not needed. The report's :attr:`~VerificationReport.explored` is
    ``False``.

    Args:
        funnel: The funnel to check.
        owners: The owner rules; by default each stage's ``owner``. Their
            problems are findings.
        hooks: The guard hooks; a guard the funnel names but *hooks* lacks is
            a finding (see *missing_guards*).
        scorer: The scorer, read (not called) for the attributes it looks at.
        policy: The handoff policy; built-in policies are checked against the
            funnel.
        thresholds: The engine's thresholds.
        attributes: Lead profiles to try besides the built-in ones (for gates
            entered without a handoff).
        missing_guards: ``"error"`` (``unknown-hook``) or ``"warning"``
            (``guard-unavailable``).
        not_explored: Why the behavioural checks did not run, if they should
            have: reported as a ``not-explored`` warning.

    Returns:
        The report; :attr:`VerificationReport.ok` when there is no error.

    Raises:
        ValueError: *missing_guards* is neither ``"error"`` nor ``"warning"``.
    """
    rules = owners if owners is not None else funnel_owners(funnel)
    found = hints(scorer, policy, thresholds)
    structure = Structure(
        funnel,
        owners=rules,
        hooks=hooks if hooks is not None else Hooks(),
        policy=policy,
        profiles=lead_profiles(rules, found, extra=attributes),
        missing_guards=missing_guards,
    )
    structure.check()
    if not_explored:
        structure.add("not-explored", Severity.WARNING, f"funnel {funnel.name}", not_explored)
    return structure.report(explored=False)
