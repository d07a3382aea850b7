"""A fit grade and the fit-by-engagement matrix on the bulk path: exactly the engine's log.

A :class:`~buyerjourney.scoring.CombinedScorer` of a points scorer and a
:class:`~buyerjourney.scoring.FitGrader`, and a
:class:`~buyerjourney.policies.MatrixPolicy` alone or inside ``AnyOf`` and
``AllOf``, take the columnar path: the grade comes from the lead's profile
merged touch by touch, and the decision table has a column per letter of
the matrix. Every test compares with the reference engine: records
(breakdowns with their ``fit:`` items, grades, refusals, handoffs) and
journeys. Subclasses are not trusted to behave like their base and take a
slower path.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy")

from buyerjourney import (  # noqa: E402
    AllOf,
    AnyOf,
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    Funnel,
    MatrixPolicy,
    PointsRule,
    PointsScorer,
    Score,
    ScoreItem,
    Touch,
    TouchKindPolicy,
    default_pipeline,
    presets,
)
from buyerjourney._pipeline import Pipeline  # noqa: E402
from buyerjourney.bulk import TouchBatch, _replay, plan, replay  # noqa: E402
from buyerjourney.policies import ANY_STAGE, CELLS  # noqa: E402
from buyerjourney.scoring import Lead  # noqa: E402
from buyerjourney.testing import funnels, standard_hooks  # noqa: E402
from test_bulk_blocks import blocks_of, columnar  # noqa: E402
from test_fast import (  # noqa: E402
    T0,
    _owner_rules,
    assert_same,
    points_scorers,
    policies,
    touch_streams,
)

_CRITERIA = (
    ("ent", "segment", ("enterprise",)),
    ("smb", "segment", ("smb",)),
    ("big", "employees", (1000, 5000)),
    ("huge", "employees", (5000,)),
)
_BANDS = ((20, 10, 5), (12.5, 5, 0), (3, 2, 1), (0.5, 0, -3))


@st.composite
def fit_graders(draw: st.DrawFn) -> FitGrader:
    """Graders over the attributes the streams bring; large steps reach both ends of the ladder."""
    chosen = draw(st.lists(st.sampled_from(_CRITERIA), unique_by=lambda c: c[0], max_size=4))
    return FitGrader(
        [
            FitCriterion(
                name, attribute, values, steps=draw(st.sampled_from((1, 3, 6, -2, -4, 12)))
            )
            for name, attribute, values in chosen
        ]
    )


_ROWS = tuple(
    frozenset(c for c in CELLS if c[0] in letters) for letters in ("AB", "CD", "D", "ABCD")
)


@st.composite
def matrix_policies(draw: st.DrawFn, funnel: Funnel) -> MatrixPolicy:
    """Matrices that often fire: from the initial stage, with an event legal there, many cells."""
    initial = funnel.initial.name
    legal = funnel.allowed_events(initial)
    events = st.sampled_from([*funnel.events, "no_such_event"])
    return MatrixPolicy(
        draw(st.sampled_from(legal) | events if legal else events),
        accept=draw(
            st.sampled_from(_ROWS) | st.frozensets(st.sampled_from(sorted(CELLS)), min_size=1)
        ),
        engagement_bands=draw(st.sampled_from(_BANDS)),
        stages=draw(
            st.sampled_from((ANY_STAGE, (initial,)))
            | st.lists(st.sampled_from(funnel.stage_names), max_size=2, unique=True).map(tuple)
        ),
    )


@st.composite
def matrix_trees(draw: st.DrawFn, funnel: Funnel) -> Any:
    """A matrix alone, or with the other built-in policies under ``AnyOf`` / ``AllOf``."""
    matrix = draw(matrix_policies(funnel))
    shape = draw(st.sampled_from(("leaf", "any", "all", "legal")))
    if shape == "leaf":
        return matrix
    if shape == "legal":  # mostly legal moves: the matrix moves leads out of the initial stage
        initial = funnel.initial.name
        first = funnel.allowed_events(initial)
        if first:
            matrix = MatrixPolicy(
                draw(st.sampled_from(first)),
                accept=matrix.accept,
                engagement_bands=matrix.engagement_bands,
                stages=draw(st.sampled_from(((initial,), ANY_STAGE))),
            )
        kinds = TouchKindPolicy({e: e for e in funnel.events} or {"page_view": "x"})
        return AnyOf(matrix, kinds)
    parts = [matrix]
    other = draw(policies(funnel))
    if other is not None:
        parts.insert(draw(st.integers(0, 1)), other)
    if draw(st.booleans()):
        parts.append(draw(matrix_policies(funnel)))
    return AnyOf(*parts) if shape == "any" else AllOf(*parts)


@st.composite
def matrix_cases(
    draw: st.DrawFn, scorer_kind: str = "combined", *, matrix: bool = True
) -> tuple[Pipeline, list[Touch]]:
    funnel = draw(
        st.one_of(
            st.sampled_from(
                [presets.seed(), presets.demand_waterfall(), presets.hubspot_lifecycle()]
            ),
            funnels(max_stages=6),
        )
    )
    if scorer_kind == "combined":
        scorer: Any = CombinedScorer(draw(points_scorers()), draw(fit_graders()))
    elif scorer_kind == "ungraded":
        scorer = draw(st.none() | points_scorers())
    else:
        scorer = graded_scorer
    pipeline = Pipeline(
        funnel=funnel,
        owners=_owner_rules(funnel, draw(st.booleans())),
        hooks=standard_hooks(),
        scorer=scorer,
        policy=draw(matrix_trees(funnel) if matrix else policies(funnel)),
        thresholds=tuple(draw(st.lists(st.sampled_from((0, 5, 10, 12.5, 20)), max_size=3))),
    )
    return pipeline, draw(touch_streams(funnel))


def graded_scorer(lead: Lead, at: datetime) -> Score:
    """A scorer of one's own with a grade: 2.5 points a touch, a grade by the touch count."""
    n = len(lead.touches)
    ladder = ("A+", "B-", "C", "D+", "F", None)
    return Score.from_breakdown(
        [ScoreItem("touches", 2.5 * n, f"{n} touches")], grade=ladder[n % len(ladder)]
    )


