"""Handoff metrics from the log: acceptance, time to accept, SLA breaches, recycles, workload.

Unlike the funnel report, these are **period-based**: they count what
happened between ``since`` and the as-of date (handoffs, acceptances,
breaches ...), whenever the leads concerned entered the funnel. The state
figures (journeys waiting for acceptance, open journeys per team) are the
state at the as-of date, folded from the log with :func:`~buyerjourney.rebuild`.

- **handoffs**: HANDOFF records (the owning team changed with a transition).
- **gate entries**: entries into gate stages, each waiting for the receiving
  team to accept or reject.
- **acceptance rate** = accepted ÷ (accepted + rejected): of the handoffs
  answered in the period, the share accepted. Those still waiting are
  counted apart (``pending``) rather than as rejections.
- **time to accept**: from entering the gate stage to the acceptance, for the
  acceptances of the period; median and 90th percentile.
- **SLA breaches**: ESCALATION records, per stage.
- **rejections** with their reasons, and **recycles**: backward transitions
  (a rejection's recycle, a nurture) with their reasons.
- **workload per team**: handoffs received and handed off, acceptances and
  rejections answered, breaches, and the journeys the team owns at the
  as-of date (open: not in a terminal stage; waiting: in a gate stage).
- **workload per owner** (the person acting): moves, overrides,
  acceptances, rejections and refused actions. The system and policies are
  not people and are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import attrs

from buyerjourney._analytics._stats import (
    Durations,
    format_rate,
    iso,
    optional_time,
    rate,
)
from buyerjourney._analytics.frames import Table, Tabular, handoff_tables
from buyerjourney._core._values import frozen_mapping
from buyerjourney._core.funnel import Direction, Funnel
from buyerjourney._core.journey import rebuild
from buyerjourney._core.lifecycle import POLICY_ACTOR_PREFIX, effective
from buyerjourney._core.records import SYSTEM, Actor, Record, RecordKind

__all__ = [
    "PERIOD_BASIS",
    "ActorLoad",
    "HandoffReport",
    "HandoffRoute",
    "Recycle",
    "TeamLoad",
    "handoff_report",
]

PERIOD_BASIS = "period"
"""The basis of the handoff report: what happened in a period, whoever it happened to."""


@attrs.frozen
class HandoffRoute:
    """Handoffs into one stage from one team to another.

    Attributes:
        stage: The stage entered with the handoff.
        from_team: The team that owned the journey before.
        to_team: The team that owns it after.
        count: How many handoffs took this route.
    """

    stage: str
    from_team: str
    to_team: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        """The route as a JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen
