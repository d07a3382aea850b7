"""Log builders shared by the analytics tests: hand-written logs and a Hypothesis strategy.

Other ``test_analytics_*`` modules import from here (the tests directory is
on ``sys.path``). The builder writes :class:`~buyerjourney.Record` values
directly, the way the engine would, so every log it writes folds with
:func:`~buyerjourney.rebuild`; the tests at the bottom hold it to that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import (
    SYSTEM,
    Actor,
    Direction,
    Funnel,
    Record,
    RecordKind,
    Stage,
    StageKind,
    Transition,
    presets,
    rebuild,
)

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
"""A Monday morning (ISO week 2024-W10)."""


def h(hours: float) -> datetime:
    """*hours* after :data:`T0`."""
    return T0 + timedelta(hours=hours)


def trial_funnel() -> Funnel:
    """The seed funnel's first stages with an optional ``trial`` between consideration and won."""
    fwd, back, out = Direction.FORWARD, Direction.BACKWARD, Direction.EXIT
    return Funnel(
        "trial",
        [
            Stage("awareness", 10, owner="marketing", initial=True),
            Stage("consideration", 20, owner="marketing"),
            Stage("trial", 25, owner="sales"),
            Stage("conversion", 30, StageKind.WON, owner="sales", terminal=True),
            Stage("lost", 0, StageKind.LOST, owner="marketing"),
        ],
        [
            Transition("engage", "awareness", "consideration", fwd),
            Transition("try_it", "consideration", "trial", fwd),
            Transition("convert", "consideration", "conversion", fwd),
            Transition("buy", "trial", "conversion", fwd),
            Transition("nurture", "consideration", "awareness", back),
            Transition("lose", "awareness", "lost", out),
            Transition("lose", "consideration", "lost", out),
            Transition("lose", "trial", "lost", out),
        ],
    )


class Log:
    """Writes a consistent log by hand: creations, moves, handoffs, answers, escalations."""

    def __init__(self, funnel: Funnel) -> None:
        self.funnel = funnel
        self.records: list[Record] = []
        self.stage: dict[str, str] = {}
        self.owner: dict[str, str] = {}

    def _add(self, lead: str, at: datetime, kind: RecordKind, **fields: Any) -> Record:
        record = Record(lead, len(self.records), at, kind, **fields)
        self.records.append(record)
        return record

    def create(self, lead: str, hours: float, attributes: Mapping[str, Any] | None = None) -> Log:
        stage = self.funnel.initial
        team = stage.owner or "marketing"
        data = {"attributes": dict(attributes)} if attributes else {}
        self._add(lead, h(hours), RecordKind.CREATED, target=stage.name, to_team=team, data=data)
        self.stage[lead], self.owner[lead] = stage.name, team
        return self

    def learn(self, lead: str, hours: float, attributes: Mapping[str, Any]) -> Log:
        self._add(lead, h(hours), RecordKind.SCORED, score=0.0, data={"attributes": attributes})
        return self

    def _event(self, source: str, target: str) -> str | None:
        return next(
            (t.event for t in self.funnel.transitions_from(source) if t.target == target), None
        )

    def move(
        self,
        lead: str,
        hours: float,
        target: str,
        *,
        actor: Actor = SYSTEM,
        reason: str = "",
        override: bool = False,
    ) -> Log:
        source = self.stage[lead]
        at = h(hours)
        if override:
            self._add(
                lead,
                at,
                RecordKind.OVERRIDE,
                actor=actor,
                reason=reason or "by hand",
                source=source,
                target=target,
            )
        else:
            event = self._event(source, target)
            assert event is not None, f"no transition {source} -> {target}"
            self._add(
                lead,
                at,
                RecordKind.TRANSITION,
                actor=actor,
                reason=reason,
                event=event,
                source=source,
                target=target,
            )
        self.stage[lead] = target
        team = self.funnel.stage(target).owner or self.owner[lead]
        if team != self.owner[lead]:
            self._add(
                lead,
                at,
                RecordKind.HANDOFF,
                actor=actor,
                target=target,
                from_team=self.owner[lead],
                to_team=team,
                reason=reason,
            )
            self.owner[lead] = team
        return self

    def accept(self, lead: str, hours: float, actor: Actor) -> Log:
        self._add(
            lead,
            h(hours),
            RecordKind.ACCEPTED,
            actor=actor,
            source=self.stage[lead],
            to_team=self.owner[lead],
        )
        return self

    def reject(self, lead: str, hours: float, actor: Actor, reason: str) -> Log:
        stage = self.stage[lead]
        back = next(
            t for t in self.funnel.transitions_from(stage) if t.direction is Direction.BACKWARD
        )
        self._add(
            lead,
            h(hours),
            RecordKind.REJECTED,
            actor=actor,
            reason=reason,
            event=back.event,
            source=stage,
            target=back.target,
            from_team=self.owner[lead],
        )
        return self.move(lead, hours, back.target, actor=actor, reason=reason)

    def escalate(self, lead: str, hours: float) -> Log:
        self._add(
            lead,
            h(hours),
            RecordKind.ESCALATION,
            source=self.stage[lead],
            to_team=self.owner[lead],
            reason="past its SLA",
        )
        return self

    def refuse(self, lead: str, hours: float, actor: Actor, reason: str = "nope") -> Log:
        self._add(
            lead,
            h(hours),
            RecordKind.REFUSED,
            actor=actor,
            event="accept",
            source=self.stage.get(lead),
            reason=reason,
        )
        return self


