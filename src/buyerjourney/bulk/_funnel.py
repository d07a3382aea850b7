"""The funnel report in two parts, for distributed runs: per-lead facts, then small aggregates.

:func:`buyerjourney.analytics.funnel_report` reads a whole log in one
process. Its definitions are per lead (which entry reached which step,
where the lead went next, how long it stayed) except for the counts and
the order statistics of the durations. So a distributed report:

1. computes :func:`lead_facts` where the leads' records are (a partition of
   whole leads, each lead's stage entries in ``lead_seq`` order), with the
   analytics' own matching rules (``_match``, ``_reach_times``: one home);
2. aggregates the facts on the cluster: counts per step, exits per step
   and next stage, the size of every duration distribution, its histogram,
   and the few order statistics the percentiles need (:func:`needed_ranks`);
3. assembles a :class:`DistributedFunnelReport` from those aggregates
   (:func:`assemble_report`), interpolating the percentiles exactly as
   :class:`~buyerjourney.analytics.Durations` does.

Its ``to_dict()`` equals the single-process report's. Durations travel as
int64 microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from buyerjourney._analytics._stats import BUCKETS, format_duration, rate, seconds
from buyerjourney._analytics.funnel import (
    COHORT_BASIS,
    Branch,
    _branch_kind,
    _match,
    _Options,
    _options,
    _reach_times,
    describe_text,
    report_dict,
    report_text,
    step_dict,
)
from buyerjourney._core.funnel import Funnel
from buyerjourney._core.records import RecordKind
from buyerjourney.bulk._schema import MICROSECOND, from_micros, to_micros

__all__ = [
    "DURATION_METRICS",
    "FACT_COLUMNS",
    "QUANTILES",
    "DistributedFunnelReport",
    "DistributedStepRow",
    "DurationSummary",
    "ReportOptions",
    "assemble_report",
    "entry_kinds",
    "lead_facts",
    "needed_ranks",
    "report_options",
]

DURATION_METRICS: tuple[str, ...] = ("time_in_stage", "time_to_convert", "time_from_start")
"""The duration distributions of a step, as fact columns."""

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.25, 0.75)
"""The quantiles a duration summary keeps (those of ``Durations.to_dict``)."""

FACT_COLUMNS: dict[str, str] = {
    "step": "int64: the step's index in the path (0-based)",
    "lead_id": "str: the lead",
    "exited": "bool: the lead entered another stage after the step's visit",
    "converted": "bool: the lead reached the next step",
    "next_stage": "str or null: the stage entered right after the visit",
    "time_in_stage": "int64 or null: microseconds of the completed visit",
    "time_to_convert": "int64 or null: microseconds from this step to the next",
    "time_from_start": "int64: microseconds from the anchor to this step",
}
"""One row per lead and step reached."""


def entry_kinds() -> list[str]:
    """The record kinds (by name) that enter a stage, which the report reads."""
    return [kind.value for kind in RecordKind if kind.enters_stage]


@attrs.frozen
class ReportOptions:
    """The checked options of a report, as the workers and the assembly read them.

    Attributes:
        funnel: The funnel.
        options: The analytics' own options (path, order, window, dates).
        as_of_micros: The as-of date in microseconds (``None``: the whole log).
        histogram_bounds: The upper bounds of the histogram buckets but the
            last (open) one, in microseconds.
    """

    funnel: Funnel
    options: _Options
    as_of_micros: int | None
    histogram_bounds: tuple[int, ...]


def report_options(
    funnel: Funnel,
    *,
    path: Sequence[str] | None = None,
    order: str = "ordered",
    window: timedelta | None = None,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> ReportOptions:
    """Check the options as :func:`buyerjourney.analytics.funnel_report` does.

    Args:
        funnel: The funnel.
        path: The stages of the steps (default: the success path).
        order: ``"ordered"``, ``"strict"`` or ``"any"``.
        window: The conversion window (``None``: none).
        as_of: Ignore records after this date.
        since: Count only leads that entered step 1 at or after this date.

    Returns:
        The options.

    Raises:
        UnknownStage, ValueError, TypeError, InvalidTouch: As the single-process report.
    """
    checked = _options(funnel, path=path, order=order, window=window, as_of=as_of, since=since)
    bounds = tuple(upper // MICROSECOND for _, upper in BUCKETS if upper is not None)
    as_of_micros = None if checked.as_of is None else to_micros(checked.as_of)
    return ReportOptions(funnel, checked, as_of_micros, bounds)


def lead_facts(options: ReportOptions, entries: Any) -> Any:
    """The facts of the leads in *entries*: a row per lead and step reached (:data:`FACT_COLUMNS`).

    Args:
        options: From :func:`report_options`.
        entries: A pandas DataFrame of stage entries (``lead_id``, ``at`` in
            microseconds, ``target``), each lead's rows together and in log
            order, records after the as-of date already left out.

    Returns:
        A pandas DataFrame.
    """
    import pandas as pd  # type: ignore[import-untyped]  # noqa: PLC0415

    opts = options.options
    out: dict[str, list[Any]] = {name: [] for name in FACT_COLUMNS}
    leads = entries["lead_id"].tolist()
    times = entries["at"].tolist()
    stages = entries["target"].tolist()
    start = 0
    n = len(leads)
    while start < n:
        end = start + 1
        while end < n and leads[end] == leads[start]:
            end += 1
        _facts_of(opts, leads[start], times[start:end], stages[start:end], out)
        start = end
    frame = pd.DataFrame(out)
    for name in ("step", "time_in_stage", "time_to_convert", "time_from_start"):
        frame[name] = pd.array(out[name], dtype="Int64")
    for name in ("exited", "converted"):
        frame[name] = frame[name].astype(bool)
    return frame


def _facts_of(
    opts: _Options,
    lead: str,
    times: Sequence[int],
    stages: Sequence[str],
    out: dict[str, list[Any]],
) -> None:
    entries = [(from_micros(at), stage) for at, stage in zip(times, stages, strict=True)]
    match = _match(entries, opts)
    if not match:
        return
    anchor = next(at for at, stage in entries if stage == opts.path[0])
    if opts.since is not None and anchor < opts.since:
        return
    reach = _reach_times(entries, match, opts.order)
    for k, visit in enumerate(match):
        converted = len(match) > k + 1
        exited = visit + 1 < len(entries)
        out["step"].append(k)
        out["lead_id"].append(lead)
        out["exited"].append(exited)
        out["converted"].append(converted)
        out["next_stage"].append(entries[visit + 1][1] if exited else None)
        out["time_in_stage"].append(
            (entries[visit + 1][0] - entries[visit][0]) // MICROSECOND if exited else None
        )
        out["time_to_convert"].append(
            (reach[k + 1] - reach[k]) // MICROSECOND if converted else None
        )
        out["time_from_start"].append((reach[k] - anchor) // MICROSECOND)


def needed_ranks(n: int) -> list[int]:
    """The 0-based ranks whose values the summary of *n* durations needs (min, max, quantiles)."""
    if n <= 0:
        return []
    ranks = {0, n - 1}
    for q in QUANTILES:
        position = (n - 1) * q
        low = int(position)
        ranks.add(low)
        if position - low != 0 and low + 1 < n:
            ranks.add(low + 1)
    return sorted(ranks)


@attrs.frozen
class DurationSummary:
    """A distribution of durations summarised by its order statistics (exact).

    The same numbers as :class:`~buyerjourney.analytics.Durations` without
    keeping every value: count, the quantiles of :data:`QUANTILES`
    (interpolated between the nearest ranks as ``Durations`` does), the
    extremes and the histogram.

    Attributes:
        count: How many durations there are.
        quantiles: The value at each quantile of :data:`QUANTILES`.
        minimum: The smallest (``None`` when empty).
        maximum: The largest (``None`` when empty).
        histogram: ``(label, count)`` per bucket of the analytics' histogram.
    """

    count: int = 0
    quantiles: Mapping[float, timedelta] = attrs.field(factory=dict)
    minimum: timedelta | None = None
    maximum: timedelta | None = None
    histogram: tuple[tuple[str, int], ...] = tuple((label, 0) for label, _ in BUCKETS)

    @property
    def median(self) -> timedelta | None:
        """The median (``None`` when empty)."""
        return self.percentile(0.5)

    @property
    def p90(self) -> timedelta | None:
        """The 90th percentile (``None`` when empty)."""
        return self.percentile(0.9)

    def percentile(self, q: float) -> timedelta | None:
        """The *q*-quantile, for *q* in :data:`QUANTILES` (``None`` when empty).

        Raises:
            ValueError: *q* is not one of :data:`QUANTILES`.
        """
        if q not in QUANTILES:
            msg = f"'q' must be one of {', '.join(map(str, QUANTILES))} (got {q!r})"
            raise ValueError(msg)
        return self.quantiles.get(q)

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Durations.to_dict <buyerjourney.analytics.Durations.to_dict>`."""
        return {
            "count": self.count,
            "median_seconds": seconds(self.median),
            "p90_seconds": seconds(self.p90),
            "p25_seconds": seconds(self.percentile(0.25)),
            "p75_seconds": seconds(self.percentile(0.75)),
            "min_seconds": seconds(self.minimum),
            "max_seconds": seconds(self.maximum),
            "histogram": [{"bucket": label, "count": n} for label, n in self.histogram],
        }

    def summary(self) -> str:
        """One line: count, median and 90th percentile (``"-"`` when empty)."""
        if not self.count:
            return "-"
        return (
            f"median {format_duration(self.median)}, p90 {format_duration(self.p90)} "
            f"(n={self.count})"
        )


