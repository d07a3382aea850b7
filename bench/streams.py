"""Seeded, realistic touch streams for the benchmarks.

Many leads, a power-law number of touches per lead (most leads touch a few
times, a few touch hundreds of times), touch kinds weighted like a B2B
marketing site (page views and email opens dominate; demo requests are rare)
plus a small share of touches named after seed-funnel events (a purchase
converts, an unsubscribe loses ...), times spread over half a year with
exponential gaps, and lead attributes (segment, company size) on each lead's
first touch. Everything comes from one seed, so a run is reproducible.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from buyerjourney.bulk._columnar import to_micros
from buyerjourney.bulk._replay import TouchBatch

START = datetime(2024, 1, 1, tzinfo=timezone.utc)

KIND_WEIGHTS: dict[str, float] = {
    # the default points table
    "page_view": 0.34,
    "email_open": 0.24,
    "email_click": 0.11,
    "pricing_view": 0.06,
    "content_download": 0.05,
    "form_submit": 0.03,
    "webinar_attended": 0.03,
    "demo_request": 0.02,
    # touches named after seed-funnel events
    "convert": 0.04,
    "retain": 0.02,
    "advocate": 0.01,
    "lose": 0.02,
    "churn": 0.01,
    "nurture": 0.02,
}
SEGMENTS = ("smb", "mid_market", "enterprise")


def generate(n_touches: int, *, seed: int = 7, touches_per_lead: float = 10.0) -> TouchBatch:
    """A time-ordered batch of exactly *n_touches* touches."""
    rng = np.random.default_rng(seed)
    n_leads = max(1, int(n_touches / touches_per_lead))
    # Pareto (power law) touches per lead, mean about touches_per_lead, at most 5,000
    raw = rng.pareto(1.6, n_leads) + 1.0
    counts = np.minimum(np.ceil(raw * touches_per_lead * 0.6 / 1.6 * 1.0), 5000).astype(np.int64)
    while counts.sum() < n_touches:
        counts[rng.integers(0, n_leads, n_leads // 10 + 1)] += 1
    lead = np.repeat(np.arange(n_leads), counts)
    day = 86_400 * 10**6
    begin = rng.integers(0, 150 * day, n_leads) // 10**6 * 10**6
    gaps = (rng.exponential(1.5 * day, lead.shape[0]) // 10**6) * 10**6
    first = np.ones(lead.shape[0], bool)
    first[1:] = lead[1:] != lead[:-1]
    gaps[first] = 0
    cum = np.cumsum(gaps)
    starts = np.flatnonzero(first)
    at = begin[lead] + cum - cum[starts][np.cumsum(first) - 1]
    order = np.argsort(at, kind="stable")[:n_touches]
    order.sort()  # keep the first n_touches by time, then sort by time below
    order = order[np.argsort(at[order], kind="stable")]
    lead = lead[order]
    at = at[order] + to_micros(START)
    kinds = tuple(KIND_WEIGHTS)
    weights = np.array(list(KIND_WEIGHTS.values()))
    kind = rng.choice(len(kinds), size=n_touches, p=weights / weights.sum())
    # renumber leads by first appearance, and give each lead's first touch its attributes
    used, first_pos, code = np.unique(lead, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first_pos, kind="stable")
    renumber = np.empty(used.shape[0], np.int64)
    renumber[by_appearance] = np.arange(used.shape[0])
    lead = renumber[code]
    lead_ids = [f"lead-{i:07d}" for i in range(used.shape[0])]
    segment = rng.integers(0, len(SEGMENTS), used.shape[0])
    employees = rng.integers(1, 20_000, used.shape[0])
    attributes: dict[int, dict[str, Any]] = {}
    for pos, code_ in zip(np.sort(first_pos).tolist(), range(used.shape[0]), strict=True):
        attributes[pos] = {"segment": SEGMENTS[segment[code_]], "employees": int(employees[code_])}
    return TouchBatch(lead_ids, lead, at, kinds, kind, attributes=attributes)
