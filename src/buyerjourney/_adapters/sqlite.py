"""Where the log lives: the embedded SQLite store (the default), memory, and JSON Lines files.

A store keeps the append-only log and the touches that were applied; an
engine opened on it resumes where the last process stopped. SQLite comes
with Python, so the default store needs nothing extra::

    store = SQLiteStore("journeys.db")
    engine = Engine(funnel, store=store)      # resumes from what the file holds
    engine.ingest(touches)                    # each operation is stored atomically
    store.close()

The database runs in WAL mode with ``synchronous=NORMAL``: a committed
operation survives a crash of the process; after a power failure the last
few committed operations may be lost, but never part of one (see the
persistence guide). ``durability="full"`` makes every commit survive power
loss too, at the cost of an fsync per commit. The schema is versioned
(``PRAGMA user_version``) and older files are migrated when opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from buyerjourney._core._values import thaw
from buyerjourney._core.journey import Journey
from buyerjourney._core.protocols import StoredLog
from buyerjourney._core.records import Record, Touch, parse_time
from buyerjourney.errors import StoreError

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "SQLiteStore",
    "read_jsonl_records",
    "write_jsonl_records",
]

SCHEMA_VERSION = 2
"""The version of the store's schema; older files are migrated on open."""

_RECORDS = """
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

_TOUCHES = """
CREATE TABLE IF NOT EXISTS touches (
    position   INTEGER PRIMARY KEY,
    touch_id   TEXT    NOT NULL UNIQUE,
    lead_id    TEXT    NOT NULL,
    at         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    properties TEXT    NOT NULL DEFAULT '{}',
    attributes TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS touches_lead ON touches (lead_id, position);
"""

_MIGRATIONS: dict[int, str] = {
    0: _RECORDS + _TOUCHES,  # a new file
    1: _TOUCHES,  # version 1 kept only the records
}

_COLUMNS = (
    "seq", "lead_id", "at", "kind", "actor", "actor_team", "reason", "event", "source",
    "target", "from_team", "to_team", "score", "touch_id", "data",
)  # fmt: skip
_TOUCH_COLUMNS = ("position", "touch_id", "lead_id", "at", "kind", "properties", "attributes")


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


def _touch_row(position: int, touch: Touch) -> tuple[Any, ...]:
    return (
        position,
        touch.touch_id,
        touch.lead_id,
        touch.at.isoformat(),
        touch.kind,
        json.dumps(thaw(touch.properties), sort_keys=True),
        json.dumps(thaw(touch.attributes), sort_keys=True),
    )


class MemoryStore:
    """A :class:`~buyerjourney.Store` in memory: for tests, and to hand a log between engines."""

    def __init__(self) -> None:
        self._records: list[Record] = []
        self._touches: list[Touch] = []

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._records)} records, {len(self._touches)} touches)"

    def load(self) -> StoredLog:
        """The stored log and applied touches."""
        return StoredLog(tuple(self._records), tuple(self._touches))

    def commit(self, records: Sequence[Record], touches: Sequence[Touch]) -> None:
        """Append whole operations (a list append cannot fail half-way)."""
        _check_seq(len(self._records), records, "memory")
        self._records.extend(records)
        self._touches.extend(touches)


def _check_seq(stored: int, records: Sequence[Record], where: str) -> None:
    if records and records[0].seq != stored:
        msg = (
            f"the {where} store holds {stored} records but the engine writes record "
            f"{records[0].seq}: another engine wrote to it, or this engine did not resume "
            "from it; open the engine with Engine(..., store=store) to continue a stored log"
        )
        raise StoreError(msg)


class SQLiteStore:
    """The embedded default :class:`~buyerjourney.Store`: the log in a SQLite database file.

    Open an engine on it (``Engine(funnel, store=SQLiteStore(path))``) and
    every operation is stored in one transaction with its touch, and the next
    process resumes from the file. It still works as an engine listener
    (records only, written in batches of *batch*), for a log of an engine that
    does not resume; that mode refuses a file that already holds a log.

    Args:
        path: The database file, or ``":memory:"``.
        batch: How many records to buffer before writing, as a listener.
        durability: ``"normal"`` (WAL, ``synchronous=NORMAL``: an operation
            survives a crash of the process) or ``"full"`` (``synchronous=FULL``:
            it survives a power failure too; slower).

    Raises:
        StoreError: The file cannot be opened as a store (not a database, made
            by a newer version, locked ...); the message says what to do.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch: int = 10_000,
        durability: Literal["normal", "full"] = "normal",
    ) -> None:
        self.path = str(path)
        self._buffer: list[tuple[Any, ...]] = []
        self._batch = batch
        self._count: int | None = None
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            self._migrate()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "open", exc) from None

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            msg = (
                f"store {self.path!r} has schema version {version}, newer than this "
                f"buyerjourney's {SCHEMA_VERSION}; upgrade buyerjourney to open it"
            )
            raise StoreError(msg)
        if version == 0 and self._has_table("records"):
            version = 1  # a file of the first release: records only, no version set
        if version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executescript(_MIGRATIONS[version])
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- the store

    def load(self) -> StoredLog:
        """The stored log and applied touches, in order."""
        self.flush()
        return StoredLog(tuple(self.read()), tuple(self.touches()))

    def commit(self, records: Sequence[Record], touches: Sequence[Touch]) -> None:
        """Store whole operations in one transaction: all of them, or none.

        Raises:
            StoreError: The write failed (nothing was stored), or the file holds
                records this engine did not resume from.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # MAX of the integer primary key is a lookup, not a scan
                (stored,) = self._db.execute(
                    "SELECT COALESCE(MAX(seq) + 1, 0) FROM records"
                ).fetchone()
                _check_seq(int(stored), records, "SQLite")
                (position,) = self._db.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM touches"
                ).fetchone()
                self._insert_records([_row(r) for r in records])
                self._db.executemany(
                    f"INSERT INTO touches ({', '.join(_TOUCH_COLUMNS)}) VALUES "
                    f"({', '.join('?' for _ in _TOUCH_COLUMNS)})",
                    [_touch_row(int(position) + i, t) for i, t in enumerate(touches)],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(self.path, "write to", exc) from None

    def touches(self, *, lead_id: str | None = None) -> Iterator[Touch]:
        """Yield the applied touches in the order they were applied (only *lead_id*'s)."""
        query = f"SELECT {', '.join(_TOUCH_COLUMNS)} FROM touches"
        params: tuple[str, ...] = ()
        if lead_id is not None:
            query += " WHERE lead_id = ?"
            params = (lead_id,)
        try:
            rows = self._db.execute(query + " ORDER BY position", params).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        for _, touch_id, lead, at, kind, properties, attributes in rows:
            yield Touch(
                touch_id,
                lead,
                parse_time(at),
                kind,
                properties=json.loads(properties),
                attributes=json.loads(attributes),
            )

    # ---------------------------------------------------------------- as a listener

    def on_record(self, record: Record, journey: Journey | None) -> None:
        """Listener hook: buffer *record* for writing (records only; see the class)."""
        if self._count is None:
            self._count = len(self)
        if record.seq != self._count:
            msg = (
                f"store {self.path!r} already holds {self._count} records; a new engine "
                "would write a second log over it. Open the engine with "
                "Engine(..., store=SQLiteStore(path)) to continue it, or use a new file"
            )
            raise StoreError(msg)
        self._count += 1
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
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._insert_records(self._buffer)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(self.path, "write to", exc) from None
        self._buffer.clear()

    def _insert_records(self, rows: Sequence[tuple[Any, ...]]) -> None:
        placeholders = ", ".join("?" for _ in _COLUMNS)
        self._db.executemany(
            f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({placeholders})", rows
        )

    def close(self) -> None:
        """Flush and close the database."""
        try:
            self.flush()
        finally:
            self._db.close()

    def __len__(self) -> int:
        self.flush()
        try:
            (count,) = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        return int(count)

    def read(self, *, lead_id: str | None = None) -> Iterator[Record]:
        """Yield the records in log order (only *lead_id*'s when given)."""
        self.flush()
        query = f"SELECT {', '.join(_COLUMNS)} FROM records"
        params: tuple[str, ...] = ()
        if lead_id is not None:
            query += " WHERE lead_id = ?"
            params = (lead_id,)
        try:
            rows = self._db.execute(query + " ORDER BY seq", params).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        for row in rows:
            values = dict(zip(_COLUMNS, row, strict=True))
            values["data"] = json.loads(values["data"])
            yield Record.from_dict({k: v for k, v in values.items() if v is not None})


def _store_error(path: str, doing: str, exc: sqlite3.Error) -> StoreError:
    """A :class:`~buyerjourney.errors.StoreError` for a SQLite failure, saying what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        hint = "another process holds the database; wait for it, or use another file"
    elif "not a database" in text or "malformed" in text:
        hint = "the file is not a buyerjourney store; give a new file name"
    elif "readonly" in text or "unable to open" in text:
        hint = "check that the directory exists and is writable"
    else:
        hint = "check the file and the disk (free space, permissions)"
    return StoreError(f"cannot {doing} store {path!r}: {text}; {hint}")


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
