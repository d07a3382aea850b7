"""The figures of docs/olist.md, checked against an independent computation with the csv module.

The page is run here as the docs test runs it (its blocks in order, in one
namespace, in a temporary directory), with its output captured; every figure
it prints is parsed back and compared with what the csv module computes from
the two files, and the page's report objects are compared exactly. The docs
test checks separately that what the page shows is what it prints. Skipped
when the data set is absent (the ``olist_dir`` fixture).
"""

from __future__ import annotations

import contextlib
import csv
import doctest
import io
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import OLIST_ENV_VAR
from test_docs import PYCON_INFO, runnable_blocks

PAGE = Path(__file__).resolve().parents[1] / "docs" / "olist.md"
MQL_FILE = "olist_marketing_qualified_leads_dataset.csv"
DEALS_FILE = "olist_closed_deals_dataset.csv"
SPLIT = datetime(2018, 3, 1, tzinfo=timezone.utc)  # the page's train/test split


# ---------------------------------------------------------------- independent figures


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _quantile(values: list[timedelta], q: float) -> timedelta:
    """Linear interpolation between the nearest ranks, as DOMAIN.md asks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _label(value: str | None) -> str:
    return "(missing)" if value is None else value


class Expected:
    """The figures the page should print, from the csv module alone."""

    def __init__(self, folder: Path) -> None:
        mqls = _rows(folder / MQL_FILE)
        deals = _rows(folder / DEALS_FILE)
        self.mqls = len(mqls)
        self.deals = len(deals)
        first = {
            row["mql_id"]: datetime.strptime(row["first_contact_date"], "%d-%m-%Y").replace(
                tzinfo=timezone.utc
            )
            for row in mqls
        }
        won = {
            row["mql_id"]: datetime.strptime(row["won_date"], "%d-%m-%Y %H:%M").replace(
                tzinfo=timezone.utc
            )
            for row in deals
        }
        self.early = sorted(lead for lead, at in won.items() if at < first[lead])
        # the early deal is dated at its lead's first contact: 0 days
        to_won = [max(at - first[lead], timedelta(0)) for lead, at in won.items()]
        self.median = _quantile(to_won, 0.5)
        self.p90 = _quantile(to_won, 0.9)
        origin = {row["mql_id"]: row["origin"] or None for row in mqls}
        leads = Counter(origin.values())
        won_by = Counter(origin[lead] for lead in won)
        self.by_origin = {key: (leads[key], won_by[key]) for key in leads}
        self.lead_types = Counter(row["lead_type"] or None for row in deals)
        self.segments = Counter(row["business_segment"] or None for row in deals)
        self.won = set(won)
        self.later = {lead for lead, at in first.items() if at >= SPLIT}
        self.test_leads = len(self.later)
        self.test_won = len(self.later & self.won)


# ---------------------------------------------------------------- the page, run


def run_page(folder: Path, workdir: Path) -> tuple[dict[str, Any], str]:
    """Run the page's blocks in order in one namespace; return it and everything printed."""
    namespace: dict[str, Any] = {"__file__": str(PAGE), "__name__": "olist_page"}
    out = io.StringIO()
    parser = doctest.DocTestParser()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv(OLIST_ENV_VAR, str(folder))
        patch.chdir(workdir)
        for block in runnable_blocks(PAGE):
            if block.info == PYCON_INFO:  # each example as the prompt runs it, echoing its value
                codes = [
                    compile(example.source, str(PAGE), "single")
                    for example in parser.get_examples(block.source)
                ]
            else:
                codes = [compile(block.source, str(PAGE), "exec")]
            for code in codes:
                exec(code, namespace)
    return namespace, out.getvalue()


@pytest.fixture(scope="module")
def page(
    olist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], str, Expected]:
    namespace, printed = run_page(olist_dir, tmp_path_factory.mktemp("olist-page"))
    return namespace, printed, Expected(olist_dir)


