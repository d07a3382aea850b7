"""Replay and the funnel report on Dask (a LocalCluster of two worker processes).

The results are compared with the single-process engine on the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from conftest import missing_backend

try:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster
except ImportError as exc:  # pragma: no cover - without the dask extra
    missing_backend("dask", f"dask or distributed is not importable ({exc})")

from buyerjourney import Touch
from buyerjourney import dask as bj_dask
from buyerjourney.analytics import funnel_report
from buyerjourney.bulk import InvalidBatch, from_micros
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
