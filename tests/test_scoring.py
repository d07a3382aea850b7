"""Tests for buyerjourney.scoring: points, caps, decay, fit grades, the contract, plugins."""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney._core.records import Touch
from buyerjourney.errors import HookError, UnknownHook
from buyerjourney.scoring import (
    GRADES,
    SCORER_GROUP,
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    Lead,
    LinearDecay,
    PointsRule,
    PointsScorer,
    Score,
    ScoreGroup,
    ScoreItem,
    Scorer,
    TimeWindow,
    available_scorers,
    checked_score,
    load_scorer,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
X = "\N{MULTIPLICATION SIGN}"  # what the breakdown writes between count and kind
DAY = timedelta(days=1)
MONTH = timedelta(days=30)


def touch(n: int, kind: str, at: datetime, **properties: Any) -> Touch:
    return Touch(f"t{n}", "L1", at, kind, properties)


def lead(*touches: Touch, **attributes: Any) -> Lead:
    return Lead("L1", attributes, tuple(touches))


def items(score: Score) -> dict[str, float]:
    return {item.rule: item.points for item in score.breakdown}


def assert_adds_up(score: Score) -> None:
    """The breakdown adds up exactly to the value, as printed and as floats."""
    points = [item.points for item in score.breakdown]
    assert round(math.fsum(points), 6) == score.value
    assert sum((Decimal(repr(p)) for p in points), Decimal(0)) == Decimal(repr(score.value))
    assert all(round(p, 6) == p for p in points)


CLICK = PointsRule("clicks", 5, kind="email_click")


# ---------------------------------------------------------------- points rules


def test_repeatable_rule_counts_every_matching_touch() -> None:
    clicks = [touch(i, "email_click", T0 + i * DAY) for i in range(3)]
    score = PointsScorer([CLICK])(lead(*clicks, touch(9, "page_view", T0)), T0 + 5 * DAY)
    assert score.value == 15
    assert score.breakdown == (ScoreItem("clicks", 15.0, f"3 {X} email_click"),)
    assert score.grade is None


def test_once_only_rule_counts_at_most_once() -> None:
    rule = PointsRule("demo", 30, kind="demo_request", repeatable=False)
    demos = [touch(i, "demo_request", T0 + i * DAY) for i in range(4)]
    score = PointsScorer([rule])(lead(*demos), T0 + 10 * DAY)
    assert score.value == 30
    assert score.breakdown[0].detail == f"1 {X} demo_request (once-only)"


def test_once_only_rule_decays_from_its_latest_occurrence() -> None:
    rule = PointsRule("demo", 30, kind="demo_request", repeatable=False)
    scorer = PointsScorer([rule], groups=[ScoreGroup("engagement", decay=LinearDecay(0.5, MONTH))])
    demos = lead(touch(1, "demo_request", T0), touch(2, "demo_request", T0 + MONTH))
    assert scorer(demos, T0 + MONTH).value == 30  # latest is fresh
    assert scorer(demos, T0 + 2 * MONTH).value == 15


def test_rule_without_kind_matches_every_touch() -> None:
    rule = PointsRule("any", 1)
    score = PointsScorer([rule])(lead(touch(1, "a", T0), touch(2, "b", T0)), T0)
    assert score.value == 2
    assert score.breakdown[0].detail == f"2 {X} touch"


def test_where_filters_on_touch_properties() -> None:
    rule = PointsRule("spring", 10, kind="email_click", where={"campaign": "spring"})
    touches = lead(
        touch(1, "email_click", T0, campaign="spring", page="x"),
        touch(2, "email_click", T0, campaign="autumn"),
        touch(3, "email_click", T0),
        touch(4, "page_view", T0, campaign="spring"),
    )
    score = PointsScorer([rule])(touches, T0)
    assert score.value == 10
    assert score.breakdown[0].detail == f"1 {X} email_click where campaign=spring"


def test_rule_matches_method() -> None:
    rule = PointsRule("r", 1, kind="k", where={"a": 1, "b": "x"})
    assert rule.matches(touch(1, "k", T0, a=1, b="x", c=3))
    assert not rule.matches(touch(1, "k", T0, a=1))
    assert not rule.matches(touch(1, "other", T0, a=1, b="x"))


def test_negative_points_subtract() -> None:
    rules = [CLICK, PointsRule("unsubscribed", -20, kind="unsubscribe")]
    score = PointsScorer(rules)(lead(touch(1, "email_click", T0), touch(2, "unsubscribe", T0)), T0)
    assert score.value == -15
    assert_adds_up(score)


def test_rules_that_count_nothing_are_left_out_of_the_breakdown() -> None:
    rules = [CLICK, PointsRule("views", 1, kind="page_view")]
    score = PointsScorer(rules)(lead(touch(1, "email_click", T0)), T0)
    assert [i.rule for i in score.breakdown] == ["clicks"]


def test_no_touches_scores_zero() -> None:
    score = PointsScorer([CLICK])(lead(), T0)
    assert score == Score(0.0, ())


# ---------------------------------------------------------------- caps


def test_group_cap_adds_a_negative_cap_item() -> None:
    scorer = PointsScorer([CLICK], groups=[ScoreGroup("engagement", cap=12)])
    clicks = lead(*(touch(i, "email_click", T0) for i in range(4)))
    score = scorer(clicks, T0)
    assert score.value == 12
    assert score.breakdown == (
        ScoreItem("clicks", 20.0, f"4 {X} email_click"),
        ScoreItem("cap:engagement", -8.0, "engagement capped at 12 (was 20)"),
    )


def test_group_cap_not_reached_adds_no_item() -> None:
    scorer = PointsScorer([CLICK], groups=[ScoreGroup("engagement", cap=12)])
    score = scorer(lead(touch(1, "email_click", T0)), T0)
    assert [i.rule for i in score.breakdown] == ["clicks"]


def test_group_caps_apply_per_group_then_total_cap() -> None:
    rules = [
        CLICK,
        PointsRule("views", 1, kind="page_view", group="web"),
        PointsRule("demo", 40, kind="demo_request", group="intent"),
    ]
    scorer = PointsScorer(
        rules,
        groups=[
            ScoreGroup("engagement", cap=10),
            ScoreGroup("web", cap=3),
            ScoreGroup("intent"),
        ],
        total_cap=50,
        attribute_rules=[AttributeRule("enterprise", "segment", ("enterprise",), 5)],
    )
    touches = [touch(i, "email_click", T0) for i in range(3)]
    touches += [touch(10 + i, "page_view", T0) for i in range(5)]
    touches += [touch(20, "demo_request", T0)]
    score = scorer(lead(*touches, segment="enterprise"), T0)
    assert [(i.rule, i.points) for i in score.breakdown] == [
        ("clicks", 15.0),
        ("cap:engagement", -5.0),
        ("views", 5.0),
        ("cap:web", -2.0),
        ("demo", 40.0),
        ("enterprise", 5.0),
        ("cap:total", -8.0),
    ]
    assert score.value == 50
    assert score.breakdown[-1].detail == "total capped at 50 (was 58)"


def test_total_cap_alone() -> None:
    scorer = PointsScorer([CLICK], total_cap=7.5)
    score = scorer(lead(touch(1, "email_click", T0), touch(2, "email_click", T0)), T0)
    assert score.value == 7.5
    assert items(score) == {"clicks": 10.0, "cap:total": -2.5}


def test_fractional_cap_lands_exactly_on_the_cap() -> None:
    rules = [PointsRule("a", 7.3, kind="a"), PointsRule("b", 8.1, kind="b")]
    scorer = PointsScorer(rules, groups=[ScoreGroup("engagement", cap=15)], total_cap=10.1)
    score = scorer(lead(touch(1, "a", T0), touch(2, "b", T0)), T0)
    assert score.value == 10.1
    assert items(score)["cap:engagement"] == -0.4
    assert_adds_up(score)


def test_caps_do_not_raise_negative_totals() -> None:
    scorer = PointsScorer(
        [PointsRule("bounce", -5, kind="bounce")],
        groups=[ScoreGroup("engagement", cap=0)],
        total_cap=0,
    )
    score = scorer(lead(touch(1, "bounce", T0)), T0)
    assert score.value == -5
    assert [i.rule for i in score.breakdown] == ["bounce"]


# ---------------------------------------------------------------- decay and windows


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), 10.0),
        (timedelta(days=15), 7.5),  # half of `every`: a quarter lost
        (timedelta(days=30), 5.0),  # "50 % every month": half after a month
        (timedelta(days=45), 2.5),
        (timedelta(days=60), None),  # fully decayed: the rule no longer counts
        (timedelta(days=400), None),
    ],
)
def test_linear_decay_at_exact_ages(age: timedelta, expected: float | None) -> None:
    scorer = PointsScorer(
        [PointsRule("demo", 10, kind="demo_request")],
        groups=[ScoreGroup("engagement", decay=LinearDecay(0.5, MONTH))],
    )
    score = scorer(lead(touch(1, "demo_request", T0)), T0 + age)
    if expected is None:
        assert score == Score(0.0, ())
    else:
        assert score.value == expected
        assert items(score) == {"demo": expected}


