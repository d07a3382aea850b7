"""What is particular to the PostgreSQL store: errors, the schema and its migrations, locks.

The store's behaviour as a store (round trips, conflicts, resume ...) is held
to the conformance suite in ``test_store_conformance.py``.
"""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

import buyerjourney._adapters.postgres as pg
from buyerjourney import Record, RecordKind, Touch
from buyerjourney._adapters.codec import record_row
from buyerjourney._adapters.postgres import POSTGRES_SCHEMA_VERSION, PostgresStore
from buyerjourney.errors import MissingExtra, StoreConflict, StoreError, StoreInUse
from pg_support import drop_schema, new_schema, pg_schema, postgres_url  # noqa: F401  (fixtures)

psycopg = pytest.importorskip("psycopg")

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)


def _record(seq: int, lead: str = "lead-1") -> Record:
    return Record(lead, seq, T0 + timedelta(minutes=seq), RecordKind.CREATED, to_team="marketing")


def _with(url: str, **parts: str) -> str:
    """*url* with some of its parts replaced (user, password, port, dbname)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info.update(parts)
    return psycopg.conninfo.make_conninfo(**info)


def _sql(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def store(postgres_url: str, pg_schema: str) -> Iterator[PostgresStore]:  # noqa: F811
    with PostgresStore(postgres_url, schema=pg_schema) as opened:
        yield opened


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- without a server


def test_without_psycopg_the_store_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "psycopg", None)
    with pytest.raises(MissingExtra, match=r"buyerjourney\[postgres\]") as caught:
        PostgresStore("postgresql://localhost/db")
    assert caught.value.extra == "postgres"


@pytest.mark.parametrize("schema", ["", "1abc", "a-b", 'x"; DROP TABLE t; --', "a" * 64])
def test_a_schema_name_that_is_not_an_identifier_is_refused(schema: str) -> None:
    with pytest.raises(StoreError, match="schema name"):
        PostgresStore("postgresql://localhost/db", schema=schema)


def test_nothing_listening_on_the_port_names_the_store_but_not_the_password() -> None:
    port = _free_port()
    url = f"postgresql://someone:s3cr3t-pw@127.0.0.1:{port}/somedb"
    with pytest.raises(StoreError) as caught:
        PostgresStore(url)
    message = str(caught.value)
    assert f"postgresql://someone@127.0.0.1:{port}/somedb (schema 'buyerjourney')" in message
    assert "cannot connect to" in message
    assert "listens at that host and port" in message
    assert "s3cr3t-pw" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_url_that_is_not_a_connection_string_is_refused_without_echoing_it() -> None:
    with pytest.raises(StoreError, match="not a connection string") as caught:
        PostgresStore("host=localhost password=s3cr3t-pw =broken")
    assert "s3cr3t-pw" not in str(caught.value)


# ---------------------------------------------------------------- connecting


def test_a_wrong_password_says_to_check_it(postgres_url: str) -> None:  # noqa: F811
    url = _with(postgres_url, user="buyerjourney_pw", password="wrong-pw")
    with pytest.raises(StoreError) as caught:
        PostgresStore(url)
    message = str(caught.value)
    assert "buyerjourney_pw@127.0.0.1" in message
    assert "wrong-pw" not in message
    assert "check the user name" in message


def test_the_password_role_logs_in_with_its_password(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    """The server of ``.ci/postgres`` checks that role's password, so the test above is real."""
    url = _with(postgres_url, user="buyerjourney_pw", password="secret")
    if not _sql(postgres_url, "SELECT 1 FROM pg_roles WHERE rolname = 'buyerjourney_pw'"):
        pytest.skip("this server has no buyerjourney_pw role (not started by .ci/postgres)")
    _sql(postgres_url, f'CREATE SCHEMA "{pg_schema}" AUTHORIZATION buyerjourney_pw')
    with PostgresStore(url, schema=pg_schema) as store:
        assert "secret" not in repr(store)
        assert len(store) == 0


def test_a_database_that_does_not_exist_says_to_create_it(postgres_url: str) -> None:  # noqa: F811
    with pytest.raises(StoreError, match="createdb") as caught:
        PostgresStore(_with(postgres_url, dbname="no_such_database_here"))
    assert "/no_such_database_here" in str(caught.value)


