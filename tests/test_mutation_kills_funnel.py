"""Exact validation reports of ``buyerjourney._core.funnel``, found missing by mutation testing.

``find_problems`` documents each problem as a stable code, a message that says what is
wrong and what to do, and the stage or event concerned. The other funnel tests check
the codes; these check the whole problem (message and subject included), the rank
boundaries of the direction rules, the exact type errors, and the problems that
``Funnel.extend`` reports. See docs/mutation.md.
"""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from buyerjourney._core.funnel import (
    RESERVED_NAMES,
    Direction,
    Funnel,
    Problem,
    Stage,
    StageKind,
    Transition,
    _check_items,
    _reserved_names,
    find_problems,
)
from buyerjourney.errors import InvalidFunnel

FWD, BACK, EXIT = Direction.FORWARD, Direction.BACKWARD, Direction.EXIT

A = Stage("a", 10, initial=True)
WON = Stage("won", 20, StageKind.WON, terminal=True)
LOST = Stage("lost", 0, StageKind.LOST)
WIN = Transition("win", "a", "won")


def problems_of(code: str, stages: list[Stage], transitions: list[Transition]) -> list[Problem]:
    """The problems with *code* that ``find_problems`` reports, in report order."""
    return [p for p in find_problems(stages, transitions) if p.code == code]


def test_the_base_funnel_of_these_tests_is_valid() -> None:
    assert find_problems([A, WON, LOST], [WIN, Transition("lose", "a", "lost", EXIT)]) == []


def test_no_stages_is_the_only_problem_of_an_empty_definition() -> None:
    assert find_problems([], []) == [Problem("no-stages", "a funnel needs at least one stage")]


NAME_CASES = [
    pytest.param(
        "class",
        Problem(
            "invalid-event-name",
            "event name 'class' is not a Python identifier, or is a keyword; "
            "use letters, digits and _ (not starting with a digit)",
            "class",
        ),
        id="keyword",
    ),
    pytest.param(
        "_go",
        Problem("invalid-event-name", "event name '_go' must not start with '_'", "_go"),
        id="underscore",
    ),
    pytest.param(
        "send",
        Problem(
            "reserved-event-name",
            "event name 'send' collides with a python-statemachine attribute; rename it",
            "send",
        ),
        id="reserved",
    ),
]


@pytest.mark.parametrize(("event", "expected"), NAME_CASES)
def test_event_name_problems_are_reported_exactly(event: str, expected: Problem) -> None:
    assert find_problems([A, WON], [Transition(event, "a", "won")]) == [expected]


def test_stage_name_problems_name_the_stage() -> None:
    stages = [A, WON, Stage("2x", 0, StageKind.LOST)]
    transitions = [WIN, Transition("lose", "a", "2x", EXIT)]
    assert problems_of("invalid-stage-name", stages, transitions) == [
        Problem(
            "invalid-stage-name",
            "stage name '2x' is not a Python identifier, or is a keyword; "
            "use letters, digits and _ (not starting with a digit)",
            "2x",
        )
    ]
    stages[2] = Stage("_x", 0, StageKind.LOST)
    transitions[1] = Transition("lose", "a", "_x", EXIT)
    assert find_problems(stages, transitions) == [
        Problem("invalid-stage-name", "stage name '_x' must not start with '_'", "_x")
    ]
    stages[2] = Stage("model", 0, StageKind.LOST)
    transitions[1] = Transition("lose", "a", "model", EXIT)
    assert find_problems(stages, transitions) == [
        Problem(
            "reserved-stage-name",
            "stage name 'model' collides with a python-statemachine attribute; rename it",
            "model",
        )
    ]


