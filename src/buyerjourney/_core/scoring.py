"""Scores with their breakdown, the scorer protocol, and the built-in scorers.

A scorer is any callable ``(lead, at) -> Score``: it sees the lead's
attributes and every touch up to ``at`` and returns a score that says which
rule gave how many points. Scorers must be deterministic: no wall clock, no
randomness; decay is evaluated at ``at``, the time of the touch being scored.

Built-in scorers:

* :class:`PointsScorer` adds points per touch (:class:`PointsRule`) and per
  lead attribute (:class:`AttributeRule`), with per-group caps, a total cap,
  and per-group linear decay (:class:`LinearDecay`) or time windows
  (:class:`TimeWindow`), as HubSpot does.
* :class:`FitGrader` grades fit from ``F`` to ``A+``, starting at ``D`` and
  moving a third of a letter per matching :class:`FitCriterion`, as
  Salesforce Account Engagement does.
* :class:`CombinedScorer` puts an engagement score and a fit grade together,
  for a fit-by-engagement matrix (A1 … D4).

**Breakdowns add up.** Every score built here (and every score built with
:meth:`Score.from_breakdown`) keeps each item's points to 6 decimal places
(rounded half to even) and makes ``value`` the *exact* sum of those rounded
points. Caps are items of their own (``cap:<group>``, ``cap:total``) with a
negative adjustment, so a capped group lands exactly on its cap. The numbers
as printed add up to the value as printed, and
``round(math.fsum(item.points for item in score.breakdown), 6) == score.value``.

Scorers can also be plugins: a distribution declares them in the
``buyerjourney.scorers`` entry point group and :func:`load_scorer` finds them
by name.
"""

from __future__ import annotations

import bisect
import functools
import importlib.metadata
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from types import MappingProxyType
from typing import Any, TypeVar, cast

import attrs

from buyerjourney._core._values import frozen_mapping
from buyerjourney._core.protocols import IncrementalScorer, Scorer
from buyerjourney._core.records import Touch, is_finite_number
from buyerjourney.errors import HookError, UnknownHook

__all__ = [
    "GRADES",
    "SCORER_GROUP",
    "AttributeRule",
    "CombinedScorer",
    "FitCriterion",
    "FitGrader",
    "IncrementalScorer",
    "Lead",
    "LinearDecay",
    "PointsRule",
    "PointsScorer",
    "PointsState",
    "Score",
    "ScoreGroup",
    "ScoreItem",
    "Scorer",
    "TimeWindow",
    "available_scorers",
    "checked_call",
    "checked_next",
    "checked_score",
    "load_scorer",
]

SCORER_GROUP = "buyerjourney.scorers"
"""The entry point group in which distributions declare scorer plugins."""

GRADES: tuple[str, ...] = (
    "F",
    "D-",
    "D",
    "D+",
    "C-",
    "C",
    "C+",
    "B-",
    "B",
    "B+",
    "A-",
    "A",
    "A+",
)
"""The fit ladder, lowest first; a :class:`FitGrader` score's value is an index into it."""

_START = GRADES.index("D")
_TIMES = "\N{MULTIPLICATION SIGN}"
_DEFAULT_GROUP = "engagement"
"""The group of a rule that names none; it needs no declaration (no cap, no decay)."""
_SCALE = 10**6
_MICROSECOND = timedelta(microseconds=1)
_MISSING = object()
_T = TypeVar("_T")


# ---------------------------------------------------------------- value types


@attrs.frozen
class Lead:
    """What a scorer sees: a lead's attributes and its touches so far, oldest first.

    Attributes:
        lead_id: The lead.
        attributes: The lead's profile, merged from its touches' attributes.
        touches: Every accepted touch of the lead up to the one being scored.
    """

    lead_id: str
    attributes: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    touches: tuple[Touch, ...] = ()


@attrs.frozen
class ScoreItem:
    """One line of a score's breakdown: which rule gave how many points.

    Attributes:
        rule: The rule's name.
        points: Points it contributed (after decay and caps; may be negative).
        detail: A short human explanation (``"3 × email_click"``).
    """  # noqa: RUF002 (the multiplication sign is what the breakdown shows)

    rule: str
    points: float
    detail: str = ""


@attrs.frozen
class Score:
    """A score and its breakdown.

    Attributes:
        value: The total (finite).
        breakdown: Which rule gave how many points; for additive scorers the
            points add up to ``value``.
        grade: A fit grade (``"A+"`` … ``"F"``) when the scorer grades fit.
    """

    value: float
    breakdown: tuple[ScoreItem, ...] = ()
    grade: str | None = None

    @classmethod
    def from_breakdown(cls, breakdown: Iterable[ScoreItem], *, grade: str | None = None) -> Score:
        """Build an additive score whose value is the exact total of its breakdown.

        Each item's points are rounded to 6 decimal places (half to even) and
        ``value`` is the exact sum of the rounded points, so the breakdown
        always adds up to the value. Use it in scorers of your own.

        Args:
            breakdown: The items, in the order to show them.
            grade: A fit grade to carry along, if any.

        Returns:
            The score, with the rounded items.

        Raises:
            TypeError: An item is not a :class:`ScoreItem`.
            ValueError: An item's points are not a finite number.
        """
        items = tuple(breakdown)
        for i, item in enumerate(items):
            if not isinstance(item, ScoreItem):
                msg = (
                    f"breakdown[{i}] must be a ScoreItem (got {item!r} that is a "
                    f"{type(item).__name__})"
                )
                raise TypeError(msg)
            if not is_finite_number(item.points):
                msg = (
                    f"breakdown[{i}] ({item.rule!r}) must have finite points (got "
                    f"{item.points!r} that is a {type(item.points).__name__})"
                )
                raise ValueError(msg)
        return _score([(item.rule, _micro(item.points), item.detail) for item in items], grade)


# ---------------------------------------------------------------- exact points

_Line = tuple[str, int, str]
"""A breakdown line in micro-points: (rule, points * 10**6, detail)."""


def _micro(value: float | Fraction) -> int:
    """*value* in millionths of a point, rounded half to even, exactly."""
    return round(Fraction(value) * _SCALE)


def _points(micro: int) -> float:
    return micro / _SCALE


def _score(lines: Iterable[_Line], grade: str | None = None) -> Score:
    lines = tuple(lines)
    total = sum(micro for _, micro, _ in lines)
    items = tuple([_item(rule, micro, detail) for rule, micro, detail in lines])
    return _new_score(_points(total), items, grade)


@functools.lru_cache(maxsize=4096)
def _fmt(value: float | Fraction) -> str:
    """A number as people write it: ``15`` rather than ``15.0``, at most 6 decimals."""
    number = float(value)
    if number.is_integer():
        return str(int(number))
    return repr(round(number, 6))


def _fmt_delta(delta: timedelta) -> str:
    if delta % timedelta(days=1) == timedelta(0):
        days = delta // timedelta(days=1)
        return f"{days} day" if days == 1 else f"{days} days"
    if delta % timedelta(hours=1) == timedelta(0):
        hours = delta // timedelta(hours=1)
        return f"{hours} hour" if hours == 1 else f"{hours} hours"
    return str(delta)


def _check_at(at: object) -> None:
    if not isinstance(at, datetime) or at.utcoffset() is None:
        msg = (
            f"'at' must be a timezone-aware datetime (got {at!r} that is a "
            f"{type(at).__name__}); scores are evaluated at an explicit time"
        )
        raise ValueError(msg)


def _hook_name(obj: object) -> str:
    """A readable name for a nested hook: a function's qualified name, else its class's."""
    name = getattr(obj, "__qualname__", None)
    return name if isinstance(name, str) else type(obj).__qualname__


# ---------------------------------------------------------------- validators


