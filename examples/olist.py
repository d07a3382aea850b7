"""Replay the public Olist marketing funnel through the B2B demand waterfall.

The Olist data set (8,000 marketing qualified leads, 842 closed deals; CC
BY-NC-SA 4.0, by Olist) is not shipped with buyerjourney. Point this script at
the folder holding its two CSV files, as an argument or through the
``BUYERJOURNEY_OLIST_DIR`` environment variable::

    python examples/olist.py path/to/olist-marketing-funnel

Both files are read through :mod:`buyerjourney.readers`, with no CSV parsing
here:

* the leads file gives one ``qualify`` touch per lead at its first-contact
  date (the lead enters the funnel and becomes an MQL), with ``origin`` and
  ``landing_page_id`` as attributes. An empty origin stays ``None``: the 60
  leads without an origin are a group of their own, never merged into the
  real ``"unknown"`` channel;
* the deals file is stage history: each deal is an override to ``won`` at
  its won date, by the importing actor (who holds every team, see
  :func:`~buyerjourney.readers.importer_rules`), preceded by a touch that
  carries the deal's properties (segment, lead type, behaviour profile,
  business type, declared revenue ...) as lead attributes.

One deal is won *before* its lead's first contact (a quirk of the data). It
is kept and flagged, not refused: its deal touch and its override are dated
at the first contact instead, the override's reason says so, and the lead's
attribute ``won_before_first_contact`` is ``True`` (``False`` for every
other deal).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import attrs

from buyerjourney import Action, Engine, OwnerRules, Touch, presets
from buyerjourney._pipeline import default_pipeline
from buyerjourney._report import format_summary, summarize
from buyerjourney.errors import ActionRefused, InvalidAction, TransitionNotAllowed
from buyerjourney.readers import (
    Columns,
    Constant,
    Location,
    Rejected,
    StageColumns,
    importer_rules,
    in_time_order,
    read,
    read_stage_history,
)

MQL_FILE = "olist_marketing_qualified_leads_dataset.csv"
DEALS_FILE = "olist_closed_deals_dataset.csv"
ENV_VAR = "BUYERJOURNEY_OLIST_DIR"
FLAG = "won_before_first_contact"

LEADS = Columns(
    lead="mql_id",
    time="first_contact_date",
    time_format="%d-%m-%Y",
    time_zone="UTC",
    kind=Constant("qualify"),
    touch_id=None,
    attributes=("origin", "landing_page_id"),
)
"""The leads file: one ``qualify`` touch per MQL, with its channel and landing page."""

DEAL_ATTRIBUTES = (
    "business_segment",
    "lead_type",
    "lead_behaviour_profile",
    "business_type",
    "has_company",
    "has_gtin",
    "average_stock",
    "declared_product_catalog_size",
    "declared_monthly_revenue",
    "sdr_id",
    "sr_id",
)

DEALS = StageColumns(
    lead="mql_id",
    stages={"won_date": "won"},
    time_format="%d-%m-%Y %H:%M",
    time_zone="UTC",
    attributes=DEAL_ATTRIBUTES,
    attributes_kind="deal",
    types={
        "has_company": "bool",
        "has_gtin": "bool",
        "declared_product_catalog_size": "float",
        "declared_monthly_revenue": "float",
    },
)
"""The deals file: a won date per deal (the wide shape), the deal's properties as attributes."""


@attrs.frozen
class OlistRun:
    """What :func:`replay_olist` did.

    Attributes:
        read: Items read from both files (touches, actions, rejected rows).
        touches: Touches ingested.
        actions: Overrides performed.
        flagged: Leads whose deal was won before their first contact.
        rejected: Rows the readers set aside.
        refused: Actions the engine refused, with their reason.
    """

    read: int
    touches: int
    actions: int
    flagged: tuple[str, ...]
    rejected: tuple[Rejected, ...]
    refused: tuple[str, ...]