# ---------------------------------------------------------------- differential


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix_cases())
def test_a_combined_scorer_and_a_matrix_replay_columnar_like_the_engine(
    case: tuple[Pipeline, list[Touch]],
) -> None:
    pipeline, touches = case
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar", result.reasons


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix_cases(matrix=False))
def test_a_combined_scorer_with_other_policies_replays_columnar_like_the_engine(
    case: tuple[Pipeline, list[Touch]],
) -> None:
    pipeline, touches = case
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar", result.reasons
    assert all(r.data["grade"] for r in result.records() if r.kind.value == "scored")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix_cases("ungraded"))
def test_a_matrix_over_scores_without_a_grade_never_fires(
    case: tuple[Pipeline, list[Touch]],
) -> None:
    pipeline, touches = case
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar", result.reasons
    assert not any(r.reason.startswith("matrix cell") for r in result.records())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix_cases("hooks"))
def test_a_matrix_over_a_graded_scorer_of_ones_own_replays_like_the_engine(
    case: tuple[Pipeline, list[Touch]],
) -> None:
    pipeline, touches = case
    result = assert_same(pipeline, touches)
    assert result.mode == "hooks", result.reasons


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrix_cases(), st.integers(1, 6), st.sampled_from((0, 64)))
def test_a_matrix_replay_in_blocks_and_from_columns_equals_the_engine(
    case: tuple[Pipeline, list[Touch]], size: int, tail: int
) -> None:
    pipeline, touches = case
    batch = columnar(touches)
    # with _TAIL = 0 every touch rank is a vectorised round, however few leads it has
    with blocks_of(size), mock.patch.object(_replay, "_TAIL", tail):
        result = replay(pipeline, batch)
    assert result.mode == "columnar", result.reasons
    reference = pipeline.engine()
    reference.ingest(list(batch.touches()))
    assert result.records() == list(reference.records)
    assert result.journey_dict() == dict(reference.journeys)


# ---------------------------------------------------------------- the bench's pipeline


def bench_like() -> Pipeline:
    """The seed pipeline with a fit grade and a matrix before its kind policy (as the bench)."""
    base = default_pipeline(presets.seed())
    grader = FitGrader(
        [
            FitCriterion("enterprise", "segment", ("enterprise",), steps=6),
            FitCriterion("mid_market", "segment", ("mid_market",), steps=3),
        ]
    )
    assert isinstance(base.policy, AnyOf)
    matrix = MatrixPolicy(
        "engage",
        accept=frozenset({"A1", "A2", "B1", "B2", "C1"}),
        engagement_bands=(50, 25, 10),
        stages=("awareness",),
    )
    return Pipeline(
        base.funnel,
        base.owners,
        scorer=CombinedScorer(engagement=base.scorer, fit=grader),
        policy=AnyOf(matrix, base.policy.policies[1]),
        thresholds=base.thresholds,
    )


