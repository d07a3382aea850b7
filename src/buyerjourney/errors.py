"""Every exception the library raises, under one root.

Catch :class:`BuyerJourneyError` to handle anything raised on purpose by
buyerjourney. Each subclass also inherits the closest built-in exception, so
code that already catches ``ValueError`` or ``KeyError`` keeps working::

    BuyerJourneyError
    ├── InvalidFunnel (ValueError)          a funnel definition has problems
    ├── FunnelFormatError (ValueError)      a funnel file cannot be read
    │   └── PipelineFormatError             a pipeline file cannot be read
    ├── UnknownStage (KeyError)             a stage name is not in the funnel
    ├── UnknownPreset (KeyError)            no preset funnel has that name
    ├── UnknownHook (LookupError)           a guard, scorer or policy name is not registered
    ├── TransitionNotAllowed (ValueError)   an event is not legal from the current stage
    │   └── ReasonRequired                  a backward move was attempted without a reason
    ├── HookError (RuntimeError)            a user hook raised or returned something invalid
    ├── InvalidOwnerRules (ValueError)      owner rules leave a gap or name unknown teams
    ├── ActionRefused (PermissionError)     an actor may not perform a manual action
    ├── InvalidTouch (ValueError)           an engagement event is malformed
    │   └── Duplicate                       its id was applied before (skipped, counted)
    ├── InvalidAction (ValueError)          a manual action's time or fields cannot be used
    ├── ListenerFailed (RuntimeError)       a listener raised; the operation was committed
    ├── StoreError (OSError)                a store cannot be opened, read or written
    │   ├── StoreConflict                   another writer appended first; catch up and retry
    │   └── StoreInUse                      a destructive command met a store others have open
    ├── ModeNotPossible (ValueError)        a forced bulk replay mode cannot replay this pipeline
    ├── CorruptLog (ValueError)             a log record does not fit its journey
    └── MissingExtra (ImportError)          an optional dependency is not installed

Every exception carries its context as attributes (the stage, the event, the
problems found ...) so that programs need not parse messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

__all__ = [
    "ActionRefused",
    "BuyerJourneyError",
    "CorruptLog",
    "Duplicate",
    "FunnelFormatError",
    "HookError",
    "InvalidAction",
    "InvalidFunnel",
    "InvalidOwnerRules",
    "InvalidTouch",
    "ListenerFailed",
    "MissingExtra",
    "ModeNotPossible",
    "PipelineFormatError",
    "Problem",
    "ReasonRequired",
    "StoreConflict",
    "StoreError",
    "StoreInUse",
    "TransitionNotAllowed",
    "UnknownHook",
    "UnknownPreset",
    "UnknownStage",
]


class BuyerJourneyError(Exception):
    """The root of every exception that buyerjourney raises on purpose."""


@attrs.frozen
class Problem:
    """One thing wrong with a definition (a funnel, owner rules, a pipeline).

    Attributes:
        code: A stable, machine-readable code such as ``"unreachable-stage"``.
        message: What is wrong and what to do about it.
        subject: The stage or event concerned, if any.
    """

    code: str
    message: str
    subject: str = ""

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InvalidFunnel(BuyerJourneyError, ValueError):
    """A funnel definition has one or more problems.

    Attributes:
        funnel_name: The name of the funnel that failed validation.
        problems: Every problem found, not only the first.
    """

    def __init__(self, funnel_name: str, problems: Sequence[Problem]) -> None:
        self.funnel_name = funnel_name
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(
            f"funnel {funnel_name!r} has {len(self.problems)} {noun}:\n{lines}\n"
            "Fix each one and build the funnel again."
        )


class FunnelFormatError(BuyerJourneyError, ValueError):
    """A funnel file (TOML or JSON) cannot be turned into a funnel.

    Attributes:
        source: Where the text came from (a file name, or ``"<string>"``).
        location: The path of keys inside the document, e.g. ``stages[2].sla``.
    """

    def __init__(self, message: str, *, source: str = "<string>", location: str = "") -> None:
        self.source = source
        self.location = location
        where = f"{source}: {location}: " if location else f"{source}: "
        super().__init__(where + message)


class PipelineFormatError(FunnelFormatError):
    """A pipeline file (TOML or JSON) cannot be turned into a pipeline.

    A subclass of :class:`FunnelFormatError`, so one ``except`` clause
    catches a malformed funnel file and a malformed pipeline file alike.

    Attributes:
        source: Where the text came from (a file name, or ``"<string>"``).
        location: The path of keys inside the document, e.g. ``policy.policies[1].event``.
    """


class UnknownStage(BuyerJourneyError, KeyError):
    """A stage name was given that the funnel does not define.

    Attributes:
        stage: The name that was received.
        known: The stage names the funnel does define.
    """

    def __init__(self, stage: object, known: Iterable[str], *, funnel_name: str = "") -> None:
        self.stage = stage
        self.known = tuple(known)
        self.funnel_name = funnel_name
        of = f" of funnel {funnel_name!r}" if funnel_name else ""
        super().__init__(
            f"{stage!r} is not a stage{of}; expected one of {', '.join(self.known)}. "
            "If the stage was persisted by an older funnel, migrate it first."
        )

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the whole message; keep it readable.
        return str(self.args[0])


class UnknownPreset(BuyerJourneyError, KeyError):
    """No preset funnel has the name that was given.

    Attributes:
        name: The name that was received.
        known: The preset names.
    """

    def __init__(self, name: object, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(
            f"no preset named {name!r}; choose one of {', '.join(self.known)}, "
            "or give the path of a funnel file"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownHook(BuyerJourneyError, LookupError):
    """A hook (guard, scorer, policy) is referred to by a name nobody registered.

    Attributes:
        kind: ``"guard"``, ``"scorer"`` or ``"policy"``.
        names: The missing names.
        known: The names that are registered.
    """

    def __init__(self, kind: str, names: Iterable[str], known: Iterable[str]) -> None:
        self.kind = kind
        self.names = tuple(sorted(set(names)))
        self.known = tuple(sorted(set(known)))
        listed = ", ".join(self.known) if self.known else "none"
        if kind == "guard":
            todo = "Register it with `hooks.add_guard(name, fn)`, or fix the name in the funnel."
        else:
            todo = (
                f"Install the package that provides it (entry point group "
                f"'buyerjourney.{kind.replace('policy', 'policie')}s'), or fix the name."
            )
        super().__init__(
            f"no {kind} registered under {', '.join(map(repr, self.names))} "
            f"(registered: {listed}). {todo}"
        )


class TransitionNotAllowed(BuyerJourneyError, ValueError):
    """An event is not legal from the stage a journey is in, or its guards refused it.

    Attributes:
        event: The event that was sent.
        stage: The stage the journey was in (unchanged).
        allowed: The events that are legal from that stage.
        refused_by: The guards that said no, in priority order, when the event
            is legal from the stage but every transition it could take is
            guarded and each guard returned ``False``; empty when the event is
            not legal from the stage at all.
    """

    def __init__(
        self,
        event: str,
        stage: str,
        allowed: Iterable[str],
        *,
        detail: str = "",
        refused_by: Iterable[str] = (),
    ) -> None:
        self.event = event
        self.stage = stage
        self.allowed = tuple(allowed)
        self.refused_by = tuple(refused_by)
        if detail:
            message = detail
        elif self.refused_by:
            noun = "guard" if len(self.refused_by) == 1 else "guards"
            names = " and ".join(", ".join(map(repr, self.refused_by)).rsplit(", ", 1))
            message = (
                f"event {event!r} from stage {stage!r}: {noun} {names} refused it, "
                f"so the journey stays in {stage!r}"
            )
        elif self.allowed:
            message = (
                f"event {event!r} is not allowed from stage {stage!r}; "
                f"allowed events there: {', '.join(self.allowed)}"
            )
        else:
            message = f"event {event!r} is not allowed: stage {stage!r} has no way out"
        super().__init__(message)


class ReasonRequired(TransitionNotAllowed):
    """A backward (recycle / nurture) transition was attempted without a reason."""

    def __init__(self, event: str, stage: str, target: str) -> None:
        self.target = target
        super().__init__(
            event,
            stage,
            (),
            detail=(
                f"event {event!r} moves the journey backward from {stage!r} to {target!r} "
                "and needs a reason; pass reason='...' (e.g. 'bad timing')"
            ),
        )


class HookError(BuyerJourneyError, RuntimeError):
    """A user hook (guard, scorer, policy, listener) raised or returned something invalid.

    The journey the hook was called for is left unchanged.

    Attributes:
        hook: The hook's registered name (or its repr).
        subject: What the hook was evaluating (a touch id, a lead id ...).
        received: What the hook returned, when it returned something invalid.
    """

    def __init__(
        self, hook: str, message: str, *, subject: object = None, received: Any = None
    ) -> None:
        self.hook = hook
        self.subject = subject
        self.received = received
        about = f" for {subject!r}" if subject is not None else ""
        super().__init__(f"hook {hook!r}{about}: {message}")


class InvalidOwnerRules(BuyerJourneyError, ValueError):
    """Owner rules leave a stage without an owner, or name unknown stages or teams.

    Attributes:
        problems: Every problem found, each a :class:`Problem` with a stable code.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"owner rules have {len(self.problems)} problem(s):\n{lines}")


