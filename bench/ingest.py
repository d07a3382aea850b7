"""Durable ingestion against a raw ``executemany`` of the same rows, in the same run.

Three figures, medians over repeated rounds:

* **raw**: the rows a durable ingest writes (records, touches, journeys
  snapshot), encoded beforehand, inserted with ``executemany`` into the same
  schema (WAL, ``synchronous=NORMAL``, 10,000-row transactions): the ceiling.
* **store**: the same rows written by ``SQLiteStore.commit`` in the batches the
  engine uses (2,000 touches), encoding included: what the store costs.
* **ingest**: ``Engine(..., store=SQLiteStore(path)).ingest(stream)`` end to
  end (scoring, policies and the fold included), against the same ingest in
  memory.

With ``BUYERJOURNEY_TEST_POSTGRES`` set (a URL), the store row is measured on
PostgreSQL too.

    python -m bench.ingest [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.streams import generate
from buyerjourney import Engine, MemoryStore, SQLiteStore, Touch, default_pipeline, presets
from buyerjourney._adapters.codec import record_row, touch_row
from buyerjourney._adapters.sqlite import _journey_row

CHUNK = 10_000
BATCH = 2_000


def _median(run: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _stream(n: int) -> list[Touch]:
    return list(generate(n).touches())


def _raw(path: Path, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    store = SQLiteStore(path)  # the same schema
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    statements = {
        "records": "INSERT INTO records VALUES (" + ", ".join("?" * 15) + ")",
        "touches": "INSERT INTO touches (position, touch_id, lead_id, at, kind, properties, "
        "attributes, log_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        "journeys": "INSERT OR REPLACE INTO journeys VALUES (?, ?, ?, ?, ?, ?)",
    }
    for table, table_rows in rows.items():
        for start in range(0, len(table_rows), CHUNK):
            db.execute("BEGIN")
            db.executemany(statements[table], table_rows[start : start + CHUNK])
            db.execute("COMMIT")
    db.close()


def _fresh(directory: str, name: str) -> Path:
    path = Path(directory) / name
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _batches(
    engine: Engine, touches: Sequence[Touch]
) -> list[tuple[list[Any], list[Touch], dict[str, Any]]]:
    """The commits an ingest makes: records, touches and journeys per 2,000 touches."""
    memory = MemoryStore()
    recorder = Engine(
        engine.funnel,
        owners=engine.owners,
        scorer=engine.scorer,
        policy=engine.policy,
        thresholds=engine.thresholds,
        store=memory,
    )
    recorder.ingest(touches)
    stored = memory.load()
    by_touch: dict[str, int] = {t.touch_id: i for i, t in enumerate(stored.touches)}
    out: list[tuple[list[Any], list[Touch], dict[str, Any]]] = [([], [], {})]
    seen = 0
    for record in stored.records:
        batch = out[-1]
        batch[0].append(record)
        position = by_touch.get(record.touch_id or "")
        if position is not None and position >= seen:
            seen = position + 1
            batch[1].append(stored.touches[position])
            if len(batch[1]) >= BATCH:
                out.append(([], [], {}))
    journeys = recorder.journeys
    for batch in out:
        for record in batch[0]:
            batch[2][record.lead_id] = journeys[record.lead_id]
    return [b for b in out if b[0]]


def run(n: int, rounds: int) -> dict[str, float]:
    """Measure; return rows per second of each path and the ratios."""
    pipeline = default_pipeline(presets.seed())
    touches = _stream(n)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        engine = pipeline.engine()
        batches = _batches(engine, touches)
        rows = {
            "records": [record_row(r) for b in batches for r in b[0]],
            "touches": [
                (i, *touch_row(t), 0) for i, t in enumerate(t for b in batches for t in b[1])
            ],
            "journeys": [_journey_row(j) for b in batches for j in b[2].values()],
        }
        total = sum(len(v) for v in rows.values())
        raw = _median(lambda: _raw(_fresh(directory, "raw.db"), rows), rounds)

        def store_commits(path: Path) -> None:
            with SQLiteStore(path) as store:
                for records, batch_touches, journeys in batches:
                    store.commit(records, batch_touches, journeys=journeys)

        stored = _median(lambda: store_commits(_fresh(directory, "store.db")), rounds)

        def durable() -> None:
            with SQLiteStore(_fresh(directory, "ingest.db")) as store:
                pipeline.engine(store=store).ingest(touches)

        ingest_durable = _median(durable, rounds)
        ingest_memory = _median(lambda: pipeline.engine().ingest(touches), rounds)
        results = {
            "touches": float(len(touches)),
            "rows": float(total),
            "raw_rows_per_s": total / raw,
            "store_rows_per_s": total / stored,
            "store_vs_raw": raw / stored,
            "ingest_touches_per_s": len(touches) / ingest_durable,
            "ingest_rows_per_s": total / ingest_durable,
            "ingest_vs_raw": raw / ingest_durable,
            "durable_vs_memory": ingest_memory / ingest_durable,
        }
        url = os.environ.get("BUYERJOURNEY_TEST_POSTGRES")
        if url:
            results.update(_postgres(url, batches, total, rounds))
    return results


def _postgres(url: str, batches: list[Any], total: int, rounds: int) -> dict[str, float]:
    from buyerjourney._adapters.postgres import PostgresStore  # noqa: PLC0415  (the extra)

    counter = iter(range(1_000_000))

    def commits() -> None:
        schema = f"bench_ingest_{os.getpid()}_{next(counter)}"
        store = PostgresStore(url, schema=schema)
        try:
            for records, batch_touches, journeys in batches:
                store.commit(records, batch_touches, journeys=journeys)
        finally:
            store.close()
            import psycopg  # noqa: PLC0415

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

    seconds = _median(commits, rounds)
    return {"postgres_store_rows_per_s": total / seconds}


def report(results: dict[str, float]) -> str:
    """The figures as a small table."""
    lines = [
        f"durable ingestion, {int(results['touches']):,} touches -> {int(results['rows']):,} "
        "rows (records, touches, journeys)",
        f"  raw executemany (same rows, same schema)  {results['raw_rows_per_s']:>12,.0f} rows/s",
        f"  SQLiteStore.commit (2,000-touch batches)  {results['store_rows_per_s']:>12,.0f} rows/s"
        f"   {results['store_vs_raw']:.0%} of raw",
        f"  Engine.ingest into SQLite (end to end)    {results['ingest_rows_per_s']:>12,.0f} rows/s"
        f"   {results['ingest_vs_raw']:.0%} of raw; "
        f"{results['ingest_touches_per_s']:,.0f} touches/s, "
        f"{results['durable_vs_memory']:.0%} of the in-memory ingest's speed",
    ]
    if "postgres_store_rows_per_s" in results:
        lines.append(
            f"  PostgresStore.commit (same batches)      "
            f"{results['postgres_store_rows_per_s']:>12,.0f} rows/s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the ingestion benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--quick", action="store_true", help="20,000 touches, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 100_000
    rounds = args.rounds or (3 if args.quick else 5)
    print(report(run(n, rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