def seed_stream(n: int) -> list[Touch]:
    kinds = ("page_view", "email_click", "demo_request", "pricing_view", "webinar_attended")
    segments = ({"segment": "enterprise"}, {"segment": "mid_market"}, {"segment": "smb"}, {})
    touches = []
    at = T0
    for i in range(n):
        at += timedelta(hours=(i * 7919) % 23)
        lead = (i * 31) % 41
        touches.append(
            Touch(
                f"t{i}",
                f"lead{lead}",
                at,
                kinds[(i * 13) % len(kinds)],
                attributes=segments[(lead + i // 97) % 4] if i % 5 == 0 else {},
            )
        )
    return touches


def test_the_bench_matrix_pipeline_is_columnar_and_exact() -> None:
    pipeline = bench_like()
    assert plan(pipeline).mode == "columnar"
    result = assert_same(pipeline, seed_stream(800))
    assert result.mode == "columnar"
    with mock.patch.object(_replay, "_TAIL", 0):  # every touch rank a vectorised round
        assert assert_same(pipeline, seed_stream(800)).records() == result.records()
    records = result.records()
    moved = [r for r in records if r.reason.startswith("matrix cell")]
    assert moved, "the matrix never fired: the test does not exercise it"
    grades = {r.data["grade"] for r in records if r.kind.value == "scored"}
    assert grades == {"B", "C", "D"}
    assert all(
        any(item[0].startswith("fit:") for item in r.data["breakdown"])
        for r in records
        if r.kind.value == "scored"
    )
    for mode in ("hooks", "reference"):
        assert assert_same(pipeline, seed_stream(300), mode=mode).mode == mode


def test_the_grade_follows_the_profile_merged_touch_by_touch() -> None:
    pipeline = bench_like()
    touches = [
        Touch("1", "a", T0, "page_view", attributes={"segment": "smb", "employees": 5}),
        Touch("2", "a", T0 + timedelta(hours=1), "page_view"),
        Touch("3", "a", T0 + timedelta(hours=2), "page_view", attributes={"segment": "enterprise"}),
        Touch("4", "a", T0 + timedelta(hours=3), "page_view", attributes={"employees": 9}),
        Touch("5", "a", T0 + timedelta(hours=4), "page_view", attributes={"segment": "mid_market"}),
        Touch("6", "b", T0 + timedelta(hours=5), "page_view"),
    ]
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar"
    grades = [r.data["grade"] for r in result.records() if r.kind.value == "scored"]
    assert grades == ["D", "D", "B", "B", "C", "D"]
    assert result.journeys["a"].grade == "C"
    assert result.journeys["a"].attributes == {"segment": "mid_market", "employees": 9}


def test_a_grade_off_either_end_of_the_ladder_is_clamped_and_f_is_the_d_row() -> None:
    funnel = presets.seed()
    grader = FitGrader(
        [
            FitCriterion("top", "segment", ("enterprise",), steps=40),
            FitCriterion("bottom", "segment", ("junk",), steps=-9),
        ]
    )
    scorer = CombinedScorer(PointsScorer([PointsRule("visit", 5, kind="page_view")]), grader)
    base = default_pipeline(funnel)
    policy = AnyOf(
        MatrixPolicy("engage", accept=frozenset({"D4"}), engagement_bands=(50, 25, 10), stages=()),
        MatrixPolicy("engage", accept=frozenset({"A4"}), engagement_bands=(50, 25, 10), stages=()),
    )
    pipeline = Pipeline(funnel, base.owners, scorer=scorer, policy=policy)
    touches = [
        Touch("1", "low", T0, "page_view", attributes={"segment": "junk"}),
        Touch(
            "2", "high", T0 + timedelta(hours=1), "page_view", attributes={"segment": "enterprise"}
        ),
    ]
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar"
    scored = {r.lead_id: r for r in result.records() if r.kind.value == "scored"}
    assert (scored["low"].data["grade"], scored["high"].data["grade"]) == ("F", "A+")
    reasons = sorted(r.reason for r in result.records() if r.kind.value == "transition")
    assert reasons == [
        "matrix cell A4 (grade A+, score 5)",
        "matrix cell D4 (grade F, score 5)",
    ]


def test_the_stages_of_a_matrix_limit_where_it_fires() -> None:
    funnel = presets.seed()
    base = default_pipeline(funnel)
    events = funnel.allowed_events(funnel.initial.name)
    grader = FitGrader([FitCriterion("ent", "segment", ("enterprise",), steps=6)])
    scorer = CombinedScorer(PointsScorer([PointsRule("visit", 30, kind="page_view")]), grader)
    touches = [
        Touch(
            str(i), "a", T0 + timedelta(hours=i), "page_view", attributes={"segment": "enterprise"}
        )
        for i in range(4)
    ]
    for stages, fires in ((ANY_STAGE, True), ((funnel.initial.name,), True), (("nowhere",), False)):
        matrix = MatrixPolicy(
            events[0], accept=frozenset(CELLS), engagement_bands=(50, 25, 10), stages=stages
        )
        pipeline = Pipeline(funnel, base.owners, scorer=scorer, policy=matrix)
        records = assert_same(pipeline, touches).records()
        assert any(r.reason.startswith("matrix cell") for r in records) is fires
        if stages == ANY_STAGE:  # it keeps firing after the move: refusals, as the engine logs
            assert any(r.kind.value == "refused" for r in records)


def test_a_list_valued_attribute_is_compared_as_the_engine_freezes_it() -> None:
    funnel = presets.seed()
    base = default_pipeline(funnel)
    grader = FitGrader([FitCriterion("suite", "products", (("crm", "ads"),), steps=3)])
    scorer = CombinedScorer(PointsScorer([PointsRule("visit", 1)]), grader)
    pipeline = Pipeline(funnel, base.owners, scorer=scorer)
    batch = TouchBatch(
        ["a"],
        [0, 0],
        [1_700_000_000_000_000, 1_700_000_100_000_000],
        ["page_view"],
        [0, 0],
        attributes={0: {"products": ["crm", "ads"]}},  # a list: the engine sees a tuple
    )
    engine = pipeline.engine()
    engine.ingest(list(batch.touches()))
    result = replay(pipeline, batch)
    assert result.mode == "columnar"
    assert result.records() == list(engine.records)
    assert result.journey_dict() == dict(engine.journeys)
    assert result.journeys["a"].grade == "C"


# ---------------------------------------------------------------- other paths


class MyGrader(FitGrader):
    """A fit grader subclass: it could grade any way it likes."""

    def __call__(self, lead: Lead, at: datetime) -> Score:
        score = super().__call__(lead, at)
        return Score(score.value, score.breakdown, "A" if len(lead.attributes) > 1 else "C")


class MyCriterion(FitCriterion):
    """A fit criterion subclass."""


class MyCombined(CombinedScorer):
    """A combined scorer subclass."""


class MyMatrix(MatrixPolicy):
    """A matrix policy subclass."""


def _grader(criterion: type[FitCriterion] = FitCriterion) -> FitGrader:
    return FitGrader([criterion("ent", "segment", ("enterprise",), steps=6)])


def _stream() -> list[Touch]:
    segments = ({"segment": "enterprise", "employees": 5}, {"segment": "smb"}, {})
    return [
        Touch(
            f"t{i}",
            f"l{i % 4}",
            T0 + timedelta(hours=3 * i),
            ("page_view", "demo_request", "email_click")[i % 3],
            attributes=segments[(i // 4) % 3],
        )
        for i in range(24)
    ]


@pytest.mark.parametrize(
    ("scorer", "words"),
    [
        (
            CombinedScorer(PointsScorer([PointsRule("v", 9)]), MyGrader(_grader().criteria)),
            ["fit", "MyGrader"],
        ),
        (
            CombinedScorer(PointsScorer([PointsRule("v", 9)]), _grader(MyCriterion)),
            ["criteria[0]", "MyCriterion"],
        ),
        (
            MyCombined(PointsScorer([PointsRule("v", 9)]), _grader()),
            ["MyCombined", "CombinedScorer"],
        ),
    ],
)
def test_a_subclass_in_a_combined_scorer_is_called_touch_by_touch(
    scorer: Any, words: list[str]
) -> None:
    funnel = presets.seed()
    base = default_pipeline(funnel)
    matrix = MatrixPolicy(
        "engage",
        accept=frozenset({"A1", "A2", "C2", "C3"}),
        engagement_bands=(30, 15, 5),
        stages=(),
    )
    pipeline = Pipeline(funnel, base.owners, scorer=scorer, policy=matrix)
    chosen = plan(pipeline)
    assert chosen.mode == "hooks"
    for word in words:
        assert word in " ".join(chosen.reasons), chosen.reasons
    assert assert_same(pipeline, _stream()).mode == "hooks"


def test_a_matrix_subclass_goes_to_the_engine() -> None:
    funnel = presets.seed()
    base = default_pipeline(funnel)
    scorer = CombinedScorer(PointsScorer([PointsRule("v", 9)]), _grader())
    mine = MyMatrix("engage", accept=frozenset({"A1"}), engagement_bands=(30, 15, 5), stages=())
    pipeline = Pipeline(funnel, base.owners, scorer=scorer, policy=AnyOf(TouchKindPolicy({}), mine))
    chosen = plan(pipeline)
    assert chosen.mode == "reference"
    assert "AnyOf[1]" in chosen.reasons[0]
    assert "MyMatrix" in chosen.reasons[0]
    assert assert_same(pipeline, _stream()).mode == "reference"


def test_a_grade_off_the_ladder_sends_the_batch_to_the_engine() -> None:
    def hot(lead: Lead, at: datetime) -> Score:
        return Score(float(len(lead.touches)), grade="hot" if len(lead.touches) > 2 else "B")

    funnel = presets.seed()
    base = default_pipeline(funnel)
    matrix = MatrixPolicy("engage", accept=frozenset({"B1"}), engagement_bands=(3, 2, 1), stages=())
    pipeline = Pipeline(funnel, base.owners, scorer=hot, policy=matrix)
    assert plan(pipeline).mode == "hooks"
    result = assert_same(pipeline, _stream())
    assert result.mode == "reference"
    assert any("'hot'" in reason and "fit ladder" in reason for reason in result.reasons)
    # without a matrix the grade is only recorded: the hooks path keeps it
    pipeline = Pipeline(funnel, base.owners, scorer=hot, policy=TouchKindPolicy({"x": "engage"}))
    assert assert_same(pipeline, _stream()).mode == "hooks"


# ---------------------------------------------------------------- the batch entry point


def test_replay_batch_gives_each_matrix_decision_its_own_reason() -> None:
    pd = pytest.importorskip("pandas")
    from buyerjourney.bulk import records_frame, replay_batch  # noqa: PLC0415

    funnel = presets.seed()
    base = default_pipeline(funnel)
    grader = FitGrader(
        [
            FitCriterion("ent", "segment", ("enterprise",), steps=9),
            FitCriterion("mid", "segment", ("mid_market",), steps=6),
        ]
    )
    scorer = CombinedScorer(PointsScorer([PointsRule("visit", 5, kind="page_view")]), grader)
    matrix = MatrixPolicy(
        "engage", accept=frozenset({"A4", "B4"}), engagement_bands=(50, 25, 10), stages=()
    )
    pipeline = Pipeline(funnel, base.owners, scorer=scorer, policy=matrix)
    touches = [  # the same stage, score and touch kind; grades A and B
        Touch("1", "a", T0, "page_view", attributes={"segment": "enterprise"}),
        Touch("2", "b", T0 + timedelta(hours=1), "page_view", attributes={"segment": "mid_market"}),
    ]
    table = pd.DataFrame(
        {
            "touch_id": [t.touch_id for t in touches],
            "lead_id": [t.lead_id for t in touches],
            "at": [t.at for t in touches],
            "kind": [t.kind for t in touches],
            "attributes": [dict(t.attributes) for t in touches],
        }
    )
    until = T0 + timedelta(days=1)
    result = replay_batch(pipeline, table, until=until)
    engine = pipeline.engine()
    engine.ingest(touches)
    engine.advance(until)
    expected = records_frame(engine.records)
    assert result.records["reason"].tolist() == expected["reason"].tolist()


def test_attribute_points_compare_a_list_valued_attribute_as_the_engine_freezes_it() -> None:
    # regression: the attribute points of a columnar batch compared the raw list
    funnel = presets.seed()
    base = default_pipeline(funnel)
    scorer = PointsScorer(
        [PointsRule("visit", 1)],
        attribute_rules=[AttributeRule("suite", "products", (("crm", "ads"),), 7)],
    )
    pipeline = Pipeline(funnel, base.owners, scorer=scorer)
    batch = TouchBatch(
        ["a"],
        [0, 0],
        [1_700_000_000_000_000, 1_700_000_100_000_000],
        ["page_view"],
        [0, 0],
        attributes={0: {"products": ["crm", "ads"]}},
    )
    engine = pipeline.engine()
    engine.ingest(list(batch.touches()))
    result = replay(pipeline, batch)
    assert result.mode == "columnar"
    assert [r.score for r in result.records() if r.kind.value == "scored"] == [8.0, 9.0]
    assert result.records() == list(engine.records)
