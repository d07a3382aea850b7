"""The full funnel report on a columnar log, with vectorised NumPy steps instead of a loop per lead.

:func:`buyerjourney.analytics.funnel_report` follows each lead's stage
entries in Python. :func:`columnar_funnel_report` computes the same report
(its ``to_dict()`` equal, for every option: path, the three order modes,
window, as-of and since) on the arrays of a
:class:`~buyerjourney.bulk.ColumnarLog`:

1. the stage entries (created, transition, override records with a target,
   up to the as-of date, revisions applied as
   :func:`~buyerjourney._core.lifecycle.effective` applies them) are sorted by
   lead, keeping log order within a lead;
2. every lead's match along the path is found for all leads at once: the
   anchor is the first entry into step 1; ``ordered`` looks up, per step, the
   next entry of the step's stage after the previous step's with one
   ``searchsorted``; ``strict`` measures the chain that starts at every entry
   into step 1 and keeps each lead's longest, the earliest of equals;
   ``any`` looks up each stage's first entry;
3. the per-step facts (visit, exit and the next stage, the three durations)
   are arrays, aggregated with ``bincount``, ``partition`` (only the ranks the
   percentiles need) and a ``searchsorted`` into the histogram's buckets; the
   report is assembled by the same code as the distributed report
   (:func:`~buyerjourney.bulk._funnel.assemble_report`), so that both keep one
   layout and one interpolation of the percentiles.

The result is a :class:`~buyerjourney.bulk._funnel.DistributedFunnelReport`:
the analytics' report with each duration distribution summarised by its
order statistics rather than kept value by value (so that ten million records
do not become millions of ``timedelta`` objects); its ``format()`` and
``describe()`` print the analytics report's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from buyerjourney._core.lifecycle import effective
from buyerjourney._core.records import RecordKind
from buyerjourney.bulk._columnar import ColumnarLog, numpy_or_raise, stable_order
from buyerjourney.bulk._funnel import (
    DURATION_METRICS,
    DistributedFunnelReport,
    ReportOptions,
    assemble_report,
    needed_ranks,
    report_options,
)
from buyerjourney.bulk._schema import KIND_CODE, KINDS, MICROSECOND, to_micros
from buyerjourney.errors import UnknownStage

Array = Any
"""A NumPy array (NumPy is optional, so arrays are typed loosely)."""

__all__ = ["columnar_funnel_report"]

_REVISED = KIND_CODE[RecordKind.REVISED]


def columnar_funnel_report(
    log: ColumnarLog,
    *,
    path: Sequence[str] | None = None,
    order: str = "ordered",
    window: timedelta | None = None,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> DistributedFunnelReport:
    """The funnel report of a columnar log, computed on its arrays.

    Its ``to_dict()`` equals that of
    ``buyerjourney.analytics.funnel_report(log.funnel, log.records(), ...)``
    with the same options (see that function for the definitions).

    Args:
        log: The log, as columns.
        path: The stages of the steps; by default the funnel's success path.
        order: ``"ordered"`` (the default), ``"strict"`` or ``"any"``.
        window: The conversion window from the entry into step 1 (``None``: none).
        as_of: Ignore records dated after this date: an aware datetime or an
            ISO-8601 string with an offset (``None``: the whole log).
        since: Count only leads that entered step 1 at or after this date.

    Returns:
        The report, durations summarised (count, quantiles, extremes and
        histogram of each distribution); empty when no lead entered step 1.

    Raises:
        MissingExtra: NumPy is not installed.
        TypeError: *log* is not a :class:`~buyerjourney.bulk.ColumnarLog`.
        UnknownStage: The path names a stage the funnel does not have, or a
            record of the log enters one (a log written with another funnel:
            its columns cannot code that stage; migrate the log, or use
            :func:`buyerjourney.analytics.funnel_report`, which shows such
            stages as detours).
        ValueError: The path is empty or names a stage twice, or the order or
            window is invalid.
        InvalidTouch: *as_of* or *since* is not an aware time.
    """
    np = numpy_or_raise("the columnar funnel report")
    if not isinstance(log, ColumnarLog):
        msg = f"'log' must be a buyerjourney.bulk.ColumnarLog (got {type(log).__name__})"
        raise TypeError(msg)
    options = report_options(
        log.funnel, path=path, order=order, window=window, as_of=as_of, since=since
    )
    entries = _Entries(np, log, options)
    leads = _match(np, entries, options)
    return _aggregate(np, log, entries, leads, options)


# ---------------------------------------------------------------- entries


class _Entries:
    """Every lead's stage entries up to the as-of date, grouped by lead, in log order.

    Attributes:
        lead: The lead code of each entry (grouped: equal codes are together).
        at: Microseconds.
        stage: The stage code (int64).
        start: For each entry, the position of its lead's first entry.
        end: For each entry, the position after its lead's last entry.
        journeys: How many leads have an entry.
    """

    def __init__(self, np: Any, log: ColumnarLog, options: ReportOptions) -> None:
        cols = log.columns
        kind = cols["kind"]
        wanted = np.zeros(len(KINDS), bool)
        wanted[[KIND_CODE[k] for k in KINDS if k.enters_stage]] = True
        mask = wanted[kind]
        no_target = cols["target"] < 0
        _check_targets(log, np.flatnonzero(mask & no_target))
        mask &= ~no_target
        if options.as_of_micros is not None:
            mask &= cols["at"] <= options.as_of_micros
        revised = np.flatnonzero(kind == _REVISED)
        if revised.shape[0]:
            mask &= _effective(np, log, revised)
        rows = np.flatnonzero(mask)
        lead = cols["lead"][rows]
        order = stable_order(np, lead)
        rows = rows[order]
        self.lead = lead[order]
        self.at = cols["at"][rows]
        self.stage = cols["target"][rows].astype(np.int64)
        n = int(rows.shape[0])
        first = np.ones(n, bool)
        if n:
            np.not_equal(self.lead[1:], self.lead[:-1], out=first[1:])
        heads = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        self.start = heads[group]
        self.end = np.append(heads[1:], n)[group]
        self.journeys = int(heads.shape[0])


def _check_targets(log: ColumnarLog, rows: Array) -> None:
    """Refuse stage entries whose stage the columnar log could not code (not in its funnel)."""
    for i in rows.tolist():
        record = log.record(int(i))
        if record.target is not None:
            raise UnknownStage(record.target, log.stage_names, funnel_name=log.funnel.name)


def _effective(np: Any, log: ColumnarLog, revised: Array) -> Array:
    """Which rows count once the log's revisions are applied (by :func:`effective` itself).

    Only the leads that have a revision are materialised; the rule stays in
    one place.
    """
    lead = log.columns["lead"]
    keep = np.ones(lead.shape[0], bool)
    rows = np.flatnonzero(np.isin(lead, np.unique(lead[revised])))
    records = [log.record(int(i)) for i in rows]
    kept = {id(r) for r in effective(records)}
    dropped = [int(i) for i, r in zip(rows.tolist(), records, strict=True) if id(r) not in kept]
    keep[dropped] = False
    return keep


# ---------------------------------------------------------------- matching


class _Leads:
    """The counted leads (anchor between since and as-of) and their matches.

    Attributes:
        anchor: When each lead first entered step 1 (µs).
        start: The position of each lead's first entry.
        end: The position after each lead's last entry.
        reached: How many steps each lead reached (at least one).
        visit: ``visit[k]``: the entry at which each lead reached step k (-1: not reached).
        reach: ``reach[k]``: when each lead reached step k (µs; for ``any``,
            when the last of steps 1..k was first entered).
    """

    def __init__(self, np: Any, anchor: Array, start: Array, end: Array, steps: int) -> None:
        n = int(anchor.shape[0])
        self.anchor = anchor
        self.start = start
        self.end = end
        self.reached = np.zeros(n, np.int64)
        self.visit = np.full((steps, n), -1, np.int64)
        self.reach = np.zeros((steps, n), np.int64)


def _match(np: Any, entries: _Entries, options: ReportOptions) -> _Leads:
    opts = options.options
    codes = {name: i for i, name in enumerate(options.funnel.stage_names)}
    steps = [codes[name] for name in opts.path]
    stage = entries.stage
    # the anchor: each lead's first entry into step 1
    into_first = np.flatnonzero(stage == steps[0])
    if into_first.shape[0]:
        lead_of = entries.lead[into_first]
        head = np.ones(into_first.shape[0], bool)
        np.not_equal(lead_of[1:], lead_of[:-1], out=head[1:])
        firsts = into_first[head]
    else:
        firsts = into_first
    anchors = entries.at[firsts]
    if opts.since is not None:
        kept = anchors >= to_micros(opts.since)
        firsts, anchors = firsts[kept], anchors[kept]
    leads = _Leads(np, anchors, entries.start[firsts], entries.end[firsts], len(steps))
    if not firsts.shape[0]:
        return leads
    within = _within(np, entries, leads, options)
    if opts.order == "strict":
        _strict(np, entries, leads, steps, within)
    else:
        _ordered_or_any(np, entries, leads, steps, firsts, within, any_order=opts.order == "any")
    return leads


def _spans(np: Any, leads: _Leads) -> tuple[Array, Array]:
    """The entries of the counted leads: for each, its lead (an index into *leads*) and position."""
    lengths = leads.end - leads.start
    owner = np.repeat(np.arange(lengths.shape[0]), lengths)
    offsets = np.repeat(leads.start - np.cumsum(lengths) + lengths, lengths)
    return owner, offsets + np.arange(int(lengths.sum()))


def _within(np: Any, entries: _Entries, leads: _Leads, options: ReportOptions) -> Array | None:
    """Per entry: whether it lies within the window of its lead's anchor (``None``: no window)."""
    window = options.options.window
    if window is None:
        return None
    # the anchor of each entry's lead (leads that are not counted never ask)
    anchor_at = np.zeros(entries.at.shape[0], np.int64)
    owner, positions = _spans(np, leads)
    anchor_at[positions] = leads.anchor[owner]
    within: Array = (entries.at - anchor_at) <= window // MICROSECOND
    return within


