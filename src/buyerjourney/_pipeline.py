"""A pipeline bundles a funnel with its owners, hooks, scorer and policy, and replays streams.

:func:`default_pipeline` gives each preset a sensible scorer and policy, so
a stream can be replayed with no configuration; :func:`read_stream` reads a
JSON Lines stream of touches and actions, and :func:`run` drives an engine
through it, quarantining bad lines with their position and reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import attrs

from buyerjourney import presets
from buyerjourney._core.funnel import Funnel
from buyerjourney._core.owners import OwnerRules
from buyerjourney._core.policies import AnyOf, Policy, ThresholdPolicy, TouchKindPolicy
from buyerjourney._core.protocols import Hooks
from buyerjourney._core.records import Action, Touch
from buyerjourney._core.scoring import LinearDecay, PointsRule, PointsScorer, ScoreGroup, Scorer
from buyerjourney._engine import Backend, Engine, Quarantined
from buyerjourney.errors import (
    ActionRefused,
    HookError,
    InvalidTouch,
    TransitionNotAllowed,
    UnknownStage,
)

__all__ = [
    "DEFAULT_POINTS",
    "Pipeline",
    "RunResult",
    "default_pipeline",
    "default_policy",
    "default_scorer",
    "read_stream",
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

    def engine(self, *, listeners: Iterable[object] = (), backend: Backend = "table") -> Engine:
        """A new, empty engine for this pipeline."""
        return Engine(
            self.funnel,
            hooks=self.hooks,
            owners=self.owners,
            scorer=self.scorer,
            policy=self.policy,
            thresholds=self.thresholds,
            listeners=listeners,
            backend=backend,
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


def read_stream(
    source: str | os.PathLike[str] | Iterable[str],
) -> Iterator[tuple[int, Item | InvalidTouch]]:
    """Read a JSON Lines stream of touches and actions, from a path or an iterable of lines.

    Yields ``(line number, item)``; a line that is not valid JSON or not a
    valid touch or action yields an :class:`~buyerjourney.errors.InvalidTouch`
    in place of the item, so the caller can quarantine it and go on. Blank
    lines are skipped. Lines with ``"type": "action"`` are actions; all
    others are touches. A file is read as UTF-8; a byte order mark at its
    start is dropped.
    """
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open(encoding="utf-8-sig") as handle:
            yield from read_stream(handle)
        return
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield (
                number,
                InvalidTouch("<line>", line.strip()[:80], f"JSON ({exc.msg})", position=number),
            )
            continue
        try:
            if isinstance(data, dict) and data.get("type") == "action":
                yield number, Action.from_dict(data, position=number)
            elif isinstance(data, dict) and data.get("type", "touch") != "touch":
                yield (
                    number,
                    InvalidTouch("type", data["type"], "'touch' or 'action'", position=number),
                )
            else:
                yield number, Touch.from_dict(data, position=number)
        except InvalidTouch as exc:
            yield number, exc


@attrs.frozen
class RunResult:
    """What :func:`run` did.

    Attributes:
        touches: Touches ingested.
        actions: Actions performed.
        refused: Actions refused (each also recorded in the log).
        quarantined: Lines set aside, with position (line number) and reason.
    """

    touches: int
    actions: int
    refused: int
    quarantined: tuple[Quarantined | tuple[int, str], ...]


def run(engine: Engine, items: Iterable[tuple[int, Item | InvalidTouch]]) -> RunResult:
    """Drive *engine* through a stream from :func:`read_stream`.

    Bad lines and touches whose hooks fail are quarantined with their
    position and reason; refused actions are counted (the log records them);
    everything else lands.
    """
    touches = actions = refused = 0
    quarantined: list[Quarantined | tuple[int, str]] = []
    for position, item in items:
        if isinstance(item, InvalidTouch):
            quarantined.append((position, str(item)))
        elif isinstance(item, Touch):
            try:
                engine.ingest_one(item)
            except (InvalidTouch, HookError) as exc:
                quarantined.append(Quarantined(position, str(exc), item, exc))
            else:
                touches += 1
        else:
            try:
                engine.perform(item)
            except (ActionRefused, TransitionNotAllowed, HookError):
                refused += 1
            except (InvalidTouch, UnknownStage) as exc:
                quarantined.append((position, str(exc)))
            else:
                actions += 1
    return RunResult(touches, actions, refused, tuple(quarantined))
