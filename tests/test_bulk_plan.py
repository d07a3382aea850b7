"""The bulk path is exact or it is not taken: plan() whitelists, limits and says why.

Each test here is a case the bulk path used to get silently wrong (or crash
on): a funnel with more stages or teams than an int8 code holds, a decay
subclass the kernel did not know, scores beyond the exact range of the
kernel's integers, and the reasons plan() gives for each fallback.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest

np = pytest.importorskip("numpy")

from buyerjourney import (  # noqa: E402
    AllOf,
    AnyOf,
    AttributeRule,
    CombinedScorer,
    FitCriterion,
    FitGrader,
    Funnel,
    LinearDecay,
    MatrixPolicy,
    OwnerRules,
    Pipeline,
    PointsRule,
    PointsScorer,
    Record,
    ScoreGroup,
    Stage,
    ThresholdPolicy,
    TimeWindow,
    Touch,
    TouchKindPolicy,
    Transition,
    default_pipeline,
    presets,
)
from buyerjourney.bulk import ColumnarLog, TouchBatch, plan, replay  # noqa: E402
from buyerjourney.bulk._plan import compile_plan  # noqa: E402
from buyerjourney.errors import BuyerJourneyError, ModeNotPossible  # noqa: E402

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)


def assert_same(pipeline: Pipeline, touches: list[Touch], *, mode: str = "auto") -> Any:
    """The bulk path gives exactly the engine's records and journeys."""
    engine = pipeline.engine()
    engine.ingest(touches)
    result = replay(pipeline, touches, mode=mode)  # type: ignore[arg-type]
    assert result.records() == list(engine.records), result.reasons
    assert result.journey_dict() == dict(engine.journeys), result.reasons
    return result


def scores(records: Iterable[Record]) -> list[float | None]:
    return [r.score for r in records if r.kind.value == "scored"]


# ---------------------------------------------------------------- wide funnels


def chain(n: int, *, teams: int = 1) -> Funnel:
    """A chain of *n* stages ``s0 -> s1 -> ...`` moved along by event ``next``.

    Stage *i* is owned by team ``team<i % teams>``, so a lead that walks the
    chain is handed off at every stage when *teams* is *n*.
    """
    stages = [
        Stage(
            f"s{i}",
            (i + 1) * 10,
            owner=f"team{i % teams}",
            initial=i == 0,
            terminal=i == n - 1,
            sla=timedelta(days=1) if i % 40 == 7 else None,
        )
        for i in range(n)
    ]
    transitions = [Transition("next", f"s{i}", f"s{i + 1}") for i in range(n - 1)]
    return Funnel("chain", stages, transitions)


def walk(n: int, leads: int = 2) -> list[Touch]:
    """Touches of kind ``next`` (and a few page views) for *leads* leads, in time order."""
    touches = []
    for i in range(n):
        for lead in range(leads):
            kind = "page_view" if i % 11 == 5 else "next"
            at = T0 + timedelta(hours=i * 13 + lead)
            touches.append(Touch(f"t{i}-{lead}", f"lead{lead}", at, kind))
    return touches


def test_a_funnel_of_more_than_127_stages_replays_like_the_engine() -> None:
    funnel = chain(130)
    pipeline = default_pipeline(funnel)
    touches = walk(150)
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar", result.reasons
    assert result.journeys["lead0"].stage == "s129"
    assert {r.target for r in result.records() if r.target} >= {"s128", "s129"}


def test_a_funnel_of_more_than_127_teams_replays_like_the_engine() -> None:
    funnel = chain(130, teams=130)
    pipeline = default_pipeline(funnel)
    result = assert_same(pipeline, walk(150, leads=1))
    assert result.mode == "columnar", result.reasons
    handoffs = [r for r in result.records() if r.kind.value == "handoff"]
    assert handoffs[-1].to_team == "team129"
    assert result.journeys["lead0"].owner == "team129"


def test_the_reference_path_writes_a_wide_funnel_into_columns() -> None:
    funnel = chain(130, teams=130)
    pipeline = default_pipeline(funnel)
    result = assert_same(pipeline, walk(150, leads=1), mode="reference")
    assert result.mode == "reference"
    assert result.summary().stages[-1].stage == "s129"


def test_a_columnar_log_of_a_wide_funnel_keeps_its_codes() -> None:
    funnel = chain(130, teams=130)
    engine = default_pipeline(funnel).engine()
    engine.ingest(walk(150, leads=1))
    log = ColumnarLog.from_records(funnel, engine.records)
    assert [log.stage_names[c] for c in log.target.tolist() if c >= 0][-1] == "s129"
    assert log.teams[int(log.to_team.max())] == "team129"
    assert log.records() == list(engine.records)


