"""The full funnel report on NumPy against the same report as DuckDB SQL, over the same arrays.

The log is the bulk replay of ``default_pipeline(presets.seed())`` on the
bench stream (``bench/streams.py``), cut to *n* records. Both sides compute
the whole default report of
:func:`buyerjourney.analytics.funnel_report` (the success path, order
``ordered``, no window, the whole log), following DOMAIN §5:

* **NumPy**: :func:`buyerjourney.bulk.columnar_funnel_report` (what
  ``Replay.funnel_report()`` runs), CPU time;
* **DuckDB**: the SQL of :func:`duckdb_report` over the same arrays
  (registered, not copied), with one thread (CPU time) and with the default
  threads (wall time): stage entries, each lead's next entry (a window
  function), the anchor and the ordered match one step after the other
  (first entry of the step's stage after the previous step's), the facts per
  lead and step in a temporary table, then counts, exits by next stage, and
  per duration distribution its count, quantiles (``quantile_cont``, the same
  linear interpolation), extremes and histogram.

The answers are checked equal on what the SQL computes (the journeys, every
step's entered and exited, the exits by next stage with their conversions,
and each duration distribution's count, quartiles, p90, extremes and
histogram): counts exactly, durations within 1 µs. The rates, balances and
velocities of the report are derived from those numbers by the one assembly
both reports share (``bulk/_funnel.py``), so they are not computed twice.
Each figure is the median of *rounds* runs.

    python -m bench.report [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.streams import generate
from buyerjourney import default_pipeline, presets
from buyerjourney._analytics._stats import BUCKETS
from buyerjourney.bulk._columnar import ColumnarLog
from buyerjourney.bulk._replay import replay
from buyerjourney.bulk._report import columnar_funnel_report
from buyerjourney.bulk._schema import KIND_CODE, KINDS, MICROSECOND

METRICS = ("time_in_stage", "time_to_convert", "time_from_start")
QUANTILES = (0.5, 0.9, 0.25, 0.75)
QUANTILE_KEYS = ("median_seconds", "p90_seconds", "p25_seconds", "p75_seconds")


def _median(rounds: int, fn: Callable[[], Any], clock: Callable[[], float]) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(rounds):
        result = None
        gc.collect()
        start = clock()
        result = fn()
        times.append(clock() - start)
    return statistics.median(times), result


def bench_log(n_records: int) -> ColumnarLog:
    """The bulk replay of the seed pipeline on the bench stream, cut to *n_records* records."""
    pipeline = default_pipeline(presets.seed())
    n_touches = int(n_records / 1.3) + 1000
    full = replay(pipeline, generate(n_touches, seed=19)).log
    while len(full) < n_records:  # pragma: no cover - the stream is sized to avoid this
        n_touches = int(n_touches * 1.2)
        full = replay(pipeline, generate(n_touches, seed=19)).log
    columns = {k: v[:n_records] for k, v in full.columns.items()}
    return ColumnarLog(
        pipeline.funnel,
        columns,
        lead_ids=full.lead_ids,
        teams=full.teams,
        events=full.events,
        messages=full.messages,
    )


def report_sql(path: Sequence[int]) -> tuple[str, list[str]]:
    """The SQL of the default report along *path* (stage codes): the facts table, then aggregates.

    Returns:
        The statement that creates the temporary table ``facts`` (one row per
        lead and step reached), and the aggregate queries over it.
    """
    entry_kinds = ", ".join(str(KIND_CODE[k]) for k in KINDS if k.enters_stage)
    parts = [
        f"""entries AS (
            SELECT lead, seq, "at", target AS stage,
                   lead(target) OVER w AS next_stage, lead("at") OVER w AS next_at
            FROM log WHERE kind IN ({entry_kinds}) AND target >= 0
            WINDOW w AS (PARTITION BY lead ORDER BY seq)
        )""",
        # step 1: the anchor, each lead's first entry into the first stage
        f"""r0 AS (
            SELECT lead, min(seq) AS seq, arg_min("at", seq) AS "at"
            FROM entries WHERE stage = {path[0]} GROUP BY lead
        )""",
    ]
    for k in range(1, len(path)):  # step k: the first entry into its stage after step k-1's
        parts.append(
            f"""r{k} AS (
            SELECT e.lead, min(e.seq) AS seq, arg_min(e."at", e.seq) AS "at"
            FROM entries e JOIN r{k - 1} p ON e.lead = p.lead AND e.seq > p.seq
            WHERE e.stage = {path[k]} GROUP BY e.lead
        )"""
        )
    selects = []
    for k in range(len(path)):
        if k + 1 < len(path):
            later = f"LEFT JOIN r{k + 1} c ON c.lead = r.lead"
            convert = 'c."at" - r."at" AS time_to_convert, c.lead IS NOT NULL AS converted'
        else:  # the last step converts to nothing
            later = ""
            convert = "NULL::BIGINT AS time_to_convert, false AS converted"
        selects.append(
            f"""SELECT {k} AS step, r."at" - a."at" AS time_from_start, e.next_stage,
                   e.next_at - e."at" AS time_in_stage, {convert}
            FROM r{k} r JOIN r0 a ON a.lead = r.lead
            JOIN entries e ON e.lead = r.lead AND e.seq = r.seq
            {later}"""
        )
    facts = (
        "CREATE OR REPLACE TEMP TABLE facts AS WITH "
        + ",\n".join(parts)
        + "\n"
        + "\nUNION ALL\n".join(selects)
    )
    bounds = [upper // MICROSECOND for _, upper in BUCKETS if upper is not None]
    bucket = "CASE " + " ".join(f"WHEN {{x}} < {b} THEN {i}" for i, b in enumerate(bounds))
    bucket += f" ELSE {len(bounds)} END"
    queries = [
        f"""SELECT count(DISTINCT lead) FROM log
            WHERE kind IN ({entry_kinds}) AND target >= 0""",
        "SELECT step, count(*), count(next_stage) FROM facts GROUP BY step ORDER BY step",
        """SELECT step, next_stage, count(*), count(*) FILTER (WHERE converted)
            FROM facts WHERE next_stage IS NOT NULL GROUP BY ALL ORDER BY ALL""",
    ]
    quantiles = ", ".join(str(q) for q in QUANTILES)
    for metric in METRICS:
        queries.append(
            f"""SELECT step, count({metric}), quantile_cont({metric}, [{quantiles}]),
                   min({metric}), max({metric})
            FROM facts WHERE {metric} IS NOT NULL GROUP BY step ORDER BY step"""
        )
        queries.append(
            f"""SELECT step, {bucket.format(x=metric)} AS bucket, count(*)
            FROM facts WHERE {metric} IS NOT NULL GROUP BY ALL ORDER BY ALL"""
        )
    return facts, queries


def duckdb_report(con: Any, path: Sequence[int]) -> list[list[tuple[Any, ...]]]:
    """Compute the report in DuckDB over the registered ``log``; every query's rows."""
    facts, queries = report_sql(path)
    con.execute(facts)
    out = [con.sql(q).fetchall() for q in queries]
    con.execute("DROP TABLE facts")
    return out


