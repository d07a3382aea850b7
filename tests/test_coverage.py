"""Coverage of the harness and the verifier, steering, switching rules off, and scaling.

The harness and the verifier report which stages and transitions their runs
reached (and how often), steer their runs toward what was not reached yet,
let users switch built-in rules off, keep Hypothesis's files in the user's
project, and walk a funnel's graph a number of times linear in its size.
"""

from __future__ import annotations

import gc
import json
import random
import weakref
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import configuration, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import InvalidArgument

from buyerjourney import Context, Engine, Funnel, Hooks, Stage, Transition, presets
from buyerjourney._checks import DEFAULT_BUDGET, Coverage, label, verify_structure
from buyerjourney._core import table
from buyerjourney._core.funnel import Funnel as CoreFunnel
from buyerjourney._core.records import RecordKind
from buyerjourney._pipeline import default_pipeline
from buyerjourney.errors import TransitionNotAllowed
from buyerjourney.testing import pipeline_machine, run_pipeline_machine
from buyerjourney.testing.harness import BUILTIN_RULES, WALK_MOVES, PipelineMachine
from buyerjourney.testing.verify import project_root, verify, verify_pipeline


def chain(n: int, *, trial: bool = False) -> Funnel:
    """A linear chain of *n* stages (the last one won), each with an exit to ``lost``.

    Stage ``s{n//2}`` is a gate (the owning team changes there) with a recycle
    back; with *trial*, ``s{n-3}`` also branches to a ``trial`` stage that
    leads to the won stage.
    """
    half = n // 2
    stages = [
        Stage(
            f"s{i}",
            i,
            owner="marketing" if i < half else "sales",
            gate=i == half,
            initial=i == 0,
        )
        for i in range(n - 1)
    ]
    stages.append(Stage(f"s{n - 1}", n - 1, owner="sales", kind="won", terminal=True))
    stages.append(Stage("lost", 0, owner="sales", kind="lost", terminal=True))
    moves = [Transition(f"e{i}", f"s{i}", f"s{i + 1}") for i in range(n - 1)]
    moves.append(Transition("recycle", f"s{half}", f"s{half - 1}", "backward"))
    moves += [Transition("lose", f"s{i}", "lost", "exit") for i in range(n - 1)]
    if trial:
        stages.append(Stage("trial", n - 2, owner="sales"))
        moves += [
            Transition("start_trial", f"s{n - 3}", "trial"),
            Transition("buy", "trial", f"s{n - 1}"),
            Transition("lose", "trial", "lost", "exit"),
        ]
    return Funnel(f"chain{n}", stages, moves)


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of ``Funnel.transitions_from`` (one step of a graph walk), by stage."""
    calls: list[str] = []
    original = CoreFunnel.transitions_from

    def spy(self: Funnel, stage: str) -> tuple[Transition, ...]:
        calls.append(stage)
        return original(self, stage)

    monkeypatch.setattr(CoreFunnel, "transitions_from", spy)
    return calls


def test_the_structural_checks_walk_a_long_chain_a_linear_number_of_times(
    walks: list[str],
) -> None:
    funnel = chain(2000)
    walks.clear()
    report = verify_structure(funnel)
    assert report.ok, str(report)
    # A quadratic check (a walk from every stage) looks at ~2,000,000 stages here.
    assert len(walks) <= 10 * len(funnel.stage_names)


def test_loops_and_won_paths_are_still_found_on_a_long_chain() -> None:
    base = chain(300)
    trapped = base.extend(
        add_stages=[Stage("limbo_a", 5, owner="sales"), Stage("limbo_b", 6, owner="sales")],
        add_transitions=[
            Transition("drift", "s3", "limbo_a"),
            Transition("spin", "limbo_a", "limbo_b"),
            Transition("spin_back", "limbo_b", "limbo_a", "backward"),
        ],
    )
    report = verify_structure(trapped)
    (loop,) = report.by_code("no-way-out")
    assert loop.where == "stages limbo_a, limbo_b"
    assert loop.example[-1].startswith("drift: s3 -> limbo_a")


# ---------------------------------------------------------------- the harness


DEEP_FUNNELS = {
    "seed": presets.seed,
    "hubspot": presets.hubspot_lifecycle,
    "waterfall": presets.demand_waterfall,
    "chain10 with a trial": lambda: chain(10, trial=True),
}


def run_harness(funnel: Funnel, examples: int = DEFAULT_BUDGET, **options: object) -> Coverage:
    machine = pipeline_machine(default_pipeline(funnel), **options)  # type: ignore[arg-type]
    chosen = settings(
        machine.TestCase.settings, max_examples=examples, derandomize=True, database=None
    )
    coverage = run_pipeline_machine(machine, settings=chosen)
    assert coverage is not None
    return coverage


@pytest.mark.parametrize("name", list(DEEP_FUNNELS))
def test_the_harness_reaches_every_reachable_stage_at_the_default_budget(name: str) -> None:
    coverage = run_harness(DEEP_FUNNELS[name]())
    assert coverage.complete, str(coverage)
    assert coverage.runs >= DEFAULT_BUDGET


def _machine(funnel: Funnel) -> PipelineMachine:
    """A machine of *funnel*'s default pipeline with journeys for lead-1 and lead-2, in s0."""
    machine = pipeline_machine(default_pipeline(funnel))()
    for lead in ("lead-1", "lead-2"):
        machine.ingest(lead, "page_view", {}, timedelta(0))
    return machine


