"""Small statistics shared by the reports: distributions of durations, rates, time parsing.

Percentiles interpolate linearly between the two nearest ranks (the method
NumPy and most spreadsheets use by default), so the median of an even count
is the mean of the two middle values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import attrs

from buyerjourney._core._values import thaw
from buyerjourney._core.records import parse_time

__all__ = [
    "BUCKETS",
    "Durations",
    "format_duration",
    "format_rate",
    "iso",
    "optional_time",
    "rate",
    "seconds",
    "value_key",
]

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)

BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("< 1h", _HOUR),
    ("1h-1d", _DAY),
    ("1d-3d", 3 * _DAY),
    ("3d-7d", 7 * _DAY),
    ("7d-30d", 30 * _DAY),
    ("30d-90d", 90 * _DAY),
    (">= 90d", None),
)
"""The histogram buckets of :meth:`Durations.histogram`: a label and the (exclusive) upper
bound of each, the last one open-ended."""


def _sorted_deltas(values: Iterable[timedelta]) -> tuple[timedelta, ...]:
    items = tuple(values)
    for item in items:
        if not isinstance(item, timedelta):
            msg = f"durations must be datetime.timedelta values (got {item!r})"
            raise TypeError(msg)
    return tuple(sorted(items))


@attrs.frozen
class Durations:
    """A distribution of durations (time to convert, time in stage ...).

    Report the median and percentiles, never the mean: a few leads that sit
    for months would drag a mean far from what a typical lead sees.

    Args:
        values: The durations, in any order; they are kept sorted.
    """

    values: tuple[timedelta, ...] = attrs.field(default=(), converter=_sorted_deltas)

    @property
    def count(self) -> int:
        """How many durations there are."""
        return len(self.values)

    @property
    def median(self) -> timedelta | None:
        """The median (``None`` when there are no values)."""
        return self.percentile(0.5)

    @property
    def p90(self) -> timedelta | None:
        """The 90th percentile (``None`` when there are no values)."""
        return self.percentile(0.9)

    def percentile(self, q: float) -> timedelta | None:
        """The *q*-quantile, interpolated linearly between the nearest ranks.

        Args:
            q: A fraction between 0 and 1 (0.5 is the median).

        Returns:
            The quantile, or ``None`` when there are no values.

        Raises:
            ValueError: *q* is not between 0 and 1.
        """
        if not 0 <= q <= 1:
            msg = f"'q' must be between 0 and 1 (got {q!r})"
            raise ValueError(msg)
        if not self.values:
            return None
        position = (len(self.values) - 1) * q
        low = int(position)
        fraction = position - low
        if fraction == 0 or low + 1 >= len(self.values):
            return self.values[low]
        return self.values[low] + (self.values[low + 1] - self.values[low]) * fraction

    def histogram(self) -> tuple[tuple[str, int], ...]:
        """How many durations fall in each of :data:`BUCKETS`, as ``(label, count)`` pairs."""
        counts = [0] * len(BUCKETS)
        for value in self.values:
            for i, (_, upper) in enumerate(BUCKETS):
                if upper is None or value < upper:
                    counts[i] += 1
                    break
        return tuple((label, n) for (label, _), n in zip(BUCKETS, counts, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The distribution as a JSON-ready dict (durations in seconds)."""
        return {
            "count": self.count,
            "median_seconds": seconds(self.median),
            "p90_seconds": seconds(self.p90),
            "p25_seconds": seconds(self.percentile(0.25)),
            "p75_seconds": seconds(self.percentile(0.75)),
            "min_seconds": seconds(self.values[0] if self.values else None),
            "max_seconds": seconds(self.values[-1] if self.values else None),
            "histogram": [{"bucket": label, "count": n} for label, n in self.histogram()],
        }

    def summary(self) -> str:
        """One line: count, median and 90th percentile (``"-"`` when empty)."""
        if not self.values:
            return "-"
        return (
            f"median {format_duration(self.median)}, p90 {format_duration(self.p90)} "
            f"(n={self.count})"
        )


def seconds(value: timedelta | None) -> float | None:
    """*value* in seconds, or ``None``."""
    return None if value is None else value.total_seconds()


def format_duration(value: timedelta | None) -> str:
    """A duration as the reports print it: minutes, hours or days, one decimal."""
    if value is None:
        return "-"
    total = value.total_seconds()
    if abs(total) < 3600:
        return f"{total / 60:.1f}m"
    hours = total / 3600
    return f"{hours / 24:.1f}d" if abs(hours) >= 48 else f"{hours:.1f}h"


def format_rate(value: float | None) -> str:
    """A rate as a percentage with one decimal (``"-"`` when undefined)."""
    return "-" if value is None else f"{value:.1%}"


def rate(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or ``None`` when the denominator is zero."""
    return numerator / denominator if denominator else None


def optional_time(value: datetime | str | None, field: str) -> datetime | None:
    """*value* as an aware UTC datetime, or ``None``.

    Raises:
        InvalidTouch: The value is naive, malformed or of another type.
    """
    return None if value is None else parse_time(value, field=field)


def iso(value: datetime | None) -> str | None:
    """*value* in ISO format, or ``None``."""
    return None if value is None else value.isoformat()


def value_key(value: Any) -> tuple[Any, ...]:
    """A hashable key that tells attribute values apart (``True`` is not ``1``).

    Unhashable values (a frozen mapping) are keyed by the text of their plain form.
    """
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(thaw(value)))
    return ("value", type(value) is bool, value)
