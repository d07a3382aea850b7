"""Replay and the funnel report on Dask (a LocalCluster of two worker processes).

The results are compared with the single-process engine on the same stream.
The report's order statistics, selected on the cluster, are compared with
``analytics.funnel_report`` on generated logs with many ties, with every
rank in one narrow range, and spread over every bucket (one partition and
many; small and large logs; many refinement rounds); a property compares
the selection with a sort on any durations (synchronous scheduler); and on
20,000 leads the durations that reach the client are counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import missing_backend

try:
    import dask
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    from distributed import Client, LocalCluster
except ImportError as exc:  # pragma: no cover - without the dask extra
    missing_backend("dask", f"dask or distributed is not importable ({exc})")

from buyerjourney import Record, RecordKind, Touch
from buyerjourney import dask as bj_dask
from buyerjourney.analytics import funnel_report
from buyerjourney.bulk import InvalidBatch, from_micros, to_micros
from buyerjourney.bulk._funnel import needed_ranks
from test_bulk_batch import PIPELINE, by_lead, by_lead_seq, end_of, engine_frames, stream

# distributed's shutdown of worker processes can leave sockets for the
# garbage collector; the suite turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="session")
def client() -> Iterator[Any]:
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    with cluster, Client(cluster) as connected:
        yield connected


def test_20k_touches_equal_the_single_process_result(client: Any) -> None:
    table = stream(20_000, 2_000, seed=30, hours=0.02)
    until = end_of(table, timedelta(days=5))
    journeys, records = engine_frames(table, until)
    result = bj_dask.replay(
        PIPELINE, dd.from_pandas(table, npartitions=4), until=until, touches_per_call=3000
    )
    got_journeys = result.journeys.compute()
    assert list(got_journeys.dtypes.astype(str)) == list(journeys.dtypes.astype(str))
    pd.testing.assert_frame_equal(by_lead(got_journeys), by_lead(journeys))
    pd.testing.assert_frame_equal(
        by_lead_seq(result.records.compute()), by_lead_seq(records), check_dtype=False
    )
    report = bj_dask.funnel_report(result.records, PIPELINE.funnel)
    engine = PIPELINE.engine()
    engine.ingest(
        Touch(r.touch_id, r.lead_id, from_micros(r.at), r.kind) for r in table.itertuples()
    )
    engine.advance(until)
    assert report.to_dict() == funnel_report(PIPELINE.funnel, engine.records).to_dict()


def test_regression_many_partitions_need_until(client: Any) -> None:
    table = stream(1200, 150, seed=5, hours=0.3)
    until = end_of(table)
    journeys, records = engine_frames(table, until)
    result = bj_dask.replay(
        PIPELINE,
        dd.from_pandas(table, npartitions=3),
        until=until,
        partitions=12,
        touches_per_call=5,
    )
    pd.testing.assert_frame_equal(by_lead(result.journeys.compute()), by_lead(journeys))
    got = result.records.compute()
    assert int((got["kind"] == "escalation").sum()) == int((records["kind"] == "escalation").sum())


def test_errors_are_typed_on_the_client(client: Any) -> None:
    table = stream(50, 5, seed=31)
    with pytest.raises(InvalidBatch, match="repeats"):
        bj_dask.replay(
            PIPELINE,
            dd.from_pandas(table.assign(touch_id="same"), npartitions=2),
            until=end_of(table),
        )
    with pytest.raises(InvalidBatch, match="no column 'kind'"):
        bj_dask.replay(
            PIPELINE,
            dd.from_pandas(table.drop(columns="kind"), npartitions=1),
            until=end_of(table),
        )


# ---------------------------------------------------------------- exact order statistics

FUNNEL = PIPELINE.funnel
T0_US = to_micros(datetime(2024, 3, 1, tzinfo=timezone.utc))
STAGES = ("inquiry", "mql", "sal", "sql", "opportunity", "won")
HOUR_US = 3_600 * 10**6
DAY_US = 24 * HOUR_US


def entries_log(n_leads: int, *, seed: int, gaps: Any) -> tuple[Any, list[Record]]:
    """Stage entries of *n_leads* leads walking the waterfall, *gaps(rng, n)* µs apart.

    Returns the records as a pandas frame (the columns ``funnel_report``
    reads) and as :class:`Record` objects in log order, for the single-process report.
    """
    rng = np.random.default_rng(seed)
    reached = rng.integers(1, len(STAGES) + 1, n_leads)
    lost = (rng.random(n_leads) < 0.3) & (reached < len(STAGES))
    lengths = reached + lost
    lead = np.repeat(np.arange(n_leads), lengths)
    first = np.cumsum(lengths) - lengths  # each lead's first row
    lead_seq = np.arange(lead.shape[0]) - first[lead]
    stage = np.asarray(STAGES, object)[np.minimum(lead_seq, len(STAGES) - 1)]
    stage[lost[lead] & (lead_seq == reached[lead])] = "lost"
    step = gaps(rng, lead.shape[0]).astype(np.int64)
    step[first] = rng.integers(0, 30 * DAY_US, n_leads)  # the lead's start after T0
    total = np.cumsum(step)
    at = T0_US + total - (total[first] - step[first])[lead]
    names = np.char.add("lead-", np.char.zfill(lead.astype(str), 6))
    rows = sorted(zip(at.tolist(), names.tolist(), lead_seq.tolist(), stage.tolist(), strict=True))
    frame = pd.DataFrame(rows, columns=["at", "lead_id", "lead_seq", "target"])
    frame["kind"] = np.where(frame["lead_seq"] == 0, "created", "transition")
    records = [
        Record(
            lead_id,
            seq,
            from_micros(at),
            RecordKind.CREATED if lead_seq == 0 else RecordKind.TRANSITION,
            target=target,
        )
        for seq, (at, lead_id, lead_seq, target) in enumerate(rows)
    ]
    return frame, records


def ties(rng: Any, n: int) -> Any:
    """Whole hours from 0 to 3: every duration is one of four values (or a sum of them)."""
    return rng.integers(0, 4, n) * HOUR_US


def same_bucket(rng: Any, n: int) -> Any:
    """Two days and 0 to 40 µs: every rank in one histogram bucket and one narrow range."""
    return 2 * DAY_US + rng.integers(0, 41, n)


def spread(rng: Any, n: int) -> Any:
    """Exponential, mean a day, whole minutes: every histogram bucket, some ties."""
    return (rng.exponential(DAY_US, n) // 60_000_000 * 60_000_000).astype(np.int64)


@pytest.mark.parametrize(
    ("gaps", "n_leads", "npartitions"),
    [
        (ties, 7, 1),
        (ties, 3000, 1),
        (ties, 3000, 8),
        (same_bucket, 12, 3),
        (same_bucket, 3000, 1),
        (same_bucket, 3000, 8),
        (spread, 40, 5),
        (spread, 3000, 8),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_order_statistics_equal_the_single_process_report(
    client: Any, gaps: Any, n_leads: int, npartitions: int
) -> None:
    frame, records = entries_log(n_leads, seed=n_leads + npartitions, gaps=gaps)
    report = bj_dask.funnel_report(dd.from_pandas(frame, npartitions=npartitions), FUNNEL)
    assert report.to_dict() == funnel_report(FUNNEL, records).to_dict()


def test_many_refinement_rounds_still_give_the_exact_report(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four sub-ranges a round, at most three durations fetched: many rounds, the same report."""
    monkeypatch.setattr(bj_dask, "_SUB_BUCKETS", 4)
    monkeypatch.setattr(bj_dask, "_FETCH_AT_MOST", 3)
    fetched: list[int] = []
    wrapped = bj_dask._client_values

    def counting(got: Any) -> Any:
        fetched.append(len(got))
        return wrapped(got)

    monkeypatch.setattr(bj_dask, "_client_values", counting)
    rounds: list[int] = []
    summed = bj_dask._summed

    def counting_rounds(parts: Any, columns: Any) -> Any:
        rounds.append(1)
        return summed(parts, columns)

    monkeypatch.setattr(bj_dask, "_summed", counting_rounds)
    frame, records = entries_log(600, seed=41, gaps=spread)
    report = bj_dask.funnel_report(dd.from_pandas(frame, npartitions=4), FUNNEL, order="any")
    assert report.to_dict() == funnel_report(FUNNEL, records, order="any").to_dict()
    assert fetched  # some ranges were small enough to fetch
    assert len(rounds) >= 4  # the histogram, then rounds of four sub-ranges
    assert max(fetched) <= 3 * 10 * 3 * len(STAGES)  # at most 3 per needed rank


