"""Which path a bulk replay takes: the one place that decides what the fast paths can compute.

:func:`plan` looks at a :class:`~buyerjourney.Pipeline` and accepts for the
``"columnar"`` path only what the vectorised code implements, checked all the
way down, by *exact* type (a subclass may override anything, so it is never
trusted to behave like its base):

* the scorer: ``None``, or exactly a :class:`~buyerjourney.scoring.PointsScorer`
  whose rules are exactly :class:`~buyerjourney.scoring.PointsRule`, whose
  groups are exactly :class:`~buyerjourney.scoring.ScoreGroup` with a decay
  that is exactly a :class:`~buyerjourney.scoring.LinearDecay`, exactly a
  :class:`~buyerjourney.scoring.TimeWindow` or ``None``, and whose attribute
  rules are exactly :class:`~buyerjourney.scoring.AttributeRule`, with
  points within the exact range of the kernel's integers; or exactly a
  :class:`~buyerjourney.scoring.CombinedScorer` of such a points scorer
  (the engagement) and exactly a :class:`~buyerjourney.scoring.FitGrader`
  of exactly :class:`~buyerjourney.scoring.FitCriterion` (the fit);
* the policy: ``None``, or a tree of exactly
  :class:`~buyerjourney.policies.ThresholdPolicy`,
  :class:`~buyerjourney.policies.TouchKindPolicy`,
  :class:`~buyerjourney.policies.MatrixPolicy`,
  :class:`~buyerjourney.policies.AnyOf` and :class:`~buyerjourney.policies.AllOf`,
  with at most :data:`MAX_POLICY_THRESHOLDS` distinct thresholds (a matrix's
  three engagement bands count as thresholds), each exactly a float;
* the owner rules: exactly :class:`~buyerjourney.OwnerRules`; the pipeline:
  exactly a :class:`~buyerjourney.Pipeline`; recorded thresholds: exactly floats.

A scorer it cannot vectorise is called touch by touch (``"hooks"``);
anything else runs on the reference engine (``"reference"``). Every reason
is kept in :attr:`Plan.reasons`, in words.

The kernels never look at the pipeline's objects to decide anything: they
read the specification :func:`plan` built (:class:`~buyerjourney.bulk._kernels.ScorerSpec`,
the policy's thresholds, whether it reads grades), so a component plan did
not accept cannot reach them. Limits that depend on the batch (how many touches a lead has, how
long the batch spans) are checked by :func:`batch_problem` before the kernel
runs.
"""

from __future__ import annotations

import types
from fractions import Fraction
from typing import Any, Literal

import attrs

from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.policies import (
    AllOf,
    AnyOf,
    MatrixPolicy,
    ThresholdPolicy,
    TouchKindPolicy,
)
from buyerjourney._core.protocols import hook_name
from buyerjourney._core.scoring import (
    GRADES,
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    LinearDecay,
    PointsRule,
    PointsScorer,
    ScoreGroup,
    TimeWindow,
)
from buyerjourney._pipeline import Pipeline
from buyerjourney.bulk._kernels import (
    EXACT_MICRO,
    NEVER,
    SCALE,
    AttributeSpec,
    CriterionSpec,
    FitSpec,
    GroupSpec,
    RuleSpec,
    ScorerSpec,
)
from buyerjourney.bulk._schema import MICROSECOND

Array = Any
"""A NumPy array (NumPy is optional, so arrays are typed loosely)."""

__all__ = [
    "MAX_POLICY_THRESHOLDS",
    "Compiled",
    "Plan",
    "batch_problem",
    "compile_plan",
    "exact_float",
    "plan",
]

MAX_POLICY_THRESHOLDS = 16
"""The most distinct policy thresholds the decision table is built for."""

_EXACT_POINTS = f"{EXACT_MICRO // SCALE:,}"
_HOOKS = "the scorer is called touch by touch"
_REFERENCE = "the reference engine runs the batch"