def _taken(machine: PipelineMachine, lead: str | None = None) -> list[str]:
    labels = {(t.source, t.event, t.target): label(t) for t in machine.plan.funnel.transitions}
    return [
        labels[(r.source, r.event, r.target)]
        for r in machine.records
        if r.kind is RecordKind.TRANSITION and lead in (None, r.lead_id)
    ]


def test_a_walk_goes_to_its_goal_however_deep_and_takes_it() -> None:
    machine = _machine(chain(10, trial=True))
    machine.walk("lead-1", "start_trial: s7 -> trial", random.Random(0))
    taken = _taken(machine, "lead-1")
    assert taken[:8] == [f"e{i}: s{i} -> s{i + 1}" for i in range(7)] + ["start_trial: s7 -> trial"]
    assert machine.engine.journey("lead-1").stage == "s9"  # then on toward the won stage


def test_each_walk_takes_a_transition_the_run_has_not_taken_into_a_stage_not_entered() -> None:
    machine = _machine(chain(10, trial=True))
    goal = "start_trial: s7 -> trial"
    machine.walk("lead-1", goal, random.Random(0))
    entered = {r.target for r in machine.records if r.kind is RecordKind.TRANSITION}
    before = set(_taken(machine))
    machine.walk("lead-2", goal, random.Random(0))  # the same goal, taken already
    new = [t for t in _taken(machine, "lead-2") if t not in before]
    assert new
    assert any(t.rsplit("-> ", 1)[1] not in entered for t in new)


def test_a_walk_moves_another_journey_when_the_drawn_one_has_ended() -> None:
    machine = _machine(chain(10, trial=True))
    machine.walk("lead-1", "e8: s8 -> s9", random.Random(0))
    assert machine.engine.journey("lead-1").stage == "s9"
    machine.walk("lead-1", "lose: s3 -> lost", random.Random(0))
    assert machine.engine.journey("lead-1").stage == "s9"
    # lead-2 is walked instead, to the one stage not entered yet (exits come last).
    assert "start_trial: s7 -> trial" in _taken(machine, "lead-2")


def test_a_walk_costs_the_same_on_a_funnel_of_any_size(walks: list[str]) -> None:
    seen = []
    for n in (50, 3000):
        machine = _machine(chain(n))
        walks.clear()
        machine.walk("lead-1", label(machine.plan.funnel.transitions[-1]), random.Random(0))
        seen.append(len(walks))
        assert len(_taken(machine, "lead-1")) >= WALK_MOVES // 2
    # The walk looks only at what lies within its moves of the journeys: not n stages.
    assert seen[1] < 2 * seen[0]
    assert seen[1] < 20 * WALK_MOVES


def test_the_harness_reports_stages_and_transitions_with_counts() -> None:
    funnel = presets.demand_waterfall()
    coverage = run_harness(funnel, examples=10)
    assert list(coverage.stages) == list(funnel.stage_names)
    assert coverage.stages["inquiry"] > 0
    assert "qualify: inquiry -> mql" in coverage.transitions
    data = coverage.to_dict()
    assert data["runs"] == coverage.runs
    assert data["stages"] == dict(coverage.stages)
    assert set(data) >= {"stages", "transitions", "reached", "unreached", "complete"}
    assert str(coverage).startswith("coverage: ")


def test_switched_off_rules_are_not_run() -> None:
    machine = pipeline_machine(presets.seed(), disabled=["walk", "send", "override"])
    rules = {r.function.__name__ for r in machine.setup_state().rules}
    assert not rules & {"walk", "send", "override"}
    assert "ingest" in rules


def test_switched_off_invariants_are_not_checked() -> None:
    machine = pipeline_machine(presets.seed(), disabled=["rebuild_equals_live_state"])
    names = {i.function.__name__ for i in machine.setup_state().invariants}
    assert "rebuild_equals_live_state" not in names
    assert "log_is_append_only" in names
    run_harness(presets.seed(), examples=5, disabled=["rebuild_equals_live_state"])


def test_switching_off_an_unknown_rule_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="not built-in rules"):
        pipeline_machine(presets.seed(), disabled=["no_such_rule"])
    assert "walk" in BUILTIN_RULES


# ---------------------------------------------------------------- the verifier