class ActionRefused(BuyerJourneyError, PermissionError):
    """An actor attempted a manual action they may not perform.

    Nothing changed; the refusal itself is recorded in the log.

    Attributes:
        lead_id: The lead the action was for.
        action: The action attempted (an event name, ``"accept"``, ``"reject"`` ...).
        actor: Who attempted it.
        reason: Why it was refused.
    """

    def __init__(self, lead_id: str, action: str, actor: object, reason: str) -> None:
        self.lead_id = lead_id
        self.action = action
        self.actor = actor
        self.reason = reason
        super().__init__(f"{actor} may not {action!r} lead {lead_id!r}: {reason}")


class InvalidTouch(BuyerJourneyError, ValueError):
    """An engagement event (a touch) is malformed.

    Attributes:
        field: The offending field.
        value: The value received.
        position: Where the record was in its input (line number), if known.
    """

    def __init__(
        self, field: str, value: object, expected: str, *, position: int | None = None
    ) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        self.position = position
        at = f"record {position}: " if position is not None else ""
        super().__init__(
            f"{at}touch field {field!r} must be {expected} (got {value!r} that is a "
            f"{type(value).__name__})"
        )


class Duplicate(InvalidTouch):
    """A touch or action whose id was applied before: it is skipped, nothing changes.

    Ingesting is idempotent: :meth:`Engine.ingest <buyerjourney.Engine.ingest>`
    and ``buyerjourney ingest`` count duplicates rather than quarantine them;
    :meth:`Engine.ingest_one <buyerjourney.Engine.ingest_one>` and
    :meth:`Engine.perform <buyerjourney.Engine.perform>` raise this, so a caller
    that retries (a webhook) can tell a repeat from a new input.

    Attributes:
        input_id: The repeated id.
    """

    def __init__(self, field: str, input_id: str, *, position: int | None = None) -> None:
        super().__init__(field, input_id, "an id not seen before (duplicate)", position=position)
        self.input_id = input_id


