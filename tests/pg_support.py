"""The PostgreSQL server of the tests: its URL, and a fresh schema per test.

Tests that need PostgreSQL import the fixtures from here::

    from pg_support import pg_schema, postgres_url  # noqa: F401  (fixtures)

The server's URL comes from ``BUYERJOURNEY_TEST_POSTGRES`` (``.ci/run`` sets
it from ``bash .ci/postgres start DIR``). When it is unset or the server does
not answer, the tests skip locally and fail in CI (``missing_backend``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from conftest import missing_backend

ENV_VAR = "BUYERJOURNEY_TEST_POSTGRES"
"""The environment variable that holds the test server's connection URL."""


def server_url() -> str | None:
    """The test server's URL, or ``None`` when the variable is unset."""
    return os.environ.get(ENV_VAR) or None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The URL of a PostgreSQL server that answers (skips, or fails in CI, otherwise)."""
    url = server_url()
    if url is None:
        missing_backend(
            "postgres", f"{ENV_VAR} is not set (start a server: bash .ci/postgres start DIR)"
        )
        raise AssertionError  # unreachable: missing_backend skips or fails
    try:
        import psycopg  # noqa: PLC0415  (the postgres extra)
    except ImportError:
        missing_backend("postgres", "psycopg is not installed (the 'postgres' extra)")
        raise
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        missing_backend("postgres", f"the server at {ENV_VAR} does not answer: {exc}")
    return url


def new_schema() -> str:
    """A schema name no other test uses."""
    return f"bj_test_{uuid.uuid4().hex[:16]}"


def drop_schema(url: str, schema: str) -> None:
    """Drop *schema* and everything in it (nothing happens if it does not exist)."""
    import psycopg  # noqa: PLC0415  (the postgres extra)

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name on the test server, dropped after the test."""
    schema = new_schema()
    yield schema
    drop_schema(postgres_url, schema)
