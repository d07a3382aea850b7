"""Tests for buyerjourney.policies: the built-in policies, composition, the contract, plugins."""

from __future__ import annotations

import importlib.metadata
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney._core.journey import Journey
from buyerjourney._core.records import Touch
from buyerjourney.errors import HookError, UnknownHook
from buyerjourney.policies import (
    ANY_STAGE,
    CELLS,
    POLICY_GROUP,
    AllOf,
    AnyOf,
    Decision,
    MatrixPolicy,
    Policy,
    ThresholdPolicy,
    TouchKindPolicy,
    available_policies,
    checked_decision,
    load_policy,
    stages_allowing,
)
from buyerjourney.scoring import Score

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


def journey(stage: str = "lead") -> Journey:
    return Journey(
        lead_id="L1", stage=stage, highest=stage, owner="marketing", created=T0, updated=T0
    )


def touch(kind: str = "email_click") -> Touch:
    return Touch("t1", "L1", T0, kind)


def decide(
    policy: Policy, score: Score, stage: str = "lead", kind: str = "email_click"
) -> Decision:
    return policy(journey(stage), score, touch(kind))


# ---------------------------------------------------------------- threshold


def test_threshold_fires_at_and_above_the_threshold() -> None:
    policy = ThresholdPolicy(50, "qualify", stages=("lead",))
    assert decide(policy, Score(49.999999)) == Decision()
    assert decide(policy, Score(50)) == Decision("qualify", "score 50 ≥ 50")
    assert decide(policy, Score(72.5)) == Decision("qualify", "score 72.5 ≥ 50")


def test_threshold_fires_only_from_its_stages() -> None:
    policy = ThresholdPolicy(50, "qualify", stages=("lead", "subscriber"))
    assert decide(policy, Score(60), stage="subscriber").acts
    assert not decide(policy, Score(60), stage="mql").acts


def test_threshold_any_stage_must_be_explicit() -> None:
    with pytest.raises(TypeError, match="stages"):
        ThresholdPolicy(50, "qualify")  # type: ignore[call-arg]
    anywhere = ThresholdPolicy(50, "qualify", stages=ANY_STAGE)
    assert decide(anywhere, Score(60), stage="whatever").acts


