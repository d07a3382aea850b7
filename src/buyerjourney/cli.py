"""The ``buyerjourney`` command: check, draw, export and verify funnels; replay streams.

Usage::

    buyerjourney validate FILE... [--format text|json]
    buyerjourney diagram FILE|PRESET [--format mermaid|dot|svg] [-o OUT]
    buyerjourney presets
    buyerjourney show FILE|PRESET [--format toml|json]
    buyerjourney replay TOUCHES.jsonl|--sample [--funnel FILE|PRESET] [--owners FILE]
                        [--pipeline FILE] [--hooks MODULE]
                        [--db PATH [--replace]] [--until TIME] [--format text|json]
    buyerjourney verify FILE|PRESET|--pipeline FILE [--owners FILE] [--hooks MODULE]
                        [--budget N] [--structure-only] [--format text|json]
    buyerjourney ingest FILE...|--sample [--store PATH|URL] [--columns FILE] [--lateness D]
    buyerjourney journeys [LEAD] [--store PATH|URL]
    buyerjourney rebuild [--store PATH|URL] [--funnel FILE|PRESET|--pipeline FILE]
    buyerjourney quarantine [--store PATH|URL] [--retry]
    buyerjourney report --store PATH --funnel FILE|PRESET|--pipeline FILE [--html FILE]
    buyerjourney backtest|simulate|forecast ...

``ingest``, ``journeys``, ``rebuild`` and ``quarantine`` live in
:mod:`buyerjourney._commands.store`, ``report`` in ``_commands.report``, and
``backtest``, ``simulate`` and ``forecast`` in ``_commands.analytics``; each
command's ``--help`` gives its options.

Wherever a funnel is expected, give either a preset name (see
``buyerjourney presets``) or the path of a ``.toml`` / ``.json`` funnel file.
``buyerjourney show waterfall > my.toml`` starts a custom funnel from a preset.
The same command runs as ``python -m buyerjourney``.

The commands that run journeys (``replay`` and ``verify``) take
``--pipeline FILE``, a pipeline file (:func:`buyerjourney.load_pipeline`:
the funnel, owner rules, scorer, policy and thresholds), instead of
``--funnel`` / the funnel argument and ``--owners``; and ``--hooks MODULE``,
the Python module that registers the guards the funnel names. MODULE is a
module name, imported with the current directory first on ``sys.path``, or
the path of a ``.py`` file; it must bind, at module level, ``hooks`` to a
:class:`buyerjourney.Hooks` (see :func:`load_hooks_module`). Importing it runs
its code: a definition file never does, only this option.

Exit status:
    0: success; for ``validate``, every file is a valid funnel.
    1: an expected failure: a file is missing or malformed, a funnel has
       problems, a preset does not exist, an optional extra is missing, the
       ``--hooks`` module cannot be imported. The message goes to standard
       error (``validate`` reports on standard output) and no traceback is
       printed.
    2: a usage error: an unknown subcommand or option, a missing argument,
       options that exclude each other (``--pipeline`` with ``--funnel``).

Only ``verify``'s exploration needs an extra (``testing``, which brings
Hypothesis); everything else, ``validate`` and ``verify --structure-only``
included, runs on the base install. Without the extra, ``verify`` still runs
its structural checks and prints their report, then says on standard error
how to install the extra, and exits with status 1.

Adding a subcommand: write ``_add_<name>(subparsers)``, which creates the
subparser and sets ``run=_run_<name>`` as its default, and
``_run_<name>(args) -> int``; append ``_add_<name>`` to ``_SUBCOMMANDS``. Use
:func:`load_funnel_arg` to turn a ``FILE|PRESET`` argument into a funnel.
:func:`main` prints any :class:`~buyerjourney.errors.BuyerJourneyError`,
:class:`OSError` or :class:`CommandError` that ``_run_<name>`` lets through as
a message without traceback and exits with status 1 (status 2 for a
:class:`CommandError` marked as a usage error).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buyerjourney import presets
from buyerjourney._adapters.files import dumps_funnel
from buyerjourney._commands.analytics import add_backtest, add_forecast, add_simulate
from buyerjourney._commands.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    FUNNEL_ARG_HELP,
    HOOKS_ATTRIBUTE,
    PROG,
    CommandError,
    add_pipeline_options,
    describe_error,
    error,
    guard_hint,
    load_funnel_arg,
    load_hooks_module,
    pipeline_arg,
    silence_stdout,
    write_output,
)
from buyerjourney._commands.report import add_report
from buyerjourney._commands.store import add_ingest, add_journeys, add_quarantine, add_rebuild
from buyerjourney._version import __version__
from buyerjourney.errors import (
    BuyerJourneyError,
    FunnelFormatError,
    InvalidFunnel,
    MissingExtra,
    UnknownHook,
    UnknownPreset,
)

if TYPE_CHECKING:
    from buyerjourney._checks import MissingGuards, VerificationReport
    from buyerjourney._commands.common import SubParsers
    from buyerjourney._core.funnel import Funnel

__all__ = ["HOOKS_ATTRIBUTE", "CommandError", "load_hooks_module", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``buyerjourney`` command with *argv* (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 for an expected failure, 2 for a
        usage error (see the module documentation).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return _exit_status(exc.code)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except BrokenPipeError:
        silence_stdout()
        return EXIT_FAILURE
    except CommandError as exc:
        error(str(exc))
        return EXIT_USAGE if exc.usage else EXIT_FAILURE
    except (BuyerJourneyError, OSError) as exc:
        error(describe_error(exc))
        return EXIT_FAILURE


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check, draw and export buyer's-journey funnels.",
        epilog="Exit status: 0 success, 1 failure (e.g. an invalid funnel), 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


# ---------------------------------------------------------------- validate


def _add_validate(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check funnel files and report every problem",
        description=(
            "Load each funnel file and report every problem found. Exit status 0 if "
            "every file is a valid funnel, 1 otherwise."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help=FUNNEL_ARG_HELP)
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or a JSON report for programs",
    )
    parser.set_defaults(run=_run_validate)


def _run_validate(args: argparse.Namespace) -> int:
    results = [_validate_one(value) for value in args.files]
    if args.format == "json":
        print(json.dumps([report for report, _ in results], indent=2, ensure_ascii=False))
    else:
        for _, lines in results:
            for line in lines:
                print(line)
    return EXIT_OK if all(report["ok"] for report, _ in results) else EXIT_FAILURE


def _validate_one(value: str) -> tuple[dict[str, Any], list[str]]:
    """Load one funnel; return its JSON report and its lines for people."""

    def failed(
        problems: list[dict[str, str]], lines: list[str]
    ) -> tuple[dict[str, Any], list[str]]:
        return {"file": value, "ok": False, "problems": problems}, lines

    try:
        funnel = load_funnel_arg(value)
    except InvalidFunnel as exc:
        problems = [
            {"code": p.code, "message": p.message, "subject": p.subject} for p in exc.problems
        ]
        return failed(problems, [f"{value}: {p}" for p in exc.problems])
    except FunnelFormatError as exc:
        text = str(exc)
        message = text.removeprefix(f"{exc.source}: ")
        if exc.location:
            message = message.removeprefix(f"{exc.location}: ")
        problem = {"code": "format-error", "message": message, "subject": exc.location}
        return failed([problem], [text])
    except UnknownPreset as exc:
        problem = {"code": "not-found", "message": str(exc), "subject": value}
        return failed([problem], [f"{value}: {exc}"])
    except OSError as exc:
        reason = f"cannot open: {exc.strerror or exc}"
        problem = {"code": "unreadable-file", "message": reason, "subject": value}
        return failed([problem], [f"{value}: {reason}"])
    summary = f"ok ({len(funnel.stages)} stages, {len(funnel.transitions)} transitions)"
    return {"file": value, "ok": True, "problems": []}, [f"{value}: {summary}"]


# ---------------------------------------------------------------- diagram


def _add_diagram(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "diagram",
        help="draw a funnel as Mermaid, Graphviz DOT or SVG",
        description=(
            "Draw a funnel. Mermaid and DOT are text; SVG needs the 'diagrams' extra "
            "and Graphviz's `dot` program."
        ),
    )
    parser.add_argument("funnel", metavar="FILE|PRESET", help=FUNNEL_ARG_HELP)
    parser.add_argument(
        "--format",
        choices=("mermaid", "dot", "svg"),
        default="mermaid",
        help="the diagram language (default: mermaid)",
    )
    parser.add_argument(
        "-o", "--output", metavar="OUT", help="write to this file instead of standard output"
    )
    parser.set_defaults(run=_run_diagram)


def _run_diagram(args: argparse.Namespace) -> int:
    from buyerjourney._adapters import diagram  # noqa: PLC0415  (svg support pulls in optional imports)

    renderers: dict[str, Callable[[Funnel], str]] = {
        "mermaid": diagram.to_mermaid,
        "dot": diagram.to_dot,
        "svg": diagram.to_svg,
    }
    text = renderers[args.format](load_funnel_arg(args.funnel))
    write_output(text if text.endswith("\n") else text + "\n", args.output)
    return EXIT_OK


# ---------------------------------------------------------------- presets


def _add_presets(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "presets",
        help="list the preset funnels",
        description="List the preset funnels, each with a one-line description.",
    )
    parser.set_defaults(run=_run_presets)


def _run_presets(_: argparse.Namespace) -> int:
    names = presets.names()
    width = max(map(len, names))
    for name in names:
        funnel = presets.get(name)
        print(f"{name:<{width}}  {funnel.description}")
    return EXIT_OK


# ---------------------------------------------------------------- show


def _add_show(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "show",
        help="print a funnel in the file format (start a custom funnel from a preset)",
        description=(
            "Print a funnel as a funnel file, e.g. `buyerjourney show waterfall > my.toml` "
            "to start a custom funnel from a preset."
        ),
    )
    parser.add_argument("funnel", metavar="FILE|PRESET", help=FUNNEL_ARG_HELP)
    parser.add_argument("--format", choices=("toml", "json"), default="toml", help="default: toml")
    parser.set_defaults(run=_run_show)


def _run_show(args: argparse.Namespace) -> int:
    funnel = load_funnel_arg(args.funnel)
    write_output(dumps_funnel(funnel, format=args.format), None)
    return EXIT_OK


def _add_replay(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a stream of touches and actions; print stages, handoffs, SLAs, refusals",
        description=(
            "Replay a JSON Lines stream of touches (and manual actions) through a funnel with "
            "its default pipeline (points scoring, threshold and event policies), write the "
            "log to SQLite, and print per-stage counts, handoffs, SLA breaches and refusals. "
            "Bad lines are quarantined with their line number and reason; the rest land."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("touches", nargs="?", metavar="TOUCHES.jsonl", help="the stream to replay")
    source.add_argument(
        "--sample",
        action="store_true",
        help="replay the bundled sample (400 leads through the waterfall funnel)",
    )
    parser.add_argument(
        "--funnel",
        metavar="FILE|PRESET",
        help="the funnel (default: waterfall with --sample, else seed)",
    )
    parser.add_argument("--owners", metavar="FILE", help="owner rules (.toml or .json)")
    add_pipeline_options(parser)
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=":memory:",
        help="SQLite file for the log (default: in memory); must not hold a log already",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="delete the --db file first if it exists (start a fresh log)",
    )
    parser.add_argument(
        "--until",
        metavar="TIME",
        help="advance the clock to this ISO-8601 time at the end (escalates SLAs up to it)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    parser.set_defaults(run=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    from buyerjourney._adapters.readers import read_stream  # noqa: PLC0415
    from buyerjourney._adapters.sqlite import SQLiteStore  # noqa: PLC0415
    from buyerjourney._core.journey import rebuild  # noqa: PLC0415
    from buyerjourney._core.records import parse_time  # noqa: PLC0415  (keep `buyerjourney --help` fast)
    from buyerjourney._pipeline import run  # noqa: PLC0415
    from buyerjourney._report import format_summary, summarize  # noqa: PLC0415

    funnel_arg = args.funnel
    if funnel_arg is None and not args.pipeline:
        funnel_arg = "waterfall" if args.sample else "seed"
    pipeline = pipeline_arg(args, funnel_arg, check_owners=True)
    funnel = pipeline.funnel
    if args.replace and args.db != ":memory:":
        Path(args.db).unlink(missing_ok=True)
    if args.db != ":memory:" and Path(args.db).exists():
        with SQLiteStore(args.db) as existing:
            held = len(existing)
        if held:
            error(
                f"{args.db} already holds a log of {held} records; choose another --db "
                "or delete the file"
            )
            return EXIT_FAILURE
    with SQLiteStore(args.db) as store:
        try:
            engine = pipeline.engine(listeners=[store])
        except UnknownHook as exc:
            raise (guard_hint(exc) if exc.kind == "guard" else exc) from None
        if args.sample:
            from importlib.resources import files  # noqa: PLC0415

            sample = files("buyerjourney").joinpath("data/sample_touches.jsonl")
            text = sample.read_text(encoding="utf-8")
            result = run(engine, read_stream(text.splitlines(keepends=True)))
        else:
            result = run(engine, read_stream(args.touches))
        if args.until:
            engine.advance(parse_time(args.until, field="--until"))
        store.flush()
        verified = rebuild(funnel, store.read()) == dict(engine.journeys)
        summary = summarize(funnel, store.read())
    overdue = engine.overdue(engine.clock) if engine.clock is not None else []
    if args.format == "json":
        payload = {
            "funnel": funnel.name,
            "touches": result.touches,
            "total_actions": result.actions + result.refused,
            "performed_actions": result.actions,
            "refused_actions": result.refused,
            "actions": result.actions,
            "quarantined": [_quarantine_entry(q) for q in result.quarantined],
            "stages": [
                {
                    "stage": row.stage,
                    "reached": row.reached,
                    "entered": row.entered,
                    "exited": row.exited,
                    "current": row.current,
                    "step_conversion": row.step_conversion,
                    "median_time_seconds": None
                    if row.median_time is None
                    else row.median_time.total_seconds(),
                }
                for row in summary.stages
            ],
            "handoffs": [
                {"from": a, "to": b, "count": n} for (a, b), n in summary.handoffs.items()
            ],
            "accepted": summary.accepted,
            "rejected": summary.rejected,
            "sla_breaches": summary.breaches,
            "overdue_now": len(overdue),
            "refusals": summary.refusals,
            "records": summary.records,
            "log_verified": verified,
        }
        write_output(json.dumps(payload, indent=2) + "\n", None)
        return EXIT_OK if verified else EXIT_FAILURE
    lines = [
        f"funnel {funnel.name!r}: {result.touches} touches; "
        f"{result.actions + result.refused} actions: {result.actions} performed, "
        f"{result.refused} refused; {len(result.quarantined)} lines quarantined",
        format_summary(summary),
        "",
        f"overdue now ({engine.clock.isoformat() if engine.clock else '-'}): {len(overdue)}",
    ]
    if result.quarantined:
        lines += ["", "quarantined lines:"]
        lines += [
            f"  {_quarantine_entry(q)['position']}: {_quarantine_entry(q)['reason']}"
            for q in result.quarantined[:20]
        ]
        if len(result.quarantined) > 20:
            lines.append(f"  ... and {len(result.quarantined) - 20} more")
    where = "memory" if args.db == ":memory:" else args.db
    state = "equals" if verified else "DIFFERS FROM"
    lines += ["", f"log: {summary.records} records in {where}; rebuilt state {state} live state"]
    write_output("\n".join(lines) + "\n", None)
    return EXIT_OK if verified else EXIT_FAILURE


def _quarantine_entry(entry: Any) -> dict[str, Any]:
    if isinstance(entry, tuple):
        return {"position": entry[0], "reason": entry[1]}
    return {"position": entry.position, "reason": entry.reason}


def _add_verify(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="find every problem of a funnel with its owner rules (exploring needs 'testing')",
        description=(
            "Verify a funnel with its owner rules and the default pipeline (points scoring, "
            "threshold and event policies) or the --pipeline file: owner gaps, gates that can be "
            "bypassed, loops with no way out, stages never reached, handoffs never made, hooks "
            "that fail. Guards named by the funnel are code: pass --hooks MODULE to explore "
            "them (a guard the module lacks is then an error); without it each is reported as "
            "a warning and its transitions are explored as never enabled. The structural "
            "checks need nothing "
            "more than buyerjourney; exploring needs the 'testing' extra "
            "(pip install 'buyerjourney[testing]'). Exit status 0 when there is no "
            "error (warnings allowed), 1 otherwise."
        ),
    )
    parser.add_argument(
        "funnel", nargs="?", metavar="FILE|PRESET", help=FUNNEL_ARG_HELP + " (or --pipeline)"
    )
    parser.add_argument(
        "--owners",
        metavar="FILE",
        help="owner rules (.toml or .json); checked, not refused, when they have problems",
    )
    add_pipeline_options(parser)
    parser.add_argument(
        "--budget",
        type=int,
        default=100,
        metavar="N",
        help="examples per search: higher explores more and takes longer (default: 100)",
    )
    parser.add_argument(
        "--structure-only",
        action="store_true",
        help="run only the structural checks: nothing is explored, Hypothesis is not needed",
    )
    parser.add_argument(
        "--database",
        metavar="PATH",
        help=(
            "explore with new random examples on every run and keep the failing ones in PATH "
            "(default: the same derandomized examples every run, with Hypothesis's files in "
            ".hypothesis/ at the project root of the funnel or pipeline file)"
        ),
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    parser.set_defaults(run=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    if args.budget < 1:
        error(f"--budget must be a positive integer (got {args.budget})")
        return EXIT_USAGE
    # Imported here to keep `buyerjourney --help` fast.
    from buyerjourney._checks import verify_structure  # noqa: PLC0415

    # Owners unchecked on purpose: a problem of the rules becomes a finding, not an error.
    pipeline = pipeline_arg(args, args.funnel, check_owners=False)
    funnel = pipeline.funnel
    # With --hooks, a guard the module lacks is an error; without, it cannot be had.
    missing_guards: MissingGuards = "error" if args.hooks else "warning"
    missing: MissingExtra | None = None
    report: VerificationReport | None = None
    if not args.structure_only:
        try:
            explore = _exploring_verifier()
        except MissingExtra as exc:
            missing = exc
        else:
            report = explore(
                pipeline,
                budget=args.budget,
                missing_guards=missing_guards,
                database=args.database,
                derandomize=args.database is None,
                project=_definition_file(args),
            )
    if report is None:
        skipped = (
            "exploration was skipped: it needs Hypothesis, from the 'testing' extra "
            "(pip install 'buyerjourney[testing]'); only the structural checks ran"
        )
        report = verify_structure(
            funnel,
            pipeline.owners,
            pipeline.hooks,
            pipeline.scorer,
            pipeline.policy,
            thresholds=pipeline.thresholds,
            missing_guards=missing_guards,
            not_explored=skipped if missing is not None else "",
        )
    if args.format == "json":
        write_output(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", None)
    else:
        write_output(str(report) + "\n", None)
    if missing is not None:
        error(str(missing))
        return EXIT_FAILURE
    return EXIT_OK if report.ok else EXIT_FAILURE


def _definition_file(args: argparse.Namespace) -> Path | None:
    """The funnel or pipeline file a command was given, whose project keeps Hypothesis's files."""
    for value in (getattr(args, "pipeline", None), getattr(args, "funnel", None)):
        if value and Path(value).exists():
            return Path(value)
    return None


def _exploring_verifier() -> Callable[..., VerificationReport]:
    """The verifier that explores (``verify_pipeline``), which needs Hypothesis.

    Raises:
        MissingExtra: Hypothesis is not installed.
    """
    try:
        from buyerjourney.testing.verify import verify_pipeline  # noqa: PLC0415  (the extra)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "hypothesis":
            raise
        raise MissingExtra(
            "exploring a pipeline (buyerjourney verify)",
            "testing",
            "Only the structural checks ran; pass --structure-only to skip exploring on purpose.",
        ) from None
    return verify_pipeline


_SUBCOMMANDS: tuple[Callable[[SubParsers], None], ...] = (
    _add_validate,
    _add_diagram,
    _add_presets,
    _add_show,
    add_ingest,
    add_journeys,
    add_rebuild,
    add_quarantine,
    _add_replay,
    _add_verify,
    add_report,
    add_backtest,
    add_simulate,
    add_forecast,
)
"""The functions that add each subcommand to the parser, in help order."""
