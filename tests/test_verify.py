"""Tests for the verifier itself: presets, the report, options, files and the command."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings

from buyerjourney import (
    Condition,
    Engine,
    Funnel,
    Hooks,
    InvalidOwnerRules,
    Journey,
    OwnerRule,
    Problem,
    Transition,
    presets,
)
from buyerjourney._adapters.files import dump_funnel, load_owner_rules
from buyerjourney._checks import verify_structure
from buyerjourney._core.owners import OwnerRules
from buyerjourney._pipeline import default_pipeline
from buyerjourney.cli import main
from buyerjourney.testing import funnels, standard_hooks
from buyerjourney.testing.verify import (
    CODES,
    Finding,
    Severity,
    VerificationReport,
    load_unchecked_owner_rules,
    verify,
    verify_pipeline,
)

BUDGET = 30

GAP_RULES = """\
[[overrides]]
team = "marketing"
stages = ["mql"]
when = [{ attribute = "segment", values = ["smb"] }]
"""
"""For :func:`ownerless_mql`: only smb leads get an owner in mql."""


def ownerless_mql() -> Funnel:
    funnel = presets.demand_waterfall()
    return funnel.extend(replace_stages=[attrs.evolve(funnel.stage("mql"), owner=None)])


def bypass_funnel() -> Funnel:
    return presets.demand_waterfall().extend(
        add_transitions=[Transition("fast_track", "mql", "sql", guard="is_enterprise")]
    )


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_with_its_default_pipeline_verifies_clean(name: str) -> None:
    report = verify_pipeline(default_pipeline(presets.get(name)))

    assert report.ok, str(report)
    assert report.errors == ()
    assert report.warnings == ()
    assert report.examples >= 100
    assert str(report).endswith("no problem found")


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_in_solo_mode_verifies_clean(name: str) -> None:
    funnel = presets.get(name)
    pipeline = default_pipeline(funnel, owners=OwnerRules.solo(funnel))

    assert verify_pipeline(pipeline, budget=BUDGET).findings == ()


def test_the_funnel_alone_verifies_without_hooks() -> None:
    report = verify(presets.seed(), budget=BUDGET)
    assert report.ok
    assert report.findings == ()


# ---------------------------------------------------------------- the report


def test_the_report_reads_what_where_and_example() -> None:
    hooks = Hooks({"is_enterprise": lambda ctx: ctx.attributes.get("employees", 0) >= 1000})
    report = verify(bypass_funnel(), hooks=hooks, budget=BUDGET)

    text = str(report)
    assert text.splitlines()[0].startswith(
        "verification of funnel 'waterfall': 1 error, 0 warnings"
    )
    assert "error: [gate-bypass] transition fast_track: mql -> sql [if is_enterprise]" in text
    assert (
        "    1. qualify: inquiry -> mql\n    2. fast_track: mql -> sql [if is_enterprise]" in text
    )
    assert not report.ok
    assert report.codes == {"gate-bypass"}
    assert report.errors == report.findings
    assert report.by_code("no-such-code") == ()


def test_the_report_is_json_ready() -> None:
    report = verify(bypass_funnel(), budget=BUDGET)

    data = json.loads(json.dumps(report.to_dict()))

    assert data["funnel"] == "waterfall"
    assert data["ok"] is False
    assert data["errors"] == len(report.errors)
    assert data["warnings"] == len(report.warnings)
    assert data["budget"] == BUDGET
    assert [f["code"] for f in data["findings"]] == [f.code for f in report.findings]
    unknown = next(f for f in data["findings"] if f["code"] == "unknown-hook")
    assert unknown == {
        "code": "unknown-hook",
        "severity": "error",
        "what": report.by_code("unknown-hook")[0].what,
        "where": "guard is_enterprise",
        "example": [],
    }


def test_errors_come_before_warnings() -> None:
    report = verify(bypass_funnel(), budget=BUDGET, missing_guards="warning")
    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, key=lambda s: s is Severity.WARNING)
    assert report.warnings
    assert report.errors


def test_a_finding_prints_its_parts() -> None:
    finding = Finding("stage-never-reached", Severity.WARNING, "never", "stage x", ["a: s -> x"])
    assert finding.example == ("a: s -> x",)
    assert str(finding) == (
        "warning: [stage-never-reached] stage x\n  never\n  example:\n    1. a: s -> x"
    )
    assert Finding("c", Severity.ERROR, "w", "engine", "one step").example == ("one step",)


def test_a_clean_report_says_so() -> None:
    report = VerificationReport("demo", (), examples=3, budget=7)
    assert report.ok
    assert str(report) == (
        "verification of funnel 'demo': 0 errors, 0 warnings (3 explored runs, budget 7)\n"
        "no problem found"
    )


def test_every_code_is_documented_once() -> None:
    assert len(CODES) == len(set(CODES))
    assert all(code == code.lower() and " " not in code for code in CODES)


# ---------------------------------------------------------------- options


def test_the_verifier_is_deterministic_by_default() -> None:
    funnel = bypass_funnel()
    first = verify(funnel, budget=BUDGET)
    second = verify(funnel, budget=BUDGET)
    assert first == second


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget": 0}, "budget must be a positive int"),
        ({"steps": -1}, "steps must be a positive int"),
        ({"budget": True}, "budget must be a positive int"),
        ({"missing_guards": "ignore"}, "missing_guards must be 'error' or 'warning'"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        verify(presets.seed(), **options)  # type: ignore[arg-type]


def test_missing_guards_may_be_warnings_as_on_the_command_line() -> None:
    report = verify(bypass_funnel(), budget=BUDGET, missing_guards="warning")

    finding = report.by_code("guard-unavailable")[0]
    assert finding.severity is Severity.WARNING
    assert finding.where == "guard is_enterprise"
    assert "verify in python with your hooks" in finding.what.lower()
    # Explored as never enabled: no other finding about the guard or its target.
    assert report.by_code("guard-never-true") == ()
    assert report.by_code("stage-never-reached") == ()


def test_extra_attributes_reach_guards_that_need_them() -> None:
    funnel = presets.demand_waterfall().extend(
        add_transitions=[Transition("fast_track", "inquiry", "mql", guard="is_platinum")]
    )
    hooks = Hooks({"is_platinum": lambda ctx: ctx.attributes.get("plan") == "platinum"})

    without = verify(funnel, hooks=hooks, budget=BUDGET)
    with_them = verify(funnel, hooks=hooks, budget=BUDGET, attributes=[{"plan": "platinum"}])

    assert without.by_code("guard-never-true")[0].where == "guard is_platinum"
    assert with_them.findings == ()


def test_extra_touch_kinds_reach_hooks_that_need_them() -> None:
    pipeline = default_pipeline(presets.seed())

    def breaks_on_trials(lead, at):  # type: ignore[no-untyped-def]
        if lead.touches[-1].kind == "trial_started":
            msg = "no trial points"
            raise LookupError(msg)
        return pipeline.scorer(lead, at)  # type: ignore[misc]

    without = verify(presets.seed(), scorer=breaks_on_trials, budget=BUDGET)
    with_them = verify(
        presets.seed(), scorer=breaks_on_trials, budget=BUDGET, touch_kinds=["trial_started"]
    )

    assert without.ok
    assert with_them.by_code("scorer-error")[0].example[0] == (
        "touch lead-0 'trial_started' at +0h00"
    )


def test_verify_pipeline_is_verify_with_the_pipeline_parts() -> None:
    pipeline = default_pipeline(presets.seed())
    assert verify_pipeline(pipeline, budget=BUDGET) == verify(
        pipeline.funnel,
        pipeline.owners,
        pipeline.hooks,
        pipeline.scorer,
        pipeline.policy,
        thresholds=pipeline.thresholds,
        budget=BUDGET,
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.nested_given])
@given(funnels(max_stages=6))
def test_generated_funnels_verify_without_crashing(funnel: Funnel) -> None:
    report = verify(funnel, hooks=standard_hooks(), budget=5, steps=5)

    assert report.codes <= set(CODES)
    for finding in report.by_code("gate-bypass"):
        # The example is a real path from the initial stage.
        stage = funnel.initial.name
        for step in finding.example:
            event, move = step.split(": ")
            source, target = move.split(" [")[0].split(" -> ")
            assert source == stage
            assert target in {t.target for t in funnel.transitions_from(stage) if t.event == event}
            stage = target


# ---------------------------------------------------------------- owner rules files


def test_unchecked_owner_rules_keep_their_problems_for_the_report(tmp_path: Path) -> None:
    path = tmp_path / "owners.toml"
    path.write_text(GAP_RULES, encoding="utf-8")
    funnel = ownerless_mql()
    with pytest.raises(InvalidOwnerRules, match="gap: stage 'mql'"):
        load_owner_rules(path, funnel)

    rules = load_unchecked_owner_rules(path, funnel)

    assert "mql" not in rules.defaults
    assert rules.defaults["sal"] == "sales"
    report = verify(funnel, rules, budget=BUDGET)
    assert report.by_code("owner-gap")[0].where == "stage mql"
    assert "not (segment in ['smb'])" in report.by_code("owner-gap")[0].what


def test_unchecked_owner_rules_read_json_and_solo(tmp_path: Path) -> None:
    path = tmp_path / "owners.json"
    path.write_text(json.dumps({"teams": ["partners"], "solo": "founder"}), encoding="utf-8")

    rules = load_unchecked_owner_rules(path, presets.seed())

    assert rules.teams == ("marketing", "sales", "partners")
    assert set(rules.members["founder"]) == {"marketing", "sales", "partners"}
    assert rules == OwnerRules.for_funnel(
        presets.seed(), teams=("partners",), members={"founder": rules.members["founder"]}
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("owners.yaml", "", "name the file with .toml or .json"),
        ("owners.json", "{", "not valid JSON"),
        ("owners.toml", "teams = [", "not valid TOML"),
        ("owners.json", "[]", "document: expected a table"),
        ("owners.toml", "[[overrides]]\nstages = []\n", "overrides[0].team: missing"),
    ],
)
def test_unreadable_owner_rules_name_the_file(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidOwnerRules) as info:
        load_unchecked_owner_rules(path, presets.seed())
    assert info.value.problems[0].message.startswith(f"{path}: ")
    assert message in str(info.value)


# ---------------------------------------------------------------- the command


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_verifies_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "verify", "waterfall", "--budget", str(BUDGET))
    assert (status, err) == (0, "")
    assert out.startswith("verification of funnel 'waterfall': 0 errors, 0 warnings")
    assert out.endswith("no problem found\n")


def test_cli_reports_json_and_fails_on_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bypass.toml"
    dump_funnel(bypass_funnel(), path)

    status, out, err = run(capsys, "verify", str(path), "--budget", str(BUDGET), "--format", "json")

    assert (status, err) == (1, "")
    data = json.loads(out)
    assert data["ok"] is False
    codes = {(f["code"], f["severity"], f["where"]) for f in data["findings"]}
    assert codes == {
        ("gate-bypass", "error", "transition fast_track: mql -> sql [if is_enterprise]"),
        ("guard-unavailable", "warning", "guard is_enterprise"),
    }


def test_cli_passes_with_warnings_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    funnel = presets.demand_waterfall().extend(
        add_transitions=[Transition("fast_track", "inquiry", "mql", guard="is_enterprise")]
    )
    path = tmp_path / "guarded.json"
    dump_funnel(funnel, path)

    status, out, _ = run(capsys, "verify", str(path), "--budget", str(BUDGET))

    assert status == 0
    assert "0 errors, 1 warning " in out
    assert "warning: [guard-unavailable] guard is_enterprise" in out


def test_cli_reports_owner_rules_with_a_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    funnel_path = tmp_path / "funnel.toml"
    dump_funnel(ownerless_mql(), funnel_path)
    owners_path = tmp_path / "owners.toml"
    owners_path.write_text(GAP_RULES, encoding="utf-8")

    status, out, _ = run(
        capsys, "verify", str(funnel_path), "--owners", str(owners_path), "--budget", "5"
    )

    assert status == 1
    assert "error: [owner-gap] stage mql" in out


def test_cli_reports_a_stage_without_owner_without_owner_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "funnel.toml"
    dump_funnel(ownerless_mql(), path)

    status, out, _ = run(capsys, "verify", str(path), "--budget", "5")

    assert status == 1
    assert "error: [owner-gap] stage mql" in out


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["verify", "waterfall", "--budget", "0"], 2, "--budget must be a positive integer"),
        (["verify", "waterfall", "--budget", "many"], 2, "invalid int value"),
        (["verify", "no_such_preset"], 1, "no preset named 'no_such_preset'"),
        (["verify", "waterfall", "--owners", "missing.toml"], 1, "cannot open"),
    ],
)
def test_cli_failures(
    capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    got, out, err = run(capsys, *argv)
    assert got == status
    assert out == ""
    assert message in err


# ---------------------------------------------------------------- a broken engine


def test_a_broken_engine_breaks_the_invariants(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutate the engine so that rebuilding forgets the score: both explorations notice."""
    rebuild = Engine.rebuild

    def forgetful(self: Engine) -> dict[str, Journey]:
        return {k: attrs.evolve(j, score=0.0) for k, j in rebuild(self).items()}

    monkeypatch.setattr(Engine, "rebuild", forgetful)

    report = verify_pipeline(default_pipeline(presets.seed()), budget=BUDGET)

    assert report.codes == {"invariant-violation"}
    mine, harness = report.by_code("invariant-violation")
    assert mine.where == "engine"
    assert mine.example == (
        "touch lead-0 'page_view' at +0h00",
        "-> rebuild() differs from the live journeys",
    )
    assert harness.where == "invariant rebuild_equals_live_state"
    assert "rebuilding from the log differs from the live state" in harness.what
    assert any(step.startswith("ingest(") for step in harness.example)
    assert harness.example[-1].startswith("-> rebuilding from the log differs")


