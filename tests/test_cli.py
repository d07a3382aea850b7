"""Tests for the ``buyerjourney`` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from buyerjourney import presets
from buyerjourney._adapters.files import SCHEMA, dump_funnel, load_funnel
from buyerjourney.cli import main

BROKEN = f"""\
format = "{SCHEMA}"
name = "broken"

[[stages]]
name = "start"
rank = 10
initial = true

[[stages]]
name = "middle"
rank = 20

[[stages]]
name = "island"
rank = 30

[[transitions]]
event = "go"
source = "start"
target = "middle"
"""
"""Schema-valid, but: middle and island are dead ends, island is unreachable."""

MALFORMED = f"""\
format = "{SCHEMA}"
name = "malformed"

[[stages]]
name = "start"
rank = "ten"
sla = "soon"
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    path = tmp_path / "seed.toml"
    dump_funnel(presets.get("seed"), path)
    return path


@pytest.fixture
def broken_file(tmp_path: Path) -> Path:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN, encoding="utf-8")
    return path


@pytest.fixture
def malformed_file(tmp_path: Path) -> Path:
    path = tmp_path / "malformed.toml"
    path.write_text(MALFORMED, encoding="utf-8")
    return path


# ---------------------------------------------------------------- validate


def test_validate_ok(capsys: pytest.CaptureFixture[str], seed_file: Path) -> None:
    status, out, err = run(capsys, "validate", str(seed_file))
    assert status == 0
    assert out == f"{seed_file}: ok (7 stages, 9 transitions)\n"
    assert err == ""


def test_validate_lists_every_problem(
    capsys: pytest.CaptureFixture[str], broken_file: Path
) -> None:
    status, out, _ = run(capsys, "validate", str(broken_file))
    assert status == 1
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{broken_file}: [") for line in lines)
    assert sum("[dead-end]" in line for line in lines) == 2
    assert sum("[unreachable-stage] stage 'island'" in line for line in lines) == 1


def test_validate_reports_format_errors(
    capsys: pytest.CaptureFixture[str], malformed_file: Path
) -> None:
    status, out, err = run(capsys, "validate", str(malformed_file))
    assert status == 1
    assert out.startswith(f"{malformed_file}: 2 problems in the funnel document:\n")
    assert "  - stages[0].rank: must be an integer" in out
    assert "  - stages[0].sla: must be an ISO-8601 duration" in out
    assert "Traceback" not in out + err


def test_validate_several_files_fails_if_any_fails(
    capsys: pytest.CaptureFixture[str], seed_file: Path, broken_file: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    status, out, _ = run(capsys, "validate", str(seed_file), str(broken_file), str(missing))
    assert status == 1
    assert out.startswith(f"{seed_file}: ok")
    assert f"{missing}: cannot open: No such file or directory" in out


def test_validate_accepts_presets(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "validate", *presets.names())
    assert status == 0
    assert out.splitlines() == [
        "seed: ok (7 stages, 9 transitions)",
        "hubspot: ok (8 stages, 15 transitions)",
        "waterfall: ok (8 stages, 9 transitions)",
    ]


def test_validate_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "validate", "nonesuch")
    assert status == 1
    assert out.startswith("nonesuch: no preset named 'nonesuch'; choose one of seed, hubspot")


def test_validate_json_report(
    capsys: pytest.CaptureFixture[str], seed_file: Path, broken_file: Path, malformed_file: Path
) -> None:
    status, out, _ = run(
        capsys,
        "validate",
        "--format",
        "json",
        str(seed_file),
        str(broken_file),
        str(malformed_file),
    )
    assert status == 1
    report = json.loads(out)
    assert [r["file"] for r in report] == [str(seed_file), str(broken_file), str(malformed_file)]
    assert [r["ok"] for r in report] == [True, False, False]
    assert report[0]["problems"] == []
    assert set(report[0]) == {"file", "ok", "problems"}
    codes = sorted(p["code"] for p in report[1]["problems"])
    assert codes == ["dead-end", "dead-end", "unreachable-stage"]
    island = next(p for p in report[1]["problems"] if p["code"] == "unreachable-stage")
    assert island["subject"] == "island"
    assert "cannot be reached" in island["message"]
    (format_problem,) = report[2]["problems"]
    assert format_problem["code"] == "format-error"
    assert format_problem["message"].startswith("2 problems in the funnel document:")


def test_validate_json_report_single_format_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"format": SCHEMA, "name": "x", "stages": 3}), encoding="utf-8")
    status, out, _ = run(capsys, "validate", "--format=json", str(path))
    assert status == 1
    (problem,) = json.loads(out)[0]["problems"]
    assert problem == {
        "code": "format-error",
        "message": "must be an array of objects (got 3 that is an integer)",
        "subject": "stages",
    }


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["validate"],
        ["frobnicate"],
        ["validate", "--format", "yaml", "x.toml"],
        ["show"],
        ["diagram", "seed", "--format", "png"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert "usage: buyerjourney" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("validate", "diagram", "presets", "show"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from buyerjourney import __version__  # noqa: PLC0415

    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out == f"buyerjourney {__version__}\n"


# ---------------------------------------------------------------- presets and show


def test_presets_lists_each_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "presets")
    assert status == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(presets.names())
    for line, name in zip(lines, presets.names(), strict=True):
        assert line.endswith(presets.get(name).description)


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize("name", presets.names())
def test_show_then_validate_round_trip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, fmt: str
) -> None:
    status, out, _ = run(capsys, "show", name, "--format", fmt)
    assert status == 0
    path = tmp_path / f"{name}.{fmt}"
    path.write_text(out, encoding="utf-8")
    assert load_funnel(path) == presets.get(name)
    status, out, _ = run(capsys, "validate", str(path))
    assert status == 0
    assert out.startswith(f"{path}: ok (")


