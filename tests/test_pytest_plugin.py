"""The pytest plugin: its registration, Hypothesis profile, fixtures and clock."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, settings

from buyerjourney import Engine, Funnel, Hooks, OwnerRules, Touch, presets
from buyerjourney.testing.pytest_plugin import EPOCH, PROFILE, Clock

pytest_plugins = ["pytester"]


def test_pytest_loads_the_plugin_from_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("buyerjourney")


def test_the_profile_is_registered_not_loaded() -> None:
    profile = settings.get_profile(PROFILE)
    assert profile.deadline is None
    assert profile.max_examples == 50
    assert profile.stateful_step_count == 40
    assert set(profile.suppress_health_check) >= {HealthCheck.too_slow, HealthCheck.data_too_large}
    assert Phase.explain not in profile.phases
    assert settings.get_current_profile_name() != PROFILE


# ---------------------------------------------------------------- the default fixtures


def test_default_fixtures_describe_the_seed_pipeline(
    bj_funnel: Funnel,
    bj_hooks: Hooks,
    bj_owners: OwnerRules,
    bj_engine: Engine,
) -> None:
    assert bj_funnel == presets.seed()
    assert bj_hooks.guards == {}
    assert bj_owners == OwnerRules.for_funnel(presets.seed())
    assert bj_engine.funnel == bj_funnel
    assert bj_engine.owners == bj_owners
    assert bj_engine.scorer is None
    assert bj_engine.policy is None
    assert bj_engine.records == ()


def test_the_engine_fixture_runs_with_the_clock(bj_engine: Engine, bj_clock: Clock) -> None:
    bj_engine.ingest_one(Touch("t1", "lead-1", bj_clock.now, "page_view"))
    bj_engine.advance(bj_clock.tick(hours=48))
    assert bj_engine.clock == EPOCH + timedelta(hours=48)
    assert bj_engine.journey("lead-1").stage == "awareness"


# ---------------------------------------------------------------- the clock


def test_the_clock_moves_only_when_told() -> None:
    clock = Clock()
    assert clock.now == EPOCH
    assert clock.now == EPOCH
    assert clock.tick(hours=2) == EPOCH + timedelta(hours=2)
    assert clock.tick(timedelta(days=1), minutes=30) == EPOCH + timedelta(
        days=1, hours=2, minutes=30
    )
    assert clock.tick() == clock.now
    assert repr(clock) == f"Clock(now={clock.now.isoformat()})"


def test_the_clock_starts_where_asked() -> None:
    start = datetime(2025, 6, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    assert Clock(start).tick(seconds=1) == start + timedelta(seconds=1)


def test_the_clock_never_goes_backwards() -> None:
    clock = Clock()
    with pytest.raises(ValueError, match="only moves forward"):
        clock.tick(hours=-1)
    assert clock.now == EPOCH


def test_the_clock_needs_an_aware_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Clock(datetime(2024, 1, 1))  # naive on purpose


# ---------------------------------------------------------------- overriding fixtures

USES_THE_ENGINE = """
def test_engine(bj_engine, bj_funnel, bj_owners):
    assert bj_engine.funnel is bj_funnel
    assert bj_engine.owners is bj_owners
    assert bj_funnel.name == {name!r}
    assert bj_engine.scorer is {scorer}
"""


def test_a_conftest_fixture_overrides_the_plugins(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from buyerjourney import presets

        @pytest.fixture
        def bj_funnel():
            return presets.get("waterfall")
        """
    )
    pytester.makepyfile(USES_THE_ENGINE.format(name="waterfall", scorer="None"))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_an_override_may_build_on_the_plugins_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
        import pytest
        from buyerjourney import Stage, Transition

        @pytest.fixture
        def bj_funnel(bj_funnel):
            return bj_funnel.extend(
                name="seed_with_trial",
                add_stages=[Stage("trial", 25, owner="sales")],
                add_transitions=[
                    Transition("start_trial", "consideration", "trial"),
                    Transition("buy", "trial", "conversion"),
                ],
            )

        @pytest.fixture
        def bj_scorer():
            return len
        """
        )
        + USES_THE_ENGINE.format(name="seed_with_trial", scorer="len")
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_plugin_can_be_switched_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_engine(bj_engine):\n    pass\n")
    result = pytester.runpytest("-p", "no:buyerjourney", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'bj_engine' not found*"])


def test_the_profile_option_and_a_harness_test_case(pytester: pytest.Pytester) -> None:
    """In a fresh process: the option loads the profile, and a machine's TestCase is collected."""
    pytester.makepyfile(
        """
        from hypothesis import settings
        from buyerjourney import presets
        from buyerjourney._pipeline import default_pipeline
        from buyerjourney.testing import pipeline_machine

        def test_profile_is_loaded():
            assert settings.get_current_profile_name() == "buyerjourney"
            assert settings().stateful_step_count == 40

        TestSeedPipeline = pipeline_machine(default_pipeline(presets.seed())).TestCase
        TestSeedPipeline.settings = settings(TestSeedPipeline.settings, max_examples=5)
        """
    )
    result = pytester.runpytest_subprocess(
        "--hypothesis-profile=buyerjourney", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)
