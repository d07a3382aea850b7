"""A store that workers share: the log in a PostgreSQL database (the ``postgres`` extra).

:class:`PostgresStore` keeps the same tables as the SQLite store (records,
touches, actions, the journeys snapshot and the quarantine) in a PostgreSQL
schema of their own, written and read through the one codec of
:mod:`buyerjourney._adapters.codec`, so a log reads back the same from
either store::

    store = PostgresStore("postgresql://app@db.internal/sales", schema="journeys")
    engine = Engine(funnel, store=store)      # resumes from what the schema holds
    engine.ingest(touches)                    # each operation commits atomically
    store.close()

How it keeps its promises:

* **One transaction per commit, writers in line.** :meth:`PostgresStore.commit`
  locks the one row of the ``head`` table (``SELECT ... FOR UPDATE``), checks
  the writer's *expected* log length against it, copies the records, touches
  and actions in (``COPY``), upserts the journeys snapshot and moves the head,
  all in one transaction. A longer log or a touch or action id stored already
  refuses the whole commit with :class:`~buyerjourney.errors.StoreConflict`.
* **One snapshot per load.** :meth:`PostgresStore.load` reads the three
  tables in one ``REPEATABLE READ`` transaction.
* **Destructive commands refuse a store in use.** Every open store holds a
  shared advisory lock on its schema, on a connection of its own, for as long
  as it is open; :meth:`PostgresStore.exclusive` (and :meth:`~PostgresStore.clear`)
  need the exclusive form and raise :class:`~buyerjourney.errors.StoreInUse`
  while another store is open.
* **A versioned schema.** The ``meta`` table holds the schema's version; it
  is created or migrated on open under a transaction-level advisory lock, and
  a version newer than this release is refused.

Times are stored as the codec writes them, ISO-8601 text in UTC, not as
``timestamptz``: the text round-trips exactly (microseconds and the UTC
offset as the engine had them), sorts in time order, and is the same text
the SQLite store holds, so a log moves between the two without a second
encoding. Every driver error becomes a :class:`~buyerjourney.errors.StoreError`
that names the store (its URL without the password), what failed and what to
do.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
from buyerjourney._adapters.sqlite import _check_ids, _check_seq
from buyerjourney._core.journey import Journey
from buyerjourney._core.protocols import QuarantineEntry, StoredLog
from buyerjourney._core.records import Action, Record, Touch
from buyerjourney.errors import MissingExtra, StoreConflict, StoreError, StoreInUse

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # the postgres extra is not installed: PostgresStore() says so
    psycopg = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["POSTGRES_SCHEMA_VERSION", "PostgresStore"]

POSTGRES_SCHEMA_VERSION = 1
"""The version of the PostgreSQL store's tables; older schemas are migrated on open."""

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_TABLES = ("meta", "head", "records", "touches", "actions", "journeys", "quarantine")

_V1 = """
CREATE TABLE {s}.head (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    length     bigint  NOT NULL,
    touches    bigint  NOT NULL,
    actions    bigint  NOT NULL
);
INSERT INTO {s}.head (id, length, touches, actions) VALUES (true, 0, 0, 0);
CREATE TABLE {s}.records (
    seq        bigint  PRIMARY KEY,
    lead_id    text    NOT NULL,
    at         text    NOT NULL,
    kind       text    NOT NULL,
    actor      text    NOT NULL,
    actor_team text,
    reason     text    NOT NULL DEFAULT '',
    event      text,
    source     text,
    target     text,
    from_team  text,
    to_team    text,
    score      double precision,
    touch_id   text,
    data       text    NOT NULL DEFAULT '{{}}'
);
CREATE INDEX records_lead ON {s}.records (lead_id, seq);
CREATE INDEX records_kind ON {s}.records (kind, at);
CREATE TABLE {s}.touches (
    position   bigint  PRIMARY KEY,
    touch_id   text    NOT NULL UNIQUE,
    lead_id    text    NOT NULL,
    at         text    NOT NULL,
    kind       text    NOT NULL,
    properties text    NOT NULL DEFAULT '{{}}',
    attributes text    NOT NULL DEFAULT '{{}}',
    log_seq    bigint  NOT NULL
);
CREATE INDEX touches_lead ON {s}.touches (lead_id, position);
CREATE INDEX touches_log_seq ON {s}.touches (log_seq);
CREATE TABLE {s}.actions (
    position   bigint  PRIMARY KEY,
    action_id  text    UNIQUE,
    lead_id    text    NOT NULL,
    at         text    NOT NULL,
    action     text    NOT NULL,
    actor      text    NOT NULL,
    team       text,
    event      text,
    stage      text,
    reason     text    NOT NULL DEFAULT '',
    log_seq    bigint  NOT NULL
);
CREATE INDEX actions_lead ON {s}.actions (lead_id, position);
CREATE INDEX actions_log_seq ON {s}.actions (log_seq);
CREATE TABLE {s}.journeys (
    lead_id    text    PRIMARY KEY,
    stage      text    NOT NULL,
    owner      text    NOT NULL,
    version    bigint  NOT NULL,
    updated    text    NOT NULL,
    journey    text    NOT NULL
);
CREATE INDEX journeys_stage ON {s}.journeys (stage);
CREATE TABLE {s}.quarantine (
    entry_id   bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     text    NOT NULL,
    line       bigint  NOT NULL,
    code       text    NOT NULL,
    reason     text    NOT NULL,
    text       text    NOT NULL
);
CREATE UNIQUE INDEX quarantine_input ON {s}.quarantine (source, line, code, md5(text))
"""