def test_show_defaults_to_toml(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "show", "waterfall")
    assert status == 0
    assert out.startswith(f'format = "{SCHEMA}"\nname = "waterfall"\n')


def test_show_a_file(capsys: pytest.CaptureFixture[str], seed_file: Path) -> None:
    status, out, _ = run(capsys, "show", str(seed_file), "--format", "json")
    assert status == 0
    assert json.loads(out)["name"] == "seed"


def test_show_invalid_file_prints_problems_without_traceback(
    capsys: pytest.CaptureFixture[str], broken_file: Path
) -> None:
    status, out, err = run(capsys, "show", str(broken_file))
    assert status == 1
    assert out == ""
    assert err.startswith("buyerjourney: funnel 'broken' has 3 problems:")
    assert "Traceback" not in err


def test_show_unknown_preset(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "show", "sead")
    assert status == 1
    assert out == ""
    assert err == (
        "buyerjourney: no preset named 'sead'; choose one of seed, hubspot, waterfall, "
        "or give the path of a funnel file\n"
    )


def test_show_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    status, _, err = run(capsys, "show", str(missing))
    assert status == 1
    assert err == f"buyerjourney: {missing}: cannot open: No such file or directory\n"


def test_show_file_with_unknown_suffix(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "funnel.yaml"
    path.write_text("name: x\n", encoding="utf-8")
    status, _, err = run(capsys, "show", str(path))
    assert status == 1
    assert err.startswith(f"buyerjourney: {path}: cannot tell the format from the file name")


# ---------------------------------------------------------------- diagram


def test_diagram_mermaid_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    from buyerjourney._adapters.diagram import to_mermaid  # noqa: PLC0415

    status, out, err = run(capsys, "diagram", "seed")
    assert status == 0
    assert err == ""
    assert out.rstrip("\n") == to_mermaid(presets.get("seed")).rstrip("\n")


def test_diagram_dot_to_file(capsys: pytest.CaptureFixture[str], seed_file: Path) -> None:
    from buyerjourney._adapters.diagram import to_dot  # noqa: PLC0415

    out_path = seed_file.with_suffix(".dot")
    status, out, _ = run(capsys, "diagram", str(seed_file), "--format", "dot", "-o", str(out_path))
    assert status == 0
    assert out == ""
    assert out_path.read_text(encoding="utf-8").rstrip("\n") == to_dot(presets.get("seed")).rstrip(
        "\n"
    )


def test_diagram_mermaid_to_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "waterfall.mmd"
    status, out, _ = run(capsys, "diagram", "waterfall", "--output", str(out_path))
    assert status == 0
    assert out == ""
    text = out_path.read_text(encoding="utf-8")
    assert "sal" in text
    assert text.endswith("\n")


def test_diagram_svg(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("pydot")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's `dot` program is not installed")
    pyparsing_warnings = pytest.importorskip("pyparsing.warnings")
    out_path = tmp_path / "seed.svg"
    with warnings.catch_warnings():
        # pydot's DOT grammar trips pyparsing 3.3's own deprecation and
        # diagnostic warnings; they are about pydot, not about this command.
        warnings.simplefilter("ignore", pyparsing_warnings.PyparsingWarning)
        status, _, err = run(capsys, "diagram", "seed", "--format", "svg", "-o", str(out_path))
    assert status == 0, err
    assert "<svg" in out_path.read_text(encoding="utf-8")


def test_diagram_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run(capsys, "diagram", str(tmp_path / "absent.json"))
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "cannot open" in err


def test_diagram_unwritable_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_path = tmp_path / "no" / "such" / "dir.mmd"
    status, _, err = run(capsys, "diagram", "seed", "-o", str(out_path))
    assert status == 1
    assert err == f"buyerjourney: {out_path}: cannot open: No such file or directory\n"


# ---------------------------------------------------------------- python -m


def test_python_dash_m(seed_file: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "buyerjourney", "validate", str(seed_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{seed_file}: ok (7 stages, 9 transitions)\n"


# ---------------------------------------------------------------- without the testing extra

WITHOUT_HYPOTHESIS = """\
import importlib.abc
import sys


class NoHypothesis(importlib.abc.MetaPathFinder):
    # Behave as if Hypothesis were not installed.
    def find_spec(self, name, path=None, target=None):
        if name == "hypothesis" or name.startswith("hypothesis."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoHypothesis())
if sys.argv[1:] == ["--probe"]:
    import hypothesis  # noqa: F401
from buyerjourney.cli import main

raise SystemExit(main(sys.argv[1:]))
"""
"""Run ``buyerjourney.cli.main`` in a fresh interpreter where Hypothesis cannot be imported."""


def run_without_hypothesis(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_HYPOTHESIS, *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=120,
    )


def test_the_blocker_really_hides_hypothesis(tmp_path: Path) -> None:
    result = run_without_hypothesis("--probe", cwd=tmp_path)
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'hypothesis'" in result.stderr


def test_validate_needs_no_extra(tmp_path: Path, seed_file: Path, broken_file: Path) -> None:
    result = run_without_hypothesis("validate", str(seed_file), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{seed_file}: ok (7 stages, 9 transitions)\n"
    result = run_without_hypothesis("validate", str(broken_file), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, "")
    assert "[unreachable-stage]" in result.stdout


def test_verify_without_the_extra_runs_the_structure_and_names_the_extra(tmp_path: Path) -> None:
    """It used to end in a ModuleNotFoundError traceback."""
    result = run_without_hypothesis("verify", "waterfall", cwd=tmp_path)

    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    assert result.stderr == (
        "buyerjourney: exploring a pipeline (buyerjourney verify) needs the 'testing' extra: "
        "pip install 'buyerjourney[testing]'. Only the structural checks ran; pass "
        "--structure-only to skip exploring on purpose.\n"
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "verification of funnel 'waterfall' (structure only): 0 errors, 1 warning"
    assert lines[1] == "warning: [not-explored] funnel waterfall"
    assert "exploration was skipped" in lines[2]


def test_verify_structure_only_needs_no_extra(tmp_path: Path) -> None:
    result = run_without_hypothesis("verify", "waterfall", "--structure-only", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "verification of funnel 'waterfall' (structure only): 0 errors, 0 warnings\n"
        "no problem found\n"
    )


def test_verify_without_the_extra_still_finds_structural_errors(tmp_path: Path) -> None:
    import attrs  # noqa: PLC0415

    waterfall = presets.get("waterfall")
    funnel = waterfall.extend(replace_stages=[attrs.evolve(waterfall.stage("mql"), owner=None)])
    path = tmp_path / "funnel.toml"
    dump_funnel(funnel, path)
    owners = tmp_path / "owners.toml"
    owners.write_text('[[overrides]]\nteam = "partnrs"\nstages = ["mql"]\n', encoding="utf-8")

    result = run_without_hypothesis(
        "verify",
        str(path),
        "--owners",
        str(owners),
        "--structure-only",
        "--format",
        "json",
        cwd=tmp_path,
    )

    assert (result.returncode, result.stderr) == (1, "")
    data = json.loads(result.stdout)
    assert data["explored"] is False
    assert [(f["code"], f["where"]) for f in data["findings"]] == [
        ("owner-rules", "owner rules overrides[0]")
    ]


def test_verify_structure_only_with_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "verify", "seed", "--structure-only")
    assert (status, err) == (0, "")
    assert out.startswith("verification of funnel 'seed' (structure only): 0 errors")


# ---------------------------------------------------------------- --pipeline and --hooks

GUARDED = """\
format = "buyerjourney.pipeline/1"
funnel = "fast.toml"

[policy]
type = "touch_kind"
mapping = "events"
"""

HOOKS = """\
from buyerjourney import Hooks

hooks = Hooks()


@hooks.guard("is_enterprise")
def is_enterprise(ctx):
    return ctx.attributes.get("employees", 0) >= 1000
"""


@pytest.fixture
def guarded_pipeline(tmp_path: Path) -> Path:
    from buyerjourney import Transition  # noqa: PLC0415

    funnel = presets.get("waterfall").extend(
        name="fast",
        add_transitions=[Transition("fast_track", "inquiry", "sal", guard="is_enterprise")],
    )
    dump_funnel(funnel, tmp_path / "fast.toml")
    (tmp_path / "hooks_module.py").write_text(HOOKS, encoding="utf-8")
    path = tmp_path / "pipeline.toml"
    path.write_text(GUARDED, encoding="utf-8")
    return path


def test_verify_a_pipeline_file_without_hooks_warns_about_its_guard(
    capsys: pytest.CaptureFixture[str], guarded_pipeline: Path
) -> None:
    status, out, err = run(capsys, "verify", "--pipeline", str(guarded_pipeline), "--budget", "5")
    assert (status, err) == (0, "")
    assert "[guard-unavailable] guard is_enterprise" in out


def test_verify_with_hooks_explores_the_guard(
    capsys: pytest.CaptureFixture[str], guarded_pipeline: Path
) -> None:
    hooks = str(guarded_pipeline.parent / "hooks_module.py")
    status, out, err = run(
        capsys,
        "verify",
        "--pipeline",
        str(guarded_pipeline),
        "--hooks",
        hooks,
        "--structure-only",
        "--format",
        "json",
    )
    assert (status, err) == (0, "")
    assert "guard-unavailable" not in out


def test_verify_with_hooks_that_lack_a_guard_is_an_error(
    capsys: pytest.CaptureFixture[str], guarded_pipeline: Path
) -> None:
    empty = guarded_pipeline.parent / "empty_hooks.py"
    empty.write_text("from buyerjourney import Hooks\nhooks = Hooks()\n", encoding="utf-8")
    status, out, _ = run(
        capsys, "verify", "--pipeline", str(guarded_pipeline), "--hooks", str(empty),
        "--structure-only",
    )  # fmt: skip
    assert status == 1
    assert "error: [unknown-hook] guard is_enterprise" in out


def test_verify_needs_a_funnel_or_a_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "verify")
    assert status == 2
    assert "give a funnel (FILE|PRESET) or --pipeline FILE" in err


def test_verify_pipeline_and_funnel_exclude_each_other(
    capsys: pytest.CaptureFixture[str], guarded_pipeline: Path
) -> None:
    status, _, err = run(capsys, "verify", "seed", "--pipeline", str(guarded_pipeline))
    assert status == 2
    assert "cannot be combined with a funnel" in err


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("", "does not define it"),
        ("hooks = {}\n", "binds it to dict"),
        ("raise RuntimeError('boom')\n", "importing the module raised RuntimeError: boom"),
    ],
)
def test_a_hooks_module_that_breaks_the_contract(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, source: str, expected: str
) -> None:
    module = tmp_path / "bad_hooks.py"
    module.write_text(source, encoding="utf-8")
    status, _, err = run(capsys, "verify", "seed", "--hooks", str(module), "--structure-only")
    assert status == 1
    assert expected in err
    assert "Traceback" not in err


def test_a_hooks_module_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, "verify", "seed", "--hooks", "no_such_hooks", "--structure-only")
    assert status == 1
    assert "no module named 'no_such_hooks' in the current directory" in err
    status, _, err = run(capsys, "verify", "seed", "--hooks", "nope/x.py", "--structure-only")
    assert (status, "no such file" in err) == (1, True)


def test_a_hooks_module_by_name_is_found_in_the_current_directory(
    capsys: pytest.CaptureFixture[str], guarded_pipeline: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(guarded_pipeline.parent)
    monkeypatch.delitem(sys.modules, "hooks_module", raising=False)
    status, out, err = run(
        capsys, "verify", "--pipeline", "pipeline.toml", "--hooks", "hooks_module",
        "--structure-only",
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert "guard-unavailable" not in out


# ---------------------------------------------------------------- files that used to crash

DEEP = 'format = "buyerjourney.funnel/1"\nname = "x"\nstages = ' + "[" * 50_000 + "]" * 50_000
HUGE_RANK = (
    'format = "buyerjourney.funnel/1"\nname = "x"\n[[stages]]\nname = "a"\n'
    f"rank = {'9' * 5000}\ninitial = true\nterminal = true\n"
)
LONG_SLA = (
    'format = "buyerjourney.funnel/1"\nname = "x"\n[[stages]]\nname = "a"\nrank = 1\n'
    f'initial = true\nsla = "P{"9" * 5000}D"\n[[stages]]\nname = "b"\nrank = 2\n'
    'terminal = true\n[[transitions]]\nevent = "go"\nsource = "a"\ntarget = "b"\n'
)
HOSTILE = {
    "deep": (DEEP, "nested more than 32 levels"),
    "huge-rank": (HUGE_RANK, "an integer has more than 4300 digits"),
    "long-sla": (LONG_SLA, "stages[0].sla: is too long to be a duration"),
}


def _hostile(tmp_path: Path, kind: str, name: str) -> tuple[Path, str]:
    if kind == "zero":
        if not Path("/dev/zero").exists():
            pytest.skip("needs /dev/zero")
        path = tmp_path / name
        path.symlink_to("/dev/zero")
        return path, "larger than 4 MiB"
    text, expected = HOSTILE[kind]
    if name.startswith("owners"):
        text = text.replace('format = "buyerjourney.funnel/1"\nname = "x"\n', "")
        text = text.replace("stages = ", "teams = ").replace("[[stages]]", "[[overrides]]")
        if kind == "long-sla":
            pytest.skip("owner rules have no durations")
        if kind == "huge-rank":
            expected = "an integer has more than 4300 digits"
    if name.startswith("pipeline"):
        text = text.replace("buyerjourney.funnel/1", "buyerjourney.pipeline/1")
        text = text.replace('name = "x"\n', "").replace("stages = ", "thresholds = ")
        if kind == "long-sla":
            pytest.skip("covered by tests/test_pipeline_file.py")
        if kind == "huge-rank":
            text = f'format = "buyerjourney.pipeline/1"\nthresholds = [{"9" * 5000}]\n'
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path, expected


@pytest.mark.parametrize("kind", ["deep", "huge-rank", "long-sla", "zero"])
@pytest.mark.parametrize(
    "command",
    [
        ("validate", "{funnel}"),
        ("show", "{funnel}"),
        ("verify", "{funnel}", "--structure-only"),
        ("verify", "seed", "--owners", "{owners}", "--structure-only"),
        ("replay", "--sample", "--owners", "{owners}"),
        ("replay", "--sample", "--pipeline", "{pipeline}"),
        ("verify", "--pipeline", "{pipeline}", "--structure-only"),
    ],
    ids=lambda c: " ".join(c) if isinstance(c, tuple) else c,
)
def test_hostile_definition_files_fail_cleanly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str, command: tuple[str, ...]
) -> None:
    """Each used to end in a RecursionError, ValueError or MemoryError traceback."""
    names = {"funnel": "funnel.toml", "owners": "owners.toml", "pipeline": "pipeline.toml"}
    (slot,) = (key for key in names if any(f"{{{key}}}" in part for part in command))
    path, expected = _hostile(tmp_path, kind, names[slot])
    argv = [part.format(**{slot: str(path)}) for part in command]
    status, out, err = run(capsys, *argv)
    assert status == 1
    assert "Traceback" not in err
    report = out if argv[0] == "validate" else err
    assert expected in report
    assert str(path) in report


@pytest.mark.parametrize("name", ["funnel.toml", "funnel.json"])
def test_a_byte_order_mark_is_tolerated(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    from buyerjourney import dumps_funnel  # noqa: PLC0415

    path = tmp_path / name
    text = dumps_funnel(presets.get("seed"), format="json" if name.endswith("json") else "toml")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    status, out, err = run(capsys, "validate", str(path))
    assert (status, err) == (0, "")
    assert out == f"{path}: ok (7 stages, 9 transitions)\n"


def test_verify_keeps_hypothesis_files_beside_the_funnel_s_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: Hypothesis's files went into whatever directory verify ran from."""
    from buyerjourney import cli  # noqa: PLC0415
    from buyerjourney.testing import verify as verifying  # noqa: PLC0415

    funnel_file = tmp_path / "project" / "funnels" / "seed.toml"
    funnel_file.parent.mkdir(parents=True)
    dump_funnel(presets.seed(), funnel_file)
    seen: list[dict[str, object]] = []

    def spy(pipeline: object, **options: object) -> object:
        seen.append(options)
        return verifying.verify_pipeline(pipeline, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "_exploring_verifier", lambda: spy)
    monkeypatch.chdir(tmp_path)
    assert main(["verify", str(funnel_file), "--budget", "5"]) == 0
    assert seen[-1]["project"] == funnel_file
    assert (seen[-1]["database"], seen[-1]["derandomize"]) == (None, True)
    chosen = tmp_path / "examples-db"
    assert main(["verify", str(funnel_file), "--budget", "5", "--database", str(chosen)]) == 0
    assert (seen[-1]["database"], seen[-1]["derandomize"]) == (str(chosen), False)
    capsys.readouterr()