def olist_items(folder: Path) -> Iterator[tuple[Location, Touch | Action | Rejected]]:
    """Both files as one time-ordered stream, the early deal kept and flagged."""
    funnel = presets.demand_waterfall()
    first_contact: dict[str, datetime] = {}
    leads = []
    for location, item in read(folder / MQL_FILE, columns=LEADS):
        if isinstance(item, Touch):
            first_contact.setdefault(item.lead_id, item.at)
        leads.append((location, item))
    deals = [
        (location, _flagged(item, first_contact))
        for location, item in read_stage_history(folder / DEALS_FILE, columns=DEALS, funnel=funnel)
    ]
    # Leads first: a clamped deal has its lead's very time, and the order is stable.
    yield from in_time_order([*leads, *deals])


def _flagged(
    item: Touch | Action | Rejected, first_contact: dict[str, datetime]
) -> Touch | Action | Rejected:
    if isinstance(item, Rejected):
        return item
    first = first_contact.get(item.lead_id)
    early = first is not None and item.at < first
    if isinstance(item, Touch):
        attributes = {**item.attributes, FLAG: early}
        if early:
            return attrs.evolve(item, at=first, attributes=attributes)
        return attrs.evolve(item, attributes=attributes)
    if early:
        assert first is not None
        reason = (
            f"{item.reason}; won before the first contact on {first:%d-%m-%Y}, "
            "so dated at the first contact"
        )
        return attrs.evolve(item, at=first, reason=reason)
    return item


def replay_olist(folder: Path) -> tuple[Engine, OlistRun]:
    """Replay the Olist funnel; return the engine and what the run did."""
    funnel = presets.demand_waterfall()
    owners = importer_rules(OwnerRules.for_funnel(funnel))
    engine = default_pipeline(funnel, owners=owners).engine()
    return engine, drive(engine, olist_items(folder))


def drive(engine: Engine, items: Iterable[tuple[Location, Touch | Action | Rejected]]) -> OlistRun:
    """Feed *engine* the items; rejected rows and refused actions are counted, not raised."""
    count = touches = actions = 0
    rejected: list[Rejected] = []
    refused: list[str] = []
    for location, item in items:
        count += 1
        if isinstance(item, Rejected):
            rejected.append(item)
        elif isinstance(item, Touch):
            engine.ingest_one(item)
            touches += 1
        else:
            try:
                engine.perform(item)
            except (ActionRefused, InvalidAction, TransitionNotAllowed) as exc:
                refused.append(f"{location}: {exc}")
            else:
                actions += 1
    flagged = tuple(
        sorted(lead for lead, journey in engine.journeys.items() if journey.attributes.get(FLAG))
    )
    return OlistRun(count, touches, actions, flagged, tuple(rejected), tuple(refused))


def conversion_by_origin(engine: Engine) -> dict[str | None, tuple[int, int]]:
    """Origin (``None`` when empty) to (leads, won), over the engine's journeys."""
    leads: Counter[str | None] = Counter()
    won: Counter[str | None] = Counter()
    for journey in engine.journeys.values():
        origin = journey.attributes.get("origin")
        leads[origin] += 1
        won[origin] += journey.stage == "won"
    return {origin: (leads[origin], won[origin]) for origin in leads}


def main(argv: list[str]) -> int:
    """Print the replay summary of the Olist data set in the folder given."""
    folder = argv[0] if argv else os.environ.get(ENV_VAR)
    if len(argv) > 1 or not folder:
        print(__doc__)
        return 2
    engine, run = replay_olist(Path(folder))
    print(
        f"{run.read} items read: {run.touches} touches, {run.actions} overrides, "
        f"{len(run.rejected)} rejected, {len(run.refused)} refused"
    )
    for rejected in run.rejected:
        print("  rejected:", rejected)
    for lead in run.flagged:
        print(f"  flagged: lead {lead} was won before its first contact")
    print(format_summary(summarize(engine.funnel, engine.records)))
    print("\nMQL to won by origin:")
    rows = sorted(conversion_by_origin(engine).items(), key=lambda kv: -kv[1][0])
    for origin, (leads, won) in rows:
        label = "(missing)" if origin is None else origin
        print(f"  {label:<20} {leads:>5} leads {won:>4} won {won / leads:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
