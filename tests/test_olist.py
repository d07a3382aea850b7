"""The real Olist funnel, loaded through the readers (skipped when the data set is absent).

Every figure is checked against an independent computation with the csv
module, here in the test.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from buyerjourney._core.records import Action, RecordKind, Touch
from buyerjourney._report import summarize
from buyerjourney.readers import Rejected

EXAMPLE = Path(__file__).parents[1] / "examples" / "olist.py"
MQL_FILE = "olist_marketing_qualified_leads_dataset.csv"
DEALS_FILE = "olist_closed_deals_dataset.csv"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("olist_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


class Expected:
    """The independent figures, from the csv module."""

    def __init__(self, folder: Path) -> None:
        self.mqls = _rows(folder / MQL_FILE)
        self.deals = _rows(folder / DEALS_FILE)
        self.first = {
            row["mql_id"]: datetime.strptime(row["first_contact_date"], "%d-%m-%Y").replace(
                tzinfo=timezone.utc
            )
            for row in self.mqls
        }
        self.won = {
            row["mql_id"]: datetime.strptime(row["won_date"], "%d-%m-%Y %H:%M").replace(
                tzinfo=timezone.utc
            )
            for row in self.deals
        }
        self.early = {lead for lead, at in self.won.items() if at < self.first[lead]}
        origin = {row["mql_id"]: row["origin"] or None for row in self.mqls}
        leads = Counter(origin.values())
        won = Counter(origin[lead] for lead in self.won)
        self.by_origin = {key: (leads[key], won[key]) for key in leads}


@pytest.fixture(scope="module")
def replayed(olist_dir: Path) -> tuple[Any, Any, Expected]:
    engine, run = load_example().replay_olist(olist_dir)
    return engine, run, Expected(olist_dir)


def test_every_mql_and_every_deal_is_counted(replayed: tuple[Any, Any, Expected]) -> None:
    engine, run, expected = replayed
    assert len(expected.mqls) == 8000
    assert len(expected.deals) == 842
    assert run.rejected == ()
    assert run.refused == ()
    assert run.touches == len(expected.mqls) + len(expected.deals)
    assert run.actions == len(expected.deals)
    rows = {row.stage: row for row in summarize(engine.funnel, engine.records).stages}
    assert rows["mql"].reached == len(expected.mqls)
    assert rows["won"].reached == len(expected.deals)
    won = {lead for lead, journey in engine.journeys.items() if journey.stage == "won"}
    assert won == set(expected.won)
    assert not [r for r in engine.records if r.kind is RecordKind.REFUSED]
    assert engine.rebuild() == dict(engine.journeys)


def test_the_deal_won_before_its_first_contact_is_kept_and_flagged(
    replayed: tuple[Any, Any, Expected],
) -> None:
    engine, run, expected = replayed
    assert len(expected.early) == 1
    (lead,) = expected.early
    assert run.flagged == (lead,)
    journey = engine.journeys[lead]
    assert journey.stage == "won"
    assert journey.attributes["won_before_first_contact"] is True
    override = [r for r in engine.records if r.lead_id == lead and r.kind is RecordKind.OVERRIDE]
    assert len(override) == 1
    assert "won before the first contact" in override[0].reason
    assert override[0].at == expected.first[lead]
    others = [engine.journeys[other] for other in expected.won if other != lead]
    assert all(j.attributes["won_before_first_contact"] is False for j in others)


def test_the_empty_origin_is_its_own_group(replayed: tuple[Any, Any, Expected]) -> None:
    engine, _, expected = replayed
    by_origin = load_example().conversion_by_origin(engine)
    assert by_origin == expected.by_origin
    assert by_origin[None][0] == 60
    assert by_origin[None] != by_origin["unknown"]
    assert "" not in by_origin


def test_deal_properties_become_lead_attributes(replayed: tuple[Any, Any, Expected]) -> None:
    engine, _, expected = replayed
    for row in expected.deals:
        attributes = engine.journeys[row["mql_id"]].attributes
        assert attributes["lead_type"] == (row["lead_type"] or None)
        assert attributes["business_segment"] == (row["business_segment"] or None)
        assert attributes["business_type"] == (row["business_type"] or None)
        revenue = row["declared_monthly_revenue"]
        assert attributes["declared_monthly_revenue"] == (float(revenue) if revenue else None)
        company = {"TRUE": True, "FALSE": False, "": None}[row["has_company"]]
        assert attributes["has_company"] is company


def test_reading_the_files_again_gives_the_same_ids(olist_dir: Path) -> None:
    example = load_example()

    def ids() -> list[str | None]:
        out: list[str | None] = []
        for _, item in example.olist_items(olist_dir):
            assert not isinstance(item, Rejected)
            out.append(item.touch_id if isinstance(item, Touch) else item.action_id)
        return out

    first, second = ids(), ids()
    assert first == second
    assert None not in first
    assert len(set(first)) == len(first)


def test_the_stream_is_in_time_order(olist_dir: Path) -> None:
    items = [item for _, item in load_example().olist_items(olist_dir)]
    times = [item.at for item in items if isinstance(item, (Touch, Action))]
    assert times == sorted(times)
