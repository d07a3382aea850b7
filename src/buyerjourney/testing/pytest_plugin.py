"""The pytest plugin of buyerjourney: a Hypothesis profile and fixtures for pipelines.

pytest loads this plugin by itself wherever buyerjourney is installed (it is
declared in the ``pytest11`` entry point group under the name
``buyerjourney``); switch it off with ``-p no:buyerjourney``. It does not need
Hypothesis: without it, only the profile is missing.

The ``buyerjourney`` Hypothesis profile
---------------------------------------

Registered, never loaded for you. Select it on the command line::

    pytest --hypothesis-profile=buyerjourney

or in your ``conftest.py`` with ``settings.load_profile("buyerjourney")``. It
suits tests that drive whole pipelines: no deadline (an engine step is fast,
but a run of 40 steps with its checks is not a unit of 200 ms), the
``too_slow`` and ``data_too_large`` health checks off (stateful runs draw a
lot), 50 examples, 40 steps per stateful example, and no *explain* phase
(it replays a failing pipeline for minutes; the shrunk steps say more).

Fixtures
--------

Every fixture is function-scoped, so each test gets fresh objects:

* ``bj_funnel``: the funnel, :func:`buyerjourney.presets.seed` by default;
* ``bj_hooks``: the guard hooks, an empty :class:`~buyerjourney.Hooks`;
* ``bj_owners``: ``OwnerRules.for_funnel(bj_funnel)``;
* ``bj_scorer`` and ``bj_policy``: ``None`` (scores stay 0, nothing moves by itself);
* ``bj_engine``: a new :class:`~buyerjourney.Engine` built from the five above;
* ``bj_clock``: a :class:`Clock`, a deterministic time source.

To test your own pipeline, define a fixture of the same name in your
``conftest.py`` (or in a test module, or a test class): pytest uses the
definition closest to the test, and the plugin's other fixtures then build
on yours. For example, overriding ``bj_funnel`` and ``bj_scorer`` gives
every test an ``bj_engine`` for your funnel with your scorer::

    import pytest
    from buyerjourney import presets

    @pytest.fixture
    def bj_funnel():
        return presets.get("waterfall")

    @pytest.fixture
    def bj_scorer():
        return my_scorer

An override may ask for the plugin's own fixture of the same name, to start
from it (``def bj_funnel(bj_funnel): return bj_funnel.extend(...)``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from buyerjourney._core.funnel import Funnel
from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.policies import Policy
from buyerjourney._core.protocols import Hooks
from buyerjourney._core.scoring import Scorer
from buyerjourney._engine import Engine
from buyerjourney.presets import seed

__all__ = [
    "EPOCH",
    "PROFILE",
    "Clock",
    "bj_clock",
    "bj_engine",
    "bj_funnel",
    "bj_hooks",
    "bj_owners",
    "bj_policy",
    "bj_scorer",
]

PROFILE = "buyerjourney"
"""The name of the Hypothesis profile this plugin registers."""

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""When a :class:`Clock` starts by default."""


def _register_profile() -> None:
    try:
        from hypothesis import HealthCheck, Phase, settings  # noqa: PLC0415  (optional)
    except ImportError:
        return
    settings.register_profile(
        PROFILE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        max_examples=50,
        stateful_step_count=40,
        phases=tuple(p for p in Phase if p is not Phase.explain),
    )


_register_profile()


class Clock:
    """A deterministic, timezone-aware time source: it moves only when told to.

    Engines never read the wall clock; give them times from a clock like
    this one so that tests are repeatable::

        clock = Clock()
        engine.ingest_one(Touch("t1", "lead-1", clock.now, "page_view"))
        engine.advance(clock.tick(hours=48))

    Args:
        start: The first time (timezone-aware); :data:`EPOCH` by default.

    Raises:
        ValueError: *start* is not a timezone-aware datetime.
    """

    def __init__(self, start: datetime = EPOCH) -> None:
        if not isinstance(start, datetime) or start.utcoffset() is None:
            msg = f"start must be a timezone-aware datetime (got {start!r})"
            raise ValueError(msg)
        self._now = start

    @property
    def now(self) -> datetime:
        """The current time."""
        return self._now

    def tick(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move the clock forward and return the new time.

        Args:
            delta: How far, as a timedelta; added to the keyword amounts.
            days: How many days.
            hours: How many hours.
            minutes: How many minutes.
            seconds: How many seconds.

        Raises:
            ValueError: The step is negative: time does not go backwards
                (engines refuse input older than their clock).
        """
        step = (delta or timedelta(0)) + timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds
        )
        if step < timedelta(0):
            msg = (
                f"a clock only moves forward (got a step of {step}); engines refuse input "
                "older than their clock"
            )
            raise ValueError(msg)
        self._now += step
        return self._now

    def __repr__(self) -> str:
        return f"Clock(now={self._now.isoformat()})"


@pytest.fixture
def bj_funnel() -> Funnel:
    """The funnel under test: the seed funnel unless you override this fixture."""
    return seed()


@pytest.fixture
def bj_hooks() -> Hooks:
    """The guard hooks: an empty registry; override it when your funnel names guards."""
    return Hooks()


@pytest.fixture
def bj_owners(bj_funnel: Funnel) -> OwnerRules:
    """Owner rules for ``bj_funnel``: its stages' own owners."""
    return OwnerRules.for_funnel(bj_funnel)


@pytest.fixture
def bj_scorer() -> Scorer | None:
    """The scorer: ``None`` (scores stay 0) unless you override this fixture."""
    return None


@pytest.fixture
def bj_policy() -> Policy | None:
    """The policy: ``None`` (journeys move only by hand) unless you override this fixture."""
    return None


@pytest.fixture
def bj_engine(
    bj_funnel: Funnel,
    bj_hooks: Hooks,
    bj_owners: OwnerRules,
    bj_scorer: Scorer | None,
    bj_policy: Policy | None,
) -> Engine:
    """A new, empty engine for the pipeline the other ``bj_*`` fixtures describe.

    It is built from ``bj_funnel``, ``bj_hooks``, ``bj_owners``, ``bj_scorer``
    and ``bj_policy``; override any of those to change it.
    """
    return Engine(bj_funnel, hooks=bj_hooks, owners=bj_owners, scorer=bj_scorer, policy=bj_policy)


@pytest.fixture
def bj_clock() -> Clock:
    """A :class:`Clock` at :data:`EPOCH`, moved only by ``bj_clock.tick(...)``."""
    return Clock()