_MIGRATIONS: dict[int, tuple[str, int]] = {
    0: (_V1, 1),  # a new schema
}
"""From each older version: the script that upgrades it, and the version it leads to."""

_TOUCH_COLUMNS = ("position", *TOUCH_COLUMNS, "log_seq")
_ACTION_COLUMNS = ("position", *ACTION_COLUMNS, "log_seq")
_JOURNEY_COLUMNS = ("lead_id", "stage", "owner", "version", "updated", "journey")
_QUARANTINE_COLUMNS = ("source", "line", "code", "reason", "text")

_T = TypeVar("_T")


def _lock_key(purpose: str, schema: str) -> int:
    """A 64-bit advisory lock key for *purpose* on *schema* (advisory locks are per database)."""
    digest = hashlib.blake2b(f"buyerjourney:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _journey_row(journey: Journey) -> tuple[Any, ...]:
    return (
        journey.lead_id,
        journey.stage,
        journey.owner,
        journey.version,
        journey.updated.isoformat(),
        journey_to_json(journey),
    )


def _label(url: str, schema: str) -> str:
    """The store as messages name it: its URL without the password, and its schema."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return f"<an invalid PostgreSQL URL> (schema {schema!r})"
    user = info.get("user")
    host = info.get("host") or info.get("hostaddr") or "localhost"
    port = info.get("port")
    where = f"{user}@{host}" if user else str(host)
    if port:
        where += f":{port}"
    return f"postgresql://{where}/{info.get('dbname') or ''} (schema {schema!r})"


class PostgresStore:
    """A :class:`~buyerjourney.Store` in PostgreSQL, for apps whose workers share one log.

    Open an engine on it (``Engine(funnel, store=PostgresStore(url))``) in
    every worker: each operation is stored in one transaction with its touch
    or action and the journeys it changed; commits are optimistic (see
    :class:`~buyerjourney.Store`) and serialised on the log's head, so a
    worker whose commit meets another's catches up and retries, and several
    workers give the result of a serial run. Each store keeps two
    connections: one for its work and one that holds a shared advisory lock
    on the schema while it is open, so that :meth:`exclusive` (rebuild,
    clear) refuses a store in use.

    Args:
        url: A libpq connection string (``postgresql://user:password@host:port/database``
            or ``"host=... dbname=..."``); a password in it is never shown in
            messages.
        schema: The PostgreSQL schema that holds the store's tables (created
            when missing). Two stores on one database with different schemas
            are independent.

    Raises:
        MissingExtra: psycopg is not installed (``pip install 'buyerjourney[postgres]'``).
        StoreError: The server cannot be reached, refuses the login, or the
            schema is not a store of this version; the message says what to do.
        StoreInUse: Another process holds the store alone (a rebuild or clear).
    """

    def __init__(self, url: str, *, schema: str = "buyerjourney") -> None:
        if psycopg is None:
            raise MissingExtra("PostgresStore", "postgres")
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            msg = (
                f"cannot open a PostgreSQL store in schema {schema!r}: a schema name is "
                "1 to 63 letters, digits and underscores, not starting with a digit"
            )
            raise StoreError(msg)
        if not isinstance(url, str):
            msg = f"a PostgreSQL store needs a connection URL as a str (got {url!r})"
            raise StoreError(msg)
        self.schema = schema
        self.name = _label(url, schema)
        """The store as messages name it (the URL without its password, and the schema)."""
        self._url = url
        self._s = f'"{schema}"'
        self._lock_key = _lock_key("open", schema)
        self._migrate_key = _lock_key("migrate", schema)
        self._db: Connection[Any] | None = None
        self._lock: Connection[Any] | None = None
        self._closer: weakref.finalize[Any, Any] | None = None
        self._opened = False
        self._db = self._connect()
        try:
            self._migrate()
            self._lock = self._connect()
            self._hold_shared(self._lock)
        except BaseException:
            self._close_connections()
            raise
        self._opened = True
        self._closer = weakref.finalize(self, _close_all, [self._db, self._lock])

    # ---------------------------------------------------------------- connections

    def _connect(self) -> Connection[Any]:
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except psycopg.ProgrammingError:
            msg = (
                f"cannot open PostgreSQL store {self.name}: the URL is not a connection "
                "string; give postgresql://user:password@host:port/database"
            )
            raise StoreError(msg) from None
        except psycopg.Error as exc:
            raise self._error("connect to", exc) from None

    def _hold_shared(self, lock: Connection[Any]) -> None:
        try:
            (held,) = self._one(lock, "SELECT pg_try_advisory_lock_shared(%s)", (self._lock_key,))
        except psycopg.Error as exc:
            raise self._error("lock", exc) from None
        if not held:
            msg = (
                f"store {self.name} is held alone by another process (a rebuild or clear); "
                "wait for it to finish, then open the store again"
            )
            raise StoreInUse(msg)

    def _conn(self) -> Connection[Any]:
        """The working connection; a lost one is replaced (the lock too) before the next call."""
        if self._db is None:
            msg = f"store {self.name} is closed; open a new PostgresStore"
            raise StoreError(msg)
        renewed = False
        if self._db.broken or self._db.closed:
            _close_all([self._db])
            self._db = self._connect()
            renewed = True
        if self._opened and (renewed or not _alive(self._lock)):
            _close_all([self._lock])
            self._lock = None
            lock = self._connect()
            try:
                self._hold_shared(lock)
            except BaseException:
                _close_all([lock])
                raise
            self._lock = lock
            renewed = True
        if renewed and self._closer is not None:
            self._closer.detach()
            self._closer = weakref.finalize(self, _close_all, [self._db, self._lock])
        return self._db

    def _one(
        self, conn: Connection[Any], query: str, params: tuple[Any, ...] = ()
    ) -> tuple[Any, ...]:
        row = conn.execute(query, params).fetchone()
        if row is None:
            msg = (
                f"store {self.name}: a {query.split(maxsplit=1)[0]} returned no row: the store "
                "is damaged (a table changed by hand?); restore the schema from a "
                "backup, or ingest again into a new schema"
            )
            raise StoreError(msg)
        return tuple(row)

    def _close_connections(self) -> None:
        _close_all([self._db, self._lock])
        self._db = self._lock = None

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN") -> Iterator[Connection[Any]]:
        conn = self._conn()
        conn.execute(begin)
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _run(self, doing: str, work: Callable[[], _T]) -> _T:
        """Run *work*, turning a driver error into a StoreError that says what to do."""
        try:
            return work()
        except (StoreError, MissingExtra):
            raise
        except psycopg.Error as exc:
            raise self._error(doing, exc) from None
        except UnicodeEncodeError as exc:
            msg = (
                f"cannot {doing} PostgreSQL store {self.name}: a text holds "
                f"{exc.object[exc.start : exc.end]!r}, which is not valid Unicode (a lone "
                "surrogate); nothing was stored. Fix the input's encoding"
            )
            raise StoreError(msg) from None

    def _error(self, doing: str, exc: Exception) -> StoreError:
        """A StoreError for a psycopg failure: the store, what failed, what to do."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = text.removeprefix("connection failed: ")
        sqlstate = getattr(exc, "sqlstate", None) or ""
        lowered = text.lower()
        if isinstance(exc, pg_errors.UndefinedTable | pg_errors.UndefinedColumn):
            hint = (
                "a table of the store is missing or changed (altered by hand?): the store is "
                "damaged; restore the schema from a backup, or ingest again into a new schema"
            )
        elif "password" in lowered or sqlstate == "28P01":
            hint = "check the user name and password in the URL"
        elif sqlstate.startswith("28") or ("role" in lowered and "does not exist" in lowered):
            hint = "check the user name in the URL, and that the server lets it log in"
        elif sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
            hint = "create the database (createdb NAME) or fix its name in the URL"
        elif isinstance(exc, pg_errors.InsufficientPrivilege):
            hint = "grant the user rights on the database and the schema, or use another schema"
        elif isinstance(exc, psycopg.DataError) and "nul" in lowered:
            hint = "a text holds a NUL character, which PostgreSQL cannot store; nothing was stored"
        elif isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            hint = (
                "the server cannot be reached or the connection was lost: check that it runs "
                "and listens at that host and port, then try again (the store reconnects)"
            )
        else:
            hint = "check the server's log; nothing of this call was stored"
        return StoreError(f"cannot {doing} PostgreSQL store {self.name}: {text}; {hint}")

    # ---------------------------------------------------------------- schema

    def _migrate(self) -> None:
        self._run("open", self._migrate_now)

    def _version(self, conn: Connection[Any]) -> int | None:
        """The stored version (``None``: no meta table in the schema)."""
        (meta,) = self._one(conn, "SELECT to_regclass(%s)", (f"{self._s}.meta",))
        if meta is None:
            return None
        row = conn.execute(f"SELECT value FROM {self._s}.meta WHERE key = 'version'").fetchone()
        if row is None or not str(row[0]).isdigit():
            msg = (
                f"store {self.name} has a meta table without a schema version (got "
                f"{None if row is None else row[0]!r}); it is not a buyerjourney store: "
                "give another schema"
            )
            raise StoreError(msg)
        return int(row[0])

    def _migrate_now(self) -> None:
        conn = self._conn()
        version = self._version(conn)
        if version == POSTGRES_SCHEMA_VERSION:
            self._check_tables(conn)
            return
        # A session lock taken before the transaction, not a transaction lock inside it:
        # the transaction then starts after the previous holder committed, and sees the
        # tables it created (a lock taken mid-transaction leaves stale catalog caches).
        conn.execute("SELECT pg_advisory_lock(%s)", (self._migrate_key,))
        try:
            with self._transaction() as tx:
                self._upgrade(tx)
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._migrate_key,))
        self._check_tables(conn)

    def _upgrade(self, tx: Connection[Any]) -> None:
        version = self._version(tx)  # another process may have gone first
        if version is None:
            self._check_foreign(tx)
            exists = tx.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if exists is None:
                tx.execute(f"CREATE SCHEMA {self._s}")
            tx.execute(f"CREATE TABLE {self._s}.meta (key text PRIMARY KEY, value text NOT NULL)")
            version = 0
        if version > POSTGRES_SCHEMA_VERSION:
            msg = (
                f"store {self.name} has schema version {version}, newer than this "
                f"buyerjourney's {POSTGRES_SCHEMA_VERSION}; upgrade buyerjourney to open it"
            )
            raise StoreError(msg)
        if version == POSTGRES_SCHEMA_VERSION:
            return
        while version < POSTGRES_SCHEMA_VERSION:
            script, version = _MIGRATIONS[version]
            for statement in script.format(s=self._s).split(";"):
                if statement.strip():
                    tx.execute(statement)
        tx.execute(
            f"INSERT INTO {self._s}.meta (key, value) VALUES ('version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (str(POSTGRES_SCHEMA_VERSION),),
        )

    def _check_foreign(self, conn: Connection[Any]) -> None:
        """Refuse a schema that holds tables of another application."""
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (self.schema,),
        ).fetchall()
        if rows:
            names = ", ".join(sorted(str(r[0]) for r in rows)[:5])
            msg = (
                f"schema {self.schema!r} of {self.name} holds tables that are not a "
                f"buyerjourney store ({names}); give another schema (schema=...)"
            )
            raise StoreError(msg)

    def _check_tables(self, conn: Connection[Any]) -> None:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (self.schema,),
        ).fetchall()
        missing = sorted(set(_TABLES) - {str(r[0]) for r in rows})
        if missing:
            msg = (
                f"store {self.name} lacks the table(s) {', '.join(missing)} (dropped by "
                "hand?): the store is damaged; restore the schema from a backup, or ingest "
                "again into a new schema"
            )
            raise StoreError(msg)

    def __repr__(self) -> str:
        return f"PostgresStore({self.name})"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close both connections (and so release the store's lock). Closing twice is harmless."""
        if self._closer is not None:
            self._closer.detach()
            self._closer = None
        self._close_connections()

    # ---------------------------------------------------------------- the store

    def load(self, *, after: int = 0) -> StoredLog:
        """The log from seq *after* on, with the touches and actions of those operations.

        The three tables are read in one ``REPEATABLE READ`` snapshot, so a
        load never sees half of another writer's commit.

        Raises:
            StoreError: The read failed.
        """

        def work() -> StoredLog:
            with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as tx:
                records = self._records(tx, "WHERE seq >= %s", (after,))
                touches = self._touches(tx, "WHERE log_seq >= %s", (after,))
                actions = self._actions(tx, "WHERE log_seq >= %s", (after,))
            return StoredLog(tuple(records), tuple(touches), tuple(actions))

        return self._run("read", work)

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

        Args:
            records: The records, numbered from the store's log length on.
            touches: The touches the operations applied.
            actions: The actions the operations performed.
            expected: The log length the writer knows (``None``: the first
                record's ``seq``).
            journeys: The journeys after the operations, upserted into the snapshot.

        Raises:
            StoreConflict: Another writer appended first, or a touch or action
                id is stored already (or given twice); nothing was stored.
            StoreError: The write failed; nothing was stored.
        """
        touch_ids = [t.touch_id for t in touches]
        action_ids = [a.action_id for a in actions if a.action_id is not None]

        def work() -> None:
            with self._transaction() as tx:
                length, next_touch, next_action = self._one(
                    tx, f"SELECT length, touches, actions FROM {self._s}.head FOR UPDATE"
                )
                stored = int(length)
                self._refuse_conflict(lambda: _check_seq(stored, expected, records, "PostgreSQL"))
                self._refuse_conflict(lambda: _check_ids(touch_ids, action_ids, None, None, stored))
                try:
                    self._copy(tx, "records", RECORD_COLUMNS, (record_row(r) for r in records))
                    self._copy(
                        tx,
                        "touches",
                        _TOUCH_COLUMNS,
                        ((next_touch + i, *touch_row(t), stored) for i, t in enumerate(touches)),
                    )
                    self._copy(
                        tx,
                        "actions",
                        _ACTION_COLUMNS,
                        ((next_action + i, *action_row(a), stored) for i, a in enumerate(actions)),
                    )
                except pg_errors.UniqueViolation:
                    tx.execute("ROLLBACK")
                    tx.execute("BEGIN")  # the context manager ends this empty transaction
                    self._conflict_on_ids(tx, stored, touch_ids, action_ids)
                    raise
                tx.execute(
                    f"UPDATE {self._s}.head SET length = %s, touches = %s, actions = %s",
                    (
                        records[-1].seq + 1 if records else stored,
                        next_touch + len(touches),
                        next_action + len(actions),
                    ),
                )
                if journeys:
                    self._upsert_journeys(tx, journeys.values())

        self._run("write to", work)

    def _refuse_conflict(self, check: Callable[[], None]) -> None:
        try:
            check()
        except StoreConflict as exc:
            raise StoreConflict(
                f"store {self.name}: {exc}", expected=exc.expected, stored=exc.stored
            ) from None

    def _conflict_on_ids(
        self, conn: Connection[Any], stored: int, touch_ids: list[str], action_ids: list[str]
    ) -> None:
        """Raise the StoreConflict naming the id another writer stored first."""
        known_touches = self._known(conn, "touches", "touch_id", touch_ids)
        known_actions = self._known(conn, "actions", "action_id", action_ids)
        self._refuse_conflict(
            lambda: _check_ids(touch_ids, action_ids, known_touches, known_actions, stored)
        )

    def _known(self, conn: Connection[Any], table: str, column: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        rows = conn.execute(
            f"SELECT {column} FROM {self._s}.{table} WHERE {column} = ANY(%s)", (ids,)
        ).fetchall()
        return {str(r[0]) for r in rows}

    def _copy(
        self,
        conn: Connection[Any],
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        iterator = iter(rows)
        first = next(iterator, None)
        if first is None:
            return
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {self._s}.{table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            copy.write_row(first)
            for row in iterator:
                copy.write_row(row)

    def _upsert_journeys(self, conn: Connection[Any], journeys: Iterable[Journey]) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _JOURNEY_COLUMNS[1:])
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self._s}.journeys ({', '.join(_JOURNEY_COLUMNS)}) "
                f"VALUES ({', '.join('%s' for _ in _JOURNEY_COLUMNS)}) "
                f"ON CONFLICT (lead_id) DO UPDATE SET {updates}",
                [_journey_row(j) for j in journeys],
            )

    def _records(self, conn: Connection[Any], where: str, params: tuple[Any, ...]) -> list[Record]:
        query = f"SELECT {', '.join(RECORD_COLUMNS)} FROM {self._s}.records {where} ORDER BY seq"
        return [record_from_row(row) for row in conn.execute(query, params).fetchall()]

    def _touches(self, conn: Connection[Any], where: str, params: tuple[Any, ...]) -> list[Touch]:
        query = (
            f"SELECT {', '.join(TOUCH_COLUMNS)} FROM {self._s}.touches {where} ORDER BY position"
        )
        return [touch_from_row(row) for row in conn.execute(query, params).fetchall()]

    def _actions(self, conn: Connection[Any], where: str, params: tuple[Any, ...]) -> list[Action]:
        query = (
            f"SELECT {', '.join(ACTION_COLUMNS)} FROM {self._s}.actions {where} ORDER BY position"
        )
        return [action_from_row(row) for row in conn.execute(query, params).fetchall()]

    def _by_lead(self, lead_id: str | None) -> tuple[str, tuple[Any, ...]]:
        return ("WHERE lead_id = %s", (lead_id,)) if lead_id is not None else ("", ())

    def read(self, *, lead_id: str | None = None) -> Iterator[Record]:
        """Yield the records in log order (only *lead_id*'s when given).

        Raises:
            StoreError: The read failed.
        """
        where, params = self._by_lead(lead_id)
        yield from self._run("read", lambda: self._records(self._conn(), where, params))

    def touches(self, *, lead_id: str | None = None) -> Iterator[Touch]:
        """Yield the applied touches in the order they were applied (only *lead_id*'s).

        Raises:
            StoreError: The read failed.
        """
        where, params = self._by_lead(lead_id)
        yield from self._run("read", lambda: self._touches(self._conn(), where, params))

    def actions(self, *, lead_id: str | None = None) -> Iterator[Action]:
        """Yield the performed actions in the order they were performed (only *lead_id*'s).

        Raises:
            StoreError: The read failed.
        """
        where, params = self._by_lead(lead_id)
        yield from self._run("read", lambda: self._actions(self._conn(), where, params))

    def __len__(self) -> int:
        """The number of records in the log."""

        def work() -> int:
            (length,) = self._one(self._conn(), f"SELECT length FROM {self._s}.head")
            return int(length)

        return self._run("read", work)

    # ---------------------------------------------------------------- snapshot, quarantine

    def journeys(self) -> dict[str, Journey]:
        """The snapshot of the current journeys, by lead id.

        Raises:
            StoreError: The read failed.
        """

        def work() -> dict[str, Journey]:
            rows = (
                self._conn()
                .execute(f"SELECT journey FROM {self._s}.journeys ORDER BY lead_id")
                .fetchall()
            )
            return {j.lead_id: j for j in (journey_from_json(text) for (text,) in rows)}

        return self._run("read", work)

    def journey(self, lead_id: str) -> Journey | None:
        """The snapshot of one lead's journey (``None``: no such lead).

        Raises:
            StoreError: The read failed.
        """

        def work() -> Journey | None:
            row = (
                self._conn()
                .execute(f"SELECT journey FROM {self._s}.journeys WHERE lead_id = %s", (lead_id,))
                .fetchone()
            )
            return None if row is None else journey_from_json(row[0])

        return self._run("read", work)

    def replace_journeys(self, journeys: Mapping[str, Journey]) -> None:
        """Replace the whole snapshot in one transaction (after rebuilding it from the log).

        Raises:
            StoreError: The write failed; the old snapshot is kept.
        """

        def work() -> None:
            with self._transaction() as tx:
                tx.execute(f"DELETE FROM {self._s}.journeys")
                self._copy(tx, "journeys", _JOURNEY_COLUMNS, map(_journey_row, journeys.values()))

        self._run("write to", work)

    def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Keep inputs that did not land (in one transaction).

        An entry with the same source, line, code and text as one kept already
        is not kept again (ingesting twice quarantines once).

        Raises:
            StoreError: The write failed; none of *entries* was kept.
        """
        if not entries:
            return

        def work() -> None:
            with self._transaction() as tx, tx.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {self._s}.quarantine ({', '.join(_QUARANTINE_COLUMNS)}) "
                    "VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (source, line, code, md5(text)) DO NOTHING",
                    [(e.source, e.line, e.code, e.reason, e.text) for e in entries],
                )

        self._run("write to", work)

    def quarantined(self) -> list[QuarantineEntry]:
        """The quarantine, oldest first, with each entry's id.

        Raises:
            StoreError: The read failed.
        """

        def work() -> list[QuarantineEntry]:
            rows = (
                self._conn()
                .execute(
                    f"SELECT {', '.join(_QUARANTINE_COLUMNS)}, entry_id FROM {self._s}.quarantine "
                    "ORDER BY entry_id"
                )
                .fetchall()
            )
            return [
                QuarantineEntry(source, int(line), code, reason, text, int(entry_id))
                for source, line, code, reason, text, entry_id in rows
            ]

        return self._run("read", work)

    def release(self, entry_ids: Iterable[int]) -> None:
        """Drop quarantine entries (once retried successfully).

        Raises:
            StoreError: The write failed; nothing was dropped.
        """
        ids = [int(i) for i in entry_ids]

        def work() -> None:
            self._conn().execute(
                f"DELETE FROM {self._s}.quarantine WHERE entry_id = ANY(%s)", (ids,)
            )

        self._run("write to", work)

    # ---------------------------------------------------------------- destructive

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store alone for a destructive operation (rebuild, clear).

        While held, no other store can open this schema (it raises
        :class:`~buyerjourney.errors.StoreInUse`).

        Raises:
            StoreInUse: Another store (in this process or another) has the schema open.
            StoreError: The lock could not be asked for.
        """
        self._conn()  # reconnects (and locks again) if the connection was lost
        lock = self._lock
        assert lock is not None
        (alone,) = self._run(
            "lock", lambda: self._one(lock, "SELECT pg_try_advisory_lock(%s)", (self._lock_key,))
        )
        if not alone:
            msg = (
                f"store {self.name} is open in another process or store (an engine, an "
                "ingest, a report); close it, then run this command again"
            )
            raise StoreInUse(msg)
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                lock.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))

    def clear(self) -> None:
        """Delete everything the store holds (the log too). Needs the store alone.

        Raises:
            StoreInUse: Another store has the schema open.
            StoreError: The write failed; nothing was deleted.
        """
        with self.exclusive():

            def work() -> None:
                with self._transaction() as tx:
                    tx.execute(
                        f"TRUNCATE {self._s}.records, {self._s}.touches, {self._s}.actions, "
                        f"{self._s}.journeys, {self._s}.quarantine RESTART IDENTITY"
                    )
                    tx.execute(f"UPDATE {self._s}.head SET length = 0, touches = 0, actions = 0")

            self._run("clear", work)


def _alive(conn: Connection[Any] | None) -> bool:
    """Whether *conn* is still connected, without a round trip (it reads what the server sent)."""
    if conn is None or conn.closed or conn.broken:
        return False
    try:
        conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return conn.pgconn.status == psycopg.pq.ConnStatus.OK


def _close_all(connections: Iterable[Connection[Any] | None]) -> None:
    for conn in connections:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
