"""Every backend of a pipeline passes the one conformance suite.

The engine on its compiled table, the engine on its python-statemachine
class, and the bulk path in each mode it can run (skipped without NumPy) are
each a subclass of :class:`~buyerjourney.testing.conformance.ConformanceSuite`,
on random funnels (guards that fail among them), owner rules, scorers,
policies and streams. Then the suite itself is tested: it must catch broken
backends, and it must say clearly what it cannot run.

The hand-written differential test between the python-statemachine class and
the compiled table that was here is covered by the suite: the statemachine
backend must write the table's log (same transitions, same refusals with the
same messages, same errors), call the same guards with the same contexts in
the same order, and both must agree with the oracle. What it checked of the
machine alone (its ``legal_events``) is the last test of this file.
"""

from __future__ import annotations

import contextlib
import sys
import unittest
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from buyerjourney import Funnel, OwnerRules, Score, ScoreItem, Touch, presets
from buyerjourney._core.machine import build_machine_class
from buyerjourney._core.records import RecordKind
from buyerjourney._pipeline import Pipeline, default_pipeline
from buyerjourney.errors import BuyerJourneyError, MissingExtra
from buyerjourney.scoring import Lead
from buyerjourney.testing import GUARD_NAMES, event_sequences, funnels, standard_hooks
from buyerjourney.testing.conformance import (
    FAULTY_GUARDS,
    BackendRun,
    BulkBackend,
    ConformanceSuite,
    EngineBackend,
    Item,
    conformance_hooks,
    pipelines,
    run_conformance_suite,
)

# ---------------------------------------------------------------- every current backend


class TestTableEngine(ConformanceSuite):
    """The reference itself: its own invariants and the oracle."""

    def create_backend(self) -> EngineBackend:
        return EngineBackend("table")


class TestStatemachineEngine(ConformanceSuite):
    def create_backend(self) -> EngineBackend:
        return EngineBackend("statemachine")


class TestBulkColumnar(ConformanceSuite):
    pipeline = pipelines(custom_scorers=False, custom_policies=False)

    def create_backend(self) -> BulkBackend:
        return BulkBackend("columnar")


class TestBulkHooks(ConformanceSuite):
    pipeline = pipelines(custom_policies=False)

    def create_backend(self) -> BulkBackend:
        return BulkBackend("hooks")


class TestBulkReference(ConformanceSuite):
    def create_backend(self) -> BulkBackend:
        return BulkBackend("reference")


class TestBulkAutoOnTheWaterfall(ConformanceSuite):
    """A fixed pipeline, as a user would run the suite on their own."""

    pipeline = default_pipeline(presets.demand_waterfall())

    def create_backend(self) -> BulkBackend:
        return BulkBackend("auto")


# ---------------------------------------------------------------- the suite catches broken backends


@attrs.frozen
class Forgetful:
    """The table engine, but the log loses its handoffs (journeys stay right)."""

    name: ClassVar[str] = "forgetful"
    takes_actions: ClassVar[bool] = True
    steps_like_the_engine: ClassVar[bool] = True

    def run(self, pipeline: Pipeline, items: Sequence[Item]) -> BackendRun:
        run = EngineBackend("table").run(pipeline, items)
        kept = [r for r in run.records if r.kind is not RecordKind.HANDOFF]
        return BackendRun(
            [attrs.evolve(r, seq=i) for i, r in enumerate(kept)], run.journeys, run.set_aside
        )


@attrs.frozen
class Lenient:
    """The table engine, but refused actions are not reported as set aside."""

    name: ClassVar[str] = "lenient"
    takes_actions: ClassVar[bool] = True
    steps_like_the_engine: ClassVar[bool] = True

    def run(self, pipeline: Pipeline, items: Sequence[Item]) -> BackendRun:
        run = EngineBackend("table").run(pipeline, items)
        reported = [s for s in run.set_aside if s.error != "ActionRefused"]
        return BackendRun(run.records, run.journeys, reported)


SEED = default_pipeline(presets.seed())


def failures(backend: object, test: str, *, pipeline: object = SEED) -> str:
    """The failure message of property *test* for *backend* (stopping at the first failure)."""
    chosen = pipeline

    class Broken(ConformanceSuite):
        __test__ = False
        pipeline = chosen  # type: ignore[assignment]

        def create_backend(self) -> object:  # type: ignore[override]
            return backend

        def hypothesis_settings(self) -> settings:
            return settings(
                super().hypothesis_settings(),
                max_examples=300,
                database=None,
                phases=[Phase.generate],
                report_multiple_bugs=False,
            )

    with pytest.raises(AssertionError) as info:
        Broken(test).debug()
    return str(info.value)


def test_a_log_without_handoffs_is_caught_by_the_reference_and_the_oracle() -> None:
    waterfall = default_pipeline(presets.demand_waterfall())
    reference = failures(Forgetful(), "test_same_log_and_journeys_as_the_reference")
    assert "engine (table)" in reference
    assert "handoff" in reference
    oracle = failures(Forgetful(), "test_what_the_oracle_says", pipeline=waterfall)
    assert "The oracle expects" in oracle
    assert "handoff" in oracle
    rebuilt = failures(Forgetful(), "test_rebuilding_the_log_gives_the_journeys")
    assert "is not what its log rebuilds" in rebuilt


