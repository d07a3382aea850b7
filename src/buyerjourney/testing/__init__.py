"""Property-based testing for code built on buyerjourney (the ``testing`` extra).

Install with ``pip install 'buyerjourney[testing]'``. The package offers

* **strategies** (:mod:`buyerjourney.testing.strategies`): funnels, funnels
  derived from yours, owner rules, lead attributes, actors, touches and
  touch streams (with duplicates, late and malformed input);
* **a stateful harness** (:mod:`buyerjourney.testing.harness`):
  :class:`PipelineMachine` and :func:`pipeline_machine` drive an engine built
  from your pipeline with random touches, actions and time, and check its
  invariants after every step;
* **a pytest plugin** (:mod:`buyerjourney.testing.pytest_plugin`, registered
  automatically): the ``buyerjourney`` Hypothesis profile and ``bj_*``
  fixtures.

Importing this package registers strategies for
:class:`~buyerjourney.Funnel`, :class:`~buyerjourney.OwnerRules`,
:class:`~buyerjourney.Touch`, :class:`~buyerjourney.Actor` and
:class:`~buyerjourney.Context`, so ``st.from_type(Funnel)`` and
``@given(funnel=...)`` with type inference work.

The core of buyerjourney never imports this package. Without Hypothesis
installed, importing it still works (so the pytest plugin loads), but using
any name from it raises :class:`~buyerjourney.errors.MissingExtra`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import NoReturn as _NoReturn

__all__ = [
    "DEFAULT_LEADS",
    "DEFAULT_STEPS",
    "EPOCH",
    "EXTRA_TEAMS",
    "GENERIC_TOUCH_KINDS",
    "GUARD_NAMES",
    "LEAD_ATTRIBUTES",
    "OWNERS",
    "PEOPLE",
    "SCORE_THRESHOLDS",
    "SOLO_PERSON",
    "START",
    "TOUCH_KINDS",
    "UNKNOWN_EVENTS",
    "Advance",
    "Operation",
    "Outcome",
    "PipelineMachine",
    "actors",
    "contexts",
    "derived_funnels",
    "event_sequences",
    "funnels",
    "lead_attributes",
    "owner_rules",
    "pipeline_machine",
    "raw_touch_streams",
    "run_pipeline_machine",
    "standard_hooks",
    "touch_streams",
    "touches",
]


def _hypothesis_installed() -> bool:
    try:
        import hypothesis  # noqa: F401, PLC0415  (only to learn whether it is installed)
    except ImportError:
        return False
    return True


if _TYPE_CHECKING or _hypothesis_installed():
    from hypothesis import strategies as _st

    from buyerjourney._core.funnel import Funnel as _Funnel
    from buyerjourney._core.owners import OwnerRules as _OwnerRules
    from buyerjourney._core.protocols import Context as _Context
    from buyerjourney._core.records import Actor as _Actor
    from buyerjourney._core.records import Touch as _Touch
    from buyerjourney.testing.harness import (
        DEFAULT_LEADS,
        DEFAULT_STEPS,
        GENERIC_TOUCH_KINDS,
        START,
        Advance,
        Operation,
        Outcome,
        PipelineMachine,
        pipeline_machine,
        run_pipeline_machine,
    )
    from buyerjourney.testing.strategies import (
        EPOCH,
        EXTRA_TEAMS,
        GUARD_NAMES,
        LEAD_ATTRIBUTES,
        OWNERS,
        PEOPLE,
        SCORE_THRESHOLDS,
        SOLO_PERSON,
        TOUCH_KINDS,
        UNKNOWN_EVENTS,
        actors,
        contexts,
        derived_funnels,
        event_sequences,
        funnels,
        lead_attributes,
        owner_rules,
        raw_touch_streams,
        standard_hooks,
        touch_streams,
        touches,
    )

    # Registered as functions, so that nothing is built before a test asks:
    # the pytest plugin imports this package while Hypothesis initialises,
    # when evaluating strategies would warn.
    _st.register_type_strategy(_Funnel, lambda _: funnels())
    _st.register_type_strategy(_OwnerRules, lambda _: funnels().flatmap(owner_rules))
    _st.register_type_strategy(_Touch, lambda _: touches())
    _st.register_type_strategy(_Actor, lambda _: actors())
    _st.register_type_strategy(_Context, lambda _: contexts())
else:

    def __getattr__(name: str) -> _NoReturn:
        from buyerjourney.errors import MissingExtra  # noqa: PLC0415  (only needed without Hypothesis)

        raise MissingExtra(f"buyerjourney.testing.{name}", "testing")