def _summary(n: int, ranked: Mapping[int, int], histogram: Sequence[int]) -> DurationSummary:
    if n == 0:
        return DurationSummary()

    def at(rank: int) -> timedelta:
        return timedelta(microseconds=ranked[rank])

    quantiles: dict[float, timedelta] = {}
    for q in QUANTILES:  # the interpolation of Durations.percentile, on the same values
        position = (n - 1) * q
        low = int(position)
        fraction = position - low
        if fraction == 0 or low + 1 >= n:
            quantiles[q] = at(low)
        else:
            quantiles[q] = at(low) + (at(low + 1) - at(low)) * fraction
    labels = [label for label, _ in BUCKETS]
    return DurationSummary(
        n, quantiles, at(0), at(n - 1), tuple(zip(labels, histogram, strict=True))
    )


@attrs.frozen
class DistributedStepRow:
    """One step of a :class:`DistributedFunnelReport` (the fields of the analytics' ``StepRow``).

    Attributes:
        stage: The step's stage.
        entered: Leads that reached the step.
        exited: Of those, leads that entered another stage after the step's visit.
        balance: entered - exited.
        converted: Leads that reached the next step (``None`` for the last step).
        step_conversion: Entered ÷ entered of the previous step.
        overall_conversion: Entered ÷ entered of step 1.
        drop_off: 1 - step conversion.
        exits: Where the exited leads went next, most leads first.
        time_in_stage: Length of the completed visits.
        time_to_convert: From reaching this step to reaching the next one.
        time_from_start: From the anchor to reaching this step.
    """

    stage: str
    entered: int
    exited: int
    balance: int
    converted: int | None
    step_conversion: float | None
    overall_conversion: float | None
    drop_off: float | None
    exits: tuple[Branch, ...]
    time_in_stage: DurationSummary
    time_to_convert: DurationSummary
    time_from_start: DurationSummary

    @property
    def velocity(self) -> timedelta | None:
        """The median time in stage (``None`` without completed visits)."""
        return self.time_in_stage.median

    def to_dict(self) -> dict[str, Any]:
        """As the analytics' ``StepRow.to_dict()``."""
        return step_dict(self)


