"""A pipeline bundles a funnel with its owners, hooks, scorer and policy, and replays streams.

:func:`default_pipeline` gives each preset a sensible scorer and policy, so
a stream can be replayed with no configuration; :func:`read_stream` reads a
JSON Lines stream of touches and actions, and :func:`run` drives an engine
through it, quarantining bad lines with their position and reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import timedelta

import attrs

from buyerjourney import presets
from buyerjourney._core.funnel import Funnel
from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.policies import AnyOf, Policy, ThresholdPolicy, TouchKindPolicy
from buyerjourney._core.protocols import Hooks, QuarantineEntry, Store
from buyerjourney._core.records import Action, Touch
from buyerjourney._core.scoring import LinearDecay, PointsRule, PointsScorer, ScoreGroup, Scorer
from buyerjourney._engine import Backend, Engine, Quarantined
from buyerjourney.errors import (
    ActionRefused,
    Duplicate,
    HookError,
    InvalidAction,
    InvalidTouch,
    TransitionNotAllowed,
    UnknownStage,
)

__all__ = [
    "DEFAULT_POINTS",
    "IngestCounts",
    "Located",
    "Pipeline",
    "RunResult",
    "action_key",
    "default_pipeline",
    "default_policy",
    "default_scorer",
    "ingest",
    "located",
    "run",
]

DEFAULT_POINTS: tuple[PointsRule, ...] = (
    PointsRule("page_view", 1, kind="page_view", group="web"),
    PointsRule("pricing_view", 8, kind="pricing_view", group="web"),
    PointsRule("email_open", 1, kind="email_open", group="email"),
    PointsRule("email_click", 4, kind="email_click", group="email"),
    PointsRule("content_download", 10, kind="content_download"),
    PointsRule("form_submit", 10, kind="form_submit", repeatable=False),
    PointsRule("webinar_attended", 15, kind="webinar_attended"),
    PointsRule("demo_request", 40, kind="demo_request", repeatable=False),
)
"""The default engagement points per touch kind (web and email capped)."""


def default_scorer() -> Scorer:
    """Points per touch kind: web capped at 20, email at 20, total at 100.

    Every touch's points decay linearly by 50 % a month (HubSpot's default
    style), evaluated at the time of the touch being scored.
    """
    decay = LinearDecay(0.5, timedelta(days=30))
    return PointsScorer(
        DEFAULT_POINTS,
        groups=(
            ScoreGroup("web", cap=20, decay=decay),
            ScoreGroup("email", cap=20, decay=decay),
            ScoreGroup("engagement", decay=decay),
        ),
        total_cap=100,
    )


@attrs.frozen
class Pipeline:
    """Everything an engine needs besides the data.

    Attributes:
        funnel: The funnel.
        owners: The owner rules.
        hooks: The guard hooks the funnel names.
        scorer: The scorer (``None``: scores stay 0).
        policy: The handoff policy (``None``: journeys move only by hand).
        thresholds: Scores whose crossing is recorded.
    """

    funnel: Funnel
    owners: OwnerRules
    hooks: Hooks = attrs.field(factory=Hooks)
    scorer: Scorer | None = None
    policy: Policy | None = None
    thresholds: tuple[float, ...] = ()

    def engine(
        self,
        *,
        listeners: Iterable[object] = (),
        backend: Backend = "table",
        store: Store | None = None,
        lateness: timedelta = timedelta(0),
    ) -> Engine:
        """A new engine for this pipeline: empty, or resumed from *store* (see :class:`Engine`)."""
        return Engine(
            self.funnel,
            hooks=self.hooks,
            owners=self.owners,
            scorer=self.scorer,
            policy=self.policy,
            thresholds=self.thresholds,
            listeners=listeners,
            backend=backend,
            store=store,
            lateness=lateness,
        )


def default_policy(funnel: Funnel) -> Policy:
    """The policy :func:`default_pipeline` gives *funnel*: preset thresholds, then event touches.

    For the presets and funnels extended from them (see
    :func:`buyerjourney.presets.default_thresholds`), score thresholds move
    leads through the marketing stages (e.g. waterfall: inquiry → MQL at 25,
    MQL → SAL at 60); for every funnel, a touch whose kind is the name of an
    event sends that event (so ``{"kind": "unsubscribe"}`` … or
    ``{"kind": "lose"}`` works). The policies are tried in that order and
    the first that fires wins.

    Args:
        funnel: The funnel the policy is for.
    """
    policies: list[Policy] = [
        ThresholdPolicy(step.score, step.event, stages=(step.stage,))
        for step in presets.default_thresholds(funnel)
    ]
    policies.append(TouchKindPolicy({event: event for event in funnel.events}))
    return AnyOf(*policies)


def default_pipeline(
    funnel: Funnel, *, owners: OwnerRules | None = None, hooks: Hooks | None = None
) -> Pipeline:
    """A ready pipeline for *funnel*: default points, thresholds and event touches.

    - Scorer: :func:`default_scorer`.
    - Policy: :func:`default_policy` (for the presets and funnels extended
      from them, score thresholds move leads through the marketing stages;
      for every funnel, a touch whose kind is the name of an event sends
      that event).
    - Thresholds: the scores of those threshold policies.
    - Owners: the funnel's stage owners unless *owners* is given.

    A pipeline file (:func:`buyerjourney.load_pipeline`) that names only a
    funnel gives the same pipeline.

    Args:
        funnel: The funnel.
        owners: The owner rules (default: the funnel's stage owners, validated).
        hooks: The guard hooks the funnel names (default: none).

    Raises:
        InvalidOwnerRules: *owners* is not given and the funnel's stage
            owners leave a stage without an owner.
    """
    steps = presets.default_thresholds(funnel)
    return Pipeline(
        funnel=funnel,
        owners=owners if owners is not None else OwnerRules.for_funnel(funnel),
        hooks=hooks if hooks is not None else Hooks(),
        scorer=default_scorer(),
        policy=default_policy(funnel),
        thresholds=tuple(sorted({step.score for step in steps})),
    )


Item = Touch | Action


@attrs.frozen
class RunResult:
    """What :func:`run` did.

    Attributes:
        touches: Touches ingested.
        actions: Actions performed.
        refused: Actions refused (each also recorded in the log).
        quarantined: Lines set aside, with position (line number) and reason.
        duplicates: Touches and actions skipped because their id came before.
    """

    touches: int
    actions: int
    refused: int
    quarantined: tuple[Quarantined | tuple[int, str], ...]
    duplicates: int = 0


def run(engine: Engine, items: Iterable[tuple[int, Item | InvalidTouch]]) -> RunResult:
    """Drive *engine* through a stream from :func:`read_stream`.

    Bad lines, touches whose hooks fail and actions out of time order are
    quarantined with their position and reason; refused actions are counted
    (the log records them); repeated ids are skipped and counted as
    duplicates; everything else lands. :func:`ingest` is the same for a
    store, with counts and a kept quarantine.
    """
    touches = actions = refused = duplicates = 0
    quarantined: list[Quarantined | tuple[int, str]] = []
    for position, item in items:
        if isinstance(item, InvalidTouch):
            quarantined.append((position, str(item)))
        elif isinstance(item, Touch):
            try:
                engine.ingest_one(item)
            except Duplicate:
                duplicates += 1
            except (InvalidTouch, HookError) as exc:
                quarantined.append(Quarantined(position, str(exc), item, exc))
            else:
                touches += 1
        else:
            try:
                engine.perform(item)
            except Duplicate:
                duplicates += 1
            except (ActionRefused, TransitionNotAllowed, HookError):
                refused += 1
            except (InvalidTouch, InvalidAction, UnknownStage) as exc:
                quarantined.append((position, str(exc)))
            else:
                actions += 1
    return RunResult(touches, actions, refused, tuple(quarantined), duplicates)


Located = tuple[str, int, "Item | QuarantineEntry"]
"""An input with where it came from: (source, line, the touch, action, or a rejected record)."""

_CHUNK = 2_000
"""How many consecutive touches :func:`ingest` hands to :meth:`Engine.ingest` at once."""


@attrs.frozen
class IngestCounts:
    """What :func:`ingest` did, every input counted once.

    ``read == applied + duplicates + refused + len(quarantined)``.

    Attributes:
        read: Inputs read (touches, actions and records that could not be read).
        applied: Touches ingested and actions performed.
        duplicates: Touches and actions skipped because their id was applied
            before (by this or another process on the same store).
        refused: Actions refused by the owner rules or the funnel (each is
            recorded in the log as refused).
        quarantined: Inputs that did not land, with source, line and reason.
        records: Records appended to the log.
        late: Applied touches that came after a later touch of their lead
            (within the engine's lateness) and were put in time order.
    """

    read: int = 0
    applied: int = 0
    duplicates: int = 0
    refused: int = 0
    quarantined: tuple[QuarantineEntry, ...] = ()
    records: int = 0
    late: int = 0

    @property
    def nothing_new(self) -> bool:
        """Whether nothing was applied (every input was a duplicate, refused or quarantined)."""
        return self.applied == 0


def _code(exc: BaseException) -> str:
    """The quarantine code of an error an engine raised on an input."""
    if isinstance(exc, HookError):
        return "hook"
    if isinstance(exc, InvalidTouch) and exc.field == "at":
        return "late"
    if isinstance(exc, UnknownStage):
        return "unknown-stage"
    return "invalid"


def _text(item: Item) -> str:
    if isinstance(item, Touch):
        return json.dumps(item.to_dict(), sort_keys=True, default=str)
    return repr(item)


def ingest(engine: Engine, items: Iterable[Located]) -> IngestCounts:
    """Drive *engine* through located inputs, counting every one, and keep what did not land.

    Touches are handed to :meth:`Engine.ingest` a few thousand at a time (so
    a store commits them in few transactions), actions to
    :meth:`Engine.perform`. Inputs the reader rejected arrive as
    :class:`~buyerjourney.QuarantineEntry` values and are kept as they are;
    inputs the engine cannot apply (too late, a failing hook, an unknown
    stage) become entries too. When the engine has a store, the entries are
    stored in its quarantine.

    Args:
        engine: The engine (with its store, for durable ingestion).
        items: ``(source, line, input)`` triples in time order.

    Returns:
        The counts, with the quarantined entries.
    """
    read = applied = duplicates = refused = late = 0
    entries: list[QuarantineEntry] = []
    before = engine._written  # this engine's own records: not those other writers stored
    chunk: list[tuple[str, int, Touch]] = []

    def flush() -> None:
        nonlocal applied, duplicates, late
        if not chunk:
            return
        report = engine.ingest([touch for _, _, touch in chunk])
        applied += report.accepted
        duplicates += report.duplicates
        late += report.late
        for q in report.quarantined:
            source, line, touch = chunk[q.position]
            entries.append(QuarantineEntry(source, line, _code(q.error), q.reason, _text(touch)))
        chunk.clear()

    for source, line, item in items:
        read += 1
        if isinstance(item, QuarantineEntry):
            entries.append(item)
        elif isinstance(item, Touch):
            chunk.append((source, line, item))
            if len(chunk) >= _CHUNK:
                flush()
        else:
            flush()
            try:
                engine.perform(item)
            except Duplicate:
                duplicates += 1
            except (ActionRefused, TransitionNotAllowed, HookError):
                refused += 1
            except (InvalidTouch, InvalidAction, UnknownStage) as exc:
                entries.append(QuarantineEntry(source, line, _code(exc), str(exc), _text(item)))
            else:
                applied += 1
    flush()
    store = engine.store
    if store is not None and entries:
        store.quarantine(entries)
    return IngestCounts(
        read, applied, duplicates, refused, tuple(entries), engine._written - before, late
    )


def action_key(action: Action) -> str:
    """A deterministic id for an action that has none: a digest of everything it says.

    Ingesting the same stream twice then performs each action once; two
    identical actions (same person, lead, time and content) are one.
    """
    fields = [
        action.action,
        action.lead_id,
        action.at.isoformat(),
        action.actor.name,
        action.actor.team,
        action.event,
        action.stage,
        action.reason,
    ]
    digest = hashlib.sha256(json.dumps(fields).encode("utf-8")).hexdigest()
    return f"action:{digest[:24]}"


def located(source: str, items: Iterable[tuple[int, Item | InvalidTouch]]) -> Iterator[Located]:
    """Turn :func:`read_stream`'s ``(line, item or error)`` pairs into :func:`ingest`'s inputs.

    An action without an ``action_id`` gets :func:`action_key`, so that
    ingesting a stream again is idempotent for actions too.
    """
    for line, item in items:
        if isinstance(item, InvalidTouch):
            text = str(item.value)[:200] if item.field == "<line>" else ""
            code = str(getattr(item, "code", "invalid"))
            reason = getattr(getattr(item, "rejected", None), "reason", None) or str(item)
            yield source, line, QuarantineEntry(source, line, code, reason, text)
        elif isinstance(item, Action) and item.action_id is None:
            yield source, line, attrs.evolve(item, action_id=action_key(item))
        else:
            yield source, line, item