def _ordered_or_any(  # noqa: PLR0917  (the arrays of one computation)
    np: Any,
    entries: _Entries,
    leads: _Leads,
    steps: Sequence[int],
    firsts: Array,
    within: Array | None,
    *,
    any_order: bool,
) -> None:
    alive = np.arange(firsts.shape[0])
    position = firsts
    leads.visit[0] = firsts
    leads.reach[0] = leads.anchor
    leads.reached[:] = 1
    for k in range(1, len(steps)):
        candidates = entries.stage == steps[k]
        if within is not None and not any_order:
            candidates &= within
        found = np.flatnonzero(candidates)
        if any_order:  # the first entry into the stage, wherever it is
            index = np.searchsorted(found, leads.start[alive], side="left")
        else:  # the next entry into the stage after the previous step's
            index = np.searchsorted(found, position, side="right")
        if not found.shape[0]:
            break
        hit = found[np.minimum(index, found.shape[0] - 1)]
        ok = (index < found.shape[0]) & (hit < leads.end[alive])
        if any_order and within is not None:
            ok &= within[hit]
        alive, position = alive[ok], hit[ok]
        if not alive.shape[0]:
            break
        leads.visit[k, alive] = position
        at = entries.at[position]
        leads.reach[k, alive] = np.maximum(at, leads.reach[k - 1, alive]) if any_order else at
        leads.reached[alive] = k + 1


