"""The README's first two commands: the main job and the test command, as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from buyerjourney.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
CONSOLE = re.compile(r"```console\n(.*?)\n```", re.S)


def _commands() -> list[str]:
    return CONSOLE.findall(README.read_text(encoding="utf-8"))


def test_the_readme_starts_with_the_main_job_and_the_test_command() -> None:
    main_job, tests = _commands()[:2]
    assert "pip install ." in main_job
    assert "buyerjourney ingest --sample" in main_job
    assert 'pip install -e ".[dev]"' in tests
    assert tests.rstrip().endswith("python -m pytest")


def test_the_main_job_runs_and_a_second_run_applies_nothing_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main_job = _commands()[0]
    command = main_job.split("&&")[-1].strip()
    argv = shlex.split(command)
    assert argv[0].endswith("buyerjourney")
    monkeypatch.chdir(tmp_path)
    assert main(argv[1:]) == 0
    first = capsys.readouterr().out
    assert first.startswith("applied ")
    assert "400 journeys" in first
    assert (tmp_path / "journeys.db").is_file()
    assert main(argv[1:]) == 0
    second = capsys.readouterr().out
    assert second.startswith("nothing new: every input was applied before")
