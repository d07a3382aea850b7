"""Handoff policies: given a journey and its score, decide which event to send.

A policy is any callable ``(journey, score, touch) -> Decision``. The engine
asks it after every scored touch; the core alone decides whether the event is
legal. Policies must be deterministic.

Built-in policies:

* :class:`ThresholdPolicy` sends an event when the score reaches a threshold
  (the MQL rule; Mautic's point triggers).
* :class:`TouchKindPolicy` sends an event for a kind of touch (a purchase
  converts, an unsubscribe loses).
* :class:`MatrixPolicy` sends an event for chosen cells of the fit-by-engagement
  matrix (``A1`` … ``D4``).
* :class:`AllOf` and :class:`AnyOf` compose policies.

**Where a policy fires.** The engine records an event that is not legal from
the journey's stage as a refused action. A score-based policy keeps firing
on every touch once the score is high, so if it could fire anywhere it would
fill the log with refusals after the journey moved on. That is why
:class:`ThresholdPolicy` and :class:`MatrixPolicy` have no default for
``stages``: name the stages the event is meant for (:func:`stages_allowing`
lists the stages from which an event is legal), or pass :data:`ANY_STAGE` on
purpose. :class:`TouchKindPolicy` fires only on its touch kinds, so it fires
from any stage unless told otherwise.

Policies can also be plugins: a distribution declares them in the
``buyerjourney.policies`` entry point group and :func:`load_policy` finds
them by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import attrs

from buyerjourney._core.protocols import Policy
from buyerjourney._core.records import Touch, is_finite_number
from buyerjourney._core.scoring import Score, _entry_points, _fmt, _hook_name, _load_plugin
from buyerjourney.errors import HookError

if TYPE_CHECKING:
    from buyerjourney._core.funnel import Funnel
    from buyerjourney._core.journey import Journey

__all__ = [
    "ANY_STAGE",
    "CELLS",
    "POLICY_GROUP",
    "AllOf",
    "AnyOf",
    "Decision",
    "MatrixPolicy",
    "Policy",
    "ThresholdPolicy",
    "TouchKindPolicy",
    "available_policies",
    "checked_decision",
    "load_policy",
    "stages_allowing",
]

POLICY_GROUP = "buyerjourney.policies"
"""The entry point group in which distributions declare policy plugins."""

ANY_STAGE: tuple[str, ...] = ()
"""Pass as ``stages=ANY_STAGE`` to let a policy fire from every stage, on purpose."""

CELLS: frozenset[str] = frozenset(f"{letter}{band}" for letter in "ABCD" for band in "1234")
"""The cells of the fit-by-engagement matrix: ``A1`` (best fit, most engaged) … ``D4``."""

_GRADE = re.compile(r"^(?:[A-D][+-]?|F)$")
_LETTERS: Mapping[str, str] = MappingProxyType(
    {"F": "D"} | {f"{letter}{sign}": letter for letter in "ABCD" for sign in ("", "+", "-")}
)
"""Each grade of the fit ladder → its letter of the matrix (the grades ``_GRADE`` accepts)."""


@attrs.frozen
class Decision:
    """A policy's answer: an event to send (or ``None`` to do nothing) and why.

    Attributes:
        event: The funnel event to send, or ``None``.
        reason: Why; recorded in the log with the transition. Backward events
            need one.
    """

    event: str | None = None
    reason: str = ""

    @property
    def acts(self) -> bool:
        """Whether the decision asks for an event."""
        return self.event is not None


# ---------------------------------------------------------------- validation


def _as_stages(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        msg = f"'stages' must be a tuple of stage names, not a str; did you mean ({value!r},)?"
        raise TypeError(msg)
    stages = tuple(value)
    bad = [s for s in stages if not isinstance(s, str) or not s]
    if bad:
        msg = f"'stages' must hold non-empty stage names (got {', '.join(map(repr, bad))})"
        raise TypeError(msg)
    return stages


def _check_event(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        msg = (
            f"'{attribute.name}' must be a non-empty event name (got {value!r} that is a "
            f"{type(value).__name__})"
        )
        raise TypeError(msg)


def _check_str(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        msg = f"'{attribute.name}' must be a str (got {value!r} that is a {type(value).__name__})"
        raise TypeError(msg)


def _check_finite(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_finite_number(value):
        msg = (
            f"'{attribute.name}' must be a finite number (got {value!r} that is a "
            f"{type(value).__name__})"
        )
        raise TypeError(msg)


_NOTHING = Decision()
"""The decision that does nothing, shared: decisions are immutable."""


def stages_allowing(funnel: Funnel, event: str) -> tuple[str, ...]:
    """The stages of *funnel* from which *event* is legal (guards aside), in funnel order.

    Use it for a policy's ``stages`` so that the policy fires only where the
    engine can act on it::

        ThresholdPolicy(50, "qualify", stages=stages_allowing(funnel, "qualify"))

    Args:
        funnel: The funnel.
        event: The event name.

    Returns:
        The stage names, never empty.

    Raises:
        ValueError: No stage of the funnel allows *event*; lists the funnel's
            events (an empty result would mean "any stage").
    """
    stages = tuple(s.name for s in funnel.stages if event in funnel.allowed_events(s.name))
    if not stages:
        msg = (
            f"no stage of funnel {funnel.name!r} allows event {event!r}; its events are: "
            f"{', '.join(funnel.events)}"
        )
        raise ValueError(msg)
    return stages


# ---------------------------------------------------------------- policies


@attrs.frozen
class ThresholdPolicy:
    """Send *event* when the score reaches *threshold* (the MQL rule).

    Fires when the journey's stage is one of *stages* and
    ``score.value >= threshold``.

    Args:
        threshold: The score that triggers the event.
        event: The funnel event to send (``"qualify"``).
        stages: Required: the stages it may fire from, or :data:`ANY_STAGE`
            (see the module documentation for why there is no default).
        reason: The reason recorded with the transition; by default
            ``"score 52 ≥ 50"``.

    Raises:
        TypeError: A field has the wrong type (a bare str for *stages* included).
    """

    threshold: float = attrs.field(validator=_check_finite)
    event: str = attrs.field(validator=_check_event)
    stages: tuple[str, ...] = attrs.field(converter=_as_stages, kw_only=True)
    reason: str = attrs.field(default="", validator=_check_str, kw_only=True)

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Decide for *journey* after *touch* was scored.

        Args:
            journey: The journey (its stage is checked).
            score: The lead's new score.
            touch: The touch just scored (not used).

        Returns:
            The event with its reason, or a decision that does nothing.
        """
        stages = self.stages
        if (not stages or journey.stage in stages) and score.value >= self.threshold:
            reason = self.reason or f"score {_fmt(score.value)} ≥ {_fmt(self.threshold)}"
            return Decision(self.event, reason)
        return _NOTHING


