"""The fast replay paths against the reference engine: same records, journeys and summary."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy")

from buyerjourney import (  # noqa: E402
    AllOf,
    AnyOf,
    AttributeRule,
    Condition,
    Funnel,
    Hooks,
    LinearDecay,
    OwnerRule,
    OwnerRules,
    PointsRule,
    PointsScorer,
    Score,
    ScoreGroup,
    ScoreItem,
    Stage,
    ThresholdPolicy,
    TimeWindow,
    Touch,
    TouchKindPolicy,
    Transition,
    default_pipeline,
    presets,
)
from buyerjourney._core.journey import rebuild  # noqa: E402
from buyerjourney._core.records import SYSTEM, Actor  # noqa: E402
from buyerjourney._engine import Engine  # noqa: E402
from buyerjourney._pipeline import Pipeline  # noqa: E402
from buyerjourney._report import summarize  # noqa: E402
from buyerjourney.bulk import JourneyStore, TouchBatch, plan, replay  # noqa: E402
from buyerjourney.bulk._columnar import ColumnarLog, stable_order, summarize_columnar  # noqa: E402
from buyerjourney.bulk._kernels import micro_exact  # noqa: E402
from buyerjourney.errors import HookError, MissingExtra  # noqa: E402
from buyerjourney.policies import Decision, MatrixPolicy  # noqa: E402
from buyerjourney.scoring import Lead  # noqa: E402
from buyerjourney.testing import funnels, standard_hooks  # noqa: E402

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)
KINDS = ("page_view", "email_click", "demo_request", "form_submit", "webinar_attended")
LEADS = ("ann", "bob", "cy", "dee", "eve")


# ---------------------------------------------------------------- comparing


def assert_same(pipeline: Pipeline, touches: list[Touch], *, mode: str = "auto") -> Any:
    """Replay with the engine and with the fast path; everything must be equal."""
    engine = pipeline.engine()
    report = engine.ingest(touches)
    result = replay(pipeline, touches, mode=mode)  # type: ignore[arg-type]
    expected = list(engine.records)
    got = result.records()
    assert len(got) == len(expected), result.reasons
    for a, b in zip(expected, got, strict=True):
        assert a == b
    assert result.journey_dict() == dict(engine.journeys)
    assert rebuild(pipeline.funnel, got) == dict(engine.journeys)
    assert [(q.position, q.reason) for q in result.quarantined] == [
        (q.position, q.reason) for q in report.quarantined
    ]
    assert result.accepted == report.accepted
    assert result.summary() == summarize(pipeline.funnel, expected)
    return result


# ---------------------------------------------------------------- strategies


def _owner_rules(funnel: Funnel, with_override: bool) -> OwnerRules:
    defaults = {s.name: "marketing" for s in funnel.stages if s.owner is None}
    overrides = ()
    if with_override:
        stage = funnel.stage_names[-1]
        overrides = (OwnerRule("sales", (stage,), (Condition("segment", ("enterprise",)),)),)
    return OwnerRules.for_funnel(funnel, defaults=defaults, overrides=overrides)


_DECAYS = st.one_of(
    st.none(),
    st.builds(
        LinearDecay,
        st.sampled_from((0.5, 0.1, 0.3, 1.0, 0.25)),
        st.sampled_from((timedelta(hours=1), timedelta(days=1), timedelta(days=30))),
    ),
    st.builds(TimeWindow, st.sampled_from((timedelta(hours=2), timedelta(days=3)))),
)


@st.composite
def points_scorers(draw: st.DrawFn) -> PointsScorer:
    groups = [
        ScoreGroup(
            name,
            cap=draw(st.none() | st.sampled_from((5, 12.5, 20))),
            decay=draw(_DECAYS),
        )
        for name in ("web", "email")
    ]
    rules = []
    for i in range(draw(st.integers(1, 5))):
        rules.append(
            PointsRule(
                f"r{i}",
                draw(st.sampled_from((1, 4, 0.5, 0.1, -3, 2.5, 10, 1 / 3))),
                kind=draw(st.none() | st.sampled_from(KINDS)),
                where=draw(st.sampled_from(({}, {"campaign": "spring"}))),
                repeatable=draw(st.booleans()),
                group=draw(st.sampled_from(("web", "email"))),
            )
        )
    attribute_rules = draw(
        st.sampled_from(
            (
                (),
                (AttributeRule("ent", "segment", ("enterprise",), 7.5),),
                (
                    AttributeRule("ent", "segment", ("enterprise",), 7.5),
                    AttributeRule("big", "employees", (1000, 5000), -2),
                ),
            )
        )
    )
    return PointsScorer(
        rules,
        groups=groups,
        total_cap=draw(st.none() | st.sampled_from((10, 30.5))),
        attribute_rules=attribute_rules,
    )


def custom_scorer(lead: Lead, at: datetime) -> Score:
    """A scorer of one's own: 3.5 points per touch, a grade for odd counts, fails on 'boom'."""
    if lead.touches[-1].kind == "boom":
        msg = "boom"
        raise ValueError(msg)
    n = len(lead.touches)
    return Score.from_breakdown(
        [ScoreItem("touches", 3.5 * n, f"{n} touches")], grade="B" * (n % 2) or None
    )


