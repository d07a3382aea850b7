"""Replay and the funnel report on Apache Spark: the ``spark`` extra.

:func:`replay` replays a Spark DataFrame of touches through a
:class:`~buyerjourney.Pipeline` into DataFrames of journeys and log
records, identical to one engine fed the whole stream in time order and
advanced to ``until`` (see :mod:`buyerjourney.bulk`'s ``replay_batch`` for
what is equal). It repartitions the touches by lead, sorts each partition
by lead and time, and runs :func:`buyerjourney.bulk.replay_partition` in
``mapInPandas``: many whole leads per call, the last lead of each Arrow
batch held back until the next batch shows whether it continues.

:func:`funnel_report` computes the funnel report of
:func:`buyerjourney.analytics.funnel_report` from a records DataFrame:
each lead's steps are matched where its records are (``mapInPandas`` over
partitions of whole leads), counts and exits are Spark aggregates, and
medians and percentiles are exact order statistics selected on Spark (a
window over each step's sorted durations); only the few selected values
reach the driver.

Install with ``pip install "buyerjourney[spark]"``; workers must import
the same buyerjourney (``PYSPARK_PYTHON`` set to the same environment's
python).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from buyerjourney._pipeline import Pipeline
from buyerjourney.bulk._batch import (
    JOURNEY_FRAME_COLUMNS,
    RECORD_FRAME_COLUMNS,
    TOUCH_FIELDS,
    InvalidBatch,
    carry_error,
    raised_error,
    replay_partition,
)
from buyerjourney.bulk._funnel import (
    DURATION_METRICS,
    FACT_COLUMNS,
    DistributedFunnelReport,
    assemble_report,
    entry_kinds,
    lead_facts,
    needed_ranks,
    report_options,
)
from buyerjourney.bulk._replay import Mode
from buyerjourney.errors import BuyerJourneyError, MissingExtra

__all__ = ["SparkReplay", "funnel_report", "replay"]

_FEATURE = "buyerjourney.spark"


def _pyspark() -> tuple[Any, Any, Any]:
    """``(pyspark.sql.functions, pyspark.sql.types, pyspark.sql.Window)``, or MissingExtra."""
    try:
        from pyspark.sql import Window  # noqa: PLC0415  (optional dependency)
        from pyspark.sql import functions as f  # noqa: PLC0415
        from pyspark.sql import types as t  # noqa: PLC0415
    except ImportError as exc:
        raise MissingExtra(_FEATURE, "spark", f"({exc})") from None
    return f, t, Window


def _spark_type(t: Any, description: str) -> Any:
    kind = description.split(":", 1)[0].split(maxsplit=1)[0]
    if kind.startswith("str"):
        return t.StringType()
    return {
        "float64": t.DoubleType(),
        "int64": t.LongType(),
        "bool": t.BooleanType(),
    }[kind]


def _combined_schema(t: Any) -> Any:
    """One schema for both outputs: ``part`` says which; shared columns appear once."""
    fields = [t.StructField("part", t.StringType(), False)]
    seen = set()
    for columns in (JOURNEY_FRAME_COLUMNS, RECORD_FRAME_COLUMNS):
        for name, description in columns.items():
            if name not in seen:
                seen.add(name)
                fields.append(t.StructField(name, _spark_type(t, description), True))
    return t.StructType(fields)


@attrs.frozen(eq=False)
class SparkReplay:
    """What :func:`replay` produced: two DataFrames over one persisted replay.

    Attributes:
        journeys: One row per lead, the columns of
            :data:`buyerjourney.bulk.JOURNEY_FRAME_COLUMNS` (times as int64
            microseconds since 1970 UTC).
        records: One row per record, the columns of
            :data:`buyerjourney.bulk.RECORD_FRAME_COLUMNS`; each lead's
            records in ``lead_seq`` order are the engine's.
        combined: The persisted DataFrame both are selected from (``part``
            is ``"journey"`` or ``"record"``).
    """

    journeys: Any
    records: Any
    combined: Any

    def unpersist(self) -> None:
        """Release the persisted replay (the DataFrames are recomputed if used again)."""
        self.combined.unpersist()


def _carried(exc: Exception) -> BuyerJourneyError | None:
    return raised_error(str(exc))


def replay(
    pipeline: Pipeline,
    df: Any,
    *,
    until: datetime,
    columns: Mapping[str, str] | None = None,
    partitions: int | None = None,
    touches_per_call: int = 200_000,
    mode: Mode = "auto",
) -> SparkReplay:
    """Replay a Spark DataFrame of touches into DataFrames of journeys and records.

    The replay runs when this is called (the result is persisted), so
    errors surface here, typed: a worker's
    :class:`~buyerjourney.bulk.InvalidBatch`,
    :class:`~buyerjourney.errors.HookError` ... is raised again on the
    driver with its message, without the worker's traceback.

    Args:
        pipeline: The pipeline (sent to the workers; its hooks must pickle).
        df: The touches: columns ``touch_id``, ``lead_id``, ``at``
            (a timestamp, or int64 microseconds since 1970 UTC), ``kind``,
            optionally ``order`` (breaks ties of one instant; ``touch_id``
            breaks them otherwise), ``properties`` and ``attributes`` (maps).
        until: The clock at the end: every SLA deadline up to it escalates,
            as ``engine.advance(until)``. Use the stream's end or the date the
            result is as of; it must not be before any touch.
        columns: The DataFrame's column for each field named otherwise
            (``{"lead_id": "customer_id", "at": "ts"}``).
        partitions: How many partitions to replay in (default:
            ``spark.sql.shuffle.partitions``).
        touches_per_call: About how many touches one call of the bulk
            replay gets.
        mode: As for :func:`buyerjourney.bulk.replay`.

    Returns:
        The journeys and records DataFrames.

    Raises:
        MissingExtra: PySpark is not installed.
        InvalidBatch: A column is missing or of a wrong type, or a worker
            found a bad value (a repeated touch id, a null).
        InvalidAction: *until* is not an aware time, or is before a touch.
        HookError: A hook failed on a touch.
    """
    f, t, _ = _pyspark()
    from pyspark.errors import PySparkException  # noqa: PLC0415

    if not isinstance(until, datetime) or until.utcoffset() is None:
        from buyerjourney.errors import InvalidAction  # noqa: PLC0415

        raise InvalidAction("replay", "until", until, "a timezone-aware datetime")
    touches = _touches(f, t, df, columns)
    keys = ["lead_id", "at", *(["order"] if "order" in touches.columns else []), "touch_id"]
    shuffled = (
        touches.repartition(partitions, "lead_id")
        if partitions is not None
        else touches.repartition("lead_id")
    )
    ordered = shuffled.sortWithinPartitions(*keys)
    schema = _combined_schema(t)
    names = [field.name for field in schema.fields]

    def run(frames: Iterator[Any]) -> Iterator[Any]:
        try:
            for result in replay_partition(
                pipeline, frames, until=until, touches_per_call=touches_per_call, mode=mode
            ):
                yield _combine(result.journeys, result.records, names)
        except BuyerJourneyError as exc:
            raise RuntimeError(carry_error(exc)) from None

    combined = ordered.mapInPandas(run, schema).persist()
    try:
        combined.count()
    except PySparkException as exc:
        combined.unpersist()
        error = _carried(exc)
        if error is not None:
            raise error from None
        raise
    journeys = combined.filter(f.col("part") == "journey").select(*JOURNEY_FRAME_COLUMNS)
    records = combined.filter(f.col("part") == "record").select(*RECORD_FRAME_COLUMNS)
    return SparkReplay(journeys, records, combined)


def _combine(journeys: Any, records: Any, names: Sequence[str]) -> Any:
    """Both frames in the combined schema (``part`` first, missing columns null)."""
    import pandas as pd  # type: ignore[import-untyped]  # noqa: PLC0415

    parts = []
    for part, frame in (("journey", journeys), ("record", records)):
        labelled = frame.copy()
        labelled.insert(0, "part", part)
        parts.append(labelled.reindex(columns=names))
    return pd.concat(parts, ignore_index=True)


def _touches(f: Any, t: Any, df: Any, columns: Mapping[str, str] | None) -> Any:
    """The touch fields of *df*, renamed, ``at`` as int64 microseconds."""
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(TOUCH_FIELDS))
    if unknown:
        msg = (
            f"columns maps {unknown[0]!r}, which is not a touch field; the fields are "
            f"{', '.join(TOUCH_FIELDS)}"
        )
        raise InvalidBatch(msg)
    selected = []
    types = dict(df.dtypes)
    for field in TOUCH_FIELDS:
        name = mapping.get(field, field)
        if name not in df.columns:
            if field in ("order", "properties", "attributes"):
                continue
            msg = (
                f"the touch DataFrame has no column {name!r} for {field!r} (it has "
                f"{', '.join(df.columns)}); name it in columns={{{field!r}: ...}}"
            )
            raise InvalidBatch(msg)
        column = f.col(f"`{name}`")
        if field == "at":
            kind = types[name]
            if kind.startswith("timestamp"):
                column = f.unix_micros(column)
            elif kind in ("bigint", "int", "smallint", "tinyint"):
                column = column.cast(t.LongType())
            else:
                msg = (
                    f"column {name!r} ('at') must be a timestamp or int64 microseconds since "
                    f"1970 UTC (got {kind})"
                )
                raise InvalidBatch(msg)
        selected.append(column.alias(field))
    return df.select(*selected)


# ---------------------------------------------------------------- the funnel report


def funnel_report(
    records: Any,
    funnel: Any,
    *,
    path: Sequence[str] | None = None,
    order: str = "ordered",
    window: timedelta | None = None,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> DistributedFunnelReport:
    """The funnel report of a records DataFrame, computed on Spark.

    Equal to :func:`buyerjourney.analytics.funnel_report` on the same
    records: its ``to_dict()`` is the same dict (counts, conversions, exits,
    and every duration statistic: count, median, p90, p25, p75, min, max,
    histogram), exact.

    Args:
        records: A records DataFrame (the ``records`` of :func:`replay`, or
            any DataFrame with ``lead_id``, ``lead_seq``, ``at`` in int64
            microseconds, ``kind`` and ``target``).
        funnel: The funnel the log follows.
        path: As for :func:`buyerjourney.analytics.funnel_report`.
        order: As for :func:`buyerjourney.analytics.funnel_report`.
        window: As for :func:`buyerjourney.analytics.funnel_report`.
        as_of: As for :func:`buyerjourney.analytics.funnel_report`.
        since: As for :func:`buyerjourney.analytics.funnel_report`.

    Returns:
        The report.

    Raises:
        MissingExtra: PySpark is not installed.
        UnknownStage: The path names a stage the funnel does not have.
        ValueError: The path, order or window is invalid.
        InvalidTouch: *as_of* or *since* is not an aware time.
    """
    f, t, window_spec = _pyspark()
    options = report_options(
        funnel, path=path, order=order, window=window, as_of=as_of, since=since
    )
    entries = records.filter(f.col("kind").isin(*entry_kinds()) & f.col("target").isNotNull())
    if options.as_of_micros is not None:
        entries = entries.filter(f.col("at") <= options.as_of_micros)
    entries = entries.select("lead_id", "lead_seq", "at", "target")
    journeys = entries.select("lead_id").distinct().count()
    fact_schema = t.StructType(
        [t.StructField(name, _spark_type(t, kind), True) for name, kind in FACT_COLUMNS.items()]
    )

    def facts(frames: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd  # noqa: PLC0415

        pending = [frame for frame in frames if len(frame)]
        if pending:
            yield lead_facts(options, pd.concat(pending, ignore_index=True))

    per_step = (
        entries.repartition("lead_id")
        .sortWithinPartitions("lead_id", "lead_seq")
        .mapInPandas(facts, fact_schema)
        .persist()
    )
    try:
        return _aggregate(f, window_spec, per_step, options, journeys)
    finally:
        per_step.unpersist()


def _aggregate(
    f: Any, window_spec: Any, facts: Any, options: Any, journeys: int
) -> DistributedFunnelReport:
    counts = {
        int(row["step"]): (int(row["entered"]), int(row["exited"]))
        for row in facts.groupBy("step")
        .agg(f.count("*").alias("entered"), f.sum(f.col("exited").cast("long")).alias("exited"))
        .collect()
    }
    branches = [
        (int(row["step"]), row["next_stage"], int(row["leads"]), int(row["converted"]))
        for row in facts.filter(f.col("next_stage").isNotNull())
        .groupBy("step", "next_stage")
        .agg(
            f.count("*").alias("leads"),
            f.sum(f.col("converted").cast("long")).alias("converted"),
        )
        .collect()
    ]
    long = facts.select(
        "step",
        f.explode(
            f.array(
                *(
                    f.struct(f.lit(metric).alias("metric"), f.col(metric).alias("value"))
                    for metric in DURATION_METRICS
                )
            )
        ).alias("d"),
    ).select("step", "d.metric", "d.value")
    long = long.filter(f.col("value").isNotNull()).persist()
    try:
        sizes = {
            (int(row["step"]), row["metric"]): int(row["n"])
            for row in long.groupBy("step", "metric").agg(f.count("*").alias("n")).collect()
        }
        wanted = [
            (step, metric, rank) for (step, metric), n in sizes.items() for rank in needed_ranks(n)
        ]
        values: dict[tuple[int, str, int], int] = {}
        if wanted:
            ranked = long.withColumn(
                "rank",
                f.row_number().over(window_spec.partitionBy("step", "metric").orderBy("value")) - 1,
            )
            spark = long.sparkSession
            wanted_df = spark.createDataFrame(wanted, "step int, metric string, rank int")
            for row in ranked.join(f.broadcast(wanted_df), ["step", "metric", "rank"]).collect():
                values[(int(row["step"]), row["metric"], int(row["rank"]))] = int(row["value"])
        bounds = options.histogram_bounds
        bucket = f.lit(len(bounds))
        for i in range(len(bounds) - 1, -1, -1):
            bucket = f.when(f.col("value") < bounds[i], f.lit(i)).otherwise(bucket)
        histogram = {
            (int(row["step"]), row["metric"], int(row["bucket"])): int(row["n"])
            for row in long.withColumn("bucket", bucket)
            .groupBy("step", "metric", "bucket")
            .agg(f.count("*").alias("n"))
            .collect()
        }
    finally:
        long.unpersist()
    return assemble_report(
        options,
        journeys=journeys,
        counts=counts,
        branches=branches,
        sizes=sizes,
        values=values,
        histogram=histogram,
    )
