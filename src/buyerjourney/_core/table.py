"""The compiled transition table: a funnel turned into integer-indexed lookups for bulk replay.

A :class:`CompiledFunnel` answers one question fast: *from this stage, on this
event, with this context, which transition is taken?* It keeps no journey
state of its own, so one table serves every lead of a funnel. Stages, events
and transitions are numbered once; the hot path, :meth:`CompiledFunnel.step_index`,
does one dictionary lookup and calls the guards of the candidate transitions,
with no string work when a move succeeds::

    table = compile_funnel(presets.seed())
    t = table.step("awareness", "engage")
    t.target  # 'consideration'

The rules are those of the python-statemachine class built by
:func:`buyerjourney.build_machine_class`, and a differential test
holds the two engines to the same outcome at every step:

* the funnel's transitions with that source and event are considered in
  declaration order; the first whose guard is absent or returns ``True`` is
  taken, and the guards of later ones are not called;
* if none is taken, :class:`~buyerjourney.errors.TransitionNotAllowed` is
  raised (also for unknown events and from terminal stages); when the event
  is legal from the stage but every guard said no, its ``refused_by`` names
  those guards and its message says which guard refused;
* a backward transition without a reason (``None`` or blank) raises
  :class:`~buyerjourney.errors.ReasonRequired`;
* a guard that raises or returns a non-bool raises
  :class:`~buyerjourney.errors.HookError`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import TypeAlias

from buyerjourney._core.funnel import Direction, Funnel, Transition
from buyerjourney._core.protocols import Context, Hooks, evaluate_guard
from buyerjourney.errors import ReasonRequired, TransitionNotAllowed, UnknownStage

__all__ = ["Candidate", "CompiledFunnel", "compile_funnel"]

Candidate: TypeAlias = tuple[int, int, Callable[[Context], bool] | None, bool]
"""One transition that may answer a (stage, event) pair: ``(transition_idx,
target_idx, guard, backward)``. ``guard`` takes the context and returns whether
the move may happen (it raises :class:`~buyerjourney.errors.HookError` for a
faulty hook); it is ``None`` for an unguarded transition."""


def _reason_missing(reason: object) -> bool:
    """Whether *reason* does not count as a reason for a backward move (``None`` or blank)."""
    return not isinstance(reason, str) or not reason.strip()


def _default_context(stage: str, event: str) -> Context:
    """The context a guard sees when the caller gave none."""
    return Context(stage=stage, event=event)


class CompiledFunnel:
    """A funnel compiled to integer-indexed tables, for stepping millions of events.

    Build one with :func:`compile_funnel` (or this constructor) and reuse it for
    every lead: it holds no journey state. Guard hooks are resolved once, when
    the table is built; the rest is computed once per funnel object and shared
    by all its tables.

    Args:
        funnel: The funnel to compile.
        hooks: The registry holding every guard the funnel names (an empty
            registry when ``None``).

    Raises:
        UnknownHook: A guard named by the funnel is not registered; lists every
            missing name.

    Attributes:
        funnel: The funnel the table was compiled from.
        stage_names: Stage names by stage index (the funnel's order).
        event_names: Event names by event index (order of first appearance).
        stage_index: Stage index by name.
        event_index: Event index by name.
        transitions: The funnel's transitions by transition index (declaration order).
        table: Candidates by ``(stage_idx, event_idx)``, in priority order; pairs
            with no transition are absent.
        initial_index: The index of the initial stage.
    """

    __slots__ = (
        "_allowed",
        "_targets",
        "event_index",
        "event_names",
        "funnel",
        "initial_index",
        "stage_index",
        "stage_names",
        "table",
        "transitions",
    )

    funnel: Funnel
    stage_names: tuple[str, ...]
    event_names: tuple[str, ...]
    stage_index: Mapping[str, int]
    event_index: Mapping[str, int]
    transitions: tuple[Transition, ...]
    table: Mapping[tuple[int, int], tuple[Candidate, ...]]
    initial_index: int
    _targets: tuple[int, ...]
    _allowed: tuple[tuple[str, ...], ...]

    def __init__(self, funnel: Funnel, hooks: Hooks | None = None) -> None:
        shape = _shape_of(funnel)
        self.funnel = funnel
        self.stage_names = shape.stage_names
        self.event_names = shape.event_names
        self.stage_index = shape.stage_index
        self.event_index = shape.event_index
        self.transitions = shape.transitions
        self.initial_index = shape.initial_index
        self._targets = shape.targets
        self._allowed = shape.allowed
        if not shape.guarded:
            self.table = shape.table
            return
        guards = (hooks if hooks is not None else Hooks()).resolve(funnel.guards)
        bound = {name: partial(evaluate_guard, name, fn) for name, fn in guards.items()}
        table = dict(shape.table)
        for key, candidates in shape.guarded:
            table[key] = tuple(
                (i, target, None if name is None else bound[name], backward)
                for i, target, name, backward in candidates
            )
        self.table = MappingProxyType(table)

    def __repr__(self) -> str:
        return (
            f"CompiledFunnel({self.funnel.name!r}, stages={len(self.stage_names)}, "
            f"events={len(self.event_names)}, transitions={len(self.transitions)})"
        )

    def step_index(
        self,
        stage_idx: int,
        event_idx: int,
        ctx: Context | None = None,
        reason: str | None = None,
    ) -> int:
        """Return the index of the transition taken from *stage_idx* on *event_idx*.

        The fast path: integers in, an integer out. Get the new stage with
        :meth:`target_of`.

        Args:
            stage_idx: The index of the stage the journey is in.
            event_idx: The index of the event.
            ctx: What the guards see; when ``None``, a context holding only the
                stage and event names.
            reason: Why the move happens; required (non-blank) for a backward move.

        Raises:
            TransitionNotAllowed: No transition from that stage on that event
                lets the move through; ``refused_by`` names the guards that
                said no, if the event is legal from the stage.
            ReasonRequired: The transition taken is backward and *reason* is
                missing or blank; the journey does not move.
            HookError: A guard raised or returned a non-bool.
            UnknownStage: *stage_idx* is not a stage index.
        """
        candidates = self.table.get((stage_idx, event_idx))
        if candidates is not None:
            for transition_idx, _target, guard, backward in candidates:
                if guard is not None:
                    if ctx is None:
                        ctx = _default_context(
                            self.stage_names[stage_idx], self.event_names[event_idx]
                        )
                    if not guard(ctx):
                        continue
                if backward and _reason_missing(reason):
                    t = self.transitions[transition_idx]
                    raise ReasonRequired(t.event, t.source, t.target)
                return transition_idx
        raise self._not_allowed(stage_idx, event_idx)

    def step(
        self,
        stage: str,
        event: str,
        ctx: Context | None = None,
        *,
        reason: str | None = None,
    ) -> Transition:
        """Return the transition taken from *stage* on *event*.

        Args:
            stage: The name of the stage the journey is in.
            event: The event name.
            ctx: What the guards see; when ``None``, a context holding only the
                stage and event names.
            reason: Why the move happens; required (non-blank) for a backward move.

        Returns:
            The transition taken; the journey is now in its ``target``.

        Raises:
            UnknownStage: *stage* is not a stage of the funnel.
            TransitionNotAllowed: *event* is unknown, or not legal from *stage*,
                or every guard of its transitions said no (``refused_by``
                names them).
            ReasonRequired: The transition taken is backward and *reason* is
                missing or blank; the journey does not move.
            HookError: A guard raised or returned a non-bool.
        """
        try:
            stage_idx = self.stage_index[stage]
        except (KeyError, TypeError):
            raise UnknownStage(stage, self.stage_names, funnel_name=self.funnel.name) from None
        try:
            event_idx = self.event_index[event]
        except (KeyError, TypeError):
            raise TransitionNotAllowed(event, stage, self._allowed[stage_idx]) from None
        return self.transitions[self.step_index(stage_idx, event_idx, ctx, reason)]

    def target_of(self, transition_idx: int) -> int:
        """Return the stage index that transition *transition_idx* leads to."""
        return self._targets[transition_idx]

    def _not_allowed(self, stage_idx: int, event_idx: int) -> Exception:
        if not (isinstance(stage_idx, int) and 0 <= stage_idx < len(self.stage_names)):
            return UnknownStage(stage_idx, self.stage_names, funnel_name=self.funnel.name)
        stage = self.stage_names[stage_idx]
        if isinstance(event_idx, int) and 0 <= event_idx < len(self.event_names):
            event = self.event_names[event_idx]
        else:
            event = f"<event index {event_idx!r}>"
        candidates = self.table.get((stage_idx, event_idx), ())
        # Nothing was taken and nothing raised: every candidate is guarded and said no.
        refused_by = [self.transitions[c[0]].guard for c in candidates]
        return TransitionNotAllowed(
            event, stage, self._allowed[stage_idx], refused_by=[g for g in refused_by if g]
        )


_Unbound: TypeAlias = tuple[int, int, str | None, bool]
"""A candidate before its guard is bound: ``(transition_idx, target_idx, guard_name, backward)``."""


class _Shape:
    """What a compiled table keeps of a funnel whatever the hooks: computed once per funnel.

    Every :class:`CompiledFunnel` of the same funnel object shares it, so that
    building an engine costs only the binding of its guards: a funnel with no
    guards compiles in constant time after the first time.
    """

    __slots__ = (
        "__weakref__",
        "allowed",
        "event_index",
        "event_names",
        "funnel",
        "guarded",
        "initial_index",
        "stage_index",
        "stage_names",
        "table",
        "targets",
        "transitions",
    )

    def __init__(self, funnel: Funnel) -> None:
        self.funnel = weakref.ref(funnel)
        self.stage_names = funnel.stage_names
        self.event_names = funnel.events
        self.stage_index = MappingProxyType({n: i for i, n in enumerate(self.stage_names)})
        self.event_index = MappingProxyType({n: i for i, n in enumerate(self.event_names)})
        self.transitions = funnel.transitions
        self.initial_index = self.stage_index[funnel.initial.name]
        self.targets = tuple(self.stage_index[t.target] for t in self.transitions)
        self.allowed = tuple(funnel.allowed_events(name) for name in self.stage_names)
        unbound: dict[tuple[int, int], list[_Unbound]] = {}
        for i, t in enumerate(self.transitions):
            key = (self.stage_index[t.source], self.event_index[t.event])
            backward = t.direction is Direction.BACKWARD
            unbound.setdefault(key, []).append((i, self.targets[i], t.guard, backward))
        self.table: Mapping[tuple[int, int], tuple[Candidate, ...]] = MappingProxyType(
            {
                k: tuple((i, target, None, backward) for i, target, _, backward in v)
                for k, v in unbound.items()
                if all(c[2] is None for c in v)
            }
        )
        self.guarded: tuple[tuple[tuple[int, int], tuple[_Unbound, ...]], ...] = tuple(
            (k, tuple(v)) for k, v in unbound.items() if any(c[2] is not None for c in v)
        )


_SHAPES: dict[int, _Shape] = {}
"""The shape of each live funnel, by ``id``: an entry goes when its funnel does."""


def _shape_of(funnel: Funnel) -> _Shape:
    """The shared :class:`_Shape` of *funnel* (the very object: a frozen funnel never changes)."""
    key = id(funnel)
    shape = _SHAPES.get(key)
    if shape is not None and shape.funnel() is funnel:
        return shape
    shape = _Shape(funnel)
    _SHAPES[key] = shape
    weakref.finalize(funnel, _forget, key, weakref.ref(shape))
    return shape


def _forget(key: int, shape: weakref.ref[_Shape]) -> None:
    """Drop the shape of a funnel that is gone (unless the id already holds a newer one)."""
    if _SHAPES.get(key) is shape():
        _SHAPES.pop(key, None)


def compile_funnel(funnel: Funnel, hooks: Hooks | None = None) -> CompiledFunnel:
    """Compile *funnel* into a :class:`CompiledFunnel`, resolving its guards in *hooks*.

    What does not depend on the hooks (the numbering, the candidates of each
    stage and event) is computed once per funnel object and shared by every
    table compiled from it; each call only binds the guards, so an engine
    built on a funnel without guards costs no work in the funnel's size.

    Raises:
        UnknownHook: A guard named by the funnel is not registered; lists every
            missing name.
    """
    return CompiledFunnel(funnel, hooks)
