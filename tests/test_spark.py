"""Replay and the funnel report on Spark (local[2]), compared with the single-process engine.

One SparkSession for the whole test session (bound to 127.0.0.1, the UI
off, four shuffle partitions, UTC). Small Arrow batches put one lead's
touches in several batches, so the hold-back of straddling leads is
exercised.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conftest import missing_backend

try:
    import pandas as pd
    import pyspark  # noqa: F401
    from pyspark.testing import assertDataFrameEqual
except ImportError as exc:  # pragma: no cover - without the spark extra
    missing_backend("spark", f"pyspark is not importable ({exc})")

from buyerjourney import spark as bj_spark
from buyerjourney.analytics import funnel_report
from buyerjourney.bulk import BatchNotInTimeOrder, InvalidBatch, replay_batch
from buyerjourney.errors import InvalidAction
from test_bulk_batch import (
    PIPELINE,
    by_lead,
    by_lead_seq,
    end_of,
    engine_frames,
    stream,
)

# PySpark's own modules raise DeprecationWarnings and ResourceWarnings (sockets
# to the JVM) that the library cannot avoid; the suite turns warnings into errors.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pyspark"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(scope="module")
def big() -> tuple[Any, Any, Any]:
    """20,000 touches of 2,000 leads, and the single-process result."""
    table = stream(20_000, 2_000, seed=20, hours=0.02)
    until = end_of(table, timedelta(days=5))
    return table, until, engine_frames(table, until)


def test_20k_touches_equal_the_single_process_result(spark: Any, big: Any) -> None:
    table, until, (journeys, records) = big
    result = bj_spark.replay(PIPELINE, spark.createDataFrame(table), until=until, partitions=3)
    try:
        pd.testing.assert_frame_equal(by_lead(result.journeys.toPandas()), by_lead(journeys))
        pd.testing.assert_frame_equal(by_lead_seq(result.records.toPandas()), by_lead_seq(records))
        report = bj_spark.funnel_report(result.records, PIPELINE.funnel)
    finally:
        result.unpersist()
    single = _single_report(table, until)
    assert report.to_dict() == single.to_dict()
    assert report.journeys == len(journeys)


def _single_report(table: Any, until: Any, **options: Any) -> Any:
    from buyerjourney import Touch  # noqa: PLC0415
    from buyerjourney.bulk import from_micros  # noqa: PLC0415

    engine = PIPELINE.engine()
    engine.ingest(
        Touch(r.touch_id, r.lead_id, from_micros(r.at), r.kind) for r in table.itertuples()
    )
    engine.advance(until)
    return funnel_report(PIPELINE.funnel, engine.records, **options)


def test_leads_straddling_arrow_batches_and_many_partitions(spark: Any) -> None:
    table = stream(3000, 40, seed=21, hours=0.1)  # about 75 touches a lead, batches of 500
    until = end_of(table, timedelta(days=3))
    journeys, records = engine_frames(table, until)
    for partitions, per_call in ((1, 60), (7, 1000)):
        result = bj_spark.replay(
            PIPELINE,
            spark.createDataFrame(table),
            until=until,
            partitions=partitions,
            touches_per_call=per_call,
        )
        try:
            got = result.records.toPandas()
            pd.testing.assert_frame_equal(by_lead(result.journeys.toPandas()), by_lead(journeys))
            pd.testing.assert_frame_equal(by_lead_seq(got), by_lead_seq(records))
        finally:
            result.unpersist()


def test_tiny_frames_with_sparks_own_equality(spark: Any) -> None:
    table = stream(60, 6, seed=22)
    until = end_of(table, timedelta(days=4))
    journeys, records = engine_frames(table, until)
    result = bj_spark.replay(PIPELINE, spark.createDataFrame(table), until=until)
    try:
        schema = result.journeys.schema
        assertDataFrameEqual(result.journeys, spark.createDataFrame(journeys, schema))
        assertDataFrameEqual(result.records, spark.createDataFrame(records, result.records.schema))
    finally:
        result.unpersist()


def test_regression_lead_sorted_input_is_replayed_in_time_order(spark: Any) -> None:
    """The prototype's first trap: the adapter sorts each lead group by time itself."""
    table = stream(2000, 100, seed=23)
    until = end_of(table)
    _, records = engine_frames(table, until)
    lead_sorted = spark.createDataFrame(table).repartition(1).sortWithinPartitions("lead_id")
    result = bj_spark.replay(PIPELINE, lead_sorted, until=until)
    try:
        pd.testing.assert_frame_equal(by_lead_seq(result.records.toPandas()), by_lead_seq(records))
    finally:
        result.unpersist()
    # a naive mapInPandas that hands the lead-sorted batch to the bulk replay fails loudly
    naive = lead_sorted.mapInPandas(
        lambda frames: (replay_batch(PIPELINE, f, until=until).journeys for f in frames),
        "lead_id string, stage string, highest string, owner string, score double, "
        "version long, pending boolean, escalated boolean, created long, updated long, "
        "entered long",
    )
    with pytest.raises(Exception, match=BatchNotInTimeOrder.__name__):
        naive.collect()


