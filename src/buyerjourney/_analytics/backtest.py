"""Backtest handoff policies: replay past touches under candidate policies, against known outcomes.

Which leads would sales have received, how many of them were won, how much
earlier or later than they really were, and how much work per week? Each
candidate is a policy (and optionally a scorer) that the **library's own
engine** replays the historical touches through: nothing here re-implements
a journey rule.

Definitions:

- The **handoff stage** is where sales receives a lead; by default the first
  stage of the success path owned by another team than the initial stage
  (waterfall: ``sal``; hubspot: ``sql``; seed: ``conversion``). A lead is
  **handed off** at its first entry into that stage or a success-path stage
  after it, whatever moved it there. The **handoff event** is the event of
  the transition into the handoff stage (waterfall: ``hand_off``).
- The **outcomes** are fixed, as history recorded them (:class:`Outcomes`):
  which leads were won (ever entered a won or after-purchase stage) and when
  each was actually handed off. Derive them from the log with
  :meth:`Outcomes.from_log`, or give them as a mapping.
- The **leads** of a backtest are the leads of the touches replayed; the won
  leads counted are the won leads among them.
- **precision** = handed off and won ÷ handed off (``None`` when the
  candidate hands off nobody); **recall** = won and handed off ÷ won
  (``None`` when no lead was won); **F1** = their harmonic mean (``None``
  when either is undefined, 0 when both are 0).
- **shift** = candidate's handoff time - actual handoff time, for the leads
  handed off in both; negative is earlier.
- **weekly workload** = handoffs per ISO week (Monday, UTC), over every week
  from the first touch to the last (weeks without handoffs count as 0).

Only touches are replayed: manual actions of the history (acceptances, a
person's moves) happened in answer to what really happened, and would not
fit a different history. A backtest of the policy and scorer that produced
a log therefore reproduces its handoffs exactly as long as no person moved a
lead before its handoff; a property test holds the library to that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from buyerjourney._analytics._stats import format_duration, format_rate, optional_time, seconds
from buyerjourney._analytics.frames import Table, Tabular, backtest_tables
from buyerjourney._analytics.predictive import PredictiveModel
from buyerjourney._core._values import frozen_mapping
from buyerjourney._core.funnel import Funnel, StageKind
from buyerjourney._core.lifecycle import effective
from buyerjourney._core.policies import (
    AnyOf,
    Decision,
    MatrixPolicy,
    ThresholdPolicy,
    checked_decision,
    stages_allowing,
)
from buyerjourney._core.protocols import Policy, hook_name
from buyerjourney._core.records import Action, Record, Touch
from buyerjourney._core.scoring import Lead, Score, Scorer
from buyerjourney._pipeline import Pipeline

if TYPE_CHECKING:
    from buyerjourney._core.journey import Journey

__all__ = [
    "CANDIDATE_KINDS",
    "OBJECTIVES",
    "Backtest",
    "CandidateResult",
    "CurvePoint",
    "Objective",
    "Outcomes",
    "PolicyCandidate",
    "ScoreThresholdPolicy",
    "WithoutEvent",
    "as_objective",
    "backtest",
    "handoff_event",
    "handoff_stage",
    "handoff_times",
    "matrix_candidate",
    "precision_at_recall",
    "predictive_candidates",
    "threshold_candidates",
]

CANDIDATE_KINDS: tuple[str, ...] = ("threshold", "matrix", "predictive", "custom")
"""The kinds of candidate: a score threshold, a fit-by-engagement matrix, a predictive score
threshold, or the user's own policy."""

OBJECTIVES: tuple[str, ...] = ("f1", "precision", "recall")
"""The objectives named by a string; ``"precision@recall>=X"`` is one too
(see :func:`precision_at_recall`)."""

_WON_KINDS = (StageKind.WON, StageKind.AFTER_PURCHASE)

Replayer = Callable[[Pipeline, Sequence[Touch]], Iterable[Record]]
"""Replays touches through a pipeline into a fresh log (the engine by default)."""


# ---------------------------------------------------------------- the handoff


