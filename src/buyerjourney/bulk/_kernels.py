"""Vectorised points scoring: the one deliberate second implementation of the points arithmetic.

The definition of a points score is :class:`~buyerjourney.scoring.PointsScorer`
(``buyerjourney/_core/scoring.py``): per touch, every rule's matching touches
up to it, decayed or windowed per group, capped per group and in total, plus
attribute points, each breakdown line rounded to millionths of a point, half
to even. This module computes the same numbers for a whole batch at once,
with NumPy: exact integer micro-points from per-lead prefix sums over sliding
windows, with the rounding done exactly (:func:`micro_exact`).

The fit grade of a :class:`~buyerjourney.scoring.CombinedScorer` is
defined by :class:`~buyerjourney.scoring.FitGrader`: ``D`` plus the steps of
every criterion the lead's profile (its attributes merged touch by touch)
matches, clamped to the ladder. :func:`fit_grades` computes it where a
touch brings attributes and carries it forward to the lead's other
touches; the breakdown of a combined score (its ``fit:`` items) is never
computed here: records are materialised by calling the scorer itself.

It is a second implementation on purpose, for speed, and only that: it
computes nothing the reference does not, and the tests hold it equal to the
reference: the conformance suite (``tests/test_conformance.py``) runs the
bulk path in each of its modes against the engine, the differential tests
(``tests/test_fast.py``) draw scorers, funnels and touch streams with
Hypothesis and compare every record, and ``tests/test_bulk_*.py`` pin the
edge cases (``tests/test_bulk_matrix.py`` those of fit grades). Change the
arithmetic of ``PointsScorer`` or ``FitGrader`` and this module must follow,
or those tests fail.

The kernel never sees a scorer object. :func:`buyerjourney.bulk.plan` is
the one place that decides what can be vectorised: it accepts only the
exact component types this kernel implements, within the limits of its
integers, and translates them into a :class:`ScorerSpec` (plain numbers and
tags). Anything else is scored by calling the scorer, touch by touch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from math import gcd
from typing import Any, Literal

import attrs

from buyerjourney._core._values import freeze
from buyerjourney.bulk._columnar import sort_keys

Array = Any
"""A NumPy array (NumPy is optional, so arrays are typed loosely)."""

__all__ = [
    "EXACT_MICRO",
    "NEVER",
    "NO_GRADE",
    "SCALE",
    "AttributeSpec",
    "CriterionSpec",
    "FitSpec",
    "GroupSpec",
    "Groups",
    "RuleSpec",
    "ScorerSpec",
    "columnar_scores",
    "fit_grades",
    "micro_exact",
]

SCALE = 10**6
"""Micro-points per point: breakdown lines are rounded to millionths."""

EXACT_MICRO = 2**53
"""The largest score, in micro-points, the kernel computes exactly.

Scores are summed in int64 and divided by :data:`SCALE` in float64; up to
``2**53`` the conversion to float64 is exact, so the division rounds once,
as the reference's integer division does.
"""

NEVER = 2**62
"""A window length (in microseconds) that no touch's age reaches."""

NO_GRADE = -1
"""The grade code of a score without a grade (grades are indexes into the fit ladder)."""

_MISSING = object()


@attrs.frozen
class RuleSpec:
    """A points rule, as the kernel reads it.

    Attributes:
        kind: The touch kind it matches, or ``None`` for every touch.
        where: Touch properties that must be present and equal.
        points: Micro-points per matching touch (points times :data:`SCALE`), exactly.
        repeatable: Whether every matching touch counts, or only the latest.
    """

    kind: str | None
    where: tuple[tuple[str, Any], ...]
    points: Fraction
    repeatable: bool


@attrs.frozen
class GroupSpec:
    """A score group with its rules, as the kernel reads it.

    Attributes:
        rules: The group's rules, in the scorer's order.
        cap: The group's cap in micro-points, or ``None``.
        decay: ``"none"``, ``"linear"`` (a linear decay) or ``"window"`` (a time window).
        length: The age, in microseconds, from which a touch keeps nothing
            (:data:`NEVER` without decay).
        rate: For a linear decay, the share of its points a touch loses per
            microsecond of age; ``0`` otherwise.
    """

    rules: tuple[RuleSpec, ...]
    cap: int | None
    decay: Literal["none", "linear", "window"]
    length: int
    rate: Fraction


