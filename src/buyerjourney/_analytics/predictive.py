"""The predictive score: naive Bayes over the attributes of won and lost leads (DOMAIN §4).

As Odoo's predictive lead scoring does it: count, for every field and
value, how many won and how many lost leads had it, add 0.1 to every count
(so that a value never seen with one outcome does not make it impossible),
and multiply::

    S(won)  = (W + 0.1) · Π (w(f = v) + 0.1) / (W_f + 0.1)
    S(lost) = (L + 0.1) · Π (l(f = v) + 0.1) / (L_f + 0.1)
    P(won)  = S(won) / (S(won) + S(lost))

where *W* and *L* are the won and lost leads of the history, ``w(f = v)``
and ``l(f = v)`` the won and lost leads whose field *f* had the value *v*,
and ``W_f``, ``L_f`` the won and lost leads that had field *f* at all. The
product runs over the fields of the lead being scored; a field the lead
lacks, or a value no lead of the history had, says nothing and is left out.

Every prediction explains itself, as HubSpot's "likelihood to close" does:
each factor's **weight** is its log-likelihood ratio
``ln(P(v | won) / P(v | lost))``, positive when the value is more common
among won leads. As a scorer, the model gives the probability in percent
(``scale=100``) with a breakdown that adds up to it: the **prior** (the
probability before any attribute), then each factor's share of the change,
in proportion to its weight, so that a positive factor always adds points
and a negative one always takes them away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from buyerjourney._analytics._stats import optional_time, value_key
from buyerjourney._core._values import freeze, thaw
from buyerjourney._core.funnel import Funnel, StageKind
from buyerjourney._core.journey import rebuild
from buyerjourney._core.records import Record
from buyerjourney._core.scoring import Lead, Score, ScoreItem

__all__ = [
    "SMOOTHING",
    "Factor",
    "Prediction",
    "PredictiveModel",
    "ValueCount",
    "training_examples",
]

SMOOTHING = 0.1
"""Added to every count, as Odoo does (DOMAIN §4)."""

_WON_KINDS = (StageKind.WON, StageKind.AFTER_PURCHASE)
_SCALE = 10**6
_FLAT = 1e-9
"""Below this total weight, factors share the change by the slope at the prior."""


@attrs.frozen
class ValueCount:
    """How many won and lost leads of the history had one value of one field.

    Attributes:
        field: The lead attribute.
        value: Its value (frozen).
        won: Won leads with it.
        lost: Lost leads with it.
    """

    field: str
    value: Any = attrs.field(converter=freeze)
    won: int
    lost: int

    def to_dict(self) -> dict[str, Any]:
        """The count as a JSON-ready dict."""
        return {"field": self.field, "value": thaw(self.value), "won": self.won, "lost": self.lost}


@attrs.frozen
class Factor:
    """One attribute's part in a prediction.

    Attributes:
        field: The lead attribute.
        value: The lead's value of it.
        won: Won leads of the history with that value.
        lost: Lost leads of the history with that value.
        weight: ``ln(P(value | won) / P(value | lost))`` with the smoothed
            counts; positive favours winning, negative favours losing.
        points: The factor's share of the score, in score units (percentage
            points with the default scale); it has the sign of the weight.
    """

    field: str
    value: Any
    won: int
    lost: int
    weight: float
    points: float

    @property
    def label(self) -> str:
        """``field=value``, as the breakdown names the factor."""
        return f"{self.field}={thaw(self.value)}"

    @property
    def odds_ratio(self) -> float:
        """How much the value multiplies the odds of winning (``exp(weight)``)."""
        return math.exp(self.weight)

    def to_dict(self) -> dict[str, Any]:
        """The factor as a JSON-ready dict."""
        return {
            "field": self.field,
            "value": thaw(self.value),
            "won": self.won,
            "lost": self.lost,
            "weight": self.weight,
            "odds_ratio": self.odds_ratio,
            "points": self.points,
        }


@attrs.frozen
class Prediction:
    """The probability that a lead is won, and why.

    Attributes:
        probability: P(won), between 0 and 1.
        prior: The probability before any attribute: (W + 0.1) ÷ (W + L + 0.2).
        factors: Every attribute that counted, strongest in favour first.
        unseen: Fields the lead has with a value no lead of the history had
            (left out of the product).
        top: How many factors :attr:`positive` and :attr:`negative` give.
    """

    probability: float
    prior: float
    factors: tuple[Factor, ...]
    unseen: tuple[str, ...] = ()
    top: int = 3

    @property
    def positive(self) -> tuple[Factor, ...]:
        """The strongest factors in favour of winning (at most :attr:`top`)."""
        return tuple(f for f in self.factors if f.weight > 0)[: self.top]

    @property
    def negative(self) -> tuple[Factor, ...]:
        """The strongest factors against winning, strongest first (at most :attr:`top`)."""
        return tuple(f for f in reversed(self.factors) if f.weight < 0)[: self.top]

    def to_dict(self) -> dict[str, Any]:
        """The prediction as a JSON-ready dict."""
        return {
            "probability": self.probability,
            "prior": self.prior,
            "factors": [f.to_dict() for f in self.factors],
            "positive": [f.label for f in self.positive],
            "negative": [f.label for f in self.negative],
            "unseen": list(self.unseen),
        }

    def format(self) -> str:
        """The prediction as plain text: the probability and its top factors."""
        lines = [f"likelihood to win: {self.probability:.1%} (prior {self.prior:.1%})"]
        for title, factors in (("in favour", self.positive), ("against", self.negative)):
            lines.append(f"{title}:")
            lines += [
                f"  {f.label}: odds x{f.odds_ratio:.2f} ({f.won} won, {f.lost} lost)"
                for f in factors
            ] or ["  none"]
        return "\n".join(lines)


def _check_count(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"'{attribute.name}' must be an int of zero or more (got {value!r})"
        raise ValueError(msg)


def _check_scale(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"'{attribute.name}' must be a finite number above zero (got {value!r})"
        raise ValueError(msg)


def _as_fields(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        msg = (
            f"'fields' must be a sequence of attribute names, not a str; did you mean ({value!r},)?"
        )
        raise TypeError(msg)
    return tuple(value)


def _as_counts(value: Iterable[ValueCount]) -> tuple[ValueCount, ...]:
    return tuple(value)


@attrs.frozen
class PredictiveModel:
    """A naive Bayes model of winning, trained from won and lost leads (see the module).

    It is also a scorer (the :class:`~buyerjourney.scoring.Scorer` protocol):
    ``model(lead, at)`` scores the lead's attributes, so it can drive a
    :class:`~buyerjourney.ThresholdPolicy` (``ThresholdPolicy(70, ...)`` for
    "70 % likely to win"). Build it with :meth:`from_log` or :meth:`from_examples`.

    Args:
        won: Won leads in the history (*W*).
        lost: Lost leads in the history (*L*).
        fields: The lead attributes the model looks at, in order.
        counts: Won and lost leads per field and value.
        scale: The score of a certain win: 100 gives percent, 1 a probability.
        top: How many positive and negative factors a prediction lists.

    Raises:
        ValueError: A count is negative, a field or value is counted twice or
            under an unknown field, counts exceed the totals, or the scale
            is not above zero.
    """

    won: int = attrs.field(validator=_check_count)
    lost: int = attrs.field(validator=_check_count)
    fields: tuple[str, ...] = attrs.field(converter=_as_fields)
    counts: tuple[ValueCount, ...] = attrs.field(converter=_as_counts)
    scale: float = attrs.field(default=100.0, validator=_check_scale, kw_only=True)
    top: int = attrs.field(default=3, validator=_check_count, kw_only=True)
    _table: Mapping[tuple[str, tuple[Any, ...]], ValueCount] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )
    _totals: Mapping[str, tuple[int, int]] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        table: dict[tuple[str, tuple[Any, ...]], ValueCount] = {}
        totals = {name: [0, 0] for name in self.fields}
        for count in self.counts:
            if not isinstance(count, ValueCount):
                msg = f"'counts' must hold ValueCount items (got {count!r})"
                raise TypeError(msg)
            if count.field not in totals:
                msg = f"count of {count.field!r} but 'fields' is {self.fields!r}"
                raise ValueError(msg)
            key = (count.field, value_key(count.value))
            if key in table:
                msg = f"value {count.value!r} of {count.field!r} is counted twice"
                raise ValueError(msg)
            _check_count(None, attrs.fields(ValueCount).won, count.won)
            _check_count(None, attrs.fields(ValueCount).lost, count.lost)
            table[key] = count
            totals[count.field][0] += count.won
            totals[count.field][1] += count.lost
        for name, (won, lost) in totals.items():
            if won > self.won or lost > self.lost:
                msg = f"field {name!r} counts {won} won and {lost} lost, more than the totals"
                raise ValueError(msg)
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_totals", {k: (v[0], v[1]) for k, v in totals.items()})

    # ------------------------------------------------------------ training

    @classmethod
    def from_examples(
        cls,
        examples: Iterable[tuple[Mapping[str, Any], bool]],
        *,
        fields: Sequence[str] | None = None,
        scale: float = 100.0,
        top: int = 3,
    ) -> PredictiveModel:
        """Train from ``(attributes, won)`` pairs: a lead's attributes and whether it was won.

        Args:
            examples: The history: one pair per won or lost lead.
            fields: The attributes to learn from; by default every attribute
                any example has, in order of first appearance. Leave out ids
                and free text, and bucket numbers (``"11-50"`` employees), or
                every value will be unique and say nothing.
            scale: As the class.
            top: As the class.

        Returns:
            The trained model.

        Raises:
            TypeError: An example is not a (mapping, bool) pair.
        """
        won = lost = 0
        seen: dict[str, None] = dict.fromkeys(fields or ())
        table: dict[tuple[str, tuple[Any, ...]], list[Any]] = {}
        for i, example in enumerate(examples):
            try:
                attributes, outcome = example
            except (TypeError, ValueError):
                msg = f"examples[{i}] must be an (attributes, won) pair (got {example!r})"
                raise TypeError(msg) from None
            if not isinstance(attributes, Mapping) or not isinstance(outcome, bool):
                msg = f"examples[{i}] must be a (mapping, bool) pair (got {example!r})"
                raise TypeError(msg)
            won += outcome
            lost += not outcome
            for name, value in attributes.items():
                if fields is None:
                    seen.setdefault(name)
                elif name not in seen:
                    continue
                row = table.setdefault((name, value_key(value)), [name, value, 0, 0])
                row[2 if outcome else 3] += 1
        order = {name: i for i, name in enumerate(seen)}
        rows = sorted(table.values(), key=lambda row: order[row[0]])
        return cls(
            won,
            lost,
            tuple(seen),
            tuple(ValueCount(name, value, w, l_) for name, value, w, l_ in rows),
            scale=scale,
            top=top,
        )

    @classmethod
    def from_log(
        cls,
        funnel: Funnel,
        records: Iterable[Record],
        *,
        fields: Sequence[str] | None = None,
        as_of: datetime | str | None = None,
        scale: float = 100.0,
        top: int = 3,
    ) -> PredictiveModel:
        """Train from a log: the won and lost journeys as of a date (see :func:`training_examples`).

        Args:
            funnel: The funnel the log follows.
            records: The log, in log order.
            fields: As :meth:`from_examples`.
            as_of: Learn only from what the log says up to this date.
            scale: As the class.
            top: As the class.

        Returns:
            The trained model.
        """
        return cls.from_examples(
            training_examples(funnel, records, as_of=as_of), fields=fields, scale=scale, top=top
        )

    # ------------------------------------------------------------ predicting

    def predict(self, attributes: Mapping[str, Any]) -> Prediction:
        """The probability that a lead with these attributes is won, with its factors.

        Args:
            attributes: The lead's attributes.

        Returns:
            The prediction.
        """
        log_won = math.log(self.won + SMOOTHING)
        log_lost = math.log(self.lost + SMOOTHING)
        prior = (self.won + SMOOTHING) / (self.won + self.lost + 2 * SMOOTHING)
        found: list[tuple[ValueCount, float]] = []
        unseen: list[str] = []
        for name in self.fields:
            if name not in attributes:
                continue
            count = self._table.get((name, value_key(attributes[name])))
            if count is None:
                unseen.append(name)
                continue
            total_won, total_lost = self._totals[name]
            given_won = math.log((count.won + SMOOTHING) / (total_won + SMOOTHING))
            given_lost = math.log((count.lost + SMOOTHING) / (total_lost + SMOOTHING))
            log_won += given_won
            log_lost += given_lost
            found.append((count, given_won - given_lost))
        probability = _logistic(log_won - log_lost)
        total_weight = math.fsum(weight for _, weight in found)
        if abs(total_weight) > _FLAT:
            share = (probability - prior) / total_weight
        else:  # the factors cancel out: share by the slope at the prior
            share = prior * (1 - prior)
        factors = [
            Factor(c.field, c.value, c.won, c.lost, weight, self.scale * share * weight)
            for c, weight in found
        ]
        factors.sort(key=lambda f: -f.weight)
        return Prediction(probability, prior, tuple(factors), tuple(unseen), self.top)

    def score(self, attributes: Mapping[str, Any]) -> Score:
        """The prediction as a :class:`~buyerjourney.Score` whose breakdown adds up.

        The value is the probability times :attr:`scale`, to 6 decimals; the
        breakdown holds the prior and one item per factor (largest points
        first), rounded so that they add up to the value exactly.

        Args:
            attributes: The lead's attributes.

        Returns:
            The score.
        """
        prediction = self.predict(attributes)
        lines: list[tuple[str, int, str]] = [
            (
                "prior",
                _micro(self.scale * prediction.prior),
                f"{self.won} won, {self.lost} lost in the history",
            )
        ]
        factors = sorted(prediction.factors, key=lambda f: -f.points)
        lines += [
            (
                f.label,
                _micro(f.points),
                f"{f.won} won, {f.lost} lost with it; odds x{f.odds_ratio:.3g}",
            )
            for f in factors
        ]
        residual = _micro(self.scale * prediction.probability) - sum(m for _, m, _ in lines)
        if residual:  # rounding: give it to the largest item
            i = max(range(len(lines)), key=lambda j: abs(lines[j][1]))
            rule, micro, detail = lines[i]
            lines[i] = (rule, micro + residual, detail)
        return Score.from_breakdown(ScoreItem(r, m / _SCALE, d) for r, m, d in lines)

    def __call__(self, lead: Lead, at: datetime) -> Score:
        """Score *lead* from its attributes (the scorer protocol; *at* does not matter).

        Args:
            lead: The lead; only its attributes are used.
            at: The scoring time.

        Returns:
            The score, as :meth:`score`.
        """
        return self.score(lead.attributes)

    # ------------------------------------------------------------ storing

    def to_dict(self) -> dict[str, Any]:
        """The model as a JSON-ready dict (read it back with :meth:`from_dict`)."""
        return {
            "won": self.won,
            "lost": self.lost,
            "fields": list(self.fields),
            "counts": [c.to_dict() for c in self.counts],
            "scale": self.scale,
            "top": self.top,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PredictiveModel:
        """Rebuild a model from :meth:`to_dict` output.

        Raises:
            KeyError: A required key is missing.
            ValueError: The counts do not fit together.
        """
        return cls(
            data["won"],
            data["lost"],
            tuple(data["fields"]),
            tuple(ValueCount(c["field"], c["value"], c["won"], c["lost"]) for c in data["counts"]),
            scale=data.get("scale", 100.0),
            top=data.get("top", 3),
        )


def _logistic(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    z = math.exp(x)
    return z / (1 + z)


def _micro(value: float) -> int:
    return round(value * _SCALE)


def training_examples(
    funnel: Funnel, records: Iterable[Record], *, as_of: datetime | str | None = None
) -> tuple[tuple[Mapping[str, Any], bool], ...]:
    """The won and lost leads of a log, as ``(attributes, won)`` pairs.

    The log is folded into journeys (:func:`~buyerjourney.rebuild`) up to
    *as_of*. A journey is **won** when it ever entered a won or
    after-purchase stage (a churned customer was still won), **lost** when it
    never was and now sits in a lost or disqualified stage; journeys still
    open are left out. The attributes are the lead's profile as of the date.

    Args:
        funnel: The funnel the log follows.
        records: The log, in log order.
        as_of: Ignore records dated after it (``None``: the whole log).

    Returns:
        One pair per won or lost journey, in order of first appearance.

    Raises:
        CorruptLog: The log cannot be folded into journeys.
    """
    end = optional_time(as_of, "as_of")
    kept = [r for r in records if end is None or r.at <= end]
    examples: list[tuple[Mapping[str, Any], bool]] = []
    for journey in rebuild(funnel, kept).values():
        won = any(
            name in funnel and funnel.stage(name).kind in _WON_KINDS for name in journey.stages
        )
        if won:
            examples.append((journey.attributes, True))
        elif journey.stage in funnel and funnel.stage(journey.stage).kind.is_exit:
            examples.append((journey.attributes, False))
    return tuple(examples)
