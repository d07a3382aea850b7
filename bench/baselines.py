"""One state machine object per lead: python-statemachine and ``transitions``.

Both run the hand-written loop of :mod:`bench.handwritten` (same scoring,
thresholds, policy, owners and tuple records); only the transition is done
by a per-lead machine object instead of a dict lookup: that is how a replay
looks when each journey is a state machine instance, as these libraries
are meant to be used.

* python-statemachine: one instance per lead of the class that
  :func:`buyerjourney._core.machine.build_machine_class` generates from the funnel
  (the project's reference engine), ``send(event, reason=...)``.
* ``transitions``: one model per lead added to one shared ``Machine`` (the
  idiomatic way; a ``Machine`` per lead is slower still), ``trigger(event)``.
"""

from __future__ import annotations

from typing import Any

from buyerjourney import Funnel
from buyerjourney._core.machine import build_machine_class
from buyerjourney.errors import TransitionNotAllowed


class StatemachinePerLead:
    """python-statemachine: one machine instance per lead."""

    name = "python-statemachine, one instance per lead"

    def __init__(self, funnel: Funnel) -> None:
        self.cls = build_machine_class(funnel)

    def new(self, initial: str) -> Any:
        return self.cls()

    def send(self, machine: Any, event: str, reason: str) -> str | None:
        try:
            machine.send(event, reason=reason)
        except TransitionNotAllowed:
            return None
        return str(machine.stage)


class TransitionsPerLead:
    """``transitions``: one model per lead on a shared machine."""

    name = "transitions, one model per lead"

    def __init__(self, funnel: Funnel) -> None:
        from transitions import Machine, MachineError  # noqa: PLC0415  (bench extra)

        self.error = MachineError
        self.machine = Machine(
            model=None,
            states=list(funnel.stage_names),
            transitions=[
                {"trigger": t.event, "source": t.source, "dest": t.target}
                for t in funnel.transitions
            ],
            initial=funnel.initial.name,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )

    def new(self, initial: str) -> Any:
        model = _Model()
        self.machine.add_model(model)
        return model

    def send(self, model: Any, event: str, reason: str) -> str | None:
        try:
            model.trigger(event)
        except (self.error, AttributeError):
            return None
        return str(model.state)


class _Model:
    state: str
