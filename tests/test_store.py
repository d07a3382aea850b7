"""Durable journeys: resume from a store, atomic operations, no raw driver errors."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import (
    Actor,
    Engine,
    MemoryStore,
    SQLiteStore,
    Store,
    StoreError,
    Touch,
    default_pipeline,
    presets,
    read_stream,
)
from buyerjourney._adapters.sqlite import SCHEMA_VERSION
from buyerjourney.errors import Duplicate, ListenerFailed

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
SAMPLE = Path(__file__).resolve().parents[1] / "src/buyerjourney/data/sample_touches.jsonl"


def _sample() -> list[Touch]:
    return [item for _, item in read_stream(SAMPLE) if isinstance(item, Touch)]


def _stores(tmp_path: Path) -> list[tuple[str, object]]:
    return [("memory", MemoryStore()), ("sqlite", SQLiteStore(tmp_path / "j.db"))]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_two_processes_half_each_equal_one_uninterrupted_run(kind: str, tmp_path: Path) -> None:
    pipeline = default_pipeline(presets.demand_waterfall())
    touches = _sample()
    whole = pipeline.engine()
    whole.ingest(touches)

    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "j.db")
    first = Engine(
        pipeline.funnel, owners=pipeline.owners, scorer=pipeline.scorer,
        policy=pipeline.policy, thresholds=pipeline.thresholds, store=store,
    )  # fmt: skip
    half = len(touches) // 2
    first.ingest(touches[:half])
    if isinstance(store, SQLiteStore):
        store.close()
        store = SQLiteStore(tmp_path / "j.db")
    second = Engine(
        pipeline.funnel, owners=pipeline.owners, scorer=pipeline.scorer,
        policy=pipeline.policy, thresholds=pipeline.thresholds, store=store,
    )  # fmt: skip
    assert dict(second.journeys) == dict(first.journeys)
    assert second.clock == first.clock
    second.ingest(touches[half:])
    assert second.records == whole.records
    assert dict(second.journeys) == dict(whole.journeys)
    assert list(store.load().records) == list(whole.records)  # type: ignore[attr-defined]


def test_a_resumed_engine_keeps_sla_deadlines_and_escalates_them(tmp_path: Path) -> None:
    pipeline = default_pipeline(presets.demand_waterfall())
    touches = _sample()
    reference = pipeline.engine()
    reference.ingest(touches)
    end = reference.clock + timedelta(days=30)  # type: ignore[operator]
    escalated = reference.advance(end)

    store = SQLiteStore(tmp_path / "j.db")
    Engine(pipeline.funnel, scorer=pipeline.scorer, policy=pipeline.policy,
           thresholds=pipeline.thresholds, store=store).ingest(touches)  # fmt: skip
    store.close()
    resumed = Engine(
        pipeline.funnel, scorer=pipeline.scorer, policy=pipeline.policy,
        thresholds=pipeline.thresholds, store=SQLiteStore(tmp_path / "j.db"),
    )  # fmt: skip
    assert resumed.advance(end) == escalated
    assert resumed.records == reference.records


def test_a_duplicate_touch_after_resume_is_skipped_and_counted(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "j.db")
    Engine(presets.seed(), store=store).ingest([Touch("t1", "a", T0, "visit")])
    store.close()
    engine = Engine(presets.seed(), store=SQLiteStore(tmp_path / "j.db"))
    report = engine.ingest([Touch("t1", "a", T0 + timedelta(hours=1), "visit")])
    assert (report.read, report.applied, report.duplicates, report.quarantined) == (1, 0, 1, ())
    assert report.records == 0
    with pytest.raises(Duplicate) as info:
        engine.ingest_one(Touch("t1", "a", T0 + timedelta(hours=2), "visit"))
    assert info.value.input_id == "t1"


class _FailingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def commit(self, records, touches=(), actions=(), *, expected=None, journeys=None) -> None:  # type: ignore[no-untyped-def]
        if self.fail:
            raise StoreError("disk full")
        super().commit(records, touches, actions, expected=expected, journeys=journeys)


def test_an_operation_the_store_refuses_changes_nothing() -> None:
    store = _FailingStore()
    assert isinstance(store, Store)
    engine = default_pipeline(presets.seed()).engine()
    engine = Engine(presets.seed(), scorer=engine.scorer, policy=engine.policy, store=store)
    engine.ingest([Touch("t1", "a", T0, "visit")])
    before = (engine.records, dict(engine.journeys))
    store.fail = True
    with pytest.raises(StoreError):
        engine.ingest_one(Touch("t2", "a", T0 + timedelta(hours=1), "engage"))
    assert (engine.records, dict(engine.journeys)) == before
    store.fail = False
    engine.ingest_one(Touch("t2", "a", T0 + timedelta(hours=1), "engage"))  # not a duplicate
    assert engine.journey("a").stage == "consideration"
    assert list(store.load().records) == list(engine.records)


def test_a_fresh_engine_on_a_non_empty_store_as_a_listener_fails_early(tmp_path: Path) -> None:
    """Regression: it failed late, with a raw sqlite3.IntegrityError at close()."""
    path = tmp_path / "j.db"
    with SQLiteStore(path) as store:
        Engine(presets.seed(), listeners=[store]).ingest([Touch("t1", "a", T0, "visit")])
    with SQLiteStore(path) as store:
        engine = Engine(presets.seed(), listeners=[store])
        with pytest.raises(ListenerFailed) as info:
            engine.ingest_one(Touch("t1", "a", T0, "visit"))
        assert isinstance(info.value.__cause__, StoreError)
        assert "store=SQLiteStore(path)" in str(info.value.__cause__)


def test_driver_errors_become_store_errors_that_say_what_to_do(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-db.db"
    bogus.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a buyerjourney store") as info:
        SQLiteStore(bogus)
    assert not isinstance(info.value, sqlite3.Error)
    with pytest.raises(StoreError, match=r"writable|directory"):
        SQLiteStore(tmp_path / "missing" / "dir" / "j.db")


def test_a_first_release_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, lead_id TEXT NOT NULL, at TEXT NOT NULL,"
        " kind TEXT NOT NULL, actor TEXT NOT NULL, actor_team TEXT, reason TEXT NOT NULL DEFAULT"
        " '', event TEXT, source TEXT, target TEXT, from_team TEXT, to_team TEXT, score REAL,"
        " touch_id TEXT, data TEXT NOT NULL DEFAULT '{}');"
    )
    db.close()
    store = SQLiteStore(path)
    assert store.load().records == ()
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION == 3
    engine = Engine(presets.seed(), store=store)  # an engine opens on the migrated file
    assert engine.records == ()
    engine.ingest([Touch("t1", "a", T0, "visit")])
    assert [r.seq for r in SQLiteStore(path).load().records] == [0, 1]


def test_the_store_keeps_touch_kinds_so_scores_rebuild(tmp_path: Path) -> None:
    """Regression: the log kept touch ids but not kinds; scores could not be rebuilt."""
    store = SQLiteStore(tmp_path / "j.db")
    pipeline = default_pipeline(presets.seed())
    touch = Touch("t1", "a", T0, "demo_request", properties={"page": "/x"}, attributes={"seg": 1})
    Engine(presets.seed(), scorer=pipeline.scorer, store=store).ingest([touch])
    assert list(store.touches()) == [touch]
    assert Actor("system") == store.load().records[0].actor


def test_a_store_that_fails_at_the_end_of_an_ingest_stops_the_engine_loudly() -> None:
    store = _FailingStore()
    engine = Engine(presets.seed(), store=store)
    store.fail = True
    with pytest.raises(StoreError, match="ahead of its store"):
        engine.ingest([Touch("t1", "a", T0, "visit")])
    with pytest.raises(StoreError, match="open a new engine"):
        engine.ingest_one(Touch("t2", "a", T0 + timedelta(hours=1), "visit"))
    store.fail = False
    fresh = Engine(presets.seed(), store=store)  # resumes from what was stored: nothing
    assert fresh.records == ()
    fresh.ingest([Touch("t1", "a", T0, "visit")])
    assert fresh.journey("a").stage == "awareness"


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=4), _JSON_VALUES, max_size=4))
def test_the_codec_writes_frozen_values_as_json_dumps_of_thawed_ones(value: dict) -> None:  # type: ignore[type-arg]
    from buyerjourney._adapters.codec import _json  # noqa: PLC0415  (the private encoder)
    from buyerjourney._core._values import freeze, thaw  # noqa: PLC0415

    frozen = freeze(value)
    assert _json(frozen) == json.dumps(thaw(frozen), sort_keys=True, ensure_ascii=False)
