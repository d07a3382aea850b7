"""The one home of reach and shortest paths, and the two callers that use it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import buyerjourney
from buyerjourney import Direction, Funnel, Stage, StageKind, Transition, find_problems, presets
from buyerjourney._checks import verify_structure
from buyerjourney._core import graph
from buyerjourney._core.graph import reach, shortest_paths

PACKAGE = Path(buyerjourney.__file__).parent

DIAMOND = Funnel(
    "diamond",
    [
        Stage("start", 0, initial=True),
        Stage("left", 10),
        Stage("right", 10),
        Stage("won", 20, StageKind.WON, terminal=True),
        Stage("lost", 0, StageKind.LOST),
    ],
    [
        Transition("go_left", "start", "left"),
        Transition("go_right", "start", "right"),
        Transition("win", "right", "won"),
        Transition("win", "left", "won"),
        Transition("back", "left", "start", Direction.BACKWARD),
        Transition("lose", "start", "lost", Direction.EXIT),
    ],
)


def test_shortest_paths_take_the_first_move_found_on_a_tie() -> None:
    paths = shortest_paths(DIAMOND.transitions_from, "start")
    assert list(paths) == ["start", "left", "right", "lost", "won"]
    assert paths["start"] == ()
    assert [t.event for t in paths["won"]] == ["go_left", "win"]
    assert paths["won"][-1].source == "left"


def test_avoid_and_usable_prune_the_walk() -> None:
    around = shortest_paths(DIAMOND.transitions_from, "start", avoid={"left"})
    assert [t.source for t in around["won"]] == ["start", "right"]
    forward = reach(
        DIAMOND.transitions_from, "left", usable=lambda t: t.direction is Direction.FORWARD
    )
    assert forward == {"left", "won"}
    assert reach(DIAMOND.transitions_from, "left") == {"left", "start", "right", "won", "lost"}
    assert reach(DIAMOND.transitions_from, "won") == {"won"}


def test_moves_are_asked_once_per_stage_reached_and_every_move_is_seen() -> None:
    asked: list[str] = []
    seen: list[str] = []

    def moves(stage: str) -> list[Transition]:
        asked.append(stage)
        out = list(DIAMOND.transitions_from(stage))
        seen.extend(t.event for t in out)
        return out

    reach(moves, "start", avoid={"lost"})
    assert asked == ["start", "left", "right", "won"]
    assert seen == ["go_left", "go_right", "lose", "win", "back", "win"]


def test_find_problems_reports_what_the_walk_does_not_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stages = [*DIAMOND.stages, Stage("island", 30, StageKind.WON, terminal=True)]
    calls: list[str] = []

    def spy(moves: object, start: str, **options: object) -> set[str]:
        calls.append(start)
        return graph.reach(moves, start, **options)  # type: ignore[arg-type]

    monkeypatch.setattr("buyerjourney._core.funnel.reach", spy)
    problems = find_problems(stages, DIAMOND.transitions)
    assert calls == ["start"]
    assert [(p.code, p.subject) for p in problems] == [("unreachable-stage", "island")]


def test_the_verifier_walks_with_the_same_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_tree = graph.PathTree
    real_back = graph.backward_reach

    class SpyTree(real_tree):  # type: ignore[misc, valid-type]
        def __init__(self, moves: object, start: str, **options: object) -> None:
            calls.append(f"paths {start}")
            super().__init__(moves, start, **options)  # type: ignore[arg-type]

    def spy_back(funnel: object, targets: object) -> set[str]:
        calls.append("backward")
        return real_back(funnel, targets)  # type: ignore[arg-type]

    monkeypatch.setattr("buyerjourney._checks.PathTree", SpyTree)
    monkeypatch.setattr("buyerjourney._checks.backward_reach", spy_back)
    report = verify_structure(presets.demand_waterfall())
    assert report.ok
    assert "paths inquiry" in calls  # the example paths, and the gate-bypass search
    assert "backward" in calls  # the loops with no way out


def _imports_and_names(module: str) -> tuple[set[str], set[str]]:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    imported = {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    return imported, names


@pytest.mark.parametrize("module", ["_core/funnel.py", "_checks.py", "testing/verify.py"])
def test_no_other_breadth_first_search_is_left(module: str) -> None:
    imported, names = _imports_and_names(module)
    assert "buyerjourney._core.graph" in imported
    assert "deque" not in names
    assert "popleft" not in names


# ---------------------------------------------------------------- linear paths


def _chain(n: int) -> Funnel:
    stages = [Stage(f"s{i}", i, initial=i == 0) for i in range(n - 1)]
    stages.append(Stage(f"s{n - 1}", n - 1, StageKind.WON, terminal=True))
    return Funnel(
        f"chain{n}", stages, [Transition(f"e{i}", f"s{i}", f"s{i + 1}") for i in range(n - 1)]
    )


def test_shortest_paths_are_a_mapping_built_on_lookup() -> None:
    paths = shortest_paths(DIAMOND.transitions_from, "start")
    assert len(paths) == 5
    assert dict(paths) == {stage: paths[stage] for stage in paths}
    assert "island" not in paths
    with pytest.raises(KeyError):
        paths["island"]
    assert paths.path("island") == ()  # the tree's own lookup: nothing for a stage not reached


def test_a_long_chain_copies_no_path_until_one_is_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Giving every stage its whole path is n²/2 moves copied; the tree keeps one per stage."""
    funnel = _chain(3000)
    copied: list[int] = []
    real_path = graph.PathTree.path

    def counting(self: graph.PathTree[Transition], stage: str) -> tuple[Transition, ...]:
        path = real_path(self, stage)
        copied.append(len(path))
        return path

    monkeypatch.setattr(graph.PathTree, "path", counting)
    paths = shortest_paths(funnel.transitions_from, "s0")
    assert len(paths) == 3000
    assert copied == []
    assert [t.event for t in paths["s3"]] == ["e0", "e1", "e2"]
    assert len(paths["s2999"]) == 2999
    assert copied == [3, 2999]
    assert reach(funnel.transitions_from, "s0") == set(funnel.stage_names)
    assert copied == [3, 2999]  # reach keeps no path at all


def test_a_tree_may_start_from_several_stages_and_stop_at_a_depth() -> None:
    funnel = _chain(10)
    near = graph.PathTree(funnel.transitions_from, "s6", also=["s1", "s6"], limit=2)
    assert list(near) == ["s6", "s1", "s7", "s2", "s8", "s3"]
    assert near.depth["s3"] == 2
    assert near.origin("s3") == "s1"
    assert near.origin("s8") == "s6"
    assert near.origin("s9") is None
    assert [t.event for t in near.path("s3")] == ["e1", "e2"]
    assert "s4" not in near  # beyond the limit
    assert "s9" not in near