STAGE_CASES = [
    pytest.param(
        [A, WON, Stage("won", 20, StageKind.WON, terminal=True)],
        [WIN],
        Problem("duplicate-stage", "stage 'won' is defined twice", "won"),
        id="duplicate-stage",
    ),
    pytest.param(
        [A, Stage("won", 20, StageKind.WON, terminal=True, owner="key accounts")],
        [WIN],
        Problem("invalid-owner", "stage 'won' has owner 'key accounts', not an identifier", "won"),
        id="invalid-owner",
    ),
    pytest.param(
        [A, Stage("won", 20, StageKind.WON, terminal=True, sla=timedelta(days=1))],
        [WIN],
        Problem(
            "sla-on-terminal",
            "terminal stage 'won' has an SLA that every journey ending there would breach; "
            "remove the SLA or make the stage non-terminal",
            "won",
        ),
        id="sla-on-terminal",
    ),
    pytest.param(
        [A, WON, Stage("lost", -1, StageKind.LOST)],
        [WIN, Transition("lose", "a", "lost", EXIT)],
        # The only problem without a subject: the rank is the point, not a name.
        Problem("negative-rank", "stage 'lost' has rank -1 < 0"),
        id="negative-rank",
    ),
    pytest.param(
        [Stage("a", 10), WON],
        [WIN],
        Problem("no-initial-stage", "no stage is marked initial=True; mark exactly one"),
        id="no-initial-stage",
    ),
    pytest.param(
        [A, Stage("b", 15, initial=True), WON],
        [WIN, Transition("win", "b", "won")],
        Problem("several-initial-stages", "stages a, b are all marked initial; keep exactly one"),
        id="several-initial-stages",
    ),
]


@pytest.mark.parametrize(("stages", "transitions", "expected"), STAGE_CASES)
def test_stage_problems_are_reported_exactly(
    stages: list[Stage], transitions: list[Transition], expected: Problem
) -> None:
    assert find_problems(stages, transitions) == [expected]


def test_a_gate_that_starts_the_funnel_is_reported_with_its_reason() -> None:
    gate = Stage("a", 10, initial=True, gate=True)
    assert problems_of("invalid-gate", [gate, WON], [WIN]) == [
        Problem(
            "invalid-gate",
            "gate stage 'a' cannot be initial or terminal: a gate is entered by a handoff "
            "and left by acceptance or rejection",
            "a",
        )
    ]


TRANSITION_CASES = [
    pytest.param(
        [Transition("win", "a", "won", guard="")],
        Problem("invalid-guard", "win: a -> won: guard name is empty", "win"),
        id="invalid-guard",
    ),
    pytest.param(
        [
            Transition("win", "a", "won", guard="ready"),
            Transition("win", "a", "won", guard="ready"),
        ],
        Problem("duplicate-transition", "win: a -> won [if ready] is defined twice", "win"),
        id="duplicate-transition-label-shows-the-guard",
    ),
    pytest.param(
        [WIN, WIN],
        Problem("duplicate-transition", "win: a -> won is defined twice", "win"),
        id="duplicate-transition-label-without-guard",
    ),
    pytest.param(
        [WIN, Transition("stay", "a", "a")],
        Problem("self-transition", "stay: a -> a does not change the stage", "stay"),
        id="self-transition",
    ),
    pytest.param(
        [Transition("win", "a", "won", EXIT)],
        Problem(
            "exit-to-open-stage",
            "win: a -> won is an exit but 'won' is won, not lost or disqualified",
            "win",
        ),
        id="exit-to-open-stage",
    ),
    pytest.param(
        [WIN, Transition("lose", "a", "lost")],
        Problem(
            "unmarked-exit",
            "lose: a -> lost leads to lost stage 'lost'; declare it with direction='exit'",
            "lose",
        ),
        id="unmarked-exit",
    ),
    pytest.param(
        [WIN, Transition("reopen", "won", "a", BACK)],
        Problem(
            "exit-from-terminal",
            "terminal stage 'won' has transitions out (reopen); remove them or set terminal=False",
            "won",
        ),
        id="exit-from-terminal",
    ),
]


@pytest.mark.parametrize(("transitions", "expected"), TRANSITION_CASES)
def test_transition_problems_are_reported_exactly(
    transitions: list[Transition], expected: Problem
) -> None:
    stages = [A, WON, LOST]
    if not any(t.target == "lost" for t in transitions):
        transitions = [*transitions, Transition("lose", "a", "lost", EXIT)]
    assert find_problems(stages, transitions) == [expected]


def test_an_unknown_stage_is_the_subject_of_its_problem() -> None:
    assert find_problems([A, WON], [WIN, Transition("go", "a", "nowhere")]) == [
        Problem("unknown-stage", "go: a -> nowhere refers to undefined stage 'nowhere'", "nowhere")
    ]