class CorruptLog(BuyerJourneyError, ValueError):
    """A log cannot be folded: a record does not fit the journey it belongs to.

    Attributes:
        record: The offending record.
    """

    def __init__(self, record: Any, message: str) -> None:
        self.record = record
        super().__init__(
            f"record {record.seq} ({record.kind.value}) of lead {record.lead_id!r}: {message}. "
            "The log was changed by something other than buyerjourney, or belongs to "
            "another funnel."
        )


class MissingExtra(BuyerJourneyError, ImportError):
    """An optional dependency is needed for this feature and is not installed.

    Attributes:
        extra: The name of the extra that installs it.
    """

    def __init__(self, feature: str, extra: str, detail: str = "") -> None:
        self.extra = extra
        more = f" {detail}" if detail else ""
        super().__init__(
            f"{feature} needs the {extra!r} extra: pip install 'buyerjourney[{extra}]'.{more}"
        )


class ModeNotPossible(BuyerJourneyError, ValueError):
    """A forced bulk replay mode cannot replay this pipeline exactly.

    Attributes:
        mode: The mode asked for (``"columnar"`` or ``"hooks"``).
        possible: The fastest path that is exact (what ``mode="auto"`` takes).
        reasons: Every reason the faster path is not possible.
    """

    def __init__(self, mode: str, possible: str, reasons: Sequence[str]) -> None:
        self.mode = mode
        self.possible = possible
        self.reasons = tuple(reasons)
        lines = "\n".join(f"  - {r}" for r in self.reasons)
        super().__init__(
            f"mode={mode!r} is not possible for this pipeline:\n{lines}\n"
            f"Use mode='auto' (it takes the {possible!r} path), or change what is listed."
        )