def _strict(
    np: Any,
    entries: _Entries,
    leads: _Leads,
    steps: Sequence[int],
    within: Array | None,
) -> None:
    stage = entries.stage
    # every chain start: an entry into step 1 of a counted lead, within the window
    counted = np.zeros(stage.shape[0], bool)
    owner, positions = _spans(np, leads)
    counted[positions] = True
    lead_of = np.full(stage.shape[0], -1, np.int64)
    lead_of[positions] = owner
    is_start = counted & (stage == steps[0])
    if within is not None:
        is_start &= within
    starts = np.flatnonzero(is_start)
    owners = lead_of[starts]  # grouped by lead, in order: leads are in entry order
    end = leads.end[owners]
    length = np.ones(starts.shape[0], np.int64)
    going = np.arange(starts.shape[0])
    for j in range(1, len(steps)):
        nxt = starts[going] + j
        ok = nxt < end[going]
        safe = np.where(ok, nxt, 0)
        ok &= stage[safe] == steps[j]
        if within is not None:
            ok &= within[safe]
        going = going[ok]
        if not going.shape[0]:
            break
        length[going] += 1
    # each lead's longest chain, the earliest of equals (starts are grouped by lead, in order)
    group_head = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    best = np.maximum.reduceat(length, group_head)
    group = np.cumsum(np.r_[True, owners[1:] != owners[:-1]]) - 1
    is_best = length == best[group]
    chosen = np.flatnonzero(is_best)
    first_best = chosen[np.r_[True, owners[chosen[1:]] != owners[chosen[:-1]]]]
    who = owners[first_best]
    begin = starts[first_best]
    count = length[first_best]
    leads.reached[who] = count
    for k in range(len(steps)):
        has = count > k
        if not has.any():
            break
        leads.visit[k, who[has]] = begin[has] + k
        leads.reach[k, who[has]] = entries.at[begin[has] + k]


