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

import contextlib
import json
import os
import sqlite3
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import attrs

from buyerjourney._adapters.codec import (
    ACTION_COLUMNS,
    RECORD_COLUMNS,
    TOUCH_COLUMNS,
    action_from_row,
    action_row,
    journey_from_json,
    journey_to_json,
    record_from_row,
    record_row,
    touch_from_row,
    touch_row,
)
from buyerjourney._core.journey import Journey
from buyerjourney._core.protocols import QuarantineEntry, StoredLog
from buyerjourney._core.records import Action, Record, Touch
from buyerjourney.errors import StoreConflict, StoreError, StoreInUse

try:
    import fcntl
except ImportError:  # pragma: no cover  (not POSIX: no cross-process lock)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "SQLiteStore",
    "read_jsonl_records",
    "write_jsonl_records",
]

SCHEMA_VERSION = 3
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

_TOUCHES_V2 = """
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

_V3 = """
ALTER TABLE touches ADD COLUMN log_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS touches_log_seq ON touches (log_seq);
CREATE TABLE IF NOT EXISTS actions (
    position   INTEGER PRIMARY KEY,
    action_id  TEXT    UNIQUE,
    lead_id    TEXT    NOT NULL,
    at         TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    team       TEXT,
    event      TEXT,
    stage      TEXT,
    reason     TEXT    NOT NULL DEFAULT '',
    log_seq    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_lead ON actions (lead_id, position);
CREATE TABLE IF NOT EXISTS journeys (
    lead_id    TEXT    PRIMARY KEY,
    stage      TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    updated    TEXT    NOT NULL,
    journey    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS journeys_stage ON journeys (stage);
CREATE TABLE IF NOT EXISTS quarantine (
    entry_id   INTEGER PRIMARY KEY,
    source     TEXT    NOT NULL,
    line       INTEGER NOT NULL,
    code       TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    UNIQUE (source, line, code, text)
);
"""

_MIGRATIONS: dict[int, tuple[str, int]] = {
    0: (_RECORDS + _TOUCHES_V2, 2),  # a new file
    1: (_TOUCHES_V2, 2),  # version 1 kept only the records
    2: (_V3, 3),  # version 2 had no actions, journeys snapshot or quarantine
}
"""From each older version: the script that upgrades it, and the version it leads to."""

_COLUMNS = RECORD_COLUMNS
_TOUCH_COLUMNS = ("position", *TOUCH_COLUMNS, "log_seq")
_ACTION_COLUMNS = ("position", *ACTION_COLUMNS, "log_seq")
_JOURNEY_COLUMNS = ("lead_id", "stage", "owner", "version", "updated", "journey")
_QUARANTINE_COLUMNS = ("source", "line", "code", "reason", "text")


def _journey_row(journey: Journey) -> tuple[Any, ...]:
    return (
        journey.lead_id,
        journey.stage,
        journey.owner,
        journey.version,
        journey.updated.isoformat(),
        journey_to_json(journey),
    )


def _insert(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def _check_seq(stored: int, expected: int | None, records: Sequence[Record], where: str) -> None:
    """Refuse a commit written against another length of the log than the store's."""
    first = records[0].seq if records else stored
    if expected is None:
        expected = first
    if expected != stored or first != stored:
        msg = (
            f"the {where} store holds {stored} records but the writer knows {expected} and "
            f"writes record {first}: another writer appended first. An engine opened on the "
            "store (Engine(..., store=store)) catches up and retries by itself"
        )
        raise StoreConflict(msg, expected=expected, stored=stored)


class MemoryStore:
    """A :class:`~buyerjourney.Store` in memory: for tests, and to hand a log between engines.

    It behaves like the durable stores in everything but durability:
    optimistic concurrency, idempotent ids, the journeys snapshot and the
    quarantine. It is not shared between processes.
    """

    def __init__(self) -> None:
        self._records: list[Record] = []
        self._touches: list[tuple[int, Touch]] = []
        self._actions: list[tuple[int, Action]] = []
        self._ids: set[str] = set()
        self._action_ids: set[str] = set()
        self._journeys: dict[str, Journey] = {}
        self._quarantine: list[QuarantineEntry] = []
        self._next_entry = 1

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._records)} records, {len(self._touches)} touches)"

    def load(self, *, after: int = 0) -> StoredLog:
        """The log from seq *after* on, with the touches and actions of those operations."""
        return StoredLog(
            tuple(self._records[after:]),
            tuple(t for seq, t in self._touches if seq >= after),
            tuple(a for seq, a in self._actions if seq >= after),
        )

    def commit(
        self,
        records: Sequence[Record],
        touches: Sequence[Touch] = (),
        actions: Sequence[Action] = (),
        *,
        expected: int | None = None,
        journeys: Mapping[str, Journey] | None = None,
    ) -> None:
        """Append whole operations, or refuse them all (see :class:`~buyerjourney.Store`)."""
        stored = len(self._records)
        _check_seq(stored, expected, records, "memory")
        _check_ids(
            [t.touch_id for t in touches],
            [a.action_id for a in actions if a.action_id is not None],
            self._ids,
            self._action_ids,
            stored,
        )
        self._records.extend(records)
        self._touches.extend((stored, t) for t in touches)
        self._actions.extend((stored, a) for a in actions)
        self._ids.update(t.touch_id for t in touches)
        self._action_ids.update(a.action_id for a in actions if a.action_id is not None)
        if journeys:
            self._journeys.update(journeys)

    def journeys(self) -> dict[str, Journey]:
        """The snapshot of the current journeys."""
        return dict(self._journeys)

    def journey(self, lead_id: str) -> Journey | None:
        """The snapshot of one lead's journey (``None``: no such lead)."""
        return self._journeys.get(lead_id)

    def replace_journeys(self, journeys: Mapping[str, Journey]) -> None:
        """Replace the snapshot."""
        self._journeys = dict(journeys)

    def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Keep inputs that did not land (an entry already kept is not kept twice)."""
        kept = {_entry_key(e) for e in self._quarantine}
        for entry in entries:
            if _entry_key(entry) not in kept:
                kept.add(_entry_key(entry))
                self._quarantine.append(attrs.evolve(entry, entry_id=self._next_entry))
                self._next_entry += 1

    def quarantined(self) -> list[QuarantineEntry]:
        """The quarantine, oldest first."""
        return list(self._quarantine)

    def release(self, entry_ids: Iterable[int]) -> None:
        """Drop quarantine entries."""
        drop = set(entry_ids)
        self._quarantine = [e for e in self._quarantine if e.entry_id not in drop]


def _entry_key(entry: QuarantineEntry) -> tuple[str, int, str, str]:
    """What makes two quarantine entries the same input set aside for the same reason."""
    return (entry.source, entry.line, entry.code, entry.text)


def _check_ids(
    touch_ids: Sequence[str],
    action_ids: Sequence[str],
    touches: set[str] | None,
    actions: set[str] | None,
    stored: int,
) -> None:
    """Refuse ids stored already, or given twice in one commit."""
    for kind, ids, known in (("touch", touch_ids, touches), ("action", action_ids, actions)):
        seen: set[str] = set()
        for value in ids:
            if (known is not None and value in known) or value in seen:
                msg = (
                    f"the store already holds the {kind} id {value!r}: another writer "
                    "applied it first"
                )
                raise StoreConflict(msg, expected=stored, stored=None)
            seen.add(value)


class SQLiteStore:
    """The embedded default :class:`~buyerjourney.Store`: the log in a SQLite database file.

    Open an engine on it (``Engine(funnel, store=SQLiteStore(path))``) and
    every operation is stored in one transaction with its touch or action,
    the journeys snapshot is updated in the same transaction, and the next
    process resumes from the file. Several processes may write one file at
    once: commits are optimistic (see :class:`~buyerjourney.Store`), and an
    engine that meets a conflict catches up and retries. Every open store
    holds a shared lock on ``PATH.lock``; :meth:`exclusive` (used by the
    destructive commands) refuses while another process has the file open.

    It still works as an engine listener (records only, written in batches of
    *batch*), for a log of an engine that does not resume; that mode refuses
    a file that already holds a log.

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
        self._lock: int | None = None
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise _store_error(self.path, "open", exc) from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            self._migrate()
            self._lock = _shared_lock(self.path)
            if self._lock is not None:  # released with the store, even if never closed
                self._release = weakref.finalize(self, os.close, self._lock)
        except sqlite3.Error as exc:
            self._db.close()
            raise _store_error(self.path, "open", exc) from None
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            msg = (
                f"store {self.path!r} has schema version {version}, newer than this "
                f"buyerjourney's {SCHEMA_VERSION}; upgrade buyerjourney to open it"
            )
            raise StoreError(msg)
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = self._db.execute("PRAGMA user_version").fetchone()  # another process?
            if version == 0 and self._has_table("records"):
                version = 1  # a file of the first release: records only, no version set
            while version < SCHEMA_VERSION:
                script, version = _MIGRATIONS[version]
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
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

    def load(self, *, after: int = 0) -> StoredLog:
        """The log from seq *after* on, with the touches and actions of those operations."""
        self.flush()
        try:
            self._db.execute("BEGIN")  # one snapshot of all three tables
            try:
                records = tuple(self._records("WHERE seq >= ?", (after,)))
                touches = tuple(self._touches("WHERE log_seq >= ?", (after,)))
                actions = tuple(self._actions("WHERE log_seq >= ?", (after,)))
            finally:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        return StoredLog(records, touches, actions)

    def commit(
        self,
        records: Sequence[Record],
        touches: Sequence[Touch] = (),
        actions: Sequence[Action] = (),
        *,
        expected: int | None = None,
        journeys: Mapping[str, Journey] | None = None,
    ) -> None:
        """Store whole operations in one transaction: all of them, or none.

        Raises:
            StoreConflict: Another writer appended first, or an id is stored
                already; nothing was stored.
            StoreError: The write failed; nothing was stored.
        """
        with self._writing():
            stored = self._length()
            _check_seq(stored, expected, records, "SQLite")
            self._insert_records([record_row(r) for r in records])
            self._insert_inputs(stored, touches, actions)
            if journeys:
                self._db.executemany(
                    _insert("journeys", _JOURNEY_COLUMNS, "INSERT OR REPLACE"),
                    [_journey_row(j) for j in journeys.values()],
                )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction: committed whole, or rolled back; driver errors as StoreError."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise _store_error(self.path, "write to", exc) from None

    def _length(self) -> int:
        # MAX of the integer primary key is a lookup, not a scan
        (stored,) = self._db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM records").fetchone()
        return int(stored)

    def _insert_inputs(
        self, stored: int, touches: Sequence[Touch], actions: Sequence[Action]
    ) -> None:
        try:
            if touches:
                (position,) = self._db.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM touches"
                ).fetchone()
                self._db.executemany(
                    _insert("touches", _TOUCH_COLUMNS),
                    [(int(position) + i, *touch_row(t), stored) for i, t in enumerate(touches)],
                )
            if actions:
                (position,) = self._db.execute(
                    "SELECT COALESCE(MAX(position) + 1, 0) FROM actions"
                ).fetchone()
                self._db.executemany(
                    _insert("actions", _ACTION_COLUMNS),
                    [(int(position) + i, *action_row(a), stored) for i, a in enumerate(actions)],
                )
        except sqlite3.IntegrityError:
            # a UNIQUE id: find which, for the message (the transaction is rolled back)
            _check_ids(
                [t.touch_id for t in touches],
                [a.action_id for a in actions if a.action_id is not None],
                self._known("touches", "touch_id", [t.touch_id for t in touches]),
                self._known("actions", "action_id", [a.action_id for a in actions if a.action_id]),
                stored,
            )
            raise

    def _known(self, table: str, column: str, ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT {column} FROM {table} WHERE {column} IN ({', '.join('?' for _ in chunk)})",
                chunk,
            ).fetchall()
            known.update(row[0] for row in rows)
        return known

    def touches(self, *, lead_id: str | None = None) -> Iterator[Touch]:
        """Yield the applied touches in the order they were applied (only *lead_id*'s)."""
        where, params = ("WHERE lead_id = ?", (lead_id,)) if lead_id is not None else ("", ())
        try:
            items = list(self._touches(where, params))
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        yield from items

    def actions(self, *, lead_id: str | None = None) -> Iterator[Action]:
        """Yield the performed actions in the order they were performed (only *lead_id*'s)."""
        where, params = ("WHERE lead_id = ?", (lead_id,)) if lead_id is not None else ("", ())
        try:
            items = list(self._actions(where, params))
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        yield from items

    def _records(self, where: str, params: tuple[Any, ...]) -> Iterator[Record]:
        query = f"SELECT {', '.join(_COLUMNS)} FROM records {where} ORDER BY seq"
        for row in self._db.execute(query, params).fetchall():
            yield record_from_row(row)

    def _touches(self, where: str, params: tuple[Any, ...]) -> Iterator[Touch]:
        query = f"SELECT {', '.join(TOUCH_COLUMNS)} FROM touches {where} ORDER BY position"
        for row in self._db.execute(query, params).fetchall():
            yield touch_from_row(row)

    def _actions(self, where: str, params: tuple[Any, ...]) -> Iterator[Action]:
        query = f"SELECT {', '.join(ACTION_COLUMNS)} FROM actions {where} ORDER BY position"
        for row in self._db.execute(query, params).fetchall():
            yield action_from_row(row)

    # ---------------------------------------------------------------- snapshot, quarantine

    def journeys(self) -> dict[str, Journey]:
        """The snapshot of the current journeys, by lead id."""
        try:
            rows = self._db.execute("SELECT journey FROM journeys ORDER BY lead_id").fetchall()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        out = {}
        for (text,) in rows:
            journey = journey_from_json(text)
            out[journey.lead_id] = journey
        return out

    def journey(self, lead_id: str) -> Journey | None:
        """The snapshot of one lead's journey (``None``: no such lead)."""
        try:
            row = self._db.execute(
                "SELECT journey FROM journeys WHERE lead_id = ?", (lead_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        return None if row is None else journey_from_json(row[0])

    def replace_journeys(self, journeys: Mapping[str, Journey]) -> None:
        """Replace the whole snapshot in one transaction."""
        with self._writing():
            self._db.execute("DELETE FROM journeys")
            self._db.executemany(
                _insert("journeys", _JOURNEY_COLUMNS),
                [_journey_row(j) for j in journeys.values()],
            )

    def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Keep inputs that did not land, in one transaction.

        An entry kept already (the same source, line, code and text) is not kept twice.
        """
        if not entries:
            return
        with self._writing():
            self._db.executemany(
                _insert("quarantine", _QUARANTINE_COLUMNS, "INSERT OR IGNORE"),
                [(e.source, e.line, e.code, e.reason, e.text) for e in entries],
            )

    def quarantined(self) -> list[QuarantineEntry]:
        """The quarantine, oldest first, with each entry's id."""
        try:
            rows = self._db.execute(
                f"SELECT {', '.join(_QUARANTINE_COLUMNS)}, entry_id FROM quarantine "
                "ORDER BY entry_id"
            ).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        return [QuarantineEntry(*row) for row in rows]

    def release(self, entry_ids: Iterable[int]) -> None:
        """Drop quarantine entries (once retried successfully)."""
        ids = [(int(i),) for i in entry_ids]
        with self._writing():
            self._db.executemany("DELETE FROM quarantine WHERE entry_id = ?", ids)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store alone for a destructive operation (rebuild, clear).

        Raises:
            StoreInUse: Another process has the store open.
        """
        if self._lock is None or fcntl is None:
            yield
            return
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # a refused conversion drops the lock held: hold the shared one again
            fcntl.flock(self._lock, fcntl.LOCK_SH)
            msg = (
                f"store {self.path!r} is open in another process (an engine, an ingest, a "
                "report); stop it, then run this command again"
            )
            raise StoreInUse(msg) from None
        try:
            yield
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_SH)

    def clear(self) -> None:
        """Delete everything the store holds (the log too). Needs the store alone.

        Raises:
            StoreInUse: Another process has the store open.
        """
        with self.exclusive(), self._writing():
            for table in ("records", "touches", "actions", "journeys", "quarantine"):
                self._db.execute(f"DELETE FROM {table}")

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
        self._buffer.append(record_row(record))
        if len(self._buffer) >= self._batch:
            self.flush()

    def append(self, records: Iterable[Record]) -> None:
        """Append records and write them at once."""
        self._buffer.extend(record_row(r) for r in records)
        self.flush()

    def flush(self) -> None:
        """Write buffered records in one transaction."""
        if not self._buffer:
            return
        with self._writing():
            self._insert_records(self._buffer)
        self._buffer.clear()

    def _insert_records(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._db.executemany(_insert("records", _COLUMNS), rows)

    def close(self) -> None:
        """Flush and close the database (and release the lock)."""
        try:
            self.flush()
        finally:
            self._db.close()
            if self._lock is not None:
                self._release()
                self._lock = None

    def __len__(self) -> int:
        self.flush()
        try:
            return self._length()
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None

    def read(self, *, lead_id: str | None = None) -> Iterator[Record]:
        """Yield the records in log order (only *lead_id*'s when given)."""
        self.flush()
        where, params = ("WHERE lead_id = ?", (lead_id,)) if lead_id is not None else ("", ())
        try:
            items = list(self._records(where, params))
        except sqlite3.Error as exc:
            raise _store_error(self.path, "read", exc) from None
        yield from items


def _shared_lock(path: str) -> int | None:
    """Open ``PATH.lock`` and hold a shared lock on it while the store is open (its fd)."""
    if path == ":memory:" or path.startswith("file:") or fcntl is None:
        return None
    try:
        handle = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None  # a read-only directory: no lock, as SQLite itself would allow reading
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        msg = (
            f"store {path!r} is held alone by another process (a rebuild or clear); wait "
            "for it to finish, then try again"
        )
        raise StoreInUse(msg) from None
    return handle


def _store_error(path: str, doing: str, exc: sqlite3.Error | UnicodeEncodeError) -> StoreError:
    """A :class:`~buyerjourney.errors.StoreError` for a SQLite failure, saying what to do."""
    text = str(exc)
    if isinstance(exc, UnicodeEncodeError):
        text = "text that is not valid Unicode (a lone surrogate)"
        hint = "fix the input: every id, name and value must be valid Unicode text"
        return StoreError(f"cannot {doing} store {path!r}: {text}; {hint}")
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