@st.composite
def policies(draw: st.DrawFn, funnel: Funnel) -> Any:
    events = [*funnel.events, "no_such_event"]
    stages = funnel.stage_names

    def leaf() -> Any:
        if draw(st.booleans()):
            return ThresholdPolicy(
                draw(st.sampled_from((5, 10, 20, 12.5))),
                draw(st.sampled_from(events)),
                stages=tuple(draw(st.lists(st.sampled_from(stages), max_size=2, unique=True))),
                reason=draw(st.sampled_from(("", "   ", "hot"))),
            )
        mapping = {
            kind: draw(st.sampled_from(events))
            for kind in draw(st.lists(st.sampled_from((*KINDS, *funnel.events)), max_size=3))
        }
        return TouchKindPolicy(mapping or {"demo_request": events[0]})

    shape = draw(st.sampled_from(("none", "leaf", "any", "all", "legal", "legal")))
    if shape == "none":
        return None
    if shape == "legal":  # mostly legal moves, as default_pipeline() makes them
        initial = funnel.initial.name
        first = funnel.allowed_events(initial)
        parts: list[Any] = []
        if first:
            parts.append(
                ThresholdPolicy(
                    draw(st.sampled_from((5, 10, 20))),
                    draw(st.sampled_from(first)),
                    stages=draw(st.sampled_from(((initial,), ()))),
                )
            )
        parts.append(TouchKindPolicy({e: e for e in funnel.events} or {"page_view": "x"}))
        return AnyOf(*parts)
    if shape == "leaf":
        return leaf()
    parts = [leaf() for _ in range(draw(st.integers(1, 3)))]
    return AnyOf(*parts) if shape == "any" else AllOf(*parts)


@st.composite
def touch_streams(draw: st.DrawFn, funnel: Funnel, max_size: int = 25) -> list[Touch]:
    kinds = (*KINDS, *funnel.events, "boom")
    steps = st.sampled_from(
        (
            timedelta(0),
            timedelta(minutes=7),
            timedelta(hours=1),
            timedelta(hours=5),
            timedelta(days=1),
            timedelta(days=2, seconds=1),
            timedelta(days=31),
        )
    )
    attributes = st.sampled_from(
        (
            {},
            {},
            {"segment": "enterprise"},
            {"segment": "smb", "employees": 1000},
            {"employees": 5000},
        )
    )
    at = T0
    touches = []
    zone = draw(st.sampled_from((timezone.utc, timezone(timedelta(hours=2)))))
    for i in range(draw(st.integers(0, max_size))):
        at += draw(steps)
        touches.append(
            Touch(
                f"x{i}",
                draw(st.sampled_from(LEADS)),
                at.astimezone(zone),
                draw(st.sampled_from(kinds)),
                draw(st.sampled_from(({}, {"campaign": "spring"}))),
                draw(attributes),
            )
        )
    return touches


@st.composite
def cases(draw: st.DrawFn, scorer_kind: str = "points") -> tuple[Pipeline, list[Touch]]:
    funnel = draw(
        st.one_of(
            st.sampled_from(
                [presets.seed(), presets.demand_waterfall(), presets.hubspot_lifecycle()]
            ),
            funnels(max_stages=6),
        )
    )
    if scorer_kind == "points":
        scorer: Any = draw(st.none() | points_scorers())
    else:
        scorer = custom_scorer
    pipeline = Pipeline(
        funnel=funnel,
        owners=_owner_rules(funnel, draw(st.booleans())),
        hooks=standard_hooks(),
        scorer=scorer,
        policy=draw(policies(funnel)),
        thresholds=tuple(draw(st.lists(st.sampled_from((0, 5, 10, 12.5, 20)), max_size=3))),
    )
    return pipeline, draw(touch_streams(funnel))