# ---------------------------------------------------------------- aggregates


def _aggregate(
    np: Any, log: ColumnarLog, entries: _Entries, leads: _Leads, options: ReportOptions
) -> DistributedFunnelReport:
    bounds = np.array(options.histogram_bounds, np.int64)
    n_stages = len(log.stage_names)
    counts: dict[int, tuple[int, int]] = {}
    branches: list[tuple[int, str, int, int]] = []
    sizes: dict[tuple[int, str], int] = {}
    values: dict[tuple[int, str, int], int] = {}
    histogram: dict[tuple[int, str, int], int] = {}
    for k in range(len(options.options.path)):
        members = np.flatnonzero(leads.reached > k)
        if not members.shape[0]:
            break
        converted = leads.reached[members] > k + 1
        visit = leads.visit[k, members]
        reach = leads.reach[k, members]
        exited = visit + 1 < leads.end[members]
        after = visit[exited] + 1
        next_stage = entries.stage[after]
        counts[k] = (int(members.shape[0]), int(exited.sum()))
        went = np.bincount(next_stage, minlength=n_stages)
        went_converted = np.bincount(next_stage[converted[exited]], minlength=n_stages)
        for s in np.flatnonzero(went).tolist():
            branches.append((k, log.stage_names[s], int(went[s]), int(went_converted[s])))
        durations = {
            "time_in_stage": entries.at[after] - entries.at[visit[exited]],
            "time_to_convert": leads.reach[k + 1, members[converted]] - reach[converted]
            if k + 1 < leads.reach.shape[0]
            else np.zeros(0, np.int64),
            "time_from_start": reach - leads.anchor[members],
        }
        for metric in DURATION_METRICS:
            _summarise(np, durations[metric], (k, metric), bounds, sizes, values, histogram)
    return assemble_report(
        options,
        journeys=entries.journeys,
        counts=counts,
        branches=branches,
        sizes=sizes,
        values=values,
        histogram=histogram,
    )


def _summarise(  # noqa: PLR0917  (fills the aggregates of one distribution)
    np: Any,
    durations: Array,
    key: tuple[int, str],
    bounds: Array,
    sizes: dict[tuple[int, str], int],
    values: dict[tuple[int, str, int], int],
    histogram: dict[tuple[int, str, int], int],
) -> None:
    n = int(durations.shape[0])
    sizes[key] = n
    if not n:
        return
    ranks = needed_ranks(n)
    part = np.partition(durations, ranks)
    for rank in ranks:
        values[(key[0], key[1], rank)] = int(part[rank])
    buckets = np.bincount(
        np.searchsorted(bounds, durations, side="right"), minlength=len(bounds) + 1
    )
    for b, count in enumerate(buckets.tolist()):
        if count:
            histogram[(key[0], key[1], b)] = int(count)