def handoff_stage(funnel: Funnel) -> str:
    """The stage where sales receives a lead: the first success-path stage owned by another team.

    Args:
        funnel: The funnel.

    Returns:
        The first stage of the success path whose ``owner`` differs from the
        initial stage's owner (waterfall: ``sal``).

    Raises:
        ValueError: Every success-path stage has the initial stage's owner
            (or no owner): pass the handoff stage explicitly.
    """
    first = funnel.initial.owner
    for stage in funnel.success_path:
        if stage.owner is not None and first is not None and stage.owner != first:
            return stage.name
    msg = (
        f"funnel {funnel.name!r} has no success-path stage owned by another team than its "
        f"initial stage ({first!r}); pass the handoff stage, "
        f"e.g. stage={funnel.success_path[-1].name!r}"
    )
    raise ValueError(msg)


def handoff_event(funnel: Funnel, stage: str) -> str:
    """The event that moves a lead into the handoff *stage*.

    The transition from the success-path stage just before *stage* wins; any
    other transition into *stage* otherwise.

    Args:
        funnel: The funnel.
        stage: The handoff stage.

    Returns:
        The event name (waterfall, ``sal``: ``hand_off``).

    Raises:
        UnknownStage: The funnel has no such stage.
        ValueError: No transition enters *stage*.
    """
    funnel.stage(stage)
    path = [s.name for s in funnel.success_path]
    into = [t for t in funnel.transitions if t.target == stage]
    if stage in path and path.index(stage) > 0:
        before = path[path.index(stage) - 1]
        for t in into:
            if t.source == before:
                return t.event
    if into:
        return into[0].event
    msg = f"no transition of funnel {funnel.name!r} enters stage {stage!r}; pass the event"
    raise ValueError(msg)


def _reached(funnel: Funnel, stage: str) -> frozenset[str]:
    """The stages whose entry counts as a handoff: *stage* and the success path after it."""
    funnel.stage(stage)
    path = [s.name for s in funnel.success_path]
    after = path[path.index(stage) + 1 :] if stage in path else []
    return frozenset([stage, *after])


def handoff_times(
    funnel: Funnel,
    records: Iterable[Record],
    *,
    stage: str | None = None,
    as_of: datetime | str | None = None,
) -> dict[str, datetime]:
    """When each lead of a log was first handed off (see the module documentation).

    Args:
        funnel: The funnel the log follows.
        records: The log.
        stage: The handoff stage (default: :func:`handoff_stage`).
        as_of: Ignore records dated after it.

    Returns:
        Lead id → time of the first entry into the handoff stage or a
        success-path stage after it.
    """
    stages = _reached(funnel, stage if stage is not None else handoff_stage(funnel))
    end = optional_time(as_of, "as_of")
    out: dict[str, datetime] = {}
    for record in effective(records):  # revisions applied
        if end is not None and record.at > end:
            continue
        if record.kind.enters_stage and record.target in stages and record.lead_id not in out:
            out[record.lead_id] = record.at
    return out


