"""A funnel as a python-statemachine class: the reference engine, for one journey at a time.

:func:`build_machine_class` turns a :class:`~buyerjourney.Funnel` into a
:class:`statemachine.StateMachine` subclass: one state per stage, one event per
event name, guards as conditions. Instances are ordinary python-statemachine
machines (listeners, ``on_enter_<stage>`` callbacks, domain models, diagrams
all work) with buyerjourney's rules and exceptions::

    machine = funnel_machine(presets.seed())
    machine.send("engage")
    machine.stage  # 'consideration'
    machine.send("nurture", reason="bad timing")

The rules are exactly those of :class:`~buyerjourney.CompiledFunnel`:

* the transitions with the current stage as source and the sent event are
  considered in declaration order; the first whose guard is absent or returns
  ``True`` is taken, and the guards of later ones are not called;
* if none is taken, :class:`~buyerjourney.errors.TransitionNotAllowed` is
  raised, listing the events legal from the stage (also for unknown events and
  from terminal stages); when the event is legal but every guard said no, its
  ``refused_by`` names those guards and its message says which guard refused;
* a backward transition sent without a reason (``None`` or blank) raises
  :class:`~buyerjourney.errors.ReasonRequired`;
* a guard that raises or returns a non-bool raises
  :class:`~buyerjourney.errors.HookError`.

Whatever is raised, the machine stays in the stage it was in.

One ``send()`` costs in the order of a hundred microseconds; to replay
millions of events use :func:`buyerjourney.compile_funnel`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from inspect import isawaitable
from typing import Any, ClassVar, cast

from statemachine import Event, State, StateMachine
from statemachine.event_data import TriggerData
from statemachine.exceptions import TransitionNotAllowed as _EngineNotAllowed
from statemachine.factory import StateMachineMetaclass
from statemachine.transition_list import TransitionList

from buyerjourney._core.funnel import Direction, Funnel, Problem, Transition
from buyerjourney._core.protocols import Context, Guard, Hooks, evaluate_guard
from buyerjourney._core.table import _default_context, _reason_missing
from buyerjourney.errors import InvalidFunnel, ReasonRequired, TransitionNotAllowed

__all__ = ["FunnelMachine", "build_machine_class", "funnel_machine"]


class FunnelMachine(StateMachine):
    """Base class of the machines that :func:`build_machine_class` generates.

    A strict :class:`statemachine.StateMachine`: an event that leads nowhere
    raises. Send events with :meth:`send` or call them as methods
    (``machine.engage(ctx=ctx)``); either way the guards receive the ``ctx``
    keyword (a :class:`~buyerjourney.Context`) and backward moves need the
    ``reason`` keyword. Other keyword arguments reach python-statemachine
    callbacks and listeners unchanged.

    Instantiate a generated class directly or through :func:`funnel_machine`.

    Args:
        model: An object that stores the stage in its *state_field*
            attribute (python-statemachine's domain model), or ``None``.
        state_field: The model attribute that holds the stage name.
        start_value: The stage to start in (a persisted stage), instead of the
            initial stage.
        listeners: Objects whose methods are called as python-statemachine
            callbacks (``after_transition(event, source, target)``, ...).
        **kwargs: Passed to python-statemachine for dependency injection into
            the callbacks run when the start stage is entered; ``ctx`` and
            ``reason`` default to ``None`` there.

    Raises:
        UnknownStage: *start_value*, or the stage the model holds, is not a
            stage of the funnel.
        ValueError: Both the model and *start_value* give a stage, and they differ.

    Attributes:
        funnel: The funnel the class was generated from.
    """

    funnel: ClassVar[Funnel]
    _funnel_events: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        model: Any = None,
        state_field: str = "state",
        start_value: Any = None,
        listeners: list[object] | None = None,
        **kwargs: Any,
    ) -> None:
        funnel: Funnel | None = getattr(type(self), "funnel", None)
        if funnel is not None:
            if start_value is not None:
                funnel.stage(start_value)
            held = getattr(model, state_field, None) if model is not None else None
            if held is not None:
                funnel.stage(held)
                if start_value is not None and start_value != held:
                    msg = (
                        f"the model already holds stage {held!r} in {state_field!r} but "
                        f"start_value is {start_value!r}; pass one of them, not both"
                    )
                    raise ValueError(msg)
        # Callbacks that take ``ctx`` or ``reason`` also run when the start stage
        # is entered; give them the same keywords as every later event.
        kwargs.setdefault("ctx", None)
        kwargs.setdefault("reason", None)
        super().__init__(
            model=model,
            state_field=state_field,
            start_value=start_value,
            listeners=listeners,
            **kwargs,
        )

    @property
    def stage(self) -> str:
        """The name of the stage the journey is in."""
        return cast(str, self.current_state_value)

    @property
    def legal_events(self) -> tuple[str, ...]:
        """The events that may be sent from the current stage (before guards are asked).

        Unlike python-statemachine's ``allowed_events`` (a list of ``Event``
        objects), these are plain names, in the funnel's order.
        """
        return self.funnel.allowed_events(self.stage)

    def send(
        self,
        event: str,
        *args: Any,
        ctx: Context | None = None,
        reason: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send *event*; the journey moves to the target of the transition taken.

        Args:
            event: The event name.
            *args: Positional arguments for python-statemachine callbacks.
            ctx: What the guards see; when ``None``, a context holding only the
                stage and event names.
            reason: Why the move happens; required (non-blank) for a backward move.
            **kwargs: Keyword arguments for python-statemachine callbacks and
                options of its ``send`` (``delay``, ``send_id``, ``internal``).

        Returns:
            What python-statemachine returns: the result of the transition's
            ``on`` callbacks, usually ``None``.

        Raises:
            TransitionNotAllowed: *event* is unknown, or not legal from the
                current stage, or every guard of its transitions said no
                (``refused_by`` names them).
            ReasonRequired: The transition taken is backward and *reason* is
                missing or blank.
            HookError: A guard raised or returned a non-bool.
        """
        if not isinstance(event, str) or event not in self._funnel_events:
            raise TransitionNotAllowed(str(event), self.stage, self.legal_events)
        return super().send(event, *args, ctx=ctx, reason=reason, **kwargs)

    # Every way of sending an event (send(), raise_(), machine.<event>()) goes
    # through these two engine entry points; they swap python-statemachine's
    # exception for buyerjourney's.

    def _put_nonblocking(self, trigger_data: TriggerData, internal: bool = False) -> None:
        try:
            super()._put_nonblocking(trigger_data, internal=internal)
        except _EngineNotAllowed as exc:
            raise self._not_allowed(exc) from exc

    def _processing_loop(self, caller_future: Any | None = None) -> Any:
        try:
            result = super()._processing_loop(caller_future)
        except _EngineNotAllowed as exc:
            raise self._not_allowed(exc) from exc
        if isawaitable(result):
            return self._translated(result)
        return result

    async def _translated(self, result: Awaitable[Any]) -> Any:
        try:
            return await result
        except _EngineNotAllowed as exc:
            raise self._not_allowed(exc) from exc

    def _not_allowed(self, exc: _EngineNotAllowed) -> TransitionNotAllowed:
        event = getattr(exc.event, "id", None) or str(exc.event or "")
        # Nothing was taken and nothing raised: every candidate is guarded and said no.
        refused_by = [t.guard for t in self.funnel.transitions_from(self.stage) if t.event == event]
        return TransitionNotAllowed(
            event, self.stage, self.legal_events, refused_by=[g for g in refused_by if g]
        )


