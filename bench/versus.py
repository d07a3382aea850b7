"""The live engine and the reference replays against an earlier revision, one process per figure.

    python -m bench.versus REV [--touches N] [--rounds N] [--repeat N]

REV is any git revision of this repository (a commit, a tag, ``main~5``). Its
``src/`` is extracted with ``git archive`` into a temporary directory; every
figure is measured in a fresh process that imports the package from there
or from this working tree, alternately (old, new, old, new ... ``--repeat``
times), on the same stream (``bench/streams.py`` of this tree, seed 13) and
the same pipelines built through the public API both revisions have:

* ``engine``: ``Engine.ingest`` with ``default_pipeline(presets.seed())``;
* ``custom``: ``bulk.replay`` with that pipeline's policy wrapped in a function;
* ``matrix``: ``bulk.replay`` with a ``CombinedScorer`` (points and a
  ``FitGrader``) and a ``MatrixPolicy`` before the touch-kind policy, from
  ``Touch`` objects, and ``matrix_batch`` the same from a ``TouchBatch``.

Each figure is the median CPU time per touch of ``--rounds`` calls, each
charged one full collection after it while its result is alive (as
``median_time(..., settle=True)`` in ``bench/__main__.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("engine", "custom", "matrix", "matrix_batch")

_CHILD = r"""
import gc, statistics, sys, time
sys.path.append(sys.argv[4])  # this tree's bench/, after the package under test
from bench.streams import generate
from buyerjourney import Pipeline, default_pipeline, presets
from buyerjourney.bulk import replay
from buyerjourney.policies import AnyOf, MatrixPolicy
from buyerjourney.scoring import CombinedScorer, FitCriterion, FitGrader

what, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
base = default_pipeline(presets.seed())
batch = generate(n, seed=13)
touches = list(batch.touches())


def matrix_pipeline():
    grader = FitGrader([FitCriterion("enterprise", "segment", ("enterprise",), steps=6),
                        FitCriterion("mid_market", "segment", ("mid_market",), steps=3)])
    matrix = MatrixPolicy("engage", accept=frozenset({"A1", "A2", "B1", "B2", "C1"}),
                          engagement_bands=(50, 25, 10), stages=("awareness",))
    return Pipeline(base.funnel, base.owners,
                    scorer=CombinedScorer(engagement=base.scorer, fit=grader),
                    policy=AnyOf(matrix, base.policy.policies[1]), thresholds=base.thresholds)


def custom_pipeline():
    inner = base.policy

    def my_policy(journey, score, touch):
        return inner(journey, score, touch)

    return Pipeline(base.funnel, base.owners, scorer=base.scorer, policy=my_policy,
                    thresholds=base.thresholds)


if what == "engine":
    def run():
        engine = base.engine()
        engine.ingest(touches)
        return engine
elif what == "custom":
    pipeline = custom_pipeline()
    run = lambda: replay(pipeline, touches)
elif what == "matrix":
    pipeline = matrix_pipeline()
    run = lambda: replay(pipeline, touches)
else:
    pipeline = matrix_pipeline()
    run = lambda: replay(pipeline, batch)
times = []
for _ in range(rounds):
    gc.collect()
    start = time.process_time()
    gc.collect()
    baseline = time.process_time() - start
    start = time.process_time()
    result = run()
    elapsed = time.process_time() - start
    after = time.process_time()
    gc.collect()
    times.append(elapsed + max(0.0, time.process_time() - after - baseline))
    del result
print(statistics.median(times) / n * 1e6)
"""


def _extract(rev: str, into: Path) -> Path:
    """The ``src/`` of *rev*, extracted under *into*."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _measure(src: Path, what: str, touches: int, rounds: int) -> float:
    """Microseconds per touch of *what* with the package of *src*, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, what, str(touches), str(rounds), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("rev", help="the earlier git revision")
    parser.add_argument("--touches", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2, help="processes per figure and tree")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        old = _extract(args.rev, Path(directory))
        new = ROOT / "src"
        print(f"## This tree against {args.rev}: µs per touch ({args.touches:,} touches)\n")
        print(f"| path | {args.rev} | this tree | faster |")
        print("|---|---:|---:|---:|")
        for what in args.paths:
            figures: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.repeat):
                figures["old"].append(_measure(old, what, args.touches, args.rounds))
                figures["new"].append(_measure(new, what, args.touches, args.rounds))
            before, after = (statistics.median(figures[k]) for k in ("old", "new"))
            print(f"| {what} | {before:,.2f} | {after:,.2f} | {before / after:,.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