# ---------------------------------------------------------------- codes, not messages


def test_owner_findings_come_from_problem_codes_not_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    funnel = ownerless_mql()
    rules = OwnerRules(
        defaults={s.name: s.owner for s in funnel.stages if s.owner is not None},
        overrides=(
            OwnerRule("sales", ("sal",), (Condition("employees", (10,), "gte"),)),
            OwnerRule("sales", ("sal",), (Condition("employees", (20,), "gte"),)),
            OwnerRule("partnrs", ("sql",)),
        ),
    )
    found = rules.problems(funnel)
    assert [(p.code, p.subject) for p in found] == [
        ("shadowed-override", "overrides[1]"),
        ("unknown-team", "overrides[2]"),
        ("no-owner", "mql"),
    ]
    reworded = [Problem(p.code, f"reworded {i}", p.subject) for i, p in enumerate(found)]
    monkeypatch.setattr(OwnerRules, "problems", lambda self, funnel: reworded)

    report = verify(funnel, rules, budget=5)

    assert [(f.code, f.where, f.what) for f in report.errors] == [
        ("owner-shadowed", "owner rules overrides[1]", "reworded 0"),
        ("owner-rules", "owner rules overrides[2]", "reworded 1"),
        ("owner-gap", "stage mql", "reworded 2"),
    ]
    assert report.by_code("not-explored")
    assert report.by_code("owner-gap")[0].example[-1] == (
        "a lead with attributes {} enters 'mql': no team owns it"
    )


