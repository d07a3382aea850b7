"""Incremental scoring equals the pure ``scorer(lead, at)`` it stands in for.

The pure call rescans a lead's whole history and stays the reference; the
engine uses ``start`` / ``score_next`` / ``add`` so a touch costs the same
whatever the history. These properties hold them equal on random scorers
and touch streams, with times placed exactly on decay and window edges.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import Engine, Touch, presets
from buyerjourney._core.scoring import _fmt, _fmt_micro
from buyerjourney.errors import HookError
from buyerjourney.policies import Decision
from buyerjourney.scoring import (
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    IncrementalScorer,
    Lead,
    LinearDecay,
    PointsRule,
    PointsScorer,
    ScoreGroup,
    TimeWindow,
)

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
KINDS = ("visit", "click", "demo")
PERIODS = (timedelta(hours=1), timedelta(days=1), timedelta(days=30))

decays = st.one_of(
    st.none(),
    st.builds(
        LinearDecay,
        fraction=st.sampled_from([0.5, 0.25, 1 / 3, 0.1, 1.0, 2.0, 0.7]),
        every=st.sampled_from(PERIODS),
    ),
    st.builds(TimeWindow, within=st.sampled_from(PERIODS)),
)
points = st.one_of(
    st.integers(-20, 50).map(float), st.sampled_from([0.1, 2.5, 1 / 3, -0.75, 1e-7, 12.345678])
)


@st.composite
def scorers(draw: st.DrawFn) -> PointsScorer:
    group_names = draw(st.lists(st.sampled_from(["web", "email", "engagement"]), unique=True))
    groups = [
        ScoreGroup(
            name,
            cap=draw(st.one_of(st.none(), st.sampled_from([0.0, 10.0, 25.5, 100.0]))),
            decay=draw(decays),
        )
        for name in group_names
    ]
    n_rules = draw(st.integers(1, 5))
    rules = [
        PointsRule(
            f"r{i}",
            draw(points),
            kind=draw(st.one_of(st.none(), st.sampled_from(KINDS))),
            where=draw(st.sampled_from([{}, {"campaign": "spring"}])),
            repeatable=draw(st.booleans()),
            group=draw(st.sampled_from(group_names)) if group_names else "engagement",
        )
        for i in range(n_rules)
    ]
    attribute_rules = draw(
        st.lists(
            st.builds(
                AttributeRule,
                name=st.just("seg"),
                attribute=st.just("segment"),
                values=st.just(("enterprise",)),
                points=points,
            ),
            max_size=1,
        )
    )
    return PointsScorer(
        rules,
        groups=groups,
        total_cap=draw(st.one_of(st.none(), st.sampled_from([0.0, 30.0, 75.25]))),
        attribute_rules=attribute_rules,
    )


@st.composite
def histories(draw: st.DrawFn) -> list[Touch]:
    """Touches of one lead in time order, with gaps that land on decay and window edges."""
    gaps = st.one_of(
        st.just(timedelta(0)),
        st.sampled_from(PERIODS),
        st.sampled_from(
            [p / 2 for p in PERIODS] + [p * 2 for p in PERIODS] + [p * 3 for p in PERIODS]
        ),
        st.integers(1, 10**11).map(lambda us: timedelta(microseconds=us)),
    )
    at = T0
    out = []
    for i in range(draw(st.integers(1, 25))):
        at = at + draw(gaps)
        out.append(
            Touch(
                f"t{i}",
                "lead",
                at,
                draw(st.sampled_from(KINDS)),
                properties=draw(st.sampled_from([{}, {"campaign": "spring"}, {"campaign": "x"}])),
                attributes=draw(
                    st.sampled_from([{}, {"segment": "enterprise"}, {"segment": "smb"}])
                ),
            )
        )
    return out


def _assert_incremental_is_pure(scorer: IncrementalScorer, touches: list[Touch]) -> None:
    state = scorer.start()
    attributes: dict[str, object] = {}
    for i, touch in enumerate(touches):
        attributes = {**attributes, **touch.attributes}
        expected = scorer(Lead("lead", attributes, tuple(touches[: i + 1])), touch.at)
        assert scorer.score_next(state, touch, attributes) == expected, f"touch {i}"
        scorer.add(state, touch)


@given(scorers(), histories())
def test_points_scorer_incremental_equals_pure(scorer: PointsScorer, touches: list[Touch]) -> None:
    _assert_incremental_is_pure(scorer, touches)


@given(scorers(), histories())
def test_combined_scorer_incremental_equals_pure(
    scorer: PointsScorer, touches: list[Touch]
) -> None:
    combined = CombinedScorer(
        scorer, FitGrader([FitCriterion("big", "segment", ("enterprise",), steps=3)])
    )
    assert combined.incremental
    _assert_incremental_is_pure(combined, touches)


def test_a_subclass_of_linear_decay_is_scored_by_its_own_arithmetic() -> None:
    class NoDecay(LinearDecay):
        def _kept(self, ages: object) -> tuple[int, object]:
            from fractions import Fraction  # noqa: PLC0415

            n = len(list(ages))  # type: ignore[call-overload]
            return n, Fraction(n)

    scorer = PointsScorer(
        [PointsRule("v", 10, kind="visit")],
        groups=[ScoreGroup("engagement", decay=NoDecay(0.5, timedelta(days=1)))],
    )
    touches = [Touch(f"t{i}", "lead", T0 + timedelta(days=i), "visit") for i in range(3)]
    _assert_incremental_is_pure(scorer, touches)
    engine = Engine(presets.seed(), scorer=scorer)
    engine.ingest(touches)
    assert [r.score for r in engine.records if r.kind.value == "scored"] == [10.0, 20.0, 30.0]


def test_the_engine_keeps_no_history_for_an_incremental_scorer() -> None:
    engine = Engine(presets.seed(), scorer=PointsScorer([PointsRule("v", 1, kind="visit")]))
    engine.ingest(Touch(f"t{i}", "lead", T0 + timedelta(minutes=i), "visit") for i in range(50))
    assert engine._touches == {}
    assert engine.journey("lead").score == 50.0


@st.composite
def failing_histories(draw: st.DrawFn) -> tuple[list[Touch], list[bool]]:
    """A history and, per touch, whether its operation commits (``add``) or fails."""
    touches = draw(histories())
    return touches, draw(st.lists(st.booleans(), min_size=len(touches), max_size=len(touches)))


@given(scorers(), failing_histories())
def test_a_touch_scored_but_never_added_changes_nothing(
    scorer: PointsScorer, case: tuple[list[Touch], list[bool]]
) -> None:
    # the engine scores a touch, then a later hook may fail: the touch is never added, and
    # the next scores are those of the touches that were
    touches, commits = case
    state = scorer.start()
    kept: list[Touch] = []
    for i, (touch, commit) in enumerate(zip(touches, commits, strict=True)):
        expected = scorer(Lead("lead", {}, (*kept, touch)), touch.at)
        assert scorer.score_next(state, touch, {}) == expected, f"touch {i}"
        if commit:
            scorer.add(state, touch)
            kept.append(touch)


class _SameDecay(LinearDecay):
    """A decay subclass (scored by its own ``_kept``) that behaves as LinearDecay."""


@pytest.mark.parametrize(
    "decay", [None, LinearDecay(0.5, timedelta(days=30)), _SameDecay(0.5, timedelta(days=30))]
)
def test_a_failed_touch_does_not_forget_a_once_only_rule(decay: LinearDecay | None) -> None:
    # regression: scoring a touch matching a once-only rule dropped the rule's earlier touch
    # before the touch committed, so when a policy then failed the lead lost those points
    scorer = PointsScorer(
        [PointsRule("demo", 10, kind="demo", repeatable=False)],
        groups=[ScoreGroup("engagement", decay=decay)],
    )

    def policy(journey: object, score: object, touch: Touch) -> Decision:
        if touch.touch_id == "b":
            raise RuntimeError("the policy broke")
        return Decision()

    engine = Engine(presets.seed(), scorer=scorer, policy=policy)
    engine.ingest_one(Touch("a", "lead", T0, "demo"))
    with pytest.raises(HookError):
        engine.ingest_one(Touch("b", "lead", T0 + timedelta(days=1), "demo"))
    later = T0 + timedelta(days=2)
    journey = engine.ingest_one(Touch("c", "lead", later, "visit"))
    expected = scorer(Lead("lead", {}, (Touch("a", "lead", T0, "demo"),)), later)
    assert journey.score == expected.value
    assert expected.value > 0


@given(st.integers(-(10**20), 10**20) | st.integers(-(10**7), 10**7))
def test_micro_points_are_written_as_the_float_would_be(micro: int) -> None:
    assert _fmt_micro(micro) == _fmt(micro / 10**6)


@pytest.mark.parametrize("micro", [0, 1, 99, 100, -100, 10**15 - 1, 10**15, -(10**15), 2**53, 5])
def test_micro_points_at_the_edges_of_the_integer_path(micro: int) -> None:
    assert _fmt_micro(micro) == _fmt(micro / 10**6)


@pytest.mark.parametrize(
    "segment", ["enterprise", "smb", 1, 1.0, True, None, ("enterprise",), "ENTERPRISE"]
)
def test_a_combined_scorer_grades_every_attribute_value_as_the_pure_call(segment: object) -> None:
    # the fit grade is kept by attribute values only when they are plain strs: 1, 1.0 and True
    # are equal but written differently in the breakdown
    fit = FitGrader(
        [
            FitCriterion("big", "segment", ("enterprise", 1, None), steps=3),
            FitCriterion("tiny", "segment", ("smb",), steps=-2),
        ]
    )
    combined = CombinedScorer(PointsScorer([PointsRule("v", 5, kind="visit")]), fit)
    touches = [
        Touch("t0", "lead", T0, "visit", attributes={"segment": segment}),
        Touch("t1", "lead", T0 + timedelta(hours=1), "visit"),
    ]
    _assert_incremental_is_pure(combined, touches)
    other = [Touch("u0", "lead", T0, "visit")]  # the same scorer, a lead without the attribute
    _assert_incremental_is_pure(combined, other)
    _assert_incremental_is_pure(combined, touches)  # from what it kept