def test_the_verify_report_shows_its_coverage_in_text_and_json() -> None:
    report = verify(presets.demand_waterfall(), budget=5)
    assert report.coverage is not None
    assert report.coverage.stages["inquiry"] > 0
    assert "\ncoverage: " in str(report)
    data = report.to_dict()
    assert data["coverage"]["stages"]["inquiry"] == report.coverage.stages["inquiry"]
    assert json.loads(json.dumps(data))["coverage"]["runs"] == report.coverage.runs


def test_the_structural_report_has_no_coverage() -> None:
    report = verify_structure(presets.seed())
    assert report.coverage is None
    assert report.to_dict()["coverage"] is None


@pytest.mark.parametrize("name", list(DEEP_FUNNELS))
def test_verify_reaches_every_reachable_stage_at_the_default_budget(name: str) -> None:
    report = verify_pipeline(default_pipeline(DEEP_FUNNELS[name]()))
    assert report.coverage is not None
    assert report.coverage.complete, str(report.coverage)
    assert not report.by_code("stage-never-reached")


def test_verify_builds_as_many_engines_for_a_long_funnel_as_for_a_short_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The touch probes (one per event the policy names) share one engine, a lead each."""
    built: list[int] = []
    real_init = Engine.__init__

    def counting(self: Engine, funnel: Funnel, **options: object) -> None:
        built.append(len(funnel.stages))
        real_init(self, funnel, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "__init__", counting)
    counts = []
    for n in (40, 160):
        built.clear()
        report = verify_pipeline(default_pipeline(chain(n, trial=True)), budget=5, harness=False)
        assert report.ok, str(report)
        counts.append(len(built))
    assert counts[1] <= counts[0]
    assert counts[0] < 40  # a dozen: the probes, then the runs of the search and their replays


def test_engines_of_one_funnel_share_its_compiled_table() -> None:
    funnel = chain(200)
    first = Engine(funnel)
    second = table.compile_funnel(funnel)
    shape = weakref.ref(table._shape_of(funnel))
    assert second.table is table.compile_funnel(funnel).table
    assert second.stage_index is table.compile_funnel(funnel).stage_index
    assert first.funnel is funnel
    del first, second, funnel
    gc.collect()
    assert shape() is None  # gone with its funnel


def test_each_compiled_table_binds_its_own_guards() -> None:
    funnel = chain(20).extend(add_transitions=[Transition("skip", "s1", "s3", guard="vip")])
    yes = table.compile_funnel(funnel, Hooks({"vip": lambda ctx: True}))
    no = table.compile_funnel(funnel, Hooks({"vip": lambda ctx: False}))
    assert yes.step("s1", "skip").target == "s3"
    with pytest.raises(TransitionNotAllowed, match="vip"):
        no.step("s1", "skip")
    assert yes.stage_index is no.stage_index
    assert yes.table[(1, 1)] is no.table[(1, 1)]  # e1 from s1: unguarded, shared as it is


# ---------------------------------------------------------------- Hypothesis's files


def _home_seen(seen: list[Path]) -> Hooks:
    def note_home(ctx: Context) -> bool:
        seen.append(Path(configuration.storage_directory(intent_to_write=False).path))
        return True

    return Hooks({"note_home": note_home})


def _guarded() -> Funnel:
    return presets.seed().extend(
        add_transitions=[
            Transition("fast_track", "awareness", "conversion", guard="note_home"),
        ]
    )


def test_hypothesis_files_go_to_the_project_root_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'mine'\n", encoding="utf-8")
    deep = tmp_path / "funnels" / "sales"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    seen: list[Path] = []
    verify(_guarded(), hooks=_home_seen(seen), budget=3, harness=False)
    assert seen
    assert {p.resolve() for p in seen} == {(tmp_path / ".hypothesis").resolve()}
    assert project_root(deep / "funnel.toml") == tmp_path.resolve()
    assert not (deep / ".hypothesis").exists()


def test_a_funnel_file_names_the_project(tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / ".git").mkdir()
    seen: list[Path] = []
    verify(
        _guarded(),
        hooks=_home_seen(seen),
        budget=3,
        harness=False,
        project=other / "src" / "f.toml",
    )
    assert {p.resolve() for p in seen} == {(other / ".hypothesis").resolve()}


def test_a_database_path_is_used(tmp_path: Path) -> None:
    used: list[object] = []
    original = settings.__init__

    def spy(self: settings, *args: object, **kwargs: object) -> None:
        if "database" in kwargs:
            used.append(kwargs["database"])
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    target = tmp_path / "examples"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settings, "__init__", spy)
        verify(presets.seed(), budget=3, harness=False, derandomize=False, database=target)
    databases = [d for d in used if isinstance(d, DirectoryBasedExampleDatabase)]
    assert databases
    assert all(Path(d.path) == target for d in databases)