@attrs.frozen
class DistributedFunnelReport:
    """The funnel report computed on a cluster: the analytics' report, durations summarised.

    Its :meth:`to_dict` equals
    :meth:`FunnelReport.to_dict <buyerjourney.analytics.FunnelReport.to_dict>`
    of the single-process report on the same records.

    Attributes:
        funnel: The funnel's name.
        path: The stages of the steps.
        order: The order mode.
        window: The conversion window (``None``: none).
        as_of: Records dated after it were ignored (``None``: the whole log).
        since: Only leads that entered step 1 at or after it count.
        journeys: Leads with a stage entry up to the as-of date.
        steps: One row per step.
        basis: Always ``"cohort"``.
    """

    funnel: str
    path: tuple[str, ...]
    order: str
    window: timedelta | None
    as_of: datetime | None
    since: datetime | None
    journeys: int
    steps: tuple[DistributedStepRow, ...]
    basis: str = COHORT_BASIS

    @property
    def leads(self) -> int:
        """Leads that entered step 1."""
        return self.steps[0].entered if self.steps else 0

    @property
    def empty(self) -> bool:
        """Whether no lead entered step 1."""
        return self.leads == 0

    @property
    def overall_conversion(self) -> float | None:
        """Leads reaching the last step ÷ leads entering step 1 (``None`` when empty)."""
        return self.steps[-1].overall_conversion if self.steps else None

    def step(self, stage: str) -> DistributedStepRow:
        """The row of the step at *stage*.

        Raises:
            KeyError: No step of the path is at *stage*.
        """
        for row in self.steps:
            if row.stage == stage:
                return row
        msg = f"no step at stage {stage!r}; the path is {' > '.join(self.path)}"
        raise KeyError(msg)

    def to_dict(self) -> dict[str, Any]:
        """As the analytics' ``FunnelReport.to_dict()``."""
        return report_dict(self)

    def describe(self) -> str:
        """As the analytics' ``FunnelReport.describe()``: what the report counts."""
        return describe_text(self)

    def format(self) -> str:
        """As the analytics' ``FunnelReport.format()``: the report as plain-text tables."""
        return report_text(self)


