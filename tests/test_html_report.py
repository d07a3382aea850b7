"""The HTML report: self-contained, escaped, deterministic, and drawn in a real headless browser.

The browser tests open the written file in Chromium (driven by Playwright,
with the system's ``chromium``; Playwright's own browsers are never
downloaded), record every request the page makes, and check that each chart
is present, has a size on the page, draws SVG paths, and paints pixels.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from buyerjourney._analytics.charts import CHART_KINDS
from buyerjourney._analytics.html import render_html, write_html
from buyerjourney.analytics import funnel_breakdown, funnel_cohorts, funnel_report, handoff_report
from conftest import missing_backend
from test_charts import FUNNEL, POINTS, engine_log

CHROMIUM = os.environ.get("BUYERJOURNEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = "<script>alert(1)</script>"


def page(segment: str = "smb", **options: Any) -> str:
    records = engine_log(segment=segment)
    return render_html(
        funnel_report(FUNNEL, records),
        handoffs=handoff_report(FUNNEL, records),
        breakdown=funnel_breakdown(FUNNEL, records, "segment"),
        cohorts=funnel_cohorts(FUNNEL, records),
        **options,
    )


class _Elements(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def full_page() -> str:
    return page(backtest=POINTS)


def test_every_chart_is_marked(full_page: str) -> None:
    figures = [a for tag, a in parsed(full_page).tags if tag == "figure"]
    assert [a["data-chart"] for a in figures] == list(CHART_KINDS)
    assert all(a["class"] == "bj-chart" for a in figures)


def test_the_tables_are_there(full_page: str) -> None:
    tables = {a.get("data-table") for tag, a in parsed(full_page).tags if tag == "table"}
    assert {
        "steps",
        "exits",
        "times",
        "breakdown",
        "cohorts",
        "sla-breaches",
        "routes",
        "teams",
        "owners",
        "rejections",
        "recycles",
        "backtest",
    } <= tables


def test_headline_numbers_and_figures(full_page: str) -> None:
    text = " ".join(parsed(full_page).text)
    assert "leads entered inquiry" in text
    assert "20.0%" in text  # overall conversion: acme of five
    assert "no budget this year" in text  # the rejection's reason
    assert "(missing: no value recorded)" in text  # dyna has no segment, its own group
    assert "cohort-based" in text
    assert "period-based" in text


def test_the_page_is_self_contained(full_page: str) -> None:
    elements = parsed(full_page)
    tags = {tag for tag, _ in elements.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "image"}
    for _, attributes in elements.tags:
        for name, value in attributes.items():
            if name in {"src", "href", "xlink:href"}:
                assert value is not None, name
                assert value.startswith("#"), (name, value)
    assert "@import" not in full_page
    assert "url(http" not in full_page
    assert re.search(r"url\((?!#)", full_page) is None


def test_ids_are_unique_in_the_page(full_page: str) -> None:
    ids = [a["id"] for _, a in parsed(full_page).tags if a.get("id")]
    assert len(ids) == len(set(ids))
    for reference in re.findall(r'(?:url\(|href=")#([^)"]+)', full_page):
        assert reference in ids


def test_the_same_reports_give_the_same_page(full_page: str) -> None:
    assert page(backtest=POINTS) == full_page


def test_names_from_the_log_are_escaped() -> None:
    html = page(segment=HOSTILE, backtest=[(HOSTILE, 0.5, 0.5)], title=HOSTILE)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE in " ".join(parsed(html).text)


def test_without_charts_the_page_has_the_tables_only() -> None:
    html = page(charts=False, backtest=POINTS)
    assert "<figure" not in html
    assert "<svg" not in html
    assert 'data-table="steps"' in html
    assert 'data-table="backtest"' in html


def test_the_backtest_section_only_with_a_backtest() -> None:
    html = page()
    assert 'data-chart="backtest"' not in html
    assert 'id="backtest"' not in html


def test_an_empty_log_gives_a_page() -> None:
    html = render_html(funnel_report(FUNNEL, ()), handoffs=handoff_report(FUNNEL, ()))
    assert "No lead entered the first step." in html
    assert 'data-chart="funnel"' in html


def test_malformed_backtest_points_are_refused() -> None:
    with pytest.raises(ValueError, match="backtest point 0"):
        page(backtest=[("a", 2.0, 0.5)])


def test_write_html_writes_the_page(tmp_path: Path, full_page: str) -> None:
    records = engine_log()
    written = write_html(
        tmp_path / "report.html",
        funnel_report(FUNNEL, records),
        handoffs=handoff_report(FUNNEL, records),
        breakdown=funnel_breakdown(FUNNEL, records, "segment"),
        cohorts=funnel_cohorts(FUNNEL, records),
        backtest=POINTS,
    )
    assert written.read_text("utf-8") == full_page


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing_backend("chromium", f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import Error, sync_playwright  # noqa: PLC0415
    except ImportError:
        missing_backend("chromium", "Playwright for Python (pip install playwright) is missing")
    with sync_playwright() as driver:
        try:
            launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            missing_backend("chromium", f"it cannot be launched: {exc}")
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str]]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    tab = context.new_page()
    tab.goto(path.as_uri(), wait_until="load")
    return tab, requests


def painted_pixels(png: bytes) -> int:
    """How many pixels of a screenshot are not (nearly) white."""
    from PIL import Image  # noqa: PLC0415  (matplotlib brings Pillow)

    image = Image.open(io.BytesIO(png)).convert("L")
    return sum(count for level, count in enumerate(image.histogram()) if level < 200)


def test_every_chart_is_drawn_in_chromium(browser: Any, tmp_path: Path, full_page: str) -> None:
    path = tmp_path / "report.html"
    path.write_text(full_page, encoding="utf-8")
    tab, requests = open_page(browser, path)
    try:
        assert requests == [path.as_uri()]  # the page itself, nothing else
        figures = tab.locator("figure.bj-chart")
        assert figures.count() == len(CHART_KINDS)
        for kind in CHART_KINDS:
            figure = tab.locator(f'figure.bj-chart[data-chart="{kind}"]')
            assert figure.count() == 1, kind
            svg = figure.locator("svg")
            box = svg.bounding_box()
            assert box is not None, kind
            assert box["width"] > 100, kind
            assert box["height"] > 100, kind
            drawn = svg.evaluate(
                """svg => Array.from(svg.querySelectorAll('path')).filter(p => {
                    const b = p.getBBox(); return b.width > 0 || b.height > 0;
                }).length"""
            )
            assert drawn > 10, kind
            assert painted_pixels(figure.screenshot()) > 500, kind
        tables = tab.locator("table.bj-table")
        assert tables.count() >= 10
        assert tab.evaluate("document.querySelectorAll('script').length") == 0
    finally:
        tab.context.close()


def test_a_hostile_name_is_text_in_chromium(browser: Any, tmp_path: Path) -> None:
    path = tmp_path / "hostile.html"
    path.write_text(page(segment=HOSTILE, backtest=[(HOSTILE, 0.5, 0.5)]), encoding="utf-8")
    tab, requests = open_page(browser, path)
    try:
        assert requests == [path.as_uri()]
        assert tab.evaluate("document.querySelectorAll('script').length") == 0
        breakdown = tab.locator('table[data-table="breakdown"]').inner_text()
        assert HOSTILE in breakdown
        assert HOSTILE in tab.locator('table[data-table="backtest"]').inner_text()
    finally:
        tab.context.close()