def _as_leads(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        msg = f"'won' must be a collection of lead ids, not a str; did you mean {{{value!r}}}?"
        raise TypeError(msg)
    return frozenset(value)


def _as_times(value: Mapping[str, datetime | str]) -> Mapping[str, datetime]:
    if not isinstance(value, Mapping):
        msg = f"'handoffs' must map lead ids to times (got {value!r})"
        raise TypeError(msg)
    out: dict[str, datetime] = {}
    for lead, at in value.items():
        parsed = optional_time(at, f"handoffs[{lead!r}]")
        assert parsed is not None
        out[lead] = parsed
    return frozen_mapping(out)


@attrs.frozen
class Outcomes:
    """What really happened: which leads were won, and when each was handed off.

    Args:
        won: The ids of the leads that were won.
        handoffs: Lead id → when it was actually handed off (aware times or
            ISO-8601 strings with an offset); leads never handed off are absent.

    Raises:
        TypeError: *won* is a bare str, or *handoffs* is not a mapping.
        InvalidTouch: A handoff time is naive or malformed.
    """

    won: frozenset[str] = attrs.field(converter=_as_leads)
    handoffs: Mapping[str, datetime] = attrs.field(factory=dict, converter=_as_times)

    @classmethod
    def from_log(
        cls,
        funnel: Funnel,
        records: Iterable[Record],
        *,
        stage: str | None = None,
        as_of: datetime | str | None = None,
    ) -> Outcomes:
        """The outcomes a log records, as of a date.

        A lead is won when it ever entered a won or after-purchase stage
        (a churned customer was still won); its handoff is its first entry
        into the handoff stage or a success-path stage after it.

        Args:
            funnel: The funnel the log follows.
            records: The log.
            stage: The handoff stage (default: :func:`handoff_stage`).
            as_of: Ignore records dated after it.

        Returns:
            The outcomes.
        """
        records = tuple(records)
        end = optional_time(as_of, "as_of")
        won = {
            r.lead_id
            for r in records
            if (end is None or r.at <= end)
            and r.kind.enters_stage
            and r.target in funnel
            and funnel.stage(str(r.target)).kind in _WON_KINDS
        }
        return cls(won, handoff_times(funnel, records, stage=stage, as_of=end))


# ---------------------------------------------------------------- candidates


@attrs.frozen
class WithoutEvent:
    """A policy that asks *base* and ignores its decisions to send *event*.

    The candidates built by :func:`threshold_candidates` and the others put
    their own rule for the handoff event first and keep the rest of the
    pipeline's policy through this wrapper, so that only the handoff rule
    changes. An :class:`~buyerjourney.AnyOf` base is looked into: its next
    policy is asked when one asks for *event*.

    Args:
        base: The policy to filter.
        event: The event whose decisions are dropped.
    """

    base: Policy
    event: str

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Decide as *base* would, except that *event* is never sent.

        Args:
            journey: The journey.
            score: The lead's new score.
            touch: The touch just scored.

        Returns:
            The decision.

        Raises:
            HookError: A policy asked failed its contract.
        """
        return self._decide(self.base, journey, score, touch)

    def _decide(self, policy: Policy, journey: Journey, score: Score, touch: Touch) -> Decision:
        if isinstance(policy, AnyOf):
            for inner in policy.policies:
                decision = self._decide(inner, journey, score, touch)
                if decision.acts:
                    return decision
            return Decision()
        decision = checked_decision(hook_name(policy, "policy"), policy, journey, score, touch)
        return Decision() if decision.event == self.event else decision


def _as_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class ScoreThresholdPolicy:
    """Send *event* when another scorer (a :class:`PredictiveModel`) reaches *threshold*.

    The pipeline's own scorer keeps scoring (and driving the rest of its
    policy); this policy asks *scorer* about the lead's attributes and the
    touch just scored, ``scorer(Lead(lead_id, attributes, (touch,)), touch.at)``,
    which is all a predictive model looks at.

    Args:
        scorer: The scorer to ask.
        threshold: The score that triggers the event.
        event: The funnel event to send.
        stages: The stages it may fire from.
    """

    scorer: Scorer
    threshold: float
    event: str
    stages: tuple[str, ...] = attrs.field(converter=_as_tuple, kw_only=True)

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        """Decide for *journey* from the other scorer's score.

        Args:
            journey: The journey (its stage and attributes are used).
            score: The pipeline's score (not used).
            touch: The touch just scored.

        Returns:
            The event with a reason, or a decision that does nothing.
        """
        if self.stages and journey.stage not in self.stages:
            return Decision()
        value = self.scorer(Lead(journey.lead_id, journey.attributes, (touch,)), touch.at).value
        if value >= self.threshold:
            return Decision(
                self.event, f"{hook_name(self.scorer, 'scorer')} {value:.4g} ≥ {self.threshold:g}"
            )
        return Decision()


def _check_kind(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in CANDIDATE_KINDS:
        msg = f"'{attribute.name}' must be one of {', '.join(CANDIDATE_KINDS)} (got {value!r})"
        raise ValueError(msg)


def _check_name(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        msg = f"'{attribute.name}' must be a non-empty str (got {value!r})"
        raise TypeError(msg)


@attrs.frozen
class PolicyCandidate:
    """One handoff policy to backtest.

    Args:
        name: How the results name it (unique within a backtest).
        policy: The whole policy the pipeline runs with (it replaces the
            pipeline's policy); the factories build it from the pipeline's
            policy with only the handoff rule changed (:class:`WithoutEvent`).
        scorer: The scorer to run with (``None``: the pipeline's).
        kind: One of :data:`CANDIDATE_KINDS`.
        threshold: The threshold it applies, if any (the trade-off curve is
            drawn across the thresholds of one kind).

    Raises:
        TypeError: The name is empty or the policy is not callable.
        ValueError: The kind is unknown.
    """

    name: str = attrs.field(validator=_check_name)
    policy: Policy
    scorer: Scorer | None = None
    kind: str = attrs.field(default="custom", validator=_check_kind)
    threshold: float | None = None

    def __attrs_post_init__(self) -> None:
        if not callable(self.policy):
            msg = f"candidate {self.name!r}: 'policy' must be callable (got {self.policy!r})"
            raise TypeError(msg)


def _replacing(pipeline: Pipeline, event: str, rule: Policy) -> Policy:
    if pipeline.policy is None:
        return rule
    return AnyOf(rule, WithoutEvent(pipeline.policy, event))


def _event_and_stages(
    pipeline: Pipeline, stage: str | None, event: str | None, stages: Sequence[str] | None
) -> tuple[str, tuple[str, ...]]:
    funnel = pipeline.funnel
    name = event if event is not None else handoff_event(funnel, stage or handoff_stage(funnel))
    return name, tuple(stages) if stages is not None else stages_allowing(funnel, name)


def threshold_candidates(
    pipeline: Pipeline,
    thresholds: Iterable[float],
    *,
    stage: str | None = None,
    event: str | None = None,
    stages: Sequence[str] | None = None,
) -> tuple[PolicyCandidate, ...]:
    """One candidate per score threshold: send the handoff event when the score reaches it.

    Args:
        pipeline: The pipeline whose policy the candidates change.
        thresholds: The scores to try (``range(30, 100, 10)``).
        stage: The handoff stage (default: :func:`handoff_stage`).
        event: The event to send (default: :func:`handoff_event`).
        stages: The stages it fires from (default: every stage allowing it).

    Returns:
        Candidates named ``score>=T``, kind ``"threshold"``.
    """
    name, where = _event_and_stages(pipeline, stage, event, stages)
    return tuple(
        PolicyCandidate(
            f"score>={t:g}",
            _replacing(pipeline, name, ThresholdPolicy(t, name, stages=where)),
            kind="threshold",
            threshold=float(t),
        )
        for t in thresholds
    )


def matrix_candidate(
    pipeline: Pipeline,
    accept: Iterable[str],
    engagement_bands: Sequence[float],
    *,
    scorer: Scorer | None = None,
    stage: str | None = None,
    event: str | None = None,
    stages: Sequence[str] | None = None,
    name: str = "matrix",
) -> PolicyCandidate:
    """A candidate that hands off the accepted cells of the fit-by-engagement matrix.

    Args:
        pipeline: The pipeline whose policy the candidate changes.
        accept: The cells that hand off (``{"A1", "A2", "B1"}``).
        engagement_bands: The lowest score of bands 1, 2 and 3.
        scorer: A scorer that grades fit (a
            :class:`~buyerjourney.scoring.CombinedScorer`); ``None``: the
            pipeline's, which must grade.
        stage: As :func:`threshold_candidates`.
        event: As :func:`threshold_candidates`.
        stages: As :func:`threshold_candidates`.
        name: The candidate's name.

    Returns:
        The candidate, kind ``"matrix"``.
    """
    event_name, where = _event_and_stages(pipeline, stage, event, stages)
    rule = MatrixPolicy(
        event_name, accept=frozenset(accept), engagement_bands=tuple(engagement_bands), stages=where
    )
    return PolicyCandidate(name, _replacing(pipeline, event_name, rule), scorer, kind="matrix")


def predictive_candidates(
    pipeline: Pipeline,
    model: PredictiveModel | Scorer,
    thresholds: Iterable[float],
    *,
    stage: str | None = None,
    event: str | None = None,
    stages: Sequence[str] | None = None,
) -> tuple[PolicyCandidate, ...]:
    """One candidate per threshold of a predictive score (:class:`ScoreThresholdPolicy`).

    The pipeline's scorer still scores (and drives the other steps of its
    policy); the handoff is decided by the model's likelihood to win.

    Args:
        pipeline: The pipeline whose policy the candidates change.
        model: The model, or any scorer of lead attributes.
        thresholds: The scores to try (percent for a model of scale 100).
        stage: As :func:`threshold_candidates`.
        event: As :func:`threshold_candidates`.
        stages: As :func:`threshold_candidates`.

    Returns:
        Candidates named ``predictive>=T``, kind ``"predictive"``.
    """
    name, where = _event_and_stages(pipeline, stage, event, stages)
    return tuple(
        PolicyCandidate(
            f"predictive>={t:g}",
            _replacing(pipeline, name, ScoreThresholdPolicy(model, float(t), name, stages=where)),
            kind="predictive",
            threshold=float(t),
        )
        for t in thresholds
    )


# ---------------------------------------------------------------- objective


@attrs.frozen
class Objective:
    """What "best" means: a name and a function of a candidate's result (higher is better).

    Args:
        name: How reports name it (``"f1"``).
        function: Returns the value of a result, or ``None`` when it does
            not qualify (undefined, or a constraint is not met).
    """

    name: str
    function: Callable[[CandidateResult], float | None]

    def __call__(self, result: CandidateResult) -> float | None:
        """The value of *result* (``None``: it cannot be best)."""
        return self.function(result)


def precision_at_recall(minimum: float) -> Objective:
    """The objective "highest precision among candidates with recall ≥ *minimum*".

    Args:
        minimum: The recall a candidate must reach, between 0 and 1.

    Returns:
        The objective, named ``precision@recall>=<minimum>``.

    Raises:
        ValueError: *minimum* is not between 0 and 1.
    """
    if isinstance(minimum, bool) or not isinstance(minimum, (int, float)) or not 0 <= minimum <= 1:
        msg = f"the recall of precision_at_recall must be between 0 and 1 (got {minimum!r})"
        raise ValueError(msg)

    def value(result: CandidateResult) -> float | None:
        if result.recall is None or result.recall < minimum:
            return None
        return result.precision

    return Objective(f"precision@recall>={minimum:g}", value)


def as_objective(value: str | Objective | Callable[[CandidateResult], float | None]) -> Objective:
    """The :class:`Objective` a backtest's ``objective`` argument names.

    Args:
        value: ``"f1"``, ``"precision"``, ``"recall"``, ``"precision@recall>=X"``, an
            :class:`Objective`, or a callable of a :class:`CandidateResult`.

    Returns:
        The objective.

    Raises:
        ValueError: The name is unknown.
        TypeError: *value* is neither a str, an Objective nor a callable.
    """
    if isinstance(value, Objective):
        return value
    if isinstance(value, str):
        if value in OBJECTIVES:
            return Objective(value, lambda r: getattr(r, value))
        prefix = "precision@recall>="
        if value.startswith(prefix):
            try:
                minimum = float(value[len(prefix) :])
            except ValueError:
                minimum = math.nan
            if not math.isnan(minimum):
                return precision_at_recall(minimum)
        msg = (
            f"'objective' must be one of {', '.join(OBJECTIVES)}, 'precision@recall>=X' with X "
            f"between 0 and 1, an Objective or a callable (got {value!r})"
        )
        raise ValueError(msg)
    if callable(value):
        return Objective(getattr(value, "__name__", "custom"), value)
    msg = f"'objective' must be a str, an Objective or a callable (got {value!r})"
    raise TypeError(msg)


# ---------------------------------------------------------------- results


def _week(at: datetime) -> tuple[str, datetime]:
    day = at.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day - timedelta(days=day.weekday())
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}", start


def _quantile(values: Sequence[timedelta], q: float) -> timedelta | None:
    if not values:
        return None
    position = (len(values) - 1) * q
    low = int(position)
    if low + 1 >= len(values) or position == low:
        return values[low]
    return values[low] + (values[low + 1] - values[low]) * (position - low)


@attrs.frozen
class CandidateResult:
    """How one candidate would have done (see the module documentation for the definitions).

    Attributes:
        name: The candidate's name.
        kind: One of :data:`CANDIDATE_KINDS`.
        threshold: Its threshold, if any.
        handed_off: Leads it hands off.
        won_handed_off: Of those, leads that were won (true positives).
        precision: won_handed_off ÷ handed_off (``None`` when it hands off nobody).
        recall: won_handed_off ÷ won leads (``None`` when no lead was won).
        f1: Harmonic mean of precision and recall (``None`` when either is undefined).
        objective: The backtest objective's value (``None``: undefined or not qualifying).
        compared: Leads handed off both by the candidate and in reality.
        shifts: Candidate's minus actual handoff time of those leads, sorted
            (negative: earlier).
        earlier: Of those, handed off earlier than in reality.
        later: Handed off later.
        same: Handed off at the same time.
        weekly: Handoffs per ISO week, ``(week, count)``, oldest first.
        quarantined: Touches the engine set aside while replaying.
        handoffs: Lead id → when the candidate hands it off.
    """

    name: str
    kind: str
    threshold: float | None
    handed_off: int
    won_handed_off: int
    precision: float | None
    recall: float | None
    f1: float | None
    objective: float | None
    compared: int
    shifts: tuple[timedelta, ...]
    earlier: int
    later: int
    same: int
    weekly: tuple[tuple[str, int], ...]
    quarantined: int
    handoffs: Mapping[str, datetime] = attrs.field(converter=frozen_mapping, eq=False, repr=False)

    @property
    def median_shift(self) -> timedelta | None:
        """The median shift (``None`` when no lead is compared)."""
        return _quantile(self.shifts, 0.5)

    def shift_percentile(self, q: float) -> timedelta | None:
        """The *q*-quantile of the shifts, interpolated linearly (``None`` when none).

        Raises:
            ValueError: *q* is not between 0 and 1.
        """
        if not 0 <= q <= 1:
            msg = f"'q' must be between 0 and 1 (got {q!r})"
            raise ValueError(msg)
        return _quantile(self.shifts, q)

    @property
    def mean_weekly(self) -> float | None:
        """Mean handoffs per week (``None`` without weeks)."""
        return sum(n for _, n in self.weekly) / len(self.weekly) if self.weekly else None

    @property
    def max_weekly(self) -> int | None:
        """The busiest week's handoffs (``None`` without weeks)."""
        return max(n for _, n in self.weekly) if self.weekly else None

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict (durations in seconds)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "threshold": self.threshold,
            "handed_off": self.handed_off,
            "won_handed_off": self.won_handed_off,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "objective": self.objective,
            "compared": self.compared,
            "median_shift_seconds": seconds(self.median_shift),
            "p10_shift_seconds": seconds(self.shift_percentile(0.1)),
            "p90_shift_seconds": seconds(self.shift_percentile(0.9)),
            "earlier": self.earlier,
            "later": self.later,
            "same": self.same,
            "mean_weekly": self.mean_weekly,
            "max_weekly": self.max_weekly,
            "weekly": [{"week": w, "handoffs": n} for w, n in self.weekly],
            "quarantined": self.quarantined,
        }


