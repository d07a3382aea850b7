"""``python -m bench``: the live engine against hand-written loops, bulk replay, memory, scaling.

Usage::

    bash bench/run                    # the full run (a few minutes)
    bash bench/run --quick            # smaller sizes; what CI runs
    bash bench/run --profile-engine   # also cProfile 20,000 touches of Engine.ingest

Everything runs in this one process, on one core (NumPy here does not use
threads; DuckDB is given one thread, and also shown with its default).
Every timing is the **median of several rounds of CPU time**
(``time.process_time``: this process's user and system time, so other work
on a shared machine disturbs it less than wall time), except DuckDB with its
default threads, whose CPU time adds up over threads: that row is the median
of wall time (``time.perf_counter``). Ratios compare figures measured in the
same run. Comparisons that need the ``bench`` extra (DuckDB, ``transitions``)
are skipped with a note when it is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from buyerjourney import (
    AnyOf,
    Pipeline,
    Score,
    Touch,
    default_pipeline,
    presets,
    rebuild,
)
from buyerjourney.bulk._columnar import ColumnarLog, summarize_columnar
from buyerjourney.bulk._replay import JourneyStore, TouchBatch, replay
from buyerjourney.policies import Decision, MatrixPolicy
from buyerjourney.scoring import CombinedScorer, FitCriterion, FitGrader, PointsScorer

from . import baselines, handwritten
from .streams import KIND_WEIGHTS, START, generate

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


def median_time(
    rounds: int,
    fn: Callable[[], Any],
    clock: Callable[[], float] = time.process_time,
    *,
    settle: bool = False,
) -> tuple[float, Any]:
    """The median CPU time (by default) of *rounds* calls of *fn*, and the last result.

    With *settle*, each call is charged one full visit of the collector to the
    objects its result keeps, whether the collections ran during the call or
    were deferred past its end (as ``Engine.ingest`` defers them): a full
    collection right after the call, while the result is alive, less the
    full collection just before it (the rest of the process's objects).
    """
    times = []
    result = None
    for _ in range(rounds):
        result = None
        gc.collect()  # frees what the round before kept
        before = clock()
        gc.collect()  # visits the rest of the process's objects only
        baseline = clock() - before
        start = clock()
        result = fn()
        elapsed = clock() - start
        if settle:
            after = clock()
            gc.collect()
            elapsed += max(0.0, clock() - after - baseline)
        times.append(elapsed)
    return statistics.median(times), result


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def micros(seconds: float) -> str:
    return f"{seconds * 1e6:,.2f} µs"


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


def by_lead(batch: TouchBatch) -> list[tuple[int, list[int], list[int], list[int]]]:
    """The batch's touches grouped by lead (times, kind codes, positions), for the lead loop."""
    order = np.argsort(batch.lead, kind="stable")
    lead = batch.lead[order]
    starts = np.flatnonzero(np.r_[True, lead[1:] != lead[:-1]]) if len(lead) else lead
    ends = np.r_[starts[1:], len(order)].astype(np.int64)
    at, kind, pos = batch.at[order].tolist(), batch.kind[order].tolist(), order.tolist()
    return [
        (code, at[s:e], kind[s:e], pos[s:e])
        for code, s, e in zip(lead[starts].tolist(), starts.tolist(), ends.tolist(), strict=True)
    ]


def check_loops(
    pipeline: Pipeline,
    batch: TouchBatch,
    engine: Any,
    *,
    lead_rows: Sequence[tuple[Any, ...]],
    lead_final: dict[int, tuple[str, float, str]],
    time_rows: Sequence[tuple[Any, ...]],
) -> dict[str, int]:
    """Check that both loops and the engine agree; return the records by kind."""
    code = {lead_id: i for i, lead_id in enumerate(batch.lead_ids)}
    journeys = {code[lead]: (j.stage, j.score, j.owner) for lead, j in engine.journeys.items()}
    assert journeys == lead_final, "the lead-by-lead loop's journeys differ from the engine's"
    engine_rows = handwritten.rows_of(engine.records, code)
    assert time_rows == engine_rows, "the time-ordered loop's log differs from the engine's"
    assert sorted(lead_rows) == sorted(engine_rows), "the lead-by-lead loop's rows differ"
    kinds = Counter(handwritten.NAMES[row[0]] for row in lead_rows)
    assert kinds == Counter(r.kind.value for r in engine.records)
    return dict(kinds)


def matrix_pipeline(base: Pipeline) -> Pipeline:
    """The seed pipeline with a fit grade and a fit-by-engagement matrix before the kind policy."""
    grader = FitGrader(
        [
            FitCriterion("enterprise", "segment", ("enterprise",), steps=6),
            FitCriterion("mid_market", "segment", ("mid_market",), steps=3),
        ]
    )
    kinds = base.policy.policies[1]  # type: ignore[union-attr]
    matrix = MatrixPolicy(
        "engage",
        accept=frozenset({"A1", "A2", "B1", "B2", "C1"}),
        engagement_bands=(50, 25, 10),
        stages=("awareness",),
    )
    return Pipeline(
        base.funnel,
        base.owners,
        scorer=CombinedScorer(engagement=base.scorer, fit=grader),  # type: ignore[arg-type]
        policy=AnyOf(matrix, kinds),
        thresholds=base.thresholds,
    )


def score_alone(scorer: PointsScorer, touches: Sequence[Touch]) -> dict[str, float]:
    """Each lead's final score, scored incrementally as the engine does (no records, no fold)."""
    states: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    scores: dict[str, float] = {}
    for touch in touches:
        lead = touch.lead_id
        state = states.get(lead)
        if state is None:
            state = states[lead] = scorer.start()
        known = attributes.get(lead, {})
        if touch.attributes:
            known = attributes[lead] = {**known, **touch.attributes}
        scores[lead] = scorer.score_next(state, touch, known).value
        scorer.add(state, touch)
    return scores


def custom_policy_pipeline(base: Pipeline) -> Pipeline:
    """The seed pipeline with its policy wrapped in a function: a policy of one's own."""
    inner = base.policy
    assert inner is not None

    def my_policy(journey: Any, score: Score, touch: Touch) -> Decision:
        return inner(journey, score, touch)

    return Pipeline(
        base.funnel, base.owners, scorer=base.scorer, policy=my_policy, thresholds=base.thresholds
    )


# ---------------------------------------------------------------- sections


def throughput(args: argparse.Namespace, results: dict[str, Any]) -> None:  # noqa: PLR0915
    pipeline = default_pipeline(presets.seed())
    config = handwritten.compile_seed(pipeline)
    rounds = args.rounds
    rows: list[list[str]] = []
    per_touch: dict[str, float] = {}

    def row(key: str, label: str, n: int, seconds: float) -> None:
        per_touch[key] = seconds / n
        rows.append([label, f"{n:,}", rate(n, seconds), micros(seconds / n)])

    # the live engine and the two hand loops, on one stream (the ratio table)
    base_n = args.engine_touches
    base = generate(base_n, seed=13)
    base_touches = list(base.touches())
    grouped = by_lead(base)
    lists = plain_lists(base)

    def live() -> Any:
        engine = pipeline.engine()
        engine.ingest(base_touches)
        return engine

    seconds, _ = median_time(rounds, live, settle=True)
    row("engine", "live `Engine.ingest` (table backend), `Touch` objects in", base_n, seconds)

    def live_collected() -> Any:
        engine = pipeline.engine()
        engine.defer_full_gc = False
        engine.ingest(base_touches)
        return engine

    seconds, _ = median_time(rounds, live_collected, settle=True)
    row(
        "engine_gc",
        "the same, the collector's full collections not deferred (`defer_full_gc=False`)",
        base_n,
        seconds,
    )
    seconds, (lead_rows, lead_final) = median_time(
        rounds, lambda: handwritten.replay_by_lead(config, grouped, base.kinds), settle=True
    )
    row("lead_loop", "hand loop, lead by lead (the yardstick)", base_n, seconds)
    scorer = pipeline.scorer
    assert isinstance(scorer, PointsScorer)
    seconds, scores = median_time(rounds, lambda: score_alone(scorer, base_touches))
    row(
        "scorer",
        "the engine's scorer alone (`PointsScorer.score_next` + `add`, breakdowns included)",
        base_n,
        seconds,
    )
    seconds, (time_rows, _) = median_time(
        rounds, lambda: handwritten.replay(config, *lists, base.kinds), settle=True
    )
    row("time_loop", "hand loop, time order (a dict of lead states)", base_n, seconds)
    engine = live()  # the answers, checked once the timings are taken
    assert scores == {lead: j.score for lead, j in engine.journeys.items()}
    kinds = check_loops(
        pipeline, base, engine, lead_rows=lead_rows, lead_final=lead_final, time_rows=time_rows
    )
    del engine
    seconds, _ = median_time(rounds, lambda: replay(pipeline, base))
    row("columnar_base", 'bulk `replay`, columnar batch (`mode="columnar"`)', base_n, seconds)
    for name, make in (("custom_policy", custom_policy_pipeline), ("matrix", matrix_pipeline)):
        other = make(pipeline)

        def reference(other: Pipeline = other) -> Any:
            return replay(other, base_touches)

        seconds, result = median_time(rounds, reference, settle=True)
        mode = result.mode
        assert mode == ("reference" if name == "custom_policy" else "columnar"), result.reasons
        label = "a policy of one's own" if name == "custom_policy" else "a `MatrixPolicy`"
        where = "the reference engine" if mode == "reference" else f'mode="{mode}"'
        row(name, f"bulk `replay` with {label} (→ {where})", base_n, seconds)
    matrix = matrix_pipeline(pipeline)
    seconds, result = median_time(rounds, lambda: replay(matrix, base), settle=True)
    assert result.mode == "columnar", result.reasons
    row("matrix_batch", "bulk `replay` with a `MatrixPolicy`, columnar batch", base_n, seconds)
    seconds, _ = median_time(
        rounds, lambda: replay(matrix, base_touches, mode="reference"), settle=True
    )
    row(
        "matrix_reference",
        'bulk `replay` with a `MatrixPolicy`, forced `mode="reference"` (the path it took before)',
        base_n,
        seconds,
    )
    machines: list[Any] = [baselines.StatemachinePerLead(pipeline.funnel)]
    try:
        machines.append(baselines.TransitionsPerLead(pipeline.funnel))
    except ImportError:
        note("`transitions` is not installed (pip install -e '.[bench]'): its row is skipped.")
    for machine in machines:

        def run(machine: Any = machine) -> Any:
            fresh = type(machine)(pipeline.funnel)
            return handwritten.replay(config, *lists, base.kinds, fresh)

        seconds, (machine_rows, _) = median_time(max(1, rounds // 2), run)
        assert machine_rows == time_rows
        row(machine.name, f"time-order loop + {machine.name}", base_n, seconds)

    # the bulk path on a large stream, and the hand loops on it
    n = args.touches
    batch = generate(n, seed=7)
    seconds, result = median_time(rounds, lambda: replay(pipeline, batch))
    assert result.mode == "columnar"
    del result
    row("columnar", 'bulk `replay`, columnar batch (`mode="columnar"`)', n, seconds)
    hand_n = min(n, args.hand_touches)
    cut = generate(hand_n, seed=7) if hand_n < n else batch
    grouped = by_lead(cut)
    seconds, _ = median_time(
        max(1, rounds // 2), lambda: handwritten.replay_by_lead(config, grouped, cut.kinds)
    )
    row("lead_loop_large", "hand loop, lead by lead", hand_n, seconds)
    lists = plain_lists(cut)
    seconds, _ = median_time(
        max(1, rounds // 2), lambda: handwritten.replay(config, *lists, cut.kinds)
    )
    row("time_loop_large", "hand loop, time order", hand_n, seconds)

    # Touch objects in, and the hooks path
    small_n = args.object_touches
    small = generate(small_n, seed=11)
    touches = list(small.touches())
    seconds, _ = median_time(rounds, lambda: replay(pipeline, touches))
    row(
        "from_touches",
        "bulk `replay`, from `Touch` objects (conversion included)",
        small_n,
        seconds,
    )
    seconds, _ = median_time(rounds, lambda: replay(pipeline, small))
    row("columnar_small", "bulk `replay`, columnar batch, same stream", small_n, seconds)
    for hook in (latest_touch_scorer, history_scorer):
        hooked = Pipeline(
            pipeline.funnel,
            pipeline.owners,
            scorer=hook,
            policy=pipeline.policy,
            thresholds=pipeline.thresholds,
        )
        seconds, hooked_result = median_time(rounds, lambda hooked=hooked: replay(hooked, touches))
        assert hooked_result.mode == "hooks"
        row(
            f"hooks_{hook.__name__}",
            f"hooks path, custom scorer `{hook.__name__}` (from `Touch` objects)",
            small_n,
            seconds,
        )
    table(
        "Throughput (seed funnel, default pipeline; median CPU time per round)",
        ["path", "touches", "touches/s", "per touch"],
        rows,
    )
    note(
        f"Checked on the {base_n:,}-touch stream: both hand loops give the engine's final "
        "journeys (stage, owner, score per lead) and its log rows (the lead loop up to order); "
        "records by kind: " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())) + "."
    )

    engine_t = per_touch["engine"]
    ratio_rows = [
        [
            "live `Engine.ingest` / hand loop, lead by lead",
            f"{engine_t / per_touch['lead_loop']:,.1f}x",
        ],
        [
            "live `Engine.ingest` without deferring full collections / with (the default)",
            f"{per_touch['engine_gc'] / engine_t:,.2f}x",
        ],
        [
            "the scorer alone / live `Engine.ingest` (its share of the engine's time)",
            f"{per_touch['scorer'] / engine_t:,.2f}x",
        ],
        [
            "the scorer alone / hand loop, lead by lead",
            f"{per_touch['scorer'] / per_touch['lead_loop']:,.1f}x",
        ],
        [
            "live `Engine.ingest` / hand loop, time order",
            f"{engine_t / per_touch['time_loop']:,.1f}x",
        ],
        [
            "hand loop, time order / lead by lead",
            f"{per_touch['time_loop'] / per_touch['lead_loop']:,.2f}x",
        ],
        [
            "bulk replay (columnar) / hand loop, lead by lead",
            f"{per_touch['columnar_base'] / per_touch['lead_loop']:,.3f}x",
        ],
        [
            "bulk replay with a policy of one's own / live `Engine.ingest`",
            f"{per_touch['custom_policy'] / engine_t:,.2f}x",
        ],
        [
            "bulk replay with a `MatrixPolicy` / live `Engine.ingest`",
            f"{per_touch['matrix'] / engine_t:,.2f}x",
        ],
        [
            "`MatrixPolicy` replay: the reference engine / columnar, `Touch` objects in",
            f"{per_touch['matrix_reference'] / per_touch['matrix']:,.1f}x",
        ],
        [
            "`MatrixPolicy` replay: the reference engine / columnar, a `TouchBatch` in",
            f"{per_touch['matrix_reference'] / per_touch['matrix_batch']:,.1f}x",
        ],
    ]
    for machine in machines:
        ratio_rows.append(
            [
                f"time-order loop + {machine.name} / bulk replay (columnar)",
                f"{per_touch[machine.name] / per_touch['columnar_base']:,.0f}x",
            ]
        )
    ratio_rows.append(
        [
            f"bulk replay (columnar), {n:,} touches / hand loop, lead by lead, {hand_n:,}",
            f"{per_touch['columnar'] / per_touch['lead_loop_large']:,.3f}x",
        ]
    )
    table(
        f"Ratios of per-touch times (same run; the first rows on the same {base_n:,} touches)",
        ["comparison", "ratio"],
        ratio_rows,
    )
    results["throughput"] = {k: 1 / v for k, v in per_touch.items()}
    results["ratios"] = {r[0]: r[1] for r in ratio_rows}
    results["records by kind"] = kinds

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

    seconds, _ = median_time(1, sends)
    table(
        "python-statemachine, measured here",
        ["what", "cost"],
        [
            ["one `send()`", f"{seconds / 600 * 1e6:,.0f} µs"],
            ["one instance", f"{per_instance / 1024:,.1f} KiB"],
        ],
    )


def history_streams(
    history: int, timed: int, gap: timedelta, seed: int = 3
) -> tuple[list[Touch], list[Touch]]:
    """Touches that give leads *history* touches, then *timed* more (one stream, in time order).

    For a short history, *timed* leads with *history* touches each, then one
    more touch each; for a long one, one lead with *history* touches, then
    *timed* more. Kinds are drawn like the bench stream's; *gap* is the mean
    time between two touches of a lead.
    """
    rng = np.random.default_rng(seed)
    kinds = list(KIND_WEIGHTS)
    weights = np.array(list(KIND_WEIGHTS.values()))
    n_leads = timed if history < timed else 1
    warm = n_leads * history
    total = warm + timed
    kind = rng.choice(len(kinds), total, p=weights / weights.sum())
    seconds = np.cumsum(rng.exponential(gap.total_seconds() / n_leads, total))
    lead = np.concatenate(
        (rng.permutation(np.repeat(np.arange(n_leads), history)), np.arange(timed) % n_leads)
    )
    touches = [
        Touch(
            f"t{i}", f"lead-{lead[i]}", START + timedelta(seconds=float(seconds[i])), kinds[kind[i]]
        )
        for i in range(total)
    ]
    return touches[:warm], touches[warm:]


def history(args: argparse.Namespace, results: dict[str, Any]) -> None:
    pipeline = default_pipeline(presets.seed())
    timed = args.history_timed
    rows = []
    figures: dict[str, Any] = {}
    for label, gap in (
        ("a touch every 1.5 days (the bench stream's pace)", timedelta(days=1.5)),
        ("a touch every 10 minutes (the decay window holds them all)", timedelta(minutes=10)),
    ):
        per: dict[int, float] = {}
        for length in (10, args.history_long):
            warm, more = history_streams(length, timed, gap)

            def fresh(warm: list[Touch] = warm) -> Any:
                engine = pipeline.engine()
                engine.ingest(warm)
                return engine

            costs = []
            for _ in range(args.rounds):
                engine = fresh()
                gc.collect()
                start = time.process_time()
                engine.ingest(more)
                costs.append((time.process_time() - start) / len(more))
                del engine
            per[length] = statistics.median(costs)
        ratio = per[args.history_long] / per[10]
        rows.append([label, micros(per[10]), micros(per[args.history_long]), f"{ratio:.2f}x"])
        figures[label] = {"short": per[10], "long": per[args.history_long], "ratio": ratio}
    table(
        f"History independence: live `Engine.ingest`, cost of a touch by the lead's history "
        f"(median CPU time over {args.rounds} rounds of {timed} touches)",
        ["touches", "history of 10", f"history of {args.history_long:,}", "ratio (target ≤ 1.5x)"],
        rows,
    )
    results["history"] = figures


def memory(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """What a bulk replay keeps once its input is dropped (tracemalloc, not a sum of arrays)."""
    pipeline = default_pipeline(presets.seed())
    replay(pipeline, generate(1000, seed=5))  # imports and caches out of the way
    gc.collect()
    tracemalloc.start()
    zero = tracemalloc.get_traced_memory()[0]
    # about 0.44 leads per touch survive the generator's cut to exactly n touches
    batch = generate(int(args.journeys * 2.3), seed=17, touches_per_lead=2.0)
    input_bytes = tracemalloc.get_traced_memory()[0] - zero
    tracemalloc.reset_peak()
    result = replay(pipeline, batch)
    peak = tracemalloc.get_traced_memory()[1] - zero
    store = result.journeys
    assert isinstance(store, JourneyStore)
    n = len(store)
    del batch
    gc.collect()
    at_rest = tracemalloc.get_traced_memory()[0] - zero
    lead_id = store.lead_ids[n // 2]
    journey = store[lead_id]  # builds the index and the rows-by-lead lookup
    assert journey.lead_id == lead_id
    del journey
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - zero
    log_bytes, n_records = result.log.nbytes, len(result.log)
    del result
    gc.collect()
    store_only = tracemalloc.get_traced_memory()[0] - zero
    tracemalloc.stop()
    ids = sys.getsizeof(store.lead_ids) + sum(sys.getsizeof(s) for s in store.lead_ids)
    kept = store._materialize.__self__  # type: ignore[attr-defined]
    touches = kept.touches
    touch_bytes = (0 if touches.kind is None else touches.kind.nbytes) + (
        0 if touches.attributes is None else touches.attributes.nbytes
    )
    rows_bytes = sum(a.nbytes for a in kept._by_lead) if kept._by_lead is not None else 0
    columns, index = store.nbytes, store.index_nbytes
    del store, kept, touches
    # the same journeys as attrs Journey objects (on a sample, extrapolated)
    sample = generate(min(n, 20_000) * 2, seed=17, touches_per_lead=2.0)
    records = replay(pipeline, sample).records()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    journeys = rebuild(pipeline.funnel, records)
    objects = (tracemalloc.get_traced_memory()[0] - before) / len(journeys)
    tracemalloc.stop()
    del journeys, records

    def per(value: float) -> str:
        return f"{value / n:,.1f}"

    rows = [
        ["the input `TouchBatch` (arrays, lead ids, attribute dicts), for scale", per(input_bytes)],
        ["peak during the replay (input included)", per(peak)],
        ["**retained by the `Replay` once the input is dropped**", f"**{per(at_rest)}**"],
        ["… journey columns", per(columns)],
        ["… log columns", per(log_bytes)],
        ["… lead id strings and their list", per(ids)],
        ["… touch kinds and attribute columns", per(touch_bytes)],
        ["**retained after a first lookup** (index, rows by lead)", f"**{per(used)}**"],
        ["… the lookup index by lead id", per(index)],
        ["… the rows-by-lead lookup", per(rows_bytes)],
        ["retained by the `JourneyStore` alone (it keeps the log)", per(store_only)],
        ["attrs `Journey` objects (tracemalloc, 20k sample)", f"{objects:,.0f}"],
        ["log, per record (columns)", f"{log_bytes / n_records:,.1f}"],
    ]
    table(
        f"Bytes per journey after a bulk replay of {n:,} journeys "
        "(tracemalloc after `del` of the input and `gc.collect()`; target ≤ 300 retained)",
        ["what", "bytes per journey"],
        rows,
    )
    results["memory"] = {r[0]: r[1] for r in rows}
    results["memory_retained_per_journey"] = {"at rest": at_rest / n, "after a lookup": used / n}


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
    rounds = args.rounds
    seconds_np, ours = median_time(rounds, lambda: summarize_columnar(log))
    rows = [["NumPy (`summarize_columnar`), CPU time", f"{seconds_np:.3f}", "1.00x"]]
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
        clock = time.process_time if threads else time.perf_counter
        seconds, theirs = median_time(rounds, lambda con=con: duckdb_summary(con), clock)
        label = (
            "DuckDB SQL, 1 thread, CPU time"
            if threads
            else f"DuckDB SQL, default threads ({os.cpu_count()}), wall time"
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
        ["engine", "seconds (median)", "time vs NumPy"],
        rows,
    )
    results["summary"] = {row[0]: row[1] for row in rows}


def scaling(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The bulk path's cost per touch by size; rounds interleave the sizes (same conditions)."""
    pipeline = default_pipeline(presets.seed())
    batches = {n: generate(n, seed=23) for n in args.scaling}
    times: dict[int, list[float]] = {n: [] for n in args.scaling}
    for _ in range(args.scaling_rounds):
        for n, batch in batches.items():
            gc.collect()
            start = time.process_time()
            replay(pipeline, batch)
            times[n].append(time.process_time() - start)
    del batches
    gc.collect()
    reference = 1_000_000 if 1_000_000 in times else max(times)
    ref_per = statistics.median(times[reference]) / reference
    rows = []
    series = {}
    for n, values in times.items():
        seconds = statistics.median(values)
        per = seconds / n
        series[n] = {"touches/s": n / seconds, "ns per touch": per * 1e9, "vs 1M": per / ref_per}
        rows.append(
            [
                f"{n:,}",
                f"{seconds:.3f}",
                rate(n, seconds),
                f"{per * 1e9:,.0f}",
                f"{per / ref_per:.2f}x",
                " ".join(f"{v / n * 1e9:,.0f}" for v in values),
            ]
        )
    table(
        f"Scaling of the bulk path (median CPU time of {args.scaling_rounds} interleaved rounds)",
        [
            "touches",
            "seconds",
            "touches/s",
            "ns per touch",
            f"vs {reference:,}",
            "every round (ns)",
        ],
        rows,
    )
    results["scaling"] = series


def collector(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``Engine.ingest`` of one large call with full collections deferred and not (full mode).

    The rounds interleave the two settings; each call is charged one full
    collection after it (see :func:`median_time`).
    """
    if args.quick:
        return
    pipeline = default_pipeline(presets.seed())
    n = 200_000
    touches = list(generate(n, seed=13).touches())
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(2):
        for defer in (True, False):

            def ingest(defer: bool = defer) -> Any:
                engine = pipeline.engine()
                engine.defer_full_gc = defer
                engine.ingest(touches)
                return engine

            seconds, _ = median_time(1, ingest, settle=True)
            times[defer].append(seconds)
    deferred, default = (statistics.median(times[d]) for d in (True, False))
    rows = [
        ["full collections deferred (the default)", micros(deferred / n), "1.00x"],
        ["`defer_full_gc=False`", micros(default / n), f"{default / deferred:.2f}x"],
    ]
    table(
        f"The collector during one `Engine.ingest` call of {n:,} touches "
        "(per touch; medians of 2 interleaved rounds, one full collection after each charged)",
        ["setting", "per touch", "vs deferred"],
        rows,
    )
    results["collector"] = {"deferred": deferred / n, "default": default / n}


def profile_engine(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """cProfile of ``Engine.ingest`` over 20,000 touches of the bench stream, top entries.

    Twice: with the default seed pipeline, then with the fit grade and the
    ``MatrixPolicy`` of the matrix row (the reference engine's replay).
    """
    seed = default_pipeline(presets.seed())
    touches = list(generate(20_000, seed=13).touches())
    for title, pipeline in (
        ("the default pipeline", seed),
        ("a `CombinedScorer` and a `MatrixPolicy`", matrix_pipeline(seed)),
    ):
        engine = pipeline.engine()
        profiler = cProfile.Profile()
        profiler.enable()
        engine.ingest(touches)
        profiler.disable()
        for order, what in (("tottime", "own time"), ("cumulative", "cumulative time")):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(25)
            print(
                f"\n### cProfile of `Engine.ingest` with {title}, 20,000 touches "
                f"(top 25 by {what})\n"
            )
            print("```text")
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:20000])
            print("```")
    sys.stdout.flush()


def durable_ingest(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Durable ingestion into SQLite (and PostgreSQL, with a test server) against a raw insert."""
    from bench import ingest  # noqa: PLC0415

    n = 10_000 if args.quick else 100_000
    figures = ingest.run(n, args.rounds)
    print("\n## Durable ingestion (wall time, medians)\n")
    print(ingest.report(figures))
    results["durable_ingest"] = figures


def funnel_report_vs_duckdb(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The full funnel report on NumPy against the same report as DuckDB SQL (bench/report.py)."""
    from bench import report  # noqa: PLC0415

    figures = report.run(args.records, args.rounds)
    print("\n## The full funnel report against DuckDB\n")
    print(report.report(figures))
    results["funnel_report"] = figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; what CI runs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument(
        "--profile-engine", action="store_true", help="also cProfile 20,000 touches of the engine"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.engine_touches, args.touches, args.hand_touches = 3_000, 200_000, 50_000
        args.object_touches, args.journeys, args.records = 30_000, 100_000, 1_000_000
        args.rounds, args.history_timed, args.history_long = 3, 300, 10_000
        args.scaling, args.scaling_rounds = [10_000, 100_000, 1_000_000], 3
    else:
        args.engine_touches, args.touches, args.hand_touches = 20_000, 1_000_000, 1_000_000
        args.object_touches, args.journeys, args.records = 200_000, 1_000_000, 10_000_000
        args.rounds, args.history_timed, args.history_long = 5, 500, 10_000
        args.scaling, args.scaling_rounds = [10_000, 100_000, 1_000_000, 10_000_000], 3
    started = time.perf_counter()
    info = machine_info()
    print(f"# buyerjourney benchmark ({'quick' if args.quick else 'full'})\n")
    print(
        f"command: python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip()
    )
    for key, value in info.items():
        print(f"- {key}: {value}")
    print(
        "- timings: median CPU time (time.process_time) over rounds, unless said otherwise; "
        "the live engine, the hand loops and the reference replays are each charged one full "
        "collection of what they keep (the collector's cost of it is theirs)"
    )
    results: dict[str, Any] = {"machine": info, "quick": args.quick}
    throughput(args, results)
    collector(args, results)
    history(args, results)
    memory(args, results)
    summary(args, results)
    funnel_report_vs_duckdb(args, results)
    scaling(args, results)
    durable_ingest(args, results)
    if args.profile_engine:
        profile_engine(args, results)
    elapsed = time.perf_counter() - started
    print(f"\ntotal time: {elapsed:.1f} s (wall)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