def test_linear_decay_factor_is_exact() -> None:
    decay = LinearDecay(0.5, MONTH)
    assert decay.factor(timedelta(0)) == 1
    assert decay.factor(MONTH) == 0.5
    assert decay.factor(10 * MONTH) == 0
    assert str(decay) == "50 % every 30 days"
    assert str(LinearDecay(1, timedelta(hours=2))) == "100 % every 2 hours"


def test_decay_detail_shows_full_and_decayed_points() -> None:
    scorer = PointsScorer([CLICK], groups=[ScoreGroup("engagement", decay=LinearDecay(0.5, MONTH))])
    clicks = lead(touch(1, "email_click", T0), touch(2, "email_click", T0 + MONTH))
    score = scorer(clicks, T0 + MONTH)
    assert score.value == 7.5
    assert score.breakdown[0].detail == (
        f"2 {X} email_click, 10 decayed to 7.5 (50 % every 30 days)"
    )


def test_decayed_points_keep_six_decimals_and_add_up() -> None:
    scorer = PointsScorer(
        [PointsRule("r", 1, kind="k")],
        groups=[ScoreGroup("engagement", decay=LinearDecay(1, timedelta(days=3)))],
    )
    score = scorer(lead(touch(1, "k", T0)), T0 + DAY)
    assert score.value == 0.666667
    assert_adds_up(score)