def _as_event_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        msg = f"'mapping' must map touch kinds to events (got {value!r})"
        raise TypeError(msg)
    bad = [
        f"{k!r}: {v!r}"
        for k, v in value.items()
        if not isinstance(k, str) or not k or not isinstance(v, str) or not v
    ]
    if bad:
        msg = f"'mapping' must map non-empty touch kinds to non-empty events (got {', '.join(bad)})"
        raise TypeError(msg)
    return MappingProxyType(dict(value))


@attrs.frozen
class TouchKindPolicy:
    """Send an event for a kind of touch, such as ``{"purchase": "convert"}``.

    Args:
        mapping: Touch kind → event (``{"purchase": "convert", "unsubscribe":
            "lose"}``).
        stages: The stages it may fire from; empty (the default,
            :data:`ANY_STAGE`) means every stage.

    Raises:
        TypeError: The mapping holds something other than non-empty strs.
    """

    mapping: Mapping[str, str] = attrs.field(converter=_as_event_mapping)
    stages: tuple[str, ...] = attrs.field(default=ANY_STAGE, converter=_as_stages, kw_only=True)
    _decisions: Mapping[str, Decision] = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        decisions = {kind: Decision(event, f"touch {kind}") for kind, event in self.mapping.items()}
        object.__setattr__(self, "_decisions", decisions)

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Decide for *journey* after *touch* was scored.

        Args:
            journey: The journey (its stage is checked).
            score: The lead's new score (not used).
            touch: The touch whose kind decides.

        Returns:
            ``Decision(mapping[touch.kind], "touch <kind>")``, or a decision
            that does nothing.
        """
        decision = self._decisions.get(touch.kind)
        if decision is not None and (not self.stages or journey.stage in self.stages):
            return decision
        return _NOTHING


def _as_cells(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        msg = f"'accept' must be a set of cells, not a str; did you mean frozenset({{{value!r}}})?"
        raise TypeError(msg)
    cells = frozenset(value)
    unknown = sorted(map(repr, cells - CELLS))
    if unknown:
        msg = f"'accept' has cells outside the matrix A1 … D4: {', '.join(unknown)}"
        raise ValueError(msg)
    return cells


def _as_bands(value: Iterable[float]) -> tuple[float, float, float]:
    bands = tuple(value)
    if len(bands) != 3 or not all(is_finite_number(b) for b in bands):
        msg = f"'engagement_bands' must be three finite numbers (got {bands!r})"
        raise ValueError(msg)
    if not bands[0] > bands[1] > bands[2]:
        msg = (
            "'engagement_bands' must go down: the lowest score of band 1, then of band 2, "
            f"then of band 3 (got {bands!r})"
        )
        raise ValueError(msg)
    return (bands[0], bands[1], bands[2])


@attrs.frozen
class MatrixPolicy:
    """Send *event* for accepted cells of the fit-by-engagement matrix (``A1`` … ``D4``).

    The letter comes from the score's fit grade: ``A+``, ``A``, ``A-`` → ``A``,
    and so on; ``F`` → ``D``. The number comes from the score's value:
    ``value >= engagement_bands[0]`` → 1 (most engaged), ``>= bands[1]`` → 2,
    ``>= bands[2]`` → 3, else 4. Use a :class:`~buyerjourney.scoring.CombinedScorer`
    to get both on one score.

    A score without a grade never fires: there is no cell to look up. A grade
    that is not on the fit ladder (``"hot"``, ``"E"``) is a mistake in the
    scorer and raises, which the engine reports as a failed hook.

    Args:
        event: The funnel event to send.
        accept: The cells that fire (``frozenset({"A1", "A2", "B1"})``).
        engagement_bands: The lowest value of bands 1, 2 and 3, going down.
        stages: Required: the stages it may fire from, or :data:`ANY_STAGE`.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A cell is not in the matrix, or the bands do not go down.
    """

    event: str = attrs.field(validator=_check_event)
    accept: frozenset[str] = attrs.field(converter=_as_cells, kw_only=True)
    engagement_bands: tuple[float, float, float] = attrs.field(converter=_as_bands, kw_only=True)
    stages: tuple[str, ...] = attrs.field(converter=_as_stages, kw_only=True)
    _cells: Mapping[str, tuple[str, str, str, str]] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        cells = {letter: tuple(f"{letter}{band}" for band in "1234") for letter in "ABCD"}
        object.__setattr__(self, "_cells", cells)

    def cell(self, score: Score) -> str | None:
        """The matrix cell of *score*, such as ``"B2"``, or ``None`` without a grade.

        Args:
            score: A score with a fit grade.

        Returns:
            The cell, or ``None`` when the score has no grade.

        Raises:
            ValueError: The grade is not on the fit ladder.
        """
        grade = score.grade
        if grade is None:
            return None
        letter = _LETTERS.get(grade) if type(grade) is str else None
        if letter is not None:
            bands = self.engagement_bands
            value = score.value
            if value >= bands[0]:
                return self._cells[letter][0]
            if value >= bands[1]:
                return self._cells[letter][1]
            return self._cells[letter][2 if value >= bands[2] else 3]
        if not isinstance(score.grade, str) or not _GRADE.match(score.grade):
            msg = (
                f"grade {score.grade!r} is not on the fit ladder F, D-, D, D+ … A+; "
                "the matrix needs one of those"
            )
            raise ValueError(msg)
        letter = "D" if score.grade == "F" else score.grade[0]
        band = next((i for i, low in enumerate(self.engagement_bands, 1) if score.value >= low), 4)
        return f"{letter}{band}"

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Decide for *journey* after *touch* was scored.

        Args:
            journey: The journey (its stage is checked).
            score: The lead's new score, with a grade.
            touch: The touch just scored (not used).

        Returns:
            The event with a reason naming the cell, or a decision that does nothing.

        Raises:
            ValueError: The grade is not on the fit ladder.
        """
        if self.stages and journey.stage not in self.stages:
            return _NOTHING
        cell = self.cell(score)
        if cell is None or cell not in self.accept:
            return _NOTHING
        return Decision(
            self.event, f"matrix cell {cell} (grade {score.grade}, score {_fmt(score.value)})"
        )