def _check_name(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        msg = (
            f"'{attribute.name}' must be a non-empty str (got {value!r} that is a "
            f"{type(value).__name__})"
        )
        raise TypeError(msg)


def _check_opt_name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _check_name(instance, attribute, value)


def _check_finite(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not is_finite_number(value):
        msg = (
            f"'{attribute.name}' must be a finite number (got {value!r} that is a "
            f"{type(value).__name__})"
        )
        raise TypeError(msg)


def _check_cap(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    _check_finite(instance, attribute, value)
    if isinstance(value, (int, float)) and value < 0:
        msg = f"'{attribute.name}' must be zero or more, or None for no cap (got {value!r})"
        raise ValueError(msg)


def _check_positive_delta(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        msg = f"'{attribute.name}' must be a positive datetime.timedelta (got {value!r})"
        raise ValueError(msg)


def _check_bool(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        msg = f"'{attribute.name}' must be a bool (got {value!r} that is a {type(value).__name__})"
        raise TypeError(msg)


def _check_steps(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = (
            f"'{attribute.name}' must be an int, negative to lower the grade (got {value!r} "
            f"that is a {type(value).__name__})"
        )
        raise TypeError(msg)


def _as_values(value: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)):
        msg = f"'values' must be a tuple of accepted values, not a str; did you mean ({value!r},)?"
        raise TypeError(msg)
    return tuple(value)


def _items_of(kind: type[_T], what: str, value: Iterable[Any]) -> tuple[_T, ...]:
    items = tuple(value)
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            msg = (
                f"'{what}[{i}]' must be a {kind.__name__} (got {item!r} that is a "
                f"{type(item).__name__})"
            )
            raise TypeError(msg)
    return items


def _problems(owner: str, problems: list[str]) -> None:
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        msg = f"{owner} has {len(problems)} {noun}:\n{lines}"
        raise ValueError(msg)


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dups: dict[str, None] = {}
    for name in names:
        if name in seen:
            dups[name] = None
        seen.add(name)
    return list(dups)


# ---------------------------------------------------------------- points


@attrs.frozen
class PointsRule:
    """Points for every touch of a kind (and, optionally, with given properties).

    Args:
        name: The rule's name, shown in the breakdown; unique in a scorer.
        points: Points per matching touch; negative points subtract.
        kind: The touch kind it matches (``"email_click"``), or ``None`` for
            every touch.
        where: Touch properties that must be present and equal
            (``{"campaign": "spring"}``); empty matches every touch.
        repeatable: ``True`` counts every matching touch; ``False`` counts
            at most one per lead: its most recent matching touch, so decay
            and time windows measure from the latest occurrence.
        group: The :class:`ScoreGroup` whose cap and decay apply.

    Raises:
        TypeError: A field has the wrong type, or *points* is not finite.
    """

    name: str = attrs.field(validator=_check_name)
    points: float = attrs.field(validator=_check_finite)
    kind: str | None = attrs.field(default=None, validator=_check_opt_name)
    where: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    repeatable: bool = attrs.field(default=True, validator=_check_bool)
    group: str = attrs.field(default="engagement", validator=_check_name)

    def matches(self, touch: Touch) -> bool:
        """Whether *touch* has the rule's kind and properties.

        Args:
            touch: The touch to test.

        Returns:
            ``True`` when the rule counts the touch (time aside).
        """
        if self.kind is not None and touch.kind != self.kind:
            return False
        props = touch.properties
        return all(key in props and props[key] == value for key, value in self.where.items())


def _rule_label(rule: PointsRule) -> str:
    label = rule.kind or "touch"
    if rule.where:
        label += " where " + ", ".join(f"{k}={v}" for k, v in rule.where.items())
    return label


@attrs.frozen
class AttributeRule:
    """Points for a lead attribute (fit-style points), such as a segment or a country.

    Attribute points do not decay and belong to no group; only the total cap
    applies to them. A lead without the attribute never matches.

    Args:
        name: The rule's name, shown in the breakdown; unique in a scorer.
        attribute: The lead attribute to look at (``"segment"``).
        values: The values that earn the points (``("enterprise", "mid")``).
        points: Points when the attribute has one of *values*; may be negative.

    Raises:
        TypeError: A field has the wrong type (a bare str for *values* included).
    """

    name: str = attrs.field(validator=_check_name)
    attribute: str = attrs.field(validator=_check_name)
    values: tuple[Any, ...] = attrs.field(converter=_as_values)
    points: float = attrs.field(validator=_check_finite)

    def matches(self, lead: Lead) -> bool:
        """Whether *lead* has the attribute with one of the rule's values.

        Args:
            lead: The lead to test.

        Returns:
            ``True`` when the rule's points apply.
        """
        value = lead.attributes.get(self.attribute, _MISSING)
        return value is not _MISSING and value in self.values


@attrs.frozen
class LinearDecay:
    """Linear decay of each touch's points with its age, as HubSpot's score decay.

    A touch ``age`` old (``age = at - touch.at``) keeps
    ``max(0, 1 - fraction * age / every)`` of its points: "50 % every month"
    is ``LinearDecay(0.5, timedelta(days=30))``, so a touch is worth half
    after 30 days and nothing after 60. The factor is computed exactly.

    Args:
        fraction: The share of points lost per *every* (greater than 0).
        every: The period over which *fraction* is lost (positive).

    Raises:
        TypeError: *fraction* is not a finite number.
        ValueError: *fraction* is not positive, or *every* is not a positive timedelta.
    """

    fraction: float = attrs.field(validator=_check_finite)
    every: timedelta = attrs.field(validator=_check_positive_delta)

    def __attrs_post_init__(self) -> None:
        if self.fraction <= 0:
            msg = f"'fraction' must be greater than 0 (got {self.fraction!r})"
            raise ValueError(msg)

    def factor(self, age: timedelta) -> Fraction:
        """The share of points a touch *age* old keeps, between 0 and 1.

        Args:
            age: The touch's age at the scoring time (zero or more).

        Returns:
            ``max(0, 1 - fraction * age / every)``, exactly.
        """
        return self._kept([age // _MICROSECOND])[1]

    def _kept(self, ages: Iterable[int]) -> tuple[int, Fraction]:
        """Count the touches of these ages (in microseconds) that keep points; sum their shares.

        Integer arithmetic, so the sum is exact.
        """
        share = Fraction(self.fraction)
        whole = share.denominator * (self.every // _MICROSECOND)
        parts = [whole - share.numerator * max(age, 0) for age in ages]
        kept = [min(part, whole) for part in parts if part > 0]
        return len(kept), Fraction(sum(kept), whole)

    def __str__(self) -> str:
        return f"{_fmt(self.fraction * 100)} % every {_fmt_delta(self.every)}"


@attrs.frozen
class TimeWindow:
    """Count only recent touches: those less than *within* old at the scoring time.

    A touch exactly *within* old no longer counts.

    Args:
        within: How far back touches count (positive).

    Raises:
        ValueError: *within* is not a positive timedelta.
    """

    within: timedelta = attrs.field(validator=_check_positive_delta)

    def factor(self, age: timedelta) -> Fraction:
        """1 for a touch younger than *within*, 0 otherwise.

        Args:
            age: The touch's age at the scoring time.

        Returns:
            ``Fraction(1)`` or ``Fraction(0)``.
        """
        return self._kept([age // _MICROSECOND])[1]

    def _kept(self, ages: Iterable[int]) -> tuple[int, Fraction]:
        """Count the touches of these ages (in microseconds) inside the window, twice."""
        within = self.within // _MICROSECOND
        count = sum(1 for age in ages if age < within)
        return count, Fraction(count)

    def __str__(self) -> str:
        return f"in the last {_fmt_delta(self.within)}"


def _check_decay(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, (LinearDecay, TimeWindow)):
        msg = (
            f"'{attribute.name}' must be a LinearDecay, a TimeWindow or None (got {value!r} "
            f"that is a {type(value).__name__}); a group has one or the other, not both"
        )
        raise TypeError(msg)


@attrs.frozen
class ScoreGroup:
    """A group of points rules sharing a cap and a decay (or a time window).

    Args:
        name: The group's name, as the rules' ``group`` refers to it.
        cap: The most points the group may contribute, or ``None``.
        decay: A :class:`LinearDecay`, a :class:`TimeWindow`, or ``None``:
            one or the other per group, as in HubSpot.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: *cap* is negative.
    """

    name: str = attrs.field(validator=_check_name)
    cap: float | None = attrs.field(default=None, validator=_check_cap)
    decay: LinearDecay | TimeWindow | None = attrs.field(default=None, validator=_check_decay)


def _as_rules(value: Iterable[PointsRule]) -> tuple[PointsRule, ...]:
    return _items_of(PointsRule, "rules", value)


def _as_groups(value: Iterable[ScoreGroup]) -> tuple[ScoreGroup, ...]:
    return _items_of(ScoreGroup, "groups", value)


def _as_attribute_rules(value: Iterable[AttributeRule]) -> tuple[AttributeRule, ...]:
    return _items_of(AttributeRule, "attribute_rules", value)


@attrs.frozen
class PointsScorer:
    """Add points per touch and per attribute, with caps and decay.

    Only touches with ``touch.at <= at`` count. The breakdown lists, group by
    group (declared groups first, in order), one item per rule that counted at
    least one touch, followed by the group's cap item (``cap:<group>``) if the
    cap cut it; then one item per matching attribute rule; then ``cap:total``
    if the total cap cut the total. Caps only limit from above. The value is
    the exact sum of the items, each rounded to 6 decimals (see the module
    documentation), so a capped total lands exactly on the cap.

    Example::

        scorer = PointsScorer(
            [PointsRule("clicks", 5, kind="email_click")],
            groups=[ScoreGroup("engagement", cap=15)],
        )
        scorer(lead, at).value  # at most 15

    Args:
        rules: The points rules.
        groups: Groups with a cap or a decay. Rules whose group is not
            declared are uncapped and do not decay, but once any group is
            declared every rule's group must be, so that a misspelt group
            cannot escape its cap unnoticed.
        total_cap: The most points the whole score may reach, or ``None``.
        attribute_rules: Points from lead attributes.

    Raises:
        TypeError: A rule or group has the wrong type.
        ValueError: Lists every problem: duplicate rule or group names, a
            group called ``total``, rule names starting with ``cap:``, rules
            naming undeclared groups.
    """

    rules: tuple[PointsRule, ...] = attrs.field(converter=_as_rules)
    groups: tuple[ScoreGroup, ...] = attrs.field(default=(), converter=_as_groups, kw_only=True)
    total_cap: float | None = attrs.field(default=None, validator=_check_cap, kw_only=True)
    attribute_rules: tuple[AttributeRule, ...] = attrs.field(
        default=(), converter=_as_attribute_rules, kw_only=True
    )
    _compiled: _Compiled = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        problems: list[str] = []
        names = [r.name for r in self.rules] + [r.name for r in self.attribute_rules]
        problems += [f"rule name {n!r} is used more than once" for n in _duplicates(names)]
        problems += [
            f"rule name {n!r} starts with 'cap:', which names cap items; rename it"
            for n in names
            if n.startswith("cap:")
        ]
        group_names = [g.name for g in self.groups]
        problems += [f"group {n!r} is declared more than once" for n in _duplicates(group_names)]
        if "total" in group_names:
            problems.append("group name 'total' is reserved for the total cap; rename the group")
        if self.groups:
            # the default group of a rule needs no declaration: undeclared, it is uncapped
            undeclared = sorted({r.group for r in self.rules} - set(group_names) - {_DEFAULT_GROUP})
            problems += [
                f"group {g!r} is used by a rule but not declared; declare ScoreGroup({g!r}) "
                f"or fix the rule's group (declared: {', '.join(group_names)})"
                for g in undeclared
            ]
        _problems("PointsScorer", problems)
        object.__setattr__(self, "_compiled", _compile(self))

    def __call__(self, lead: Lead, at: datetime) -> Score:
        """Score *lead* at *at*.

        Args:
            lead: The lead, with its touches.
            at: The scoring time (timezone-aware); later touches are ignored
                and decay is measured from it.

        Returns:
            The score (no grade), whose breakdown adds up to its value.

        Raises:
            ValueError: *at* is not a timezone-aware datetime.
        """
        _check_at(at)
        touches: dict[str | None, list[Touch]] = {None: []}
        for t in lead.touches:
            if t.at <= at:
                touches[None].append(t)
                touches.setdefault(t.kind, []).append(t)
        declared = {g.name: g for g in self.groups}
        order = list(declared) + [r.group for r in self.rules if r.group not in declared]
        lines: list[_Line] = []
        for group_name in dict.fromkeys(order):
            group = declared.get(group_name)
            decay = None if group is None else group.decay
            group_lines = [
                line
                for rule in self.rules
                if rule.group == group_name
                for line in self._rule_line(rule, touches, at, decay)
            ]
            lines += group_lines
            if group is not None and group.cap is not None:
                lines += _cap_line(f"cap:{group_name}", group_name, group.cap, group_lines)
        for attribute_rule in self.attribute_rules:
            if attribute_rule.matches(lead):
                value = lead.attributes[attribute_rule.attribute]
                detail = f"{attribute_rule.attribute} = {value!r}"
                lines.append((attribute_rule.name, _micro(attribute_rule.points), detail))
        if self.total_cap is not None:
            lines += _cap_line("cap:total", "total", self.total_cap, lines)
        return _score(lines)

    @staticmethod
    def _rule_line(
        rule: PointsRule,
        touches: Mapping[str | None, list[Touch]],
        at: datetime,
        decay: LinearDecay | TimeWindow | None,
    ) -> list[_Line]:
        matching = [t for t in touches.get(rule.kind, ()) if rule.matches(t)]
        if not rule.repeatable and matching:
            latest = max(range(len(matching)), key=lambda i: (matching[i].at, i))
            matching = [matching[latest]]
        ages = [(at - t.at) // _MICROSECOND for t in matching]
        if decay is None:
            counted, kept_share = len(ages), Fraction(len(ages))
        else:
            counted, kept_share = decay._kept(ages)
        if not counted:
            return []
        full = Fraction(rule.points) * counted
        kept = Fraction(rule.points) * kept_share
        micro = _micro(kept)
        detail = f"{counted} {_TIMES} {_rule_label(rule)}"
        if not rule.repeatable:
            detail += " (once-only)"
        if isinstance(decay, TimeWindow):
            detail += f", {decay}"
        elif isinstance(decay, LinearDecay) and kept != full:
            detail += f", {_fmt(full)} decayed to {_fmt(_points(micro))} ({decay})"
        return [(rule.name, micro, detail)]

    # ------------------------------------------------------------ incremental

    def start(self) -> PointsState:
        """A fresh per-lead state for incremental scoring (see :class:`IncrementalScorer`)."""
        compiled = self._compiled
        return PointsState(len(compiled.rules), compiled.position)

    def score_next(self, state: PointsState, touch: Touch, attributes: Mapping[str, Any]) -> Score:
        """The lead's score at ``touch.at`` once *touch* is added, without keeping *touch*.

        Equal to ``self(Lead(lead_id, attributes, kept + (touch,)), touch.at)``
        where *kept* are the touches given to :meth:`add` so far, all at or
        before ``touch.at``; costs O(1) per rule instead of a scan of the
        history. Touches too old to count any more are dropped from *state*
        (time only moves forward, so they never count again); nothing else
        in *state* changes until :meth:`add`.
        """
        return _score_next(self._compiled, state, touch, attributes)

    def add(self, state: PointsState, touch: Touch) -> None:
        """Keep *touch* in *state* (the engine calls it once the touch's operation committed)."""
        last, matched, at = state.matched
        if last is not touch:
            matched = _matching(self._compiled, touch)
            at = _micros(touch.at)
        repeatable = self._compiled.repeatable
        for index in matched:
            state.add(index, at, repeatable[index])


def _cap_line(rule: str, what: str, cap: float, lines: list[_Line]) -> list[_Line]:
    subtotal = sum(micro for _, micro, _ in lines)
    limit = _micro(cap)
    if subtotal <= limit:
        return []
    detail = f"{what} capped at {_fmt(cap)} (was {_fmt(_points(subtotal))})"
    return [(rule, limit - subtotal, detail)]


# ---------------------------------------------------------------- incremental points

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CACHED_COUNTS = 1024
"""Breakdown lines are kept per rule for counts up to this (their text does not change)."""


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _round_half_even(numerator: int, denominator: int) -> int:
    """``round(Fraction(numerator, denominator))`` (half to even), for a positive denominator."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


_FMT_LIMIT = 10**15
"""Below this many micro-points (a billion points), :func:`_fmt_micro` writes the integer."""


def _fmt_micro(micro: int) -> str:
    """``_fmt(micro / 10**6)``, from the integer: the same text, without float formatting.

    Between 10⁻⁴ and 10⁹ points (in absolute value) the shortest text that
    reads back as ``micro / 10**6`` is its decimal expansion (at most six
    decimals, trailing zeros dropped): floats there are closer together
    than 10⁻⁶, so no shorter decimal denotes the same float. Elsewhere
    (``repr`` writes an exponent below 10⁻⁴) it asks :func:`_fmt`.
    """
    if 100 <= micro < _FMT_LIMIT:
        return _decimal(str(micro))
    if -_FMT_LIMIT < micro <= -100:
        return "-" + _decimal(str(-micro))
    return _fmt(micro / _SCALE)


def _decimal(digits: str) -> str:
    """The digits of at least 100 micro-points as points: ``"3907600"`` → ``"3.9076"``."""
    if digits[-6:] == "000000":
        return digits[:-6]
    if len(digits) > 6:
        return (digits[:-6] + "." + digits[-6:]).rstrip("0")
    return ("0." + digits.rjust(6, "0")).rstrip("0")


@attrs.frozen
class _CompiledRule:
    name: str
    kind: str | None
    where: Mapping[str, Any]
    repeatable: bool
    points: float
    numerator: int  # points * SCALE = numerator / denominator, exactly
    denominator: int
    label: str


@attrs.frozen
class _CompiledGroup:
    name: str
    cap: float | None
    cap_micro: int | None
    decay: LinearDecay | TimeWindow | None
    decay_text: str
    whole: int  # LinearDecay: share.denominator * every in microseconds; else 1
    numerator: int  # LinearDecay: share.numerator; TimeWindow: the window in microseconds
    rules: tuple[int, ...]


_PLAIN, _WINDOW, _LINEAR, _OTHER = range(4)
"""How a group's touches keep points: always, inside a window, decaying, or a decay subclass."""


class _RulePlan:
    """One rule as :func:`_score_next` reads it, with its breakdown lines kept by count."""

    __slots__ = (
        "decayed",
        "denominator",
        "full",
        "group",
        "index",
        "label",
        "name",
        "numerator",
        "plain",
        "points",
        "position",
        "repeatable",
        "zero",
    )

    def __init__(self, rule: _CompiledRule, index: int, group: _CompiledGroup, mode: int) -> None:
        self.index = index
        self.group: _GroupPlan
        """The group the rule is in (set by the group's plan)."""
        self.position = 0
        """The rule's place in the breakdown's order: groups in order, rules in order."""
        self.name = rule.name
        self.repeatable = rule.repeatable
        self.numerator = rule.numerator
        self.denominator = rule.denominator
        self.decayed = rule.denominator * group.whole
        """The denominator of a decayed line's micro-points (with the decay's whole)."""
        self.points = rule.points
        self.zero = rule.points == 0
        self.label = f" {_TIMES} {rule.label}" + (
            f", {group.decay_text}" if mode == _WINDOW else ""
        )
        self.plain: dict[int, tuple[int, ScoreItem]] = {}
        """Count → the line when no touch lost points (no decay, a window, or all at age 0)."""
        self.full: dict[int, str] = {}
        """Count → the start of a decayed line's text (see :meth:`decayed_start`)."""

    def plain_line(self, counted: int) -> tuple[int, ScoreItem]:
        """The line of *counted* touches that kept all their points, with its micro-points."""
        micro = _round_half_even(self.numerator * counted, self.denominator)
        line = micro, _item(self.name, micro, f"{counted}{self.label}")
        if counted <= _CACHED_COUNTS:
            self.plain[counted] = line
        return line

    def decayed_start(self, counted: int) -> str:
        """The start of a decayed line's text: ``"3 × page_view, 3 decayed to "``."""  # noqa: RUF002
        # points * counted in floats is the correctly rounded exact product, as the pure path's
        start = f"{counted}{self.label}, {_fmt(self.points * counted)} decayed to "
        if counted <= _CACHED_COUNTS:
            self.full[counted] = start
        return start


class _GroupPlan:
    """One group as :func:`_score_next` reads it."""

    __slots__ = (
        "cap_micro",
        "cap_name",
        "cap_text",
        "decay",
        "decay_suffix",
        "mode",
        "numerator",
        "rules",
        "whole",
    )

    def __init__(self, group: _CompiledGroup, rules: tuple[_CompiledRule, ...]) -> None:
        decay = group.decay
        if decay is None:
            self.mode = _PLAIN
        elif group.whole == 0:
            self.mode = _OTHER
        elif type(decay) is TimeWindow:
            self.mode = _WINDOW
        else:
            self.mode = _LINEAR
        self.decay = decay
        self.whole = group.whole
        self.numerator = group.numerator
        self.decay_suffix = f" ({group.decay_text})"
        self.rules = tuple(_RulePlan(rules[i], i, group, self.mode) for i in group.rules)
        for rule in self.rules:
            rule.group = self
        self.cap_micro = group.cap_micro
        self.cap_name = f"cap:{group.name}"
        self.cap_text = (
            "" if group.cap is None else f"{group.name} capped at {_fmt(group.cap)} (was "
        )


@attrs.frozen
class _Compiled:
    rules: tuple[_CompiledRule, ...]
    groups: tuple[_CompiledGroup, ...]
    by_kind: Mapping[str | None, tuple[int, ...]]
    attribute_rules: tuple[tuple[AttributeRule, int], ...]
    total_cap: float | None
    total_cap_micro: int | None
    any_where: bool
    plan: tuple[_GroupPlan, ...] = attrs.field(init=False, eq=False, repr=False)
    repeatable: tuple[bool, ...] = attrs.field(init=False, eq=False, repr=False)
    matches: Mapping[str, tuple[int, ...]] = attrs.field(init=False, eq=False, repr=False)
    """Touch kind → every rule of that kind or of any kind (properties aside)."""
    any_kind: tuple[int, ...] = attrs.field(init=False, eq=False, repr=False)
    total_text: str = attrs.field(init=False, eq=False, repr=False)
    flat: tuple[_RulePlan, ...] = attrs.field(init=False, eq=False, repr=False)
    """Every rule in a group, in the breakdown's order (by :attr:`_RulePlan.position`)."""
    position: tuple[int, ...] = attrs.field(init=False, eq=False, repr=False)
    """Rule index → its position in :attr:`flat` (``-1`` for a rule in no group)."""

    def __attrs_post_init__(self) -> None:
        setattr_ = object.__setattr__
        plan = tuple(_GroupPlan(g, self.rules) for g in self.groups)
        setattr_(self, "plan", plan)
        flat = tuple(rule for group in plan for rule in group.rules)
        position = [-1] * len(self.rules)
        for i, rule in enumerate(flat):
            rule.position = i
            position[rule.index] = i
        setattr_(self, "flat", flat)
        setattr_(self, "position", tuple(position))
        setattr_(self, "repeatable", tuple(r.repeatable for r in self.rules))
        any_kind = self.by_kind.get(None, ())
        setattr_(self, "any_kind", any_kind)
        matches = {k: v + any_kind for k, v in self.by_kind.items() if k is not None}
        setattr_(self, "matches", matches)
        total = self.total_cap
        setattr_(
            self, "total_text", "" if total is None else f"total capped at {_fmt(total)} (was "
        )


def _compile(scorer: PointsScorer) -> _Compiled:
    """The scorer's rules as integers, once, for :meth:`PointsScorer.score_next`."""
    rules = []
    for rule in scorer.rules:
        exact = Fraction(rule.points) * _SCALE
        label = _rule_label(rule) + ("" if rule.repeatable else " (once-only)")
        rules.append(
            _CompiledRule(
                rule.name,
                rule.kind,
                rule.where,
                rule.repeatable,
                rule.points,
                exact.numerator,
                exact.denominator,
                label,
            )
        )
    declared = {g.name: g for g in scorer.groups}
    order = list(declared) + [r.group for r in scorer.rules if r.group not in declared]
    groups = []
    for name in dict.fromkeys(order):
        group = declared.get(name)
        decay = None if group is None else group.decay
        whole, numerator = 1, 0
        if type(decay) is LinearDecay:
            share = Fraction(decay.fraction)
            whole = share.denominator * (decay.every // _MICROSECOND)
            numerator = share.numerator
        elif type(decay) is TimeWindow:
            numerator = decay.within // _MICROSECOND
        elif decay is not None:  # a subclass: keep its own arithmetic (see _other_line)
            whole = 0
        cap = None if group is None else group.cap
        groups.append(
            _CompiledGroup(
                name,
                cap,
                None if cap is None else _micro(cap),
                decay,
                "" if decay is None else str(decay),
                whole,
                numerator,
                tuple(i for i, r in enumerate(scorer.rules) if r.group == name),
            )
        )
    by_kind: dict[str | None, list[int]] = {}
    for i, rule in enumerate(scorer.rules):
        by_kind.setdefault(rule.kind, []).append(i)
    return _Compiled(
        tuple(rules),
        tuple(groups),
        MappingProxyType({k: tuple(v) for k, v in by_kind.items()}),
        tuple((r, _micro(r.points)) for r in scorer.attribute_rules),
        scorer.total_cap,
        None if scorer.total_cap is None else _micro(scorer.total_cap),
        any(rule.where for rule in scorer.rules),
    )


class PointsState:
    """What incremental scoring keeps per lead: per rule, the times of the touches that may count.

    Times are integer microseconds. A repeatable rule keeps every matching
    touch still inside its decay or window (oldest first) and their sum; a
    once-only rule keeps its latest matching touch. A rule's times are only
    allocated once a touch matches it. Opaque to callers: only
    :class:`PointsScorer` reads it.
    """

    __slots__ = ("_positions", "active", "matched", "sums", "times")

    def __init__(self, rules: int, positions: Sequence[int] | None = None) -> None:
        self.times: list[deque[int] | None] = [None] * rules
        self.sums: list[int] = [0] * rules
        self._positions = tuple(range(rules)) if positions is None else tuple(positions)
        """Rule index → its place in the breakdown's order (``-1``: it shows in none)."""
        self.active: list[int] = []
        """The places (in the breakdown's order) of the rules a kept touch matched, sorted."""
        self.matched: tuple[Touch | None, tuple[int, ...], int] = (None, (), 0)
        """The last touch scored, the rules it matched and its time (for ``add``)."""

    def add(self, index: int, at: int, repeatable: bool) -> None:
        """Keep a matching touch at *at* (microseconds) for rule *index*."""
        times = self.times[index]
        if times is None:  # the rule's first touch: its line shows from now on
            position = self._positions[index]
            if position >= 0:
                bisect.insort(self.active, position)
        if times is None or not repeatable:
            self.times[index] = deque((at,))
            self.sums[index] = at
        else:
            times.append(at)
            self.sums[index] += at


def _matching(compiled: _Compiled, touch: Touch) -> tuple[int, ...]:
    """The indexes of the rules *touch* matches (kind and properties)."""
    found = compiled.matches.get(touch.kind, compiled.any_kind)
    if not compiled.any_where:
        return found
    rules = compiled.rules
    props = touch.properties
    return tuple(
        i
        for i in found
        if not rules[i].where
        or all(key in props and props[key] == value for key, value in rules[i].where.items())
    )


_new = object.__new__
_set_rule = ScoreItem.__dict__["rule"].__set__
_set_points = ScoreItem.__dict__["points"].__set__
_set_detail = ScoreItem.__dict__["detail"].__set__
_set_value = Score.__dict__["value"].__set__
_set_breakdown = Score.__dict__["breakdown"].__set__
_set_grade = Score.__dict__["grade"].__set__


def _item(rule: str, micro: int, detail: str) -> ScoreItem:
    """``ScoreItem(rule, micro / 10**6, detail)``, from values valid by construction.

    Sets the slots directly: the attrs ``__init__`` of a frozen class goes
    through ``object.__setattr__`` once per field, which is most of a line's cost.
    """
    item: ScoreItem = _new(ScoreItem)
    _set_rule(item, rule)
    _set_points(item, micro / _SCALE)
    _set_detail(item, detail)
    return item


def _item_points(rule: str, points: float, detail: str) -> ScoreItem:
    """``ScoreItem(rule, points, detail)`` (see :func:`_item`)."""
    item: ScoreItem = _new(ScoreItem)
    _set_rule(item, rule)
    _set_points(item, points)
    _set_detail(item, detail)
    return item


def _new_score(value: float, breakdown: tuple[ScoreItem, ...], grade: str | None) -> Score:
    """``Score(value, breakdown, grade)``, from values valid by construction (see :func:`_item`)."""
    score: Score = _new(Score)
    _set_value(score, value)
    _set_breakdown(score, breakdown)
    _set_grade(score, grade)
    return score


_get_breakdown = Score.__dict__["breakdown"].__get__


class _LazyScore(Score):
    """A :class:`Score` whose breakdown is written on first read: the built-in scorers' own.

    Incremental scoring computes every line's points (the value needs them)
    but leaves the text of each line until someone reads
    :attr:`~Score.breakdown`: a policy that reads only the value never pays
    for it. The lines are kept as tuples of plain values (see
    :func:`_render`), which the garbage collector stops visiting, so a log
    that keeps many scores costs it little. It compares, hashes and shows
    like the :class:`Score` with the same fields, and pickles as one.
    """

    __slots__ = ("_compiled", "_lines")
    _compiled: _Compiled | None
    _lines: tuple[Any, ...]

    @property
    def breakdown(self) -> tuple[ScoreItem, ...]:
        """Which rule gave how many points (rendered once, then kept)."""
        try:
            items: tuple[ScoreItem, ...] = _get_breakdown(self)
        except AttributeError:
            # Another thread may render meanwhile: it sets the breakdown before
            # it clears the lines, so lines read now, then no breakdown, are whole.
            compiled, lines = self._compiled, self._lines
            try:
                return _get_breakdown(self)  # type: ignore[no-any-return]
            except AttributeError:
                items = _render(compiled, lines)
            _set_breakdown(self, items)
            _set_lines(self, ())
            _set_compiled(self, None)
        return items

    @breakdown.setter
    def breakdown(self, value: tuple[ScoreItem, ...]) -> None:  # attrs' __init__ (evolve)
        _set_breakdown(self, value)

    def __eq__(self, other: object) -> bool:
        if type(other) is Score or type(other) is _LazyScore:
            return (self.value, self.breakdown, self.grade) == (
                other.value,
                other.breakdown,
                other.grade,
            )
        return NotImplemented

    __hash__ = Score.__hash__

    def __repr__(self) -> str:
        return f"Score(value={self.value!r}, breakdown={self.breakdown!r}, grade={self.grade!r})"

    def __reduce__(self) -> tuple[type[Score], tuple[Any, ...]]:
        return Score, (self.value, self.breakdown, self.grade)


_set_lines = _LazyScore.__dict__["_lines"].__set__
_set_compiled = _LazyScore.__dict__["_compiled"].__set__

# The lines of a lazy breakdown: a ready ScoreItem, or a tuple of plain values
# whose first item says how to write it.
_PLAIN_LINE = 0
"""``(0, position, counted)``: *counted* touches of the rule at *position* kept their points."""
_DECAYED_LINE = 1
"""``(1, position, counted, micro)``: they decayed to *micro* micro-points."""
_CAP_LINE = 2
"""``(2, name, cap, subtotal, text)``: a group or the total taken back down to *cap*."""
_ATTRIBUTE_LINE = 3
"""``(3, name, micro, attribute, value)``: an attribute rule matched *value*."""


def _render(compiled: _Compiled | None, lines: Iterable[Any]) -> tuple[ScoreItem, ...]:
    """The breakdown items of *lines* (see :class:`_LazyScore`)."""
    items: list[ScoreItem] = []
    for line in lines:
        if type(line) is not tuple:  # a ready item (a scorer's own may be a subclass)
            items.append(line)
            continue
        code = line[0]
        if code == _PLAIN_LINE:
            assert compiled is not None
            rule = compiled.flat[line[1]]
            items.append((rule.plain.get(line[2]) or rule.plain_line(line[2]))[1])
        elif code == _DECAYED_LINE:
            assert compiled is not None
            items.append(_decayed_item(compiled.flat[line[1]], line[2], line[3]))
        elif code == _CAP_LINE:
            _, name, cap, subtotal, text = line
            items.append(_item(name, cap - subtotal, text + _fmt_micro(subtotal) + ")"))
        else:
            _, name, micro, attribute, value = line
            items.append(_item(name, micro, f"{attribute} = {value!r}"))
    return tuple(items)


def _lazy_score(
    value: float, compiled: _Compiled | None, lines: tuple[Any, ...], grade: str | None
) -> Score:
    """A score whose breakdown is rendered from *lines* when read (see :class:`_LazyScore`)."""
    score = _new(_LazyScore)
    _set_value(score, value)
    _set_grade(score, grade)
    _set_compiled(score, compiled)
    _set_lines(score, lines)
    return score


def _parts_of(score: Score) -> tuple[_Compiled | None, tuple[Any, ...]]:
    """The breakdown of *score* as ``(compiled, lines)`` for :func:`_lazy_score`, unrendered."""
    if type(score) is _LazyScore:
        try:
            return None, _get_breakdown(score)
        except AttributeError:
            return score._compiled, score._lines
    return None, score.breakdown


def _decayed_item(rule: _RulePlan, counted: int, micro: int) -> ScoreItem:
    """The line of *counted* touches of *rule* that decayed to *micro* micro-points."""
    # the text of _fmt(micro / 10**6), as in _fmt_micro
    if 100 <= micro < _FMT_LIMIT:
        digits = str(micro)
        if len(digits) > 6 and digits[-6:] != "000000":
            text = (digits[:-6] + "." + digits[-6:]).rstrip("0")
        else:
            text = _decimal(digits)
    else:
        text = _fmt_micro(micro)
    start = rule.full.get(counted) or rule.decayed_start(counted)
    return _item(rule.name, micro, start + text + rule.group.decay_suffix)


def _other_line(
    group: _GroupPlan, rule: _RulePlan, times: deque[int] | None, at: int, new: bool
) -> tuple[int, str] | None:
    """A line of a group whose decay is a subclass: its own ``_kept``, as the pure path asks it."""
    decay = group.decay
    assert decay is not None
    if new and not rule.repeatable:  # the new touch is the latest: it alone counts
        ages = [0]
    else:
        ages = [at - t for t in times or ()] + ([0] if new else [])
    counted, share = decay._kept(ages)
    if not counted:
        return None
    micro = _round_half_even(rule.numerator * share.numerator, rule.denominator * share.denominator)
    detail = f"{counted}{rule.label}"
    if isinstance(decay, TimeWindow):
        detail += f", {decay}"
    elif isinstance(decay, LinearDecay) and not rule.zero and share != counted:
        detail += f", {_fmt(rule.points * counted)} decayed to {_fmt_micro(micro)} ({decay})"
    return micro, detail


def _score_next(  # noqa: PLR0915 (one loop, inlined: it runs for every touch)
    compiled: _Compiled, state: PointsState, touch: Touch, attributes: Mapping[str, Any]
) -> Score:
    at = (touch.at - _EPOCH) // _MICROSECOND
    matched = _matching(compiled, touch)
    state.matched = (touch, matched, at)
    all_times = state.times
    sums = state.sums
    lines: list[Any] = []  # what renders the breakdown (see _render)
    append = lines.append
    total = 0
    # only the rules a touch ever matched can show: the kept ones, and the new touch's
    order = state.active
    for index in matched:
        if all_times[index] is None:  # a rule's first touch
            position = compiled.position
            order = sorted({*order, *(position[i] for i in matched if position[i] >= 0)})
            break
    flat = compiled.flat
    group: _GroupPlan | None = None
    mode = subtotal = 0
    for place in order:
        rule = flat[place]
        if rule.group is not group:
            if group is not None:  # close the group before: its cap, then its subtotal
                cap = group.cap_micro
                if cap is not None and subtotal > cap:
                    append((_CAP_LINE, group.cap_name, cap, subtotal, group.cap_text))
                    subtotal = cap
                total += subtotal
            group = rule.group
            mode = group.mode
            subtotal = 0
        index = rule.index
        times = all_times[index]
        new = index in matched
        if not new and not times:
            continue
        if mode == _OTHER:
            line = _other_line(group, rule, times, at, new)
            if line is not None:
                subtotal += line[0]
                append(_item(rule.name, line[0], line[1]))
            continue
        aged = 0  # the sum of the ages of the kept touches that count
        if new and not rule.repeatable:  # the new touch is the latest: it alone counts
            counted = 1
        elif times:
            if mode == _LINEAR:
                numerator, whole = group.numerator, group.whole
                if numerator * (at - times[0]) >= whole:
                    dropped = 0
                    while times and numerator * (at - times[0]) >= whole:
                        dropped += times.popleft()
                    sums[index] -= dropped
                aged = len(times) * at - sums[index]
            elif mode == _WINDOW:
                within = group.numerator
                if at - times[0] >= within:
                    dropped = 0
                    while times and at - times[0] >= within:
                        dropped += times.popleft()
                    sums[index] -= dropped
            counted = len(times) + new
            if not counted:
                continue
        else:
            counted = 1
        if not aged or rule.zero:
            plain = rule.plain.get(counted) or rule.plain_line(counted)
            subtotal += plain[0]
            append((_PLAIN_LINE, place, counted))
            continue
        # micro-points: round(points * kept share), half to even, in integers
        denominator = rule.decayed
        micro, remainder = divmod(
            rule.numerator * (counted * group.whole - group.numerator * aged), denominator
        )
        if 2 * remainder > denominator or (2 * remainder == denominator and micro % 2):
            micro += 1
        subtotal += micro
        append((_DECAYED_LINE, place, counted, micro))
    if group is not None:
        cap = group.cap_micro
        if cap is not None and subtotal > cap:
            append((_CAP_LINE, group.cap_name, cap, subtotal, group.cap_text))
            subtotal = cap
        total += subtotal
    for attribute_rule, micro in compiled.attribute_rules:
        value = attributes.get(attribute_rule.attribute, _MISSING)
        if value is not _MISSING and value in attribute_rule.values:
            append((_ATTRIBUTE_LINE, attribute_rule.name, micro, attribute_rule.attribute, value))
            total += micro
    cap = compiled.total_cap_micro
    if cap is not None and total > cap:
        append((_CAP_LINE, "cap:total", cap, total, compiled.total_text))
        total = cap
    return _lazy_score(total / _SCALE, compiled, tuple(lines), None)


# ---------------------------------------------------------------- fit


@attrs.frozen
class FitCriterion:
    """One criterion of a fit grade: a lead attribute with the values that match.

    Args:
        name: The criterion's name, shown in the breakdown; unique in a grader.
        attribute: The lead attribute to look at (``"employees_band"``).
        values: The values that match.
        steps: How many thirds of a letter a match moves the grade; negative
            steps lower it.

    Raises:
        TypeError: A field has the wrong type (a bare str for *values* included).
    """

    name: str = attrs.field(validator=_check_name)
    attribute: str = attrs.field(validator=_check_name)
    values: tuple[Any, ...] = attrs.field(converter=_as_values)
    steps: int = attrs.field(default=1, validator=_check_steps)

    def matches(self, lead: Lead) -> bool:
        """Whether *lead* has the attribute with one of the criterion's values.

        Args:
            lead: The lead to test.

        Returns:
            ``True`` when the criterion moves the grade.
        """
        value = lead.attributes.get(self.attribute, _MISSING)
        return value is not _MISSING and value in self.values


def _as_criteria(value: Iterable[FitCriterion]) -> tuple[FitCriterion, ...]:
    return _items_of(FitCriterion, "criteria", value)


@attrs.frozen
class FitGrader:
    """Grade a lead's fit from ``F`` to ``A+``, as Salesforce Account Engagement does.

    Every lead starts at ``D``; each matching criterion moves the grade by its
    steps, a third of a letter each, along :data:`GRADES`
    (``F, D-, D, D+, C-, C, C+, B-, B, B+, A-, A, A+``). The sum is clamped
    to the ladder. The score's value is the index on the ladder (0 for ``F``
    to 12 for ``A+``) and its grade the letter. The breakdown adds up to the
    value: a ``start`` item (2, for ``D``), one item per matching criterion
    (its steps) and, when the sum fell off the ladder, a ``clamp`` item.

    Args:
        criteria: The criteria, in the order to show them.

    Raises:
        TypeError: A criterion has the wrong type.
        ValueError: Criterion names repeat or use the reserved ``start`` or ``clamp``.
    """

    criteria: tuple[FitCriterion, ...] = attrs.field(converter=_as_criteria)

    def __attrs_post_init__(self) -> None:
        names = [c.name for c in self.criteria]
        problems = [f"criterion name {n!r} is used more than once" for n in _duplicates(names)]
        problems += [
            f"criterion name {n!r} is reserved for the breakdown; rename it"
            for n in names
            if n in ("start", "clamp")
        ]
        _problems("FitGrader", problems)

    def __call__(self, lead: Lead, at: datetime) -> Score:
        """Grade *lead*; attributes have no time, so *at* is only checked.

        Args:
            lead: The lead.
            at: The scoring time (timezone-aware).

        Returns:
            The score: value = ladder index, grade = letter.

        Raises:
            ValueError: *at* is not a timezone-aware datetime.
        """
        _check_at(at)
        lines: list[_Line] = [("start", _START * _SCALE, "every lead starts at D")]
        for criterion in self.criteria:
            if criterion.matches(lead):
                value = lead.attributes[criterion.attribute]
                sign = "+" if criterion.steps >= 0 else ""
                detail = f"{criterion.attribute} = {value!r}: {sign}{criterion.steps} third(s)"
                lines.append((criterion.name, criterion.steps * _SCALE, detail))
        raw = sum(micro for _, micro, _ in lines) // _SCALE
        index = min(max(raw, 0), len(GRADES) - 1)
        if index != raw:
            end = "top" if raw > index else "bottom"
            lines.append(("clamp", (index - raw) * _SCALE, f"clamped at {GRADES[index]} ({end})"))
        return _score(lines, GRADES[index])


# ---------------------------------------------------------------- combined


@attrs.frozen
class CombinedScorer:
    """An engagement score with a fit grade, for a fit-by-engagement matrix.

    The value is the engagement score's value, so it equals the sum of the
    engagement items only; the grade is the fit score's grade. The breakdown
    lists the engagement items, then the fit items with their rule names
    prefixed ``fit:`` (those add up to the fit score's value, which is not
    part of the total).

    Both scorers are called through :func:`checked_score`, as ``engagement``
    and ``fit``, so a broken one is named in the error.

    Args:
        engagement: The scorer whose value is the score (a :class:`PointsScorer`).
        fit: The scorer whose grade is the grade (a :class:`FitGrader`).
    """

    engagement: Scorer
    fit: Scorer
    _fits: dict[tuple[object, ...], tuple[str | None, tuple[ScoreItem, ...]]] = attrs.field(
        init=False, factory=dict, eq=False, hash=False, repr=False
    )
    """A FitGrader's grade and ``fit:`` items by the values of its attributes (all str)."""

    def __call__(self, lead: Lead, at: datetime) -> Score:
        """Score *lead* at *at* with both scorers.

        Args:
            lead: The lead.
            at: The scoring time (timezone-aware).

        Returns:
            Engagement value, fit grade, both breakdowns.

        Raises:
            HookError: One of the two scorers failed its contract.
        """
        engagement = checked_score("engagement", self.engagement, lead, at)
        return self._combine(engagement, checked_score("fit", self.fit, lead, at))

    @staticmethod
    def _combine(engagement: Score, fit: Score) -> Score:
        return _new_score(
            engagement.value, engagement.breakdown + _fit_items(fit.breakdown), fit.grade
        )

    @property
    def incremental(self) -> bool:
        """Whether :meth:`score_next` may be used: an incremental engagement and a FitGrader."""
        return type(self.fit) is FitGrader and isinstance(self.engagement, IncrementalScorer)

    def start(self) -> Any:
        """A fresh per-lead state: the engagement scorer's (see :attr:`incremental`)."""
        return cast(IncrementalScorer, self.engagement).start()

    def score_next(self, state: Any, touch: Touch, attributes: Mapping[str, Any]) -> Score:
        """The score once *touch* is added; the fit grade reads only *attributes*."""
        engagement_scorer = cast(IncrementalScorer, self.engagement)
        if type(engagement_scorer) is PointsScorer:  # valid by construction: only errors matter
            try:
                engagement = _score_next(engagement_scorer._compiled, state, touch, attributes)
            except Exception as exc:
                raise _scorer_raised("engagement", exc, touch.lead_id, touch.at, None) from exc
        else:
            engagement = checked_call(
                "engagement",
                lambda: engagement_scorer.score_next(state, touch, attributes),
                touch.lead_id,
                touch.at,
                None,
            )
        fit = self.fit
        key = _fit_key(fit, attributes) if type(fit) is FitGrader else None
        known = None if key is None else self._fits.get(key)
        if known is None:
            lead = Lead(touch.lead_id, attributes)
            fit_score = checked_score("fit", fit, lead, touch.at)
            known = fit_score.grade, _fit_items(fit_score.breakdown)
            if key is not None and len(self._fits) < _FIT_CACHE:
                self._fits[key] = known
        compiled, lines = _parts_of(engagement)
        return _lazy_score(engagement.value, compiled, (*lines, *known[1]), known[0])

    def add(self, state: Any, touch: Touch) -> None:
        """Keep *touch* in the engagement scorer's *state*."""
        cast(IncrementalScorer, self.engagement).add(state, touch)


_FIT_CACHE = 4096
"""At most this many fit grades are kept per :class:`CombinedScorer`."""


def _fit_items(items: tuple[ScoreItem, ...]) -> tuple[ScoreItem, ...]:
    """A fit score's items, named ``fit:<rule>``."""
    return tuple([_item_points(f"fit:{item.rule}", item.points, item.detail) for item in items])


def _fit_key(grader: FitGrader, attributes: Mapping[str, Any]) -> tuple[object, ...] | None:
    """What *grader* reads of *attributes*, when every value is a plain str or missing.

    A FitGrader's score depends on nothing else (its time is only checked),
    so equal keys give equal scores. Other values are not keys: ``1``,
    ``1.0`` and ``True`` are equal but are written differently in the detail.
    """
    key = []
    for criterion in grader.criteria:
        value = attributes.get(criterion.attribute, _MISSING)
        if value is not _MISSING and type(value) is not str:
            return None
        key.append(value)
    return tuple(key)


# ---------------------------------------------------------------- contract


def checked_score(
    name: str, scorer: Scorer, lead: Lead, at: datetime, touch_id: str | None = None
) -> Score:
    """Call *scorer* and enforce the scorer contract.

    The engine calls every scorer through this function, so every scorer
    fails the same way and the journey is left unchanged.

    Args:
        name: The scorer's registered name, for the error.
        scorer: The scorer to call.
        lead: The lead to score.
        at: The scoring time.
        touch_id: The touch being scored, if any; errors name it (or the
            lead when there is none).

    Returns:
        The scorer's score.

    Raises:
        HookError: The scorer raised (the cause is chained), or returned
            something that is not a :class:`Score`, or a score whose value is
            not a finite number (NaN, infinity, a bool, a str ...), whose
            breakdown is not a tuple of :class:`ScoreItem` with finite points,
            or whose grade is neither ``None`` nor a str.
    """
    return checked_call(name, lambda: scorer(lead, at), lead.lead_id, at, touch_id)


def checked_call(
    name: str,
    call: Callable[[], object],
    lead_id: str,
    at: datetime,
    touch_id: str | None,
    *,
    trusted: bool = False,
) -> Score:
    """Run a scoring *call* (pure or incremental) and enforce the scorer contract.

    The one home of the contract: :func:`checked_score` and the engine's
    incremental path both come here, so every scorer fails the same way.
    *trusted* skips checking the result, for the built-in scorers, whose
    results are valid by construction (an exception is still a HookError).

    Raises:
        HookError: As :func:`checked_score`.
    """
    try:
        result = call()
    except Exception as exc:
        raise _scorer_raised(name, exc, lead_id, at, touch_id) from exc
    if trusted:
        return cast(Score, result)
    problem = score_problem(result)
    if problem is not None:
        subject = touch_id if touch_id is not None else lead_id
        raise HookError(
            name, f"{problem} {_scoring(lead_id, at)}", subject=subject, received=result
        )
    return cast(Score, result)


def checked_next(
    name: str,
    scorer: IncrementalScorer,
    state: Any,
    touch: Touch,
    attributes: Mapping[str, Any],
    *,
    trusted: bool = False,
) -> Score:
    """``scorer.score_next(state, touch, attributes)`` under the scorer contract.

    :func:`checked_call` for the engine's incremental path, without a closure
    per touch: a built-in (*trusted*) scorer's result is valid by
    construction, so only an exception is turned into a HookError.

    Raises:
        HookError: As :func:`checked_score`.
    """
    if trusted:
        try:
            return scorer.score_next(state, touch, attributes)
        except Exception as exc:
            raise _scorer_raised(name, exc, touch.lead_id, touch.at, touch.touch_id) from exc
    return checked_call(
        name,
        lambda: scorer.score_next(state, touch, attributes),
        touch.lead_id,
        touch.at,
        touch.touch_id,
    )


def _scorer_raised(
    name: str, exc: Exception, lead_id: str, at: datetime, touch_id: str | None
) -> HookError:
    """The error for a scorer that raised *exc*, formatted only once it did."""
    subject = touch_id if touch_id is not None else lead_id
    return HookError(
        name, f"scorer raised {type(exc).__name__} {_scoring(lead_id, at)}: {exc}", subject=subject
    )


def _scoring(lead_id: str, at: object) -> str:
    when = at.isoformat() if isinstance(at, datetime) else repr(at)
    return f"scoring lead {lead_id!r} at {when}"


def score_problem(result: object) -> str | None:
    """What is wrong with a scorer's *result*, or ``None``: the one home of the scorer contract."""
    if not isinstance(result, Score):
        return (
            f"scorer must return a Score (got {result!r} that is a {type(result).__name__}); "
            "return Score(value, breakdown) or Score.from_breakdown(items)"
        )
    if not is_finite_number(result.value):
        return (
            f"scorer returned a Score whose value is not a finite number (got "
            f"{result.value!r} that is a {type(result.value).__name__})"
        )
    if not isinstance(result.breakdown, tuple):
        return (
            f"scorer returned a Score whose breakdown is not a tuple (got "
            f"{result.breakdown!r} that is a {type(result.breakdown).__name__})"
        )
    for i, item in enumerate(result.breakdown):
        if not isinstance(item, ScoreItem) or not is_finite_number(item.points):
            return (
                f"scorer returned a Score whose breakdown[{i}] is not a ScoreItem with "
                f"finite points (got {item!r})"
            )
        if not isinstance(item.rule, str) or not isinstance(item.detail, str):
            return (
                f"scorer returned a Score whose breakdown[{i}] has a rule or detail that is "
                f"not a str (got {item!r}); name the rule and explain it in words"
            )
    if result.grade is not None and not isinstance(result.grade, str):
        return (
            f"scorer returned a Score whose grade is neither None nor a str (got "
            f"{result.grade!r} that is a {type(result.grade).__name__})"
        )
    additive = [item.points for item in result.breakdown if not item.rule.startswith("fit:")]
    if additive:
        # the documented promise: round(fsum(points), 6) == value (to 6 decimals)
        total = round(math.fsum(additive), 6)
        if total != round(result.value, 6):
            return (
                f"scorer returned a Score whose breakdown adds up to {_fmt(total)}, "
                f"not its value {_fmt(result.value)} (items named 'fit:...' aside); build it "
                "with Score.from_breakdown(items) so the two always agree"
            )
    return None


# ---------------------------------------------------------------- plugins


def _entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points of *group* by name; the first found on ``sys.path`` wins."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=group):
        found.setdefault(entry_point.name, entry_point)
    return found


def _load_plugin(kind: str, group: str, name: str) -> object:
    """Load the plugin *name* of *group*: a hook, or a class instantiated without arguments.

    Raises:
        UnknownHook: No entry point of *group* has that name.
        HookError: It cannot be imported or instantiated, or is not callable.
    """
    entry_points = _entry_points(group)
    entry_point = entry_points.get(name)
    if entry_point is None:
        raise UnknownHook(kind, [name], entry_points)
    where = f"entry point {entry_point.value!r} of group {group!r}"
    try:
        loaded = entry_point.load()
    except Exception as exc:
        raise HookError(name, f"cannot load {kind} {where}: {type(exc).__name__}: {exc}") from exc
    if isinstance(loaded, type):
        try:
            loaded = loaded()
        except Exception as exc:
            raise HookError(
                name,
                f"{kind} {where} names a class that cannot be instantiated without "
                f"arguments ({type(exc).__name__}: {exc}); give it defaults, or point the "
                "entry point at a configured instance instead",
            ) from exc
    if not callable(loaded):
        raise HookError(
            name,
            f"{where} must name a {kind} (a callable or a class) but names {loaded!r} that "
            f"is a {type(loaded).__name__}",
            received=loaded,
        )
    return loaded


def load_scorer(name: str) -> Scorer:
    """Load the scorer plugin called *name* from the ``buyerjourney.scorers`` entry points.

    A distribution declares a scorer in its ``pyproject.toml``::

        [project.entry-points."buyerjourney.scorers"]
        my_scorer = "my_pkg.scoring:MyScorer"

    The object named may be a scorer (a function ``(lead, at) -> Score`` or a
    configured instance such as a module-level ``PointsScorer``) or a class:
    a class is instantiated with no arguments and the instance is the
    scorer. Zero-argument factory *functions* are not supported, since they
    cannot be told apart from scorer functions; expose an instance instead.
    When several distributions declare the same name, the first found on
    ``sys.path`` wins.

    Args:
        name: The entry point's name.

    Returns:
        The scorer.

    Raises:
        UnknownHook: No scorer plugin has that name; lists the known names.
        HookError: The plugin cannot be imported or instantiated, or is not callable.
    """
    return cast("Scorer", _load_plugin("scorer", SCORER_GROUP, name))


def available_scorers() -> tuple[str, ...]:
    """The names of the installed scorer plugins, sorted.

    Returns:
        Every name in the ``buyerjourney.scorers`` entry point group.
    """
    return tuple(sorted(_entry_points(SCORER_GROUP)))
