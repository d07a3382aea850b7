"""``python -m bench``: replay throughput, memory, the summary against DuckDB, scaling.

Usage::

    bash bench/run            # the full run (a few minutes)
    bash bench/run --quick    # under a minute; what CI runs

Everything runs in this one process, on one core (NumPy here does not use
threads; DuckDB is given one thread, and also shown with its default), and
every timing is the best of several repetitions: on a shared machine the
best run is the one least disturbed by others. Comparisons that need the
``bench`` extra (DuckDB, ``transitions``) are skipped with a note when it
is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from buyerjourney import Pipeline, Score, default_pipeline, presets, rebuild
from buyerjourney.bulk._columnar import ColumnarLog, summarize_columnar
from buyerjourney.bulk._replay import JourneyStore, TouchBatch, replay

from . import baselines, handwritten
from .streams import generate

POINTS = {
    "page_view": 1, "pricing_view": 8, "email_open": 1, "email_click": 4,
    "content_download": 10, "form_submit": 10, "webinar_attended": 15, "demo_request": 40,
}  # fmt: skip
FIT = {"enterprise": 30.0, "mid_market": 15.0, "smb": 5.0}


def latest_touch_scorer(lead: Any, at: Any) -> Score:
    """A custom hook of constant cost: fit points of the segment plus the latest touch's points."""
    return Score(
        FIT.get(lead.attributes.get("segment"), 0.0) + POINTS.get(lead.touches[-1].kind, 0)
    )


def history_scorer(lead: Any, at: Any) -> Score:
    """A custom hook that reads the whole history: points per touch, capped at 100."""
    return Score(float(min(sum(POINTS.get(t.kind, 0) for t in lead.touches), 100)))


