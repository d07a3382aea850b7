"""Properties of the reports over random logs (see ``test_analytics_helpers.logs``).

Rates lie in [0, 1]; step conversion never exceeds 100 %; leads are
conserved at every step; a report as of a date equals the report of the log
cut at that date; leads missing a property form their own group. Runs under
the project's Hypothesis profiles (``HYPOTHESIS_PROFILE=thorough`` for more).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import Funnel
from buyerjourney.analytics import (
    BRANCH_KINDS,
    ORDERS,
    Durations,
    FunnelReport,
    funnel_breakdown,
    funnel_cohorts,
    funnel_report,
    handoff_report,
)
from test_analytics_helpers import SEGMENTS, Log, logs, times_of


@st.composite
def cases(draw: st.DrawFn) -> tuple[Funnel, Log, dict[str, object]]:
    """A random log and random report options: path, order, window, as-of and since."""
    funnel, log = draw(logs())
    names = [s.name for s in funnel.stages]
    path = draw(
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True),
        )
    )
    times = times_of(log)
    options: dict[str, object] = {
        "path": path,
        "order": draw(st.sampled_from(ORDERS)),
        "window": draw(st.one_of(st.none(), st.integers(0, 10 * 24).map(_hours))),
        "as_of": draw(st.one_of(st.none(), st.sampled_from(times))),
        "since": draw(st.one_of(st.none(), st.sampled_from(times))),
    }
    return funnel, log, options


def _hours(n: int) -> timedelta:
    return timedelta(hours=n)


def _rates(result: FunnelReport) -> list[float]:
    return [
        r
        for row in result.steps
        for r in (row.step_conversion, row.overall_conversion, row.drop_off)
        if r is not None
    ]


@given(cases())
def test_rates_lie_between_zero_and_one(case: tuple[Funnel, Log, dict[str, object]]) -> None:
    funnel, log, options = case
    result = funnel_report(funnel, log.records, **options)  # type: ignore[arg-type]
    assert all(0 <= r <= 1 for r in _rates(result))


@given(cases())
def test_step_conversion_is_at_most_one(case: tuple[Funnel, Log, dict[str, object]]) -> None:
    funnel, log, options = case
    result = funnel_report(funnel, log.records, **options)  # type: ignore[arg-type]
    counts = [row.entered for row in result.steps]
    assert counts == sorted(counts, reverse=True)
    for previous, row in zip(result.steps, result.steps[1:], strict=False):
        assert row.step_conversion is None or row.step_conversion <= 1
        assert row.entered <= previous.entered
        assert previous.converted == row.entered
    assert result.steps[-1].converted is None


@given(cases())
def test_leads_are_conserved_at_every_step(case: tuple[Funnel, Log, dict[str, object]]) -> None:
    funnel, log, options = case
    result = funnel_report(funnel, log.records, **options)  # type: ignore[arg-type]
    assert result.leads <= result.journeys
    for row in result.steps:
        assert row.entered == row.exited + row.balance
        assert row.balance >= 0
        assert sum(b.leads for b in row.exits) == row.exited
        assert all(0 <= b.converted <= b.leads and b.kind in BRANCH_KINDS for b in row.exits)
        assert row.time_in_stage.count == row.exited
        assert row.time_from_start.count == row.entered
        assert row.time_to_convert.count == (row.converted or 0)
        assert all(d >= timedelta(0) for d in row.time_to_convert.values)
        if options["window"] is not None:
            assert all(d <= options["window"] for d in row.time_from_start.values)


@given(cases())
def test_as_of_equals_the_log_cut_at_that_date(case: tuple[Funnel, Log, dict[str, object]]) -> None:
    funnel, log, options = case
    as_of = options["as_of"]
    assert isinstance(as_of, datetime) or as_of is None
    cut = [r for r in log.records if as_of is None or r.at <= as_of]
    full_report = funnel_report(funnel, log.records, **options)  # type: ignore[arg-type]
    assert full_report == funnel_report(funnel, cut, **options)  # type: ignore[arg-type]
    assert funnel_breakdown(
        funnel,
        log.records,
        "segment",
        attribution="last",
        **options,  # type: ignore[arg-type]
    ) == funnel_breakdown(funnel, cut, "segment", attribution="last", **options)  # type: ignore[arg-type]
    assert funnel_cohorts(funnel, log.records, **options) == funnel_cohorts(  # type: ignore[arg-type]
        funnel,
        cut,
        **options,  # type: ignore[arg-type]
    )
    dates = {"as_of": as_of, "since": options["since"]}
    assert handoff_report(funnel, log.records, **dates) == handoff_report(funnel, cut, **dates)  # type: ignore[arg-type]


@given(cases(), st.sampled_from(("first", "last")))
def test_missing_values_form_their_own_group(
    case: tuple[Funnel, Log, dict[str, object]], attribution: str
) -> None:
    funnel, log, options = case
    result = funnel_breakdown(
        funnel,
        log.records,
        "segment",
        attribution=attribution,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    total = result.total
    # the groups partition the leads, step by step
    for k, row in enumerate(total.steps):
        assert sum(g.report.steps[k].entered for g in result.groups) == row.entered
    assert all(g.report.leads > 0 for g in result.groups)
    labels = [(g.missing, g.value) for g in result.groups]
    assert len(labels) == len(set(labels))
    missing = [g for g in result.groups if g.missing]
    assert len(missing) <= 1
    assert all(g.value is None for g in missing)
    assert all(g.value in SEGMENTS for g in result.groups if not g.missing)
    if missing:
        assert result.groups[-1].missing
    # a lead never given a segment is counted in the missing group, whatever else exists
    never = {
        r.lead_id
        for r in log.records
        if r.kind.value == "created" and "segment" not in r.data.get("attributes", {})
    } - {r.lead_id for r in log.records if "segment" in r.data.get("attributes", {})}
    if never & _counted_leads(funnel, log, options):
        assert missing


def _counted_leads(funnel: Funnel, log: Log, options: dict[str, object]) -> set[str]:
    counted = set()
    for lead in {r.lead_id for r in log.records}:
        records = [r for r in log.records if r.lead_id == lead]
        if funnel_report(funnel, records, **options).leads:  # type: ignore[arg-type]
            counted.add(lead)
    return counted


@given(cases())
def test_the_report_of_the_whole_is_the_sum_of_the_reports_of_each_lead(
    case: tuple[Funnel, Log, dict[str, object]],
) -> None:
    funnel, log, options = case
    result = funnel_report(funnel, log.records, **options)  # type: ignore[arg-type]
    singles = [
        funnel_report(funnel, [r for r in log.records if r.lead_id == lead], **options)  # type: ignore[arg-type]
        for lead in dict.fromkeys(r.lead_id for r in log.records)
    ]
    for k, row in enumerate(result.steps):
        assert row.entered == sum(s.steps[k].entered for s in singles)
        assert row.exited == sum(s.steps[k].exited for s in singles)


@given(cases())
def test_handoff_rates_lie_between_zero_and_one(
    case: tuple[Funnel, Log, dict[str, object]],
) -> None:
    funnel, log, options = case
    result = handoff_report(funnel, log.records, as_of=options["as_of"], since=options["since"])  # type: ignore[arg-type]
    assert result.acceptance_rate is None or 0 <= result.acceptance_rate <= 1
    assert result.time_to_accept.count == result.accepted
    assert sum(r.count for r in result.routes) == result.handoffs
    assert sum(result.rejection_reasons.values()) == result.rejected
    assert sum(t.waiting for t in result.teams) == result.pending
    json.dumps(result.to_dict())


@given(cases())
def test_every_report_is_json_ready_and_prints(case: tuple[Funnel, Log, dict[str, object]]) -> None:
    funnel, log, options = case
    for result in (
        funnel_report(funnel, log.records, **options),  # type: ignore[arg-type]
        funnel_breakdown(funnel, log.records, "segment", **options),  # type: ignore[arg-type]
        funnel_cohorts(funnel, log.records, period="month", **options),  # type: ignore[arg-type]
    ):
        json.dumps(result.to_dict())
        assert result.format()


@given(st.lists(st.integers(0, 10**9).map(lambda s: timedelta(seconds=s)), min_size=1))
def test_percentiles_are_ordered_and_within_the_values(values: list[timedelta]) -> None:
    durations = Durations(values)
    quantiles = [durations.percentile(q / 10) for q in range(11)]
    assert quantiles[0] == min(values)
    assert quantiles[-1] == max(values)
    assert quantiles == sorted(quantiles)  # type: ignore[type-var]
    assert sum(n for _, n in durations.histogram()) == len(values)
