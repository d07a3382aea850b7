"""Every extension point in one place: guards, scorers, policies and listeners.

Each is a :class:`typing.Protocol` (plain functions qualify where the
protocol is a call). Funnels refer to guards by name only (so a funnel file
never carries code): an application registers the callables under those
names in a :class:`Hooks` registry and hands the registry to an engine. Each
registry is an ordinary object: there is no global state. :func:`hook_name`
is how every engine names a hook in errors and records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import attrs

from buyerjourney._core._values import frozen_mapping
from buyerjourney.errors import HookError, UnknownHook

if TYPE_CHECKING:
    from buyerjourney._core.journey import Journey
    from buyerjourney._core.policies import Decision
    from buyerjourney._core.records import Action, Record, Touch
    from buyerjourney._core.scoring import Lead, Score

__all__ = [
    "Context",
    "Guard",
    "Hooks",
    "IncrementalScorer",
    "Listener",
    "Policy",
    "QuarantineEntry",
    "Scorer",
    "Store",
    "StoredLog",
    "evaluate_guard",
    "hook_name",
]


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores a lead at a point in time.

    Plain functions with this signature qualify.
    """

    def __call__(self, lead: Lead, at: datetime) -> Score:
        """Return the lead's score at *at*, with its breakdown."""
        ...


@runtime_checkable
class IncrementalScorer(Protocol):
    """A scorer that keeps per-lead state, so the engine never rescans a lead's history.

    The engine calls :meth:`start` for a new lead, :meth:`score_next` for
    each touch (in time order per lead) and :meth:`add` once that touch's
    operation committed; a touch whose operation fails is never added. The
    result must equal the pure call ``scorer(Lead(..., touches), touch.at)``
    on the same touches, which stays the reference (a property test holds
    the built-in scorers to it). The built-in :class:`~buyerjourney.PointsScorer`
    implements it; a scorer that only has ``__call__`` is scored the pure way.
    """

    def __call__(self, lead: Lead, at: datetime) -> Score:
        """The pure score, from the whole history (the reference)."""
        ...

    def start(self) -> Any:
        """A fresh state for a new lead."""
        ...

    def score_next(self, state: Any, touch: Touch, attributes: Mapping[str, Any]) -> Score:
        """The lead's score at ``touch.at`` once *touch* is added; does not keep *touch*."""
        ...

    def add(self, state: Any, touch: Touch) -> None:
        """Keep *touch* in *state*."""
        ...


@runtime_checkable
class Policy(Protocol):
    """Anything that decides when a journey moves. Plain functions qualify."""

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Return the decision for *journey* after *touch* was scored."""
        ...


@attrs.frozen
class StoredLog:
    """What a :class:`Store` holds: the log, and the touches and actions that were applied.

    Attributes:
        records: Committed records, by ``seq`` (from the ``after`` asked for).
        touches: The touches those operations applied, in the order applied.
        actions: The actions those operations performed, in the order performed.
    """

    records: tuple[Record, ...] = ()
    touches: tuple[Touch, ...] = ()
    actions: tuple[Action, ...] = ()


@attrs.frozen
class QuarantineEntry:
    """An input that did not land, kept in a store's quarantine with where it came from.

    Attributes:
        source: Where it came from (a file name as given, or ``"<api>"``).
        line: Its 1-based line (or row) in the source; 0 when unknown.
        code: A stable code for why (``"json"``, ``"late"``, ``"hook"`` ...).
        reason: Why, in words: what was wrong, what was received, what to do.
        text: The input itself (the raw line, shortened, or the touch as JSON).
        entry_id: The store's id of the entry (``None`` until it is stored).
    """

    source: str
    line: int
    code: str
    reason: str
    text: str
    entry_id: int | None = None


@runtime_checkable
class Store(Protocol):
    """Where an engine keeps its log durably, so that other processes can resume and share it.

    An engine opened with ``Engine(..., store=store)`` loads the store once
    (:meth:`load`) and then hands it every operation's records, with the touch
    or action that caused them, through :meth:`commit`: an operation's records
    are stored together or not at all. The log is append-only and the source
    of truth; the journeys kept beside it (:meth:`journeys`) are a snapshot
    for fast reads that :meth:`replace_journeys` rebuilds from the log.

    Concurrency is optimistic: :meth:`commit` names the log length the writer
    knows (*expected*) and the store refuses the commit with
    :class:`~buyerjourney.errors.StoreConflict` when its log is longer or a
    touch or action id is already stored. The engine then catches up with
    ``load(after=...)`` and applies the operation again, so several processes
    writing one store give the result of a serial run.
    """

    def load(self, *, after: int = 0) -> StoredLog:
        """The log from ``seq`` *after* on, with the touches and actions of those operations."""
        ...

    def commit(
        self,
        records: Sequence[Record],
        touches: Sequence[Touch] = (),
        actions: Sequence[Action] = (),
        *,
        expected: int | None = None,
        journeys: Mapping[str, Journey] | None = None,
    ) -> None:
        """Store whole operations atomically (all of it, or none).

        Args:
            records: The records, numbered from the store's log length on.
            touches: The touches the operations applied.
            actions: The actions the operations performed.
            expected: The log length the writer knows (``None``: the first
                record's ``seq``). A store whose log is longer refuses.
            journeys: The journeys after the operations, for the snapshot.

        Raises:
            StoreConflict: Another writer went first; nothing was stored.
            StoreError: The write failed; nothing was stored.
        """
        ...

    def journeys(self) -> dict[str, Journey]:
        """The snapshot of the current journeys, by lead id."""
        ...

    def replace_journeys(self, journeys: Mapping[str, Journey]) -> None:
        """Replace the whole snapshot (after rebuilding it from the log)."""
        ...

    def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Keep inputs that did not land.

        An entry with the same source, line, code and text as one kept already
        is not kept again (ingesting twice quarantines once).
        """
        ...

    def quarantined(self) -> list[QuarantineEntry]:
        """The quarantine, oldest first, with each entry's ``entry_id``."""
        ...

    def release(self, entry_ids: Iterable[int]) -> None:
        """Drop quarantine entries (once retried successfully)."""
        ...


class Listener(Protocol):
    """Receives every record the engine commits. All methods are optional.

    ``on_record(record, journey)`` is called for every record;
    ``on_handoff``, ``on_escalation`` and ``on_refused`` additionally for
    records of those kinds. *journey* is the state after the record (``None``
    for a refusal about a lead that has no journey).
    """

    def on_record(self, record: Record, journey: Journey | None) -> None:
        """Called for every committed record."""


def hook_name(hook: object, default: str) -> str:
    """The name a hook goes by in errors and records: its ``__name__``, else its class's."""
    if hook is None:
        return default
    return str(getattr(hook, "__name__", None) or type(hook).__name__)


@attrs.frozen
class Context:
    """What a guard sees when it decides whether a transition may happen.

    Attributes:
        lead_id: The lead the journey belongs to.
        stage: The stage the journey is in.
        event: The event being sent.
        attributes: The lead's attributes (segment, country, company size ...).
        score: The lead's current score.
        at: When the event happens (timezone-aware), if known.
    """

    lead_id: str = ""
    stage: str = ""
    event: str = ""
    attributes: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_mapping)
    score: float = 0.0
    at: datetime | None = None


