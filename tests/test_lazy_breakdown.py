"""What keeps the engine fast: breakdowns written when read, the collector during ingest.

The built-in scorers write a breakdown's text only when someone reads it.

Incremental scoring computes every line's points at once (the value needs
them) and renders the lines' text on first read: a policy that looks only at
the value never pays for it, and neither does a SCORED record nobody reads.
These tests hold the lazy objects to the plain ones they stand in for:
equal, hashed, shown, pickled and stored alike, and rendered the same
whenever they are read, however the lead's state moved on meanwhile.
"""

from __future__ import annotations

import copy
import gc
import pickle
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import attrs
import pytest
from hypothesis import given

from buyerjourney import Engine, Record, Touch, default_pipeline, presets
from buyerjourney._adapters import codec
from buyerjourney._core import scoring
from buyerjourney._core.lifecycle import ScoredData
from buyerjourney.errors import InvalidTouch
from buyerjourney.scoring import (
    CombinedScorer,
    FitCriterion,
    FitGrader,
    Lead,
    PointsScorer,
    Score,
    ScoreItem,
)
from test_scoring_incremental import histories, scorers

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)


def _touches(n: int = 12) -> list[Touch]:
    kinds = ["page_view", "email_click", "demo_request", "webinar", "page_view"]
    return [
        Touch(
            f"t{i}",
            f"lead-{i % 3}",
            T0 + timedelta(days=3 * i),
            kinds[i % len(kinds)],
            attributes={"segment": "enterprise"} if i == 0 else {},
        )
        for i in range(n)
    ]


def _lazy_and_pure(touches: list[Touch]) -> list[tuple[Score, Score]]:
    scorer = default_pipeline(presets.seed()).scorer
    assert isinstance(scorer, PointsScorer)
    state = scorer.start()
    mine = [t for t in touches if t.lead_id == touches[0].lead_id]
    out = []
    for i, touch in enumerate(mine):
        lazy = scorer.score_next(state, touch, {})
        scorer.add(state, touch)
        out.append((lazy, scorer(Lead(touch.lead_id, {}, tuple(mine[: i + 1])), touch.at)))
    return out


def test_a_lazy_score_is_a_score_that_equals_the_plain_one() -> None:
    for lazy, pure in _lazy_and_pure(_touches()):
        assert type(lazy) is not Score  # the lazy kind, standing in for a Score
        assert isinstance(lazy, Score)
        assert lazy == pure
        assert pure == lazy
        assert (lazy != pure) is False
        assert (pure != lazy) is False
        assert hash(lazy) == hash(pure)
        assert repr(lazy) == repr(pure)
        assert lazy.breakdown == pure.breakdown


def test_a_lazy_score_differs_from_a_different_score() -> None:
    (lazy, pure), *_ = _lazy_and_pure(_touches())
    other = Score(pure.value + 1, pure.breakdown)
    assert lazy != other
    assert other != lazy
    assert lazy != Score(pure.value, (*pure.breakdown, ScoreItem("x", 0.0)))
    assert lazy != "a string"


def test_a_lazy_score_pickles_and_evolves_as_a_plain_score() -> None:
    for lazy, pure in _lazy_and_pure(_touches()):
        back = pickle.loads(pickle.dumps(lazy))
        assert type(back) is Score
        assert back == pure
        evolved = attrs.evolve(lazy, value=99.0)
        assert evolved.value == 99.0
        assert evolved.breakdown == pure.breakdown
        assert attrs.asdict(lazy) == attrs.asdict(pure)


@given(scorers(), histories())
def test_a_breakdown_read_late_is_the_one_of_its_touch(
    scorer: PointsScorer, touches: list[Touch]
) -> None:
    """Scores are read only after the whole history was added: their lines own their values."""
    state = scorer.start()
    attributes: dict[str, object] = {}
    scored = []
    for i, touch in enumerate(touches):
        attributes = {**attributes, **touch.attributes}
        scored.append(
            (
                scorer.score_next(state, touch, attributes),
                Lead("lead", attributes, tuple(touches[: i + 1])),
                touch.at,
            )
        )
        scorer.add(state, touch)
    for i, (lazy, lead, at) in enumerate(scored):
        assert lazy == scorer(lead, at), f"touch {i}"