@attrs.frozen
class AttributeSpec:
    """An attribute rule, as the kernel reads it.

    Attributes:
        attribute: The lead attribute looked at.
        values: The values that earn the points.
        points: Micro-points when the attribute has one of *values*.
    """

    attribute: str
    values: tuple[Any, ...]
    points: int


@attrs.frozen
class CriterionSpec:
    """A fit criterion, as the kernel reads it.

    Attributes:
        attribute: The lead attribute looked at.
        values: The values that match.
        steps: Thirds of a letter a match moves the grade (negative: down).
    """

    attribute: str
    values: tuple[Any, ...]
    steps: int


@attrs.frozen
class FitSpec:
    """A fit grader, as the kernel reads it: grades are indexes into the fit ladder.

    Attributes:
        criteria: The criteria, in the grader's order.
        start: The ladder index every lead starts at (``D``).
        top: The highest ladder index (``A+``); sums are clamped to ``0 .. top``.
    """

    criteria: tuple[CriterionSpec, ...]
    start: int
    top: int


@attrs.frozen
class ScorerSpec:
    """A points scorer, as the kernel reads it (built by :func:`buyerjourney.bulk.plan`).

    Attributes:
        groups: The groups, in breakdown order (declared groups first, then
            the groups rules name without declaring them).
        attribute_rules: The attribute rules.
        total_cap: The total cap in micro-points, or ``None``.
        fit: For a combined scorer (an engagement score with a fit grade),
            the fit grader; the points are the engagement score. ``None``
            for a points scorer alone (its scores have no grade).
    """

    groups: tuple[GroupSpec, ...]
    attribute_rules: tuple[AttributeSpec, ...]
    total_cap: int | None
    fit: FitSpec | None = None


# ---------------------------------------------------------------- exact rounding


def micro_exact(
    np: Any, a_coef: Fraction, a: Array, b_coef: Fraction = Fraction(0), b: Array | None = None
) -> Array:
    """``round(a_coef * a - b_coef * b)`` per element, half to even, exactly (``a, b >= 0``).

    Computed in float64 and checked: the float error is below ``4e-16`` of
    the terms, so only an element within that distance of a half-integer
    can round wrongly. Those (genuine ties are common: ages in whole
    seconds) are recomputed exactly: with a common denominator ``d`` the
    value is ``(c1 * a - c2 * b) / d`` for integers ``c1``, ``c2``, divided in
    NumPy when it fits in 64 bits, with Python integers otherwise.

    Args:
        np: The NumPy module.
        a_coef: The coefficient of *a*.
        a: Non-negative integers (int64).
        b_coef: The coefficient of *b*.
        b: Non-negative integers (int64), or ``None``.

    Returns:
        The rounded values (int64).
    """
    if b is None or b_coef == 0:
        b, b_coef = None, Fraction(0)
        if a_coef.denominator == 1:
            return a * int(a_coef)
    if not a.shape[0]:
        return np.zeros(0, np.int64)
    max_a = int(a.max())
    max_b = int(b.max()) if b is not None else 0
    ca = float(a_coef)
    x = a * ca
    bound = abs(ca) * max_a
    if b is not None:
        cb = float(b_coef)
        x -= b * cb
        bound += abs(cb) * max_b
    rounded = np.rint(x)
    if bound >= 2.0**50:
        near = np.arange(x.shape[0])
    else:
        np.subtract(x, rounded, out=x)
        np.abs(x, out=x)
        near = np.flatnonzero(x >= 0.5 - (bound * 1e-15 + 1e-300))
    out = rounded.astype(np.int64)
    if not near.shape[0]:
        return out
    d = a_coef.denominator * b_coef.denominator // gcd(a_coef.denominator, b_coef.denominator)
    c1 = int(a_coef * d)
    c2 = int(b_coef * d)
    if abs(c1) * max_a + abs(c2) * max_b < 2**62:
        num = a[near] * c1
        if b is not None:
            num -= b[near] * c2
        q, r = np.divmod(num, d)
        r *= 2
        q += (r > d) | ((r == d) & (q % 2 == 1))
        out[near] = q
        return out
    for i in near.tolist():
        q_, r_ = divmod(c1 * int(a[i]) - (c2 * int(b[i]) if b is not None else 0), d)
        out[i] = q_ + (2 * r_ > d or (2 * r_ == d and q_ % 2 == 1))
    return out