def sample_log() -> Log:
    """The hand-computed log of the funnel-report tests, on :func:`trial_funnel`.

    ``a`` converts directly, ``b`` via the optional trial, ``c`` is lost, ``d``
    stays in awareness and ``e`` is recycled and comes back to consideration.
    ``c``'s segment is the real value ``"unknown"``; ``d`` never has one; ``b``
    starts as ``smb`` and becomes ``enterprise``; ``e`` gets one after its start.
    """
    log = Log(trial_funnel())
    log.create("a", 0, {"segment": "enterprise"})
    log.create("b", 1, {"segment": "smb"})
    log.create("c", 2, {"segment": "unknown"})
    log.create("d", 3)
    log.create("e", 3)
    log.move("c", 4, "consideration")
    log.move("b", 5, "consideration")
    log.move("b", 6, "trial")
    log.move("e", 7, "consideration")
    log.move("e", 8, "awareness", reason="not ready")
    log.learn("e", 8, {"segment": "enterprise"})
    log.move("e", 9, "consideration")
    log.move("a", 10, "consideration")
    log.learn("b", 15, {"segment": "enterprise"})
    log.move("a", 20, "conversion")
    log.move("b", 30, "conversion")
    log.move("c", 50, "lost")
    return log


# ---------------------------------------------------------------- random logs

FUNNELS = {"trial": trial_funnel(), "waterfall": presets.demand_waterfall(), "seed": presets.seed()}
SEGMENTS = ("enterprise", "smb", "unknown")
PERSON = Actor("pat", "sales")


@st.composite
def logs(draw: st.DrawFn, funnel_names: Sequence[str] = tuple(FUNNELS)) -> tuple[Funnel, Log]:
    """A random consistent log: a few leads walking a funnel, steps in time order.

    Each lead takes random legal transitions (now and then an override, a
    rejection out of a gate, an acceptance or an escalation), with gaps of
    zero to three days, so that several records share a time.
    """
    funnel = FUNNELS[draw(st.sampled_from(funnel_names))]
    n = draw(st.integers(0, 6))
    plans: list[tuple[int, int, str, int]] = []  # (minutes, tie-breaker, lead, step index)
    for i in range(n):
        start = draw(st.integers(0, 14 * 24 * 60))
        steps = draw(st.integers(0, 7))
        minutes = start
        plans.append((minutes, len(plans), f"lead{i}", -1))
        for step in range(steps):
            minutes += draw(st.integers(0, 3 * 24 * 60))
            plans.append((minutes, len(plans), f"lead{i}", step))
    plans.sort()
    log = Log(funnel)
    for minutes, _, lead, step in plans:
        hours = minutes / 60
        if step < 0:
            segment = draw(st.sampled_from((None, *SEGMENTS)))
            log.create(lead, hours, None if segment is None else {"segment": segment})
            continue
        stage = funnel.stage(log.stage[lead])
        choice = draw(st.integers(0, 9))
        moves = funnel.transitions_from(stage.name)
        if choice == 0:
            log.learn(lead, hours, {"segment": draw(st.sampled_from(SEGMENTS))})
        elif choice == 1:
            others = [s.name for s in funnel.stages if s.name != stage.name]
            log.move(lead, hours, draw(st.sampled_from(others)), actor=PERSON, override=True)
        elif choice == 2 and stage.gate:
            log.reject(lead, hours, PERSON, draw(st.sampled_from(("no budget", "too small"))))
        elif choice == 3 and stage.gate:
            log.accept(lead, hours, PERSON)
        elif choice == 4 and stage.sla is not None:
            log.escalate(lead, hours)
        elif moves:
            log.move(lead, hours, draw(st.sampled_from(moves)).target)
    return funnel, log


def times_of(log: Log) -> list[datetime]:
    """Every time the log mentions, and a little before and after."""
    times = sorted({r.at for r in log.records})
    return [T0 - timedelta(days=1), *times, *(t + timedelta(minutes=1) for t in times[-1:])]


# ---------------------------------------------------------------- the builder itself


def test_the_sample_log_folds() -> None:
    log = sample_log()
    journeys = rebuild(log.funnel, log.records)
    assert {lead: j.stage for lead, j in journeys.items()} == {
        "a": "conversion",
        "b": "conversion",
        "c": "lost",
        "d": "awareness",
        "e": "consideration",
    }
    assert journeys["b"].attributes == {"segment": "enterprise"}


@given(logs())
def test_random_logs_fold_and_are_in_time_order(case: tuple[Funnel, Log]) -> None:
    funnel, log = case
    journeys = rebuild(funnel, log.records)
    assert {lead: j.stage for lead, j in journeys.items()} == log.stage
    assert [r.at for r in log.records] == sorted(r.at for r in log.records)
