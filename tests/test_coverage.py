"""Coverage of the harness and the verifier, steering, switching rules off, and scaling.

The harness and the verifier report which stages and transitions their runs
reached (and how often), steer their runs toward what was not reached yet,
let users switch built-in rules off, keep Hypothesis's files in the user's
project, and walk a funnel's graph a number of times linear in its size.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from buyerjourney import Funnel, Stage, Transition
from buyerjourney._checks import verify_structure
from buyerjourney._core.funnel import Funnel as CoreFunnel


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
def walks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every call of ``Funnel.transitions_from`` (one step of a graph walk), by stage."""
    calls: list[str] = []
    original = CoreFunnel.transitions_from

    def spy(self: Funnel, stage: str) -> tuple[Transition, ...]:
        calls.append(stage)
        return original(self, stage)

    monkeypatch.setattr(CoreFunnel, "transitions_from", spy)
    yield calls


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
