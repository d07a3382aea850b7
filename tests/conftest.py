"""Shared test configuration: Hypothesis profiles and the Olist data set fixture.

Hypothesis profiles (pick one with the ``HYPOTHESIS_PROFILE`` environment variable):

* ``default``: 100 examples per property, no deadline; for local runs.
* ``ci``: 200 examples, no deadline, prints reproduction blobs, tolerates slow
  data generation on a shared CI machine. ``.ci/run`` selects it.
* ``thorough``: 2000 examples, no deadline; for hunting rare failures by hand.

A test that needs a specific number of examples sets it locally with
``@settings(...)``, which takes precedence over the loaded profile.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO_ROOT = Path(__file__).resolve().parents[1]
OLIST_ENV_VAR = "BUYERJOURNEY_OLIST_DIR"
DEFAULT_OLIST_DIR = REPO_ROOT.parent / "shared" / "data" / "olist-marketing-funnel"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``olist_dir`` fixture with ``olist``.

    This lets ``pytest -m "not olist"`` deselect them without each test
    repeating the marker.
    """
    for item in items:
        if "olist_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.olist)


@pytest.fixture(scope="session")
def olist_dir() -> Path:
    """Return the directory holding the Olist marketing-funnel CSV files.

    The default location is ``shared/data/olist-marketing-funnel`` beside the
    repository; the ``BUYERJOURNEY_OLIST_DIR`` environment variable overrides it.
    Tests using this fixture are skipped when the directory does not exist.
    """
    override = os.environ.get(OLIST_ENV_VAR)
    path = Path(override).expanduser() if override else DEFAULT_OLIST_DIR
    if not path.is_dir():
        source = f"${OLIST_ENV_VAR}" if override else "the default location"
        pytest.skip(f"Olist data set not found at {path} (from {source})")
    return path


REQUIRE_ENV_VAR = "BUYERJOURNEY_REQUIRE_BACKENDS"
"""Comma-separated backends that must be present (``.ci/run`` sets it): missing ones fail."""


def required_backends() -> frozenset[str]:
    """The backends this run must have (postgres, spark, dask, chromium), from the environment."""
    value = os.environ.get(REQUIRE_ENV_VAR, "")
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def missing_backend(backend: str, reason: str) -> None:
    """Skip the calling test because *backend* is not available, or fail if this run requires it.

    Locally a missing PostgreSQL server, Spark, Dask or Chromium skips the
    tests that need it; in CI (``BUYERJOURNEY_REQUIRE_BACKENDS``) it is a
    failure, so that a broken setup never passes as skipped.
    """
    if backend in required_backends():
        pytest.fail(f"{backend} is required in this run ({REQUIRE_ENV_VAR}) but {reason}")
    pytest.skip(f"{backend} not available: {reason}")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """A local SparkSession for the whole run; skips without Spark (fails where it is required).

    ``local[2]``, bound to 127.0.0.1, the UI off, four shuffle partitions,
    UTC, small Arrow batches (500 rows, so one lead's touches straddle
    batches), workers on this interpreter (``PYSPARK_PYTHON``). Code that
    calls ``SparkSession.builder.getOrCreate()`` while it is active gets
    this session (a docs page declares ``<!-- requires: spark -->``).
    """
    try:
        from pyspark.sql import SparkSession  # noqa: PLC0415  (optional backend)
    except ImportError as exc:
        missing_backend("spark", f"pyspark is not importable ({exc})")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        missing_backend("spark", "no Java runtime (java on PATH or JAVA_HOME)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("buyerjourney-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "500")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