@attrs.frozen
class CurvePoint:
    """One point of the trade-off curve: a thresholded candidate's precision and recall.

    Attributes:
        kind: The candidate's kind (one curve per kind).
        name: The candidate's name.
        threshold: Its threshold.
        precision: Its precision (``None`` when it hands off nobody).
        recall: Its recall (``None`` when no lead was won).
        handed_off: Leads it hands off.
    """

    kind: str
    name: str
    threshold: float
    precision: float | None
    recall: float | None
    handed_off: int

    def to_dict(self) -> dict[str, Any]:
        """The point as a JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen
class Backtest(Tabular):
    """The results of a backtest: one row per candidate, the best, and the trade-off curve.

    Attributes:
        funnel: The funnel's name.
        stage: The handoff stage.
        leads: Leads in the touches replayed.
        won: Of those, leads that were won.
        actual_handed_off: Of those, leads that were actually handed off.
        actual_won_handed_off: Of those, leads that were won.
        objective: The objective's name.
        candidates: One result per candidate, in the order given.
        best: The name of the candidate with the highest objective (ties: fewer
            handoffs, then the first given); ``None`` when none qualifies.
        curve: Precision and recall of every candidate with a threshold,
            by kind then threshold: the trade-off curve.
    """

    TABLES: ClassVar[tuple[str, ...]] = ("candidates", "curve", "weekly", "handoffs")
    """The tables of :meth:`to_pandas` and :meth:`to_arrow`; the first is the default."""

    def _tables(self) -> Mapping[str, Callable[[], Table]]:
        return backtest_tables(self)

    funnel: str
    stage: str
    leads: int
    won: int
    actual_handed_off: int
    actual_won_handed_off: int
    objective: str
    candidates: tuple[CandidateResult, ...]
    best: str | None
    curve: tuple[CurvePoint, ...]

    @property
    def actual_precision(self) -> float | None:
        """Precision of what really happened (``None`` when nobody was handed off)."""
        return _rate(self.actual_won_handed_off, self.actual_handed_off)

    @property
    def actual_recall(self) -> float | None:
        """Recall of what really happened (``None`` when no lead was won)."""
        return _rate(self.actual_won_handed_off, self.won)

    def candidate(self, name: str) -> CandidateResult:
        """The result of the candidate called *name*.

        Raises:
            KeyError: No candidate has that name.
        """
        for result in self.candidates:
            if result.name == name:
                return result
        known = ", ".join(r.name for r in self.candidates)
        msg = f"no candidate {name!r}; the candidates are {known}"
        raise KeyError(msg)

    def best_result(self) -> CandidateResult | None:
        """The best candidate's result (``None`` when none qualifies)."""
        return None if self.best is None else self.candidate(self.best)

    def to_dict(self) -> dict[str, Any]:
        """The backtest as a JSON-ready dict."""
        return {
            "funnel": self.funnel,
            "stage": self.stage,
            "leads": self.leads,
            "won": self.won,
            "actual": {
                "handed_off": self.actual_handed_off,
                "won_handed_off": self.actual_won_handed_off,
                "precision": self.actual_precision,
                "recall": self.actual_recall,
            },
            "objective": self.objective,
            "best": self.best,
            "candidates": [c.to_dict() for c in self.candidates],
            "curve": [p.to_dict() for p in self.curve],
        }

    def format(self) -> str:
        """The backtest as a plain-text table."""
        actual = (
            f"actually handed off {self.actual_handed_off} "
            f"(precision {format_rate(self.actual_precision)}, "
            f"recall {format_rate(self.actual_recall)})"
            if self.actual_handed_off
            else "actual handoffs unknown (none in the outcomes)"
        )
        lines = [
            f"backtest of handoffs into {self.stage} (funnel {self.funnel}): {self.leads} leads, "
            f"{self.won} won; {actual}",
            f"objective: {self.objective}; best: {self.best or '- (no candidate qualifies)'}",
            "",
            f"{'candidate':<22}{'handed':>8}{'won':>6}{'precision':>11}{'recall':>8}{'f1':>7}"
            f"{'shift (median)':>16}{'earlier':>9}{'later':>7}{'per week':>10}{'max':>5}",
        ]
        for c in self.candidates:
            mark = "*" if c.name == self.best else " "
            mean = "-" if c.mean_weekly is None else f"{c.mean_weekly:.1f}"
            f1 = "-" if c.f1 is None else f"{c.f1:.3f}"
            lines.append(
                f"{mark}{c.name[:21]:<21}{c.handed_off:>8}{c.won_handed_off:>6}"
                f"{format_rate(c.precision):>11}{format_rate(c.recall):>8}{f1:>7}"
                f"{format_duration(c.median_shift):>16}{c.earlier:>9}{c.later:>7}{mean:>10}"
                f"{c.max_weekly if c.max_weekly is not None else '-':>5}"
            )
        quarantined = sum(c.quarantined for c in self.candidates)
        if quarantined:
            lines += ["", f"warning: {quarantined} touches were quarantined while replaying"]
        return "\n".join(lines)


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _engine_replay(pipeline: Pipeline, touches: Sequence[Touch]) -> tuple[Record, ...]:
    engine = pipeline.engine()
    engine.ingest(touches)
    return engine.records