def test_threshold_custom_reason() -> None:
    policy = ThresholdPolicy(10, "qualify", stages=ANY_STAGE, reason="MQL rule v2")
    assert decide(policy, Score(10)) == Decision("qualify", "MQL rule v2")


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: ThresholdPolicy(50, "qualify", stages="lead"), TypeError, r"\('lead',\)"),
        (lambda: ThresholdPolicy(50, "qualify", stages=("",)), TypeError, "non-empty"),
        (lambda: ThresholdPolicy(math.nan, "q", stages=()), TypeError, "finite"),
        (lambda: ThresholdPolicy(True, "q", stages=()), TypeError, "finite"),
        (lambda: ThresholdPolicy(5, "", stages=()), TypeError, "event"),
        (lambda: ThresholdPolicy(5, None, stages=()), TypeError, "event"),  # type: ignore[arg-type]
        (lambda: ThresholdPolicy(5, "q", stages=(), reason=None), TypeError, "reason"),  # type: ignore[arg-type]
    ],
)
def test_threshold_validation(build: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


@given(
    threshold=st.floats(-1e6, 1e6, allow_nan=False),
    value=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_threshold_fires_iff_value_reaches_it(threshold: float, value: float) -> None:
    policy = ThresholdPolicy(threshold, "qualify", stages=ANY_STAGE)
    assert decide(policy, Score(value)).acts is (value >= threshold)


# ---------------------------------------------------------------- stages_allowing


def small_funnel() -> Funnel:
    return Funnel(
        "small",
        [
            Stage("lead", 10, initial=True, owner="marketing"),
            Stage("mql", 20, owner="marketing"),
            Stage("customer", 30, StageKind.WON, owner="sales", terminal=True),
            Stage("lost", 0, StageKind.LOST, owner="marketing"),
        ],
        [
            Transition("qualify", "lead", "mql"),
            Transition("convert", "mql", "customer"),
            Transition("nurture", "mql", "lead", Direction.BACKWARD),
            Transition("lose", "lead", "lost", Direction.EXIT),
            Transition("lose", "mql", "lost", Direction.EXIT),
        ],
    )


def test_stages_allowing_lists_the_stages_where_an_event_is_legal() -> None:
    funnel = small_funnel()
    assert stages_allowing(funnel, "qualify") == ("lead",)
    assert stages_allowing(funnel, "lose") == ("lead", "mql")
    policy = ThresholdPolicy(50, "qualify", stages=stages_allowing(funnel, "qualify"))
    assert decide(policy, Score(50), stage="lead").acts
    assert not decide(policy, Score(50), stage="mql").acts


def test_stages_allowing_refuses_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="no stage of funnel 'small' allows event 'qualfy'"):
        stages_allowing(small_funnel(), "qualfy")


# ---------------------------------------------------------------- touch kind


def test_touch_kind_policy_maps_kinds_to_events() -> None:
    policy = TouchKindPolicy({"purchase": "convert", "unsubscribe": "lose"})
    assert decide(policy, Score(0), kind="purchase") == Decision("convert", "touch purchase")
    assert decide(policy, Score(0), kind="unsubscribe") == Decision("lose", "touch unsubscribe")
    assert decide(policy, Score(99), kind="email_click") == Decision()


def test_touch_kind_policy_respects_stages() -> None:
    policy = TouchKindPolicy({"purchase": "convert"}, stages=("mql",))
    assert decide(policy, Score(0), stage="mql", kind="purchase").acts
    assert not decide(policy, Score(0), stage="lead", kind="purchase").acts


def test_touch_kind_policy_mapping_is_frozen_and_checked() -> None:
    source = {"purchase": "convert"}
    policy = TouchKindPolicy(source)
    source["purchase"] = "lose"
    assert policy.mapping["purchase"] == "convert"
    with pytest.raises(TypeError):
        policy.mapping["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError, match="'purchase': ''"):
        TouchKindPolicy({"purchase": ""})
    with pytest.raises(TypeError, match="map touch kinds"):
        TouchKindPolicy([("purchase", "convert")])  # type: ignore[arg-type]


# ---------------------------------------------------------------- matrix

BANDS = (100.0, 50.0, 20.0)


def matrix(*cells: str, stages: tuple[str, ...] = ANY_STAGE) -> MatrixPolicy:
    return MatrixPolicy("qualify", accept=frozenset(cells), engagement_bands=BANDS, stages=stages)


@pytest.mark.parametrize(
    ("value", "band"),
    [
        (1000, 1),
        (100, 1),
        (99.999999, 2),
        (50, 2),
        (49.999999, 3),
        (20, 3),
        (19.999999, 4),
        (0, 4),
        (-30, 4),
    ],
)
def test_matrix_engagement_bands_at_their_boundaries(value: float, band: int) -> None:
    assert matrix().cell(Score(value, grade="B")) == f"B{band}"


@pytest.mark.parametrize(
    ("grade", "letter"),
    [
        ("A+", "A"),
        ("A", "A"),
        ("A-", "A"),
        ("B+", "B"),
        ("B-", "B"),
        ("C", "C"),
        ("D+", "D"),
        ("D-", "D"),
        ("F", "D"),
    ],
)
def test_matrix_grade_letters(grade: str, letter: str) -> None:
    assert matrix().cell(Score(100, grade=grade)) == f"{letter}1"


def test_matrix_fires_for_accepted_cells_only() -> None:
    policy = matrix("A1", "A2", "B1")
    assert decide(policy, Score(50, grade="A-")) == Decision(
        "qualify", "matrix cell A2 (grade A-, score 50)"
    )
    assert decide(policy, Score(100, grade="B+")).event == "qualify"
    assert not decide(policy, Score(99, grade="B+")).acts  # B2
    assert not decide(policy, Score(1000, grade="C")).acts  # C1


def test_matrix_without_grade_never_fires() -> None:
    policy = matrix(*CELLS)
    assert policy.cell(Score(1000)) is None
    assert decide(policy, Score(1000)) == Decision()


def test_matrix_rejects_grades_off_the_ladder() -> None:
    for grade in ("E", "hot", "A++", "a", ""):
        with pytest.raises(ValueError, match="not on the fit ladder"):
            decide(matrix("A1"), Score(100, grade=grade))


def test_matrix_respects_stages() -> None:
    policy = matrix("A1", stages=("lead",))
    assert decide(policy, Score(100, grade="A"), stage="lead").acts
    assert not decide(policy, Score(100, grade="A"), stage="mql").acts


def test_matrix_stages_are_required() -> None:
    with pytest.raises(TypeError, match="stages"):
        MatrixPolicy(  # type: ignore[call-arg]
            "qualify", accept=frozenset({"A1"}), engagement_bands=BANDS
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"accept": {"A1", "E1", "A5"}}, ValueError, "'A5', 'E1'"),
        ({"accept": "A1"}, TypeError, "not a str"),
        ({"engagement_bands": (50, 50, 20)}, ValueError, "must go down"),
        ({"engagement_bands": (20, 50, 100)}, ValueError, "must go down"),
        ({"engagement_bands": (100, 50)}, ValueError, "three finite numbers"),
        ({"engagement_bands": (100, math.nan, 20)}, ValueError, "three finite numbers"),
        ({"stages": "lead"}, TypeError, "not a str"),
    ],
)
def test_matrix_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    arguments: dict[str, Any] = {
        "accept": frozenset({"A1"}),
        "engagement_bands": BANDS,
        "stages": ANY_STAGE,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        MatrixPolicy("qualify", **arguments)


def test_matrix_cells() -> None:
    assert len(CELLS) == 16
    assert {"A1", "D4"} <= CELLS


# ---------------------------------------------------------------- composition

HIGH = ThresholdPolicy(50, "qualify", stages=ANY_STAGE)
FIT = MatrixPolicy(
    "qualify", accept=frozenset({"A1", "A2", "A3"}), engagement_bands=BANDS, stages=ANY_STAGE
)
DEMO = TouchKindPolicy({"demo_request": "qualify"})
LOSE = TouchKindPolicy({"unsubscribe": "lose"})


def test_all_of_fires_when_every_policy_fires_with_the_same_event() -> None:
    policy = AllOf(HIGH, FIT, DEMO)
    decision = decide(policy, Score(60, grade="A"), kind="demo_request")
    assert decision == Decision(
        "qualify", "score 60 ≥ 50; matrix cell A2 (grade A, score 60); touch demo_request"
    )
    assert not decide(policy, Score(60, grade="B"), kind="demo_request").acts
    assert not decide(policy, Score(40, grade="A"), kind="demo_request").acts
    assert not decide(policy, Score(60, grade="A"), kind="email_click").acts


def test_all_of_does_not_fire_on_conflicting_events() -> None:
    policy = AllOf(TouchKindPolicy({"x": "qualify"}), TouchKindPolicy({"x": "lose"}))
    assert decide(policy, Score(0), kind="x") == Decision()


def test_all_of_stops_at_the_first_policy_that_does_not_fire() -> None:
    calls: list[str] = []

    def never(journey: Journey, score: Score, touch: Touch) -> Decision:
        calls.append("never")
        return Decision()

    def always(journey: Journey, score: Score, touch: Touch) -> Decision:
        calls.append("always")
        return Decision("qualify")

    assert decide(AllOf(never, always), Score(0)) == Decision()
    assert calls == ["never"]
    assert decide(AllOf(always, always), Score(0)) == Decision("qualify", "")


def test_any_of_takes_the_first_policy_that_fires() -> None:
    policy = AnyOf(LOSE, HIGH, DEMO)
    assert decide(policy, Score(60), kind="unsubscribe") == Decision("lose", "touch unsubscribe")
    assert decide(policy, Score(60), kind="demo_request") == Decision("qualify", "score 60 ≥ 50")
    assert decide(policy, Score(0), kind="demo_request") == Decision(
        "qualify", "touch demo_request"
    )
    assert decide(policy, Score(0), kind="email_click") == Decision()


def test_composites_nest() -> None:
    policy = AnyOf(LOSE, AllOf(HIGH, FIT))
    assert decide(policy, Score(60, grade="A")).event == "qualify"
    assert decide(policy, Score(60, grade="A"), kind="unsubscribe").event == "lose"
    assert isinstance(policy, Policy)


def test_composites_check_their_members() -> None:
    def broken(journey: Journey, score: Score, touch: Touch) -> Decision:
        return None  # type: ignore[return-value]

    for composite, name in ((AllOf(HIGH, broken), "AllOf[1]"), (AnyOf(DEMO, broken), "AnyOf[1]")):
        with pytest.raises(HookError) as info:
            decide(composite, Score(60))
        assert info.value.hook.startswith(name)
        assert info.value.hook.endswith(".broken")


def test_composites_need_callable_policies() -> None:
    with pytest.raises(TypeError, match="at least one"):
        AllOf()
    with pytest.raises(TypeError, match="at least one"):
        AnyOf()
    with pytest.raises(TypeError, match="policy 1 must be callable"):
        AnyOf(HIGH, "qualify")  # type: ignore[arg-type]


def test_composites_are_values() -> None:
    assert AllOf(HIGH, DEMO) == AllOf(HIGH, DEMO)
    assert AllOf(HIGH, DEMO) != AllOf(DEMO, HIGH)
    assert AnyOf(HIGH).policies == (HIGH,)
    assert "ThresholdPolicy" in repr(AnyOf(HIGH))


@given(value=st.floats(-1e3, 1e3, allow_nan=False), kind=st.sampled_from(["demo_request", "x"]))
def test_single_member_composites_decide_like_their_member(value: float, kind: str) -> None:
    for member in (HIGH, DEMO):
        expected = decide(member, Score(value), kind=kind)
        assert decide(AnyOf(member), Score(value), kind=kind) == expected
        assert decide(AllOf(member), Score(value), kind=kind) == expected


# ---------------------------------------------------------------- checked_decision


def _returning(value: object) -> Policy:
    def policy(journey: Journey, score: Score, touch: Touch) -> Decision:
        return value  # type: ignore[return-value]

    return policy


def test_checked_decision_passes_valid_decisions() -> None:
    decision = checked_decision("mql", HIGH, journey(), Score(60), touch())
    assert decision == Decision("qualify", "score 60 ≥ 50")
    assert checked_decision("none", _returning(Decision()), journey(), Score(0), touch()) == (
        Decision()
    )


def test_checked_decision_wraps_a_raising_policy() -> None:
    def raising(journey: Journey, score: Score, touch: Touch) -> Decision:
        msg = "boom"
        raise ZeroDivisionError(msg)

    with pytest.raises(HookError) as info:
        checked_decision("mine", raising, journey(), Score(0), touch())
    error = info.value
    assert error.hook == "mine"
    assert error.subject == "t1"
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert "policy raised ZeroDivisionError" in str(error)
    assert "lead 'L1' in stage 'lead'" in str(error)


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (None, "must return a Decision (got None that is a NoneType)"),
        (math.nan, "must return a Decision (got nan that is a float)"),
        (math.inf, "must return a Decision (got inf that is a float)"),
        ("qualify", "must return a Decision (got 'qualify' that is a str)"),
        (True, "must return a Decision (got True that is a bool)"),
        (Decision(math.nan), "event is neither None nor a non-empty str (got nan"),  # type: ignore[arg-type]
        (Decision(math.inf), "event is neither None nor a non-empty str (got inf"),  # type: ignore[arg-type]
        (Decision(True), "(got True that is a bool)"),  # type: ignore[arg-type]
        (Decision(1), "(got 1 that is a int)"),  # type: ignore[arg-type]
        (Decision(""), "(got '' that is a str)"),
        (Decision("qualify", None), "reason is not a str"),  # type: ignore[arg-type]
    ],
)
def test_checked_decision_rejects_invalid_results(returned: object, expected: str) -> None:
    with pytest.raises(HookError) as info:
        checked_decision("mine", _returning(returned), journey(), Score(0), touch())
    error = info.value
    assert expected in str(error)
    assert str(error).startswith("hook 'mine' for 't1': ")
    assert error.received is returned