def assemble_report(
    options: ReportOptions,
    *,
    journeys: int,
    counts: Mapping[int, tuple[int, int]],
    branches: Iterable[tuple[int, str, int, int]],
    sizes: Mapping[tuple[int, str], int],
    values: Mapping[tuple[int, str, int], int],
    histogram: Mapping[tuple[int, str, int], int],
) -> DistributedFunnelReport:
    """The report from the aggregates of the facts.

    Args:
        options: From :func:`report_options`.
        journeys: Leads with a stage entry up to the as-of date.
        counts: Per step, ``(leads that reached it, leads that exited it)``.
        branches: ``(step, next stage, leads, of which converted)``.
        sizes: Per ``(step, metric)``, how many durations there are.
        values: Per ``(step, metric, rank)``, the duration (µs) at that rank
            for every rank :func:`needed_ranks` asks for.
        histogram: Per ``(step, metric, bucket)``, how many durations fall in it.

    Returns:
        The report.
    """
    opts = options.options
    steps = opts.path
    funnel = options.funnel
    entered = [counts.get(k, (0, 0))[0] for k in range(len(steps))]
    by_step: dict[int, list[Branch]] = {}
    for step, stage, leads, converted in branches:
        by_step.setdefault(step, []).append(
            Branch(stage, _branch_kind(funnel, steps, step, stage), leads, converted)
        )
    rows = []
    for k, stage in enumerate(steps):
        summaries = {}
        for metric in DURATION_METRICS:
            n = sizes.get((k, metric), 0)
            ranked = {r: values[(k, metric, r)] for r in needed_ranks(n)}
            buckets = [histogram.get((k, metric, b), 0) for b in range(len(BUCKETS))]
            summaries[metric] = _summary(n, ranked, buckets)
        exited = counts.get(k, (0, 0))[1]
        last = k == len(steps) - 1
        step_conversion = None if k == 0 else rate(entered[k], entered[k - 1])
        rows.append(
            DistributedStepRow(
                stage=stage,
                entered=entered[k],
                exited=exited,
                balance=entered[k] - exited,
                converted=None if last else entered[k + 1],
                step_conversion=step_conversion,
                overall_conversion=rate(entered[k], entered[0]),
                drop_off=None if step_conversion is None else 1 - step_conversion,
                exits=tuple(sorted(by_step.get(k, []), key=lambda b: (-b.leads, b.stage))),
                time_in_stage=summaries["time_in_stage"],
                time_to_convert=summaries["time_to_convert"],
                time_from_start=summaries["time_from_start"],
            )
        )
    return DistributedFunnelReport(
        funnel=funnel.name,
        path=steps,
        order=opts.order,
        window=opts.window,
        as_of=opts.as_of,
        since=opts.since,
        journeys=journeys,
        steps=tuple(rows),
    )
