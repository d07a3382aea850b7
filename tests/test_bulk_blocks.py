"""The bulk path in blocks of leads, and what a replay keeps once its input is dropped."""

from __future__ import annotations

import gc
import math
import random
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta, timezone
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy")

from buyerjourney import Touch, default_pipeline, presets  # noqa: E402
from buyerjourney._pipeline import Pipeline  # noqa: E402
from buyerjourney.bulk import (  # noqa: E402
    JourneyStore,
    TouchBatch,
    _replay,
    replay,
)
from test_fast import T0, assert_same, cases  # noqa: E402


@contextmanager
def blocks_of(touches: int) -> Iterator[None]:
    """Replay in blocks of about *touches* touches (whole leads)."""
    with mock.patch.object(_replay, "_BLOCK_TOUCHES", touches):
        yield


def columnar(touches: list[Touch]) -> TouchBatch:
    """The columnar batch of *touches* (in UTC: a columnar batch keeps no time zone)."""
    utc = [
        Touch(
            t.touch_id, t.lead_id, t.at.astimezone(timezone.utc), t.kind, t.properties, t.attributes
        )
        for t in touches
    ]
    batch = TouchBatch.from_touches(utc)
    return TouchBatch(
        batch.lead_ids,
        batch.lead,
        batch.at,
        batch.kinds,
        batch.kind,
        touch_ids=batch.touch_ids,
        properties=batch.properties,
        attributes=batch.attributes,
    )


def assert_same_replay(a: Any, b: Any) -> None:
    assert a.mode == b.mode
    assert a.records() == b.records()
    assert a.journey_dict() == b.journey_dict()
    assert a.summary() == b.summary()
    assert [(q.position, q.reason) for q in a.quarantined] == [
        (q.position, q.reason) for q in b.quarantined
    ]
    assert a.accepted == b.accepted
    if a.mode != "reference":
        for name in ("stage", "highest", "score", "version", "created", "updated", "entered"):
            assert a.journeys.columns[name].tolist() == b.journeys.columns[name].tolist()


# ---------------------------------------------------------------- blocks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(1, 6))
def test_a_replay_in_blocks_equals_one_in_one_block(
    case: tuple[Pipeline, list[Touch]], size: int
) -> None:
    pipeline, touches = case
    whole = replay(pipeline, touches)
    with blocks_of(size):
        parts = replay(pipeline, touches)
    assert_same_replay(parts, whole)
    with blocks_of(size):
        assert_same(pipeline, touches)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases("custom"), st.integers(1, 6))
def test_a_hooks_replay_in_blocks_equals_one_in_one_block(
    case: tuple[Pipeline, list[Touch]], size: int
) -> None:
    pipeline, touches = case
    whole = replay(pipeline, touches)
    with blocks_of(size):
        parts = replay(pipeline, touches)
    assert_same_replay(parts, whole)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(1, 6))
def test_a_columnar_batch_in_blocks_replays_like_its_touches(
    case: tuple[Pipeline, list[Touch]], size: int
) -> None:
    pipeline, touches = case
    batch = columnar(touches)
    engine = pipeline.engine()
    engine.ingest(batch.touches())
    with blocks_of(size):
        result = replay(pipeline, batch)
    assert result.records() == list(engine.records)
    assert result.journey_dict() == dict(engine.journeys)


def test_the_seed_pipeline_in_blocks_writes_the_same_columns() -> None:
    pipeline = default_pipeline(presets.demand_waterfall())
    kinds = (
        "page_view", "demo_request", "webinar_attended", "content_download", "email_click",
        *pipeline.funnel.events,
    )  # fmt: skip
    rng = random.Random(5)
    touches = []
    at = T0
    for i in range(3000):
        at += timedelta(minutes=rng.randrange(300))
        touches.append(Touch(f"t{i}", f"lead{rng.randrange(200)}", at, rng.choice(kinds)))
    whole = replay(pipeline, touches)
    assert whole.mode == "columnar"
    for size in (1, 50, 700, 5000):
        with blocks_of(size):
            parts = replay(pipeline, touches)
        for name, column in whole.log.columns.items():
            assert np.array_equal(parts.log.columns[name], column, equal_nan=True), name
            assert parts.log.columns[name].dtype == column.dtype
        assert isinstance(whole.journeys, JourneyStore)
        assert isinstance(parts.journeys, JourneyStore)
        for name, column in whole.journeys.columns.items():
            assert np.array_equal(parts.journeys.columns[name], column), name
    kinds_written = {r.kind.value for r in whole.records()}
    assert {"escalation", "handoff", "refused", "threshold"} <= kinds_written


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_rounds_alone_equal_the_engine(case: tuple[Pipeline, list[Touch]]) -> None:
    # small streams are stepped touch by touch (fewer than _TAIL leads per
    # round): with _TAIL = 0 every rank is a vectorised round
    pipeline, touches = case
    with mock.patch.object(_replay, "_TAIL", 0):
        assert_same(pipeline, touches)