# ---------------------------------------------------------------- subclasses


class NoDecay(LinearDecay):
    """A "decay" that keeps every point: a subclass the kernel knows nothing of."""

    def factor(self, age: timedelta) -> Fraction:
        return Fraction(1)

    def _kept(self, ages: Iterable[int]) -> tuple[int, Fraction]:
        n = len(list(ages))
        return n, Fraction(n)


def _visits(scorer: Any) -> tuple[Pipeline, list[Touch]]:
    funnel = presets.seed()
    pipeline = Pipeline(funnel, OwnerRules.for_funnel(funnel), scorer=scorer)
    touches = [Touch(f"t{i}", "a", T0 + timedelta(days=i), "page_view") for i in range(3)]
    return pipeline, touches


def test_a_linear_decay_subclass_scores_as_the_engine_does() -> None:
    scorer = PointsScorer(
        [PointsRule("visit", 10, kind="page_view")],
        groups=[ScoreGroup("engagement", decay=NoDecay(0.5, timedelta(days=1)))],
    )
    pipeline, touches = _visits(scorer)
    engine = pipeline.engine()
    engine.ingest(touches)
    assert scores(engine.records) == [10, 20, 30]
    result = assert_same(pipeline, touches)
    assert scores(result.records()) == [10, 20, 30]
    assert result.mode == "hooks"
    assert any("NoDecay" in reason for reason in result.reasons)


def test_forcing_columnar_on_a_rejected_pipeline_raises_a_typed_error() -> None:
    scorer = PointsScorer(
        [PointsRule("visit", 10, kind="page_view")],
        groups=[ScoreGroup("engagement", decay=NoDecay(0.5, timedelta(days=1)))],
    )
    pipeline, touches = _visits(scorer)
    with pytest.raises(ModeNotPossible, match="NoDecay") as caught:
        replay(pipeline, touches, mode="columnar")
    assert isinstance(caught.value, (BuyerJourneyError, ValueError))
    assert (caught.value.mode, caught.value.possible) == ("columnar", "hooks")
    assert any("NoDecay" in reason for reason in caught.value.reasons)
    assert "mode='auto'" in str(caught.value)


class MyRule(PointsRule):
    """A points rule subclass."""


class MyGroup(ScoreGroup):
    """A score group subclass."""


class MyWindow(TimeWindow):
    """A time window subclass."""


class MyScorer(PointsScorer):
    """A points scorer subclass."""


class MyAttributeRule(AttributeRule):
    """An attribute rule subclass."""


class MyThreshold(ThresholdPolicy):
    """A threshold policy subclass."""


class MyOwners(OwnerRules):
    """Owner rules of one's own."""


def _pipeline(**changes: Any) -> Pipeline:
    funnel = presets.seed()
    base = default_pipeline(funnel)
    fields = {
        "funnel": funnel,
        "owners": base.owners,
        "scorer": base.scorer,
        "policy": base.policy,
        "thresholds": base.thresholds,
    }
    fields.update(changes)
    return Pipeline(**fields)


_RULE = PointsRule("visit", 10, kind="page_view")


@pytest.mark.parametrize(
    ("scorer", "words"),
    [
        (MyScorer([_RULE]), ["scorer", "MyScorer", "subclass", "PointsScorer"]),
        (PointsScorer([MyRule("visit", 10)]), ["rules[0]", "'visit'", "MyRule", "PointsRule"]),
        (
            PointsScorer([_RULE], groups=[MyGroup("engagement")]),
            ["group", "'engagement'", "MyGroup", "ScoreGroup"],
        ),
        (
            PointsScorer(
                [_RULE], groups=[ScoreGroup("engagement", decay=MyWindow(timedelta(days=1)))]
            ),
            ["decay", "'engagement'", "MyWindow", "TimeWindow"],
        ),
        (
            PointsScorer([_RULE], attribute_rules=[MyAttributeRule("ent", "segment", ("big",), 5)]),
            ["attribute_rules[0]", "'ent'", "MyAttributeRule", "AttributeRule"],
        ),
    ],
)
def test_plan_sends_a_scorer_it_cannot_vectorise_to_the_hooks_path(
    scorer: Any, words: list[str]
) -> None:
    chosen = plan(_pipeline(scorer=scorer))
    assert chosen.mode == "hooks"
    assert len(chosen.reasons) == 1
    for word in words:
        assert word in chosen.reasons[0]
    # and the hooks path gets it right
    pipeline = _pipeline(scorer=scorer)
    touches = [Touch(f"t{i}", "a", T0 + timedelta(days=i), "page_view") for i in range(3)]
    assert assert_same(pipeline, touches).mode == "hooks"


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        (MyThreshold(5, "engage", stages=()), ["policy", "MyThreshold", "ThresholdPolicy"]),
        (
            AnyOf(TouchKindPolicy({"x": "engage"}), AllOf(MyThreshold(5, "engage", stages=()))),
            ["AnyOf[1]", "AllOf[0]", "MyThreshold"],
        ),
    ],
)
def test_plan_sends_a_policy_it_cannot_compile_to_the_engine(policy: Any, words: list[str]) -> None:
    chosen = plan(_pipeline(policy=policy))
    assert chosen.mode == "reference"
    for word in words:
        assert word in chosen.reasons[0], chosen.reasons