# ``funnel`` is only annotated on the base class, so dir() does not list it.
_MACHINE_ATTRIBUTES = frozenset(dir(FunnelMachine)) | {"funnel"}


def _class_name(funnel_name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", funnel_name)
    stem = "".join(w[:1].upper() + w[1:] for w in words) or "Unnamed"
    if stem[0].isdigit():
        stem = "Funnel" + stem
    return stem + "Machine"


def _condition(t: Transition, guard: Guard | None) -> Callable[..., bool] | None:
    """The python-statemachine ``cond`` for *t*: its guard, then the reason check."""
    backward = t.direction is Direction.BACKWARD
    if guard is None and not backward:
        return None
    name = t.guard
    source, event, target = t.source, t.event, t.target

    def condition(ctx: Context | None = None, reason: str | None = None) -> bool:
        if guard is not None and name is not None:
            if ctx is None:
                ctx = _default_context(source, event)
            if not evaluate_guard(name, guard, ctx):
                return False
        if backward and _reason_missing(reason):
            raise ReasonRequired(event, source, target)
        return True

    # python-statemachine shows the callable's name in diagrams and messages.
    condition.__name__ = condition.__qualname__ = name or "reason_given"
    return condition


def _name_clashes(funnel: Funnel) -> list[Problem]:
    problems = []
    for what, names in (("stage", funnel.stage_names), ("event", funnel.events)):
        for name in names:
            if name in _MACHINE_ATTRIBUTES:
                problems.append(
                    Problem(
                        f"reserved-{what}-name",
                        f"{what} name {name!r} collides with an attribute of "
                        "buyerjourney.FunnelMachine; rename it",
                        name,
                    )
                )
    return problems


def build_machine_class(funnel: Funnel, hooks: Hooks | None = None) -> type[FunnelMachine]:
    """Generate the python-statemachine class of *funnel*.

    Each stage becomes a :class:`statemachine.State` whose id and value are the
    stage name (terminal stages are final); each event name becomes one
    :class:`statemachine.Event` grouping its transitions in declaration order.
    A guarded transition gets a condition that calls the guard through
    :func:`~buyerjourney.evaluate_guard`; a backward transition's
    condition then checks the ``reason`` keyword. Guards are looked up in
    *hooks* once, now.

    The class is named after the funnel (``"seed"`` gives ``SeedMachine``).
    Building it takes about a millisecond: build it once and create an
    instance per journey.

    Args:
        funnel: The funnel to generate the class from.
        hooks: The registry holding every guard the funnel names (an empty
            registry when ``None``).

    Returns:
        A subclass of :class:`FunnelMachine`.

    Raises:
        TypeError: *funnel* is not a :class:`~buyerjourney.Funnel`.
        UnknownHook: A guard named by the funnel is not registered; lists every
            missing name.
        InvalidFunnel: A stage or event name collides with an attribute of
            :class:`FunnelMachine` (``stage``, ``funnel``, ``legal_events``).
    """
    if not isinstance(funnel, Funnel):
        msg = f"funnel must be a buyerjourney.Funnel (got {funnel!r} that is a {type(funnel)})"
        raise TypeError(msg)
    guards = (hooks if hooks is not None else Hooks()).resolve(funnel.guards)
    clashes = _name_clashes(funnel)
    if clashes:
        raise InvalidFunnel(funnel.name, clashes)

    states = {
        s.name: State(value=s.name, initial=s.initial, final=s.terminal) for s in funnel.stages
    }
    events: dict[str, TransitionList] = {}
    for t in funnel.transitions:
        cond = _condition(t, None if t.guard is None else guards[t.guard])
        moves = states[t.source].to(states[t.target], event=t.event, cond=cond)
        events[t.event] = events[t.event] | moves if t.event in events else moves

    name = _class_name(funnel.name)
    title = funnel.name.replace("{", "(").replace("}", ")")
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"State machine generated from the funnel {title!r}.",
        "funnel": funnel,
        "_funnel_events": frozenset(events),
        # A funnel may have stages from which no terminal stage can be reached
        # (a journey may stay in retention for ever); buyerjourney allows it.
        "validate_final_reachability": False,
        **states,
    }
    for event, moves in events.items():
        namespace[event] = Event(moves, id=event)
    return cast("type[FunnelMachine]", StateMachineMetaclass(name, (FunnelMachine,), namespace))