def _table(printed: str, header: str, row: str) -> dict[str, tuple[str, ...]]:
    """The rows printed under the line matching *header*, up to a line not matching *row*."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(header, line.strip()))
    found: dict[str, tuple[str, ...]] = {}
    for line in lines[start + 1 :]:
        match = re.fullmatch(row, line.strip())
        if match is None:
            break
        found[match[1]] = match.groups()[1:]
    return found


def _percent(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.1%}"


# ---------------------------------------------------------------- the checks


def test_the_page_counts_every_mql_and_every_deal(
    page: tuple[dict[str, Any], str, Expected],
) -> None:
    namespace, printed, expected = page
    assert (expected.mqls, expected.deals) == (8000, 842)
    assert (
        f"{expected.mqls} leads and {expected.deals} deals read: "
        f"{expected.mqls + expected.deals} touches, {expected.deals} overrides, 0 refused, "
        "0 quarantined"
    ) in printed
    assert len(namespace["engine"].journeys) == expected.mqls
    assert len(namespace["won"]) == expected.deals


def test_the_page_keeps_and_flags_the_early_deal(
    page: tuple[dict[str, Any], str, Expected],
) -> None:
    namespace, printed, expected = page
    assert len(expected.early) == 1
    assert namespace["flagged"] == expected.early
    assert f"flagged: lead {expected.early[0]}" in printed
    assert "won before the first contact, dated at it" in printed


def test_overall_conversion_and_days_to_won(page: tuple[dict[str, Any], str, Expected]) -> None:
    namespace, printed, expected = page
    report = namespace["report"]
    assert report.overall_conversion == expected.deals / expected.mqls
    to_won = namespace["to_won"]
    assert to_won.count == expected.deals
    assert abs(to_won.median - expected.median) < timedelta(milliseconds=1)
    assert abs(to_won.p90 - expected.p90) < timedelta(milliseconds=1)
    day = timedelta(days=1)
    assert (
        f"MQL to won: {_percent(expected.deals, expected.mqls)}; first contact to won: "
        f"median {expected.median / day:.1f} days, p90 {expected.p90 / day:.1f} days "
        f"(n={expected.deals})"
    ) in printed
    steps = _table(printed, r"step\s+entered.*", r"(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+.*")
    assert steps["mql"][0] == str(expected.mqls)
    assert steps["mql"][1:] == (str(expected.deals), str(expected.mqls - expected.deals))
    assert steps["won"][0] == str(expected.deals)


def test_conversion_by_origin_every_group(page: tuple[dict[str, Any], str, Expected]) -> None:
    namespace, printed, expected = page
    groups = {
        group.value: (group.report.leads, group.report.step("won").entered)
        for group in namespace["by_origin"].groups
    }
    assert groups == expected.by_origin
    assert expected.by_origin[None][0] == 60
    rows = _table(printed, r"value\s+mql\s+won\s+overall", r"(\S+)\s+(\d+)\s+(\d+)\s+([\d.]+%)")
    wanted = {
        _label(origin): (str(leads), str(won), _percent(won, leads))
        for origin, (leads, won) in expected.by_origin.items()
    }
    wanted["(all)"] = (str(expected.mqls), str(expected.deals), _percent(expected.deals, 8000))
    assert rows == wanted


def test_deals_by_lead_type_and_segment(page: tuple[dict[str, Any], str, Expected]) -> None:
    namespace, printed, expected = page
    for frame, counts in (
        (namespace["lead_types"], expected.lead_types),
        (namespace["segments"], expected.segments),
    ):
        attribute = frame.columns[0]
        assert dict(zip(frame[attribute], frame.deals, strict=True)) == {
            _label(value): n for value, n in counts.items()
        }
    lead_types = _table(printed, r"lead_type\s+deals\s+share", r"(\S+)\s+(\d+)\s+([\d.]+%)")
    assert lead_types == {
        _label(value): (str(n), _percent(n, expected.deals))
        for value, n in expected.lead_types.items()
    }
    segments = _table(printed, r"business_segment\s+deals\s+share", r"(\S+)\s+(\d+)\s+([\d.]+%)")
    top = sorted(expected.segments.items(), key=lambda kv: (-kv[1], _label(kv[0])))[:8]
    assert segments == {_label(value): (str(n), _percent(n, expected.deals)) for value, n in top}
    assert f"\n{len(expected.segments)}\n" in printed  # len(segments)


def test_the_backtest_counts_the_later_leads(page: tuple[dict[str, Any], str, Expected]) -> None:
    namespace, printed, expected = page
    result = namespace["result"]
    assert (result.leads, result.won) == (expected.test_leads, expected.test_won)
    everyone = result.candidate("origin>=0%")
    assert everyone.precision == expected.test_won / expected.test_leads
    assert f"{expected.test_leads} leads, {expected.test_won} won" in printed
    rows = _table(
        printed,
        r"candidate\s+handed.*",
        r"[* ]?(\S+)\s+(\d+)\s+(\d+)\s+([\d.]+%)\s+([\d.]+%)\s+.*",
    )
    assert rows["origin>=0%"] == (
        str(expected.test_leads),
        str(expected.test_won),
        _percent(expected.test_won, expected.test_leads),
        "100.0%",
    )
    for name, (handed, won_handed, precision, recall) in rows.items():
        candidate = result.candidate(name)
        assert (int(handed), int(won_handed)) == (candidate.handed_off, candidate.won_handed_off)
        assert precision == _percent(candidate.won_handed_off, candidate.handed_off)
        assert recall == _percent(candidate.won_handed_off, expected.test_won)
        handed_off = set(candidate.handoffs)
        assert len(handed_off) == candidate.handed_off
        assert handed_off <= expected.later
        assert len(handed_off & expected.won) == candidate.won_handed_off
    assert len(rows) == len(result.candidates) == 6
