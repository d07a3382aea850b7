"""Where the log lives: an embedded SQLite store (the default) and JSON Lines files.

The store only appends and reads records; journeys are always rebuilt from
them with :func:`buyerjourney.rebuild`. SQLite comes with Python, so
the default store needs nothing extra::

    store = SQLiteStore("journeys.db")
    engine = Engine(funnel, listeners=[store])   # every record lands in the file
    ...
    store.close()
    journeys = rebuild(funnel, SQLiteStore("journeys.db").read())
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from buyerjourney._core._values import thaw
from buyerjourney._core.journey import Journey
from buyerjourney._core.records import Record

__all__ = ["SQLiteStore", "read_jsonl_records", "write_jsonl_records"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq        INTEGER PRIMARY KEY,
    lead_id    TEXT    NOT NULL,
    at         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    actor_team TEXT,
    reason     TEXT    NOT NULL DEFAULT '',
    event      TEXT,
    source     TEXT,
    target     TEXT,
    from_team  TEXT,
    to_team    TEXT,
    score      REAL,
    touch_id   TEXT,
    data       TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS records_lead ON records (lead_id, seq);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, at);
"""

_COLUMNS = (
    "seq", "lead_id", "at", "kind", "actor", "actor_team", "reason", "event", "source",
    "target", "from_team", "to_team", "score", "touch_id", "data",
)  # fmt: skip


def _row(record: Record) -> tuple[Any, ...]:
    return (
        record.seq,
        record.lead_id,
        record.at.isoformat(),
        record.kind.value,
        record.actor.name,
        record.actor.team,
        record.reason,
        record.event,
        record.source,
        record.target,
        record.from_team,
        record.to_team,
        record.score,
        record.touch_id,
        json.dumps(thaw(record.data), sort_keys=True, default=str),
    )


class SQLiteStore:
    """An append-only log of records in a SQLite database file.

    Usable as an engine listener: every committed record is appended (and
    committed in batches; call :meth:`flush` or :meth:`close` at the end).

    Args:
        path: The database file, or ``":memory:"``.
        batch: How many records to buffer before writing.
    """

    def __init__(self, path: str | os.PathLike[str], *, batch: int = 10_000) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_SCHEMA)
        self._buffer: list[tuple[Any, ...]] = []
        self._batch = batch

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_record(self, record: Record, journey: Journey | None) -> None:
        """Listener hook: buffer *record* for writing."""
        self._buffer.append(_row(record))
        if len(self._buffer) >= self._batch:
            self.flush()

    def append(self, records: Iterable[Record]) -> None:
        """Append records and write them at once."""
        self._buffer.extend(_row(r) for r in records)
        self.flush()

    def flush(self) -> None:
        """Write buffered records in one transaction."""
        if not self._buffer:
            return
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._db:
            self._db.executemany(
                f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                self._buffer,
            )
        self._buffer.clear()

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        self._db.close()

    def __len__(self) -> int:
        self.flush()
        (count,) = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
        return int(count)

    def read(self, *, lead_id: str | None = None) -> Iterator[Record]:
        """Yield the records in log order (only *lead_id*'s when given)."""
        self.flush()
        query = f"SELECT {', '.join(_COLUMNS)} FROM records"
        params: tuple[str, ...] = ()
        if lead_id is not None:
            query += " WHERE lead_id = ?"
            params = (lead_id,)
        for row in self._db.execute(query + " ORDER BY seq", params):
            values = dict(zip(_COLUMNS, row, strict=True))
            values["data"] = json.loads(values["data"])
            yield Record.from_dict({k: v for k, v in values.items() if v is not None})


def write_jsonl_records(records: Iterable[Record], out: IO[str]) -> int:
    """Write records as JSON Lines; return how many were written."""
    count = 0
    for record in records:
        out.write(json.dumps(record.to_dict(), sort_keys=True, default=str) + "\n")
        count += 1
    return count


def read_jsonl_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Read records written by :func:`write_jsonl_records`."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield Record.from_dict(json.loads(line))