def _weeks(touches: Sequence[Touch]) -> list[str]:
    if not touches:
        return []
    first = min(t.at for t in touches)
    last = max(t.at for t in touches)
    labels: list[str] = []
    _, start = _week(first)
    while start <= last:
        labels.append(_week(start)[0])
        start += timedelta(days=7)
    return labels


def backtest(
    pipeline: Pipeline,
    touches: Iterable[Touch | Action],
    outcomes: Outcomes,
    candidates: Iterable[PolicyCandidate],
    *,
    stage: str | None = None,
    objective: str | Objective | Callable[[CandidateResult], float | None] = "f1",
    replay: Replayer | None = None,
) -> Backtest:
    """Replay historical touches under each candidate and compare with the known outcomes.

    Every candidate runs on a fresh engine of *pipeline* with the
    candidate's policy (and scorer, if it has one); see the module
    documentation for the metrics.

    Args:
        pipeline: The funnel, owners, hooks, scorer and thresholds to replay with.
        touches: The history, in time order; actions in it are skipped.
        outcomes: What really happened (:meth:`Outcomes.from_log`).
        candidates: The policies to try (:func:`threshold_candidates`,
            :func:`matrix_candidate`, :func:`predictive_candidates`, or your
            own :class:`PolicyCandidate`).
        stage: The handoff stage (default: :func:`handoff_stage`).
        objective: ``"f1"`` (the default), ``"precision"``, ``"recall"``,
            ``"precision@recall>=X"``, an :class:`Objective` or a callable of
            a :class:`CandidateResult` returning a number or ``None``.
        replay: Replays touches through a pipeline into a log: by default a
            fresh :meth:`Pipeline.engine() <buyerjourney.Pipeline.engine>`;
            pass ``lambda p, t: buyerjourney.bulk.replay(p, t).records()``
            for the bulk path (the same log).

    Returns:
        The backtest.

    Raises:
        ValueError: No candidate, two candidates share a name, the objective
            is unknown, or the funnel has no default handoff stage.
        UnknownStage: *stage* is not a stage of the funnel.
        HookError: A candidate's policy or scorer failed (on the engine's
            ``errors="quarantine"`` path, the touch is quarantined instead
            and counted).
    """
    chosen = as_objective(objective)
    items = tuple(candidates)
    if not items:
        raise ValueError("give at least one candidate policy to backtest")
    names = [c.name for c in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        msg = f"candidate names must be unique; repeated: {', '.join(twice)}"
        raise ValueError(msg)
    funnel = pipeline.funnel
    where = stage if stage is not None else handoff_stage(funnel)
    reached = _reached(funnel, where)
    history = tuple(t for t in touches if isinstance(t, Touch))
    leads = {t.lead_id for t in history}
    won = outcomes.won & leads
    actual = {lead: at for lead, at in outcomes.handoffs.items() if lead in leads}
    weeks = _weeks(history)
    run = replay or _engine_replay
    results: list[CandidateResult] = []
    for candidate in items:
        scorer = candidate.scorer if candidate.scorer is not None else pipeline.scorer
        trial = attrs.evolve(pipeline, policy=candidate.policy, scorer=scorer)
        handed: dict[str, datetime] = {}
        replayed: set[str] = set()
        for record in run(trial, history):
            if record.touch_id is not None:
                replayed.add(record.touch_id)
            if (
                record.kind.enters_stage
                and record.target in reached
                and record.lead_id not in handed
            ):
                handed[record.lead_id] = record.at
        quarantined = sum(1 for t in history if t.touch_id not in replayed)
        hits = sum(1 for lead in handed if lead in won)
        precision, recall = _rate(hits, len(handed)), _rate(hits, len(won))
        shifts = sorted(handed[lead] - actual[lead] for lead in handed if lead in actual)
        per_week = dict.fromkeys(weeks, 0)
        for at in handed.values():
            label = _week(at)[0]
            per_week[label] = per_week.get(label, 0) + 1
        result = CandidateResult(
            name=candidate.name,
            kind=candidate.kind,
            threshold=candidate.threshold,
            handed_off=len(handed),
            won_handed_off=hits,
            precision=precision,
            recall=recall,
            f1=_f1(precision, recall),
            objective=None,
            compared=len(shifts),
            shifts=tuple(shifts),
            earlier=sum(1 for s in shifts if s < timedelta(0)),
            later=sum(1 for s in shifts if s > timedelta(0)),
            same=sum(1 for s in shifts if s == timedelta(0)),
            weekly=tuple(sorted(per_week.items())),
            quarantined=quarantined,
            handoffs=handed,
        )
        value = chosen(result)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
        ):
            msg = f"the objective {chosen.name!r} must return a number or None (got {value!r})"
            raise TypeError(msg)
        results.append(attrs.evolve(result, objective=value))
    scored = [(i, r) for i, r in enumerate(results) if r.objective is not None]
    best = (
        min(scored, key=lambda item: (-float(item[1].objective or 0), item[1].handed_off, item[0]))[
            1
        ].name
        if scored
        else None
    )
    curve = sorted(
        (
            CurvePoint(r.kind, r.name, r.threshold, r.precision, r.recall, r.handed_off)
            for r in results
            if r.threshold is not None
        ),
        key=lambda p: (CANDIDATE_KINDS.index(p.kind), p.threshold),
    )
    return Backtest(
        funnel=funnel.name,
        stage=where,
        leads=len(leads),
        won=len(won),
        actual_handed_off=len(actual),
        actual_won_handed_off=sum(1 for lead in actual if lead in won),
        objective=chosen.name,
        candidates=tuple(results),
        best=best,
        curve=tuple(curve),
    )