def _as_policies(policies: tuple[Policy, ...], owner: str) -> tuple[Policy, ...]:
    if not policies:
        msg = f"{owner}() needs at least one policy"
        raise TypeError(msg)
    for i, policy in enumerate(policies):
        if not callable(policy):
            msg = (
                f"{owner} policy {i} must be callable (got {policy!r} that is a "
                f"{type(policy).__name__})"
            )
            raise TypeError(msg)
    return policies


@attrs.frozen(init=False)
class AllOf:
    """Fire only when every policy fires, all asking for the same event.

    The policies are asked in order and the first that does not fire ends the
    evaluation. Policies asking for different events do not fire together.
    The reason joins the non-empty reasons with ``"; "``. Each policy is
    called through :func:`checked_decision` under the name
    ``AllOf[<position>]:<name>``, so a broken one is named.

    Args:
        *policies: The policies, at least one.

    Raises:
        TypeError: No policy was given, or one is not callable.
    """

    policies: tuple[Policy, ...]
    _names: tuple[str, ...] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _parts: tuple[tuple[str, Policy, bool], ...] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )

    def __init__(self, *policies: Policy) -> None:
        self.__attrs_init__(_as_policies(policies, "AllOf"))
        names = tuple(f"AllOf[{i}]:{_hook_name(p)}" for i, p in enumerate(self.policies))
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_parts", _trusted_parts(names, self.policies))

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Decide for *journey* after *touch* was scored.

        Args:
            journey: The journey.
            score: The lead's new score.
            touch: The touch just scored.

        Returns:
            The common event with the joined reasons, or a decision that does nothing.

        Raises:
            HookError: One of the policies failed its contract.
        """
        event: str | None = None
        reasons: list[str] = []
        for name, policy, trusted in self._parts:
            if trusted:  # a built-in policy: its decision is valid by construction
                try:
                    decision = policy(journey, score, touch)
                except Exception as exc:
                    raise _raised(name, exc, journey, touch) from exc
            else:
                decision = checked_decision(name, policy, journey, score, touch)
            if decision.event is None or (event is not None and decision.event != event):
                return _NOTHING
            event = decision.event
            if decision.reason:
                reasons.append(decision.reason)
        return Decision(event, "; ".join(reasons))


@attrs.frozen(init=False)
class AnyOf:
    """Fire with the first policy (in order) that fires.

    Later policies are not asked once one fires. Each policy is called
    through :func:`checked_decision` under the name ``AnyOf[<position>]:<name>``,
    so a broken one is named.

    Args:
        *policies: The policies, at least one.

    Raises:
        TypeError: No policy was given, or one is not callable.
    """

    policies: tuple[Policy, ...]
    _names: tuple[str, ...] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _parts: tuple[tuple[str, Policy, bool], ...] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )

    def __init__(self, *policies: Policy) -> None:
        self.__attrs_init__(_as_policies(policies, "AnyOf"))
        names = tuple(f"AnyOf[{i}]:{_hook_name(p)}" for i, p in enumerate(self.policies))
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_parts", _trusted_parts(names, self.policies))

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Decide for *journey* after *touch* was scored.

        Args:
            journey: The journey.
            score: The lead's new score.
            touch: The touch just scored.

        Returns:
            The first decision that acts, or a decision that does nothing.

        Raises:
            HookError: One of the policies asked failed its contract.
        """
        for name, policy, trusted in self._parts:
            if trusted:  # a built-in policy: its decision is valid by construction
                try:
                    decision = policy(journey, score, touch)
                except Exception as exc:
                    raise _raised(name, exc, journey, touch) from exc
            else:
                decision = checked_decision(name, policy, journey, score, touch)
            if decision.event is not None:
                return decision
        return _NOTHING


