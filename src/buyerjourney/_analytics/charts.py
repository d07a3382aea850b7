"""Charts of the reports, drawn with matplotlib, written as PNG or SVG.

**Why matplotlib.** It is well kept, and it writes PNG and SVG itself: no
browser, no JavaScript runtime and no network are needed to draw a chart,
and the SVG it writes inlines into an HTML page, which therefore stays one
self-contained file (see :mod:`buyerjourney._analytics.html`). A
JavaScript library such as plotly would need its whole script embedded in
every page and a browser to produce a PNG.

matplotlib is the optional ``report`` extra (``pip install
'buyerjourney[report]'``); without it every chart function raises
:class:`~buyerjourney.errors.MissingExtra`. The charts never touch pyplot's
global state: each is a :class:`matplotlib.figure.Figure` drawn on the
non-interactive Agg canvas, so they are safe in a server or a notebook and
never open a window.

Each function takes a report (computed by :func:`funnel_report`,
:func:`handoff_report`, :func:`funnel_cohorts` ...) and returns a
:class:`Chart`; a chart only draws figures the report holds, it computes no
metric of its own:

- :func:`funnel_chart`: leads reaching each step, with step and overall conversion.
- :func:`flow_chart`: where the leads of each step went next (the next step,
  a later one, a detour, back: a recycle, out: an exit) and how many stayed.
- :func:`time_in_stage_chart`: the distribution of time in stage per step (box plots).
- :func:`handoff_chart`: answers to handoffs (accepted, rejected, waiting),
  SLA breaches per stage, and the distribution of time to accept.
- :func:`cohort_chart`: a heatmap of overall conversion per cohort and step.
- :func:`backtest_chart`: the precision/recall curve of backtested policies,
  from points ``(label, precision, recall)`` (see :data:`BacktestPoint`).

The output is deterministic: the same report gives the same bytes of SVG
(no date in the metadata, ids salted with the chart's name).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buyerjourney._analytics._stats import format_rate
from buyerjourney._analytics.funnel import BRANCH_KINDS, Cohorts, FunnelReport
from buyerjourney._analytics.handoffs import HandoffReport
from buyerjourney.errors import MissingExtra

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CHART_FORMATS",
    "CHART_KINDS",
    "BacktestPoint",
    "Chart",
    "backtest_chart",
    "backtest_points",
    "cohort_chart",
    "flow_chart",
    "funnel_chart",
    "handoff_chart",
    "time_in_stage_chart",
]

CHART_FORMATS: tuple[str, ...] = ("png", "svg")
"""The file formats a chart is written in, by the suffix of the path."""

CHART_KINDS: tuple[str, ...] = (
    "funnel",
    "flows",
    "time-in-stage",
    "cohorts",
    "handoffs",
    "backtest",
)
"""The name of each kind of chart (:attr:`Chart.kind`), in the order the HTML report shows them."""

BacktestPoint = tuple[str, float | None, float | None]
"""One point of the precision/recall curve: a policy's label, its precision
(handed off and won ÷ handed off) and its recall (won and handed off ÷ won),
each a fraction in [0, 1] or ``None`` where it is undefined (no lead handed
off, or none won). A point with an undefined figure is listed but not drawn."""

_DPI = 100
_BLUE = "#3366aa"
_GREY = "#9aa3ad"
_KIND_COLOURS = {
    "next": "#3366aa",
    "skip": "#5b9bd5",
    "detour": "#e3a33b",
    "back": "#c0504d",
    "exit": "#7f3f98",
    "stayed": "#c9ced4",
}
_KIND_LABELS = {
    "next": "to the next step",
    "skip": "to a later step",
    "detour": "detour (off the path)",
    "back": "back (recycled)",
    "exit": "out (lost, disqualified)",
    "stayed": "still in the step",
}


def _require_matplotlib(feature: str) -> None:
    try:
        import matplotlib  # noqa: F401, PLC0415  (the optional extra, imported on use)
    except ImportError:
        raise MissingExtra(feature, "report") from None


def _label(text: object) -> str:
    """*text* as matplotlib must be given it to show it literally (no mathtext)."""
    return str(text).replace("$", r"\$")


class Chart:
    """One chart, ready to be written as PNG or SVG.

    Made by the chart functions of this module, not directly.

    Attributes:
        kind: Which chart it is (one of :data:`CHART_KINDS`).
        title: The chart's title, as plain text.
        figure: The matplotlib figure (drawn on the Agg canvas).
    """

    def __init__(self, kind: str, title: str, figure: Figure) -> None:
        self.kind = kind
        self.title = title
        self.figure = figure
        # Lay the figure out once, then keep that layout: a constrained layout run again on
        # every save would move things by fractions of a point, and the output would differ.
        figure.canvas.draw()
        figure.set_layout_engine("none")

    def __repr__(self) -> str:
        return f"Chart({self.kind!r}, {self.title!r})"

    def to_svg(self) -> str:
        """The chart as SVG text (a standalone document, deterministic for the same report)."""
        from matplotlib import rc_context  # noqa: PLC0415

        buffer = io.StringIO()
        # The salt makes the ids of clip paths reproducible, and differ between charts
        # inlined in one page.
        with rc_context({"svg.hashsalt": f"bj-{self.kind}", "svg.fonttype": "none"}):
            self.figure.savefig(buffer, format="svg", dpi=_DPI, metadata={"Date": None})
        return buffer.getvalue()

    def to_png(self) -> bytes:
        """The chart as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the chart to *path*, as PNG or SVG by its suffix.

        Args:
            path: A file name ending in ``.png`` or ``.svg``.

        Returns:
            The path written.

        Raises:
            ValueError: The suffix is neither ``.png`` nor ``.svg``.
            OSError: The file cannot be written.
        """
        target = Path(path)
        suffix = target.suffix.lower().lstrip(".")
        if suffix not in CHART_FORMATS:
            msg = (
                f"a chart is written as .png or .svg, by the file's suffix (got {str(path)!r}); "
                "add one of those suffixes"
            )
            raise ValueError(msg)
        if suffix == "svg":
            target.write_text(self.to_svg(), encoding="utf-8", newline="\n")
        else:
            target.write_bytes(self.to_png())
        return target


def _figure(feature: str, width: float, height: float) -> Figure:
    _require_matplotlib(feature)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _whole_numbers(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    axis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _rate_text(value: float | None) -> str:
    return format_rate(value)


# ---------------------------------------------------------------- funnel


def funnel_chart(report: FunnelReport) -> Chart:
    """Leads reaching each step of the funnel report, with step and overall conversion.

    Args:
        report: A funnel report.

    Returns:
        A horizontal bar chart, the first step on top; each bar is labelled
        with its leads, its overall conversion and its step conversion.

    Raises:
        MissingExtra: matplotlib (the ``report`` extra) is not installed.
    """
    steps = report.steps
    figure = _figure("funnel charts", 8, 1.2 + 0.55 * max(len(steps), 1))
    ax = figure.add_subplot()
    title = f"Funnel {report.funnel}: leads reaching each step"
    ax.set_title(_label(title), loc="left")
    if report.empty:
        _no_data(ax, "no lead entered the first step")
        return Chart("funnel", title, figure)
    names = [_label(row.stage) for row in steps]
    counts = [row.entered for row in steps]
    positions = list(range(len(steps)))
    ax.barh(positions, counts, color=_BLUE, height=0.6)
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_xlabel("leads")
    _whole_numbers(ax.xaxis)
    ax.set_xlim(0, max(counts) * 1.45)
    for position, row in zip(positions, steps, strict=True):
        parts = [f"{row.entered}", f"overall {_rate_text(row.overall_conversion)}"]
        if row.step_conversion is not None:
            parts.append(f"step {_rate_text(row.step_conversion)}")
        ax.text(row.entered, position, "  " + " · ".join(parts), va="center", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return Chart("funnel", title, figure)


def flow_chart(report: FunnelReport) -> Chart:
    """Where the leads of each step went next: a stacked bar per step.

    Each bar splits the leads that reached a step into those that went to
    the next step, to a later step, off the path (a detour), back (a
    recycle), out of the funnel (an exit), and those still in the step (the
    balance). The figures are the report's exits (:attr:`StepRow.exits`) and
    balance.

    Args:
        report: A funnel report.

    Returns:
        The chart.

    Raises:
        MissingExtra: matplotlib (the ``report`` extra) is not installed.
    """
    steps = report.steps
    figure = _figure("flow charts", 8, 1.8 + 0.55 * max(len(steps), 1))
    ax = figure.add_subplot()
    title = "Flows between stages: where the leads of each step went next"
    ax.set_title(_label(title), loc="left")
    if report.empty:
        _no_data(ax, "no lead entered the first step")
        return Chart("flows", title, figure)
    positions = list(range(len(steps)))
    kinds = [*BRANCH_KINDS, "stayed"]
    left = [0] * len(steps)
    for kind in kinds:
        widths = [
            row.balance if kind == "stayed" else sum(b.leads for b in row.exits if b.kind == kind)
            for row in steps
        ]
        if not any(widths):
            continue
        ax.barh(
            positions,
            widths,
            left=left,
            height=0.6,
            color=_KIND_COLOURS[kind],
            label=_KIND_LABELS[kind],
        )
        for position, start, width in zip(positions, left, widths, strict=True):
            if width:
                ax.text(
                    start + width / 2,
                    position,
                    str(width),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if kind != "stayed" else "black",
                )
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(positions, [_label(row.stage) for row in steps])
    ax.invert_yaxis()
    ax.set_xlabel("leads that reached the step")
    _whole_numbers(ax.xaxis)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return Chart("flows", title, figure)


# ---------------------------------------------------------------- times


def _unit(values: Sequence[timedelta]) -> tuple[str, float]:
    longest = max((v.total_seconds() for v in values), default=0.0)
    if longest >= 3 * 86400:
        return "days", 86400.0
    if longest >= 3 * 3600:
        return "hours", 3600.0
    return "minutes", 60.0


def time_in_stage_chart(report: FunnelReport) -> Chart:
    """The distribution of time in stage per step: one box plot per step.

    The box spans the 25th to 75th percentile with the median drawn inside;
    the whiskers reach the furthest value within 1.5 box lengths, and values
    beyond are drawn as points. Steps without completed visits are labelled
    "no completed visit". The values are the report's
    :attr:`StepRow.time_in_stage`.

    Args:
        report: A funnel report.

    Returns:
        The chart.

    Raises:
        MissingExtra: matplotlib (the ``report`` extra) is not installed.
    """
    steps = report.steps
    figure = _figure("time-in-stage charts", 8, 1.6 + 0.55 * max(len(steps), 1))
    ax = figure.add_subplot()
    title = "Time in stage per step (completed visits)"
    ax.set_title(_label(title), loc="left")
    every = [v for row in steps for v in row.time_in_stage.values]
    if not every:
        _no_data(ax, "no completed visit yet")
        return Chart("time-in-stage", title, figure)
    unit, scale = _unit(every)
    positions = list(range(1, len(steps) + 1))
    data = [[v.total_seconds() / scale for v in row.time_in_stage.values] for row in steps]
    drawn = [(p, d) for p, d in zip(positions, data, strict=True) if d]
    style: dict[str, Any] = {
        "positions": [p for p, _ in drawn],
        "widths": 0.5,
        "patch_artist": True,
        "boxprops": {"facecolor": "#d6e2f3", "edgecolor": _BLUE},
        "medianprops": {"color": "#c0504d", "linewidth": 2},
        "flierprops": {"marker": "o", "markersize": 3, "markerfacecolor": _GREY},
    }
    try:  # matplotlib 3.10 names it orientation; vert= is deprecated there
        ax.boxplot([d for _, d in drawn], orientation="horizontal", **style)
    except TypeError:  # matplotlib before 3.10
        ax.boxplot([d for _, d in drawn], vert=False, **style)
    for position, row in zip(positions, steps, strict=True):
        if not row.time_in_stage.count:
            ax.text(0, position, "  no completed visit", va="center", fontsize=8, color="#555555")
    ax.set_yticks(positions, [_label(row.stage) for row in steps])
    ax.set_ylim(len(steps) + 0.5, 0.5)
    ax.set_xlabel(f"time in stage ({unit})")
    ax.set_xlim(left=0)
    ax.spines[["top", "right"]].set_visible(False)
    return Chart("time-in-stage", title, figure)


# ---------------------------------------------------------------- handoffs


def handoff_chart(report: HandoffReport) -> Chart:
    """The handoff service level: answers, SLA breaches per stage, and time to accept.

    Three panels, all from the handoff report: the handoffs answered in the
    period (accepted, rejected) beside those still waiting; the SLA breaches
    (escalations) per stage; and the distribution of time to accept, in the
    buckets of :data:`~buyerjourney.analytics.BUCKETS`, with its median and
    90th percentile in the panel's title.

    Args:
        report: A handoff report.

    Returns:
        The chart.

    Raises:
        MissingExtra: matplotlib (the ``report`` extra) is not installed.
    """
    figure = _figure("handoff charts", 10, 3.4)
    answers, breaches, times = figure.subplots(1, 3, width_ratios=[1, 1.2, 1.6])
    title = "Handoff SLA: answers, breaches per stage, time to accept"
    figure.suptitle(_label(title), x=0.01, ha="left")
    labels = ["accepted", "rejected", "waiting"]
    values = [report.accepted, report.rejected, report.pending]
    answers.bar(labels, values, color=[_BLUE, "#c0504d", _GREY])
    answers.set_title(f"acceptance rate {_rate_text(report.acceptance_rate)}", fontsize=9)
    answers.set_ylabel("handoffs")
    _whole_numbers(answers.yaxis)
    for x, value in enumerate(values):
        answers.text(x, value, str(value), ha="center", va="bottom", fontsize=8)
    if report.breaches:
        stages = list(report.breaches)
        breaches.barh(
            range(len(stages)), list(report.breaches.values()), height=0.5, color="#c0504d"
        )
        breaches.set_ylim(len(stages) - 0.5, -0.5)
        breaches.set_yticks(range(len(stages)), [_label(s) for s in stages])
        breaches.set_xlabel("escalations")
        _whole_numbers(breaches.xaxis)
    else:
        _no_data(breaches, "no SLA breach")
    breaches.set_title("SLA breaches per stage", fontsize=9)
    histogram = report.time_to_accept.histogram()
    if report.time_to_accept.count:
        buckets = [label for label, _ in histogram]
        counts = [n for _, n in histogram]
        times.bar(range(len(buckets)), counts, color=_BLUE)
        times.set_xticks(range(len(buckets)), buckets, fontsize=7)
        times.set_ylabel("acceptances")
        _whole_numbers(times.yaxis)
        times.set_title(_label(f"time to accept: {report.time_to_accept.summary()}"), fontsize=9)
    else:
        _no_data(times, "no acceptance in the period")
        times.set_title("time to accept", fontsize=9)
    for ax in (answers, breaches, times):
        ax.spines[["top", "right"]].set_visible(False)
    return Chart("handoffs", title, figure)


# ---------------------------------------------------------------- cohorts


def cohort_chart(cohorts: Cohorts) -> Chart:
    """A heatmap of cohorts by steps: each cell the cohort's overall conversion to the step.

    Rows are the cohorts (leads that entered step 1 in one week or month),
    oldest on top; each cell is labelled with the percentage and the leads.
    Recent cohorts had less time to convert: the chart says cohort-based.

    Args:
        cohorts: The result of :func:`funnel_cohorts`.

    Returns:
        The chart.

    Raises:
        MissingExtra: matplotlib (the ``report`` extra) is not installed.
    """
    rows = cohorts.cohorts
    path = cohorts.total.path
    figure = _figure("cohort charts", 8, 1.6 + 0.4 * max(len(rows), 1))
    ax = figure.add_subplot()
    title = f"Cohorts by entry {cohorts.period}: overall conversion to each step (cohort-based)"
    ax.set_title(_label(title), loc="left", fontsize=10)
    if not rows:
        _no_data(ax, "no lead entered the first step")
        return Chart("cohorts", title, figure)
    matrix = [
        [
            math.nan if row.overall_conversion is None else row.overall_conversion
            for row in cohort.report.steps
        ]
        for cohort in rows
    ]
    ax.pcolormesh(  # each cell is labelled with its figure: no colour bar
        [j - 0.5 for j in range(len(path) + 1)],
        [i - 0.5 for i in range(len(rows) + 1)],
        matrix,
        cmap="Blues",
        vmin=0,
        vmax=1,
        edgecolors="white",
        linewidth=1,
    )
    ax.invert_yaxis()
    for i, cohort in enumerate(rows):
        for j, row in enumerate(cohort.report.steps):
            value = row.overall_conversion
            ax.text(
                j,
                i,
                f"{_rate_text(value)}\n{row.entered}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value is not None and value > 0.6 else "black",
            )
    ax.set_xticks(range(len(path)), [_label(s) for s in path], fontsize=8)
    ax.set_yticks(range(len(rows)), [_label(c.label) for c in rows], fontsize=8)
    ax.set_xlabel("step (darker: a higher share of the cohort reached it)")
    ax.set_ylabel(f"entry {cohorts.period}")
    return Chart("cohorts", title, figure)


# ---------------------------------------------------------------- backtest


def backtest_points(points: Sequence[Any] | Any) -> tuple[BacktestPoint, ...]:
    """Check the points of a precision/recall curve (see :data:`BacktestPoint`).

    Args:
        points: A sequence of ``(label, precision, recall)``, or a backtest
            result (:class:`~buyerjourney.analytics.Backtest`), whose
            trade-off curve gives the points.

    Returns:
        The points as tuples, in the order given.

    Raises:
        ValueError: A point is not a triple, its label is not text, or a
            figure is neither ``None`` nor a number in [0, 1].
    """
    curve = getattr(points, "curve", None)
    if curve is not None:  # a Backtest: its curve, one point per thresholded candidate
        points = [(p.name, p.precision, p.recall) for p in curve]
    checked: list[BacktestPoint] = []
    for index, point in enumerate(points):
        if isinstance(point, (str, bytes)) or not isinstance(point, Sequence) or len(point) != 3:
            msg = f"backtest point {index} must be (label, precision, recall), got {point!r}"
            raise ValueError(msg)
        label, precision, recall = point
        if not isinstance(label, str):
            msg = f"backtest point {index}: the label must be text (got {label!r})"
            raise ValueError(msg)
        for name, value in (("precision", precision), ("recall", recall)):
            if value is None:
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not 0 <= value <= 1:
                msg = (
                    f"backtest point {index} ({label!r}): {name} must be a fraction in [0, 1] "
                    f"or None (got {value!r})"
                )
                raise ValueError(msg)
        checked.append(
            (
                label,
                None if precision is None else float(precision),
                None if recall is None else float(recall),
            )
        )
    return tuple(checked)


def backtest_chart(points: Sequence[BacktestPoint]) -> Chart:
    """The precision/recall trade-off of backtested handoff policies.

    Args:
        points: One ``(label, precision, recall)`` per policy, in the order to
            join them (for thresholds, ascending); see :data:`BacktestPoint`.
            Points with an undefined figure are not drawn.

    Returns:
        A line chart of precision against recall, each point labelled.

    Raises:
        ValueError: A point is malformed (see :func:`backtest_points`).
        MissingExtra: matplotlib (the ``report`` extra) is not installed.
    """
    checked = backtest_points(points)
    figure = _figure("backtest charts", 7, 4.5)
    ax = figure.add_subplot()
    title = "Backtest: precision and recall of each handoff policy"
    ax.set_title(_label(title), loc="left")
    drawn = [(label, p, r) for label, p, r in checked if p is not None and r is not None]
    if not drawn:
        _no_data(ax, "no policy with both precision and recall defined")
        return Chart("backtest", title, figure)
    recalls = [r for _, _, r in drawn]
    precisions = [p for _, p, _ in drawn]
    ax.plot(recalls, precisions, marker="o", color=_BLUE)
    for label, precision, recall in drawn:
        ax.annotate(
            _label(label),
            (recall, precision),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("recall (won and handed off ÷ won)")
    ax.set_ylabel("precision (handed off and won ÷ handed off)")
    ax.grid(color="#e5e5e5")
    ax.spines[["top", "right"]].set_visible(False)
    return Chart("backtest", title, figure)