def test_every_owner_problem_of_one_place_is_in_its_finding() -> None:
    rules = OwnerRules(
        defaults=dict(funnel_stage_owners(presets.seed())),
        overrides=(OwnerRule("partnrs", ("ghost",)),),
    )
    report = verify(presets.seed(), rules, budget=5)
    (finding,) = report.by_code("owner-rules")
    assert finding.where == "owner rules overrides[0]"
    assert "stage 'ghost' is not in funnel 'seed'" in finding.what
    assert "unknown team 'partnrs'" in finding.what


def funnel_stage_owners(funnel: Funnel) -> dict[str, str]:
    return {s.name: s.owner for s in funnel.stages if s.owner is not None}


def test_a_policy_failing_is_told_from_a_scorer_of_the_same_name() -> None:
    """The verifier used to look for "scor" in the error message to tell them apart."""
    pipeline = default_pipeline(presets.seed())
    points = pipeline.scorer

    def scorer(lead, at):  # type: ignore[no-untyped-def]
        return points(lead, at)  # type: ignore[misc]

    def policy(journey, score, touch):  # type: ignore[no-untyped-def]
        raise KeyError("score_field")

    scorer.__name__ = policy.__name__ = "hook"

    report = verify(presets.seed(), scorer=scorer, policy=policy, budget=5, harness=False)

    assert report.codes == {"policy-error"}
    assert report.by_code("policy-error")[0].where == "policy hook (policy)"