class Recycle:
    """Backward moves from one stage to another with one reason.

    Attributes:
        source: The stage left.
        target: The earlier stage entered.
        reason: The reason recorded with the move.
        count: How many moves.
    """

    source: str
    target: str
    reason: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        """The recycle row as a JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen
class TeamLoad:
    """One team's workload.

    Attributes:
        team: The team.
        received: Handoffs to the team in the period.
        handed_off: Handoffs from the team in the period.
        accepted: Handoffs the team accepted in the period.
        rejected: Handoffs the team rejected in the period.
        breaches: SLA escalations of journeys the team owned, in the period.
        open: Journeys the team owns at the as-of date, outside terminal stages.
        waiting: Of those, journeys waiting for the team's acceptance.
    """

    team: str
    received: int = 0
    handed_off: int = 0
    accepted: int = 0
    rejected: int = 0
    breaches: int = 0
    open: int = 0
    waiting: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen
class ActorLoad:
    """What one person did in the period.

    Attributes:
        actor: The person's id.
        team: The team the person acted for (``None`` when not given).
        moves: Transitions the person made.
        overrides: Stages the person set by hand.
        accepted: Handoffs the person accepted.
        rejected: Handoffs the person rejected.
        refused: The person's actions that were refused.
    """

    actor: str
    team: str | None
    moves: int = 0
    overrides: int = 0
    accepted: int = 0
    rejected: int = 0
    refused: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen
class HandoffReport(Tabular):
    """Handoff metrics of a log (period-based; see the module documentation).

    Attributes:
        as_of: Records dated after it were ignored (``None``: the whole log).
        since: Only what happened at or after it is counted (``None``: all).
        handoffs: Handoff records in the period.
        routes: Handoffs by stage and teams, most first.
        gate_entries: Entries into gate stages in the period.
        accepted: Acceptances in the period.
        rejected: Rejections in the period.
        pending: Journeys waiting in a gate stage at the as-of date.
        time_to_accept: From entering the gate stage to the acceptance.
        breaches: SLA escalations per stage, most first.
        rejection_reasons: Rejections per reason, most first.
        recycles: Backward moves by stages and reason, most first.
        teams: Workload per team, by name.
        actors: Workload per person, by name.
        basis: Always ``"period"``.
    """

    TABLES: ClassVar[tuple[str, ...]] = (
        "teams",
        "actors",
        "routes",
        "breaches",
        "rejections",
        "recycles",
        "summary",
    )
    """The tables of :meth:`to_pandas` and :meth:`to_arrow`; the first is the default."""

    def _tables(self) -> Mapping[str, Callable[[], Table]]:
        return handoff_tables(self)

    as_of: datetime | None
    since: datetime | None
    handoffs: int
    routes: tuple[HandoffRoute, ...]
    gate_entries: int
    accepted: int
    rejected: int
    pending: int
    time_to_accept: Durations
    breaches: Mapping[str, int] = attrs.field(converter=frozen_mapping)
    rejection_reasons: Mapping[str, int] = attrs.field(converter=frozen_mapping)
    recycles: tuple[Recycle, ...]
    teams: tuple[TeamLoad, ...]
    actors: tuple[ActorLoad, ...]
    basis: str = PERIOD_BASIS

    @property
    def answered(self) -> int:
        """Handoffs answered (accepted or rejected) in the period."""
        return self.accepted + self.rejected

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted ÷ answered (``None`` when nothing was answered)."""
        return rate(self.accepted, self.answered)

    @property
    def empty(self) -> bool:
        """Whether nothing handoff-related happened in the period and nothing waits."""
        return not (
            self.handoffs
            or self.gate_entries
            or self.answered
            or self.pending
            or self.breaches
            or self.recycles
        )

    def describe(self) -> str:
        """One line saying what the report counts (its period-based label)."""
        start = f"from {iso(self.since)} " if self.since is not None else ""
        end = f"up to {iso(self.as_of)}" if self.as_of is not None else "up to the end of the log"
        return f"period-based: what happened {start}{end}"

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (times in ISO format, durations in seconds)."""
        return {
            "basis": self.basis,
            "as_of": iso(self.as_of),
            "since": iso(self.since),
            "handoffs": self.handoffs,
            "routes": [r.to_dict() for r in self.routes],
            "gate_entries": self.gate_entries,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "pending": self.pending,
            "acceptance_rate": self.acceptance_rate,
            "time_to_accept": self.time_to_accept.to_dict(),
            "breaches": dict(self.breaches),
            "rejection_reasons": dict(self.rejection_reasons),
            "recycles": [r.to_dict() for r in self.recycles],
            "teams": [t.to_dict() for t in self.teams],
            "actors": [a.to_dict() for a in self.actors],
        }

    def format(self) -> str:
        """The report as plain text."""
        lines = [self.describe()]
        if self.empty:
            lines.append("no data: no handoff, answer, breach or recycle in the period")
            return "\n".join(lines)
        lines += ["", f"handoffs: {self.handoffs}"]
        lines += [f"  {r.from_team} -> {r.to_team} into {r.stage}: {r.count}" for r in self.routes]
        lines += [
            "",
            f"gate entries: {self.gate_entries}, accepted: {self.accepted}, "
            f"rejected: {self.rejected}, waiting now: {self.pending}",
            f"acceptance rate: {format_rate(self.acceptance_rate)}",
            f"time to accept: {self.time_to_accept.summary()}",
            "",
            "SLA breaches:",
        ]
        lines += [f"  {stage}: {n}" for stage, n in self.breaches.items()] or ["  none"]
        lines += ["", "rejections:"]
        lines += [f"  {n} x {reason}" for reason, n in self.rejection_reasons.items()] or ["  none"]
        lines += ["", "recycles:"]
        lines += [f"  {r.source} -> {r.target}: {r.count} x {r.reason}" for r in self.recycles] or [
            "  none"
        ]
        lines += [
            "",
            f"{'team':<16}{'received':>9}{'handed':>9}{'accepted':>9}{'rejected':>9}"
            f"{'breaches':>9}{'open':>6}{'waiting':>8}",
        ]
        lines += [
            f"{t.team:<16}{t.received:>9}{t.handed_off:>9}{t.accepted:>9}{t.rejected:>9}"
            f"{t.breaches:>9}{t.open:>6}{t.waiting:>8}"
            for t in self.teams
        ]
        if self.actors:
            lines += [
                "",
                f"{'owner':<16}{'team':<12}{'moves':>6}{'overrides':>10}{'accepted':>9}"
                f"{'rejected':>9}{'refused':>8}",
            ]
            lines += [
                f"{a.actor:<16}{a.team or '-':<12}{a.moves:>6}{a.overrides:>10}{a.accepted:>9}"
                f"{a.rejected:>9}{a.refused:>8}"
                for a in self.actors
            ]
        return "\n".join(lines)


def _is_person(actor: Actor) -> bool:
    return actor != SYSTEM and not actor.name.startswith(POLICY_ACTOR_PREFIX)


def _is_backward(funnel: Funnel, record: Record) -> bool:
    source, target = record.source, record.target
    if source not in funnel or target not in funnel:
        return False
    for move in funnel.transitions_from(str(source)):
        if move.event == record.event and move.target == target:
            return move.direction is Direction.BACKWARD
    new, old = funnel.stage(str(target)), funnel.stage(str(source))
    return not new.kind.is_exit and new.rank < old.rank


def _most_first(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


class _Tally:
    """The counters of the handoff report, fed one record at a time."""

    def __init__(self, funnel: Funnel) -> None:
        self.funnel = funnel
        self.entered_at: dict[str, datetime] = {}
        self.routes: Counter[tuple[str, str, str]] = Counter()
        self.recycles: Counter[tuple[str, str, str]] = Counter()
        self.breaches: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.teams: dict[str, Counter[str]] = {}
        self.people: dict[tuple[str, str | None], Counter[str]] = {}
        self.to_accept: list[timedelta] = []
        self.counts: Counter[str] = Counter()

    def team(self, name: str | None, what: str) -> None:
        if name is not None:
            self.teams.setdefault(name, Counter())[what] += 1

    def person(self, actor: Actor, what: str) -> None:
        if _is_person(actor):
            self.people.setdefault((actor.name, actor.team), Counter())[what] += 1

    def add(self, record: Record, *, counted: bool) -> None:
        """Follow *record*; count it only when it falls in the period (*counted*)."""
        kind = record.kind
        enters = kind.enters_stage and record.target is not None
        if enters:
            self.entered_at[record.lead_id] = record.at
        if not counted:
            return
        if enters:
            self._entry(record)
        elif kind is RecordKind.HANDOFF and record.from_team and record.to_team:
            self.counts["handoffs"] += 1
            self.routes[(str(record.target), record.from_team, record.to_team)] += 1
            self.team(record.to_team, "received")
            self.team(record.from_team, "handed_off")
        elif kind is RecordKind.ACCEPTED:
            self.counts["accepted"] += 1
            if record.lead_id in self.entered_at:
                self.to_accept.append(record.at - self.entered_at[record.lead_id])
            self.team(record.to_team, "accepted")
            self.person(record.actor, "accepted")
        elif kind is RecordKind.REJECTED:
            self.counts["rejected"] += 1
            self.reasons[record.reason] += 1
            self.team(record.from_team, "rejected")
            self.person(record.actor, "rejected")
        elif kind is RecordKind.ESCALATION and record.source is not None:
            self.breaches[record.source] += 1
            self.team(record.to_team, "breaches")
        elif kind is RecordKind.REFUSED:
            self.person(record.actor, "refused")

    def _entry(self, record: Record) -> None:
        target = str(record.target)
        if target in self.funnel and self.funnel.stage(target).gate:
            self.counts["gate_entries"] += 1
        if record.kind is RecordKind.TRANSITION:
            self.person(record.actor, "moves")
            if _is_backward(self.funnel, record):
                self.recycles[(str(record.source), target, record.reason)] += 1
        elif record.kind is RecordKind.OVERRIDE:
            self.person(record.actor, "overrides")


def handoff_report(
    funnel: Funnel,
    records: Iterable[Record],
    *,
    as_of: datetime | str | None = None,
    since: datetime | str | None = None,
) -> HandoffReport:
    """Compute the handoff metrics of a log (see the module documentation).

    Args:
        funnel: The funnel the log follows.
        records: The log, in log order (records dated after *as_of* are ignored).
        as_of: Compute the report as of this date: an aware datetime or an
            ISO-8601 string with an offset (``None``: the whole log).
        since: Count only what happened at or after this date.

    Returns:
        The report; empty when nothing falls in the dates given, never an error.

    Raises:
        InvalidTouch: *as_of* or *since* is not an aware time.
        CorruptLog: The log cannot be folded into journeys.
    """
    end = optional_time(as_of, "as_of")
    start = optional_time(since, "since")
    kept = [r for r in effective(records) if end is None or r.at <= end]  # revisions applied
    tally = _Tally(funnel)
    for record in kept:
        tally.add(record, counted=start is None or record.at >= start)
    pending = 0
    teams = tally.teams
    for journey in rebuild(funnel, kept).values():
        owned = teams.setdefault(journey.owner, Counter())
        if journey.pending_acceptance:
            pending += 1
            owned["waiting"] += 1
        if not (journey.stage in funnel and funnel.stage(journey.stage).terminal):
            owned["open"] += 1
    routes, recycles, counts = tally.routes, tally.recycles, tally.counts
    return HandoffReport(
        as_of=end,
        since=start,
        handoffs=counts["handoffs"],
        routes=tuple(
            HandoffRoute(stage, a, b, n)
            for (stage, a, b), n in sorted(routes.items(), key=lambda item: (-item[1], item[0]))
        ),
        gate_entries=counts["gate_entries"],
        accepted=counts["accepted"],
        rejected=counts["rejected"],
        pending=pending,
        time_to_accept=Durations(tally.to_accept),
        breaches=_most_first(tally.breaches),
        rejection_reasons=_most_first(tally.reasons),
        recycles=tuple(
            Recycle(source, target, reason, n)
            for (source, target, reason), n in sorted(
                recycles.items(), key=lambda item: (-item[1], item[0])
            )
        ),
        teams=tuple(
            TeamLoad(name, **{k: v for k, v in load.items() if v})
            for name, load in sorted(teams.items())
        ),
        actors=tuple(
            ActorLoad(name, team_name, **dict(load))
            for (name, team_name), load in sorted(
                tally.people.items(), key=lambda item: (item[0][0], item[0][1] or "")
            )
        ),
    )