def test_regression_many_partitions_need_until(spark: Any) -> None:
    """The prototype's second trap: with until, every escalation is there, in any partitioning."""
    table = stream(1200, 150, seed=5, hours=0.3)  # the batch tests' trap: 10 escalations
    until = end_of(table)
    journeys, records = engine_frames(table, until)
    result = bj_spark.replay(
        PIPELINE, spark.createDataFrame(table), until=until, partitions=24, touches_per_call=5
    )
    try:
        pd.testing.assert_frame_equal(by_lead(result.journeys.toPandas()), by_lead(journeys))
        escalations = result.records.filter("kind = 'escalation'").count()
    finally:
        result.unpersist()
    assert escalations == int((records["kind"] == "escalation").sum()) > 0


def test_timestamps_and_column_mapping(spark: Any) -> None:
    table = stream(300, 20, seed=25)
    until = end_of(table, timedelta(days=1))
    journeys, _ = engine_frames(table, until)
    renamed = table.rename(columns={"lead_id": "customer", "at": "ts"})
    renamed["ts"] = pd.to_datetime(renamed["ts"], unit="us", utc=True)
    result = bj_spark.replay(
        PIPELINE,
        spark.createDataFrame(renamed),
        until=until,
        columns={"lead_id": "customer", "at": "ts"},
    )
    try:
        pd.testing.assert_frame_equal(by_lead(result.journeys.toPandas()), by_lead(journeys))
    finally:
        result.unpersist()


def test_errors_are_typed_on_the_driver(spark: Any) -> None:
    table = stream(50, 5, seed=26)
    frame = spark.createDataFrame(table.assign(touch_id="same"))
    with pytest.raises(InvalidBatch, match="repeats"):
        bj_spark.replay(PIPELINE, frame, until=end_of(table))
    with pytest.raises(InvalidAction, match="not before the batch's last touch"):
        bj_spark.replay(
            PIPELINE, spark.createDataFrame(table), until=end_of(table) - timedelta(days=30)
        )
    frame = spark.createDataFrame(table.drop(columns="kind"))
    with pytest.raises(InvalidBatch, match="no column 'kind'"):
        bj_spark.replay(PIPELINE, frame, until=end_of(table))
    with pytest.raises(InvalidAction, match="timezone-aware"):
        bj_spark.replay(PIPELINE, frame, until=end_of(table).replace(tzinfo=None))


def test_the_report_with_options_equals_the_single_process_one(spark: Any) -> None:
    table = stream(3000, 300, seed=27, hours=0.05)
    until = end_of(table)
    _, records = engine_frames(table, until)
    frame = spark.createDataFrame(records)
    options = {
        "order": "strict",
        "window": timedelta(days=20),
        "as_of": until - timedelta(days=1),
        "path": ("inquiry", "mql", "sal"),
    }
    report = bj_spark.funnel_report(frame, PIPELINE.funnel, **options)
    assert report.to_dict() == _single_report(table, until, **options).to_dict()