def test_a_policy_that_reads_only_the_value_renders_no_breakdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered = []
    real = scoring._render

    def counting(*args: object) -> object:
        rendered.append(args)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "_render", counting)
    engine = default_pipeline(presets.seed()).engine()
    engine.ingest(_touches(30))
    assert rendered == []
    scored = [r for r in engine.records if r.kind.value == "scored"]
    assert scored[0].data["breakdown"]  # read: rendered now, once
    assert len(rendered) == 1
    assert scored[0].data["breakdown"] == scored[0].data["breakdown"]
    assert len(rendered) == 1


def _fresh_scored() -> list[Record]:
    """The SCORED records of a fresh engine: no breakdown read yet."""
    engine = default_pipeline(presets.seed()).engine()
    engine.ingest(_touches(30))
    return [r for r in engine.records if r.kind.value == "scored"]


def _eager(record: Record) -> Record:
    """*record* with the breakdown the pure scorer gives, built eagerly (plain read-only data)."""
    pipeline = default_pipeline(presets.seed())
    scorer = pipeline.scorer
    assert isinstance(scorer, PointsScorer)
    touches = [t for t in _touches(30) if t.lead_id == record.lead_id and t.at <= record.at]
    pure = scorer(Lead(record.lead_id, {}, tuple(touches)), record.at)
    data = {
        key: (
            tuple((i.rule, i.points, i.detail) for i in pure.breakdown)
            if key == "breakdown"
            else value
        )
        for key, value in record.data._data.items()  # type: ignore[attr-defined]
    }
    return attrs.evolve(record, data=data)


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda r, e: r == e, id="=="),
        pytest.param(lambda r, e: e == r, id="== reflected"),
        pytest.param(lambda r, e: r.to_dict() == e.to_dict(), id="to_dict"),
        pytest.param(lambda r, e: codec.record_row(r) == codec.record_row(e), id="stored row"),
        pytest.param(lambda r, e: repr(r) == repr(e), id="repr"),
        pytest.param(lambda r, e: dict(r.data) == dict(e.data), id="dict"),
        pytest.param(lambda r, e: r.data.copy() == e.data.copy(), id="copy"),
        pytest.param(lambda r, e: (r.data | {}) == (e.data | {}), id="|"),
        pytest.param(lambda r, e: ({} | r.data) == ({} | e.data), id="| reflected"),
        pytest.param(lambda r, e: list(reversed(r.data)) == list(reversed(e.data)), id="reversed"),
    ],
)
def test_an_unread_scored_record_reads_as_the_eager_one(read: object) -> None:
    """Each way of reading is tried on records nobody read before (the lazy path)."""
    for record in _fresh_scored():
        assert type(record.data) is ScoredData
        eager = _eager(record)
        assert type(eager.data) is MappingProxyType
        assert read(record, eager), record  # type: ignore[operator]


def test_a_scored_record_reads_as_a_plain_one() -> None:
    scored = _fresh_scored()
    assert scored
    for record in scored:
        assert record.data.get("missing", 7) == 7
        assert "breakdown" in record.data
        assert list(record.data) == ["delta", "breakdown", *list(record.data)[2:]]
        assert codec.record_from_row(codec.record_row(record)) == record
        assert len(record.data) == len(_eager(record).data)


def test_a_scored_record_is_not_pickled_like_every_record() -> None:
    """As the mappingproxy of any record's data: refused, never copied with a stale marker."""
    record, *_ = _fresh_scored()
    for copier in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="mappingproxy"):
            copier(record)
    record.data["breakdown"]  # read, then the same
    with pytest.raises(TypeError, match="mappingproxy"):
        pickle.dumps(record)


def test_two_readers_of_one_breakdown_see_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that lost the race to render reads the other's result, not empty lines."""
    (lazy, pure), *_ = _lazy_and_pure(_touches())
    real_get = scoring._get_breakdown
    calls = []

    def get(score: object) -> object:
        calls.append(score)
        if len(calls) == 1:  # this reader fails to find it, then the other renders it
            with pytest.raises(AttributeError):
                real_get(score)
            monkeypatch.setattr(scoring, "_get_breakdown", real_get)
            assert score.breakdown == pure.breakdown  # type: ignore[attr-defined]
            monkeypatch.setattr(scoring, "_get_breakdown", get)
            raise AttributeError("breakdown")
        return real_get(score)

    monkeypatch.setattr(scoring, "_get_breakdown", get)
    assert lazy.breakdown == pure.breakdown


