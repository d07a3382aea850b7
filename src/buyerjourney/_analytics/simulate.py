"""Seeded synthetic streams of touches and actions, for any funnel and pipeline.

The model, lead by lead (every draw from one :class:`random.Random` seeded
with ``seed``, so the same arguments give the same stream):

- **Arrivals**: ``leads`` leads arrive uniformly between ``start`` and
  ``start + span``; each arrives with its first touch, which carries its
  attributes (drawn from ``attributes``).
- **Steps**: the lead walks the funnel's success path. From step *k* it moves
  to step *k+1* with probability ``rates[stage]`` after a time in stage
  drawn from an exponential distribution whose **median** is
  ``durations[stage]`` (its mean is ``durations[stage] / ln 2``, about 1.44
  times as long); otherwise it stops there, and leaves through the stage's
  exit (lost, disqualified) after such a time if the stage has one. The
  time in stage runs from the record that enters the stage to the one that
  leaves it, so it is what the funnel report's time to convert from the
  stage measures.
- **Gates**: a lead entering a gate stage (with the funnel's
  ``acceptance="handoff"``: entering any stage whose owning team differs
  from the previous one) is answered after an exponential delay of median
  ``accept_delay``. A lead that will move on is accepted; of the others,
  enough are rejected (recycled by the stage's backward transition, and
  stop there; a stage without one only accepts) that the share accepted is
  ``acceptance`` among the answers at stages that can reject (all of them
  when ``acceptance`` is below the gate's rate), so the step rate from a
  gate stays ``rates[stage]``. A lead whose last move was a handoff is
  accepted there too, so no journey is left waiting. Handoffs into stages
  without a backward transition are always accepted, so with
  ``acceptance="handoff"`` (an answer after every handoff) the overall
  share accepted is ``acceptance`` or more.
  The answer comes *inside* the gate's time in stage, which is still
  exponential of median ``durations[stage]`` from the entry: an accepted
  lead moves (on, or out by the stage's exit) when it is accepted with probability
  ``accept_delay / durations[stage]``, and otherwise after a further
  exponential time of that median (when ``accept_delay`` is the longer, it
  always moves when accepted, and its time in stage is the answer's).
- **Engagement**: touches of the kinds of ``touch_mix`` (weighted) come at
  ``touches_per_week`` per lead, times one more for every step the lead will
  make, from its arrival to two weeks after its last move: leads that go far
  engage more, so scores say something about outcomes.
- **How each move happens**: a step whose event a score rule of the
  pipeline's policy sends (a :class:`~buyerjourney.ThresholdPolicy`,
  :class:`~buyerjourney.MatrixPolicy` or
  :class:`~buyerjourney.analytics.ScoreThresholdPolicy`, looked for inside
  :class:`~buyerjourney.AnyOf` / :class:`~buyerjourney.AllOf`) happens by
  engagement: touches are added at the planned time until the pipeline's
  policy, asked with the pipeline's scorer, sends it (a person of the owning
  team sends it by hand if twenty touches do not). Every other move, exit,
  acceptance and rejection is a manual :class:`~buyerjourney.Action` by a
  person of the owning team (as the owner rules decide it). An engagement
  touch on which the policy would act unplanned is left out, so the rates
  given are the rates the engine will show.

Defaults follow the figures the domain reference quotes (DOMAIN §3), by
position along the success path: 20 % of inquiries become MQLs (10-25 %),
50 % of MQLs are handed off (40-60 %), 60 % of accepted leads become SQLs
(50-70 %), and 50 % per later step (SQL → opportunity → won: 25 %, in
20-30 %). Acceptance is 90 % (the target), answered within 8 hours at the
median (24 hours is best practice).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from buyerjourney._analytics.backtest import ScoreThresholdPolicy, WithoutEvent
from buyerjourney._core.funnel import Direction, Funnel, Transition
from buyerjourney._core.journey import Journey, StageTime
from buyerjourney._core.lifecycle import recycle_transitions
from buyerjourney._core.policies import (
    AllOf,
    AnyOf,
    MatrixPolicy,
    ThresholdPolicy,
    checked_decision,
)
from buyerjourney._core.protocols import Policy, hook_name
from buyerjourney._core.records import Action, Actor, Touch, parse_time
from buyerjourney._core.scoring import Lead, Score
from buyerjourney._pipeline import Pipeline, default_pipeline

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "DEFAULT_DURATIONS",
    "DEFAULT_RATES",
    "DEFAULT_TOUCH_MIX",
    "Simulation",
    "simulate",
]

DEFAULT_TOUCH_MIX: Mapping[str, float] = {
    "page_view": 40,
    "email_open": 25,
    "email_click": 10,
    "pricing_view": 8,
    "content_download": 8,
    "form_submit": 4,
    "webinar_attended": 3,
    "demo_request": 2,
}
"""Touch kinds and their weights (the kinds the default scorer gives points for)."""

DEFAULT_RATES: tuple[float, ...] = (0.2, 0.5, 0.6, 0.5)
"""Step conversion rates by position on the success path; later steps take the last one."""

DEFAULT_DURATIONS: tuple[timedelta, ...] = (
    timedelta(days=7),
    timedelta(days=3),
    timedelta(days=2),
    timedelta(days=7),
    timedelta(days=14),
)
"""Median time in stage before a move, by position on the success path; later steps take
the last one."""

DEFAULT_ATTRIBUTES: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "source": {
        "web": (0.45, 1.0),
        "paid": (0.25, 0.8),
        "event": (0.15, 1.2),
        "referral": (0.15, 1.5),
    },
    "employees": {
        "1-10": (0.4, 0.9),
        "11-50": (0.35, 1.0),
        "51-500": (0.2, 1.2),
        "500+": (0.05, 1.3),
    },
}
"""Lead attributes: value → ``(weight, lift)``; a lead that will make *n* steps draws a value
with probability ∝ weight * lift**n, so attributes carry a signal a predictive model can learn."""

_BOOST_LIMIT = 20
_TAIL = timedelta(days=14)
_REPS = 3
_SECOND = timedelta(seconds=1)


@attrs.frozen
class Simulation:
    """A simulated stream and what produced it.

    Attributes:
        funnel: The funnel's name.
        seed: The seed.
        items: Touches and actions, in time order (ties keep generation order).
        rates: Step conversion rate used per success-path stage (the step leaving it).
        durations: Median time in stage used per success-path stage.
    """

    funnel: str
    seed: int
    items: tuple[Touch | Action, ...]
    rates: Mapping[str, float]
    durations: Mapping[str, timedelta]

    @property
    def touches(self) -> tuple[Touch, ...]:
        """The touches only, in time order."""
        return tuple(i for i in self.items if isinstance(i, Touch))

    @property
    def actions(self) -> tuple[Action, ...]:
        """The actions only, in time order."""
        return tuple(i for i in self.items if isinstance(i, Action))

    @property
    def leads(self) -> int:
        """How many leads the stream has."""
        return len({i.lead_id for i in self.items})

    def lines(self) -> Iterable[str]:
        """The stream as JSON Lines (what :func:`~buyerjourney.read_stream` reads), one per item."""
        for item in self.items:
            yield json.dumps(_item_dict(item), ensure_ascii=False) + "\n"

    def to_jsonl(self) -> str:
        """The whole stream as one JSON Lines text."""
        return "".join(self.lines())


def _item_dict(item: Touch | Action) -> dict[str, Any]:
    if isinstance(item, Touch):
        return item.to_dict()
    out: dict[str, Any] = {
        "type": "action",
        "action": item.action,
        "lead_id": item.lead_id,
        "at": item.at.isoformat(),
        "actor": item.actor.name,
    }
    if item.actor.team is not None:
        out["team"] = item.actor.team
    for key in ("event", "stage", "action_id"):
        value = getattr(item, key)
        if value is not None:
            out[key] = value
    if item.reason:
        out["reason"] = item.reason
    return out


# ---------------------------------------------------------------- options


def _by_stage(
    path: Sequence[str], given: Mapping[str, Any] | None, defaults: Sequence[Any], what: str
) -> dict[str, Any]:
    out = {stage: defaults[min(i, len(defaults) - 1)] for i, stage in enumerate(path[:-1])}
    if given is not None:
        if not isinstance(given, Mapping):
            msg = f"'{what}' must map success-path stages to values (got {given!r})"
            raise TypeError(msg)
        unknown = sorted(set(given) - set(out))
        if unknown:
            msg = (
                f"'{what}' names {', '.join(map(repr, unknown))}, which are not success-path "
                f"stages with a next step; they are: {', '.join(out)}"
            )
            raise ValueError(msg)
        out.update(given)
    return out


def _check_rate(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        msg = f"{name} must be a number between 0 and 1 (got {value!r})"
        raise ValueError(msg)
    return float(value)


def _check_duration(name: str, value: object) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        msg = f"{name} must be a datetime.timedelta above zero (got {value!r})"
        raise ValueError(msg)
    return value


def _weights(name: str, mapping: Mapping[Any, Any]) -> tuple[list[Any], list[float], list[float]]:
    if not isinstance(mapping, Mapping) or not mapping:
        msg = f"{name} must be a non-empty mapping of values to weights (got {mapping!r})"
        raise ValueError(msg)
    values, weights, lifts = [], [], []
    for value, spec in mapping.items():
        weight, lift = spec if isinstance(spec, tuple) else (spec, 1.0)
        for number in (weight, lift):
            if (
                isinstance(number, bool)
                or not isinstance(number, (int, float))
                or not math.isfinite(number)
                or number < 0
            ):
                msg = f"{name}[{value!r}] must be a weight of zero or more, or (weight, lift)"
                raise ValueError(msg)
        values.append(value)
        weights.append(float(weight))
        lifts.append(float(lift))
    if not sum(weights) > 0:
        msg = f"{name} must have a weight above zero"
        raise ValueError(msg)
    return values, weights, lifts


def _score_events(policy: Policy | None) -> set[str]:
    """The events a score rule of *policy* sends (the moves engagement can cause)."""
    if policy is None:
        return set()
    if isinstance(policy, (AnyOf, AllOf)):
        return set().union(*(_score_events(p) for p in policy.policies))
    if isinstance(policy, WithoutEvent):
        return _score_events(policy.base) - {policy.event}
    if isinstance(policy, (ThresholdPolicy, MatrixPolicy, ScoreThresholdPolicy)):
        return {policy.event}
    return set()


def _exponential(rng: random.Random, median: timedelta) -> timedelta:
    """An exponential time of median *median* (its mean is ``median / ln 2``)."""
    return median * (rng.expovariate(1.0) / math.log(2))


def _after_answer(rng: random.Random, answer: timedelta, median: timedelta) -> timedelta:
    """The rest of a gate's time in stage after an answer that took an exponential *answer*.

    With probability ``p = answer / median`` nothing (the lead moves on when it
    is accepted), otherwise an exponential time of median *median*: the sum of
    the answer delay and this rest is then exactly exponential of median
    *median*, because the Laplace transform of ``Exp(λ)`` divided by that of
    ``Exp(λ / p)`` (the answer delay's) is ``p + (1 - p)·λ / (λ + s)``. When the answer
    is slower than the stage (``p >= 1``), the lead moves on when accepted.
    """
    p = answer / median
    if p >= 1 or rng.random() < p:
        return timedelta(0)
    return _exponential(rng, median)


# ---------------------------------------------------------------- one lead


class _Lead:
    """One lead's stream, built in time order while asking the pipeline's scorer and policy."""

    def __init__(self, sim: _Simulator, lead_id: str, attributes: Mapping[str, Any]) -> None:
        self.sim = sim
        self.lead_id = lead_id
        self.attributes = dict(attributes)
        self.items: list[Touch | Action] = []
        self.touches: list[Touch] = []
        scorer = sim.pipeline.scorer
        self.incremental = scorer is not None and all(
            hasattr(scorer, name) for name in ("start", "score_next", "add")
        )
        self.state: Any = scorer.start() if self.incremental else None  # type: ignore[union-attr]
        self.stage = sim.funnel.initial.name
        self.owner = sim.pipeline.owners.owner(self.stage, self.attributes)
        self.waiting = False
        """Whether the lead waits for the owning team to accept it (a gate, or a handoff)."""
        self.created: datetime | None = None
        self.entered: datetime | None = None
        self.score = Score(0.0)
        self.clock: datetime | None = None

    def _score(self, touch: Touch) -> Score:
        scorer = self.sim.pipeline.scorer
        if scorer is None:
            return Score(0.0)
        if self.incremental:
            return scorer.score_next(self.state, touch, self.attributes)  # type: ignore[attr-defined,no-any-return]
        return scorer(Lead(self.lead_id, self.attributes, (*self.touches, touch)), touch.at)

    def _journey(self, at: datetime) -> Journey:
        created = self.created or at
        entered = self.entered or at
        return Journey(
            lead_id=self.lead_id,
            stage=self.stage,
            highest=self.stage,
            owner=self.owner,
            created=created,
            updated=at,
            score=self.score.value,
            grade=self.score.grade,
            attributes=self.attributes,
            stages={self.stage: StageTime(entered=entered, first_entered=entered)},
        )

    def _time(self, at: datetime) -> datetime:
        if self.clock is not None and at <= self.clock:
            at = self.clock + _SECOND
        self.clock = at
        return at

    def _acts(self, touch: Touch, score: Score) -> str | None:
        """The event the pipeline's policy would send after *touch* (``None``: none)."""
        policy = self.sim.pipeline.policy
        if policy is None:
            return None
        name = hook_name(policy, "policy")
        return checked_decision(name, policy, self._journey(touch.at), score, touch).event

    def _new(self, at: datetime, kind: str, *, first: bool = False) -> Touch:
        return Touch(
            f"{self.lead_id}-t{len(self.touches) + 1}",
            self.lead_id,
            at,
            kind,
            attributes=self.attributes if first else {},
        )

    def first_touch(self, at: datetime, kinds: Sequence[str]) -> None:
        """The touch that creates the lead: the first of *kinds* the policy does not act on."""
        at = self._time(at)
        chosen: tuple[Touch, Score] | None = None
        for kind in kinds:
            touch = self._new(at, kind, first=True)
            score = self._score(touch)
            if chosen is None:
                chosen = (touch, score)
            if self._acts(touch, score) is None:
                chosen = (touch, score)
                break
        assert chosen is not None
        self._keep(*chosen)

    def _keep(self, touch: Touch, score: Score) -> None:
        if self.created is None:
            self.created = self.entered = touch.at
        self.items.append(touch)
        self.touches.append(touch)
        if self.incremental:
            self.sim.pipeline.scorer.add(self.state, touch)  # type: ignore[union-attr]
        self.score = score

    def engage(self, at: datetime) -> None:
        """An engagement touch at *at*, left out if the policy would act on it."""
        kind = self.sim.rng.choices(self.sim.kinds, self.sim.kind_weights)[0]
        touch = self._new(self._time(at), kind)
        score = self._score(touch)
        if self._acts(touch, score) is None:
            self._keep(touch, score)

    def boost(self, at: datetime, event: str) -> bool:
        """Touches at *at*, the highest-scoring kind each, until the policy sends *event*."""
        for _ in range(_BOOST_LIMIT):
            when = self._time(at)
            best: tuple[Touch, Score] | None = None
            for kind in self.sim.kinds:
                touch = self._new(when, kind)
                score = self._score(touch)
                sends = self._acts(touch, score)
                if sends == event:
                    self._keep(touch, score)
                    return True
                if sends is None and (best is None or score.value > best[1].value):
                    best = (touch, score)
            if best is None or best[1].value <= self.score.value:
                return False
            self._keep(*best)
        return False

    def act(self, at: datetime, action: str, *, event: str | None = None, reason: str = "") -> None:
        at = self._time(at)
        rep = self.sim.rng.randrange(_REPS) + 1
        actor = Actor(f"{self.owner}-{rep}", self.owner)
        self.items.append(Action(action, self.lead_id, at, actor, event=event, reason=reason))

    def enter(self, stage: str, at: datetime) -> None:
        """The lead is in *stage* from *at*, owned as the owner rules say; it may wait."""
        previous = self.owner
        self.stage = stage
        self.entered = self.clock or at
        self.owner = self.sim.pipeline.owners.owner(stage, self.attributes)
        funnel = self.sim.funnel
        if funnel.acceptance == "handoff":
            self.waiting = self.owner != previous
        else:
            self.waiting = funnel.stage(stage).gate


# ---------------------------------------------------------------- the run


@attrs.define
class _Simulator:
    pipeline: Pipeline
    rng: random.Random
    kinds: list[str]
    kind_weights: list[float]
    rates: dict[str, float]
    durations: dict[str, timedelta]
    accept_delay: timedelta
    acceptance: float
    touches_per_week: float
    score_events: set[str]
    recycles: Mapping[str, Transition]
    """The backward transition a rejection takes, per stage a lead may wait in."""

    @property
    def funnel(self) -> Funnel:
        return self.pipeline.funnel

    def step(self, stage: str, target: str) -> Transition | None:
        for t in self.funnel.transitions_from(stage):
            if t.target == target:
                return t
        return None

    def exit(self, stage: str) -> Transition | None:
        for t in self.funnel.transitions_from(stage):
            if t.direction is Direction.EXIT:
                return t
        return None

    def plan(self, path: Sequence[str]) -> int:
        """How many steps the lead will make (acceptance aside)."""
        steps = 0
        for stage in path[:-1]:
            if self.step(stage, path[path.index(stage) + 1]) is None:
                break
            if self.rng.random() >= self.rates[stage]:
                break
            steps += 1
        return steps

    def answer(
        self,
        lead: _Lead,
        stage: str | None,
        moves_on: bool,
        now: datetime,
        engage_until: Callable[[datetime], None],
    ) -> tuple[datetime, bool]:
        """The owning team answers a waiting lead: the time after it, and whether it accepted.

        A lead that will move on is accepted. Of the others, enough are
        rejected (where the stage has a backward transition) that the share
        accepted is ``acceptance`` among the answers there (see the module
        documentation); a rejected lead is recycled, and
        the simulation follows it, so that engagement touches the policy would
        act on there are left out like everywhere else.
        """
        answer = now + _exponential(self.rng, self.accept_delay)
        engage_until(answer)
        lead.waiting = False
        back = None if stage is None else self.recycles.get(stage)
        if stage is not None and back is not None and not moves_on:
            rate = self.rates[stage]
            rejecting = 1.0 if rate >= 1 else min(1.0, (1 - self.acceptance) / (1 - rate))
            if self.rng.random() < rejecting:
                lead.act(answer, "reject", reason="not a fit yet")
                now = lead.clock or answer
                lead.enter(back.target, now)
                return now, False
        lead.act(answer, "accept")
        return lead.clock or answer, True

    def run_lead(
        self,
        lead_id: str,
        arrival: datetime,
        attributes: Mapping[str, Any],
        steps: int,
        path: Sequence[str],
    ) -> list[Touch | Action]:
        lead = _Lead(self, lead_id, attributes)
        lead.first_touch(arrival, [self.rng.choices(self.kinds, self.kind_weights)[0], *self.kinds])
        intensity = self.touches_per_week * (1 + steps)
        now = lead.clock or arrival

        def engage_until(end: datetime) -> None:
            nonlocal now
            while True:
                if intensity <= 0:
                    return
                gap = timedelta(weeks=self.rng.expovariate(intensity))
                if now + gap >= end:
                    return
                now += gap
                lead.engage(now)
                now = max(now, lead.clock or now)

        for k in range(len(path) - 1):
            stage, target = path[k], path[k + 1]
            if lead.waiting:
                now, accepted = self.answer(lead, stage, k < steps, now, engage_until)
                if not accepted:
                    break
                # The time in the stage runs from the entry: the answer comes inside it.
                at = now + _after_answer(self.rng, self.accept_delay, self.durations[stage])
            else:
                at = now + _exponential(self.rng, self.durations[stage])
            engage_until(at)
            if k >= steps:
                leave = self.exit(stage)
                if leave is not None:
                    lead.act(at, "send", event=leave.event)
                    now = lead.clock or at
                    lead.enter(leave.target, now)
                break
            move = self.step(stage, target)
            assert move is not None
            moved = move.event in self.score_events and lead.boost(at, move.event)
            if not moved:
                reason = "" if move.direction is not Direction.BACKWARD else "simulated"
                lead.act(at, "send", event=move.event, reason=reason)
            now = lead.clock or at
            lead.enter(target, now)
        if lead.waiting:  # the last stage came by a handoff: the new team accepts it
            now, _ = self.answer(lead, None, True, now, engage_until)
        engage_until(now + _TAIL)
        return lead.items


def simulate(
    target: Funnel | Pipeline,
    *,
    leads: int = 500,
    seed: int = 0,
    start: datetime | str = "2024-01-01T00:00:00+00:00",
    span: timedelta = timedelta(weeks=8),
    touch_mix: Mapping[str, float] | None = None,
    rates: Mapping[str, float] | None = None,
    durations: Mapping[str, timedelta] | None = None,
    touches_per_week: float = 1.0,
    acceptance: float = 0.9,
    accept_delay: timedelta = timedelta(hours=8),
    attributes: Mapping[str, Mapping[Any, float | tuple[float, float]]] | None = None,
) -> Simulation:
    """A seeded synthetic stream of touches and actions (see the module documentation).

    Args:
        target: The pipeline the stream is for, or a funnel (its
            :func:`~buyerjourney.default_pipeline`).
        leads: How many leads arrive.
        seed: The seed; the same arguments and seed give the same stream.
        start: When the first lead may arrive (aware datetime or ISO-8601).
        span: Leads arrive uniformly over this time from *start*.
        touch_mix: Engagement touch kinds and their weights (default:
            :data:`DEFAULT_TOUCH_MIX`).
        rates: Step conversion rate per success-path stage (the step that
            leaves it); stages not given take :data:`DEFAULT_RATES`.
        durations: Median time in stage per success-path stage, from the
            entry into the stage to the move out of it (a gate's answer
            included); times are exponential, so the mean is this divided
            by ln 2. Stages not given take :data:`DEFAULT_DURATIONS`.
        touches_per_week: Engagement touches per lead and week, times one
            more per step the lead makes.
        acceptance: Probability that a gate's team accepts a handoff.
        accept_delay: Median time to answer a handoff (exponential), from
            the entry into the gate stage.
        attributes: Lead attributes, field → value → weight or
            ``(weight, lift)`` (default: :data:`DEFAULT_ATTRIBUTES`).

    Returns:
        The simulation; its :attr:`~Simulation.items` are in time order.

    Raises:
        ValueError: A count, rate, duration, weight or stage name is invalid.
        TypeError: *target* is neither a funnel nor a pipeline.
        HookError: The pipeline's scorer or policy failed.
    """
    if isinstance(target, Funnel):
        pipeline = default_pipeline(target)
    elif isinstance(target, Pipeline):
        pipeline = target
    else:
        msg = f"simulate() needs a Funnel or a Pipeline (got {target!r})"
        raise TypeError(msg)
    if isinstance(leads, bool) or not isinstance(leads, int) or leads < 0:
        msg = f"'leads' must be an int of zero or more (got {leads!r})"
        raise ValueError(msg)
    if isinstance(seed, bool) or not isinstance(seed, int):
        msg = f"'seed' must be an int (got {seed!r})"
        raise TypeError(msg)
    begin = parse_time(start, field="start")
    _check_duration("'span'", span)
    _check_duration("'accept_delay'", accept_delay)
    acceptance = _check_rate("'acceptance'", acceptance)
    if (
        isinstance(touches_per_week, bool)
        or not isinstance(touches_per_week, (int, float))
        or not math.isfinite(touches_per_week)
        or touches_per_week < 0
    ):
        msg = (
            f"'touches_per_week' must be a finite number of zero or more (got {touches_per_week!r})"
        )
        raise ValueError(msg)
    funnel = pipeline.funnel
    path = [s.name for s in funnel.success_path]
    step_rates = {
        k: _check_rate(f"rates[{k!r}]", v)
        for k, v in _by_stage(path, rates, DEFAULT_RATES, "rates").items()
    }
    step_durations = {
        k: _check_duration(f"durations[{k!r}]", v)
        for k, v in _by_stage(path, durations, DEFAULT_DURATIONS, "durations").items()
    }
    kinds, kind_weights, _ = _weights(
        "'touch_mix'", DEFAULT_TOUCH_MIX if touch_mix is None else touch_mix
    )
    attribute_specs = {
        name: _weights(f"attributes[{name!r}]", spec)
        for name, spec in (attributes if attributes is not None else DEFAULT_ATTRIBUTES).items()
    }
    rng = random.Random(seed)
    sim = _Simulator(
        pipeline=pipeline,
        rng=rng,
        kinds=[str(k) for k in kinds],
        kind_weights=kind_weights,
        rates=step_rates,
        durations=step_durations,
        accept_delay=accept_delay,
        acceptance=acceptance,
        touches_per_week=float(touches_per_week),
        score_events=_score_events(pipeline.policy),
        recycles=recycle_transitions(funnel),
    )
    width = max(5, len(str(leads)))
    arrivals = sorted(begin + span * rng.random() for _ in range(leads))
    tagged: list[tuple[datetime, int, int, Touch | Action]] = []
    for number, arrival in enumerate(arrivals, start=1):
        steps = sim.plan(path)
        values = {}
        for name, (options, weights, lifts) in attribute_specs.items():
            tilted = [w * lift**steps for w, lift in zip(weights, lifts, strict=True)]
            values[name] = rng.choices(options, tilted)[0]
        lead_id = f"lead-{number:0{width}d}"
        for order, item in enumerate(sim.run_lead(lead_id, arrival, values, steps, path)):
            tagged.append((item.at, number, order, item))
    tagged.sort(key=lambda entry: entry[:3])
    return Simulation(
        funnel=funnel.name,
        seed=seed,
        items=tuple(entry[3] for entry in tagged),
        rates=step_rates,
        durations=step_durations,
    )