# ---------------------------------------------------------------- entry points


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install fake policy entry points; returns a function taking (name, value) pairs."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))

    def install(*pairs: tuple[str, str]) -> None:
        eps = [importlib.metadata.EntryPoint(name=n, value=v, group=POLICY_GROUP) for n, v in pairs]

        def fake(*, group: str) -> list[importlib.metadata.EntryPoint]:
            return [ep for ep in eps if ep.group == group]

        monkeypatch.setattr(importlib.metadata, "entry_points", fake)

    return install


def test_load_policy_takes_classes_functions_and_instances(plugins: Any) -> None:
    plugins(
        ("demo", "plugin_fixture:DemoPolicy"),
        ("never", "plugin_fixture:never"),
        ("mql", "plugin_fixture:MQL"),
    )
    assert available_policies() == ("demo", "mql", "never")
    assert decide(load_policy("demo"), Score(0), kind="demo_request") == Decision(
        "qualify", "asked for a demo"
    )
    assert decide(load_policy("never"), Score(1000)) == Decision()
    mql = load_policy("mql")
    assert isinstance(mql, ThresholdPolicy)
    assert checked_decision("mql", mql, journey(), Score(50), touch()).event == "qualify"


def test_unknown_policy_lists_the_known_ones(plugins: Any) -> None:
    plugins(("demo", "plugin_fixture:DemoPolicy"))
    with pytest.raises(UnknownHook) as info:
        load_policy("mql")
    assert info.value.kind == "policy"
    assert info.value.known == ("demo",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plugin_fixture:missing", "cannot load policy entry point 'plugin_fixture:missing'"),
        ("plugin_fixture:NeedsArguments", "cannot be instantiated without arguments"),
        ("plugin_fixture:NOT_A_HOOK", "must name a policy"),
    ],
)
def test_broken_policy_plugins_raise_hook_errors(plugins: Any, value: str, expected: str) -> None:
    plugins(("broken", value))
    with pytest.raises(HookError, match=expected):
        load_policy("broken")