def test_structure_alone_needs_no_exploration() -> None:
    report = verify_structure(bypass_funnel())

    assert not report.explored
    assert report.examples == 0
    assert [f.code for f in report.findings] == ["unknown-hook", "gate-bypass"]
    assert str(report).splitlines()[0] == (
        "verification of funnel 'waterfall' (structure only): 2 errors, 0 warnings"
    )
    assert report.to_dict()["explored"] is False
    full = verify(bypass_funnel(), budget=BUDGET)
    assert full.explored
    assert full.to_dict()["explored"] is True
    assert set(report.findings) <= set(full.findings)


def test_a_skipped_exploration_is_a_warning() -> None:
    report = verify_structure(presets.seed(), not_explored="no Hypothesis here")
    assert report.ok
    (finding,) = report.warnings
    assert (finding.code, finding.where, finding.what) == (
        "not-explored",
        "funnel seed",
        "no Hypothesis here",
    )


def test_the_verifier_reexports_the_structural_names() -> None:
    from buyerjourney import _checks  # noqa: PLC0415
    from buyerjourney._adapters import files  # noqa: PLC0415
    from buyerjourney.testing import verify as module  # noqa: PLC0415

    for name in ("CODES", "DEFAULT_BUDGET", "Finding", "Severity", "VerificationReport"):
        assert getattr(module, name) is getattr(_checks, name)
    assert module.load_unchecked_owner_rules is files.load_unchecked_owner_rules