@attrs.frozen
class Plan:
    """Which path :func:`replay` takes for a pipeline, and why not a faster one.

    Attributes:
        mode: ``"columnar"``, ``"hooks"`` or ``"reference"``.
        reasons: Why a faster path is not possible (empty for ``"columnar"``),
            one sentence per component or limit, naming what was received.
    """

    mode: Literal["columnar", "hooks", "reference"]
    reasons: tuple[str, ...] = ()


@attrs.frozen
class Compiled:
    """A plan with what the fast paths read instead of the pipeline's objects.

    Attributes:
        plan: The path and the reasons.
        scorer: The scorer as the kernel reads it; ``None`` when there is no
            scorer or it cannot be vectorised.
        limits: The policy's distinct thresholds, ascending (the score
            buckets of the decision table), a matrix's engagement bands included.
        graded: Whether the policy reads the score's grade (it has a
            :class:`~buyerjourney.policies.MatrixPolicy`), so that the
            decision table has a column per letter of the matrix.
    """

    plan: Plan
    scorer: ScorerSpec | None = None
    limits: tuple[float, ...] = ()
    graded: bool = False


# ---------------------------------------------------------------- wording


def _a(obj: object) -> str:
    """``"a function"``, ``"an AnyOf"``, ``"a MyPolicy (a subclass of ThresholdPolicy)"``."""
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return "a function"
    kind = type(obj)
    name = kind.__qualname__
    text = f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"
    bases = [b.__name__ for b in kind.__mro__[1:] if b.__module__.startswith("buyerjourney.")]
    if bases:
        text += f" (a subclass of {bases[0]})"
    return text


def _named(what: str, obj: object) -> str:
    """*what* and the hook's name, unless the name is just its class's: ``scorer 'mine'``."""
    name = hook_name(obj, what)
    return what if name == type(obj).__name__ else f"{what} {name!r}"


def _exactly(*kinds: str) -> str:
    named = [k if k == "None" else f"{'an' if k[:1] in 'AEIOU' else 'a'} {k}" for k in kinds]
    if len(named) == 1:
        return f"exactly {named[0]}"
    return f"exactly {', '.join(named[:-1])} or {named[-1]}"


def exact_float(value: float) -> bool:
    """Whether *value* is exactly a float (an int beyond 2**53 may not be)."""
    try:
        return float(value) == value
    except (OverflowError, TypeError, ValueError):
        return False


# ---------------------------------------------------------------- scorer


def _scorer_spec(scorer: object) -> tuple[ScorerSpec | None, list[str]]:
    """The kernel's reading of *scorer*, or the reasons it has none."""
    if type(scorer) is CombinedScorer:
        assert isinstance(scorer, CombinedScorer)
        return _combined_spec(scorer)
    if type(scorer) is not PointsScorer:
        return None, [
            f"the {_named('scorer', scorer)} is {_a(scorer)}, not "
            f"{_exactly('PointsScorer', 'CombinedScorer')}: {_HOOKS}"
        ]
    assert isinstance(scorer, PointsScorer)
    return _points_spec(scorer, "scorer")


def _combined_spec(scorer: CombinedScorer) -> tuple[ScorerSpec | None, list[str]]:
    """A combined scorer: the engagement's points, the fit's grade."""
    problems: list[str] = []
    engagement, fit = scorer.engagement, scorer.fit
    spec: ScorerSpec | None = None
    if type(engagement) is not PointsScorer:
        problems.append(
            f"the engagement scorer of the CombinedScorer is {_a(engagement)}, not "
            f"{_exactly('PointsScorer')}: {_HOOKS}"
        )
    else:
        assert isinstance(engagement, PointsScorer)
        spec, more = _points_spec(engagement, "engagement scorer")
        problems += more
    if type(fit) is not FitGrader:
        problems.append(
            f"the fit scorer of the CombinedScorer is {_a(fit)}, not {_exactly('FitGrader')}: "
            f"{_HOOKS}"
        )
    else:
        assert isinstance(fit, FitGrader)
        for i, criterion in enumerate(fit.criteria):
            if type(criterion) is not FitCriterion:
                problems.append(
                    f"fit criteria[{i}] ({criterion.name!r}) is {_a(criterion)}, not "
                    f"{_exactly('FitCriterion')}: {_HOOKS}"
                )
    if problems or spec is None:
        return None, problems
    assert isinstance(fit, FitGrader)
    criteria = tuple(CriterionSpec(c.attribute, tuple(c.values), c.steps) for c in fit.criteria)
    grader = FitSpec(criteria, GRADES.index("D"), len(GRADES) - 1)
    return attrs.evolve(spec, fit=grader), []