def test_time_window_boundary_is_exclusive() -> None:
    window = timedelta(days=7)
    scorer = PointsScorer([CLICK], groups=[ScoreGroup("engagement", decay=TimeWindow(window))])
    clicks = lead(touch(1, "email_click", T0))
    assert scorer(clicks, T0 + window - timedelta(microseconds=1)).value == 5
    assert scorer(clicks, T0 + window) == Score(0.0, ())
    assert scorer(clicks, T0 + window + DAY).value == 0
    assert scorer(clicks, T0).breakdown[0].detail == f"1 {X} email_click, in the last 7 days"


def test_decay_applies_only_to_its_group() -> None:
    rules = [CLICK, PointsRule("views", 1, kind="page_view", group="web")]
    scorer = PointsScorer(
        rules,
        groups=[ScoreGroup("engagement", decay=TimeWindow(DAY)), ScoreGroup("web")],
    )
    score = scorer(lead(touch(1, "email_click", T0), touch(2, "page_view", T0)), T0 + 5 * DAY)
    assert items(score) == {"views": 1.0}


def test_touches_after_at_are_ignored_and_at_itself_counts() -> None:
    clicks = lead(
        touch(1, "email_click", T0),
        touch(2, "email_click", T0 + DAY),
        touch(3, "email_click", T0 + DAY + timedelta(microseconds=1)),
    )
    assert PointsScorer([CLICK])(clicks, T0 + DAY).value == 10
    assert PointsScorer([CLICK])(clicks, T0 - DAY).value == 0