# ---------------------------------------------------------------- per-lead groups


class Groups:
    """Per-lead bookkeeping over touches sorted by lead (stable, so in time order per lead).

    Args:
        np: The NumPy module.
        lead: Per touch, the lead's code.
        at: Per touch, its time in microseconds (in time order).
    """

    def __init__(self, np: Any, lead: Array, at: Array) -> None:
        self.np = np
        n = lead.shape[0]
        self.order, self.lead = sort_keys(np, lead)
        self.at = at[self.order]
        first = np.ones(n, bool)
        if n:
            np.not_equal(self.lead[1:], self.lead[:-1], out=first[1:])
        self.first = first
        self.starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        self.group = group
        self.start = self.starts[group] if n else np.zeros(0, np.int64)
        self.rank = np.arange(n) - self.start
        self.t0 = int(at[0]) if n else 0
        self.rel = self.at - self.t0
        self._windows: dict[int, Array] = {}
        self._times: tuple[Array, Array] | None = None
        self._input_at = at
        self.span = int(self.rel.max() - self.rel.min()) if n else 0

    def window_start(self, length: int) -> Array:
        """Per touch, the first index (same lead) of a touch less than *length* µs older.

        Args:
            length: The window's length in microseconds.

        Returns:
            Indices into the lead-sorted touches.
        """
        np = self.np
        cached = self._windows.get(length)
        if cached is not None:
            return cached
        start = self.start.copy()
        # only touches at least *length* after their lead's first touch can
        # have a window that starts later
        late = np.flatnonzero(self.at - self.at[self.start] >= length)
        if late.shape[0]:
            at = self._input_at  # in time order
            if self._times is None:
                new = np.ones(at.shape[0], bool)
                np.not_equal(at[1:], at[:-1], out=new[1:])
                rank = np.cumsum(new) - 1  # each touch's time among the distinct times
                self._times = (at[new], self.group * (int(rank[-1]) + 2) + rank[self.order])
            unique, key = self._times
            span = unique.shape[0] + 1
            q = np.searchsorted(unique, self.at[late] - length, side="right")
            start[late] = np.searchsorted(key, self.group[late] * span + q, side="left")
        self._windows[length] = start
        return start


# ---------------------------------------------------------------- points


def _rule_mask(
    np: Any,
    rule: RuleSpec,
    g: Groups,
    kind: Array,
    *,
    kinds: Sequence[str],
    properties: Mapping[int, Mapping[str, Any]],
    positions: Array,
) -> Array:
    if rule.kind is None:
        mask = np.ones(kind.shape[0], bool)
    elif rule.kind in kinds:
        mask = kind == kinds.index(rule.kind)
    else:
        return np.zeros(kind.shape[0], bool)
    if rule.where:
        # Properties are checked in Python, for the touches that could match.
        for i in np.flatnonzero(mask).tolist():
            props = properties.get(int(positions[i]), {})
            mask[i] = all(k in props and props[k] == v for k, v in rule.where)
    return mask


def _rule_points(
    np: Any, rule: RuleSpec, group: GroupSpec, mask: Array, g: Groups, *, subtotal: Array
) -> None:
    """Add the micro-points of *rule*'s breakdown line at every touch to *subtotal*.

    Arrays are in lead-sorted order. Only the touches whose lead has a
    matching touch in the rule's window are computed.
    """
    n = mask.shape[0]
    points = rule.points
    length = group.length
    linear = group.decay == "linear"
    slope = points * group.rate
    if not rule.repeatable:
        last = np.where(mask, np.arange(n), -1)
        np.maximum.accumulate(last, out=last)
        age = g.rel - g.rel[np.maximum(last, 0)]
        active = np.flatnonzero((last >= g.start) & (age < length))
        ones = np.ones(active.shape[0], np.int64)
        if linear:
            subtotal[active] += micro_exact(np, points, ones, slope, age[active])
        else:
            subtotal[active] += micro_exact(np, points, ones)
        return
    counts = np.zeros(n + 1, np.int64)  # counts[i]: matching touches before index i
    np.cumsum(mask, out=counts[1:])
    lo = g.start if length > g.span else g.window_start(length)
    c_hi = counts[1:]
    c_lo = counts[lo]
    window = c_hi - c_lo
    rel = g.rel
    where: Any = slice(None)
    if int(counts[-1]) * 4 < n:  # a sparse rule: only the touches with matches in their window
        where = np.flatnonzero(window)
        c_hi, c_lo, window, rel = c_hi[where], c_lo[where], window[where], rel[where]
    if not linear:
        subtotal[where] += micro_exact(np, points, window)
        return
    # sum of the ages of the matching touches in the window, from prefix sums
    # over the matching touches only (int64 arithmetic wraps, and the
    # differences are exact as long as the true sums fit: plan checks that)
    times = np.zeros(int(counts[-1]) + 1, np.int64)
    np.cumsum(g.rel[mask], out=times[1:])
    ages = window * rel
    ages -= times[c_hi]
    ages += times[c_lo]
    subtotal[where] += micro_exact(np, points, window, slope, ages)


