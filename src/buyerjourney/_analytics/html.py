"""The HTML report: one self-contained page of headline numbers, tables and charts.

The page needs no network to be read: its styles are inline (one
``<style>`` element), its charts are inline SVG drawn by matplotlib (see
:mod:`buyerjourney._analytics.charts`), and it loads no script, font or
image. Every name that comes from the log (stages, teams, owners, reasons,
property values) is escaped, so a value such as ``<script>`` shows as text.

The page is deterministic: the same reports give the same page, byte for
byte (it states the reports' as-of dates, never the time it was written).
Each chart is a ``<figure class="bj-chart" data-chart="KIND">`` (the kinds
of :data:`~buyerjourney._analytics.charts.CHART_KINDS`), each table a
``<table class="bj-table" data-table="NAME">``, so that tools and tests can
find them.

The page renders reports already computed; it computes no metric itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from html import escape
from pathlib import Path
from typing import Any

from buyerjourney._analytics._stats import format_duration, format_rate, iso
from buyerjourney._analytics.charts import (
    BacktestPoint,
    Chart,
    backtest_chart,
    backtest_points,
    cohort_chart,
    flow_chart,
    funnel_chart,
    handoff_chart,
    time_in_stage_chart,
)
from buyerjourney._analytics.funnel import Breakdown, Cohorts, FunnelReport
from buyerjourney._analytics.handoffs import HandoffReport

__all__ = ["render_html", "write_html"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1f2328; background: #ffffff; line-height: 1.4; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 0.3rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.6rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
p.bj-basis { color: #57606a; margin: 0.2rem 0; }
dl.bj-headline { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
dl.bj-headline div { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.5rem 0.8rem;
  min-width: 9rem; }
dl.bj-headline dt { font-size: 0.8rem; color: #57606a; }
dl.bj-headline dd { font-size: 1.4rem; font-weight: 600; margin: 0; }
table.bj-table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
table.bj-table caption { text-align: left; font-weight: 600; padding: 0.2rem 0; }
table.bj-table th, table.bj-table td { border-bottom: 1px solid #d8dee4; padding: 0.25rem 0.6rem; }
table.bj-table th { text-align: left; background: #f6f8fa; }
table.bj-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.bj-table .bj-missing { font-style: italic; color: #57606a; }
figure.bj-chart { margin: 1rem 0; }
figure.bj-chart svg { max-width: 100%; height: auto; }
figure.bj-chart figcaption { font-size: 0.85rem; color: #57606a; }
p.bj-none { color: #57606a; font-style: italic; }
"""

_Draw = Callable[[Callable[[Any], Chart], Any], str]
"""Draws a chart as a figure of the page (or nothing, without charts): ``draw(make, report)``."""

_XML_PROLOGUE = re.compile(r"\A(?:<\?xml[^>]*\?>\s*)?(?:<!DOCTYPE[^>]*>\s*)?", re.DOTALL)
_SVG_COMMENT = re.compile(r"<!--.*?-->\s*", re.DOTALL)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_SVG_ID = re.compile(r'\b(id)="([^"]+)"')
_SVG_REF = re.compile(r'(url\(|xlink:href="|\bhref=")#([^)"]+)')


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def _rate(value: float | None) -> str:
    return format_rate(value)


def _duration(value: timedelta | None) -> str:
    return format_duration(value)


class _Cell:
    """A table cell: escaped text, numeric (right-aligned) or not."""

    def __init__(self, value: object, *, numeric: bool = False, css: str = "") -> None:
        self.value = value
        self.numeric = numeric
        self.css = css

    def html(self) -> str:
        classes = " ".join(c for c in ("num" if self.numeric else "", self.css) if c)
        attribute = f' class="{classes}"' if classes else ""
        return f"<td{attribute}>{_text(self.value)}</td>"


def _num(value: object) -> _Cell:
    return _Cell(value, numeric=True)


