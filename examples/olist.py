"""Replay the public Olist marketing funnel through the B2B demand waterfall.

The Olist data set (8,000 marketing qualified leads, 842 closed deals; CC
BY-NC-SA 4.0, by Olist) is not shipped with buyerjourney. Point this script at
the folder holding its two CSV files::

    python examples/olist.py path/to/olist-marketing-funnel

How the data maps onto a journey: the first contact date is when the lead
became an MQL (a ``qualify`` event touch, owned by marketing); a closed deal
means marketing handed the lead off, its sales development rep (``sdr_id``)
accepted and qualified it, and its sales rep (``sr_id``) opened the
opportunity and won it on ``won_date``. The data set has no dates for the
steps in between, so they are spread evenly between the two dates. One deal
is won *before* its first contact: its actions come before the lead exists,
so they are refused (and recorded as refused); its journey stays an MQL.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from buyerjourney import Action, Actor, Engine, Touch, presets
from buyerjourney._pipeline import RunResult, default_pipeline, run
from buyerjourney._report import format_summary, summarize

MQL_FILE = "olist_marketing_qualified_leads_dataset.csv"
DEALS_FILE = "olist_closed_deals_dataset.csv"
MARKETING_OPS = Actor("marketing_ops", "marketing")


def _day(text: str) -> datetime:
    return datetime.strptime(text, "%d-%m-%Y").replace(tzinfo=timezone.utc)


def _minute(text: str) -> datetime:
    return datetime.strptime(text, "%d-%m-%Y %H:%M").replace(tzinfo=timezone.utc)


def olist_stream(folder: Path) -> Iterator[tuple[int, Touch | Action]]:
    """The Olist funnel as a time-ordered stream of touches and actions."""
    with (folder / DEALS_FILE).open(encoding="utf-8") as handle:
        deals = {row["mql_id"]: row for row in csv.DictReader(handle)}
    items: list[Touch | Action] = []
    with (folder / MQL_FILE).open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            lead, first = row["mql_id"], _day(row["first_contact_date"])
            attributes = {
                "origin": row["origin"] or "unknown",
                "landing_page": row["landing_page_id"],
            }
            items.append(Touch(f"{lead}-mql", lead, first, "qualify", {}, attributes))
            deal = deals.get(lead)
            if deal is None:
                continue
            sdr, sr = Actor(deal["sdr_id"], "sales"), Actor(deal["sr_id"], "sales")
            won = _minute(deal["won_date"])
            step = (won - first) / 5
            items += [
                Action("send", lead, first + step, MARKETING_OPS, event="hand_off"),
                Action("accept", lead, first + 2 * step, sdr),
                Action("send", lead, first + 3 * step, sdr, event="qualify_sales"),
                Action("send", lead, first + 4 * step, sr, event="open_opportunity"),
                Action("send", lead, won, sr, event="win"),
            ]
    items.sort(key=lambda item: item.at)
    yield from enumerate(items, start=1)


def replay_olist(folder: Path) -> tuple[Engine, RunResult]:
    """Replay the Olist funnel; return the engine and what the run did."""
    engine = default_pipeline(presets.demand_waterfall()).engine()
    return engine, run(engine, olist_stream(folder))


def main(argv: list[str]) -> int:
    """Print the replay summary of the Olist data set in the folder given."""
    if len(argv) != 1:
        print(__doc__)
        return 2
    engine, result = replay_olist(Path(argv[0]))
    print(
        f"{result.touches} touches, {result.actions} actions, {len(result.quarantined)} quarantined"
    )
    for entry in result.quarantined:
        print("  quarantined:", entry)
    print(format_summary(summarize(engine.funnel, engine.records)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