def check_equal(
    ours: dict[str, Any], theirs: list[list[tuple[Any, ...]]], names: Sequence[str]
) -> None:
    """Raise AssertionError unless DuckDB's answers equal the NumPy report's (durations to 1 µs)."""
    (journeys,), counts, branches, *durations = theirs
    assert ours["journeys"] == journeys[0], (ours["journeys"], journeys)
    steps = ours["steps"]
    by_step = {step: (entered, exited) for step, entered, exited in counts}
    for k, row in enumerate(steps):
        assert (row["entered"], row["exited"]) == by_step.get(k, (0, 0)), (k, row, by_step)
    sql_branches = sorted((k, names[s], n, c) for k, s, n, c in branches)
    our_branches = sorted(
        (k, b["stage"], b["leads"], b["converted"])
        for k, row in enumerate(steps)
        for b in row["exits"]
    )
    assert our_branches == sql_branches, (our_branches, sql_branches)
    for m, metric in enumerate(METRICS):
        stats, buckets = durations[2 * m], durations[2 * m + 1]
        summary = {step: rest for step, *rest in stats}
        histogram = {(step, b): n for step, b, n in buckets}
        for k, row in enumerate(steps):
            ours_d = row[metric]
            if k not in summary:
                assert ours_d["count"] == 0, (k, metric, ours_d)
                continue
            count, quantiles, low, high = summary[k]
            assert ours_d["count"] == count, (k, metric, ours_d["count"], count)
            for key, value in zip(QUANTILE_KEYS, quantiles, strict=True):
                assert abs(ours_d[key] * 1e6 - value) <= 1, (k, metric, key, ours_d[key], value)
            assert abs(ours_d["min_seconds"] * 1e6 - low) <= 1
            assert abs(ours_d["max_seconds"] * 1e6 - high) <= 1
            got = [histogram.get((k, b), 0) for b in range(len(BUCKETS))]
            assert [h["count"] for h in ours_d["histogram"]] == got, (k, metric, got)