# ---------------------------------------------------------------- the precomputed paths

_LADDER = ("A+", "A", "A-", "B+", "B", "B-", "C+", "C", "C-", "D+", "D", "D-", "F")


def _cell_by_the_rule(bands: tuple[float, float, float], grade: str, value: float) -> str:
    """The documented rule, written out: the letter from the grade, the band from the value."""
    letter = "D" if grade == "F" else grade[0]
    band = next((i for i, low in enumerate(bands, 1) if value >= low), 4)
    return f"{letter}{band}"


@given(
    grade=st.sampled_from(_LADDER),
    value=st.one_of(st.sampled_from([*BANDS, 0.0, -1.0]), st.floats(-1e3, 1e3, allow_nan=False)),
)
def test_matrix_cells_follow_the_documented_rule(grade: str, value: float) -> None:
    assert matrix().cell(Score(value, grade=grade)) == _cell_by_the_rule(BANDS, grade, value)


def test_matrix_grades_the_fast_lookup_does_not_know_take_the_checked_path() -> None:
    class Grade(str):
        __slots__ = ()

    assert matrix().cell(Score(100, grade=Grade("B-"))) == "B1"  # a str subclass
    assert matrix().cell(Score(100, grade="C\n")) == "C1"  # what the pattern has always let by
    for grade in ("E", "A++", " A", 3):
        with pytest.raises(ValueError, match="not on the fit ladder"):
            matrix().cell(Score(100, grade=grade))  # type: ignore[arg-type]


