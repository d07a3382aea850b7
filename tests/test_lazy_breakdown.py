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
from buyerjourney.scoring import Lead, PointsScorer, Score, ScoreItem
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


def test_a_scored_record_reads_stores_and_compares_as_a_plain_one() -> None:
    engine = default_pipeline(presets.seed()).engine()
    engine.ingest(_touches(30))
    scored = [r for r in engine.records if r.kind.value == "scored"]
    assert scored
    assert all(type(r.data) is ScoredData for r in scored)
    for record in scored:
        plain = Record(**{a.name: getattr(record, a.name) for a in attrs.fields(Record)})
        assert type(plain.data) is MappingProxyType  # the converter froze a plain copy
        assert plain == record
        assert record == plain
        assert dict(record.data) == dict(plain.data)
        assert list(record.data) == list(plain.data)  # same keys, same order
        assert record.to_dict() == plain.to_dict()
        assert codec.record_row(record) == codec.record_row(plain)
        assert codec.record_from_row(codec.record_row(record)) == record
        assert repr(record.data) == repr(plain.data)
        assert record.data.get("missing", 7) == 7
        assert "breakdown" in record.data
        assert len(record.data) == len(plain.data)


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