def run(n_records: int, rounds: int) -> dict[str, Any]:
    """Measure the NumPy report and DuckDB's SQL on the same log; check the answers equal.

    Returns:
        The figures: records, leads, the seconds of each engine and the ratios.
    """
    log = bench_log(n_records)
    figures: dict[str, Any] = {"records": len(log), "leads": len(log.lead_ids), "rounds": rounds}
    seconds_np, ours = _median(rounds, lambda: columnar_funnel_report(log), time.process_time)
    figures["numpy_s"] = seconds_np
    report = ours.to_dict()
    figures["report_leads"] = report["leads"]
    try:
        import duckdb  # noqa: PLC0415
    except ImportError:
        figures["duckdb"] = "DuckDB is not installed (pip install -e '.[bench]'): skipped"
        return figures
    index = {name: i for i, name in enumerate(log.stage_names)}
    path = [index[name] for name in report["path"]]
    data = dict(log.columns)
    data["seq"] = np.arange(len(log), dtype=np.int64)
    for threads, key in ((1, "duckdb_1_thread_s"), (None, "duckdb_default_threads_s")):
        con = duckdb.connect()
        if threads:
            con.execute(f"SET threads = {threads}")
        con.register("log", data)
        clock = time.process_time if threads else time.perf_counter
        seconds, theirs = _median(rounds, functools.partial(duckdb_report, con, path), clock)
        con.close()
        check_equal(report, theirs, log.stage_names)
        figures[key] = seconds
    figures["threads"] = os.cpu_count()
    figures["numpy_vs_duckdb_1_thread"] = seconds_np / figures["duckdb_1_thread_s"]
    return figures


def report(figures: dict[str, Any]) -> str:
    """The figures as a markdown table."""
    head = (
        f"Full funnel report over {figures['records']:,} log records "
        f"({figures['leads']:,} leads, {figures['report_leads']:,} in the report; "
        f"same arrays, answers checked equal; medians of {figures['rounds']} rounds)"
    )
    numpy_s = figures["numpy_s"]
    lines = [
        head,
        "",
        "| engine | seconds (median) | time vs NumPy |",
        "|---|---:|---:|",
        f"| NumPy (`columnar_funnel_report`), CPU time | {numpy_s:.3f} | 1.00x |",
    ]
    if "duckdb_1_thread_s" not in figures:
        lines.append("")
        lines.append(str(figures.get("duckdb", "DuckDB: skipped")))
        return "\n".join(lines)
    one, many = figures["duckdb_1_thread_s"], figures["duckdb_default_threads_s"]
    lines.append(f"| DuckDB SQL, 1 thread, CPU time | {one:.3f} | {one / numpy_s:.2f}x |")
    lines.append(
        f"| DuckDB SQL, default threads ({figures['threads']}), wall time | {many:.3f} "
        f"| {many / numpy_s:.2f}x |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--quick", action="store_true", help="1,000,000 records, 3 rounds")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.records or (1_000_000 if args.quick else 10_000_000)
    rounds = args.rounds or 3
    print(report(run(n, rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