def test_terminal_transitions_out_are_listed_sorted_and_comma_separated() -> None:
    transitions = [
        WIN,
        Transition("zreopen", "won", "a", BACK),
        Transition("again", "won", "a", BACK),
    ]
    assert find_problems([A, WON], transitions) == [
        Problem(
            "exit-from-terminal",
            "terminal stage 'won' has transitions out (again, zreopen); "
            "remove them or set terminal=False",
            "won",
        )
    ]


def test_forward_needs_a_strictly_higher_rank() -> None:
    same = [A, Stage("b", 10), WON]
    transitions = [Transition("go", "a", "b"), Transition("win", "b", "won")]
    assert find_problems(same, transitions) == [
        Problem(
            "forward-not-forward",
            "go: a -> b is forward but goes from rank 10 to 10; "
            "declare it backward or fix the ranks",
            "go",
        )
    ]
    one_higher = [A, Stage("b", 11), WON]
    assert find_problems(one_higher, transitions) == []


def test_backward_needs_a_strictly_lower_rank() -> None:
    transitions = [
        Transition("go", "a", "b"),
        Transition("win", "b", "won"),
        Transition("back", "won2", "b", BACK),
        Transition("jump", "b", "won2"),
    ]
    same = [A, Stage("b", 15), Stage("won2", 15, terminal=False), WON]
    found = find_problems(same, transitions)
    assert (
        Problem(
            "backward-not-backward",
            "back: won2 -> b is backward but goes from rank 15 to 15",
            "back",
        )
        in found
    )
    one_lower = [A, Stage("b", 14), Stage("won2", 15, terminal=False), WON]
    assert [p for p in find_problems(one_lower, transitions) if "backward" in p.code] == []


def test_an_event_named_like_a_stage_is_reported() -> None:
    stages = [A, Stage("b", 15), WON]
    transitions = [Transition("b", "a", "b"), Transition("win", "b", "won")]
    assert find_problems(stages, transitions) == [
        Problem(
            "event-is-stage-name", "event 'b' has the same name as a stage; rename one of them", "b"
        )
    ]


AMBIGUITY_STAGES = [A, Stage("b", 15), Stage("c", 16), WON]
AMBIGUITY_TAIL = [Transition("win", "b", "won"), Transition("win", "c", "won")]


def test_two_unguarded_alternatives_are_ambiguous() -> None:
    transitions = [Transition("go", "a", "b"), Transition("go", "a", "c"), *AMBIGUITY_TAIL]
    assert find_problems(AMBIGUITY_STAGES, transitions) == [
        Problem(
            "ambiguous-event",
            "event 'go' from 'a' leads to b, c with no guard to choose; "
            "add guards to all but the last",
            "go",
        )
    ]


def test_an_unguarded_alternative_before_a_guarded_one_shadows_it() -> None:
    transitions = [
        Transition("go", "a", "b"),
        Transition("go", "a", "c", guard="hot"),
        *AMBIGUITY_TAIL,
    ]
    assert find_problems(AMBIGUITY_STAGES, transitions) == [
        Problem(
            "shadowed-transition",
            "event 'go' from 'a': the unguarded transition to 'b' comes before guarded ones, "
            "which can never be taken; move it last",
            "go",
        )
    ]


def test_one_guard_on_two_alternatives_is_ambiguous() -> None:
    transitions = [
        Transition("go", "a", "b", guard="hot"),
        Transition("go", "a", "c", guard="hot"),
        Transition("go", "a", "won"),
        *AMBIGUITY_TAIL,
    ]
    assert find_problems(AMBIGUITY_STAGES, transitions) == [
        Problem(
            "ambiguous-event",
            "event 'go' from 'a' uses guard 'hot' on several transitions; "
            "only the first could ever be taken",
            "go",
        )
    ]


def test_a_dead_end_and_a_gate_without_recycle_are_reported_exactly() -> None:
    stages = [A, Stage("b", 15, gate=True), WON]
    transitions = [WIN, Transition("go", "a", "b")]
    assert find_problems(stages, transitions) == [
        Problem(
            "dead-end",
            "stage 'b' has no transition out but is not terminal; "
            "add a transition or set terminal=True",
            "b",
        ),
        Problem(
            "gate-without-recycle",
            "gate stage 'b' needs a backward transition out, "
            "used when the receiving team rejects a handoff",
            "b",
        ),
    ]