class Guard(Protocol):
    """A guard hook: takes the :class:`Context` and returns ``True`` to allow the move.

    Plain functions ``def my_guard(ctx: Context) -> bool`` qualify. Guards must
    be deterministic and return a real ``bool``.
    """

    def __call__(self, ctx: Context, /) -> bool:
        """Decide whether the transition may happen."""
        ...


_G = TypeVar("_G", bound=Guard)


class Hooks:
    """A registry of named guard hooks.

    Example::

        hooks = Hooks()

        @hooks.guard("is_enterprise")
        def is_enterprise(ctx: Context) -> bool:
            return ctx.attributes.get("employees", 0) >= 1000

    Args:
        guards: Initial guards by name.
    """

    def __init__(self, guards: Mapping[str, Guard] | None = None) -> None:
        self._guards: dict[str, Guard] = {}
        for name, fn in (guards or {}).items():
            self.add_guard(name, fn)

    def __repr__(self) -> str:
        return f"Hooks(guards={sorted(self._guards)!r})"

    @property
    def guards(self) -> Mapping[str, Guard]:
        """The registered guards by name (read-only)."""
        return MappingProxyType(self._guards)

    def add_guard(self, name: str, fn: Guard) -> None:
        """Register *fn* as the guard called *name*.

        Raises:
            TypeError: *fn* is not callable or *name* is not a non-empty string.
            ValueError: A different guard is already registered under *name*.
        """
        if not isinstance(name, str) or not name:
            msg = f"a guard name must be a non-empty str (got {name!r})"
            raise TypeError(msg)
        if not callable(fn):
            msg = f"guard {name!r} must be callable (got {fn!r} that is a {type(fn).__name__})"
            raise TypeError(msg)
        if name in self._guards and self._guards[name] is not fn:
            msg = f"a different guard is already registered as {name!r}; choose another name"
            raise ValueError(msg)
        self._guards[name] = fn

    def guard(self, name: str | None = None) -> Callable[[_G], _G]:
        """Decorator: register the decorated function as a guard (by default under its name)."""

        def register(fn: _G) -> _G:
            self.add_guard(name or str(getattr(fn, "__name__", "")), fn)
            return fn

        return register

    def resolve(self, names: Iterable[str]) -> dict[str, Guard]:
        """Return the guards for *names*, checking that every one is registered.

        Raises:
            UnknownHook: Lists every name that is not registered.
        """
        names = tuple(names)
        missing = [n for n in names if n not in self._guards]
        if missing:
            raise UnknownHook("guard", missing, self._guards)
        return {n: self._guards[n] for n in names}


def evaluate_guard(name: str, fn: Guard, ctx: Context) -> bool:
    """Call guard *fn* and insist on a ``bool`` answer.

    Both engines evaluate guards through this function, so they fail the same
    way.

    Raises:
        HookError: The guard raised, or returned something that is not a bool.
    """
    try:
        result = fn(ctx)
    except Exception as exc:
        raise HookError(
            name, f"guard raised {type(exc).__name__}: {exc}", subject=ctx.lead_id or None
        ) from exc
    if not isinstance(result, bool):
        raise HookError(
            name,
            f"guard must return a bool (got {result!r} that is a {type(result).__name__})",
            subject=ctx.lead_id or None,
            received=result,
        )
    return result
