"""The ``backtest``, ``simulate`` and ``forecast`` subcommands.

Usage::

    buyerjourney simulate FILE|PRESET|--pipeline FILE [--leads N] [--seed N] [--start TIME]
                          [--weeks N] [-o OUT.jsonl]
    buyerjourney backtest TOUCHES.jsonl [--funnel FILE|PRESET] [--pipeline FILE]
                          [--thresholds LIST|START:STOP:STEP] [--stage STAGE]
                          [--objective NAME] [--format text|json]
    buyerjourney forecast TOUCHES.jsonl|--store PATH [--funnel FILE|PRESET] [--pipeline FILE]
                          [--weeks N] [--runs N] [--seed N] [--as-of TIME] [--target STAGE]
                          [--no-arrivals] [--format text|json]

``backtest`` replays the stream through the pipeline once to learn what
happened (won leads, actual handoffs), then replays its touches under one
threshold policy per ``--thresholds`` value.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from buyerjourney._commands.common import (
    EXIT_OK,
    FUNNEL_ARG_HELP,
    CommandError,
    add_pipeline_options,
    error,
    pipeline_arg,
    write_output,
)
from buyerjourney.errors import BuyerJourneyError

if TYPE_CHECKING:
    from buyerjourney._commands.common import SubParsers
    from buyerjourney._core.records import Action, Record, Touch
    from buyerjourney._pipeline import Pipeline

__all__ = ["add_backtest", "add_forecast", "add_simulate"]


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    return number


def _thresholds(value: str) -> tuple[float, ...]:
    """``30,40,50`` or ``30:100:10`` (start, stop excluded, step)."""
    try:
        if ":" in value:
            start, stop, step = (float(part) for part in value.split(":"))
            if step <= 0 or not all(math.isfinite(x) for x in (start, stop, step)):
                raise ValueError
            count = math.ceil((stop - start) / step)
            values = tuple(start + i * step for i in range(max(count, 0)))
        else:
            values = tuple(float(part) for part in value.split(","))
    except ValueError:
        msg = (
            f"expected thresholds as a list (30,40,50) or a range START:STOP:STEP with a "
            f"positive step (30:100:10), got {value!r}"
        )
        raise argparse.ArgumentTypeError(msg) from None
    if not values or len(values) > 1000:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000 thresholds, got {len(values)}")
    return values


def _replay_stream(
    pipeline: Pipeline, source: str
) -> tuple[list[Touch | Action], tuple[Record, ...]]:
    """The stream's items and the log the pipeline makes of them (bad lines reported)."""
    from buyerjourney._adapters.readers import read_stream  # noqa: PLC0415
    from buyerjourney._core.records import Action, Touch  # noqa: PLC0415
    from buyerjourney._pipeline import run  # noqa: PLC0415

    if not Path(source).is_file():
        raise CommandError(f"{source}: no such file; give a JSON Lines stream of touches")
    items = list(read_stream(source))
    engine = pipeline.engine()
    result = run(engine, items)
    if result.quarantined:
        error(f"{source}: {len(result.quarantined)} lines quarantined (bad JSON, touch or order)")
    return [item for _, item in items if isinstance(item, (Touch, Action))], engine.records


# ---------------------------------------------------------------- simulate


def add_simulate(subparsers: SubParsers) -> None:
    """Add ``buyerjourney simulate``."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a seeded synthetic stream of touches and actions (JSON Lines)",
        description=(
            "Write a synthetic JSON Lines stream for a funnel: leads arriving over --weeks, "
            "engagement touches, score-driven moves and the manual actions the funnel needs "
            "(acceptances, sales moves), with the default conversion rates of the domain "
            "reference. The same seed gives the same stream; `buyerjourney replay` ingests it."
        ),
    )
    parser.add_argument("funnel", nargs="?", metavar="FILE|PRESET", help=FUNNEL_ARG_HELP)
    parser.add_argument("--owners", metavar="FILE", help="owner rules (.toml or .json)")
    add_pipeline_options(parser)
    parser.add_argument("--leads", type=int, default=500, help="how many leads (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="the seed (default: 0)")
    parser.add_argument(
        "--start",
        metavar="TIME",
        default="2024-01-01T00:00:00+00:00",
        help="when the first lead may arrive, ISO-8601 with an offset",
    )
    parser.add_argument(
        "--weeks", type=_positive_int, default=8, help="leads arrive over this many weeks"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    parser.set_defaults(run=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``buyerjourney simulate``."""
    from buyerjourney._analytics.simulate import simulate  # noqa: PLC0415

    if args.leads < 0:
        raise CommandError(f"--leads must be 0 or more (got {args.leads})", usage=True)
    pipeline = pipeline_arg(args, args.funnel, check_owners=True)
    simulation = simulate(
        pipeline,
        leads=args.leads,
        seed=args.seed,
        start=args.start,
        span=timedelta(weeks=args.weeks),
    )
    write_output(simulation.to_jsonl(), args.output)
    return EXIT_OK


# ---------------------------------------------------------------- backtest