def test_the_verifier_reads_no_message_text() -> None:
    """No regular expression or substring test runs on a problem's or an error's text."""
    for module in ("_checks.py", "testing/verify.py"):
        source = (Path(verify.__code__.co_filename).parents[1] / module).read_text("utf-8")
        assert "in str(exc)" not in source
        assert ".message" not in source.replace("problem.message", "")
        assert 'startswith("gap' not in source
        assert 'startswith("policy:' not in source
        assert 'removeprefix("stages' not in source


# ---------------------------------------------------------------- declared gate bypasses


def self_serve(*, declared: bool) -> Funnel:
    """A product-led funnel: small accounts buy on their own, past the sales review."""
    from buyerjourney import Stage  # noqa: PLC0415

    return Funnel(
        "self_serve",
        [
            Stage("visitor", 10, owner="marketing", initial=True),
            Stage("trial", 20, owner="marketing"),
            Stage("sales_review", 30, owner="sales", gate=True),
            Stage("customer", 40, "won", owner="sales", terminal=True),
            Stage("lost", 0, "lost", owner="marketing"),
        ],
        [
            Transition("start_trial", "visitor", "trial"),
            Transition("upgrade", "trial", "sales_review", guard="is_enterprise"),
            Transition("upgrade", "trial", "customer", bypasses_gate=declared),
            Transition("accept", "sales_review", "customer"),
            Transition("reject", "sales_review", "trial", "backward"),
            Transition("drop", "visitor", "lost", "exit"),
            Transition("drop", "trial", "lost", "exit"),
        ],
    )


ENTERPRISE_HOOKS = Hooks({"is_enterprise": lambda ctx: ctx.attributes.get("employees", 0) >= 1000})


def test_an_undeclared_self_serve_buy_is_a_gate_bypass() -> None:
    report = verify_structure(self_serve(declared=False), hooks=ENTERPRISE_HOOKS)
    (finding,) = report.errors
    assert finding.code == "gate-bypass"
    assert "declare it with bypasses_gate=True" in finding.what


def test_a_declared_bypass_is_information_not_a_problem() -> None:
    """`buyerjourney verify` on the self-serve example used to exit 1 with [gate-bypass]."""
    report = verify_structure(self_serve(declared=True), hooks=ENTERPRISE_HOOKS)
    assert report.ok
    assert not report.warnings
    (info,) = report.infos
    assert info.severity is Severity.INFO
    assert info.code == "gate-bypass-declared"
    assert info.where == "transition upgrade: trial -> customer"
    assert info.example == ("start_trial: visitor -> trial", "upgrade: trial -> customer")
    assert str(report) == (
        "verification of funnel 'self_serve' (structure only): 0 errors, 0 warnings, 1 info\n"
        + str(info)
    )
    assert report.to_dict()["infos"] == 1


def test_a_declared_bypass_does_not_excuse_another_one() -> None:
    funnel = self_serve(declared=True).extend(
        add_transitions=[Transition("jump", "visitor", "customer")]
    )
    report = verify_structure(funnel, hooks=ENTERPRISE_HOOKS)
    assert [(f.code, f.where) for f in report.errors] == [
        ("gate-bypass", "transition jump: visitor -> customer")
    ]
    assert report.codes == {"gate-bypass", "gate-bypass-declared"}


def test_a_declaration_that_skips_no_gate_is_a_warning() -> None:
    funnel = presets.seed().extend(
        replace_transitions=[Transition("engage", "awareness", "consideration", bypasses_gate=True)]
    )
    report = verify_structure(funnel)
    assert report.ok
    (warning,) = report.warnings
    assert warning.code == "gate-bypass-unused"
    assert warning.where == "transition engage: awareness -> consideration"


def test_information_comes_after_warnings() -> None:
    funnel = self_serve(declared=True)
    report = verify(funnel, budget=5, missing_guards="warning")
    order = [f.severity for f in report.findings]
    assert order == sorted(order, key=lambda s: ["error", "warning", "info"].index(s.value))
    assert Severity.INFO in order
    assert Severity.WARNING in order
    assert report.ok


