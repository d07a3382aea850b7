"""Business-hours SLAs: the working calendar's arithmetic."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import WorkingCalendar

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def test_a_deadline_skips_nights_weekends_and_holidays() -> None:
    cal = WorkingCalendar("UTC", holidays=[date(2024, 3, 11)])
    friday_4pm = datetime(2024, 3, 8, 16, 0, tzinfo=UTC)
    # 1 h on Friday, Monday is a holiday, 7 h on Tuesday
    assert cal.add(friday_4pm, timedelta(hours=8)) == datetime(2024, 3, 12, 16, 0, tzinfo=UTC)
    # 72 business hours from Monday 9:00 are nine working days
    monday = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
    assert WorkingCalendar().add(monday, timedelta(hours=72)) == datetime(
        2024, 3, 14, 17, 0, tzinfo=UTC
    )


def test_hours_are_local_and_follow_daylight_saving() -> None:
    cal = WorkingCalendar("Europe/Berlin", start=time(9), end=time(17))
    # Friday before the spring change (CET, UTC+1) at 16:00 local
    friday = datetime(2024, 3, 29, 16, 0, tzinfo=BERLIN)
    deadline = cal.add(friday, timedelta(hours=2))
    # one hour on Friday, one on Monday (CEST, UTC+2): 10:00 local is 08:00 UTC
    assert deadline == datetime(2024, 4, 1, 8, 0, tzinfo=UTC)
    assert deadline.astimezone(BERLIN).hour == 10


def test_a_time_before_opening_starts_at_opening() -> None:
    cal = WorkingCalendar()
    early = datetime(2024, 3, 4, 6, 30, tzinfo=UTC)
    assert cal.add(early, timedelta(minutes=30)) == datetime(2024, 3, 4, 9, 30, tzinfo=UTC)
    assert cal.add(early, timedelta(0)) == early


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"timezone": "Mars/Olympus"}, ValueError, "no known time zone"),
        ({"days": []}, ValueError, "at least one"),
        ({"days": [7]}, ValueError, "0 (Monday) to 6"),
        ({"start": time(17), "end": time(9)}, ValueError, "after 'start'"),
        ({"holidays": ["2024-01-01"]}, TypeError, "must be dates"),
    ],
)
def test_bad_calendars_say_what_is_wrong(
    kwargs: dict[str, object], error: type, words: str
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        WorkingCalendar(**kwargs)  # type: ignore[arg-type]


calendars = st.builds(
    WorkingCalendar,
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    days=st.lists(st.integers(0, 6), min_size=1, max_size=7),
    start=st.sampled_from([time(0), time(8), time(9, 30)]),
    end=st.sampled_from([time(12), time(17), time(23, 59)]),
    holidays=st.lists(st.dates(date(2024, 1, 1), date(2024, 12, 31)), max_size=5),
)
moments = st.datetimes(datetime(2024, 1, 1), datetime(2024, 12, 31), timezones=st.just(UTC))
durations = st.integers(0, 200 * 3600).map(lambda s: timedelta(seconds=s))


@given(calendars, moments, durations)
def test_the_working_time_up_to_a_deadline_is_the_duration(
    cal: WorkingCalendar, at: datetime, duration: timedelta
) -> None:
    deadline = cal.add(at, duration)
    assert deadline >= at
    assert cal.working_time(at, deadline) == duration


@given(calendars, moments, durations, durations)
def test_deadlines_grow_with_the_duration(
    cal: WorkingCalendar, at: datetime, a: timedelta, b: timedelta
) -> None:
    low, high = sorted((a, b))
    assert cal.add(at, low) <= cal.add(at, high)