def _points_spec(scorer: PointsScorer, what: str) -> tuple[ScorerSpec | None, list[str]]:
    """The kernel's reading of a points scorer (the *what* of the pipeline), or why not."""
    problems: list[str] = []
    for i, rule in enumerate(scorer.rules):
        if type(rule) is not PointsRule:
            problems.append(
                f"{what} rules[{i}] ({rule.name!r}) is {_a(rule)}, not {_exactly('PointsRule')}: "
                f"{_HOOKS}"
            )
    for group in scorer.groups:
        if type(group) is not ScoreGroup:
            problems.append(
                f"score group {group.name!r} is {_a(group)}, not {_exactly('ScoreGroup')}: {_HOOKS}"
            )
        elif group.decay is not None and type(group.decay) not in (LinearDecay, TimeWindow):
            problems.append(
                f"the decay of score group {group.name!r} is {_a(group.decay)}, not "
                f"{_exactly('LinearDecay', 'TimeWindow', 'None')}: {_HOOKS}"
            )
    for i, attribute_rule in enumerate(scorer.attribute_rules):
        if type(attribute_rule) is not AttributeRule:
            problems.append(
                f"{what} attribute_rules[{i}] ({attribute_rule.name!r}) is {_a(attribute_rule)}, "
                f"not {_exactly('AttributeRule')}: {_HOOKS}"
            )
    if problems:
        return None, problems
    largest = Fraction(0)
    for rule in scorer.rules:
        size = abs(Fraction(rule.points) * SCALE)
        largest += size
        if size > EXACT_MICRO:
            problems.append(
                f"{what} rule {rule.name!r} gives {rule.points:g} points a touch, beyond the "
                f"{_EXACT_POINTS} points the vectorised kernel adds exactly: {_HOOKS}"
            )
    for attribute_rule in scorer.attribute_rules:
        size = abs(Fraction(attribute_rule.points) * SCALE)
        largest += size
        if size > EXACT_MICRO:
            problems.append(
                f"{what} attribute rule {attribute_rule.name!r} gives {attribute_rule.points:g} "
                f"points, beyond the {_EXACT_POINTS} points the vectorised kernel adds exactly: "
                f"{_HOOKS}"
            )
    if not problems and largest > EXACT_MICRO:
        problems.append(
            f"the {what}'s rules together give up to {float(largest / SCALE):g} points for one "
            f"touch, beyond the {_EXACT_POINTS} points the vectorised kernel adds exactly: "
            f"{_HOOKS}"
        )
    return (None, problems) if problems else (_translate(scorer), [])


def _group_order(scorer: PointsScorer) -> list[str]:
    declared = [group.name for group in scorer.groups]
    return list(dict.fromkeys([*declared, *(rule.group for rule in scorer.rules)]))


def _micro(value: float) -> int:
    return round(Fraction(value) * SCALE)


def _cap(value: float | None) -> int | None:
    # Scores never exceed EXACT_MICRO on the columnar path (plan and
    # batch_problem make sure), so a larger cap never cuts: clamp it to keep
    # it an int64.
    return None if value is None else min(_micro(value), EXACT_MICRO)


