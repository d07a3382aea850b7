"""Acceptance SLAs and business-hours calendars in funnel files."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from buyerjourney import (
    Funnel,
    FunnelFormatError,
    Stage,
    Transition,
    WorkingCalendar,
    dumps_funnel,
    loads_funnel,
)

BERLIN = WorkingCalendar("Europe/Berlin")


def _funnel() -> Funnel:
    return Funnel(
        "gated",
        [
            Stage("mql", 10, owner="marketing", initial=True),
            Stage(
                "sal",
                20,
                owner="sales",
                gate=True,
                sla=timedelta(hours=72),
                sla_calendar=BERLIN,
                accept_sla=timedelta(hours=8),
                accept_calendar=WorkingCalendar(
                    "Europe/Berlin",
                    days=[0, 1, 2, 3],
                    start=time(8),
                    end=time(16, 30),
                    holidays=[date(2024, 12, 25)],
                ),
            ),
            Stage("won", 30, kind="won", owner="sales", terminal=True),
        ],
        [
            Transition("hand_off", "mql", "sal"),
            Transition("recycle", "sal", "mql", direction="backward"),
            Transition("win", "sal", "won"),
        ],
    )


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_slas_and_calendars_round_trip(fmt: str) -> None:
    funnel = _funnel()
    text = dumps_funnel(funnel, format=fmt)  # type: ignore[arg-type]
    assert loads_funnel(text, format=fmt) == funnel  # type: ignore[arg-type]


def test_a_calendar_is_read_from_toml_with_times_and_dates() -> None:
    text = """
format = "buyerjourney.funnel/1"
name = "g"

[[stages]]
name = "mql"
rank = 10
owner = "marketing"
initial = true

[[stages]]
name = "sal"
rank = 20
owner = "sales"
gate = true
accept_sla = "PT8H"


[stages.accept_calendar]
timezone = "America/New_York"
start = 08:30:00
end = "17:00"
holidays = [2024-07-04]

[[stages]]
name = "won"
rank = 30
kind = "won"
owner = "sales"
terminal = true

[[transitions]]
event = "hand_off"
source = "mql"
target = "sal"

[[transitions]]
event = "recycle"
source = "sal"
target = "mql"
direction = "backward"

[[transitions]]
event = "win"
source = "sal"
target = "won"
"""
    calendar = loads_funnel(text, format="toml").stage("sal").accept_calendar
    assert calendar == WorkingCalendar(
        "America/New_York", start=time(8, 30), end=time(17), holidays=[date(2024, 7, 4)]
    )


def test_bad_calendars_are_listed_with_where_and_what() -> None:
    text = dumps_funnel(_funnel(), format="toml")
    text = text.replace('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"', 1)
    text = text.replace("days = [", "days = [9, ", 1)
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format="toml")
    message = str(info.value)
    assert "stages[1].sla_calendar.days: must be an array of weekday numbers" in message
    assert "stages[1].sla_calendar: 'timezone' names no known time zone" in message
