"""Generate the bundled sample stream: ``src/buyerjourney/data/sample_touches.jsonl``.

Run from the project root: ``python scripts/make_sample.py``. The output is
fully determined by the seed, so running it again gives the same file.

The sample follows the B2B demand waterfall preset: 400 leads arrive over 60
days and engage with content (page views, email clicks, webinars, demo
requests); the default pipeline qualifies and hands them to sales by score.
Sales people then accept or reject each handoff (some late, past the 72-hour
SLA), qualify, open opportunities, win or lose. A few actions are attempted
by the wrong team, to show refusals in the log.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SEED = 20240601
LEADS = 400
START = datetime(2024, 6, 1, 8, 0, tzinfo=timezone.utc)
OUT = Path(__file__).resolve().parents[1] / "src" / "buyerjourney" / "data" / "sample_touches.jsonl"

# (kind, weight) of marketing touches, and the chance a lead is very engaged.
KINDS = [
    ("page_view", 40),
    ("email_open", 25),
    ("email_click", 15),
    ("content_download", 8),
    ("webinar_attended", 5),
    ("pricing_view", 5),
    ("demo_request", 2),
]
SEGMENTS = ["smb", "mid_market", "enterprise"]
REGIONS = ["emea", "amer", "apac"]
HOT_KINDS = [
    ("email_click", 30),
    ("content_download", 25),
    ("webinar_attended", 20),
    ("pricing_view", 15),
    ("page_view", 10),
]
SALES_PEOPLE = ["sdr_1", "sdr_2", "ae_1"]


def simulate_lead(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """One lead's touches, plus the sales actions a realistic team would take."""
    lead = f"lead-{n:04d}"
    start = START + timedelta(minutes=rng.randrange(60 * 24 * 60))
    engaged = rng.random() < 0.35
    count = rng.randint(6, 16) if engaged else rng.randint(1, 8)
    at = start
    rows: list[dict[str, Any]] = []
    kinds = HOT_KINDS if engaged else KINDS
    for i in range(count):
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        if engaged and i == count - 1:
            kind = "demo_request"
        row: dict[str, Any] = {
            "touch_id": f"{lead}-t{i:02d}",
            "lead_id": lead,
            "at": at.isoformat(),
            "kind": kind,
            "properties": {"campaign": rng.choice(["spring", "webinar", "newsletter"])},
        }
        if i == 0:
            row["attributes"] = {
                "segment": rng.choice(SEGMENTS),
                "region": rng.choice(REGIONS),
                "employees": rng.choice([5, 40, 250, 1200, 8000]),
            }
        rows.append(row)
        at += timedelta(hours=rng.randint(1, 10) if engaged else rng.randint(2, 96))
    if not engaged:
        return rows
    # Sales works the handoff: accept (sometimes late) or reject, then the deal.
    person = rng.choice(SALES_PEOPLE)
    at += timedelta(hours=rng.choice([1, 3, 8, 20, 30, 50, 90]))
    if rng.random() < 0.15:
        rows.append(_action("send", lead, at, "marketer_1", "marketing", event="qualify_sales"))
        at += timedelta(minutes=5)
    if rng.random() < 0.2:
        rows.append(_action("reject", lead, at, person, "sales", reason="not a decision maker"))
        return rows
    rows.append(_action("accept", lead, at, person, "sales"))
    at += timedelta(hours=rng.randint(2, 40))
    if rng.random() < 0.25:
        rows.append(_action("send", lead, at, person, "sales", event="qualify_sales"))
        at += timedelta(days=rng.randint(1, 5))
        rows.append(
            _action(
                "send", lead, at, person, "sales", event="disqualify", reason="no budget this year"
            )
        )
        return rows
    rows.append(_action("send", lead, at, person, "sales", event="qualify_sales"))
    at += timedelta(days=rng.randint(2, 14))
    rows.append(_action("send", lead, at, person, "sales", event="open_opportunity"))
    at += timedelta(days=rng.randint(5, 40))
    event = "win" if rng.random() < 0.3 else "lose"
    rows.append(
        _action(
            "send",
            lead,
            at,
            person,
            "sales",
            event=event,
            reason="" if event == "win" else "chose a competitor",
        )
    )
    return rows


def _action(
    action: str, lead: str, at: datetime, actor: str, team: str, **extra: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "type": "action",
        "action": action,
        "lead_id": lead,
        "at": at.isoformat(),
        "actor": actor,
        "team": team,
    }
    row.update({k: v for k, v in extra.items() if v})
    return row


def main() -> None:
    """Write the sample, sorted by time (ties keep generation order)."""
    rng = random.Random(SEED)
    rows = [row for n in range(LEADS) for row in simulate_lead(rng, n)]
    rows.sort(key=lambda r: r["at"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, sort_keys=True) + "\n")
    print(f"wrote {len(rows)} records for {LEADS} leads to {OUT.name}")


if __name__ == "__main__":
    main()