def test_scores_are_deterministic() -> None:
    scorer = PointsScorer(
        [CLICK, PointsRule("demo", 30, kind="demo_request", repeatable=False)],
        groups=[ScoreGroup("engagement", cap=100, decay=LinearDecay(0.3, MONTH))],
        total_cap=80,
    )
    touches = lead(
        *(touch(i, "email_click", T0 + i * DAY) for i in range(20)),
        touch(99, "demo_request", T0 + 3 * DAY),
    )
    at = T0 + 40 * DAY
    assert scorer(touches, at) == scorer(touches, at)
    again = PointsScorer(scorer.rules, groups=scorer.groups, total_cap=scorer.total_cap)
    assert again(touches, at) == scorer(touches, at)


def test_naive_at_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PointsScorer([CLICK])(lead(), datetime(2024, 1, 1))


# ---------------------------------------------------------------- attribute rules


def test_attribute_rules_add_fit_points() -> None:
    scorer = PointsScorer(
        [],
        attribute_rules=[
            AttributeRule("enterprise", "segment", ("enterprise", "mid"), 10),
            AttributeRule("student", "role", ("student",), -15),
            AttributeRule("country", "country", ("FR",), 3),
        ],
    )
    score = scorer(lead(segment="mid", role="student"), T0)
    assert score.value == -5
    assert score.breakdown == (
        ScoreItem("enterprise", 10.0, "segment = 'mid'"),
        ScoreItem("student", -15.0, "role = 'student'"),
    )


def test_missing_attribute_never_matches_even_none() -> None:
    rule = AttributeRule("none", "segment", (None,), 1)
    assert not rule.matches(lead())
    assert rule.matches(lead(segment=None))


# ---------------------------------------------------------------- validation


def test_points_scorer_lists_every_problem() -> None:
    with pytest.raises(ValueError, match="5 problems") as info:
        PointsScorer(
            [
                CLICK,
                PointsRule("clicks", 1, kind="other"),
                PointsRule("cap:mine", 1),
                PointsRule("typo", 1, group="engagment"),
            ],
            groups=[ScoreGroup("engagement"), ScoreGroup("engagement"), ScoreGroup("total")],
        )
    message = str(info.value)
    assert "'clicks' is used more than once" in message
    assert "'cap:mine' starts with 'cap:'" in message
    assert "group 'engagement' is declared more than once" in message
    assert "'total' is reserved" in message
    assert "group 'engagment' is used by a rule but not declared" in message