def test_repr_and_name_show_the_url_without_its_password(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    url = _with(postgres_url, password="not-shown")
    with PostgresStore(url, schema=pg_schema) as store:
        assert "not-shown" not in repr(store)
        assert "not-shown" not in store.name
        assert pg_schema in store.name


# ---------------------------------------------------------------- failures on the way


def test_a_connection_lost_mid_way_is_a_store_error_and_the_store_reconnects(
    store: PostgresStore,
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    store.commit([_record(0)], expected=0)
    pids = [store._db.info.backend_pid, store._lock.info.backend_pid]  # type: ignore[union-attr]
    _sql(postgres_url, f"SELECT pg_terminate_backend(pid) FROM unnest(ARRAY{pids}) AS pid")
    with pytest.raises(StoreError, match=r"connection was lost|cannot be reached") as caught:
        store.commit([_record(1)], expected=1)
    assert "Traceback" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert len(store) == 1  # reconnected; the failed commit stored nothing
    store.commit([_record(1)], expected=1)
    assert [r.seq for r in store.read()] == [0, 1]
    # the reconnected store holds its shared lock again
    with PostgresStore(postgres_url, schema=pg_schema) as other, pytest.raises(StoreInUse):
        other.exclusive().__enter__()


def test_a_table_dropped_by_hand_is_reported_as_a_damaged_store(
    store: PostgresStore,
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    store.commit([_record(0)], expected=0)
    _sql(postgres_url, f'DROP TABLE "{pg_schema}".records')
    with pytest.raises(StoreError, match="missing or changed") as caught:
        store.commit([_record(1)], expected=1)
    assert pg_schema in str(caught.value)
    with pytest.raises(StoreError, match="missing or changed"):
        store.load()
    store.close()
    with pytest.raises(StoreError, match=r"lacks the table\(s\) records"):
        PostgresStore(postgres_url, schema=pg_schema)


def test_text_postgresql_cannot_keep_is_refused_with_what_to_do(store: PostgresStore) -> None:
    with pytest.raises(StoreError, match="NUL"):
        store.commit([], [Touch("t1", "lead\x00x", T0, "page_view")], expected=0)
    with pytest.raises(StoreError, match="surrogate"):
        store.commit([_record(0, "lead-\udcff")], expected=0)
    assert store.load().touches == ()
    assert len(store) == 0


def test_using_a_closed_store_says_it_is_closed(store: PostgresStore) -> None:
    store.close()
    store.close()  # harmless
    with pytest.raises(StoreError, match="is closed"):
        len(store)


# ---------------------------------------------------------------- schema and migrations


def test_a_new_schema_is_created_at_the_current_version(
    store: PostgresStore,
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    rows = _sql(postgres_url, f'SELECT key, value FROM "{pg_schema}".meta')
    assert rows == [("version", str(POSTGRES_SCHEMA_VERSION))]
    tables = {
        r[0]
        for r in _sql(
            postgres_url,
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{pg_schema}'",
        )
    }
    assert tables == {"meta", "head", "records", "touches", "actions", "journeys", "quarantine"}


def test_reopening_keeps_what_is_stored(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    with PostgresStore(postgres_url, schema=pg_schema) as first:
        first.commit([_record(0), _record(1)], expected=0)
    with PostgresStore(postgres_url, schema=pg_schema) as second:
        assert [r.seq for r in second.load().records] == [0, 1]


def test_times_are_stored_as_the_codecs_utc_text(
    store: PostgresStore,
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    record = Record("l", 0, datetime(2024, 3, 31, 1, 30, 0, 123456, tzinfo=timezone.utc),
                    RecordKind.CREATED, to_team="marketing")  # fmt: skip
    store.commit([record], expected=0)
    (stored,) = _sql(postgres_url, f'SELECT at FROM "{pg_schema}".records')
    assert stored[0] == record_row(record)[2] == "2024-03-31T01:30:00.123456+00:00"
    assert store.load().records == (record,)


def test_a_newer_schema_version_is_refused(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    PostgresStore(postgres_url, schema=pg_schema).close()
    _sql(postgres_url, f"UPDATE \"{pg_schema}\".meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(StoreError, match="schema version 99, newer") as caught:
        PostgresStore(postgres_url, schema=pg_schema)
    assert "upgrade buyerjourney" in str(caught.value)


def test_a_meta_table_without_a_version_is_refused(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    PostgresStore(postgres_url, schema=pg_schema).close()
    _sql(postgres_url, f"UPDATE \"{pg_schema}\".meta SET value = 'three'")
    with pytest.raises(StoreError, match="without a schema version"):
        PostgresStore(postgres_url, schema=pg_schema)


def test_a_schema_of_another_application_is_left_alone(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    _sql(postgres_url, f'CREATE SCHEMA "{pg_schema}"')
    _sql(postgres_url, f'CREATE TABLE "{pg_schema}".records (id int)')
    with pytest.raises(StoreError, match=r"not a\s+buyerjourney store \(records\)"):
        PostgresStore(postgres_url, schema=pg_schema)
    assert _sql(postgres_url, f'SELECT count(*) FROM "{pg_schema}".records') == [(0,)]


def test_processes_opening_a_new_schema_at_once_all_succeed(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    """The schema is created under an advisory lock: the first creates it, the others wait."""
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(postgres_url, schema=pg_schema))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(opened) == 4
        assert _sql(postgres_url, f'SELECT count(*) FROM "{pg_schema}".head') == [(1,)]
    finally:
        for s in opened:
            s.close()


# ---------------------------------------------------------------- locks and writers


def test_destructive_commands_refuse_a_store_in_use(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    with PostgresStore(postgres_url, schema=pg_schema) as mine:
        mine.commit([_record(0)], expected=0)
        other = PostgresStore(postgres_url, schema=pg_schema)
        with pytest.raises(StoreInUse, match="open in another process"):
            mine.clear()
        with pytest.raises(StoreInUse), mine.exclusive():
            pass
        assert len(mine) == 1
        other.close()
        with mine.exclusive(), pytest.raises(StoreInUse, match="held alone"):
            PostgresStore(postgres_url, schema=pg_schema)
        mine.clear()
        assert len(mine) == 0
        assert mine.load().records == ()
        mine.commit([_record(0)], expected=0)  # the head was reset too
        with PostgresStore(postgres_url, schema=pg_schema):  # exclusive() let go
            pass


def test_a_store_dropped_without_close_releases_its_lock(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    with PostgresStore(postgres_url, schema=pg_schema) as mine:
        other = PostgresStore(postgres_url, schema=pg_schema)
        del other
        gc.collect()
        with mine.exclusive():
            pass


def test_two_schemas_on_one_database_are_independent(postgres_url: str) -> None:  # noqa: F811
    a, b = new_schema(), new_schema()
    try:
        with (
            PostgresStore(postgres_url, schema=a) as first,
            PostgresStore(postgres_url, schema=b) as second,
        ):
            first.commit([_record(0), _record(1)], expected=0)
            second.commit([_record(0, "other")], expected=0)
            assert [r.lead_id for r in first.read()] == ["lead-1", "lead-1"]
            assert [r.lead_id for r in second.read()] == ["other"]
            with first.exclusive():  # the other schema's store does not count
                second.commit([_record(1, "other")], expected=1)
            first.clear()
            assert len(first) == 0
            assert len(second) == 2
    finally:
        drop_schema(postgres_url, a)
        drop_schema(postgres_url, b)


def test_a_second_writer_on_a_stale_log_is_refused_and_told_the_store(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    with (
        PostgresStore(postgres_url, schema=pg_schema) as first,
        PostgresStore(postgres_url, schema=pg_schema) as second,
    ):
        first.commit([_record(0)], [Touch("t1", "lead-1", T0, "page_view")], expected=0)
        with pytest.raises(StoreConflict, match=r"holds 1 records but the writer knows 0") as c:
            second.commit([_record(0, "lead-2")], expected=0)
        assert (c.value.expected, c.value.stored) == (0, 1)
        assert pg_schema in str(c.value)
        with pytest.raises(StoreConflict, match="touch id 't1'") as c:
            second.commit([_record(1, "lead-2")], [Touch("t1", "lead-2", T0, "x")], expected=1)
        assert c.value.stored is None
        assert len(first) == 1


def test_concurrent_writers_serialise_on_the_head(postgres_url: str, pg_schema: str) -> None:  # noqa: F811
    """Four writers append with optimistic retries: every record lands once, seq gap-free."""
    PostgresStore(postgres_url, schema=pg_schema).close()
    per_writer = 15
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            with PostgresStore(postgres_url, schema=pg_schema) as store:
                done = 0
                while done < per_writer:
                    length = len(store)
                    try:
                        store.commit(
                            [_record(length, name), _record(length + 1, name)],
                            [Touch(f"{name}-{done}", name, T0, "page_view")],
                            expected=length,
                        )
                    except StoreConflict:
                        continue
                    done += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with PostgresStore(postgres_url, schema=pg_schema) as store:
        log = store.load()
    assert [r.seq for r in log.records] == list(range(4 * 2 * per_writer))
    for i in range(0, len(log.records), 2):  # each commit's two records stayed together
        assert log.records[i].lead_id == log.records[i + 1].lead_id
    assert sorted(t.touch_id for t in log.touches) == sorted(
        f"w{i}-{n}" for i in range(4) for n in range(per_writer)
    )