def columnar_scores(
    np: Any,
    spec: ScorerSpec,
    g: Groups,
    kind: Array,
    *,
    kinds: Sequence[str],
    properties: Mapping[int, Mapping[str, Any]],
    attributes: Mapping[int, Mapping[str, Any]],
    positions: Array | None = None,
) -> Array:
    """Every touch's score in micro-points (lead-sorted order), as ``PointsScorer`` computes it.

    Args:
        np: The NumPy module.
        spec: The scorer, as :func:`buyerjourney.bulk.plan` translated it.
        g: The touches grouped by lead.
        kind: Per touch (lead-sorted order), its kind's code.
        kinds: Touch kinds by code.
        properties: Touch properties by batch position.
        attributes: Lead attributes learned, by batch position (entries for
            positions not in *positions* are ignored).
        positions: Per touch (lead-sorted order), its batch position; ``None``
            when *g* groups the whole batch (positions are ``g.order``). A
            block of leads passes the positions of its touches.

    Returns:
        The scores in micro-points (int64), in lead-sorted order.
    """
    n = kind.shape[0]
    if positions is None:
        positions = g.order
    total = np.zeros(n, np.int64)
    for group in spec.groups:
        subtotal = np.zeros(n, np.int64)
        for rule in group.rules:
            mask = _rule_mask(
                np, rule, g, kind, kinds=kinds, properties=properties, positions=positions
            )
            if mask.any():
                _rule_points(np, rule, group, mask, g, subtotal=subtotal)
        if group.cap is not None:
            np.minimum(subtotal, group.cap, out=subtotal)
        total += subtotal
    if spec.attribute_rules:
        total += _attribute_points(np, spec.attribute_rules, attributes, g, positions)
    if spec.total_cap is not None:
        np.minimum(total, spec.total_cap, out=total)
    return total


def _attribute_points(
    np: Any,
    rules: tuple[AttributeSpec, ...],
    attributes: Mapping[int, Mapping[str, Any]],
    g: Groups,
    positions: Array,
) -> Array:
    """Attribute points per touch: rules are evaluated where a touch brings attributes."""

    def points(known: Mapping[str, Any]) -> int:
        total = 0
        for rule in rules:
            value = known.get(rule.attribute, _MISSING)
            if value is not _MISSING and value in rule.values:
                total += rule.points
        return total

    names = tuple(dict.fromkeys(rule.attribute for rule in rules))
    return _per_profile(
        np, points, names, attributes, g, default=0, positions=positions, dtype=np.int64
    )