# ---------------------------------------------------------------- contract


def checked_decision(
    name: str, policy: Policy, journey: Journey, score: Score, touch: Touch
) -> Decision:
    """Call *policy* and enforce the policy contract.

    The engine calls every policy through this function, so every policy
    fails the same way and the journey is left unchanged.

    Args:
        name: The policy's registered name, for the error.
        policy: The policy to call.
        journey: The journey.
        score: The lead's new score.
        touch: The touch just scored; errors name it.

    Returns:
        The policy's decision.

    Raises:
        HookError: The policy raised (the cause is chained), or returned
            something that is not a :class:`Decision`, or a decision whose
            event is neither ``None`` nor a non-empty str, or whose reason is
            not a str.
    """
    try:
        result = policy(journey, score, touch)
    except Exception as exc:
        raise _raised(name, exc, journey, touch) from exc
    if (
        type(result) is Decision
        and (result.event is None or (type(result.event) is str and result.event))
        and type(result.reason) is str
    ):
        return result  # the common case, checked without building a message
    problem = _decision_problem(result)
    if problem is not None:
        deciding = f"deciding for lead {journey.lead_id!r} in stage {journey.stage!r}"
        raise HookError(name, f"{problem} {deciding}", subject=touch.touch_id, received=result)
    return result


def _raised(name: str, exc: Exception, journey: Journey, touch: Touch) -> HookError:
    """The error for a policy that raised *exc*, formatted only once it did."""
    deciding = f"deciding for lead {journey.lead_id!r} in stage {journey.stage!r}"
    return HookError(
        name, f"policy raised {type(exc).__name__} {deciding}: {exc}", subject=touch.touch_id
    )