# ---------------------------------------------------------------- helpers


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The best wall time of *repeat* calls, and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def note(text: str) -> None:
    print(f"\n> {text}")
    sys.stdout.flush()


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
    }
    with contextlib.suppress(OSError):
        info["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for module in ("duckdb", "transitions", "statemachine"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            info[module] = "not installed"
    return info


def plain_lists(batch: TouchBatch) -> tuple[list[int], list[int], list[int]]:
    return batch.lead.tolist(), batch.at.tolist(), batch.kind.tolist()


# ---------------------------------------------------------------- sections


def throughput(args: argparse.Namespace, results: dict[str, Any]) -> None:  # noqa: PLR0915
    pipeline = default_pipeline(presets.seed())
    n = args.touches
    batch = generate(n)
    repeat = args.repeat
    rows: list[list[str]] = []
    per_touch: dict[str, float] = {}

    seconds, result = best_of(repeat, lambda: replay(pipeline, batch))
    assert result.mode == "columnar"
    per_touch["columnar"] = seconds / n
    rows.append(['fast path, columnar batch (`mode="columnar"`)', f"{n:,}", rate(n, seconds)])

    # the hand-written loop, on the same batch
    config = handwritten.compile_seed(pipeline)
    lists = plain_lists(batch)
    hand_n = min(n, args.hand_touches)
    cut = tuple(x[:hand_n] for x in lists)
    seconds, (records, _) = best_of(
        max(1, repeat // 2), lambda: handwritten.replay(config, *cut, batch.kinds)
    )
    per_touch["hand"] = seconds / hand_n
    rows.append(["hand-written loop (dicts, lists, tuples)", f"{hand_n:,}", rate(hand_n, seconds)])
    if hand_n == n:
        assert len(records) == len(result.log), "the hand-written loop disagrees"

    # Touch objects in, for the paths that take them
    small_n = min(n, args.object_touches)
    small = generate(small_n, seed=11)
    touches = list(small.touches())
    seconds, _ = best_of(repeat, lambda: replay(pipeline, touches))
    per_touch["from_touches"] = seconds / small_n
    rows.append(
        [
            "fast path, from `Touch` objects (conversion included)",
            f"{small_n:,}",
            rate(small_n, seconds),
        ]
    )
    seconds, _ = best_of(repeat, lambda: replay(pipeline, small))
    per_touch["columnar_small"] = seconds / small_n
    rows.append(["fast path, columnar batch, same stream", f"{small_n:,}", rate(small_n, seconds)])
    for hook in (latest_touch_scorer, history_scorer):
        hooked = Pipeline(
            pipeline.funnel,
            pipeline.owners,
            scorer=hook,
            policy=pipeline.policy,
            thresholds=pipeline.thresholds,
        )
        seconds, hooked_result = best_of(repeat, lambda hooked=hooked: replay(hooked, touches))
        assert hooked_result.mode == "hooks"
        per_touch[f"hooks_{hook.__name__}"] = seconds / small_n
        rows.append(
            [
                f"hooks path, custom scorer `{hook.__name__}` (from `Touch` objects)",
                f"{small_n:,}",
                rate(small_n, seconds),
            ]
        )

    # one object per lead, and the reference engine, on a smaller stream of the same shape
    base_n = min(n, args.baseline_touches)
    base = generate(base_n, seed=13)
    base_touches = list(base.touches())
    base_lists = plain_lists(base)
    seconds, fast_base = best_of(repeat, lambda: replay(pipeline, base))
    per_touch["columnar_base"] = seconds / base_n
    rows.append(["fast path, columnar batch, same stream", f"{base_n:,}", rate(base_n, seconds)])
    seconds, (hand_records, _) = best_of(
        repeat, lambda: handwritten.replay(config, *base_lists, base.kinds)
    )
    per_touch["hand_base"] = seconds / base_n
    rows.append(["hand-written loop, same stream", f"{base_n:,}", rate(base_n, seconds)])
    machines: list[Any] = [baselines.StatemachinePerLead(pipeline.funnel)]
    try:
        machines.append(baselines.TransitionsPerLead(pipeline.funnel))
    except ImportError:
        note("`transitions` is not installed (pip install -e '.[bench]'): its row is skipped.")
    for machine in machines:

        def run(machine: Any = machine) -> Any:
            fresh = type(machine)(pipeline.funnel)
            return handwritten.replay(config, *base_lists, base.kinds, fresh)

        seconds, (machine_records, _) = best_of(max(1, repeat // 2), run)
        assert machine_records == hand_records
        per_touch[machine.name] = seconds / base_n
        rows.append([machine.name, f"{base_n:,}", rate(base_n, seconds)])
    reference_n = min(base_n, args.reference_touches)
    ref_stream = generate(reference_n, seed=13)
    ref_touches = list(ref_stream.touches())

    def reference() -> Any:
        engine = pipeline.engine()
        engine.ingest(ref_touches)
        return engine

    seconds, engine = best_of(max(1, repeat // 3), reference)
    per_touch["reference"] = seconds / reference_n
    rows.append(
        ["reference `Engine` (table backend)", f"{reference_n:,}", rate(reference_n, seconds)]
    )
    fast_ref = replay(pipeline, ref_touches)
    assert fast_ref.records() == list(engine.records), "fast and reference logs differ"
    table(
        "Replay throughput (seed funnel, default pipeline)", ["path", "touches", "touches/s"], rows
    )
    del fast_base, base_touches

    fast = per_touch["columnar"]
    small = per_touch["columnar_base"]
    ratio_rows = [
        [
            "fast path time / hand-written loop time",
            f"{fast / per_touch['hand']:.2f}x",
            f"{small / per_touch['hand_base']:.2f}x",
        ],
        [
            "reference `Engine` time / fast path time",
            f"{per_touch['reference'] / fast:,.0f}x",
            f"{per_touch['reference'] / small:,.0f}x",
        ],
    ]
    for machine in machines:
        ratio_rows.append(
            [
                f"{machine.name} time / fast path time",
                f"{per_touch[machine.name] / fast:,.0f}x",
                f"{per_touch[machine.name] / small:,.0f}x",
            ]
        )
    table(
        "Ratios (same run; per-touch times)",
        ["comparison", f"fast path on {n:,} touches", f"fast path on the same {base_n:,}"],
        ratio_rows,
    )
    results["throughput"] = {k: 1 / v for k, v in per_touch.items()}
    results["ratios"] = {row[0]: row[1:] for row in ratio_rows}

    # what one send() and one instance cost
    cls = baselines.StatemachinePerLead(pipeline.funnel).cls
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    instances = [cls() for _ in range(500)]
    per_instance = (tracemalloc.get_traced_memory()[0] - before) / len(instances)
    tracemalloc.stop()

    def sends() -> None:
        for machine in instances[:300]:
            machine.send("engage")
            machine.send("nurture", reason="later")

    seconds, _ = best_of(1, sends)
    table(
        "python-statemachine, measured here",
        ["what", "cost"],
        [
            ["one `send()`", f"{seconds / 600 * 1e6:,.0f} µs"],
            ["one instance", f"{per_instance / 1024:,.1f} KiB"],
        ],
    )


def memory(args: argparse.Namespace, results: dict[str, Any]) -> None:
    pipeline = default_pipeline(presets.seed())
    n_journeys = args.journeys
    # about 0.88 leads per two touches survive the generator's cut to exactly n touches
    batch = generate(int(n_journeys * 2.3), seed=17, touches_per_lead=2.0)
    result = replay(pipeline, batch)
    store = result.journeys
    assert isinstance(store, JourneyStore)
    n = len(store)
    columns = store.nbytes
    ids = sys.getsizeof(store.lead_ids) + sum(sys.getsizeof(s) for s in store.lead_ids)
    _ = store[store.lead_ids[0]]  # builds the lookup index
    index = sys.getsizeof(store._index)
    # the same journeys as attrs Journey objects (on a sample, extrapolated)
    sample_n = min(n, 20_000)
    sample = generate(sample_n * 2, seed=17, touches_per_lead=2.0)
    records = replay(pipeline, sample).records()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    journeys = rebuild(pipeline.funnel, records)
    objects = (tracemalloc.get_traced_memory()[0] - before) / len(journeys)
    tracemalloc.stop()
    del journeys
    rows = [
        ["columns (stage, highest, owner, score, version, flags, 3 times)", f"{columns / n:,.1f}"],
        ["+ lead id strings and their list", f"{ids / n:,.1f}"],
        ["+ lookup index by lead id (built on first lookup)", f"{index / n:,.1f}"],
        ["= `JourneyStore` at rest", f"{(columns + ids + index) / n:,.1f}"],
        ["attrs `Journey` objects (tracemalloc, 20k sample)", f"{objects:,.0f}"],
        ["log, per record (columns)", f"{result.log.nbytes / len(result.log):,.1f}"],
    ]
    table(f"Bytes per journey at rest ({n:,} journeys)", ["what", "bytes per journey"], rows)
    results["memory"] = {row[0]: row[1] for row in rows}


def duckdb_summary(con: Any) -> dict[str, Any]:
    stages = con.sql(
        """
        WITH entries AS (
            SELECT seq, lead, target AS stage, "at", kind FROM log
            WHERE kind IN (0, 3, 8) AND target >= 0
        ), visits AS (
            SELECT kind, "at", lag(stage) OVER w AS prev_stage, lag("at") OVER w AS prev_at
            FROM entries WINDOW w AS (PARTITION BY lead ORDER BY seq)
        ), entered AS (
            SELECT stage, count(*) AS entered, count(DISTINCT lead) AS reached
            FROM entries GROUP BY stage
        ), exited AS (
            SELECT prev_stage AS stage, count(*) AS exited, median("at" - prev_at) AS median_us
            FROM visits WHERE kind <> 0 AND prev_stage IS NOT NULL GROUP BY prev_stage
        )
        SELECT coalesce(n.stage, x.stage) AS stage, reached, entered, coalesce(exited, 0),
               median_us
        FROM entered n FULL JOIN exited x ON n.stage = x.stage ORDER BY 1
        """
    ).fetchall()
    handoffs = con.sql(
        "SELECT from_team, to_team, count(*) FROM log WHERE kind = 4 GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    breaches = con.sql(
        "SELECT source, count(*) FROM log WHERE kind = 7 GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    refusals = con.sql(
        "SELECT aux, count(*), min(seq) FROM log WHERE kind = 9 GROUP BY ALL ORDER BY 2 DESC, 3"
    ).fetchall()
    kinds = con.sql("SELECT kind, count(*) FROM log GROUP BY ALL").fetchall()
    return {
        "stages": stages,
        "handoffs": handoffs,
        "breaches": breaches,
        "refusals": refusals,
        "kinds": kinds,
    }


def summary(args: argparse.Namespace, results: dict[str, Any]) -> None:
    pipeline = default_pipeline(presets.seed())
    target = args.records
    n_touches = int(target / 1.3) + 1000
    result = replay(pipeline, generate(n_touches, seed=19))
    full = result.log
    while len(full) < target:  # pragma: no cover - the stream is sized to avoid this
        n_touches = int(n_touches * 1.2)
        full = replay(pipeline, generate(n_touches, seed=19)).log
    columns = {k: v[:target] for k, v in full.columns.items()}
    log = ColumnarLog(
        pipeline.funnel, columns, lead_ids=full.lead_ids, teams=full.teams, events=full.events,
        messages=full.messages,
    )  # fmt: skip
    repeat = args.repeat
    seconds_np, ours = best_of(repeat, lambda: summarize_columnar(log))
    rows = [["NumPy (`summarize_columnar`)", f"{seconds_np:.3f}", "1.00x"]]
    try:
        import duckdb  # noqa: PLC0415
    except ImportError:
        note("DuckDB is not installed (pip install -e '.[bench]'): the comparison is skipped.")
        table(f"Stage summary over {target:,} log records", ["engine", "seconds", "vs NumPy"], rows)
        return
    data = dict(log.columns)
    data["seq"] = np.arange(target, dtype=np.int64)
    for threads in (1, None):
        con = duckdb.connect()
        if threads:
            con.execute(f"SET threads = {threads}")
        con.register("log", data)
        seconds, theirs = best_of(repeat, lambda con=con: duckdb_summary(con))
        label = (
            "DuckDB SQL, 1 thread" if threads else f"DuckDB SQL, default threads ({os.cpu_count()})"
        )
        rows.append([label, f"{seconds:.3f}", f"{seconds / seconds_np:.2f}x"])
        con.close()
    by_name = {row.stage: row for row in ours.stages}
    for stage, reached, entered, exited, median in theirs["stages"]:
        row = by_name[log.stage_names[stage]]
        assert (row.reached, row.entered, row.exited) == (reached, entered, exited)
        if median is not None:
            assert abs(row.median_time.total_seconds() * 1e6 - median) <= 1
    table(
        f"Stage summary over {target:,} log records (same arrays, answers checked equal)",
        ["engine", "seconds", "time vs NumPy"],
        rows,
    )
    results["summary"] = {row[0]: row[1] for row in rows}


def scaling(args: argparse.Namespace, results: dict[str, Any]) -> None:
    pipeline = default_pipeline(presets.seed())
    rows = []
    base = None
    series = {}
    for n in args.scaling:
        batch = generate(n, seed=23)
        repeat = args.repeat if n <= 1_000_000 else 3  # the first 10M run pays for fresh memory
        seconds, _ = best_of(repeat, lambda batch=batch: replay(pipeline, batch))
        per = seconds / n * 1e9
        base = base or per
        series[n] = n / seconds
        rows.append([f"{n:,}", f"{seconds:.3f}", rate(n, seconds), f"{per:,.0f}"])
        del batch
        gc.collect()
    table("Scaling of the fast path", ["touches", "seconds", "touches/s", "ns per touch"], rows)
    results["scaling"] = series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; under a minute")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.touches, args.hand_touches, args.object_touches = 200_000, 100_000, 50_000
        args.baseline_touches, args.reference_touches = 5_000, 3_000
        args.journeys, args.records, args.repeat = 100_000, 1_000_000, 3
        args.scaling = [10_000, 100_000, 1_000_000]
    else:
        args.touches, args.hand_touches, args.object_touches = 1_000_000, 1_000_000, 200_000
        args.baseline_touches, args.reference_touches = 20_000, 20_000
        args.journeys, args.records, args.repeat = 1_000_000, 10_000_000, 5
        args.scaling = [10_000, 100_000, 1_000_000, 10_000_000]
    started = time.perf_counter()
    info = machine_info()
    print(f"# buyerjourney replay benchmark ({'quick' if args.quick else 'full'})\n")
    print(
        f"command: python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip()
    )
    for key, value in info.items():
        print(f"- {key}: {value}")
    results: dict[str, Any] = {"machine": info, "quick": args.quick}
    throughput(args, results)
    memory(args, results)
    summary(args, results)
    scaling(args, results)
    elapsed = time.perf_counter() - started
    print(f"\ntotal time: {elapsed:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
