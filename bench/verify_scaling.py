"""``python -m bench.verify_scaling``: how the time of ``verify`` grows with a funnel's size.

Usage::

    python -m bench.verify_scaling                    # 200, 400, 800 and 1,600 stages, 3 rounds
    python -m bench.verify_scaling --sizes 100 200 --rounds 1
    python -m bench.verify_scaling --profile 1600     # also cProfile one verify of 1,600 stages
    python -m bench.verify_scaling --json out.json    # also write the figures as JSON

Each funnel is a chain of *n* stages (the last one won), each with an exit to
``lost``, a gate halfway with a recycle back, and a ``trial`` branch near the
end that leads to the won stage: the shape of a long product-led funnel. Its
pipeline is :func:`~buyerjourney.default_pipeline` (points scoring, and a
touch-kind policy naming every event, so that ``verify`` probes one touch
kind per event).

For each size the bench times, as the **median of CPU time**
(``time.process_time``) over the rounds: building the funnel (validation
included), the structural checks alone (``verify --structure-only``), and the
whole ``verify`` at the default budget (derandomized, so every round
explores the same examples). It prints seconds per stage, and the
growth of each figure from the size before: doubling the size doubles a
linear cost (2.0x) and quadruples a quadratic one (4.0x).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from buyerjourney import Funnel, Stage, Transition, default_pipeline
from buyerjourney._checks import verify_structure
from buyerjourney.testing.verify import verify_pipeline

SIZES = (200, 400, 800, 1600)
ROUNDS = 3


def chain(n: int) -> Funnel:
    """A chain of *n* stages with a gate halfway, exits to ``lost`` and a trial branch."""
    half = n // 2
    stages = [
        Stage(
            f"s{i}",
            i,
            owner="marketing" if i < half else "sales",
            gate=i == half,
            initial=i == 0,
        )
        for i in range(n - 1)
    ]
    stages += [
        Stage(f"s{n - 1}", n - 1, owner="sales", kind="won", terminal=True),
        Stage("lost", 0, owner="sales", kind="lost", terminal=True),
        Stage("trial", n - 2, owner="sales"),
    ]
    moves = [Transition(f"e{i}", f"s{i}", f"s{i + 1}") for i in range(n - 1)]
    moves.append(Transition("recycle", f"s{half}", f"s{half - 1}", "backward"))
    moves += [Transition("lose", f"s{i}", "lost", "exit") for i in range(n - 1)]
    moves += [
        Transition("start_trial", f"s{n - 3}", "trial"),
        Transition("buy", "trial", f"s{n - 1}"),
        Transition("lose", "trial", "lost", "exit"),
    ]
    return Funnel(f"chain{n}", stages, moves)


def _median_cpu(work: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """The median CPU seconds of *rounds* calls of *work*, and what the last call returned."""
    times: list[float] = []
    result: Any = None
    for _ in range(rounds):
        start = time.process_time()
        result = work()
        times.append(time.process_time() - start)
    return statistics.median(times), result


def measure(n: int, rounds: int) -> dict[str, Any]:
    """Time building, checking and verifying a chain of *n* stages."""
    build, funnel = _median_cpu(lambda: chain(n), rounds)
    pipeline = default_pipeline(funnel)
    structure, _ = _median_cpu(
        lambda: verify_structure(
            funnel,
            pipeline.owners,
            pipeline.hooks,
            pipeline.scorer,
            pipeline.policy,
            thresholds=pipeline.thresholds,
        ),
        rounds,
    )
    whole, report = _median_cpu(lambda: verify_pipeline(pipeline), rounds)
    coverage = report.coverage
    return {
        "stages": len(funnel.stages),
        "transitions": len(funnel.transitions),
        "build_s": build,
        "structure_s": structure,
        "verify_s": whole,
        "ok": report.ok,
        "runs": coverage.runs if coverage is not None else 0,
        "reached": len(coverage.reached) if coverage is not None else 0,
    }


def _growth(rows: Sequence[dict[str, Any]], i: int, key: str) -> str:
    if i == 0 or rows[i - 1][key] <= 0:
        return ""
    return f" ({rows[i][key] / rows[i - 1][key]:.1f}x)"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The figures as a Markdown table, with the growth from the row before."""
    lines = [
        "| stages | transitions | build funnel | structural checks | whole verify "
        "| verify per stage | engine runs | stages reached |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, row in enumerate(rows):
        per_stage = row["verify_s"] / row["stages"]
        lines.append(
            f"| {row['stages']:,} | {row['transitions']:,} "
            f"| {row['build_s']:.3f} s{_growth(rows, i, 'build_s')} "
            f"| {row['structure_s']:.3f} s{_growth(rows, i, 'structure_s')} "
            f"| {row['verify_s']:.2f} s{_growth(rows, i, 'verify_s')} "
            f"| {per_stage:.5f} s | {row['runs']} | {row['reached']:,} |"
        )
    return "\n".join(lines)


def profile(n: int, top: int = 25) -> str:
    """cProfile one ``verify`` of a chain of *n* stages: the functions with most own time."""
    pipeline = default_pipeline(chain(n))
    profiler = cProfile.Profile()
    profiler.enable()
    verify_pipeline(pipeline)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and print its table (and a profile, if asked)."""
    parser = argparse.ArgumentParser(prog="python -m bench.verify_scaling", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), metavar="N")
    parser.add_argument("--rounds", type=int, default=ROUNDS, metavar="K")
    parser.add_argument("--profile", type=int, default=None, metavar="N")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if args.rounds < 1 or any(n < 4 for n in args.sizes):
        parser.error("--rounds must be at least 1 and every size at least 4 stages")
    rows = []
    for n in sorted(args.sizes):
        rows.append(measure(n, args.rounds))
        print(f"measured {n:,} stages", file=sys.stderr, flush=True)
    print(f"verify of a chain with a trial branch, median CPU time of {args.rounds} round(s)\n")
    print(table(rows))
    if args.profile is not None:
        print(f"\ncProfile of one verify of {args.profile:,} stages\n")
        print(profile(args.profile))
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"rounds": args.rounds, "rows": rows}, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