def test_refusals_that_are_not_reported_are_caught() -> None:
    message = failures(Lenient(), "test_what_the_oracle_says")
    assert "succeeded, the oracle expects ActionRefused" in message


# ---------------------------------------------------------------- what the suite refuses


def test_the_base_class_is_not_collected_and_skips_itself() -> None:
    assert ConformanceSuite.__test__ is False
    assert TestTableEngine.__test__ is True
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(ConformanceSuite).run(result)
    assert result.testsRun > 0
    assert len(result.skipped) == result.testsRun
    assert not result.failures
    assert not result.errors


@pytest.mark.parametrize(
    ("attributes", "complaint"),
    [
        ({"pipeline": "seed"}, "pipeline must be a Pipeline"),
        ({"touch_kinds": "page_view"}, "touch_kinds must be a non-empty tuple"),
        ({"stream_size": -1}, "stream_size must be an int >= 0"),
        ({"max_examples": 0}, "max_examples must be a positive int or None"),
    ],
)
def test_bad_configuration_is_refused_when_the_class_is_made(
    attributes: dict[str, object], complaint: str
) -> None:
    with pytest.raises(InvalidArgument, match=complaint):
        type("Bad", (ConformanceSuite,), attributes)


def test_run_conformance_suite_needs_a_backend() -> None:
    with pytest.raises(InvalidArgument, match="defines create_backend"):
        run_conformance_suite(ConformanceSuite)


def test_run_conformance_suite_reports_each_property() -> None:
    outcomes = run_conformance_suite(TestTableEngine, max_examples=3)
    assert outcomes["test_what_the_oracle_says"] == "passed"
    assert outcomes["test_same_log_and_journeys_as_the_reference"].startswith("skipped")


@attrs.frozen
class NeedsAnExtra:
    """A backend whose extra is not installed."""

    name: ClassVar[str] = "needs an extra"
    takes_actions: ClassVar[bool] = False
    steps_like_the_engine: ClassVar[bool] = False

    def run(self, pipeline: Pipeline, items: Sequence[Item]) -> BackendRun:
        raise MissingExtra("this backend", "fast")


class NotInstalled(ConformanceSuite):
    __test__ = False

    def create_backend(self) -> NeedsAnExtra:
        return NeedsAnExtra()


def test_a_backend_whose_extra_is_missing_skips_every_property() -> None:
    outcomes = run_conformance_suite(NotInstalled, max_examples=3)
    assert all(o.startswith("skipped") for o in outcomes.values()), outcomes
    assert "needs what is not installed" in outcomes["test_what_the_oracle_says"]


def test_the_bulk_backend_needs_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now fails
    with pytest.raises(MissingExtra, match="fast"):
        BulkBackend("columnar").run(SEED, [])


def test_the_pipelines_fit_the_paths_they_are_drawn_for() -> None:
    pytest.importorskip("numpy")
    from buyerjourney.bulk import plan  # noqa: PLC0415  (the fast extra)

    @settings(max_examples=50, database=None)
    @given(pipelines(custom_scorers=False, custom_policies=False))
    def columnar(pipeline: Pipeline) -> None:
        assert plan(pipeline).mode == "columnar", plan(pipeline).reasons

    columnar()


def test_faulty_guards_are_registered() -> None:
    hooks = conformance_hooks()
    assert set(hooks.guards) == {*GUARD_NAMES, *FAULTY_GUARDS}


# ---------------------------------------------------------------- what the suite found


def uneven(lead: Lead, at: datetime) -> Score:
    """A scorer whose breakdown (2 points) does not add up to its value (1)."""
    return Score(1.0, (ScoreItem("touches", 2.0),))


def test_the_bulk_hooks_path_quarantines_a_score_that_does_not_add_up() -> None:
    """Regression, found by the conformance suite: the bulk path checked its own copy of the
    scorer contract, which did not know the breakdown must add up."""
    pytest.importorskip("numpy")
    funnel = presets.hubspot_lifecycle()
    pipeline = Pipeline(funnel, OwnerRules.for_funnel(funnel), scorer=uneven)
    items = [Touch("t0", "lead-1", datetime(2024, 1, 1, tzinfo=timezone.utc), "page_view")]
    wanted = EngineBackend("table").run(pipeline, items)
    assert [s.error for s in wanted.set_aside] == ["HookError"]
    assert BulkBackend("hooks").run(pipeline, items) == wanted


# ---------------------------------------------------------------- the machine alone


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_machine_offers_the_funnels_allowed_events(data: st.DataObject) -> None:
    """Wherever events take it, the machine's legal events are the funnel's allowed events."""
    funnel: Funnel = data.draw(funnels(min_stages=1))
    steps = data.draw(event_sequences(funnel))
    machine = build_machine_class(funnel, standard_hooks())()
    for event, ctx, reason in steps:
        with contextlib.suppress(BuyerJourneyError):  # a refused move leaves it where it is
            machine.send(event, ctx=ctx, reason=reason)
        assert machine.legal_events == funnel.allowed_events(machine.stage)