def test_undeclared_groups_are_fine_when_none_are_declared() -> None:
    scorer = PointsScorer([PointsRule("r", 1, group="anything")])
    assert scorer(lead(touch(1, "k", T0)), T0).value == 1


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: PointsRule("", 1), TypeError),
        (lambda: PointsRule("r", math.nan), TypeError),
        (lambda: PointsRule("r", math.inf), TypeError),
        (lambda: PointsRule("r", True), TypeError),
        (lambda: PointsRule("r", "5"), TypeError),  # type: ignore[arg-type]
        (lambda: PointsRule("r", 1, kind=""), TypeError),
        (lambda: PointsRule("r", 1, repeatable=1), TypeError),  # type: ignore[arg-type]
        (lambda: AttributeRule("r", "segment", "enterprise", 1), TypeError),
        (lambda: FitCriterion("r", "segment", "enterprise"), TypeError),
        (lambda: FitCriterion("r", "segment", ("x",), steps=1.5), TypeError),  # type: ignore[arg-type]
        (lambda: FitCriterion("r", "segment", ("x",), steps=True), TypeError),
        (lambda: LinearDecay(0, MONTH), ValueError),
        (lambda: LinearDecay(0.5, timedelta(0)), ValueError),
        (lambda: LinearDecay(math.nan, MONTH), TypeError),
        (lambda: TimeWindow(-DAY), ValueError),
        (lambda: ScoreGroup("g", cap=-1), ValueError),
        (lambda: ScoreGroup("g", cap=math.inf), TypeError),
        (lambda: ScoreGroup("g", decay=MONTH), TypeError),  # type: ignore[arg-type]
        (lambda: PointsScorer([CLICK], total_cap=-1), ValueError),
        (lambda: PointsScorer([object()]), TypeError),  # type: ignore[list-item]
        (lambda: PointsScorer([CLICK], groups=["engagement"]), TypeError),  # type: ignore[list-item]
        (lambda: FitGrader([CLICK]), TypeError),  # type: ignore[list-item]
    ],
)
def test_invalid_definitions_are_rejected(build: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        build()


def test_bare_str_values_hint_at_a_tuple() -> None:
    with pytest.raises(TypeError, match=r"did you mean \('enterprise',\)"):
        AttributeRule("r", "segment", "enterprise", 1)


# ---------------------------------------------------------------- the breakdown property

KINDS = ("email_click", "page_view", "demo_request")
GROUP_NAMES = ("engagement", "web")
points = st.decimals(-1000, 1000, places=4).map(float)
decays = st.one_of(
    st.none(),
    st.builds(
        LinearDecay,
        st.sampled_from([0.1, 0.25, 0.5, 1.0, 1 / 3]),
        st.integers(1, 60).map(lambda d: timedelta(days=d)),
    ),
    st.builds(TimeWindow, st.integers(1, 60).map(lambda d: timedelta(days=d))),
)
caps = st.one_of(st.none(), st.decimals(0, 500, places=3).map(float))


@st.composite
def scorers(draw: st.DrawFn) -> PointsScorer:
    n = draw(st.integers(0, 6))
    rules = [
        PointsRule(
            f"rule{i}",
            draw(points),
            kind=draw(st.one_of(st.none(), st.sampled_from(KINDS))),
            where=draw(st.sampled_from([{}, {"campaign": "spring"}])),
            repeatable=draw(st.booleans()),
            group=draw(st.sampled_from(GROUP_NAMES)),
        )
        for i in range(n)
    ]
    groups = [ScoreGroup(name, cap=draw(caps), decay=draw(decays)) for name in GROUP_NAMES]
    attribute_rules = [
        AttributeRule(f"attr{i}", "segment", (value,), draw(points))
        for i, value in enumerate(draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)))
    ]
    return PointsScorer(
        rules,
        groups=draw(st.sampled_from([groups, []])),
        total_cap=draw(caps),
        attribute_rules=attribute_rules,
    )


@st.composite
def leads(draw: st.DrawFn) -> Lead:
    touches = [
        Touch(
            f"t{i}",
            "L1",
            T0 + timedelta(minutes=draw(st.integers(0, 90 * 24 * 60))),
            draw(st.sampled_from(KINDS)),
            draw(st.sampled_from([{}, {"campaign": "spring"}, {"campaign": "autumn"}])),
        )
        for i in range(draw(st.integers(0, 25)))
    ]
    segment = draw(st.sampled_from(["a", "b", "c", None]))
    return Lead("L1", {} if segment is None else {"segment": segment}, tuple(touches))


ats = st.integers(-5, 120).map(lambda d: T0 + timedelta(days=d, seconds=17))


@given(scorer=scorers(), lead=leads(), at=ats)
def test_breakdown_always_adds_up_to_the_value(
    scorer: PointsScorer, lead: Lead, at: datetime
) -> None:
    score = scorer(lead, at)
    assert_adds_up(score)
    if scorer.total_cap is not None:
        assert score.value <= scorer.total_cap
    assert score == scorer(lead, at)


@given(scorer=scorers(), lead=leads(), at=ats)
def test_each_capped_group_stays_within_its_cap(
    scorer: PointsScorer, lead: Lead, at: datetime
) -> None:
    score = scorer(lead, at)
    group_of = {r.name: r.group for r in scorer.rules}
    for group in scorer.groups:
        if group.cap is None:
            continue
        total = sum(
            (
                Decimal(repr(i.points))
                for i in score.breakdown
                if group_of.get(i.rule) == group.name or i.rule == f"cap:{group.name}"
            ),
            Decimal(0),
        )
        assert total <= Decimal(repr(group.cap))


