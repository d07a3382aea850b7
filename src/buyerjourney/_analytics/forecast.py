"""A Monte Carlo forecast of conversions over the next weeks, from rates and durations in the log.

**Estimates, as of a date** (records after it are ignored), per step of the
success path up to the target stage (default: the first won stage):

- a lead **reached** a step at its first entry into the step's stage;
- it **converted** when it reached the next step afterwards, after the
  **duration** between the two; it is **open** when it is still in the
  step's stage at the as-of date, for its **age** since it reached it;
  the others left for another stage and did not convert;
- times to convert are **exponential** with a speed *λ*, and the leads that
  do not convert leave for another stage at a speed *μ* (0 when none left:
  they may stay for ever); the open leads are **censored**, not failures: an
  open lead of age *a* still converts with probability
  ``w = r·exp(-λa) / (r·exp(-λa) + (1 - r)·exp(-μa))``, and *r*, *λ*, *μ*
  are the fixed point of ``r = (converted + Σw) / reached``,
  ``λ = converted / (Σ times to convert + Σ w·a)`` and
  ``μ = left / (Σ stays of those who left + Σ (1 - w)·a)``, solved by
  iteration (an EM fit of a cure-rate model);
- **arrivals**: leads reaching step 1 per week over the ``lookback`` before
  the as-of date.

**Runs**: each run draws the step rates from their Beta posteriors
(``Beta(1 + r·n, 1 + (1 - r)·n)``) and the arrival rate from its Gamma
posterior, so the intervals carry the uncertainty of the estimates too;
then every open lead converts with the probability above, after an
exponential time from the as-of date (memoryless), and walks on (each later
step with its rate and speed); new leads arrive
as a Poisson process and walk from step 1. A conversion is a lead reaching
the target stage; weeks are counted from the as-of date. All draws come from
one :class:`random.Random` seeded with ``seed``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import attrs

from buyerjourney._analytics._stats import format_duration, format_rate, iso, optional_time, seconds
from buyerjourney._analytics.frames import Table, Tabular, table
from buyerjourney._core.funnel import Funnel, StageKind
from buyerjourney._core.lifecycle import effective
from buyerjourney._core.records import Record

__all__ = ["Forecast", "ForecastWeek", "StepEstimate", "estimate_steps", "forecast"]

_WEEK = timedelta(weeks=1)


@attrs.frozen
class StepEstimate:
    """The rate and durations of one step, estimated from the log.

    Attributes:
        stage: The step's stage.
        next_stage: The next step's stage.
        reached: Leads that reached the step.
        converted: Of those, leads that reached the next step.
        open: Leads still in the step's stage at the as-of date.
        rate: The estimated probability to convert (``None`` when no lead
            reached the step).
        durations: The observed times to convert, sorted.
        left_after: How long the leads that left for another stage stayed, sorted.
        speed: The fitted conversion speed, per second (``None`` without conversions).
        leave_speed: The fitted speed, per second, at which leads that do not
            convert leave (0: they stay).
    """

    stage: str
    next_stage: str
    reached: int
    converted: int
    open: int
    rate: float | None
    durations: tuple[timedelta, ...]
    left_after: tuple[timedelta, ...] = ()
    speed: float | None = None
    leave_speed: float = 0.0

    @property
    def median_duration(self) -> timedelta | None:
        """The median time to convert of the fitted model (``None`` without conversions)."""
        if self.speed is None:
            return None
        return timedelta(seconds=math.log(2) / self.speed)

    def to_dict(self) -> dict[str, Any]:
        """The estimate as a JSON-ready dict (durations in seconds)."""
        return {
            "stage": self.stage,
            "next_stage": self.next_stage,
            "reached": self.reached,
            "converted": self.converted,
            "open": self.open,
            "rate": self.rate,
            "median_duration_seconds": seconds(self.median_duration),
        }


@attrs.frozen
class ForecastWeek:
    """Conversions forecast for one week, and up to the end of it.

    Attributes:
        week: 1 for the week starting at the as-of date, and so on.
        start: The week's first instant.
        end: The instant after it.
        low: Conversions in the week at the interval's lower quantile.
        median: The median.
        high: The upper quantile.
        mean: The mean over the runs.
        cumulative_low: Conversions from the as-of date to the week's end,
            lower quantile.
        cumulative_median: The median.
        cumulative_high: The upper quantile.
        cumulative_mean: The mean over the runs.
    """

    week: int
    start: datetime
    end: datetime
    low: float
    median: float
    high: float
    mean: float
    cumulative_low: float
    cumulative_median: float
    cumulative_high: float
    cumulative_mean: float

    def to_dict(self) -> dict[str, Any]:
        """The week as a JSON-ready dict."""
        out = attrs.asdict(self)
        out["start"], out["end"] = self.start.isoformat(), self.end.isoformat()
        return out


@attrs.frozen
class Forecast(Tabular):
    """A forecast of conversions per week (see the module documentation).

    Attributes:
        funnel: The funnel's name.
        target: The stage whose entries count as conversions.
        as_of: The date the forecast starts from.
        interval: The central share of runs between low and high (0.8: the
            10th to 90th percentiles).
        runs: How many runs.
        seed: The seed.
        arrivals_per_week: The estimated arrival rate (0 without arrivals).
        open_leads: Leads in a step of the path at the as-of date.
        steps: The estimates of each step.
        weeks: One row per week.
    """

    TABLES: ClassVar[tuple[str, ...]] = ("weeks", "steps")
    """The tables of :meth:`to_pandas` and :meth:`to_arrow`; the first is the default."""

    def _tables(self) -> Mapping[str, Callable[[], Table]]:
        names = (
            "low",
            "median",
            "high",
            "mean",
            "cumulative_low",
            "cumulative_median",
            "cumulative_high",
            "cumulative_mean",
        )
        return {
            "weeks": lambda: table(
                "weeks",
                (
                    ("week", "integer"),
                    ("start", "time"),
                    ("end", "time"),
                    *((n, "number") for n in names),
                ),
                [(w.week, w.start, w.end, *(getattr(w, n) for n in names)) for w in self.weeks],
            ),
            "steps": lambda: table(
                "steps",
                (
                    ("stage", "text"),
                    ("next_stage", "text"),
                    ("reached", "integer"),
                    ("converted", "integer"),
                    ("open", "integer"),
                    ("rate", "number"),
                    ("median_duration", "duration"),
                ),
                [
                    (
                        s.stage,
                        s.next_stage,
                        s.reached,
                        s.converted,
                        s.open,
                        s.rate,
                        s.median_duration,
                    )
                    for s in self.steps
                ],
            ),
        }

    funnel: str
    target: str
    as_of: datetime
    interval: float
    runs: int
    seed: int
    arrivals_per_week: float
    open_leads: int
    steps: tuple[StepEstimate, ...]
    weeks: tuple[ForecastWeek, ...]

    def to_dict(self) -> dict[str, Any]:
        """The forecast as a JSON-ready dict."""
        return {
            "funnel": self.funnel,
            "target": self.target,
            "as_of": iso(self.as_of),
            "interval": self.interval,
            "runs": self.runs,
            "seed": self.seed,
            "arrivals_per_week": self.arrivals_per_week,
            "open_leads": self.open_leads,
            "steps": [s.to_dict() for s in self.steps],
            "weeks": [w.to_dict() for w in self.weeks],
        }

    def format(self) -> str:
        """The forecast as plain-text tables."""
        low, high = (1 - self.interval) / 2, (1 + self.interval) / 2
        lines = [
            f"forecast of entries into {self.target} (funnel {self.funnel}) "
            f"from {iso(self.as_of)}: "
            f"{self.runs} runs, seed {self.seed}; {self.open_leads} open leads, "
            f"{self.arrivals_per_week:.1f} arrivals per week",
            "",
            f"{'step':<16}{'next':<16}{'reached':>8}{'converted':>10}{'open':>6}{'rate':>8}"
            f"{'median time':>13}",
        ]
        for s in self.steps:
            lines.append(
                f"{s.stage[:15]:<16}{s.next_stage[:15]:<16}{s.reached:>8}{s.converted:>10}"
                f"{s.open:>6}{format_rate(s.rate):>8}{format_duration(s.median_duration):>13}"
            )
        lines += [
            "",
            f"week  from        p{low * 100:g}-p{high * 100:g} (median)   cumulative p{low * 100:g}"
            f"-p{high * 100:g} (median)",
        ]
        for w in self.weeks:
            lines.append(
                f"{w.week:>4}  {w.start.date().isoformat()}  "
                f"{w.low:>5g}-{w.high:<5g} ({w.median:g})"
                f"{'':>8}{w.cumulative_low:>5g}-{w.cumulative_high:<5g} ({w.cumulative_median:g})"
            )
        return "\n".join(lines)


def _quantile(values: Sequence[Any], q: float) -> Any:
    if not values:
        return None
    position = (len(values) - 1) * q
    low = int(position)
    if low + 1 >= len(values) or position == low:
        return values[low]
    return values[low] + (values[low + 1] - values[low]) * (position - low)


def _target(funnel: Funnel, target: str | None) -> tuple[list[str], str]:
    path = [s.name for s in funnel.success_path]
    if target is None:
        won = [s.name for s in funnel.success_path if s.kind is StageKind.WON]
        target = won[0] if won else path[-1]
    funnel.stage(target)  # raises UnknownStage
    if target not in path or path.index(target) == 0:
        msg = (
            f"the forecast target must be a success-path stage after the first; {target!r} is not "
            f"(the success path: {' > '.join(path)})"
        )
        raise ValueError(msg)
    return path[: path.index(target) + 1], target


@attrs.frozen
class _Lead:
    firsts: dict[str, datetime]
    """When the lead first entered each stage."""
    leaves: dict[str, datetime]
    """When it left each stage after its first entry into it."""
    current: str


def _leads(records: Iterable[Record], end: datetime) -> dict[str, _Lead]:
    firsts: dict[str, dict[str, datetime]] = {}
    leaves: dict[str, dict[str, datetime]] = {}
    current: dict[str, str] = {}
    for record in effective(records):  # revisions applied
        if record.at > end or not record.kind.enters_stage or record.target is None:
            continue
        lead = record.lead_id
        if lead in current:
            leaves.setdefault(lead, {}).setdefault(current[lead], record.at)
        firsts.setdefault(lead, {}).setdefault(record.target, record.at)
        current[lead] = record.target
    return {lead: _Lead(firsts[lead], leaves.get(lead, {}), current[lead]) for lead in firsts}


def _chance(rate: float, converting: float, staying: float) -> float:
    """The probability that an open lead converts, from both survivals at its age."""
    weight = rate * converting
    rest = (1 - rate) * staying
    return weight / (weight + rest) if weight > 0 else 0.0


def _fit(
    durations: Sequence[timedelta], gone: Sequence[timedelta], ages: Sequence[timedelta], n: int
) -> tuple[float, float | None, float]:
    """The rate, conversion speed and leaving speed (per second) of a step, open leads censored."""
    converted, left = len(durations), len(gone)
    if not converted:
        return 0.0, None, 0.0
    done = math.fsum(d.total_seconds() for d in durations)
    stayed = math.fsum(g.total_seconds() for g in gone)
    waits = [a.total_seconds() for a in ages]
    rate = converted / n
    speed = converted / max(done, 1.0)
    leave = left / max(stayed, 1.0) if left else 0.0
    for _ in range(500):
        chances = [_chance(rate, math.exp(-speed * w), math.exp(-leave * w)) for w in waits]
        new_rate = (converted + math.fsum(chances)) / n
        new_speed = converted / max(
            done + math.fsum(c * w for c, w in zip(chances, waits, strict=True)), 1.0
        )
        if left:
            leave = left / max(
                stayed + math.fsum((1 - c) * w for c, w in zip(chances, waits, strict=True)), 1.0
            )
        settled = abs(new_rate - rate) < 1e-12 and abs(new_speed - speed) <= 1e-12 * speed
        rate, speed = new_rate, new_speed
        if settled:
            break
    return rate, speed, leave


def _estimate(
    path: Sequence[str], leads: Mapping[str, _Lead], end: datetime
) -> tuple[list[StepEstimate], dict[int, list[tuple[datetime, timedelta]]]]:
    steps: list[StepEstimate] = []
    open_at: dict[int, list[tuple[datetime, timedelta]]] = {}
    for k in range(len(path) - 1):
        stage, nxt = path[k], path[k + 1]
        durations: list[timedelta] = []
        gone: list[timedelta] = []
        converted = reached = 0
        ages: list[tuple[datetime, timedelta]] = []
        for lead in leads.values():
            start = lead.firsts.get(stage)
            if start is None:
                continue
            reached += 1
            later = lead.firsts.get(nxt)
            if later is not None and later >= start:
                converted += 1
                durations.append(later - start)
            elif lead.current == stage:
                ages.append((start, end - start))
            elif stage in lead.leaves:
                gone.append(lead.leaves[stage] - start)
        durations.sort()
        gone.sort()
        rate, speed, leave = (
            _fit(durations, gone, [age for _, age in ages], reached)
            if reached
            else (None, None, 0.0)
        )
        steps.append(
            StepEstimate(
                stage,
                nxt,
                reached,
                converted,
                len(ages),
                rate,
                tuple(durations),
                tuple(gone),
                speed,
                leave,
            )
        )
        open_at[k] = ages
    return steps, open_at


def estimate_steps(
    funnel: Funnel,
    records: Iterable[Record],
    *,
    as_of: datetime | str | None = None,
    target: str | None = None,
) -> tuple[StepEstimate, ...]:
    """The rate and durations of each step up to *target*, as of a date (see the module).

    Args:
        funnel: The funnel the log follows.
        records: The log.
        as_of: Ignore records after it (``None``: the latest record's time).
        target: The last stage (default: the first won stage of the success path).

    Returns:
        One estimate per step.

    Raises:
        UnknownStage: *target* is not a stage of the funnel.
        ValueError: *target* is not a success-path stage after the first.
    """
    records = tuple(records)
    path, _ = _target(funnel, target)
    end = optional_time(as_of, "as_of") or max((r.at for r in records), default=None)
    if end is None:
        return tuple(StepEstimate(a, b, 0, 0, 0, None, ()) for a, b in itertools.pairwise(path))
    return tuple(_estimate(path, _leads(records, end), end)[0])


def _beta(rng: random.Random, rate: float | None, n: int) -> float:
    if rate is None or n == 0:
        return 0.0
    return rng.betavariate(1 + rate * n, 1 + (1 - rate) * n)


def _runs(
    steps: Sequence[StepEstimate],
    open_at: Mapping[int, Sequence[tuple[datetime, timedelta]]],
    *,
    end: datetime,
    weeks: int,
    runs: int,
    rng: random.Random,
    recent: int,
    span_weeks: float,
) -> list[list[int]]:
    """Conversions per run and week."""
    horizon = end + weeks * _WEEK
    last = len(steps)
    weekly = [[0] * weeks for _ in range(runs)]

    def walk(k: int, at: datetime, rates: Sequence[float], run: list[int]) -> None:
        while k < last:
            speed = steps[k].speed
            if speed is None or rng.random() >= rates[k]:
                return
            at += timedelta(seconds=rng.expovariate(speed))
            if at >= horizon:
                return
            k += 1
        if at > end:
            run[int((at - end) / _WEEK)] += 1

    for r in range(runs):
        run = weekly[r]
        rates = [_beta(rng, s.rate, s.reached) for s in steps]
        for k, ages in open_at.items():
            speed, leave = steps[k].speed, steps[k].leave_speed
            if speed is None:
                continue
            for _, age in ages:
                wait = age.total_seconds()
                chance = _chance(rates[k], math.exp(-speed * wait), math.exp(-leave * wait))
                if chance <= 0 or rng.random() >= chance:
                    continue
                at = end + timedelta(seconds=rng.expovariate(speed))  # memoryless
                if at >= horizon:
                    continue
                walk(k + 1, at, rates, run)
        if recent:
            weekly_rate = rng.gammavariate(recent + 0.5, 1 / span_weeks)
            at = end
            while weekly_rate > 0:
                at += _WEEK * rng.expovariate(weekly_rate)
                if at >= horizon:
                    break
                walk(0, at, rates, run)
    return weekly


def forecast(
    funnel: Funnel,
    records: Iterable[Record],
    *,
    weeks: int = 8,
    as_of: datetime | str | None = None,
    target: str | None = None,
    runs: int = 1000,
    seed: int = 0,
    interval: float = 0.8,
    arrivals: bool = True,
    lookback: timedelta = timedelta(weeks=4),
) -> Forecast:
    """Forecast conversions over the next *weeks* weeks (see the module documentation).

    Args:
        funnel: The funnel the log follows.
        records: The log.
        weeks: The horizon, in weeks from the as-of date.
        as_of: Forecast from this date; records after it are ignored
            (``None``: the latest record's time).
        target: The stage whose entries are conversions (default: the first
            won stage of the success path).
        runs: How many Monte Carlo runs.
        seed: The seed; the same log and arguments give the same forecast.
        interval: The central share of runs between low and high.
        arrivals: Whether new leads arrive (at the rate of the lookback).
        lookback: The time before the as-of date the arrival rate is measured on.

    Returns:
        The forecast.

    Raises:
        ValueError: *weeks* or *runs* is not a positive int, *interval* is
            not strictly between 0 and 1, *lookback* is not positive, the
            log is empty and no *as_of* is given, or *target* is not a
            success-path stage after the first.
        UnknownStage: *target* is not a stage of the funnel.
    """
    for name, value in (("weeks", weeks), ("runs", runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"'{name}' must be an int of 1 or more (got {value!r})"
            raise ValueError(msg)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < 1:
        msg = f"'interval' must be a number strictly between 0 and 1 (got {interval!r})"
        raise ValueError(msg)
    if not isinstance(lookback, timedelta) or lookback <= timedelta(0):
        msg = f"'lookback' must be a datetime.timedelta above zero (got {lookback!r})"
        raise ValueError(msg)
    records = tuple(records)
    path, goal = _target(funnel, target)
    end = optional_time(as_of, "as_of") or max((r.at for r in records), default=None)
    if end is None:
        msg = "the log is empty: give as_of to forecast from a date"
        raise ValueError(msg)
    leads = _leads(records, end)
    steps, open_at = _estimate(path, leads, end)
    first = path[0]
    recent = sum(
        1 for lead in leads.values() if first in lead.firsts and lead.firsts[first] > end - lookback
    )
    per_week = recent / (lookback / _WEEK) if arrivals else 0.0
    weekly = _runs(
        steps,
        open_at,
        end=end,
        weeks=weeks,
        runs=runs,
        rng=random.Random(seed),
        recent=recent if arrivals else 0,
        span_weeks=lookback / _WEEK,
    )
    low_q, high_q = (1 - interval) / 2, (1 + interval) / 2
    rows: list[ForecastWeek] = []
    totals = [0] * runs
    for w in range(weeks):
        counts = sorted(weekly[r][w] for r in range(runs))
        for r in range(runs):
            totals[r] += weekly[r][w]
        cumulative = sorted(totals)
        rows.append(
            ForecastWeek(
                week=w + 1,
                start=end + w * _WEEK,
                end=end + (w + 1) * _WEEK,
                low=float(_quantile(counts, low_q)),
                median=float(_quantile(counts, 0.5)),
                high=float(_quantile(counts, high_q)),
                mean=math.fsum(counts) / runs,
                cumulative_low=float(_quantile(cumulative, low_q)),
                cumulative_median=float(_quantile(cumulative, 0.5)),
                cumulative_high=float(_quantile(cumulative, high_q)),
                cumulative_mean=math.fsum(cumulative) / runs,
            )
        )
    return Forecast(
        funnel=funnel.name,
        target=goal,
        as_of=end,
        interval=float(interval),
        runs=runs,
        seed=seed,
        arrivals_per_week=per_week,
        open_leads=sum(len(a) for a in open_at.values()),
        steps=tuple(steps),
        weeks=tuple(rows),
    )