def add_backtest(subparsers: SubParsers) -> None:
    """Add ``buyerjourney backtest``."""
    parser = subparsers.add_parser(
        "backtest",
        help="replay a stream under candidate handoff thresholds; precision, recall, workload",
        description=(
            "Replay a JSON Lines stream through the pipeline to learn what happened (which "
            "leads were won, when each was handed off), then replay its touches under one "
            "score threshold per --thresholds value for the handoff event, and print for each "
            "the leads handed off, precision, recall, F1, how much earlier or later than the "
            "actual handoff, and the weekly workload; the best by --objective is marked."
        ),
    )
    parser.add_argument("touches", metavar="TOUCHES.jsonl", help="the history to replay")
    parser.add_argument("--funnel", metavar="FILE|PRESET", help=FUNNEL_ARG_HELP)
    parser.add_argument("--owners", metavar="FILE", help="owner rules (.toml or .json)")
    add_pipeline_options(parser)
    parser.add_argument(
        "--thresholds",
        type=_thresholds,
        default=_thresholds("20:100:10"),
        metavar="LIST|START:STOP:STEP",
        help="the scores to try: 30,40,50 or 20:100:10 (the default)",
    )
    parser.add_argument("--stage", help="the handoff stage (default: the first one sales owns)")
    parser.add_argument(
        "--objective",
        default="f1",
        help="f1 (default), precision, recall, or precision@recall>=X",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    parser.add_argument(
        "--html",
        metavar="FILE",
        help="also write one self-contained HTML page: the funnel and handoff reports of the "
        "replayed log and the candidates' precision/recall curve (needs the 'report' extra)",
    )
    parser.set_defaults(run=run_backtest)


def run_backtest(args: argparse.Namespace) -> int:
    """Run ``buyerjourney backtest``."""
    from buyerjourney._analytics.backtest import (  # noqa: PLC0415
        Outcomes,
        PolicyCandidate,
        as_objective,
        backtest,
        threshold_candidates,
    )

    try:
        as_objective(args.objective)
    except ValueError as exc:
        raise CommandError(f"--objective: {exc}", usage=True) from None
    pipeline = pipeline_arg(args, args.funnel, check_owners=True)
    items, records = _replay_stream(pipeline, args.touches)
    try:
        outcomes = Outcomes.from_log(pipeline.funnel, records, stage=args.stage)
        candidates = list(threshold_candidates(pipeline, args.thresholds, stage=args.stage))
    except ValueError as exc:
        if isinstance(exc, BuyerJourneyError):
            raise
        raise CommandError(str(exc)) from None
    if pipeline.policy is not None:
        candidates.append(PolicyCandidate("current", pipeline.policy))
    result = backtest(
        pipeline,
        items,
        outcomes,
        candidates,
        stage=args.stage,
        objective=args.objective,
    )
    if args.html:
        from buyerjourney._analytics.funnel import funnel_report  # noqa: PLC0415
        from buyerjourney._analytics.handoffs import handoff_report  # noqa: PLC0415
        from buyerjourney._analytics.html import write_html  # noqa: PLC0415

        write_html(
            args.html,
            funnel_report(pipeline.funnel, records),
            handoffs=handoff_report(pipeline.funnel, records),
            backtest=result,
            title=f"Backtest: {pipeline.funnel.name}",
        )
    if args.format == "json":
        write_output(json.dumps(result.to_dict(), indent=2) + "\n", None)
    else:
        write_output(result.format() + "\n", None)
    return EXIT_OK


# ---------------------------------------------------------------- forecast


def add_forecast(subparsers: SubParsers) -> None:
    """Add ``buyerjourney forecast``."""
    parser = subparsers.add_parser(
        "forecast",
        help="forecast conversions per week, with intervals (Monte Carlo, seeded)",
        description=(
            "Estimate step conversion rates and times from a log (a JSON Lines stream replayed "
            "through the pipeline, or a SQLite store), then forecast entries into the target "
            "stage over the next --weeks weeks by Monte Carlo: per week and cumulative, the "
            "median and the interval of --interval of the runs."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("touches", nargs="?", metavar="TOUCHES.jsonl", help="a stream to replay")
    source.add_argument("--store", metavar="PATH", help="a SQLite store holding the log")
    parser.add_argument("--funnel", metavar="FILE|PRESET", help=FUNNEL_ARG_HELP)
    parser.add_argument("--owners", metavar="FILE", help="owner rules (.toml or .json)")
    add_pipeline_options(parser)
    parser.add_argument("--weeks", type=_positive_int, default=8, help="the horizon (default: 8)")
    parser.add_argument("--runs", type=_positive_int, default=1000, help="default: 1000")
    parser.add_argument("--seed", type=int, default=0, help="the seed (default: 0)")
    parser.add_argument("--as-of", metavar="TIME", help="forecast from this ISO-8601 time")
    parser.add_argument("--target", metavar="STAGE", help="default: the first won stage")
    parser.add_argument(
        "--interval", type=float, default=0.8, help="the central share of runs (default: 0.8)"
    )
    parser.add_argument(
        "--no-arrivals", action="store_true", help="forecast the open leads only, no new leads"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    parser.set_defaults(run=run_forecast)


def run_forecast(args: argparse.Namespace) -> int:
    """Run ``buyerjourney forecast``."""
    from buyerjourney._analytics.forecast import forecast  # noqa: PLC0415

    pipeline = pipeline_arg(args, args.funnel, check_owners=True)
    if args.store:
        from buyerjourney._adapters.sqlite import SQLiteStore  # noqa: PLC0415

        if not Path(args.store).is_file():
            raise CommandError(f"--store {args.store}: no such file")
        with SQLiteStore(args.store) as store:
            records: tuple[Record, ...] = tuple(store.read())
    else:
        _, records = _replay_stream(pipeline, args.touches)
    try:
        result = forecast(
            pipeline.funnel,
            records,
            weeks=args.weeks,
            as_of=args.as_of,
            target=args.target,
            runs=args.runs,
            seed=args.seed,
            interval=args.interval,
            arrivals=not args.no_arrivals,
        )
    except ValueError as exc:
        if isinstance(exc, BuyerJourneyError):
            raise
        raise CommandError(str(exc)) from None
    if args.format == "json":
        write_output(json.dumps(result.to_dict(), indent=2) + "\n", None)
    else:
        write_output(result.format() + "\n", None)
    return EXIT_OK
