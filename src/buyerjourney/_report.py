"""Reports computed from the log: the per-stage summary, handoffs, breaches, refusals.

Every figure is computed from records only, so a report can be rebuilt from
a stored log at any time. Definitions (see the concepts page):

- **entered** / **exited**: how many times journeys entered / left the stage
  (a journey recycled back into a stage enters it again).
- **current**: journeys in the stage now (entered - exited).
- **reached**: distinct leads that ever entered the stage.
- **step conversion** (success-path stages): leads reaching this stage ÷
  leads reaching the previous success-path stage.
- **median time in stage**: median length of the *completed* visits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

import attrs

from buyerjourney._core.funnel import Funnel
from buyerjourney._core.lifecycle import effective
from buyerjourney._core.records import Record, RecordKind

__all__ = ["ReplaySummary", "StageRow", "format_summary", "summarize"]


@attrs.frozen
class StageRow:
    """One stage's line of the summary.

    Attributes:
        stage: The stage name.
        reached: Distinct leads that ever entered it.
        entered: Entries (re-entries count again).
        exited: Exits.
        current: Journeys in the stage now.
        step_conversion: Reached ÷ reached of the previous success-path stage
            (``None`` for the first stage and for exits).
        median_time: Median length of completed visits (``None`` if none).
    """

    stage: str
    reached: int
    entered: int
    exited: int
    current: int
    step_conversion: float | None
    median_time: timedelta | None


@attrs.frozen
class ReplaySummary:
    """What a log says, in aggregate.

    Attributes:
        stages: One row per stage: success path by rank, then exits.
        handoffs: Handoff counts by (from team, to team).
        breaches: SLA escalations by stage.
        refusals: Refused actions by reason.
        accepted: Handoffs accepted at gate stages.
        rejected: Handoffs rejected at gate stages.
        leads: How many journeys the log holds.
        records: How many records it holds.
    """

    stages: tuple[StageRow, ...]
    handoffs: dict[tuple[str, str], int]
    breaches: dict[str, int]
    refusals: dict[str, int]
    accepted: int
    rejected: int
    leads: int
    records: int


def summarize(funnel: Funnel, records: Iterable[Record]) -> ReplaySummary:
    """Compute the :class:`ReplaySummary` of a log."""
    entered: Counter[str] = Counter()
    exited: Counter[str] = Counter()
    reached: dict[str, set[str]] = {name: set() for name in funnel.stage_names}
    visits: dict[str, list[timedelta]] = {name: [] for name in funnel.stage_names}
    where: dict[str, tuple[str, datetime]] = {}
    handoffs: Counter[tuple[str, str]] = Counter()
    breaches: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    counts: Counter[RecordKind] = Counter()
    total = 0
    for record in effective(records):  # revisions applied
        total += 1
        kind = record.kind
        counts[kind] += 1
        if kind is RecordKind.CREATED and record.target is not None:
            entered[record.target] += 1
            reached[record.target].add(record.lead_id)
            where[record.lead_id] = (record.target, record.at)
        elif kind.enters_stage and record.target is not None:
            source, since = where[record.lead_id]
            exited[source] += 1
            visits[source].append(record.at - since)
            entered[record.target] += 1
            reached[record.target].add(record.lead_id)
            where[record.lead_id] = (record.target, record.at)
        elif kind is RecordKind.HANDOFF and record.from_team and record.to_team:
            handoffs[(record.from_team, record.to_team)] += 1
        elif kind is RecordKind.ESCALATION and record.source is not None:
            breaches[record.source] += 1
        elif kind is RecordKind.REFUSED:
            refusals[_reason_key(record.reason)] += 1

    rows: list[StageRow] = []
    previous: int | None = None
    for stage in funnel.success_path:
        rows.append(_row(stage.name, reached, entered, exited, visits, previous))
        previous = len(reached[stage.name])
    for stage in funnel.stages:
        if stage.kind.is_exit:
            rows.append(_row(stage.name, reached, entered, exited, visits, None))
    return ReplaySummary(
        stages=tuple(rows),
        handoffs=dict(sorted(handoffs.items())),
        breaches=dict(sorted(breaches.items())),
        refusals=dict(refusals.most_common()),
        accepted=counts[RecordKind.ACCEPTED],
        rejected=counts[RecordKind.REJECTED],
        leads=counts[RecordKind.CREATED],
        records=total,
    )


def _row(  # noqa: PLR0917  (private helper, called twice with the same shape)
    name: str,
    reached: dict[str, set[str]],
    entered: Counter[str],
    exited: Counter[str],
    visits: dict[str, list[timedelta]],
    previous: int | None,
) -> StageRow:
    count = len(reached[name])
    durations = visits[name]
    return StageRow(
        stage=name,
        reached=count,
        entered=entered[name],
        exited=exited[name],
        current=entered[name] - exited[name],
        step_conversion=(count / previous) if previous else None,
        median_time=_median(durations),
    )


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _reason_key(reason: str) -> str:
    """Group refusals by the first clause of their reason (ids vary, causes don't)."""
    return reason.split(";", maxsplit=1)[0].strip()


def _fmt_time(value: timedelta | None) -> str:
    if value is None:
        return "-"
    hours = value.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 48 else f"{hours:.1f}h"


def format_summary(summary: ReplaySummary) -> str:
    """The summary as the plain-text tables ``buyerjourney replay`` prints."""
    lines = [
        f"{summary.leads} journeys, {summary.records} records",
        "",
        f"{'stage':<16}{'reached':>8}{'entered':>9}{'exited':>8}{'current':>9}"
        f"{'step conv':>11}{'median time':>13}",
    ]
    for row in summary.stages:
        conv = "-" if row.step_conversion is None else f"{row.step_conversion:.1%}"
        lines.append(
            f"{row.stage:<16}{row.reached:>8}{row.entered:>9}{row.exited:>8}{row.current:>9}"
            f"{conv:>11}{_fmt_time(row.median_time):>13}"
        )
    lines += ["", "handoffs:"]
    lines += [f"  {a} -> {b}: {n}" for (a, b), n in summary.handoffs.items()] or ["  none"]
    lines.append(f"  accepted: {summary.accepted}, rejected: {summary.rejected}")
    lines += ["", "SLA breaches:"]
    lines += [f"  {stage}: {n}" for stage, n in summary.breaches.items()] or ["  none"]
    lines += ["", "refused actions:"]
    lines += [f"  {n} x {reason}" for reason, n in summary.refusals.items()] or ["  none"]
    return "\n".join(lines)
