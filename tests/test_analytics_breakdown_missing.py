"""Regression: a breakdown value recorded as ``None`` is the missing group, not a value "None".

A lead whose property was recorded as ``None`` has no value for it, exactly
like a lead that never had the property: both are counted in the one
missing group (labelled ``(missing)``), never in a group of their own and
never merged into a real value. A recorded ``None`` counts as not recorded,
so first-touch attribution takes the first real value and last-touch the
latest real value.
"""

from __future__ import annotations

from buyerjourney.analytics import funnel_breakdown
from test_analytics_helpers import Log, trial_funnel

PATH = ("awareness", "consideration", "conversion")


def test_a_value_recorded_as_none_is_in_the_missing_group() -> None:
    log = Log(trial_funnel()).create("x", 0, {"segment": None}).create("y", 1)
    log.create("z", 2, {"segment": "smb"})
    result = funnel_breakdown(log.funnel, log.records, "segment", path=PATH)
    assert [(g.label, g.value, g.missing, g.report.leads) for g in result.groups] == [
        ("smb", "smb", False, 1),
        ("(missing)", None, True, 2),  # x (recorded None) and y (never had it), together
    ]
    assert "None" not in result.format().splitlines()[3:]
    assert result.group(None) is result.group(missing=True)  # None is no value
    assert result.to_dict()["groups"][-1] == {
        "value": None,
        "missing": True,
        "report": result.group(missing=True).report.to_dict(),
    }


def test_a_none_is_not_recorded_first_and_last_touch_take_the_real_values() -> None:
    log = Log(trial_funnel()).create("x", 0, {"segment": None})
    log.learn("x", 1, {"segment": "smb"}).learn("x", 2, {"segment": None})
    for attribution in ("first", "last"):
        result = funnel_breakdown(
            log.funnel,
            log.records,
            "segment",
            path=PATH,
            attribution=attribution,  # type: ignore[arg-type]
        )
        assert [(g.label, g.missing) for g in result.groups] == [("smb", False)], attribution


def test_none_and_a_real_value_spelled_none_stay_apart() -> None:
    log = Log(trial_funnel()).create("x", 0, {"segment": None}).create("y", 1, {"segment": "None"})
    result = funnel_breakdown(log.funnel, log.records, "segment", path=PATH)
    assert [(g.value, g.missing) for g in result.groups] == [("None", False), (None, True)]