@given(scorer=scorers(), lead=leads(), at=ats, later=st.integers(1, 100))
def test_touches_after_at_never_change_the_score(
    scorer: PointsScorer, lead: Lead, at: datetime, later: int
) -> None:
    extra = Touch("late", "L1", at + timedelta(minutes=later), "demo_request")
    more = Lead(lead.lead_id, lead.attributes, (*lead.touches, extra))
    assert scorer(more, at) == scorer(lead, at)


@given(st.lists(st.tuples(st.text(max_size=3), points), max_size=10))
def test_from_breakdown_adds_up(pairs: list[tuple[str, float]]) -> None:
    score = Score.from_breakdown([ScoreItem(rule, p) for rule, p in pairs])
    assert_adds_up(score)


def test_from_breakdown_rounds_items_and_checks_them() -> None:
    score = Score.from_breakdown(
        [ScoreItem("a", 0.1), ScoreItem("b", 0.2), ScoreItem("c", 1 / 3)], grade="B"
    )
    assert score.value == 0.633333
    assert [i.points for i in score.breakdown] == [0.1, 0.2, 0.333333]
    assert score.grade == "B"
    with pytest.raises(ValueError, match="finite points"):
        Score.from_breakdown([ScoreItem("a", math.nan)])
    with pytest.raises(TypeError, match="must be a ScoreItem"):
        Score.from_breakdown([("a", 1.0)])  # type: ignore[list-item]


# ---------------------------------------------------------------- fit grades

GRADER = FitGrader(
    [
        FitCriterion("enterprise", "segment", ("enterprise",), steps=3),
        FitCriterion("decision_maker", "role", ("cto", "ceo"), steps=2),
        FitCriterion("in_market", "country", ("FR", "DE")),
        FitCriterion("student", "role", ("student",), steps=-3),
    ]
)


@pytest.mark.parametrize(
    ("attributes", "grade"),
    [
        ({}, "D"),
        ({"country": "FR"}, "D+"),
        ({"segment": "enterprise"}, "C"),
        ({"segment": "enterprise", "role": "cto"}, "B-"),
        ({"segment": "enterprise", "role": "cto", "country": "DE"}, "B"),
        ({"role": "student"}, "F"),  # clamped at the bottom
        ({"role": "student", "country": "FR"}, "F"),
    ],
)
def test_fit_grades(attributes: dict[str, Any], grade: str) -> None:
    score = GRADER(lead(**attributes), T0)
    assert score.grade == grade
    assert score.value == GRADES.index(grade)
    assert_adds_up(score)


def test_fit_grade_breakdown_and_clamping() -> None:
    grader = FitGrader([FitCriterion("big", "size", ("big",), steps=20)])
    score = grader(lead(size="big"), T0)
    assert score.grade == "A+"
    assert score.value == 12
    assert score.breakdown == (
        ScoreItem("start", 2.0, "every lead starts at D"),
        ScoreItem("big", 20.0, "size = 'big': +20 third(s)"),
        ScoreItem("clamp", -10.0, "clamped at A+ (top)"),
    )
    low = GRADER(lead(role="student"), T0)
    assert low.breakdown[-1] == ScoreItem("clamp", 1.0, "clamped at F (bottom)")


def test_fit_ladder() -> None:
    assert GRADES[0] == "F"
    assert GRADES[2] == "D"
    assert GRADES[-1] == "A+"
    assert len(GRADES) == 13


def test_fit_grader_validation() -> None:
    with pytest.raises(ValueError, match="2 problems"):
        FitGrader(
            [
                FitCriterion("a", "x", (1,)),
                FitCriterion("a", "y", (1,)),
                FitCriterion("start", "x", (1,)),
            ]
        )


# ---------------------------------------------------------------- combined


