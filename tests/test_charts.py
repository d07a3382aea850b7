"""The charts of the reports: PNG and SVG output, determinism, empty reports, the extra.

The log (:func:`engine_log`) is the demand waterfall run by hand through the
engine, as in docs/howto/reports.md: five leads, one won, one rejected and
recycled, one past its SAL SLA, two arriving the week after (one without a
segment). Other report tests import it from here.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import Actor, Engine, Record, Touch, presets
from buyerjourney._analytics import charts
from buyerjourney._analytics.charts import Chart, backtest_points
from buyerjourney.analytics import funnel_cohorts, funnel_report, handoff_report
from buyerjourney.errors import MissingExtra

FUNNEL = presets.demand_waterfall()
START = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
SVG_NS = "{http://www.w3.org/2000/svg}"
POINTS = [("score >= 10", 0.2, 0.9), ("score >= 20", 0.4, 0.7), ("score >= 40", 0.7, 0.3)]


def hour(n: float) -> datetime:
    return START + timedelta(hours=n)


def engine_log(engine: Engine | None = None, *, segment: str = "smb") -> tuple[Record, ...]:
    """The five-lead log; *segment* is bolt's and echo's segment (to test escaping)."""
    engine = engine if engine is not None else Engine(FUNNEL)
    mia, sam = Actor("mia", "marketing"), Actor("sam", "sales")

    def arrives(lead: str, at: float, **attributes: str) -> None:
        engine.ingest_one(Touch(f"{lead}-1", lead, hour(at), "form_fill", attributes=attributes))

    arrives("acme", 0, segment="enterprise")
    arrives("bolt", 1, segment=segment)
    arrives("core", 2, segment="enterprise")
    for lead, at in (("acme", 4), ("bolt", 5), ("core", 6)):
        engine.send(lead, "qualify", actor=mia, at=hour(at))
    for lead, at in (("acme", 8), ("bolt", 9), ("core", 10)):
        engine.send(lead, "hand_off", actor=mia, at=hour(at))
    engine.accept("acme", actor=sam, at=hour(12))
    engine.reject("bolt", actor=sam, at=hour(30), reason="no budget this year")
    engine.send("acme", "qualify_sales", actor=sam, at=hour(40))
    engine.send("acme", "open_opportunity", actor=sam, at=hour(60))
    engine.send("acme", "win", actor=sam, at=hour(100))
    arrives("dyna", 170)
    arrives("echo", 171, segment=segment)
    engine.send("dyna", "qualify", actor=mia, at=hour(172))
    return engine.records


def every_chart(records: tuple[Record, ...]) -> list[Chart]:
    report = funnel_report(FUNNEL, records)
    return [
        charts.funnel_chart(report),
        charts.flow_chart(report),
        charts.time_in_stage_chart(report),
        charts.cohort_chart(funnel_cohorts(FUNNEL, records)),
        charts.handoff_chart(handoff_report(FUNNEL, records)),
        charts.backtest_chart(POINTS),
    ]


@pytest.fixture(scope="module")
def made() -> list[Chart]:
    return every_chart(engine_log())


def svg_tree(chart: Chart) -> ET.Element:
    return ET.fromstring(chart.to_svg())


def texts(root: ET.Element) -> str:
    return " ".join("".join(node.itertext()) for node in root.iter(f"{SVG_NS}text"))


def test_every_kind_is_made_once(made: list[Chart]) -> None:
    assert [c.kind for c in made] == list(charts.CHART_KINDS)


def test_png_bytes_are_a_png(made: list[Chart]) -> None:
    for chart in made:
        png = chart.to_png()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), chart.kind
        assert len(png) > 2000, chart.kind


def test_svg_parses_and_draws_paths(made: list[Chart]) -> None:
    for chart in made:
        root = svg_tree(chart)
        assert root.tag == f"{SVG_NS}svg"
        paths = [p for p in root.iter(f"{SVG_NS}path") if p.get("d")]
        assert len(paths) > 10, chart.kind


def test_the_funnel_chart_labels_each_step_with_its_conversion(made: list[Chart]) -> None:
    words = texts(svg_tree(made[0]))
    for stage in ("inquiry", "mql", "sal", "sql", "opportunity", "won"):
        assert stage in words
    assert "overall 60.0%" in words
    assert "step 75.0%" in words
    assert "step 33.3%" in words  # sal -> sql: 1 of 3


def test_the_flow_chart_shows_recycles_and_what_stayed(made: list[Chart]) -> None:
    words = texts(svg_tree(made[1]))
    assert "back (recycled)" in words  # bolt, rejected at sal and sent back to inquiry
    assert "still in the step" in words
    assert "out (lost, disqualified)" not in words  # nobody exited the funnel here


def test_the_handoff_chart_shows_the_acceptance_rate_and_breaches(made: list[Chart]) -> None:
    words = texts(svg_tree(made[4]))
    assert "acceptance rate 50.0%" in words  # acme accepted, bolt rejected
    assert "SLA breaches per stage" in words
    assert "sal" in words
    assert "median 4.0h" in words


def test_the_cohort_heatmap_has_a_row_per_week(made: list[Chart]) -> None:
    words = texts(svg_tree(made[3]))
    assert "2024-W10" in words
    assert "2024-W11" in words
    assert "cohort-based" in words


def test_the_backtest_chart_labels_each_policy(made: list[Chart]) -> None:
    words = texts(svg_tree(made[5]))
    for label, _, _ in POINTS:
        assert label.replace(">", "&gt;") in words or label in words


def test_output_is_deterministic() -> None:
    first = [c.to_svg() for c in every_chart(engine_log())]
    again = [c.to_svg() for c in every_chart(engine_log())]
    assert first == again
    chart = charts.funnel_chart(funnel_report(FUNNEL, engine_log()))
    assert chart.to_svg() == chart.to_svg()
    assert chart.to_png() == chart.to_png()


def test_hashed_ids_differ_between_charts(made: list[Chart]) -> None:
    seen: dict[str, str] = {}
    for chart in made:
        for node in svg_tree(chart).iter():
            ident = node.get("id") or ""
            if re.fullmatch(r"[pm][0-9a-f]{10}", ident):  # clip paths and markers
                assert seen.setdefault(ident, chart.kind) == chart.kind, ident


def test_save_writes_by_suffix(made: list[Chart], tmp_path: Path) -> None:
    chart = made[0]
    assert chart.save(tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    assert chart.save(tmp_path / "f.SVG").read_text("utf-8").lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        chart.save(tmp_path / "f.jpg")
    assert not (tmp_path / "f.jpg").exists()


def test_empty_reports_draw_a_no_data_chart() -> None:
    empty = funnel_report(FUNNEL, ())
    made = [
        charts.funnel_chart(empty),
        charts.flow_chart(empty),
        charts.time_in_stage_chart(empty),
        charts.handoff_chart(handoff_report(FUNNEL, ())),
        charts.cohort_chart(funnel_cohorts(FUNNEL, ())),
        charts.backtest_chart([]),
    ]
    for chart in made:
        assert chart.to_png().startswith(b"\x89PNG")
        words = texts(svg_tree(chart))
        assert "no " in words, chart.kind


def test_a_dollar_in_a_name_is_shown_literally_not_as_mathtext() -> None:
    chart = charts.backtest_chart([("$5 deals $", 0.5, 0.5)])
    assert "$5 deals $" in texts(svg_tree(chart))


def test_backtest_points_with_an_undefined_figure_are_listed_not_drawn() -> None:
    assert backtest_points([("none handed off", None, 0.0)]) == (("none handed off", None, 0.0),)
    words = texts(svg_tree(charts.backtest_chart([("none handed off", None, 0.0)])))
    assert "no policy with both precision and recall defined" in words


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ([("a", 0.5)], r"point 0 must be \(label, precision, recall\)"),
        (["abc"], r"point 0 must be"),
        ([(1, 0.5, 0.5)], "label must be text"),
        ([("a", 1.5, 0.5)], r"precision must be a fraction in \[0, 1\].*got 1.5"),
        ([("a", 0.5, -0.1)], r"recall must be a fraction"),
        ([("a", 0.5, True)], r"recall must be a fraction"),
        ([("a", "0.5", 0.5)], r"precision must be a fraction"),
    ],
)
def test_malformed_backtest_points_are_refused(points: list[object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        charts.backtest_chart(points)  # type: ignore[arg-type]


fractions = st.one_of(st.none(), st.floats(0, 1), st.integers(0, 1))


@given(st.lists(st.tuples(st.text(max_size=8), fractions, fractions), max_size=6))
def test_valid_backtest_points_are_kept_in_order(points: list[tuple[str, object, object]]) -> None:
    checked = backtest_points(points)
    assert [label for label, _, _ in checked] == [label for label, _, _ in points]
    for (_, p, r), (_, p0, r0) in zip(checked, points, strict=True):
        assert p == p0
        assert r == r0
        assert p is None or isinstance(p, float)


def test_without_matplotlib_a_chart_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra, match=r"pip install 'buyerjourney\[report\]'") as caught:
        charts.funnel_chart(funnel_report(FUNNEL, ()))
    assert caught.value.extra == "report"
