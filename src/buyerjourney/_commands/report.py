"""``buyerjourney report``: the funnel and handoff reports of a stored log, as tables, JSON or HTML.

Usage::

    buyerjourney report --store PATH [--funnel FILE|PRESET | --pipeline FILE [--hooks MODULE]]
                        [--as-of TIME] [--by PROPERTY [--attribution first|last]]
                        [--window DAYS] [--path STAGE,STAGE,...] [--cohorts week|month]
                        [--format text|json] [--html FILE]
                        [--charts DIR [--chart-format png|svg]]

The store is a SQLite file written by ``buyerjourney replay --db PATH`` or by
an engine with a :class:`~buyerjourney.SQLiteStore`. The figures come from
:mod:`buyerjourney.analytics` (``funnel_report``, ``funnel_breakdown``,
``funnel_cohorts``, ``handoff_report``); this command only lays them out.
``--html`` and ``--charts`` need the ``report`` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buyerjourney._commands.common import (
    EXIT_OK,
    FUNNEL_ARG_HELP,
    CommandError,
    add_pipeline_options,
    pipeline_arg,
    write_output,
)

if TYPE_CHECKING:
    from buyerjourney._analytics.funnel import Breakdown, Cohorts, FunnelReport
    from buyerjourney._analytics.handoffs import HandoffReport
    from buyerjourney._commands.common import SubParsers
    from buyerjourney._core.funnel import Funnel
    from buyerjourney._core.records import Record

__all__ = ["TEXT_WIDTH", "add_report", "format_text", "run_report", "table"]

TEXT_WIDTH = 100
"""The widest line of the text output, in characters."""


def add_report(subparsers: SubParsers) -> None:
    """Add the ``report`` subcommand to *subparsers*."""
    parser = subparsers.add_parser(
        "report",
        help="funnel and handoff reports of a stored log: tables, JSON, HTML, charts",
        description=(
            "Compute the funnel report (per step: entered, exited, balance, conversion, "
            "drop-off, times) and the handoff report (acceptance, time to accept, SLA "
            "breaches, rejections, workload) of a log stored in SQLite by `buyerjourney "
            "replay --db PATH`, as of any date, and print them as tables or JSON; write a "
            "self-contained HTML page and PNG/SVG charts (these need the 'report' extra)."
        ),
    )
    parser.add_argument(
        "--store", required=True, metavar="PATH", help="the SQLite store file holding the log"
    )
    parser.add_argument(
        "--funnel", metavar="FILE|PRESET", help=FUNNEL_ARG_HELP + " (the log's funnel)"
    )
    add_pipeline_options(parser)
    parser.add_argument(
        "--as-of",
        metavar="TIME",
        help="an ISO-8601 time with an offset: ignore records dated after it",
    )
    parser.add_argument(
        "--by", metavar="PROPERTY", help="break the funnel down by this lead property"
    )
    parser.add_argument(
        "--attribution",
        choices=("first", "last"),
        default="first",
        help="which value of --by a lead gets: first touch (default) or last touch",
    )
    parser.add_argument(
        "--window",
        metavar="DAYS",
        type=float,
        help="the conversion window, in days from the entry into step 1 (default: none)",
    )
    parser.add_argument(
        "--path",
        metavar="STAGE,STAGE,...",
        help="the steps, comma-separated (default: the funnel's success path)",
    )
    parser.add_argument(
        "--cohorts",
        choices=("week", "month"),
        default="week",
        help="the cohort period: entry week (default) or month",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    parser.add_argument(
        "--html", metavar="FILE", help="also write the self-contained HTML report to FILE"
    )
    parser.add_argument(
        "--charts", metavar="DIR", help="also write every chart to DIR (created if needed)"
    )
    parser.add_argument(
        "--chart-format",
        choices=("png", "svg"),
        default="png",
        help="the file format of --charts (default: png)",
    )
    parser.set_defaults(run=run_report, owners=None)


class _Reports:
    """The reports the command shows, computed once."""

    def __init__(
        self,
        funnel: FunnelReport,
        handoffs: HandoffReport,
        cohorts: Cohorts,
        breakdown: Breakdown | None,
    ) -> None:
        self.funnel = funnel
        self.handoffs = handoffs
        self.cohorts = cohorts
        self.breakdown = breakdown


def run_report(args: argparse.Namespace) -> int:
    """Run ``buyerjourney report`` with parsed *args*.

    Returns:
        The exit status (0).

    Raises:
        CommandError: The store is missing or holds stages the funnel lacks,
            or an option is invalid.
        BuyerJourneyError: The store cannot be read, the funnel or pipeline
            file is invalid, or the HTML and charts need the missing extra.
    """
    if args.funnel is None and not args.pipeline:
        msg = (
            "give the funnel the log follows: --funnel FILE|PRESET or --pipeline FILE "
            "(the one the log was replayed with)"
        )
        raise CommandError(msg, usage=True)
    funnel = pipeline_arg(args, args.funnel, check_owners=False).funnel
    window = _window(args.window)
    as_of = _as_of(args.as_of)
    path = _path(args.path)
    records = _read_store(args.store)
    _check_stages(funnel, records, args.store)
    reports = _compute(funnel, records, args, path=path, window=window, as_of=as_of)
    if args.format == "json":
        write_output(json.dumps(_payload(reports), indent=2, ensure_ascii=False) + "\n", None)
    else:
        write_output(
            format_text(reports.funnel, reports.handoffs, reports.cohorts, reports.breakdown)
            + "\n",
            None,
        )
    if args.html:
        from buyerjourney._analytics.html import write_html  # noqa: PLC0415  (the extra)

        write_html(
            args.html,
            reports.funnel,
            handoffs=reports.handoffs,
            breakdown=reports.breakdown,
            cohorts=reports.cohorts,
        )
    if args.charts:
        _write_charts(reports, Path(args.charts), args.chart_format)
    return EXIT_OK


def _window(days: float | None) -> timedelta | None:
    if days is None:
        return None
    if not math.isfinite(days) or days <= 0:
        msg = f"--window must be a positive number of days (got {days:g})"
        raise CommandError(msg, usage=True)
    return timedelta(days=days)


def _as_of(value: str | None) -> datetime | None:
    from buyerjourney._core.records import parse_time  # noqa: PLC0415

    return None if value is None else parse_time(value, field="--as-of")


def _path(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    stages = tuple(part.strip() for part in value.split(","))
    if not all(stages):
        msg = f"--path must name stages separated by commas, such as mql,sal,sql (got {value!r})"
        raise CommandError(msg, usage=True)
    return stages


def _read_store(location: str) -> tuple[Record, ...]:
    from buyerjourney._adapters.sqlite import SQLiteStore  # noqa: PLC0415

    file = Path(location)
    if not file.exists():
        msg = (
            f"--store {location}: no such file; give the SQLite file written by "
            "`buyerjourney replay --db PATH`"
        )
        raise CommandError(msg)
    if file.is_dir():
        raise CommandError(f"--store {location}: is a directory, not a store file")
    with SQLiteStore(file) as store:
        return tuple(store.read())


def _check_stages(funnel: Funnel, records: Sequence[Record], location: str) -> None:
    """Refuse a log that enters stages the funnel does not have (the wrong funnel)."""
    unknown = sorted(
        {
            str(r.target)
            for r in records
            if r.kind.enters_stage and r.target is not None and r.target not in funnel
        }
    )
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        msg = (
            f"the log in {location} enters stages that funnel {funnel.name!r} does not have: "
            f"{shown}{more}; give the funnel it was written with (--funnel or --pipeline)"
        )
        raise CommandError(msg)


def _compute(
    funnel: Funnel,
    records: Sequence[Record],
    args: argparse.Namespace,
    *,
    path: tuple[str, ...] | None,
    window: timedelta | None,
    as_of: datetime | None,
) -> _Reports:
    from buyerjourney._analytics.funnel import (  # noqa: PLC0415
        funnel_breakdown,
        funnel_cohorts,
        funnel_report,
    )
    from buyerjourney._analytics.handoffs import handoff_report  # noqa: PLC0415

    options: dict[str, Any] = {"path": path, "window": window, "as_of": as_of}
    try:
        report = funnel_report(funnel, records, **options)
        breakdown = (
            None
            if args.by is None
            else funnel_breakdown(funnel, records, args.by, attribution=args.attribution, **options)
        )
        cohorts = funnel_cohorts(funnel, records, period=args.cohorts, **options)
    except ValueError as exc:
        raise CommandError(f"--path: {exc}", usage=True) from None
    return _Reports(report, handoff_report(funnel, records, as_of=as_of), cohorts, breakdown)


def _payload(reports: _Reports) -> dict[str, Any]:
    return {
        "funnel": reports.funnel.to_dict(),
        "breakdown": None if reports.breakdown is None else reports.breakdown.to_dict(),
        "cohorts": reports.cohorts.to_dict(),
        "handoffs": reports.handoffs.to_dict(),
    }


def _write_charts(reports: _Reports, directory: Path, suffix: str) -> None:
    from buyerjourney._analytics import charts  # noqa: PLC0415  (the extra)

    made = [
        charts.funnel_chart(reports.funnel),
        charts.flow_chart(reports.funnel),
        charts.time_in_stage_chart(reports.funnel),
        charts.handoff_chart(reports.handoffs),
        charts.cohort_chart(reports.cohorts),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    for chart in made:
        chart.save(directory / f"{chart.kind}.{suffix}")


# ---------------------------------------------------------------- text


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "~"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    text_columns: int = 1,
    width: int = TEXT_WIDTH,
) -> list[str]:
    """Lay *rows* out as an aligned plain-text table no wider than *width*.

    The first *text_columns* columns are text, aligned left; the others are
    figures, aligned right. When the table would be too wide, the first column, then the
    headers of the others, are cut (a cut name ends with ``~``).

    Args:
        header: The column names.
        rows: The rows, each as many cells as *header*.
        text_columns: How many columns, from the left, are text.
        width: The widest line allowed.

    Returns:
        The lines of the table (the header first).
    """
    cells = [[str(cell) for cell in row] for row in rows]
    data = [max((len(row[i]) for row in cells), default=0) for i in range(len(header))]
    widths = [max(len(name), data[i]) for i, name in enumerate(header)]
    gap = 2
    overflow = sum(widths) + gap * (len(widths) - 1) - width
    if overflow > 0:  # cut the figures' headers down to their data (at least 5), then names
        for i in range(1, len(widths)):
            keep = max(data[i], 5)
            cut = min(overflow, widths[i] - keep) if widths[i] > keep else 0
            widths[i] -= cut
            overflow -= cut
        if overflow > 0:
            widths[0] = max(widths[0] - overflow, 6)
    lines = []
    for row in [list(header), *cells]:
        parts = [
            _fit(cell, widths[i]).ljust(widths[i])
            if i < text_columns
            else _fit(cell, widths[i]).rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append((" " * gap).join(parts).rstrip())
    rule = "-" * min(len(max(lines, key=len)), width)
    return [lines[0], rule, *lines[1:]]


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, TEXT_WIDTH, subsequent_indent="  ") or [""]


def _funnel_text(report: FunnelReport) -> list[str]:
    from buyerjourney._analytics._stats import format_duration as d  # noqa: PLC0415
    from buyerjourney._analytics._stats import format_rate as r  # noqa: PLC0415

    lines = [
        *_wrapped(f"funnel {report.funnel}: {' > '.join(report.path)}"),
        *_wrapped(report.describe()),
        f"{report.leads} leads entered {report.path[0]} ({report.journeys} journeys in the log); "
        f"overall conversion {r(report.overall_conversion)}",
    ]
    if report.empty:
        return [*lines, "no data: no lead entered the first step"]
    lines += [""]
    lines += table(
        [
            "step",
            "entered",
            "exited",
            "balance",
            "step conv",
            "overall",
            "drop-off",
            "in stage",
            "to next",
            "to next p90",
        ],
        [
            (
                row.stage,
                row.entered,
                row.exited,
                row.balance,
                r(row.step_conversion),
                r(row.overall_conversion),
                r(row.drop_off),
                d(row.velocity),
                d(row.time_to_convert.median),
                d(row.time_to_convert.p90),
            )
            for row in report.steps
        ],
    )
    lines += ["", "(in stage: median time in stage, the velocity; to next: time to the next step)"]
    exits = [
        (row.stage, branch.stage, branch.kind, branch.leads, branch.converted)
        for row in report.steps
        for branch in row.exits
    ]
    if exits:
        lines += ["", "exits: where leads went right after each step"]
        lines += table(["step", "went to", "kind", "leads", "converted"], exits, text_columns=3)
    return lines


def _matrix_text(
    title: str, first: str, labelled: Sequence[tuple[str, FunnelReport]], path: Sequence[str]
) -> list[str]:
    from buyerjourney._analytics._stats import format_rate  # noqa: PLC0415

    rows = [
        (label, *(row.entered for row in report.steps), format_rate(report.overall_conversion))
        for label, report in labelled
    ]
    return ["", *_wrapped(title), *table([first, *path, "overall"], rows)]


def _handoff_text(report: HandoffReport) -> list[str]:
    from buyerjourney._analytics._stats import format_rate  # noqa: PLC0415

    lines = ["", "handoffs", *_wrapped(report.describe())]
    if report.empty:
        return [*lines, "no data: no handoff, answer, breach or recycle in the period"]
    lines += [
        f"handoffs {report.handoffs}, gate entries {report.gate_entries}, accepted "
        f"{report.accepted}, rejected {report.rejected}, waiting now {report.pending}",
        f"acceptance rate {format_rate(report.acceptance_rate)}; time to accept "
        f"{report.time_to_accept.summary()}",
    ]
    if report.breaches:
        lines += ["", *table(["SLA breaches at stage", "breaches"], list(report.breaches.items()))]
    if report.rejection_reasons:
        lines += [
            "",
            *table(["rejection reason", "rejections"], list(report.rejection_reasons.items())),
        ]
    if report.recycles:
        lines += [
            "",
            *table(
                ["recycled from", "to", "reason", "moves"],
                [(c.source, c.target, c.reason, c.count) for c in report.recycles],
                text_columns=3,
            ),
        ]
    if report.teams:
        lines += [
            "",
            *table(
                [
                    "team",
                    "received",
                    "handed off",
                    "accepted",
                    "rejected",
                    "breaches",
                    "open",
                    "waiting",
                ],
                [
                    (
                        t.team,
                        t.received,
                        t.handed_off,
                        t.accepted,
                        t.rejected,
                        t.breaches,
                        t.open,
                        t.waiting,
                    )
                    for t in report.teams
                ],
            ),
        ]
    if report.actors:
        lines += [
            "",
            *table(
                ["owner", "team", "moves", "overrides", "accepted", "rejected", "refused"],
                [
                    (
                        a.actor,
                        a.team or "-",
                        a.moves,
                        a.overrides,
                        a.accepted,
                        a.rejected,
                        a.refused,
                    )
                    for a in report.actors
                ],
                text_columns=2,
            ),
        ]
    return lines


def format_text(
    report: FunnelReport,
    handoffs: HandoffReport,
    cohorts: Cohorts,
    breakdown: Breakdown | None = None,
) -> str:
    """The reports as the command prints them: plain aligned tables, at most 100 columns.

    Args:
        report: The funnel report.
        handoffs: The handoff report.
        cohorts: The cohorts.
        breakdown: The breakdown, if one was asked for.

    Returns:
        The text, without a final newline.
    """
    lines = _funnel_text(report)
    if breakdown is not None and not report.empty:
        labelled = [("(no value)" if g.missing else g.label, g.report) for g in breakdown.groups]
        lines += _matrix_text(
            f"breakdown by {breakdown.attribute} ({breakdown.attribution}-touch): leads "
            "reaching each step",
            breakdown.attribute,
            [*labelled, ("(all)", breakdown.total)],
            report.path,
        )
    if cohorts.cohorts:
        lines += _matrix_text(
            f"cohorts by entry {cohorts.period} (cohort-based): leads reaching each step",
            cohorts.period,
            [*((c.label, c.report) for c in cohorts.cohorts), ("(all)", cohorts.total)],
            report.path,
        )
    lines += _handoff_text(handoffs)
    return "\n".join(lines)