def test_plan_names_every_reason_at_once() -> None:
    chosen = plan(
        _pipeline(
            scorer=MyScorer([_RULE]),
            policy=MyThreshold(5, "engage", stages=()),
            owners=MyOwners.for_funnel(presets.seed()),
        )
    )
    assert chosen.mode == "reference"
    text = " ".join(chosen.reasons)
    for word in ("MyScorer", "MyThreshold", "MyOwners"):
        assert word in text


def test_plan_sends_owner_rules_of_ones_own_to_the_engine() -> None:
    chosen = plan(_pipeline(owners=MyOwners.for_funnel(presets.seed())))
    assert chosen.mode == "reference"
    assert "MyOwners" in chosen.reasons[0]
    assert "OwnerRules" in chosen.reasons[0]


def test_plan_reasons_for_thresholds() -> None:
    inexact = plan(_pipeline(thresholds=(2**60 + 1,)))
    assert inexact.mode == "reference"
    assert str(2**60 + 1) in inexact.reasons[0]
    many = AnyOf(*(ThresholdPolicy(i, "engage", stages=()) for i in range(1, 20)))
    crowded = plan(_pipeline(policy=many))
    assert crowded.mode == "reference"
    assert "19" in crowded.reasons[0]
    assert "16" in crowded.reasons[0]


def test_plan_of_a_vectorisable_pipeline_has_no_reasons() -> None:
    chosen = plan(default_pipeline(presets.seed()))
    assert chosen.mode == "columnar"
    assert chosen.reasons == ()


# ---------------------------------------------------------------- exact range


def test_scores_beyond_the_exact_range_of_the_kernel_take_the_hooks_path() -> None:
    scorer = PointsScorer([PointsRule("huge", 4e12, kind="page_view")])
    pipeline, touches = _visits(scorer)
    result = assert_same(pipeline, touches)
    assert scores(result.records()) == [4e12, 8e12, 1.2e13]
    assert result.mode == "hooks"
    assert any("exact" in reason for reason in result.reasons)


def test_points_beyond_the_exact_range_of_the_kernel_take_the_hooks_path() -> None:
    scorer = PointsScorer([PointsRule("huge", 1e300, kind="page_view")], total_cap=1e301)
    chosen = plan(_pipeline(scorer=scorer))
    assert chosen.mode == "hooks"
    assert "'huge'" in chosen.reasons[0]
    pipeline, touches = _visits(scorer)
    assert assert_same(pipeline, touches).mode == "hooks"


def test_a_huge_cap_is_no_cap() -> None:
    scorer = PointsScorer(
        [PointsRule("visit", 10, kind="page_view")],
        groups=[ScoreGroup("engagement", cap=1e300)],
        total_cap=1e300,
    )
    pipeline, touches = _visits(scorer)
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar", result.reasons
    assert scores(result.records()) == [10, 20, 30]


def test_many_thresholds_crossed_at_once_are_all_recorded() -> None:
    scorer = PointsScorer([PointsRule("big", 1000, kind="demo_request")])
    pipeline = _pipeline(scorer=scorer, thresholds=tuple(range(1, 200)))
    touches = [Touch("t0", "a", T0, "demo_request")]
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar", result.reasons
    assert sum(r.kind.value == "threshold" for r in result.records()) == 199


def test_a_touch_batch_of_a_wide_funnel_replays_like_its_touches() -> None:
    funnel = chain(130, teams=130)
    pipeline = default_pipeline(funnel)
    touches = walk(150, leads=3)
    batch = TouchBatch.from_touches(touches)
    engine = pipeline.engine()
    engine.ingest(touches)
    assert replay(pipeline, batch).records() == list(engine.records)


