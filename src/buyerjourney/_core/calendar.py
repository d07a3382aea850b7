"""Business hours: when an SLA's clock runs.

SLAs are usually written in business hours ("sales accepts within 8 working
hours", DOMAIN's "72 business hours"): the clock runs only on working days,
between the start and the end of the working day, in the team's time zone,
and not on holidays. A :class:`WorkingCalendar` says when that is;
:meth:`WorkingCalendar.add` finds the deadline and
:meth:`WorkingCalendar.working_time` measures what has elapsed. Days are
taken in the calendar's own time zone, so a daylight-saving change moves the
working day with the wall clock, as people expect.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

__all__ = ["WEEKDAYS", "WorkingCalendar"]

WEEKDAYS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""Monday to Friday, as :meth:`datetime.date.weekday` numbers them."""

_DAY = timedelta(days=1)


def _check_zone(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value:
        msg = f"'{attribute.name}' must be a time zone name like 'Europe/Berlin' (got {value!r})"
        raise TypeError(msg)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        msg = (
            f"'{attribute.name}' names no known time zone (got {value!r}); use e.g. 'Europe/Berlin'"
        )
        raise ValueError(msg) from None


def _as_days(value: Iterable[int]) -> tuple[int, ...]:
    days = tuple(sorted(set(value)))
    if not days or any(
        isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days
    ):
        msg = (
            f"'days' must be weekday numbers 0 (Monday) to 6 (Sunday), at least one (got {value!r})"
        )
        raise ValueError(msg)
    return days


def _as_holidays(value: Iterable[date]) -> frozenset[date]:
    holidays = frozenset(value)
    bad = [d for d in holidays if not isinstance(d, date) or isinstance(d, datetime)]
    if bad:
        msg = f"'holidays' must be dates (got {bad[0]!r} that is a {type(bad[0]).__name__})"
        raise TypeError(msg)
    return holidays


def _check_time(_: object, attribute: attrs.Attribute[time], value: object) -> None:
    if not isinstance(value, time) or value.tzinfo is not None:
        msg = f"'{attribute.name}' must be a naive datetime.time such as time(9) (got {value!r})"
        raise TypeError(msg)


@attrs.frozen
class WorkingCalendar:
    """The working days and hours of a team, in its time zone, minus holidays.

    Args:
        timezone: The IANA time zone the hours are in (``"Europe/Berlin"``).
        days: The working weekdays, 0 (Monday) to 6 (Sunday); Monday to Friday by default.
        start: When the working day starts (local time).
        end: When it ends (local time); after *start*.
        holidays: Dates (local) on which nobody works.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: An unknown time zone, no working day, or *end* not after *start*.
    """

    timezone: str = attrs.field(default="UTC", validator=_check_zone)
    days: tuple[int, ...] = attrs.field(default=WEEKDAYS, converter=_as_days)
    start: time = attrs.field(default=time(9), validator=_check_time)
    end: time = attrs.field(default=time(17), validator=_check_time)
    holidays: frozenset[date] = attrs.field(factory=frozenset, converter=_as_holidays)

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            msg = f"'end' must be after 'start' (got {self.start} to {self.end})"
            raise ValueError(msg)

    def _window(self, day: date) -> tuple[datetime, datetime] | None:
        """The working hours of local *day* in UTC, or ``None`` on a day off."""
        if day.weekday() not in self.days or day in self.holidays:
            return None
        zone = ZoneInfo(self.timezone)
        opens = datetime.combine(day, self.start, tzinfo=zone).astimezone(timezone.utc)
        closes = datetime.combine(day, self.end, tzinfo=zone).astimezone(timezone.utc)
        return opens, closes

    def _first_day(self, at: datetime) -> date:
        return at.astimezone(ZoneInfo(self.timezone)).date()

    def add(self, at: datetime, duration: timedelta) -> datetime:
        """The moment *duration* of working time after *at* (in UTC).

        A zero duration gives *at* itself. Time outside working hours does not
        count, so a deadline never falls on a day off.

        Raises:
            ValueError: *duration* is negative.
            OverflowError: The deadline would fall after the year 9999.
        """
        if duration < timedelta(0):
            msg = f"'duration' must not be negative (got {duration})"
            raise ValueError(msg)
        at = at.astimezone(timezone.utc)
        if duration == timedelta(0):
            return at
        remaining = duration
        day = self._first_day(at)
        while True:
            window = self._window(day)
            if window is not None and at < window[1]:
                begin = max(at, window[0])
                available = window[1] - begin
                if remaining <= available:
                    return begin + remaining
                remaining -= available
            day += _DAY

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        """How much working time lies between *start* and *end* (zero if *end* is not later)."""
        start = start.astimezone(timezone.utc)
        end = end.astimezone(timezone.utc)
        total = timedelta(0)
        day = self._first_day(start)
        last = self._first_day(end)
        while day <= last:
            window = self._window(day)
            if window is not None:
                begin, finish = max(start, window[0]), min(end, window[1])
                if finish > begin:
                    total += finish - begin
            day += _DAY
        return total