class InvalidAction(BuyerJourneyError, ValueError):
    """A manual action (send, accept, reject, override, advance) was given a value it cannot use.

    Nothing changed. The value is kept as given (a datetime stays a datetime).

    Attributes:
        action: The action (an event name, ``"accept"``, ``"override"``, ``"advance"`` ...).
        field: The offending argument.
        value: The value received, as given.
        expected: What it must be.
    """

    def __init__(self, action: str, field: str, value: object, expected: str) -> None:
        self.action = action
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(
            f"action {action!r}: {field!r} must be {expected} (got {value!r} that is a "
            f"{type(value).__name__})"
        )


class ListenerFailed(BuyerJourneyError, RuntimeError):
    """A listener raised while being told of a committed record.

    The operation was committed, and every other listener received every
    record; the first failure is chained as ``__cause__``.

    Attributes:
        listener: The name of the first listener that failed.
        record: The record it failed on.
        failures: How many listener calls failed in the operation.
    """

    def __init__(self, listener: str, record: Any, failures: int) -> None:
        self.listener = listener
        self.record = record
        self.failures = failures
        more = f" ({failures} listener calls failed in all)" if failures > 1 else ""
        super().__init__(
            f"listener {listener!r} raised on record {getattr(record, 'seq', '?')} "
            f"({getattr(getattr(record, 'kind', None), 'value', record)!r}){more}; the "
            "operation was committed and the other listeners were told: fix the listener, "
            "then replay what it missed from the engine's records"
        )


class StoreError(BuyerJourneyError, OSError):
    """A store cannot be opened, read or written; nothing was half-written.

    The message names the store, what failed and what to do; the database
    driver's own error is never shown as a traceback.
    """


class StoreConflict(StoreError):
    """Another writer appended to the store since this engine last read it; nothing was stored.

    Optimistic concurrency: an engine commits an operation saying how long it
    knows the log to be; when the store's log is longer (another process went
    first) or already holds a touch or action id, the commit is refused with
    this error. The engine catches it itself: it reads what the others wrote,
    folds it in and applies the operation again, so callers see it only from
    :meth:`~buyerjourney.Store.commit` directly.

    Attributes:
        expected: The log length the writer assumed.
        stored: The store's log length (``None`` if the conflict was on an id).
    """

    def __init__(self, message: str, *, expected: int, stored: int | None) -> None:
        super().__init__(message)
        self.expected = expected
        self.stored = stored


class StoreInUse(StoreError):
    """A destructive operation (rebuild, replace) met a store other processes have open.

    Close the other engines and commands using the store, then try again.
    """