def test_the_client_receives_few_durations(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On 20,000 leads the client gets the durations of a few narrow ranges, not every one."""
    fetched: list[int] = []
    wrapped = bj_dask._client_values

    def counting(got: Any) -> Any:
        fetched.append(len(got))
        return wrapped(got)

    monkeypatch.setattr(bj_dask, "_client_values", counting)
    frame, records = entries_log(20_000, seed=42, gaps=spread)
    report = bj_dask.funnel_report(dd.from_pandas(frame, npartitions=8), FUNNEL)
    expected = funnel_report(FUNNEL, records).to_dict()
    assert report.to_dict() == expected
    durations = sum(
        step[metric]["count"]
        for step in expected["steps"]
        for metric in ("time_in_stage", "time_to_convert", "time_from_start")
    )
    assert durations > 100_000  # what the client used to receive: every duration
    assert sum(fetched) < durations // 50


durations_lists = st.lists(
    st.one_of(
        st.integers(-3, 3),  # ties around zero
        st.integers(0, 10**6),
        st.integers(-(10**17), 10**17),  # wider than any real duration
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(
    columns=st.lists(durations_lists, min_size=1, max_size=3),
    npartitions=st.integers(1, 4),
    sub_buckets=st.integers(2, 9),
    fetch_at_most=st.integers(0, 8),
)
def test_selected_ranks_are_the_sorted_values(
    columns: list[list[int]], npartitions: int, sub_buckets: int, fetch_at_most: int
) -> None:
    """Any durations, partitions, split and fetch sizes: the ranks of a sort, exact histograms."""
    steps = [step for step, values in enumerate(columns) for _ in values]
    values = [value for column in columns for value in column]
    frame = pd.DataFrame(
        {
            "step": pd.array(steps, dtype="Int64"),
            "time_in_stage": pd.array(values, dtype="Int64"),
            "time_to_convert": pd.array([None] * len(values), dtype="Int64"),
            "time_from_start": pd.array(values[::-1], dtype="Int64"),
        }
    )
    bounds = (0, 1000, 10**9)
    with (
        dask.config.set(scheduler="synchronous"),
        mock.patch.object(bj_dask, "_SUB_BUCKETS", sub_buckets),
        mock.patch.object(bj_dask, "_FETCH_AT_MOST", fetch_at_most),
    ):
        facts = dd.from_pandas(frame, npartitions=npartitions, sort=False)
        (histogram_frame,) = dask.compute(bj_dask._histogram(pd, facts, bounds))
        sizes, got, histogram = bj_dask._order_statistics(dask, facts, histogram_frame)
    expected: dict[tuple[int, str, int], int] = {}
    for metric in ("time_in_stage", "time_from_start"):
        for step in range(len(columns)):
            chosen = np.sort(frame.loc[frame["step"] == step, metric].to_numpy(np.int64))
            assert sizes[(step, metric)] == chosen.shape[0]
            for rank in needed_ranks(chosen.shape[0]):
                expected[(step, metric, rank)] = int(chosen[rank])
            buckets = np.searchsorted(np.asarray(bounds), chosen, side="right")
            for bucket in range(len(bounds) + 1):
                assert histogram.get((step, metric, bucket), 0) == int((buckets == bucket).sum())
    assert got == expected
    assert not any(metric == "time_to_convert" for _, metric in sizes)


def test_a_range_wider_than_the_signed_integers_is_split_exactly() -> None:
    """Regression: sub-ranges of a bucket spanning more than 2**63 wrapped in signed arithmetic."""
    most = 2**63 - 1
    values = [-most, 3_000_000_000, *np.random.default_rng(1).integers(-most, 0, 3000).tolist()]
    frame = pd.DataFrame(
        {
            "step": pd.array([0] * len(values), dtype="Int64"),
            "time_in_stage": pd.array(values, dtype="Int64"),
            "time_to_convert": pd.array([None] * len(values), dtype="Int64"),
            "time_from_start": pd.array([None] * len(values), dtype="Int64"),
        }
    )
    with dask.config.set(scheduler="synchronous"):
        facts = dd.from_pandas(frame, npartitions=2, sort=False)
        (histogram_frame,) = dask.compute(
            bj_dask._histogram(pd, facts, (3_600_000_000, 86_400_000_000))
        )
        _, got, _ = bj_dask._order_statistics(dask, facts, histogram_frame)
    ordered = np.sort(np.asarray(values, np.int64))
    assert got == {(0, "time_in_stage", r): int(ordered[r]) for r in needed_ranks(len(values))}