def test_a_long_history_beyond_the_exact_range_of_the_kernel_takes_the_hooks_path() -> None:
    # each touch fits (9e9 points are 9e15 micro-points) but 1100 of them do not
    scorer = PointsScorer([PointsRule("big", 9e9, kind="page_view")])
    assert plan(_pipeline(scorer=scorer)).mode == "columnar"
    funnel = presets.seed()
    pipeline = Pipeline(funnel, OwnerRules.for_funnel(funnel), scorer=scorer)
    touches = [Touch(f"t{i}", "a", T0 + timedelta(minutes=i), "page_view") for i in range(1100)]
    result = assert_same(pipeline, touches)
    assert scores(result.records())[-1] == 9.9e12
    assert result.mode == "hooks"
    assert any("1100 touches" in reason for reason in result.reasons), result.reasons


def _long_sla(days: int) -> tuple[Pipeline, list[Touch]]:
    stages = [
        Stage("a", 10, owner="marketing", initial=True, sla=timedelta(days=days)),
        Stage("b", 20, owner="sales", terminal=True),
    ]
    funnel = Funnel("long", stages, [Transition("go", "a", "b")])
    touches = [Touch("1", "x", T0, "page_view"), Touch("2", "x", T0 + timedelta(days=1), "go")]
    return default_pipeline(funnel), touches


def test_an_sla_past_the_year_9999_is_quarantined_as_the_engine_does() -> None:
    """Regression: the engine raised OverflowError after changing state (a torn operation)."""
    pipeline, touches = _long_sla(3_000_000)
    engine = pipeline.engine()
    report = engine.ingest(touches)
    assert [q.position for q in report.quarantined] == [0, 1]  # each would start the journey
    assert "calendar" in report.quarantined[0].reason
    assert engine.records == ()
    assert engine.rebuild() == dict(engine.journeys) == {}
    result = replay(pipeline, touches)
    assert list(result.records()) == list(engine.records)
    assert [q.position for q in result.quarantined] == [0, 1]


def test_a_long_sla_within_the_calendar_replays_like_the_engine() -> None:
    pipeline, touches = _long_sla(365 * 1000)
    assert assert_same(pipeline, touches).mode == "columnar"


def test_ages_beyond_the_kernels_integers_take_the_hooks_path() -> None:
    # 100 touches of one lead spread over ten millennia: the sum of their ages
    # in microseconds does not fit in 64 bits, though every score is small
    decay = LinearDecay(0.001, timedelta(days=36_500))
    scorer = PointsScorer(
        [PointsRule("visit", 1, kind="page_view")],
        groups=[ScoreGroup("engagement", decay=decay)],
    )
    start = datetime(1, 1, 1, tzinfo=timezone.utc)
    step = (datetime(9990, 1, 1, tzinfo=timezone.utc) - start) / 99
    touches = [Touch(f"t{i}", "a", start + step * i, "page_view") for i in range(100)]
    funnel = presets.seed()
    pipeline = Pipeline(funnel, OwnerRules.for_funnel(funnel), scorer=scorer)
    result = assert_same(pipeline, touches)
    assert result.mode == "hooks"
    assert any("64-bit" in reason for reason in result.reasons), result.reasons


def test_a_pipeline_of_ones_own_goes_to_the_engine() -> None:
    class MyPipeline(Pipeline):
        """A pipeline subclass (it could build a different engine)."""

    base = default_pipeline(presets.seed())
    chosen = plan(MyPipeline(base.funnel, base.owners, scorer=base.scorer, policy=base.policy))
    assert chosen.mode == "reference"
    assert "MyPipeline" in chosen.reasons[0]
    assert "Pipeline" in chosen.reasons[0]


def test_huge_attribute_points_take_the_hooks_path() -> None:
    scorer = PointsScorer(
        [_RULE], attribute_rules=[AttributeRule("ent", "segment", ("big",), 1e12)]
    )
    chosen = plan(_pipeline(scorer=scorer))
    assert chosen.mode == "hooks"
    assert "'ent'" in chosen.reasons[0]
    together = PointsScorer(
        [PointsRule("a", 5e9, kind="page_view"), PointsRule("b", 5e9, kind="email_click")]
    )
    chosen = plan(_pipeline(scorer=together))
    assert chosen.mode == "hooks"
    assert "together" in chosen.reasons[0]


# ---------------------------------------------------------------- fit grades and the matrix


def _matrix(**changes: Any) -> MatrixPolicy:
    fields: dict[str, Any] = {
        "accept": frozenset({"A1", "B2"}),
        "engagement_bands": (30, 15, 5),
        "stages": (),
    }
    fields.update(changes)
    return MatrixPolicy("engage", **fields)


_FIT = FitGrader([FitCriterion("ent", "segment", ("enterprise",), steps=6)])