def _translate(scorer: PointsScorer) -> ScorerSpec:
    """The kernel's reading of a scorer whose components plan accepted."""
    declared = {group.name: group for group in scorer.groups}
    groups = []
    for name in _group_order(scorer):
        group = declared.get(name)
        decay = None if group is None else group.decay
        rules = tuple(
            RuleSpec(
                rule.kind,
                tuple(rule.where.items()),
                Fraction(rule.points) * SCALE,
                rule.repeatable,
            )
            for rule in scorer.rules
            if rule.group == name
        )
        cap = None if group is None else _cap(group.cap)
        if type(decay) is LinearDecay:
            share = Fraction(decay.fraction)
            whole = share.denominator * (decay.every // MICROSECOND)
            length = -(-whole // share.numerator)  # the age from which a touch keeps nothing
            groups.append(GroupSpec(rules, cap, "linear", length, Fraction(share.numerator, whole)))
        elif type(decay) is TimeWindow:
            groups.append(GroupSpec(rules, cap, "window", decay.within // MICROSECOND, Fraction(0)))
        else:
            assert decay is None
            groups.append(GroupSpec(rules, cap, "none", NEVER, Fraction(0)))
    attribute_rules = tuple(
        AttributeSpec(rule.attribute, tuple(rule.values), _micro(rule.points))
        for rule in scorer.attribute_rules
    )
    return ScorerSpec(tuple(groups), attribute_rules, _cap(scorer.total_cap))


# ---------------------------------------------------------------- policy


_POLICY_KINDS = _exactly("ThresholdPolicy", "TouchKindPolicy", "MatrixPolicy", "AnyOf", "AllOf")


def _policy_problems(
    policy: object, path: tuple[str, ...], limits: list[float], graded: list[bool]
) -> list[str]:
    """Why *policy* (at *path* in the policy tree) cannot be compiled.

    Collects the score thresholds into *limits*, and appends to *graded*
    for every part that reads the score's grade.
    """
    kind = type(policy)
    if kind is ThresholdPolicy:
        assert isinstance(policy, ThresholdPolicy)
        limits.append(policy.threshold)
        return []
    if kind is TouchKindPolicy:
        return []
    if kind is MatrixPolicy:
        assert isinstance(policy, MatrixPolicy)
        limits.extend(policy.engagement_bands)
        graded.append(True)
        return []
    if kind is AnyOf or kind is AllOf:
        assert isinstance(policy, (AnyOf, AllOf))
        problems: list[str] = []
        for i, part in enumerate(policy.policies):
            problems += _policy_problems(part, (*path, f"{kind.__name__}[{i}]"), limits, graded)
        return problems
    where = f"part {' > '.join(path)} of the policy" if path else "policy"
    return [
        f"the {_named(where, policy)} is {_a(policy)}, not {_POLICY_KINDS}, so it cannot be "
        f"compiled into a decision table: {_REFERENCE}"
    ]


# ---------------------------------------------------------------- plan


def compile_plan(pipeline: Pipeline) -> Compiled:
    """The plan for *pipeline*, with the specification the fast paths read.

    Args:
        pipeline: The pipeline to replay.

    Returns:
        The plan, and for the columnar path the kernel's reading of the
        scorer and the policy's thresholds.
    """
    reference: list[str] = []
    if type(pipeline) is not Pipeline:
        reference.append(
            f"the pipeline is {_a(pipeline)}, not {_exactly('Pipeline')}: its engine() is the "
            f"definition, so {_REFERENCE}"
        )
    if type(pipeline.owners) is not OwnerRules:
        reference.append(
            f"the owner rules are {_a(pipeline.owners)}, not {_exactly('OwnerRules')}: {_REFERENCE}"
        )
    if pipeline.funnel.acceptance != "stage":
        reference.append(
            f"the funnel's acceptance is {pipeline.funnel.acceptance!r}: the vectorised "
            f"lifecycle knows only acceptance at gate stages, so {_REFERENCE}"
        )
    for stage in pipeline.funnel.stages:
        kept = [
            name
            for name in ("accept_sla", "sla_calendar", "accept_calendar")
            if getattr(stage, name) is not None
        ]
        if kept:
            reference.append(
                f"stage {stage.name!r} has {' and '.join(kept)}: the vectorised lifecycle "
                f"knows only the time-in-stage SLA around the clock, so {_REFERENCE}"
            )
    found: list[float] = []
    graded: list[bool] = []
    if pipeline.policy is not None:
        reference += _policy_problems(pipeline.policy, (), found, graded)
    for value in (*found, *pipeline.thresholds):
        if not exact_float(value):
            reference.append(
                f"threshold {value!r} is not exactly a float (scores are compared as "
                f"float64): {_REFERENCE}"
            )
    limits = sorted({float(x) for x in found if exact_float(x)})
    if len(limits) > MAX_POLICY_THRESHOLDS:
        reference.append(
            f"the policy has {len(limits)} distinct score thresholds, more than the "
            f"{MAX_POLICY_THRESHOLDS} the decision table is built for: {_REFERENCE}"
        )
    spec, hooks = (None, []) if pipeline.scorer is None else _scorer_spec(pipeline.scorer)
    if reference:
        return Compiled(Plan("reference", (*reference, *hooks)))
    if hooks:
        return Compiled(Plan("hooks", tuple(hooks)), limits=tuple(limits), graded=bool(graded))
    return Compiled(Plan("columnar"), spec, tuple(limits), bool(graded))


def plan(pipeline: Pipeline) -> Plan:
    """The fastest path that replays *pipeline* exactly, and why not a faster one.

    * ``"columnar"``: no scorer, a :class:`~buyerjourney.scoring.PointsScorer`
      built of exactly the built-in parts, or a
      :class:`~buyerjourney.scoring.CombinedScorer` of such a points scorer
      and a :class:`~buyerjourney.scoring.FitGrader`; and no policy or a
      tree of exactly the built-in threshold, touch-kind, matrix, ``AnyOf``
      and ``AllOf`` policies;
    * ``"hooks"``: the same policies with any other scorer (a scorer of your
      own, a subclass, a part the kernel does not know, points too large to
      add exactly), which is called touch by touch;
    * ``"reference"``: anything else (a policy of your own, owner rules of
      your own, more than :data:`MAX_POLICY_THRESHOLDS` policy thresholds,
      a threshold that is not exactly a float).

    The module documentation lists what is checked. Limits that depend on
    the touches are checked by :func:`~buyerjourney.bulk.replay`, which
    reports them in :attr:`Replay.reasons <buyerjourney.bulk.Replay.reasons>`.

    Args:
        pipeline: The pipeline to replay.

    Returns:
        The path, and every reason a faster one is not possible.
    """
    return compile_plan(pipeline).plan


def batch_problem(np: Any, compiled: Compiled, lead: Array, at: Array) -> str | None:
    """Why the vectorised kernel cannot score this batch exactly, or ``None``.

    Scores are summed in int64 micro-points and must stay within
    :data:`~buyerjourney.bulk._kernels.EXACT_MICRO`; a linear decay sums
    touch ages in int64 microseconds. Both depend on how many touches a lead
    has and how long the batch spans.

    Args:
        np: The NumPy module.
        compiled: The plan, from :func:`compile_plan`.
        lead: Per touch, its lead's code.
        at: Per touch, its time in microseconds (in time order).

    Returns:
        A sentence saying which limit the batch exceeds, or ``None``.
    """
    spec = compiled.scorer
    if spec is None or not lead.shape[0]:
        return None
    most = int(np.bincount(lead).max())
    bound = sum(
        abs(rule.points) * (most if rule.repeatable else 1)
        for group in spec.groups
        for rule in group.rules
    ) + sum(abs(rule.points) for rule in spec.attribute_rules)
    if bound > EXACT_MICRO:
        return (
            f"a lead has {most} touches, so its score could reach {float(bound / SCALE):g} "
            f"points, beyond the {_EXACT_POINTS} points the vectorised kernel adds exactly: "
            f"{_HOOKS}"
        )
    span = int(at[-1]) - int(at[0])
    ages = max(
        (min(span, group.length) for group in spec.groups if group.decay == "linear"), default=0
    )
    if ages and (most + 1) * ages >= 2**62:
        return (
            f"a lead has {most} touches over a batch of {span} microseconds: the sum of their "
            f"ages under a linear decay does not fit the kernel's 64-bit integers: {_HOOKS}"
        )
    return None
