"""Regressions found in review of the shared-store engine: each failed before its fix."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest

from buyerjourney import (
    Action,
    Actor,
    MemoryStore,
    RecordKind,
    SQLiteStore,
    Touch,
    default_pipeline,
    presets,
    run,
)
from buyerjourney.cli import main
from buyerjourney.errors import StoreError, StoreInUse

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def _sla_pipeline():  # type: ignore[no-untyped-def]
    seed = presets.seed()
    funnel = seed.extend(
        name="seed_sla", replace_stages=[attrs.evolve(seed.stage("consideration"), sla=2 * HOUR)]
    )
    return default_pipeline(funnel)


def test_an_escalation_beaten_by_another_writer_is_not_lost() -> None:
    pipeline = _sla_pipeline()
    store = MemoryStore()
    a = pipeline.engine(store=store)
    a.ingest([Touch("e", "a", T0, "engage")])
    assert a.journey("a").stage == "consideration"
    b = pipeline.engine(store=store)
    b.ingest([Touch("x", "b", T0 + HOUR, "visit")])  # B writes first: A's next commit conflicts
    escalated = a.advance(T0 + 10 * HOUR)  # no private error escapes; catches up, escalates
    assert [(r.kind, r.lead_id) for r in escalated] == [(RecordKind.ESCALATION, "a")]
    assert a.journey("a").escalated
    assert store.load().records == a.records


def test_ingest_counts_only_its_own_records() -> None:
    pipeline = default_pipeline(presets.seed())
    store = MemoryStore()
    a = pipeline.engine(store=store)
    b = pipeline.engine(store=store)
    b.ingest([Touch("x", "b", T0, "visit")])
    before = len(store.load().records)
    report = a.ingest([Touch("y", "a", T0 + HOUR, "visit")])
    assert report.records == len(store.load().records) - before  # not B's records too


def test_a_refused_exclusive_keeps_the_shared_lock(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    with pytest.raises(StoreInUse):
        a.clear()
    b.close()
    third = SQLiteStore(path)
    try:
        with pytest.raises(StoreInUse):  # a is still open: nobody may hold the store alone
            third.clear()
    finally:
        third.close()
        a.close()


def test_a_failing_store_is_tried_once_and_reported_once() -> None:
    class Failing(MemoryStore):
        calls = 0

        def commit(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            Failing.calls += 1
            raise StoreError("disk full")

    engine = default_pipeline(presets.seed()).engine(store=Failing())
    with pytest.raises(StoreError, match="ahead of its store"):
        engine.ingest([Touch("t1", "a", T0, "visit")])
    assert Failing.calls == 1


def test_run_counts_duplicates_and_quarantines_actions_out_of_order() -> None:
    engine = default_pipeline(presets.seed()).engine()
    touch = Touch("t1", "a", T0 + 5 * HOUR, "visit")
    late = Action("override", "a", T0, Actor("mia", "marketing"), stage="lost", reason="r")
    result = run(engine, [(1, touch), (2, touch), (3, late)])
    assert (result.touches, result.duplicates) == (1, 1)
    assert [position for position, *_ in map(_position, result.quarantined)] == [3]


def _position(entry: object) -> tuple[int]:
    return (entry[0] if isinstance(entry, tuple) else entry.position,)  # type: ignore[attr-defined]


def test_a_row_changed_by_hand_is_a_store_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.db"
    with SQLiteStore(path) as store:
        default_pipeline(presets.seed()).engine(store=store).ingest([Touch("t", "a", T0, "visit")])
    db = sqlite3.connect(path)
    db.execute("UPDATE records SET data = '{bad' WHERE seq = 0")
    db.commit()
    db.close()
    with SQLiteStore(path) as store, pytest.raises(StoreError, match="changed outside"):
        list(store.read())
    assert main(["ingest", "--sample", "--store", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "cannot be read" in err


def test_quarantine_retry_keeps_what_still_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "s.jsonl"
    lines = [
        {"touch_id": "t1", "lead_id": "a", "at": (T0 + 5 * HOUR).isoformat(), "kind": "visit"},
        {"touch_id": "t2", "lead_id": "a", "at": T0.isoformat(), "kind": "visit"},  # late
    ]
    stream.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    db = str(tmp_path / "j.db")
    assert main(["ingest", str(stream), "--store", db, "--no-progress"]) == 0
    assert main(["quarantine", "--store", db, "--retry"]) == 1  # still late
    assert "0 landed, 1 still quarantined" in capsys.readouterr().out
    with SQLiteStore(db) as store:
        assert [(e.line, e.code) for e in store.quarantined()] == [(2, "late")]