# ---------------------------------------------------------------- differential


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_columnar_replay_equals_the_engine(case: tuple[Pipeline, list[Touch]]) -> None:
    pipeline, touches = case
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar", result.reasons


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases("custom"))
def test_hooks_replay_equals_the_engine(case: tuple[Pipeline, list[Touch]]) -> None:
    pipeline, touches = case
    result = assert_same(pipeline, touches)
    assert result.mode == "hooks", result.reasons


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_a_columnar_batch_replays_like_its_touches(case: tuple[Pipeline, list[Touch]]) -> None:
    pipeline, touches = case
    utc = [
        Touch(
            t.touch_id, t.lead_id, t.at.astimezone(timezone.utc), t.kind, t.properties, t.attributes
        )
        for t in touches
    ]
    batch = TouchBatch.from_touches(utc)
    columnar = TouchBatch(
        batch.lead_ids,
        batch.lead,
        batch.at,
        batch.kinds,
        batch.kind,
        touch_ids=batch.touch_ids,
        properties=batch.properties,
        attributes=batch.attributes,
    )
    engine = pipeline.engine()
    engine.ingest(utc)
    result = replay(pipeline, columnar)
    assert result.records() == list(engine.records)
    assert result.journey_dict() == dict(engine.journeys)


def test_seed_default_pipeline_on_a_longer_stream() -> None:
    pipeline = default_pipeline(presets.seed())
    kinds = (*KINDS, "pricing_view", "email_open", "content_download", *pipeline.funnel.events)
    touches = []
    at = T0
    for i in range(600):
        at += timedelta(hours=(i * 7919) % 37)
        touches.append(Touch(f"t{i}", f"lead{(i * 31) % 47}", at, kinds[(i * 13) % len(kinds)]))
    result = assert_same(pipeline, touches)
    assert result.mode == "columnar"


def test_waterfall_escalations_and_gate_refusals() -> None:
    pipeline = default_pipeline(presets.demand_waterfall())
    touches = [
        Touch("a1", "a", T0, "demo_request"),
        Touch("b1", "b", T0, "demo_request"),  # same instant: escalations tie on the deadline
        Touch("a2", "a", T0 + timedelta(hours=1), "webinar_attended"),
        Touch("b2", "b", T0 + timedelta(hours=1), "webinar_attended"),
        Touch("a3", "a", T0 + timedelta(hours=2), "content_download"),
        Touch("b3", "b", T0 + timedelta(hours=2), "content_download"),
        Touch("a4", "a", T0 + timedelta(hours=3), "qualify_sales"),
        Touch("c1", "c", T0 + timedelta(days=5), "page_view"),
    ]
    result = assert_same(pipeline, touches)
    kinds = [r.kind.value for r in result.records()]
    assert kinds.count("escalation") == 2
    assert "refused" in kinds


# ---------------------------------------------------------------- fallbacks


def test_a_failing_guard_falls_back_to_the_engine() -> None:
    funnel = Funnel(
        "g",
        [
            Stage("a", 10, owner="marketing", initial=True),
            Stage("b", 20, owner="sales", terminal=True),
        ],
        [Transition("go", "a", "b", guard="broken")],
    )

    def broken(ctx: Any) -> bool:
        msg = "no"
        raise RuntimeError(msg)

    pipeline = Pipeline(
        funnel,
        OwnerRules.for_funnel(funnel),
        Hooks({"broken": broken}),
        policy=TouchKindPolicy({"go": "go"}),
    )
    touches = [Touch("1", "x", T0, "go"), Touch("2", "x", T0 + timedelta(hours=1), "page_view")]
    result = assert_same(pipeline, touches)
    assert result.mode == "reference"
    assert any("guard" in r for r in result.reasons)
    with pytest.raises(HookError):
        replay(pipeline, touches, errors="raise")