def test_a_duplicated_stage_is_checked_for_dead_ends_once() -> None:
    # Two equal but distinct objects: only the first one defines the stage.
    stages = [A, Stage("b", 15), Stage("b", 15), WON]
    transitions = [WIN, Transition("go", "a", "b")]
    assert [p.code for p in find_problems(stages, transitions)] == ["duplicate-stage", "dead-end"]


def test_an_unreachable_stage_names_the_initial_stage() -> None:
    stages = [A, Stage("island", 15, terminal=True), WON]
    assert find_problems(stages, [WIN]) == [
        Problem(
            "unreachable-stage",
            "stage 'island' cannot be reached from initial stage 'a'; "
            "add a transition into it or remove it",
            "island",
        )
    ]


def test_field_type_errors_name_the_received_type() -> None:
    with pytest.raises(TypeError) as info:
        Stage("a", "10")  # type: ignore[arg-type]
    assert str(info.value) == "'rank' must be an int (got '10' that is a str)"
    with pytest.raises(TypeError) as info:
        Stage("a", True)
    assert str(info.value) == "'rank' must be an int (got True that is a bool)"


def test_funnel_items_are_type_checked_with_their_index() -> None:
    with pytest.raises(TypeError) as info:
        Funnel("f", [A, WON, "lost"], [WIN])  # type: ignore[list-item]
    assert str(info.value) == "'stages[2]' must be a Stage (got 'lost' that is a str)"
    with pytest.raises(TypeError) as info:
        Funnel("f", [A, WON], [WIN, 3])  # type: ignore[list-item]
    assert str(info.value) == "'transitions[1]' must be a Transition (got 3 that is a int)"


def test_the_item_validator_factory_accepts_its_kind_and_rejects_others() -> None:
    # Funnel builds its validators at import time; build one here so that the
    # factory itself is exercised (and mutated) at test time.
    check = _check_items(Stage)
    field = attrs.fields(Funnel).stages
    assert check(None, field, (A, WON)) is None
    assert check(None, field, ()) is None
    with pytest.raises(TypeError) as info:
        check(None, field, (A, WON, 3))
    assert str(info.value) == "'stages[2]' must be a Stage (got 3 that is a int)"


def test_reserved_names_are_the_machine_api_and_the_callback_arguments() -> None:
    from statemachine import State, StateMachine  # noqa: PLC0415

    names = _reserved_names()
    assert names == RESERVED_NAMES
    api = {n for n in dir(StateMachine) if not n.startswith("__")}
    api |= {n for n in dir(State) if not n.startswith("__")}
    extra = {"model", "state", "ctx", "reason", "journey", "stage", "funnel", "legal_events"}
    assert names == api | extra
    assert not [n for n in names if n.startswith("__")]
    assert {"send", "current_state", "to", "final", "_setup"} <= names


def test_extend_reports_each_unknown_name_exactly() -> None:
    base = Funnel("base", [A, WON, LOST], [WIN, Transition("lose", "a", "lost", EXIT)])
    with pytest.raises(InvalidFunnel) as info:
        base.extend(
            name="renamed",
            replace_stages=[Stage("zz", 5)],
            replace_transitions=[Transition("fly", "a", "won", guard="ready")],
            remove_transitions=["nope", Transition("jump", "a", "won", guard="g")],
        )
    assert info.value.funnel_name == "renamed"
    assert info.value.problems == (
        Problem(
            "unknown-stage",
            "cannot replace or remove stage 'zz': the funnel has no such stage",
            "zz",
        ),
        Problem(
            "unknown-transition",
            "cannot replace transition 'fly' from 'a' (guard 'ready'): no such transition",
            "fly",
        ),
        Problem("unknown-transition", "cannot remove event 'nope': no such event", "nope"),
        Problem(
            "unknown-transition",
            "cannot remove jump: a -> won [if g]: no such transition",
            "jump",
        ),
    )


def test_extend_keeps_the_name_when_none_is_given() -> None:
    base = Funnel("base", [A, WON], [WIN])
    with pytest.raises(InvalidFunnel) as info:
        base.extend(remove_stages=["zz"])
    assert info.value.funnel_name == "base"
    assert info.value.problems == (
        Problem(
            "unknown-stage",
            "cannot replace or remove stage 'zz': the funnel has no such stage",
            "zz",
        ),
    )