def _table(name: str, caption: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = [
        "<tr>"
        + "".join((cell if isinstance(cell, _Cell) else _Cell(cell)).html() for cell in row)
        + "</tr>"
        for row in rows
    ]
    if not body:
        return f'<p class="bj-none" data-table="{_text(name)}">{_text(caption)}: none</p>'
    head = "".join(f"<th>{_text(h)}</th>" for h in header)
    return (
        f'<table class="bj-table" data-table="{_text(name)}">'
        f"<caption>{_text(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _inline_svg(chart: Chart) -> str:
    svg = _XML_PROLOGUE.sub("", chart.to_svg().strip())
    svg = _SVG_COMMENT.sub("", svg)
    svg = _SVG_METADATA.sub("", svg)
    # Every chart names its groups figure_1, axes_1 ...: prefix the ids (and the references
    # to them) with the chart's kind, so that ids stay unique in the page.
    prefix = f"bj-{chart.kind}-"
    svg = _SVG_ID.sub(lambda m: f'{m.group(1)}="{prefix}{m.group(2)}"', svg)
    svg = _SVG_REF.sub(lambda m: f"{m.group(1)}#{prefix}{m.group(2)}", svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_text(chart.title)}" ', 1)


def _figure(chart: Chart) -> str:
    return (
        f'<figure class="bj-chart" data-chart="{_text(chart.kind)}">'
        f"{_inline_svg(chart)}<figcaption>{_text(chart.title)}</figcaption></figure>"
    )


def _headline(items: Sequence[tuple[str, str]]) -> str:
    cards = "".join(f"<div><dt>{_text(k)}</dt><dd>{_text(v)}</dd></div>" for k, v in items)
    return f'<dl class="bj-headline">{cards}</dl>'


# ---------------------------------------------------------------- sections


def _funnel_section(report: FunnelReport, draw: _Draw) -> list[str]:
    parts = ['<section id="funnel"><h2>Funnel</h2>']
    parts.append(f'<p class="bj-basis">{_text(report.describe())}</p>')
    if report.empty:
        parts.append('<p class="bj-none">No lead entered the first step.</p>')
    parts.append(draw(funnel_chart, report))
    parts.append(
        _table(
            "steps",
            "Steps",
            [
                "step",
                "entered",
                "exited",
                "balance",
                "converted",
                "step conversion",
                "overall conversion",
                "drop-off",
                "velocity (median in stage)",
            ],
            [
                (
                    row.stage,
                    _num(row.entered),
                    _num(row.exited),
                    _num(row.balance),
                    _num("-" if row.converted is None else row.converted),
                    _num(_rate(row.step_conversion)),
                    _num(_rate(row.overall_conversion)),
                    _num(_rate(row.drop_off)),
                    _num(_duration(row.velocity)),
                )
                for row in report.steps
            ],
        )
    )
    parts.append(draw(flow_chart, report))
    parts.append(
        _table(
            "exits",
            "Exits: where leads went right after each step",
            ["step", "went to", "kind", "leads", "of which converted"],
            [
                (row.stage, branch.stage, branch.kind, _num(branch.leads), _num(branch.converted))
                for row in report.steps
                for branch in row.exits
            ],
        )
    )
    parts.append(draw(time_in_stage_chart, report))
    parts.append(
        _table(
            "times",
            "Times: median and 90th percentile",
            [
                "step",
                "visits completed",
                "in stage (median)",
                "in stage (p90)",
                "converted",
                "to next step (median)",
                "to next step (p90)",
                "from step 1 (median)",
            ],
            [
                (
                    row.stage,
                    _num(row.time_in_stage.count),
                    _num(_duration(row.time_in_stage.median)),
                    _num(_duration(row.time_in_stage.p90)),
                    _num(row.time_to_convert.count),
                    _num(_duration(row.time_to_convert.median)),
                    _num(_duration(row.time_to_convert.p90)),
                    _num(_duration(row.time_from_start.median)),
                )
                for row in report.steps
            ],
        )
    )
    parts.append("</section>")
    return parts


def _matrix_rows(
    labelled: Iterable[tuple[_Cell, FunnelReport]],
) -> list[list[Any]]:
    return [
        [
            label,
            *(_num(row.entered) for row in report.steps),
            _num(_rate(report.overall_conversion)),
        ]
        for label, report in labelled
    ]


def _breakdown_section(breakdown: Breakdown) -> list[str]:
    path = breakdown.total.path
    labelled = [
        (
            _Cell("(missing: no value recorded)", css="bj-missing")
            if g.missing
            else _Cell(g.label),
            g.report,
        )
        for g in breakdown.groups
    ]
    labelled.append((_Cell("(all)", css="bj-missing"), breakdown.total))
    return [
        '<section id="breakdown">',
        f"<h2>Breakdown by {_text(breakdown.attribute)}</h2>",
        f'<p class="bj-basis">{_text(breakdown.attribution)}-touch attribution; '
        f"{_text(breakdown.total.describe())}</p>",
        _table(
            "breakdown",
            f"Leads reaching each step, per value of {breakdown.attribute}",
            [breakdown.attribute, *path, "overall conversion"],
            _matrix_rows(labelled),
        ),
        "</section>",
    ]


def _cohort_section(cohorts: Cohorts, draw: _Draw) -> list[str]:
    labelled = [(_Cell(c.label), c.report) for c in cohorts.cohorts]
    labelled.append((_Cell("(all)", css="bj-missing"), cohorts.total))
    return [
        '<section id="cohorts">',
        f"<h2>Cohorts by entry {_text(cohorts.period)}</h2>",
        f'<p class="bj-basis">{_text(cohorts.total.describe())}; a recent cohort has had '
        "less time to convert</p>",
        draw(cohort_chart, cohorts),
        _table(
            "cohorts",
            f"Leads reaching each step, per entry {cohorts.period}",
            [cohorts.period, *cohorts.total.path, "overall conversion"],
            _matrix_rows(labelled),
        ),
        "</section>",
    ]


def _handoff_section(report: HandoffReport, draw: _Draw) -> list[str]:
    return [
        '<section id="handoffs"><h2>Handoffs</h2>',
        f'<p class="bj-basis">{_text(report.describe())}</p>',
        _headline(
            [
                ("handoffs", str(report.handoffs)),
                ("gate entries", str(report.gate_entries)),
                ("accepted", str(report.accepted)),
                ("rejected", str(report.rejected)),
                ("waiting now", str(report.pending)),
                ("acceptance rate", _rate(report.acceptance_rate)),
                ("time to accept (median)", _duration(report.time_to_accept.median)),
                ("time to accept (p90)", _duration(report.time_to_accept.p90)),
            ]
        ),
        draw(handoff_chart, report),
        _table(
            "sla-breaches",
            "SLA breaches (escalations) per stage",
            ["stage", "breaches"],
            [(stage, _num(n)) for stage, n in report.breaches.items()],
        ),
        _table(
            "routes",
            "Handoffs per stage and team",
            ["into stage", "from team", "to team", "handoffs"],
            [(r.stage, r.from_team, r.to_team, _num(r.count)) for r in report.routes],
        ),
        _table(
            "teams",
            "Workload per team",
            [
                "team",
                "received",
                "handed off",
                "accepted",
                "rejected",
                "breaches",
                "open now",
                "waiting now",
            ],
            [
                (
                    t.team,
                    _num(t.received),
                    _num(t.handed_off),
                    _num(t.accepted),
                    _num(t.rejected),
                    _num(t.breaches),
                    _num(t.open),
                    _num(t.waiting),
                )
                for t in report.teams
            ],
        ),
        _table(
            "owners",
            "Workload per owner (people only)",
            ["owner", "team", "moves", "overrides", "accepted", "rejected", "refused"],
            [
                (
                    a.actor,
                    a.team or "-",
                    _num(a.moves),
                    _num(a.overrides),
                    _num(a.accepted),
                    _num(a.rejected),
                    _num(a.refused),
                )
                for a in report.actors
            ],
        ),
        _table(
            "rejections",
            "Rejections with their reasons",
            ["reason", "rejections"],
            [(reason, _num(n)) for reason, n in report.rejection_reasons.items()],
        ),
        _table(
            "recycles",
            "Recycles (backward moves) with their reasons",
            ["from", "to", "reason", "moves"],
            [(r.source, r.target, r.reason, _num(r.count)) for r in report.recycles],
        ),
        "</section>",
    ]


def _backtest_section(points: Sequence[BacktestPoint], draw: _Draw) -> list[str]:
    parts = [
        '<section id="backtest"><h2>Backtest</h2>',
        '<p class="bj-basis">Each policy replayed over the same history: precision = handed off '
        "and won ÷ handed off; recall = won and handed off ÷ won.</p>",
    ]
    parts.append(draw(backtest_chart, points))
    parts.append(
        _table(
            "backtest",
            "Policies",
            ["policy", "precision", "recall"],
            [(label, _num(_rate(p)), _num(_rate(r))) for label, p, r in points],
        )
    )
    parts.append("</section>")
    return parts


def _page_headline(report: FunnelReport, handoffs: HandoffReport | None) -> str:
    last = report.steps[-1] if report.steps else None
    items = [
        (f"leads entered {report.path[0]}", str(report.leads)),
        ("journeys in the log", str(report.journeys)),
        (f"overall conversion to {report.path[-1]}", _rate(report.overall_conversion)),
    ]
    if last is not None:
        items.append((f"time to {last.stage} (median)", _duration(last.time_from_start.median)))
    if handoffs is not None:
        items += [
            ("acceptance rate", _rate(handoffs.acceptance_rate)),
            ("SLA breaches", str(sum(handoffs.breaches.values()))),
        ]
    return _headline(items)


def render_html(
    report: FunnelReport,
    *,
    handoffs: HandoffReport | None = None,
    breakdown: Breakdown | None = None,
    cohorts: Cohorts | None = None,
    backtest: Sequence[BacktestPoint] | Any = None,
    title: str | None = None,
    charts: bool = True,
) -> str:
    """The HTML report of reports already computed: one self-contained page.

    Args:
        report: The funnel report (:func:`funnel_report`).
        handoffs: The handoff report (:func:`handoff_report`), for its section.
        breakdown: A breakdown (:func:`funnel_breakdown`), for its section.
        cohorts: Cohorts (:func:`funnel_cohorts`), for the heatmap and its table.
        backtest: A backtest result (:func:`~buyerjourney.analytics.backtest`,
            whose curve is drawn), or its precision/recall points, one
            ``(label, precision, recall)`` per policy (see
            :data:`~buyerjourney._analytics.charts.BacktestPoint`), for the
            trade-off curve and its table; ``None`` leaves the section out.
        title: The page's title (default: ``"Funnel report: <funnel>"``).
        charts: Draw the charts (needs matplotlib, the ``report`` extra);
            ``False`` gives the tables and headline numbers only.

    Returns:
        The page, as text: the same for the same arguments.

    Raises:
        MissingExtra: *charts* is true and matplotlib is not installed.
        ValueError: A backtest point is malformed.
    """
    points = None if backtest is None else backtest_points(backtest)

    def draw(make: Callable[[Any], Chart], value: Any) -> str:
        return _figure(make(value)) if charts else ""

    heading = title if title is not None else f"Funnel report: {report.funnel}"
    as_of = iso(report.as_of) or "the end of the log"
    body = [
        f"<h1>{_text(heading)}</h1>",
        f'<p class="bj-basis">Funnel {_text(report.funnel)}: '
        f"{_text(' > '.join(report.path))}; as of {_text(as_of)}</p>",
        _page_headline(report, handoffs),
    ]
    body += _funnel_section(report, draw)
    if breakdown is not None:
        body += _breakdown_section(breakdown)
    if cohorts is not None:
        body += _cohort_section(cohorts, draw)
    if handoffs is not None:
        body += _handoff_section(handoffs, draw)
    if points is not None:
        body += _backtest_section(points, draw)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(heading)}</title><style>{_CSS}</style></head>\n"
        f"<body><main>\n{chr(10).join(body)}\n</main></body></html>\n"
    )


def write_html(
    path: str | os.PathLike[str],
    report: FunnelReport,
    *,
    handoffs: HandoffReport | None = None,
    breakdown: Breakdown | None = None,
    cohorts: Cohorts | None = None,
    backtest: Sequence[BacktestPoint] | Any = None,
    title: str | None = None,
    charts: bool = True,
) -> Path:
    """Write :func:`render_html` of the reports to *path* (UTF-8).

    Args:
        path: The file to write.
        report: As :func:`render_html`.
        handoffs: As :func:`render_html`.
        breakdown: As :func:`render_html`.
        cohorts: As :func:`render_html`.
        backtest: As :func:`render_html`.
        title: As :func:`render_html`.
        charts: As :func:`render_html`.

    Returns:
        The path written.

    Raises:
        MissingExtra: *charts* is true and matplotlib is not installed.
        ValueError: A backtest point is malformed.
        OSError: The file cannot be written.
    """
    page = render_html(
        report,
        handoffs=handoffs,
        breakdown=breakdown,
        cohorts=cohorts,
        backtest=backtest,
        title=title,
        charts=charts,
    )
    target = Path(path)
    target.write_text(page, encoding="utf-8", newline="\n")
    return target