class MyMatrix(MatrixPolicy):
    """A matrix policy subclass."""


class MyFit(FitGrader):
    """A fit grader subclass."""


class MyCombined(CombinedScorer):
    """A combined scorer subclass."""


@pytest.mark.parametrize(
    "policy",
    [
        _matrix(),
        AnyOf(_matrix(), TouchKindPolicy({"demo_request": "engage"})),
        AllOf(ThresholdPolicy(10, "engage", stages=()), _matrix(stages=("awareness",))),
        AnyOf(
            AllOf(_matrix(), _matrix(accept=frozenset({"B2"}))), ThresholdPolicy(3, "x", stages=())
        ),
    ],
)
def test_a_matrix_with_the_built_in_policies_is_columnar(policy: Any) -> None:
    scorer = CombinedScorer(PointsScorer([_RULE]), _FIT)
    chosen = compile_plan(_pipeline(scorer=scorer, policy=policy))
    assert chosen.plan == plan(_pipeline(scorer=scorer, policy=policy))
    assert chosen.plan.mode == "columnar", chosen.plan.reasons
    assert chosen.graded
    assert {30.0, 15.0, 5.0} <= set(chosen.limits)
    assert chosen.scorer is not None
    assert chosen.scorer.fit is not None


def test_a_plan_without_a_matrix_reads_no_grade() -> None:
    scorer = CombinedScorer(PointsScorer([_RULE]), _FIT)
    chosen = compile_plan(_pipeline(scorer=scorer))
    assert chosen.plan.mode == "columnar"
    assert not chosen.graded
    assert chosen.scorer is not None
    assert chosen.scorer.fit is not None
    assert compile_plan(_pipeline()).scorer.fit is None  # type: ignore[union-attr]


def test_a_matrix_subclass_anywhere_in_the_policy_goes_to_the_engine() -> None:
    chosen = plan(
        _pipeline(
            policy=AnyOf(
                TouchKindPolicy({}),
                AllOf(
                    MyMatrix(
                        "engage", accept=frozenset({"A1"}), engagement_bands=(3, 2, 1), stages=()
                    )
                ),
            )
        )
    )
    assert chosen.mode == "reference"
    for word in ("AnyOf[1]", "AllOf[0]", "MyMatrix", "MatrixPolicy"):
        assert word in chosen.reasons[0], chosen.reasons


def test_matrix_bands_are_thresholds_of_the_decision_table() -> None:
    inexact = plan(_pipeline(policy=_matrix(engagement_bands=(2**60 + 1, 15, 5))))
    assert inexact.mode == "reference"
    assert str(2**60 + 1) in inexact.reasons[0]
    crowded = AnyOf(*(_matrix(engagement_bands=(3 * i + 2, 3 * i + 1, 3 * i)) for i in range(6)))
    chosen = plan(_pipeline(policy=crowded))
    assert chosen.mode == "reference"
    assert "18" in chosen.reasons[0]


@pytest.mark.parametrize(
    ("scorer", "words"),
    [
        (
            CombinedScorer(PointsScorer([_RULE]), MyFit(_FIT.criteria)),
            ["fit scorer", "MyFit", "FitGrader"],
        ),
        (
            CombinedScorer(MyScorer([_RULE]), _FIT),
            ["engagement scorer", "MyScorer", "PointsScorer"],
        ),
        (
            CombinedScorer(PointsScorer([MyRule("visit", 10)]), _FIT),
            ["engagement scorer rules[0]", "MyRule"],
        ),
        (
            CombinedScorer(PointsScorer([PointsRule("huge", 1e12)]), _FIT),
            ["engagement scorer rule 'huge'", "exactly"],
        ),
        (MyCombined(PointsScorer([_RULE]), _FIT), ["MyCombined", "CombinedScorer"]),
    ],
)
def test_a_combined_scorer_the_kernel_cannot_read_is_called_touch_by_touch(
    scorer: Any, words: list[str]
) -> None:
    chosen = plan(_pipeline(scorer=scorer, policy=_matrix()))
    assert chosen.mode == "hooks"
    text = " ".join(chosen.reasons)
    for word in words:
        assert word in text, chosen.reasons
    pipeline = _pipeline(scorer=scorer, policy=_matrix(accept=frozenset({"B1", "B2", "D1", "D2"})))
    touches = [
        Touch(
            f"t{i}",
            "ab"[i % 2],
            T0 + timedelta(days=i),
            "page_view",
            attributes={"segment": "enterprise"} if i == 2 else {},
        )
        for i in range(6)
    ]
    assert assert_same(pipeline, touches).mode == "hooks"