def test_combined_scorer_takes_value_from_engagement_and_grade_from_fit() -> None:
    combined = CombinedScorer(PointsScorer([CLICK]), GRADER)
    score = combined(lead(touch(1, "email_click", T0), segment="enterprise"), T0)
    assert score.value == 5
    assert score.grade == "C"
    assert [i.rule for i in score.breakdown] == ["clicks", "fit:start", "fit:enterprise"]
    engagement = [i.points for i in score.breakdown if not i.rule.startswith("fit:")]
    assert math.fsum(engagement) == score.value
    assert isinstance(combined, Scorer)


def test_combined_scorer_names_the_broken_part() -> None:
    combined = CombinedScorer(PointsScorer([CLICK]), lambda lead, at: None)  # type: ignore[arg-type]
    with pytest.raises(HookError) as info:
        combined(lead(), T0)
    assert info.value.hook == "fit"


# ---------------------------------------------------------------- checked_score


def _returning(value: object) -> Scorer:
    def scorer(lead: Lead, at: datetime) -> Score:
        return value  # type: ignore[return-value]

    return scorer


def _raising(lead: Lead, at: datetime) -> Score:
    msg = "boom"
    raise KeyError(msg)


def test_checked_score_returns_a_valid_score() -> None:
    score = checked_score("clicks", PointsScorer([CLICK]), lead(touch(1, "email_click", T0)), T0)
    assert score.value == 5


def test_checked_score_wraps_a_raising_scorer() -> None:
    with pytest.raises(HookError) as info:
        checked_score("mine", _raising, lead(), T0, touch_id="t9")
    error = info.value
    assert error.hook == "mine"
    assert error.subject == "t9"
    assert isinstance(error.__cause__, KeyError)
    assert "raised KeyError" in str(error)
    assert "'mine'" in str(error)
    assert "'t9'" in str(error)


def test_checked_score_names_the_lead_without_a_touch() -> None:
    with pytest.raises(HookError) as info:
        checked_score("mine", _raising, lead(), T0)
    assert info.value.subject == "L1"


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (None, "must return a Score (got None that is a NoneType)"),
        (5.0, "must return a Score (got 5.0 that is a float)"),
        ("12", "must return a Score (got '12' that is a str)"),
        (True, "must return a Score (got True that is a bool)"),
        (Score(math.nan), "value is not a finite number (got nan that is a float)"),
        (Score(math.inf), "value is not a finite number (got inf that is a float)"),
        (Score(-math.inf), "value is not a finite number (got -inf that is a float)"),
        (Score("12"), "value is not a finite number (got '12' that is a str)"),  # type: ignore[arg-type]
        (Score(True), "value is not a finite number (got True that is a bool)"),
        (Score(None), "value is not a finite number (got None that is a NoneType)"),  # type: ignore[arg-type]
        (Score(1.0, [ScoreItem("a", 1.0)]), "breakdown is not a tuple"),  # type: ignore[arg-type]
        (Score(1.0, ("a",)), "breakdown[0] is not a ScoreItem"),  # type: ignore[arg-type]
        (Score(1.0, (ScoreItem("a", math.nan),)), "breakdown[0] is not a ScoreItem with finite"),
        (Score(1.0, grade=3), "grade is neither None nor a str (got 3 that is a int)"),  # type: ignore[arg-type]
    ],
)
def test_checked_score_rejects_invalid_results(returned: object, expected: str) -> None:
    with pytest.raises(HookError) as info:
        checked_score("mine", _returning(returned), lead(), T0, touch_id="t9")
    error = info.value
    assert expected in str(error)
    assert str(error).startswith("hook 'mine' for 't9': ")
    assert "lead 'L1'" in str(error)
    assert error.hook == "mine"
    assert error.subject == "t9"
    assert error.received is returned


# ---------------------------------------------------------------- entry points