def test_cli_verify_accepts_a_declared_self_serve_buy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "self_serve.toml"
    dump_funnel(self_serve(declared=False), path)
    assert main(["verify", str(path), "--structure-only"]) == 1
    assert "[gate-bypass]" in capsys.readouterr().out
    dump_funnel(self_serve(declared=True), path)
    assert main(["verify", str(path), "--structure-only"]) == 0
    assert "info: [gate-bypass-declared]" in capsys.readouterr().out


# ---------------------------------------------------------------- every example of the docs

DOCS = Path(__file__).parents[1] / "docs"
README = Path(__file__).parents[1] / "README.md"


def _examples(schema: str) -> list[tuple[str, str, str]]:
    """``(place, format, text)`` of each TOML / JSON block of the docs holding *schema*."""
    found = []
    for path in [README, *sorted(DOCS.rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        parts = text.split("```")
        for i in range(1, len(parts), 2):
            info, _, body = parts[i].partition("\n")
            if info.strip() in ("toml", "json") and f'"{schema}"' in body:
                line = text[: text.index("```" + parts[i])].count("\n") + 1
                place = f"{path.relative_to(DOCS.parent).as_posix()}:{line}"
                found.append((place, info.strip(), body))
    return found


FUNNEL_EXAMPLES = _examples("buyerjourney.funnel/1")
PIPELINE_EXAMPLES = _examples("buyerjourney.pipeline/1")


def test_the_docs_have_funnel_and_pipeline_examples() -> None:
    assert len(FUNNEL_EXAMPLES) >= 1
    assert len(PIPELINE_EXAMPLES) >= 1


@pytest.mark.parametrize(
    ("place", "fmt", "text"), FUNNEL_EXAMPLES, ids=[e[0] for e in FUNNEL_EXAMPLES]
)
def test_every_funnel_example_of_the_docs_passes_verify(place: str, fmt: str, text: str) -> None:
    """As `buyerjourney verify FILE` does: guards unavailable, explored as never enabled."""
    from buyerjourney import loads_funnel  # noqa: PLC0415

    funnel = loads_funnel(text, format=fmt)  # type: ignore[arg-type]
    report = verify(funnel, budget=10, missing_guards="warning", harness=False)
    assert report.ok, f"{place}:\n{report}"


@pytest.mark.parametrize(
    ("place", "fmt", "text"), PIPELINE_EXAMPLES, ids=[e[0] for e in PIPELINE_EXAMPLES]
)
def test_every_pipeline_example_of_the_docs_passes_verify(
    place: str, fmt: str, text: str, tmp_path: Path
) -> None:
    """Funnel files a pipeline example names are the docs' funnel examples, by funnel name."""
    from buyerjourney import loads_funnel, loads_pipeline  # noqa: PLC0415

    for _, funnel_fmt, funnel_text in FUNNEL_EXAMPLES:
        funnel = loads_funnel(funnel_text, format=funnel_fmt)  # type: ignore[arg-type]
        dump_funnel(funnel, tmp_path / f"{funnel.name}.{funnel_fmt}")
    pipeline = loads_pipeline(text, format=fmt, directory=tmp_path, check_owners=False)  # type: ignore[arg-type]
    report = verify_pipeline(pipeline, budget=10, missing_guards="warning", harness=False)
    assert report.ok, f"{place}:\n{report}"


# ---------------------------------------------------------------- touch probes


def test_a_failing_touch_probe_is_shown_alone_though_the_probes_share_an_engine() -> None:
    """Every event the policy names is probed (on one engine, a lead each); the finding
    shows the one touch that fails, played on a fresh engine."""
    pipeline = default_pipeline(presets.demand_waterfall())

    def breaks_on_wins(lead, at):  # type: ignore[no-untyped-def]
        if lead.touches[-1].kind == "win":
            msg = "no points for a win"
            raise LookupError(msg)
        return pipeline.scorer(lead, at)  # type: ignore[misc]

    report = verify(
        pipeline.funnel,
        pipeline.owners,
        pipeline.hooks,
        breaks_on_wins,
        pipeline.policy,
        thresholds=pipeline.thresholds,
        budget=BUDGET,
        harness=False,
    )
    (failure,) = report.by_code("scorer-error")
    assert failure.example[0] == "touch lead-0 'win' at +0h00"
    assert len(failure.example) == 2
    assert "no points for a win" in failure.example[1]
    assert report.codes == {"scorer-error"}