def _trusted_parts(
    names: tuple[str, ...], policies: tuple[Policy, ...]
) -> tuple[tuple[str, Policy, bool], ...]:
    """Each part of a combinator with its name and whether it is a built-in policy (exactly)."""
    return tuple(
        (name, policy, type(policy) in _BUILT_IN)
        for name, policy in zip(names, policies, strict=True)
    )


def _decision_problem(result: object) -> str | None:
    if not isinstance(result, Decision):
        return (
            f"policy must return a Decision (got {result!r} that is a "
            f"{type(result).__name__}); return Decision() to do nothing"
        )
    if result.event is not None and (not isinstance(result.event, str) or not result.event):
        return (
            f"policy returned a Decision whose event is neither None nor a non-empty str "
            f"(got {result.event!r} that is a {type(result.event).__name__})"
        )
    if not isinstance(result.reason, str):
        return (
            f"policy returned a Decision whose reason is not a str (got {result.reason!r} "
            f"that is a {type(result.reason).__name__})"
        )
    return None


# ---------------------------------------------------------------- plugins


def load_policy(name: str) -> Policy:
    """Load the policy plugin called *name* from the ``buyerjourney.policies`` entry points.

    A distribution declares a policy in its ``pyproject.toml``::

        [project.entry-points."buyerjourney.policies"]
        my_policy = "my_pkg.policies:MyPolicy"

    As for scorers (see :func:`~buyerjourney.scoring.load_scorer`), the object
    named may be a policy (a function or a configured instance) or a class,
    which is instantiated with no arguments. When several distributions
    declare the same name, the first found on ``sys.path`` wins.

    Args:
        name: The entry point's name.

    Returns:
        The policy.

    Raises:
        UnknownHook: No policy plugin has that name; lists the known names.
        HookError: The plugin cannot be imported or instantiated, or is not callable.
    """
    return cast("Policy", _load_plugin("policy", POLICY_GROUP, name))


def available_policies() -> tuple[str, ...]:
    """The names of the installed policy plugins, sorted.

    Returns:
        Every name in the ``buyerjourney.policies`` entry point group.
    """
    return tuple(sorted(_entry_points(POLICY_GROUP)))


_BUILT_IN: frozenset[type] = frozenset(
    {ThresholdPolicy, TouchKindPolicy, MatrixPolicy, AnyOf, AllOf}
)
"""Policies whose decisions are valid by construction (exactly these types, not subclasses)."""