def test_long_histories_are_stepped_past_the_rounds() -> None:
    # one lead with many deciding touches among many leads with few: the last
    # rounds hold fewer than _TAIL touches and are stepped one by one
    pipeline = default_pipeline(presets.seed())
    kinds = ("convert", "retain", "advocate", "churn", "nurture", "lose", "demo_request")
    touches = []
    for i in range(400):
        lead = "long" if i % 2 else f"short{i % 90}"
        touches.append(Touch(f"t{i}", lead, T0 + timedelta(hours=i), kinds[(i * 5) % len(kinds)]))
    assert_same(pipeline, touches)


# ---------------------------------------------------------------- what is kept


class _Attributes(dict):  # type: ignore[type-arg]
    """A dict that can be referenced weakly."""


def test_a_replay_keeps_neither_the_batch_nor_its_attribute_mappings() -> None:
    pipeline = default_pipeline(presets.seed())
    n = 40
    lead = np.arange(n) % 7
    at = np.arange(n, dtype=np.int64) * 3_600_000_000 + 1_700_000_000_000_000
    kinds = ("page_view", "demo_request", "convert")
    kind = np.arange(n) % 3
    learned = {i: _Attributes(segment="smb", employees=i) for i in range(7)}
    refs = [weakref.ref(learned[0]), weakref.ref(at), weakref.ref(kind)]
    batch = TouchBatch([f"l{i}" for i in range(7)], lead, at, kinds, kind, attributes=learned)
    refs.append(weakref.ref(batch.lead))
    result = replay(pipeline, batch)
    engine = pipeline.engine()
    engine.ingest(batch.touches())
    del batch, learned, at, kind, lead
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert result.records() == list(engine.records)
    assert result.journey_dict() == dict(engine.journeys)


@pytest.mark.parametrize(
    "values",
    [
        [{"a": 1, "b": "x"}, {"b": "y", "a": -(2**63)}, {"a": 2**63 - 1}],
        [{"a": 2**64}, {"a": 1}],  # beyond int64: kept as objects
        [{"a": True}, {"a": 1}],  # bool and int mixed: objects
        [{"f": 0.5}, {"f": -0.0}, {"f": math.inf}],
        [{"f": math.nan}, {"f": 1.0}],  # NaN is kept as the object itself
        [{"t": ("x", 1)}, {"t": None}, {}],
        [{"s": "ü"}, {"s": ""}, {"z": 1, "s": "q"}],
        [{"b": False}, {"b": True}],
    ],
)
def test_attribute_columns_rebuild_every_mapping(values: list[dict[str, Any]]) -> None:
    positions = [3 * i + 1 for i in range(len(values))]
    store = _replay._Attributes(np, dict(zip(positions, values, strict=True)))
    for pos, value in zip(positions, values, strict=True):
        got = store.get(pos)
        assert got is not None
        assert list(got) == list(value)
        for key, expected in value.items():
            assert type(got[key]) is type(expected)
            assert got[key] is expected or got[key] == expected
    assert store.get(0) is None
    assert store.get(10**6) is None
    assert store.nbytes > 0


def test_the_lookup_index_finds_every_id_and_the_last_of_a_repeated_one() -> None:
    ids = [f"lead-{i}" for i in range(2000)] + ["lead-5"]
    store = JourneyStore({"version": np.ones(len(ids), np.int32)}, ids, lambda code: code)  # type: ignore[arg-type, return-value]
    for code, lead_id in enumerate(ids[:-1]):
        assert store._code(lead_id) == (2000 if lead_id == "lead-5" else code)
    assert store._code("nobody") is None
    assert store._code(5) is None
    assert "lead-7" in store
    assert store.index_nbytes == 12 * len(ids)
    assert store.to_dict()["lead-5"] == 2000  # type: ignore[comparison-overlap]