@pytest.mark.parametrize("problem", ["duplicate", "backwards"])
def test_batches_the_engine_would_quarantine_go_to_the_engine(problem: str) -> None:
    pipeline = default_pipeline(presets.seed())
    touches = [Touch("1", "x", T0 + timedelta(hours=2), "page_view")]
    if problem == "duplicate":
        touches.append(Touch("1", "y", T0 + timedelta(hours=3), "page_view"))
    else:
        touches.append(Touch("2", "y", T0, "page_view"))
    result = assert_same(pipeline, touches)
    assert result.mode == "reference"
    if problem == "duplicate":  # skipped and counted, as Engine.ingest does
        assert (len(result.quarantined), result.duplicates) == (0, 1)
    else:
        assert (len(result.quarantined), result.duplicates) == (1, 0)


def test_a_policy_of_ones_own_goes_to_the_engine() -> None:
    def mine(journey: Any, score: Score, touch: Touch) -> Decision:
        return Decision("engage", "mine") if touch.kind == "demo_request" else Decision()

    pipeline = Pipeline(presets.seed(), OwnerRules.for_funnel(presets.seed()), policy=mine)
    assert plan(pipeline).mode == "reference"
    touches = [Touch("1", "x", T0, "demo_request")]
    assert assert_same(pipeline, touches).mode == "reference"
    with pytest.raises(ValueError, match="not possible"):
        replay(pipeline, touches, mode="columnar")


def test_plan_names_the_path_and_why() -> None:
    seed = presets.seed()
    base = default_pipeline(seed)
    assert plan(base).mode == "columnar"
    assert plan(Pipeline(seed, base.owners)).mode == "columnar"
    hooks = plan(Pipeline(seed, base.owners, scorer=custom_scorer, policy=base.policy))
    assert hooks.mode == "hooks"
    assert "custom_scorer" in hooks.reasons[0]
    matrix = MatrixPolicy("engage", accept=frozenset({"A1"}), engagement_bands=(3, 2, 1), stages=())
    assert plan(Pipeline(seed, base.owners, policy=matrix)).mode == "columnar"
    assert plan(Pipeline(seed, base.owners, thresholds=(2**60 + 1,))).mode == "reference"


def test_forcing_a_slower_path_gives_the_same_log() -> None:
    pipeline = default_pipeline(
        presets.waterfall() if hasattr(presets, "waterfall") else presets.demand_waterfall()
    )
    touches = [
        Touch(f"t{i}", f"l{i % 3}", T0 + timedelta(hours=i), "demo_request") for i in range(9)
    ]
    for mode in ("columnar", "hooks", "reference"):
        result = assert_same(pipeline, touches, mode=mode)
        assert result.mode == mode


def test_missing_numpy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(MissingExtra, match=r"buyerjourney\[fast\]"):
        replay(default_pipeline(presets.seed()), [])


# ---------------------------------------------------------------- pieces


@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=30),
    st.lists(st.integers(0, 10**15), min_size=30, max_size=30),
    st.sampled_from((Fraction(4_000_000), Fraction(1, 3) * 10**6, Fraction(0.1) * 10**6)),
    st.sampled_from((Fraction(0), Fraction(1, 1_296_000), Fraction(0.3) / 7)),
)
def test_exact_micro_points_round_half_to_even(
    a: list[int], b: list[int], a_coef: Fraction, b_coef: Fraction
) -> None:
    a_arr = np.array(a, np.int64)
    b_arr = np.array(b[: len(a)], np.int64)
    got = micro_exact(np, a_coef, a_arr, b_coef, b_arr).tolist()
    assert got == [round(a_coef * x - b_coef * y) for x, y in zip(a, b, strict=False)]


def test_exact_ties_are_resolved_to_even() -> None:
    a = np.array([1, 3, 5, 7], np.int64)
    got = micro_exact(np, Fraction(1, 2), a).tolist()
    assert got == [0, 2, 2, 4]


@given(st.lists(st.integers(0, 50), max_size=200))
def test_stable_order_is_a_stable_argsort(keys: list[int]) -> None:
    arr = np.array(keys, np.int64)
    assert stable_order(np, arr).tolist() == np.argsort(arr, kind="stable").tolist()