def test_touch_kind_decisions_are_the_documented_ones() -> None:
    policy = TouchKindPolicy({"demo_request": "qualify", "unsubscribe": "lose"})
    assert decide(policy, Score(0), kind="unsubscribe") == Decision("lose", "touch unsubscribe")
    assert decide(policy, Score(0), kind="demo_request") == Decision(
        "qualify", "touch demo_request"
    )
    assert decide(policy, Score(0), kind="page_view") == Decision()


class _Threshold(ThresholdPolicy):
    """A subclass is not trusted: its decisions are checked like any policy of one's own."""

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        return "qualify"  # type: ignore[return-value]


@pytest.mark.parametrize("composite", [AnyOf, AllOf])
def test_a_built_in_member_that_raises_is_named_as_checked_decision_names_it(
    composite: Any,
) -> None:
    # built-in members are called without the result check, but a failure reads the same
    policy = composite(HIGH, FIT) if composite is AllOf else composite(DEMO, FIT)
    with pytest.raises(HookError) as info:
        decide(policy, Score(60, grade="hot"), kind="x")
    name = f"{composite.__name__}[1]:MatrixPolicy"
    with pytest.raises(HookError) as direct:
        checked_decision(name, FIT, journey(), Score(60, grade="hot"), touch("x"))
    assert info.value.hook == name
    assert str(info.value) == str(direct.value)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("composite", [AnyOf, AllOf])
def test_a_subclass_member_is_checked(composite: Any) -> None:
    with pytest.raises(HookError, match="must return a Decision") as info:
        decide(composite(_Threshold(50, "qualify", stages=ANY_STAGE)), Score(60))
    assert info.value.hook.startswith(f"{composite.__name__}[0]:")


def test_precomputed_parts_do_not_change_equality_or_evolve() -> None:
    import attrs  # noqa: PLC0415

    assert TouchKindPolicy({"a": "b"}) == TouchKindPolicy({"a": "b"})
    assert hash(matrix("A1")) == hash(matrix("A1"))
    moved = attrs.evolve(DEMO, mapping={"purchase": "convert"})
    assert decide(moved, Score(0), kind="purchase") == Decision("convert", "touch purchase")
    assert not decide(moved, Score(0), kind="demo_request").acts
    tighter = attrs.evolve(FIT, engagement_bands=(1000, 500, 100))
    assert tighter.cell(Score(600, grade="A")) == "A2"
