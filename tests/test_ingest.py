"""Durable ingestion: `ingest`, and the ingest, journeys, rebuild and quarantine commands."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from buyerjourney import Engine, MemoryStore, SQLiteStore, Touch, default_pipeline, presets
from buyerjourney._core.journey import rebuild
from buyerjourney._pipeline import ingest, located
from buyerjourney.cli import main
from buyerjourney.errors import StoreConflict, StoreInUse
from buyerjourney.readers import read_stream
from pg_support import drop_schema, new_schema, postgres_url  # noqa: F401  (a fixture)

SAMPLE = Path(__file__).resolve().parents[1] / "src/buyerjourney/data/sample_touches.jsonl"
T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_readme_command_twice_applies_nothing_new_the_second_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "journeys.db")
    code, out, _ = _run(capsys, "ingest", "--sample", "--store", db, "--format", "json")
    first = json.loads(out)
    assert code == 0
    assert first["applied"] > 3000
    assert first["journeys"] == 400
    assert not first["nothing_new"]
    assert (
        first["read"]
        == first["applied"] + first["duplicates"] + first["refused"] + (first["quarantined"])
    )
    code, out, _ = _run(capsys, "ingest", "--sample", "--store", db)
    assert code == 0
    assert out.startswith("nothing new: every input was applied before")
    code, out, _ = _run(capsys, "ingest", "--sample", "--store", db, "--format", "json")
    second = json.loads(out)
    assert (second["applied"], second["records"], second["quarantined"]) == (0, 0, 0)
    assert second["duplicates"] == first["read"]
    assert second["log_records"] == first["log_records"]


def test_journeys_rebuild_and_lookup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "j.db")
    _run(capsys, "ingest", "--sample", "--store", db)
    code, out, _ = _run(capsys, "journeys", "--store", db, "--format", "json")
    listing = json.loads(out)
    assert listing["journeys"] == 400
    assert sum(row["journeys"] for row in listing["stages"]) == 400
    with SQLiteStore(db) as store:
        snapshot = store.journeys()
        folded = rebuild(presets.get("waterfall"), store.read())
    assert snapshot == folded  # the snapshot kept beside the log equals the fold of the log
    lead = next(iter(snapshot))
    code, out, _ = _run(capsys, "journeys", lead, "--store", db, "--format", "json")
    shown = json.loads(out)
    assert shown["journey"]["lead_id"] == lead
    assert shown["history"][0]["kind"] == "created"
    code, _, err = _run(capsys, "journeys", "nobody", "--store", db)
    assert code == 1
    assert "no journey for lead 'nobody'" in err
    code, out, _ = _run(capsys, "rebuild", "--store", db, "--funnel", "waterfall")
    assert code == 0
    assert "rebuilt 400 journeys from the log; all equal the snapshot" in out


def test_rebuild_repairs_a_damaged_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "j.db")
    _run(capsys, "ingest", "--sample", "--store", db)
    with SQLiteStore(db) as store:
        journeys = store.journeys()
        lead = sorted(journeys)[0]
        del journeys[lead]
        store.replace_journeys(journeys)
    code, out, _ = _run(
        capsys, "rebuild", "--store", db, "--funnel", "waterfall", "--format", "json"
    )
    assert code == 0
    assert json.loads(out)["differed"] == [lead]
    with SQLiteStore(db) as store:
        assert store.journey(lead) is not None


def test_a_destructive_command_refuses_a_store_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "j.db")
    _run(capsys, "ingest", "--sample", "--store", db)
    holder = _Holder(db)
    try:
        code, _, err = _run(capsys, "rebuild", "--store", db, "--funnel", "waterfall")
    finally:
        holder.stop()
    assert code == 1
    assert "is open in another process" in err
    code, _, _ = _run(capsys, "rebuild", "--store", db, "--funnel", "waterfall")
    assert code == 0


class _Holder:
    """Another process that keeps a store open until told to stop."""

    def __init__(self, path: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready = ctx.Event()
        self.done = ctx.Event()
        self.process = ctx.Process(target=_hold, args=(path, self.ready, self.done))
        self.process.start()
        assert self.ready.wait(60)

    def stop(self) -> None:
        self.done.set()
        self.process.join(60)


def _hold(path: str, ready: object, done: object) -> None:
    store = SQLiteStore(path)
    ready.set()  # type: ignore[attr-defined]
    done.wait(60)  # type: ignore[attr-defined]
    store.close()


def test_quarantine_lists_bad_lines_and_retry_lands_them_once_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "touches.jsonl"
    good = [
        {"touch_id": f"t{i}", "lead_id": "a", "at": (T0 + timedelta(hours=i)).isoformat(),
         "kind": "page_view"}
        for i in range(3)
    ]  # fmt: skip
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[2])]
    stream.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = str(tmp_path / "j.db")
    code, out, _ = _run(capsys, "ingest", str(stream), "--store", db, "--format", "json")
    counts = json.loads(out)
    assert (counts["read"], counts["applied"], counts["quarantined"]) == (3, 2, 1)
    code, out, _ = _run(capsys, "quarantine", "--store", db, "--format", "json")
    (entry,) = json.loads(out)
    assert (entry["source"], entry["line"], entry["code"]) == (str(stream), 2, "json")
    # fix the line in place (a touch that still fits the stream's time order)
    fixed = dict(good[1], at=(T0 + timedelta(hours=3)).isoformat())
    lines[1] = json.dumps(fixed)
    stream.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = _run(capsys, "quarantine", "--store", db, "--retry")
    assert code == 0
    assert "1 landed, 0 still quarantined" in out
    code, out, _ = _run(capsys, "quarantine", "--store", db, "--format", "json")
    assert json.loads(out) == []
    with SQLiteStore(db) as store:
        assert [t.touch_id for t in store.touches()] == ["t0", "t2", "t1"]


def _sample_items() -> list[object]:
    return list(located("sample", read_stream(SAMPLE)))


def test_ingest_counts_every_input_once_and_is_idempotent() -> None:
    pipeline = default_pipeline(presets.get("waterfall"))
    store = MemoryStore()
    items = _sample_items()
    first = ingest(pipeline.engine(store=store), items)
    assert first.read == len(items)
    assert first.read == first.applied + first.duplicates + first.refused + len(first.quarantined)
    again = ingest(pipeline.engine(store=store), items)
    assert (again.applied, again.records, again.duplicates) == (0, 0, len(items))
    assert again.nothing_new


def test_a_commit_written_against_an_old_log_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "j.db")
    engine = Engine(presets.seed(), store=store)
    engine.ingest([Touch("t1", "a", T0, "visit")])
    stale = list(engine.records)
    with pytest.raises(StoreConflict) as info:
        store.commit(stale, [], expected=0)
    assert (info.value.expected, info.value.stored) == (0, len(stale))
    assert len(store) == len(stale)  # nothing stored
    store.close()


# ---------------------------------------------------------------- several processes


def _ingest_in_process(path: str, start: object) -> None:
    start.wait(60)  # type: ignore[attr-defined]
    pipeline = default_pipeline(presets.get("waterfall"))
    with SQLiteStore(path) as store:
        ingest(pipeline.engine(store=store), _sample_items())  # type: ignore[arg-type]


def test_four_processes_writing_one_sqlite_file_give_the_serial_result(tmp_path: Path) -> None:
    """Optimistic concurrency: no lost update, no duplicate, no traceback; the serial log."""
    path = str(tmp_path / "shared.db")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=_ingest_in_process, args=(path, start)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(300)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    serial = MemoryStore()
    pipeline = default_pipeline(presets.get("waterfall"))
    reference = pipeline.engine(store=serial)
    ingest(reference, _sample_items())  # type: ignore[arg-type]
    with SQLiteStore(path) as store:
        shared = store.load()
        snapshot = store.journeys()
    assert shared.records == reference.records
    assert snapshot == dict(reference.journeys)
    assert sorted(t.touch_id for t in shared.touches) == sorted(
        t.touch_id for t in serial.load().touches
    )


def test_store_in_use_is_a_store_error() -> None:
    assert issubclass(StoreInUse, OSError)


def test_ingest_reads_csv_through_a_column_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "signups.csv"
    export.write_text(
        "email,signed_up,plan\n"
        "a@x.io,2024-03-04 09:00,pro\n"
        "b@x.io,not a date,free\n"
        "a@x.io,2024-03-05 10:30,pro\n",
        encoding="utf-8",
    )
    mapping = tmp_path / "columns.toml"
    mapping.write_text(
        'lead = "email"\ntime = "signed_up"\nkind_constant = "webinar_attended"\n'
        'touch_id = false\ntime_format = "%Y-%m-%d %H:%M"\ntime_zone = "Europe/Paris"\n'
        'attributes = ["plan"]\n',
        encoding="utf-8",
    )
    db = str(tmp_path / "j.db")
    args = ("ingest", str(export), "--columns", str(mapping), "--store", db, "--format", "json")
    code, out, _ = _run(capsys, *args)
    counts = json.loads(out)
    assert (code, counts["read"], counts["applied"], counts["quarantined"]) == (0, 3, 2, 1)
    code, out, _ = _run(capsys, *args)
    assert json.loads(out)["duplicates"] == 2  # derived ids: the same rows are the same touches
    with SQLiteStore(db) as store:
        (entry,) = store.quarantined()
        touches = list(store.touches())
    assert (entry.line, entry.code) == (3, "time")
    assert touches[0].at == datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)  # Paris is UTC+1
    assert touches[0].attributes == {"plan": "pro"}


def test_a_bad_mapping_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = tmp_path / "columns.toml"
    mapping.write_text('lead = "email"\ncolour = "red"\n', encoding="utf-8")
    export = tmp_path / "x.csv"
    export.write_text("email,at,kind\n", encoding="utf-8")
    code, _, err = _run(
        capsys, "ingest", str(export), "--columns", str(mapping), "--store", str(tmp_path / "j.db")
    )
    assert code == 1
    assert "unknown key 'colour'" in err
    assert "Traceback" not in err


def _ingest_in_postgres(url: str, schema: str, start: object) -> None:
    from buyerjourney import PostgresStore  # noqa: PLC0415  (the extra)

    start.wait(60)  # type: ignore[attr-defined]
    pipeline = default_pipeline(presets.get("waterfall"))
    store = PostgresStore(url, schema=schema)
    try:
        ingest(pipeline.engine(store=store), _sample_items())  # type: ignore[arg-type]
    finally:
        store.close()


def test_four_processes_writing_one_postgres_store_give_the_serial_result(
    postgres_url: str,  # noqa: F811  (the fixture)
) -> None:
    from buyerjourney import PostgresStore  # noqa: PLC0415  (the extra)

    schema = new_schema()
    try:
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Event()
        workers = [
            ctx.Process(target=_ingest_in_postgres, args=(postgres_url, schema, start))
            for _ in range(4)
        ]
        for worker in workers:
            worker.start()
        start.set()
        for worker in workers:
            worker.join(600)
        assert [w.exitcode for w in workers] == [0, 0, 0, 0]
        pipeline = default_pipeline(presets.get("waterfall"))
        reference = pipeline.engine(store=MemoryStore())
        ingest(reference, _sample_items())  # type: ignore[arg-type]
        store = PostgresStore(postgres_url, schema=schema)
        try:
            assert store.load().records == reference.records
            assert store.journeys() == dict(reference.journeys)
        finally:
            store.close()
    finally:
        drop_schema(postgres_url, schema)
