"""``buyerjourney report``: the reports of a SQLite store as tables, JSON, HTML and charts."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from buyerjourney import Engine, SQLiteStore
from buyerjourney._commands.report import table
from buyerjourney.analytics import funnel_breakdown, funnel_report, handoff_report
from buyerjourney.cli import main
from test_charts import FUNNEL, engine_log

FUNNEL_PATH = ("inquiry", "mql", "sal", "sql", "opportunity", "won")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "log.db"
    with SQLiteStore(path) as sqlite:
        engine_log(Engine(FUNNEL, store=sqlite))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def as_json(value: object) -> object:
    return json.loads(json.dumps(value))


def test_text_tables_fit_100_columns(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "report", "--store", str(store), "--funnel", "waterfall")
    assert status == 0, err
    assert max(len(line) for line in out.splitlines()) <= 100
    lines = out.splitlines()
    assert lines[0] == "funnel waterfall: inquiry > mql > sal > sql > opportunity > won"
    header = next(line for line in lines if line.startswith("step "))
    assert header.split()[:4] == ["step", "entered", "exited", "balance"]
    steps = lines[lines.index(header) + 2 : lines.index(header) + 8]
    assert [row.split()[0] for row in steps] == list(FUNNEL_PATH)
    assert steps[2].split()[1:5] == ["3", "2", "1", "75.0%"]  # entered, exited, balance, conv
    assert any(line.split() == ["sal", "inquiry", "back", "1", "0"] for line in lines)  # bolt
    assert "no budget this year" in out
    assert "2024-W10" in out
    assert "2024-W11" in out


def test_json_is_the_reports_figures(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "report", "--store", str(store), "--funnel", "waterfall", "--format", "json"
    )
    assert status == 0
    payload = json.loads(out)
    records = engine_log()
    assert payload["funnel"] == as_json(funnel_report(FUNNEL, records).to_dict())
    assert payload["handoffs"] == as_json(handoff_report(FUNNEL, records).to_dict())
    assert payload["breakdown"] is None
    assert [c["label"] for c in payload["cohorts"]["cohorts"]] == ["2024-W10", "2024-W11"]


def test_options_reach_the_reports(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    as_of = "2024-03-05T12:00:00+00:00"  # 27 hours in: before bolt's rejection
    status, out, _ = run(
        capsys,
        "report",
        "--store",
        str(store),
        "--funnel",
        "waterfall",
        "--format",
        "json",
        "--as-of",
        as_of,
        "--by",
        "segment",
        "--attribution",
        "last",
        "--window",
        "2",
        "--path",
        "inquiry,mql,sal",
        "--cohorts",
        "month",
    )
    assert status == 0
    payload = json.loads(out)
    records = engine_log()
    options = {
        "path": ("inquiry", "mql", "sal"),
        "as_of": as_of,
        "window": timedelta(days=2),
    }
    assert payload["funnel"] == as_json(funnel_report(FUNNEL, records, **options).to_dict())
    assert payload["breakdown"] == as_json(
        funnel_breakdown(FUNNEL, records, "segment", attribution="last", **options).to_dict()
    )
    assert payload["funnel"]["leads"] == 3
    assert payload["handoffs"]["rejected"] == 0
    assert payload["cohorts"]["period"] == "month"


def test_html_and_charts(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html, charts = tmp_path / "report.html", tmp_path / "charts" / "png"
    status, _, err = run(
        capsys,
        "report",
        "--store",
        str(store),
        "--funnel",
        "waterfall",
        "--by",
        "segment",
        "--html",
        str(html),
        "--charts",
        str(charts),
    )
    assert status == 0, err
    page = html.read_text("utf-8")
    for kind in ("funnel", "flows", "time-in-stage", "cohorts", "handoffs"):
        assert f'data-chart="{kind}"' in page
        assert (charts / f"{kind}.png").read_bytes().startswith(b"\x89PNG")
    assert 'data-table="breakdown"' in page
    status, _, _ = run(
        capsys,
        *("report", "--store", str(store), "--funnel", "waterfall"),
        *("--charts", str(tmp_path / "svg"), "--chart-format", "svg"),
    )
    assert status == 0
    assert (tmp_path / "svg" / "funnel.svg").read_text("utf-8").lstrip().startswith("<?xml")


def test_a_missing_store_is_an_error_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.db"
    status, out, err = run(capsys, "report", "--store", str(missing), "--funnel", "waterfall")
    assert status == 1
    assert out == ""
    assert "no such file" in err
    assert "replay --db" in err
    assert not missing.exists()


def test_a_file_that_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all, but text" * 100)
    status, _, err = run(capsys, "report", "--store", str(junk), "--funnel", "waterfall")
    assert status == 1
    assert "not a buyerjourney store" in err
    assert "Traceback" not in err


def test_a_directory_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "report", "--store", str(tmp_path), "--funnel", "waterfall")
    assert status == 1
    assert "is a directory" in err


def test_the_funnel_is_required(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "report", "--store", str(store))
    assert status == 2
    assert "--funnel FILE|PRESET or --pipeline FILE" in err


def test_the_wrong_funnel_is_refused(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "report", "--store", str(store), "--funnel", "seed")
    assert status == 1
    assert "does not have" in err
    assert "'inquiry'" in err


@pytest.mark.parametrize(
    ("options", "status", "message"),
    [
        (["--window", "0"], 2, "--window must be a positive number of days"),
        (["--window", "nan"], 2, "--window must be a positive number of days"),
        (["--path", "mql,,sal"], 2, "--path must name stages separated by commas"),
        (["--path", "mql,nowhere"], 1, "nowhere"),
        (["--path", "mql,mql"], 2, "names a stage twice"),
        (["--as-of", "yesterday"], 1, "--as-of"),
        (["--as-of", "2024-03-05T12:00:00"], 1, "--as-of"),
    ],
)
def test_bad_options(
    store: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    status: int,
    message: str,
) -> None:
    got, out, err = run(capsys, "report", "--store", str(store), "--funnel", "waterfall", *options)
    assert got == status
    assert message in err
    assert "Traceback" not in err
    assert out == ""


def test_html_without_matplotlib_names_the_extra(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, _, err = run(
        capsys,
        *("report", "--store", str(store), "--funnel", "waterfall", "--html"),
        str(tmp_path / "r.html"),
    )
    assert status == 1
    assert "pip install 'buyerjourney[report]'" in err


def test_an_empty_store_reports_no_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.db"
    SQLiteStore(empty).close()
    status, out, _ = run(capsys, "report", "--store", str(empty), "--funnel", "waterfall")
    assert status == 0
    assert "no data: no lead entered the first step" in out


def test_table_cuts_to_the_width() -> None:
    lines = table(["name", "a long header", "b"], [("x" * 150, 1, 22), ("short", 333, 4)])
    assert max(len(line) for line in lines) <= 100
    assert lines[2].startswith("x" * 10)
    assert "~" in lines[2]
    assert lines[3].split() == ["short", "333", "4"]
    aligned = table(["step", "went to", "n"], [("a", "bb", 1), ("ccc", "d", 10)], text_columns=2)
    assert aligned[2] == "a     bb        1"
    assert aligned[3] == "ccc   d        10"
