"""The backtest, simulate and forecast commands."""

from __future__ import annotations

import json
from html import escape as html_escape
from pathlib import Path

import pytest

from buyerjourney.cli import main


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "touches.jsonl"
    assert main(["simulate", "waterfall", "--leads", "80", "--seed", "3", "-o", str(path)]) == 0
    return path


def test_simulate_is_seeded(
    stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again = tmp_path / "again.jsonl"
    assert main(["simulate", "waterfall", "--leads", "80", "--seed", "3", "-o", str(again)]) == 0
    assert again.read_text() == stream.read_text()
    assert main(["simulate", "waterfall", "--leads", "5", "--seed", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines
    assert all(json.loads(line)["lead_id"].startswith("lead-") for line in lines)


def test_simulate_needs_a_funnel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate"]) == 2
    assert "give a funnel" in capsys.readouterr().err


def test_backtest_text_and_json(stream: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", str(stream), "--funnel", "waterfall", "--thresholds", "40,60,80"]) == 0
    text = capsys.readouterr().out
    assert "backtest of handoffs into sal" in text
    assert "score>=60" in text
    assert "current" in text
    assert (
        main(
            [
                "backtest",
                str(stream),
                "--funnel",
                "waterfall",
                "--thresholds",
                "40:70:10",
                "--objective",
                "precision@recall>=0.5",
                "--format",
                "json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in payload["candidates"]] == [
        "score>=40",
        "score>=50",
        "score>=60",
        "current",
    ]
    assert payload["objective"] == "precision@recall>=0.5"
    # The pipeline's own policy reproduces what happened.
    current = payload["candidates"][-1]
    assert current["handed_off"] == payload["actual"]["handed_off"]
    assert [p["threshold"] for p in payload["curve"]] == [40.0, 50.0, 60.0]


def test_backtest_usage_errors(stream: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", str(stream), "--funnel", "waterfall", "--thresholds", "a,b"]) == 2
    assert "thresholds" in capsys.readouterr().err
    assert main(["backtest", str(stream), "--funnel", "waterfall", "--objective", "luck"]) == 2
    assert "--objective" in capsys.readouterr().err
    assert main(["backtest", "missing.jsonl", "--funnel", "waterfall"]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["backtest", str(stream), "--funnel", "waterfall", "--stage", "nowhere"]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_forecast_text_and_json(stream: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["forecast", str(stream), "--funnel", "waterfall", "--weeks", "3", "--runs", "50"]
    assert main(args) == 0
    assert "forecast of entries into won" in capsys.readouterr().out
    assert main([*args, "--format", "json", "--as-of", "2024-02-01T00:00:00+00:00"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["weeks"]) == 3
    assert payload["as_of"] == "2024-02-01T00:00:00+00:00"
    assert main([*args, "--interval", "2"]) == 1
    assert "interval" in capsys.readouterr().err


def test_forecast_reads_a_store(
    stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "log.db"
    assert main(["replay", str(stream), "--funnel", "waterfall", "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["forecast", "--store", str(db), "--funnel", "waterfall", "--runs", "20"]) == 0
    assert "forecast of entries into won" in capsys.readouterr().out
    assert main(["forecast", "--store", str(tmp_path / "none.db"), "--funnel", "waterfall"]) == 1


def test_backtest_writes_an_html_page_with_the_curve(
    stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "backtest.html"
    argv = ["backtest", str(stream), "--funnel", "waterfall", "--thresholds", "40,60,80"]
    assert main([*argv, "--html", str(page), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    html = page.read_text(encoding="utf-8")
    assert 'data-chart="backtest"' in html
    assert 'data-chart="funnel"' in html
    for point in result["curve"]:  # every point of the curve is in the page's table
        assert html_escape(point["name"]) in html
    assert "<script" not in html