def funnel_machine(
    funnel: Funnel,
    hooks: Hooks | None = None,
    *,
    stage: str | None = None,
    listeners: Sequence[object] | None = None,
    model: Any = None,
) -> FunnelMachine:
    """Build *funnel*'s machine class and return one instance of it.

    For many journeys of one funnel, call :func:`build_machine_class` once and
    instantiate the class for each journey instead.

    Args:
        funnel: The funnel.
        hooks: The registry holding every guard the funnel names (an empty
            registry when ``None``).
        stage: A persisted stage to restore the journey at, instead of the
            initial stage. As for the initial stage, python-statemachine runs
            its entry callbacks (``on_enter_<stage>``) with the event
            ``"__initial__"``; a model that already holds a stage runs none.
        listeners: Objects whose methods are called as python-statemachine
            callbacks, e.g. ``after_transition(self, event, source, target)``.
        model: An object that stores the stage in its ``state`` attribute.

    Raises:
        UnknownStage: *stage* (or the stage the model holds) is not a stage of
            the funnel.
        UnknownHook: A guard named by the funnel is not registered.
    """
    if stage is not None:
        funnel.stage(stage)
    machine_class = build_machine_class(funnel, hooks)
    return machine_class(
        model=model, start_value=stage, listeners=list(listeners) if listeners else None
    )