def fit_grades(
    np: Any,
    spec: FitSpec,
    g: Groups,
    *,
    attributes: Mapping[int, Mapping[str, Any]],
    positions: Array | None = None,
) -> Array:
    """Every touch's fit grade (lead-sorted order), as ``FitGrader`` grades the merged profile.

    A lead's profile is the merge, touch by touch, of the attributes its
    touches bring (a later value wins), so the grade only changes at a touch
    that brings attributes; before the first, the profile is empty and the
    grade is the start.

    Args:
        np: The NumPy module.
        spec: The grader, as :func:`buyerjourney.bulk.plan` translated it.
        g: The touches grouped by lead.
        attributes: Lead attributes learned, by batch position (as for
            :func:`columnar_scores`).
        positions: Per touch (lead-sorted order), its batch position, or
            ``None`` when *g* groups the whole batch.

    Returns:
        Per touch, the index of its grade on the fit ladder (int8).
    """
    if positions is None:
        positions = g.order
    criteria = spec.criteria

    def grade(known: Mapping[str, Any]) -> int:
        raw = spec.start
        for criterion in criteria:
            value = known.get(criterion.attribute, _MISSING)
            if value is not _MISSING and value in criterion.values:
                raw += criterion.steps
        return min(max(raw, 0), spec.top)

    names = tuple(dict.fromkeys(criterion.attribute for criterion in criteria))
    return _per_profile(
        np, grade, names, attributes, g, default=spec.start, positions=positions, dtype=np.int8
    )


def _sorted_index(np: Any, g: Groups, positions: Array, wanted: Array) -> tuple[Array, Array]:
    """Which of the batch positions *wanted* are among *positions*, and their lead-sorted indices.

    Returns:
        The indices into *wanted* of the positions found, and for each its
        index in the lead-sorted touches.
    """
    n = positions.shape[0]
    if positions is g.order:  # the whole batch: positions are a permutation of 0 .. n - 1
        inverse = np.empty(n, np.int64)
        inverse[positions] = np.arange(n)
        found = np.flatnonzero((wanted >= 0) & (wanted < n))
        return found, inverse[wanted[found]]
    by_position = np.argsort(positions, kind="stable")
    ascending = positions[by_position]
    j = np.minimum(np.searchsorted(ascending, wanted), n - 1)
    found = np.flatnonzero(ascending[j] == wanted)
    return found, by_position[j[found]]


_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Values that are their own frozen form, and whose equality is plain (a cache key)."""


def _per_profile(
    np: Any,
    evaluate: Callable[[Mapping[str, Any]], int],
    names: tuple[str, ...],
    attributes: Mapping[int, Mapping[str, Any]],
    g: Groups,
    *,
    default: int,
    positions: Array,
    dtype: Any,
) -> Array:
    """``evaluate(profile)`` per touch, where *profile* is its lead's merged attributes.

    A lead's profile is the merge, in time order, of the attributes its
    touches bring (a later value wins); only the attributes *names* lists
    are kept, the only ones *evaluate* reads. *evaluate* runs (in Python)
    at the touches that bring any of them, once per distinct profile of
    plain values; other touches take the value of their lead's latest such
    touch, or *default* before it. Values are frozen as the engine freezes
    a touch's attributes (lists become tuples, and so on), so they compare
    as the engine compares them.
    """
    n = g.order.shape[0]
    out = np.full(n, default, dtype)
    if not n or not attributes or not names:
        return out
    keys = sorted(attributes)
    found, index = _sorted_index(np, g, positions, np.array(keys, np.int64))
    changes: list[int] = []
    values: list[int] = []
    merged: dict[int, dict[str, Any]] = {}
    cache: dict[tuple[Any, ...], int] = {}
    plain = _PLAIN
    missing = _MISSING
    for k, i, lead in zip(found.tolist(), index.tolist(), g.lead[index].tolist(), strict=True):
        learned = attributes[keys[k]]
        known = None
        for name in names:
            if name in learned:
                if known is None:
                    known = merged.get(lead)
                    if known is None:
                        known = merged[lead] = {}
                value = learned[name]
                known[name] = value if type(value) in plain else freeze(value)
        if known is None:  # nothing the evaluation reads
            continue
        key: list[Any] = []
        for name in names:
            value = known.get(name, missing)
            if value is not missing and type(value) not in plain:
                break  # a value of its own type: its equality may not be plain
            key.append(value)
        if len(key) < len(names):
            result = evaluate(known)
        else:
            cached = tuple(key)
            hit = cache.get(cached)
            result = cache[cached] = evaluate(known) if hit is None else hit
        changes.append(i)
        values.append(result)
    if not changes:
        return out
    where_set = np.zeros(n, np.int64)
    changed = np.array(changes, np.int64)
    where_set[changed] = values
    last = np.full(n, -1, np.int64)
    last[changed] = changed
    np.maximum.accumulate(last, out=last)
    has = last >= g.start
    out[has] = where_set[last[has]]
    return out
