"""Every store buyerjourney ships passes the store conformance suite of the testing toolkit."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest

from buyerjourney import MemoryStore, SQLiteStore
from buyerjourney._adapters.postgres import PostgresStore
from buyerjourney.testing.stores import StoreConformance
from pg_support import drop_schema, new_schema, postgres_url  # noqa: F401  (a fixture)


class TestMemoryStore(StoreConformance):
    def make_store(self) -> MemoryStore:
        return MemoryStore()


class TestSQLiteStore(StoreConformance):
    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.directory = Path(directory.name)
        self.numbers = itertools.count()

    def make_store(self) -> SQLiteStore:
        return SQLiteStore(self.directory / f"store-{next(self.numbers)}.db")

    def reopen_store(self, store: Any) -> SQLiteStore:
        store.close()
        return SQLiteStore(store.path)


class TestPostgresStore(StoreConformance):
    max_examples = 10  # each example makes a schema on the server: a round trip per table

    @pytest.fixture(autouse=True)
    def _server(self, postgres_url: str) -> None:  # noqa: F811  (the fixture)
        self.url = postgres_url

    def make_store(self) -> PostgresStore:
        schema = new_schema()
        self.addCleanup(drop_schema, self.url, schema)
        return PostgresStore(self.url, schema=schema)

    def reopen_store(self, store: Any) -> PostgresStore:
        store.close()
        return PostgresStore(self.url, schema=store.schema)