def test_a_scorer_of_ones_own_may_give_items_of_a_subclass() -> None:
    @attrs.frozen
    class MyItem(ScoreItem):
        pass

    class Mine:
        def start(self) -> list[Touch]:
            return []

        def score_next(self, state: list[Touch], touch: Touch, attributes: object) -> Score:
            return Score(len(state) + 1.0, (MyItem("touches", len(state) + 1.0, "so far"),))

        def add(self, state: list[Touch], touch: Touch) -> None:
            state.append(touch)

        def __call__(self, lead: Lead, at: datetime) -> Score:
            n = float(len(lead.touches))
            return Score(n, (MyItem("touches", n, "so far"),))

    grader = FitGrader([FitCriterion("big", "segment", ("enterprise",), steps=3)])
    engine = Engine(presets.seed(), scorer=CombinedScorer(Mine(), grader))
    engine.ingest(_touches(6))
    scored = [r for r in engine.records if r.kind.value == "scored"]
    assert scored[-1].to_dict()["data"]["breakdown"][0] == ["touches", 2.0, "so far"]


def test_points_state_keeps_its_shown_rules_itself() -> None:
    scorer = default_pipeline(presets.seed()).scorer
    assert isinstance(scorer, PointsScorer)
    touch = _touches(1)[0]
    by_hand, by_scorer = scorer.start(), scorer.start()
    scorer.add(by_scorer, touch)
    for index in scoring._matching(scorer._compiled, touch):
        by_hand.add(index, (touch.at - scoring._EPOCH) // timedelta(microseconds=1), True)
    assert by_hand.active == by_scorer.active
    assert by_hand.active


# ---------------------------------------------------------------- the collector during ingest


@pytest.fixture
def eager_collector() -> Iterator[list[tuple[int, bool]]]:
    """Collect often, every generation; note each collection's generation and whether
    automatic collection was enabled when it ran."""
    seen: list[tuple[int, bool]] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append((info["generation"], gc.isenabled()))

    thresholds = gc.get_threshold()
    gc.set_threshold(50, 1, 1)
    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*thresholds)


def test_ingest_runs_only_young_collections_and_restores_the_collector(
    eager_collector: list[tuple[int, bool]],
) -> None:
    engine = default_pipeline(presets.seed()).engine()
    touches = _touches(2_500)
    eager_collector.clear()
    engine.ingest(touches)
    assert gc.isenabled()
    # while it ran: the young generations every 1,000 touches, nothing else
    assert [generation for generation, automatic in eager_collector if not automatic] == [1, 1]


def test_without_deferral_ingest_leaves_the_collector_alone(
    eager_collector: list[tuple[int, bool]],
) -> None:
    engine = Engine(
        presets.seed(), scorer=default_pipeline(presets.seed()).scorer, defer_full_gc=False
    )
    touches = _touches(2_500)
    eager_collector.clear()
    engine.ingest(touches)
    assert len(eager_collector) > 20  # automatic collections, every 50 allocations
    assert all(automatic for _, automatic in eager_collector)


def test_a_failing_ingest_enables_the_collector_again() -> None:
    engine = default_pipeline(presets.seed()).engine()
    touches = _touches(5)
    early = Touch("early", "lead-0", T0 - timedelta(days=1), "page_view")
    with pytest.raises(InvalidTouch):
        engine.ingest([*touches, early], errors="raise")
    assert gc.isenabled()


def test_ingest_keeps_a_collector_disabled_by_the_caller() -> None:
    gc.disable()
    try:
        default_pipeline(presets.seed()).engine().ingest(_touches(50))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_nested_ingest_runs_its_own_young_collections(
    eager_collector: list[tuple[int, bool]],
) -> None:
    inner = default_pipeline(presets.seed()).engine()
    inner_touches = [attrs.evolve(t, touch_id="inner-" + t.touch_id) for t in _touches(2_500)]
    during: list[int] = []

    class Nesting:
        done = False

        def on_record(self, record: Record, journey: object) -> None:
            if not self.done:
                self.done = True
                eager_collector.clear()
                inner.ingest(inner_touches)
                during.extend(g for g, automatic in eager_collector if not automatic)
                assert not gc.isenabled()  # the outer call still runs

    outer = Engine(
        presets.seed(), scorer=default_pipeline(presets.seed()).scorer, listeners=[Nesting()]
    )
    outer.ingest(_touches(3))
    assert during == [1, 1]
    assert gc.isenabled()