FIXTURE_DIR = Path(__file__).parent


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install fake entry points; returns a function taking (name, value, group) triples."""
    monkeypatch.syspath_prepend(str(FIXTURE_DIR))

    def install(*entries: tuple[str, str, str]) -> None:
        eps = [importlib.metadata.EntryPoint(name=n, value=v, group=g) for n, v, g in entries]

        def fake(*, group: str) -> list[importlib.metadata.EntryPoint]:
            return [ep for ep in eps if ep.group == group]

        monkeypatch.setattr(importlib.metadata, "entry_points", fake)

    return install


def _scorers(*pairs: tuple[str, str]) -> Iterable[tuple[str, str, str]]:
    return [(n, v, SCORER_GROUP) for n, v in pairs]


def test_load_scorer_instantiates_a_class(plugins: Any) -> None:
    plugins(*_scorers(("counter", "plugin_fixture:TouchCounter")))
    scorer = load_scorer("counter")
    assert type(scorer).__name__ == "TouchCounter"
    assert scorer(lead(touch(1, "a", T0), touch(2, "b", T0 + DAY)), T0).value == 1


def test_load_scorer_takes_functions_and_instances_as_they_are(plugins: Any) -> None:
    plugins(
        *_scorers(
            ("constant", "plugin_fixture:constant_scorer"),
            ("clicks", "plugin_fixture:CLICKS"),
        )
    )
    assert load_scorer("constant")(lead(), T0).value == 7
    clicks = load_scorer("clicks")
    assert isinstance(clicks, PointsScorer)
    assert checked_score("clicks", clicks, lead(touch(1, "email_click", T0)), T0).value == 5


def test_available_scorers_are_sorted_and_unique(plugins: Any) -> None:
    plugins(
        *_scorers(
            ("zeta", "plugin_fixture:constant_scorer"),
            ("alpha", "plugin_fixture:CLICKS"),
            ("zeta", "plugin_fixture:TouchCounter"),
        ),
        ("other_group", "plugin_fixture:CLICKS", "something.else"),
    )
    assert available_scorers() == ("alpha", "zeta")
    assert load_scorer("zeta")(lead(), T0).value == 7  # the first one found wins


def test_unknown_scorer_lists_the_known_ones(plugins: Any) -> None:
    plugins(*_scorers(("alpha", "plugin_fixture:CLICKS"), ("beta", "plugin_fixture:CLICKS")))
    with pytest.raises(UnknownHook) as info:
        load_scorer("gamma")
    assert info.value.kind == "scorer"
    assert info.value.names == ("gamma",)
    assert info.value.known == ("alpha", "beta")
    assert isinstance(info.value, LookupError)


def test_no_plugins_installed(plugins: Any) -> None:
    plugins()
    assert available_scorers() == ()
    with pytest.raises(UnknownHook, match="registered: none"):
        load_scorer("anything")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plugin_fixture:no_such_name", "cannot load scorer entry point"),
        ("no_such_module_for_buyerjourney:thing", "ModuleNotFoundError"),
        ("plugin_fixture:NeedsArguments", "cannot be instantiated without arguments"),
        ("plugin_fixture:NOT_A_HOOK", "must name a scorer"),
    ],
)
def test_broken_scorer_plugins_raise_hook_errors(plugins: Any, value: str, expected: str) -> None:
    plugins(*_scorers(("broken", value)))
    with pytest.raises(HookError, match=expected) as info:
        load_scorer("broken")
    assert info.value.hook == "broken"


def test_real_entry_points_can_be_listed() -> None:
    assert isinstance(available_scorers(), tuple)


@given(
    fraction=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0, 1 / 3]),
    every_days=st.integers(1, 90),
    ages=st.lists(st.integers(0, 200 * 24 * 3600), min_size=1, max_size=20),
    points=st.decimals(-100, 100, places=2).map(float),
)
def test_decayed_points_match_the_formula(
    fraction: float, every_days: int, ages: list[int], points: float
) -> None:
    every = timedelta(days=every_days)
    at = T0 + timedelta(days=300)
    touches = [touch(i, "k", at - timedelta(seconds=age)) for i, age in enumerate(ages)]
    scorer = PointsScorer(
        [PointsRule("r", points, kind="k")],
        groups=[ScoreGroup("engagement", decay=LinearDecay(fraction, every))],
    )
    expected = sum(points * max(0.0, 1 - fraction * age / every.total_seconds()) for age in ages)
    assert math.isclose(scorer(lead(*touches), at).value, expected, abs_tol=1e-6 * len(ages))