def test_summary_of_a_log_with_manual_actions_matches_the_report() -> None:
    funnel = presets.demand_waterfall()
    engine = Engine(funnel, policy=lambda j, s, t: Decision("qualify", "x"))
    sales = Actor("sam", "sales")
    marketing = Actor("mia", "marketing")
    engine.ingest([Touch("1", "a", T0, "page_view"), Touch("2", "b", T0, "page_view")])
    engine.send("a", "hand_off", actor=marketing, at=T0 + timedelta(hours=1))
    engine.accept("a", actor=sales, at=T0 + timedelta(hours=2))
    engine.send("b", "hand_off", actor=marketing, at=T0 + timedelta(hours=3))
    engine.reject("b", actor=sales, at=T0 + timedelta(hours=4), reason="too small")
    engine.override("a", "won", actor=sales, at=T0 + timedelta(hours=5), reason="signed")
    with pytest.raises(Exception, match="owned"):
        engine.send("b", "qualify", actor=sales, at=T0 + timedelta(hours=6))
    engine.advance(T0 + timedelta(days=9))
    log = ColumnarLog.from_records(funnel, engine.records)
    assert summarize_columnar(log) == summarize(funnel, engine.records)
    assert log.records() == list(engine.records)
    assert log.record(0) == engine.records[0]
    with pytest.raises(IndexError):
        log.record(len(log))
    assert len(log) == len(engine.records)
    assert log.nbytes > 0
    assert "records" in repr(log)


def test_journey_store_reads_like_a_mapping() -> None:
    pipeline = default_pipeline(presets.seed())
    touches = [
        Touch("1", "a", T0, "demo_request"),
        Touch("2", "b", T0 + timedelta(hours=1), "boom"),
    ]
    result = replay(pipeline, touches)
    store = result.journeys
    assert isinstance(store, JourneyStore)
    assert len(store) == 2
    assert "a" in store
    assert "zed" not in store
    assert sorted(store) == ["a", "b"]
    assert store["a"].stage == "consideration"
    with pytest.raises(KeyError):
        store["zed"]
    assert store.nbytes < 100 * 2
    assert store.columns["version"].tolist() == [4, 2]
    assert "2 journeys" in repr(store)
    assert "columnar" in repr(result)


def test_hooks_path_quarantines_a_failing_scorer_like_the_engine() -> None:
    base = default_pipeline(presets.demand_waterfall())
    pipeline = Pipeline(base.funnel, base.owners, scorer=custom_scorer, policy=base.policy)
    touches = [
        Touch("1", "a", T0, "demo_request"),
        Touch("2", "a", T0 + timedelta(days=4), "boom"),  # escalation still happens at its time
        Touch("3", "a", T0 + timedelta(days=5), "page_view"),
    ]
    result = assert_same(pipeline, touches)
    assert result.mode == "hooks"
    assert [q.position for q in result.quarantined] == [1]
    with pytest.raises(HookError):
        replay(pipeline, touches, errors="raise")


def test_touch_batch_checks_its_columns() -> None:
    with pytest.raises(ValueError, match="same length"):
        TouchBatch(["a"], [0, 0], [1], ["k"], [0])
    with pytest.raises(ValueError, match="lead code"):
        TouchBatch(["a"], [1], [1], ["k"], [0])
    with pytest.raises(ValueError, match="kind code"):
        TouchBatch(["a"], [0], [1], ["k"], [3])
    with pytest.raises(ValueError, match="touch_ids"):
        TouchBatch(["a"], [0], [1], ["k"], [0], touch_ids=["x", "y"])
    with pytest.raises(Exception, match="non-empty"):
        TouchBatch([""], [0], [1], ["k"], [0])
    batch = TouchBatch(["a"], [0], [1_700_000_000_000_000], ["k"], [0])
    assert batch.touch_id(0) == "t0"
    assert batch.touch(0).lead_id == "a"
    assert batch.lead_index("a") == 0
    assert len(list(batch.touches())) == 1
    assert "1 touches" in repr(batch)
    with pytest.raises(Exception, match="Touch"):
        TouchBatch.from_touches(["nope"])  # type: ignore[list-item]


def test_a_system_actor_is_not_used_for_policy_records() -> None:
    pipeline = default_pipeline(presets.seed())
    result = replay(pipeline, [Touch("1", "a", T0, "demo_request")])
    actors = {r.actor for r in result.records()}
    assert actors == {SYSTEM, Actor("policy:AnyOf")}
