"""Funnels as plain, frozen data: stages, transitions, validation and extension.

A :class:`Funnel` is a value. It is validated when it is built, and every
problem found is reported at once in one :class:`~buyerjourney.errors.InvalidFunnel`.
Engines (the python-statemachine class, the compiled table) are built *from*
a funnel; the funnel itself never runs anything, and guards are referred to
by the name of a registered hook, never by a Python object.
"""

from __future__ import annotations

import difflib
import enum
import keyword
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Literal

import attrs

from buyerjourney._core.calendar import WorkingCalendar
from buyerjourney._core.graph import reach
from buyerjourney.errors import InvalidFunnel, Problem, UnknownStage

__all__ = [
    "RESERVED_NAMES",
    "Direction",
    "Funnel",
    "Problem",
    "Stage",
    "StageKind",
    "Transition",
    "find_problems",
]


class StageKind(enum.Enum):
    """What a stage means for the buyer.

    ``OPEN`` stages are on the way to a purchase; ``WON`` is the purchase;
    ``AFTER_PURCHASE`` stages (retention, advocacy) come after it; ``LOST`` and
    ``DISQUALIFIED`` are exits.
    """

    OPEN = "open"
    WON = "won"
    LOST = "lost"
    DISQUALIFIED = "disqualified"
    AFTER_PURCHASE = "after_purchase"

    @property
    def is_exit(self) -> bool:
        """Whether the kind is an exit from the success path (lost or disqualified)."""
        return self in (StageKind.LOST, StageKind.DISQUALIFIED)


class Direction(enum.Enum):
    """Which way a transition moves a journey.

    ``FORWARD`` moves up the success path; ``BACKWARD`` recycles a lead to an
    earlier stage (nurture) and **requires a reason** when performed; ``EXIT``
    leaves the success path for a lost or disqualified stage.
    """

    FORWARD = "forward"
    BACKWARD = "backward"
    EXIT = "exit"


def _reserved_names() -> frozenset[str]:
    from statemachine import State, StateMachine  # noqa: PLC0415  (keep import cost local)

    names = {n for n in dir(StateMachine) if not n.startswith("__")}
    names |= {n for n in dir(State) if not n.startswith("__")}
    # ``stage``, ``funnel`` and ``legal_events`` are attributes of buyerjourney's
    # own FunnelMachine; the others are keyword arguments passed to callbacks.
    extra = {"model", "state", "ctx", "reason", "journey", "stage", "funnel", "legal_events"}
    return frozenset(names | extra)


RESERVED_NAMES: frozenset[str] = _reserved_names()
"""Names a stage or an event may not take: attributes of python-statemachine's
``StateMachine`` and ``State`` (a stage named ``send`` would shadow the method),
of buyerjourney's machine (``stage``, ``funnel``, ``legal_events``), and the
keyword arguments that buyerjourney passes to callbacks."""


def _to_kind(value: StageKind | str) -> StageKind:
    if isinstance(value, StageKind):
        return value
    try:
        return StageKind(value)
    except ValueError:
        pass
    kinds = [k.value for k in StageKind]
    message = f"'kind' must be one of {', '.join(kinds)} (got {value!r})"
    close = difflib.get_close_matches(value, kinds, n=1) if isinstance(value, str) else []
    if close:
        message += f"; did you mean {close[0]!r}?"
    elif isinstance(value, str):
        # Stage(name, rank, kind, ...): a team given third lands in ``kind``.
        message += (
            f". If {value!r} is the team that owns the stage, pass it as owner={value!r}: "
            "the third positional argument of Stage is the kind"
        )
    raise ValueError(message) from None


def _to_direction(value: Direction | str) -> Direction:
    if isinstance(value, Direction):
        return value
    try:
        return Direction(value)
    except ValueError:
        pass
    directions = [d.value for d in Direction]
    message = f"'direction' must be one of {', '.join(directions)} (got {value!r})"
    close = difflib.get_close_matches(value, directions, n=1) if isinstance(value, str) else []
    if close:
        message += f"; did you mean {close[0]!r}?"
    elif isinstance(value, str) and value.isidentifier():
        # Transition(event, source, target, direction, guard): a guard given fourth.
        message += (
            f". If {value!r} is a guard, pass it as guard={value!r}: the fourth positional "
            "argument of Transition is the direction"
        )
    raise ValueError(message) from None


def _default_terminal(stage: Stage) -> bool:
    return stage.kind.is_exit


def _check_sla(_: object, attribute: attrs.Attribute[Any], value: timedelta | None) -> None:
    if value is not None and (not isinstance(value, timedelta) or value <= timedelta(0)):
        msg = f"'{attribute.name}' must be a positive datetime.timedelta or None (got {value!r})"
        raise ValueError(msg)


def _opt_calendar(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, WorkingCalendar):
        msg = (
            f"'{attribute.name}' must be a WorkingCalendar or None (got {value!r} that is a "
            f"{type(value).__name__})"
        )
        raise TypeError(msg)


def _check_rank(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"'{attribute.name}' must be an int (got {value!r} that is a {type(value).__name__})"
        raise TypeError(msg)


_str = attrs.validators.instance_of(str)
_opt_str = attrs.validators.optional(_str)
_bool = attrs.validators.instance_of(bool)


@attrs.frozen
class Stage:
    """One stage of a funnel.

    Args:
        name: A Python identifier, unique in the funnel (``"consideration"``).
        rank: Position on the success path; higher is further. Exits may
            use any rank. Leave gaps (10, 20, 30) so custom stages fit between.
        kind: Open, won, lost, disqualified or after-purchase.
        sla: The longest a journey should stay in this stage, or ``None``.
        description: What happens in this stage, for people and diagrams.
        owner: The team that owns the stage by default (``"marketing"``,
            ``"sales"`` or a team of your own), or ``None`` to leave it to the
            owner rules.
        initial: Whether journeys start here. Exactly one stage is initial.
        terminal: Whether the stage is an end. Terminal stages have no
            transitions out; every other stage must have one. Defaults to
            ``True`` for lost and disqualified stages.
        gate: Whether entering this stage needs the receiving team to accept
            the handoff (like Sales Accepted Lead). A gate stage needs a
            backward transition out: rejection recycles the lead along it.
        accept_sla: Keyword only. How long the receiving team has to accept
            or reject a journey waiting in this stage (a gate, or any stage a
            lead is handed off at when the funnel's ``acceptance`` is
            ``"handoff"``); the clock stops when it answers (``sla`` is the
            time in the stage, a separate SLA). On a stage where no lead ever
            waits it is reported by ``find_problems`` (``accept-sla-unused``).
        sla_calendar: Keyword only. The :class:`~buyerjourney.WorkingCalendar`
            in which ``sla`` is counted (``None``: around the clock).
        accept_calendar: Keyword only. The calendar in which ``accept_sla`` is
            counted (``None``: around the clock).
    """

    name: str = attrs.field(validator=_str)
    rank: int = attrs.field(validator=_check_rank)
    kind: StageKind = attrs.field(default=StageKind.OPEN, converter=_to_kind)
    sla: timedelta | None = attrs.field(default=None, validator=_check_sla)
    description: str = attrs.field(default="", validator=_str)
    owner: str | None = attrs.field(default=None, validator=_opt_str)
    initial: bool = attrs.field(default=False, validator=_bool)
    terminal: bool = attrs.field(
        default=attrs.Factory(_default_terminal, takes_self=True), validator=_bool
    )
    gate: bool = attrs.field(default=False, validator=_bool)
    accept_sla: timedelta | None = attrs.field(default=None, validator=_check_sla, kw_only=True)
    sla_calendar: WorkingCalendar | None = attrs.field(
        default=None, validator=_opt_calendar, kw_only=True
    )
    accept_calendar: WorkingCalendar | None = attrs.field(
        default=None, validator=_opt_calendar, kw_only=True
    )

    def __attrs_post_init__(self) -> None:
        if self.sla_calendar is not None and self.sla is None:
            msg = f"stage {self.name!r} has an sla_calendar but no sla to count in it"
            raise ValueError(msg)
        if self.accept_calendar is not None and self.accept_sla is None:
            msg = f"stage {self.name!r} has an accept_calendar but no accept_sla to count in it"
            raise ValueError(msg)


@attrs.frozen
class Transition:
    """A legal move between two stages, triggered by an event.

    Args:
        event: The event name (an identifier). The same event may leave
            several stages (``lose`` from every open stage).
        source: The stage the journey is in.
        target: The stage the journey moves to.
        direction: Forward, backward (needs a reason when performed) or exit.
        guard: The name of a registered guard hook that must return ``True``
            for the move to happen, or ``None``. Several transitions may share
            a (source, event) pair when guards tell them apart; the first whose
            guard passes is taken, in declaration order.
        description: What the move means, for people and diagrams.
        bypasses_gate: Keyword only. Declares that the move goes past a gate
            stage on purpose (a self-serve purchase that skips the sales
            review of large accounts). The verifier reports such a bypass as
            information (``gate-bypass-declared``) instead of the
            ``gate-bypass`` error; it changes nothing when journeys run.
    """

    event: str = attrs.field(validator=_str)
    source: str = attrs.field(validator=_str)
    target: str = attrs.field(validator=_str)
    direction: Direction = attrs.field(default=Direction.FORWARD, converter=_to_direction)
    guard: str | None = attrs.field(default=None, validator=_opt_str)
    description: str = attrs.field(default="", validator=_str)
    bypasses_gate: bool = attrs.field(default=False, validator=_bool, kw_only=True)


def _name_problems(what: str, name: str) -> Iterator[Problem]:
    if not name.isidentifier() or keyword.iskeyword(name):
        yield Problem(
            f"invalid-{what}-name",
            f"{what} name {name!r} is not a Python identifier, or is a keyword; "
            "use letters, digits and _ (not starting with a digit)",
            name,
        )
    elif name.startswith("_"):
        yield Problem(f"invalid-{what}-name", f"{what} name {name!r} must not start with '_'", name)
    elif name in RESERVED_NAMES:
        yield Problem(
            f"reserved-{what}-name",
            f"{what} name {name!r} collides with a python-statemachine attribute; rename it",
            name,
        )


def _transition_label(t: Transition) -> str:
    guard = f" [if {t.guard}]" if t.guard else ""
    return f"{t.event}: {t.source} -> {t.target}{guard}"


def find_problems(  # noqa: PLR0915  (one pass per rule keeps each rule readable)
    stages: Iterable[Stage], transitions: Iterable[Transition]
) -> list[Problem]:
    """Return every problem with a set of stages and transitions (empty if none).

    This is what :class:`Funnel` runs when it is built; call it directly to
    check a definition without raising.
    """
    stages = tuple(stages)
    transitions = tuple(transitions)
    problems: list[Problem] = []
    by_name: dict[str, Stage] = {}

    if not stages:
        problems.append(Problem("no-stages", "a funnel needs at least one stage"))
    for stage in stages:
        problems.extend(_name_problems("stage", stage.name))
        if stage.name in by_name:
            problems.append(
                Problem("duplicate-stage", f"stage {stage.name!r} is defined twice", stage.name)
            )
        by_name.setdefault(stage.name, stage)
        if stage.owner is not None and not stage.owner.isidentifier():
            problems.append(
                Problem(
                    "invalid-owner",
                    f"stage {stage.name!r} has owner {stage.owner!r}, not an identifier",
                    stage.name,
                )
            )
        if stage.terminal and stage.sla is not None:
            problems.append(
                Problem(
                    "sla-on-terminal",
                    f"terminal stage {stage.name!r} has an SLA that every journey ending "
                    "there would breach; remove the SLA or make the stage non-terminal",
                    stage.name,
                )
            )
        if stage.gate and (stage.initial or stage.terminal):
            problems.append(
                Problem(
                    "invalid-gate",
                    f"gate stage {stage.name!r} cannot be initial or terminal: a gate is "
                    "entered by a handoff and left by acceptance or rejection",
                    stage.name,
                )
            )
        if stage.rank < 0:
            problems.append(
                Problem("negative-rank", f"stage {stage.name!r} has rank {stage.rank} < 0")
            )

    initials = [s.name for s in stages if s.initial]
    if stages and not initials:
        problems.append(
            Problem("no-initial-stage", "no stage is marked initial=True; mark exactly one")
        )
    elif len(initials) > 1:
        problems.append(
            Problem(
                "several-initial-stages",
                f"stages {', '.join(initials)} are all marked initial; keep exactly one",
            )
        )

    events: set[str] = set()
    seen: set[Transition] = set()
    groups: dict[tuple[str, str], list[Transition]] = defaultdict(list)
    outgoing: dict[str, list[Transition]] = defaultdict(list)
    for t in transitions:
        label = _transition_label(t)
        if t.event not in events:
            events.add(t.event)
            problems.extend(_name_problems("event", t.event))
        if t.guard is not None and not t.guard:
            problems.append(Problem("invalid-guard", f"{label}: guard name is empty", t.event))
        if t in seen:
            problems.append(Problem("duplicate-transition", f"{label} is defined twice", t.event))
            continue
        seen.add(t)
        unknown = [n for n in (t.source, t.target) if n not in by_name]
        for name in unknown:
            problems.append(
                Problem("unknown-stage", f"{label} refers to undefined stage {name!r}", name)
            )
        if unknown:
            continue
        source, target = by_name[t.source], by_name[t.target]
        groups[(t.source, t.event)].append(t)
        outgoing[t.source].append(t)
        if t.source == t.target:
            problems.append(
                Problem("self-transition", f"{label} does not change the stage", t.event)
            )
            continue
        if t.direction is Direction.EXIT and not target.kind.is_exit:
            problems.append(
                Problem(
                    "exit-to-open-stage",
                    f"{label} is an exit but {t.target!r} is {target.kind.value}, "
                    "not lost or disqualified",
                    t.event,
                )
            )
        elif t.direction is not Direction.EXIT and target.kind.is_exit:
            problems.append(
                Problem(
                    "unmarked-exit",
                    f"{label} leads to {target.kind.value} stage {t.target!r}; "
                    "declare it with direction='exit'",
                    t.event,
                )
            )
        elif t.direction is Direction.FORWARD and target.rank <= source.rank:
            problems.append(
                Problem(
                    "forward-not-forward",
                    f"{label} is forward but goes from rank {source.rank} to {target.rank}; "
                    "declare it backward or fix the ranks",
                    t.event,
                )
            )
        elif t.direction is Direction.BACKWARD and target.rank >= source.rank:
            problems.append(
                Problem(
                    "backward-not-backward",
                    f"{label} is backward but goes from rank {source.rank} to {target.rank}",
                    t.event,
                )
            )

    for event in sorted(events & set(by_name)):
        problems.append(
            Problem(
                "event-is-stage-name",
                f"event {event!r} has the same name as a stage; rename one of them",
                event,
            )
        )

    for (origin, event), group in groups.items():
        unguarded = [t for t in group if t.guard is None]
        if len(unguarded) > 1:
            targets = ", ".join(t.target for t in unguarded)
            problems.append(
                Problem(
                    "ambiguous-event",
                    f"event {event!r} from {origin!r} leads to {targets} with no guard to "
                    "choose; add guards to all but the last",
                    event,
                )
            )
        elif unguarded and group[-1].guard is not None:
            problems.append(
                Problem(
                    "shadowed-transition",
                    f"event {event!r} from {origin!r}: the unguarded transition to "
                    f"{unguarded[0].target!r} comes before guarded ones, which can never "
                    "be taken; move it last",
                    event,
                )
            )
        guards = [t.guard for t in group if t.guard is not None]
        for guard in sorted({g for g in guards if guards.count(g) > 1}):
            problems.append(
                Problem(
                    "ambiguous-event",
                    f"event {event!r} from {origin!r} uses guard {guard!r} on several "
                    "transitions; only the first could ever be taken",
                    event,
                )
            )

    for stage in stages:
        if stage.name not in by_name or by_name[stage.name] is not stage:
            continue
        has_out = bool(outgoing.get(stage.name))
        if stage.terminal and has_out:
            events_out = ", ".join(sorted({t.event for t in outgoing[stage.name]}))
            problems.append(
                Problem(
                    "exit-from-terminal",
                    f"terminal stage {stage.name!r} has transitions out ({events_out}); "
                    "remove them or set terminal=False",
                    stage.name,
                )
            )
        elif not stage.terminal and not has_out:
            problems.append(
                Problem(
                    "dead-end",
                    f"stage {stage.name!r} has no transition out but is not terminal; "
                    "add a transition or set terminal=True",
                    stage.name,
                )
            )
        if stage.gate and not any(
            t.direction is Direction.BACKWARD for t in outgoing.get(stage.name, ())
        ):
            problems.append(
                Problem(
                    "gate-without-recycle",
                    f"gate stage {stage.name!r} needs a backward transition out, "
                    "used when the receiving team rejects a handoff",
                    stage.name,
                )
            )

    if len(initials) == 1:
        reached = reach(lambda stage: outgoing.get(stage, ()), initials[0])
        for name in by_name:
            if name not in reached:
                problems.append(
                    Problem(
                        "unreachable-stage",
                        f"stage {name!r} cannot be reached from initial stage "
                        f"{initials[0]!r}; add a transition into it or remove it",
                        name,
                    )
                )
    return problems


def _as_stages(value: Iterable[Stage]) -> tuple[Stage, ...]:
    return tuple(value)


def _as_transitions(value: Iterable[Transition]) -> tuple[Transition, ...]:
    return tuple(value)


def _check_items(kind: type) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        for i, item in enumerate(value):
            if not isinstance(item, kind):
                msg = (
                    f"'{attribute.name}[{i}]' must be a {kind.__name__} "
                    f"(got {item!r} that is a {type(item).__name__})"
                )
                raise TypeError(msg)

    return check


Acceptance = Literal["stage", "handoff"]
"""Where receiving teams accept leads: at gate stages, or after every handoff."""


def _check_acceptance(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("stage", "handoff"):
        msg = (
            f"'{attribute.name}' must be 'stage' (accept at gate stages) or 'handoff' (accept "
            f"after every handoff) (got {value!r})"
        )
        raise ValueError(msg)


@attrs.frozen
class Funnel:
    """A validated funnel: stages and the legal transitions between them.

    Building a funnel checks it and raises
    :class:`~buyerjourney.errors.InvalidFunnel` listing every problem. A funnel
    is immutable; :meth:`extend` returns a new one.

    Args:
        name: A short name for the funnel (used for diagrams and class names).
        stages: The stages, in any order.
        transitions: The legal moves, in priority order for guarded events.
        description: What the funnel models.
        acceptance: Keyword only. Where a receiving team accepts a lead:
            ``"stage"`` (the default) at the gate stages, whoever handed the
            lead over and wherever; ``"handoff"`` after every handoff,
            wherever it happens (an owner rule that hands enterprise leads to
            sales at MQL makes sales accept them there), and gate flags then
            mean nothing. A lead waiting after a handoff at a stage with no
            backward transition cannot be rejected, only accepted.
    """

    name: str = attrs.field(validator=_str)
    stages: tuple[Stage, ...] = attrs.field(converter=_as_stages, validator=_check_items(Stage))
    transitions: tuple[Transition, ...] = attrs.field(
        converter=_as_transitions, validator=_check_items(Transition)
    )
    description: str = attrs.field(default="", validator=_str)
    acceptance: Acceptance = attrs.field(default="stage", validator=_check_acceptance, kw_only=True)
    _by_name: Mapping[str, Stage] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _outgoing: Mapping[str, tuple[Transition, ...]] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )
    # Derived once when the funnel is built, so that asking costs nothing on a
    # funnel of any size (engines and the verifier ask these per step).
    _allowed: Mapping[str, tuple[str, ...]] = attrs.field(
        init=False, eq=False, hash=False, repr=False
    )
    _names: tuple[str, ...] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _events: tuple[str, ...] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _guards: tuple[str, ...] = attrs.field(init=False, eq=False, hash=False, repr=False)
    _initial: Stage = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        problems = find_problems(self.stages, self.transitions)
        if self.acceptance == "stage":
            problems += [
                Problem(
                    "accept-sla-unused",
                    f"stage {s.name!r} has an accept_sla but no lead ever waits there: it is "
                    "not a gate; set gate=True, use sla= for the time in the stage, or set "
                    "the funnel's acceptance='handoff'",
                    s.name,
                )
                for s in self.stages
                if s.accept_sla is not None and not s.gate
            ]
        if problems:
            raise InvalidFunnel(self.name, problems)
        object.__setattr__(self, "_by_name", {s.name: s for s in self.stages})
        outgoing: dict[str, list[Transition]] = {s.name: [] for s in self.stages}
        for t in self.transitions:
            outgoing[t.source].append(t)
        object.__setattr__(self, "_outgoing", {k: tuple(v) for k, v in outgoing.items()})
        allowed = {k: tuple(dict.fromkeys(t.event for t in v)) for k, v in outgoing.items()}
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_names", tuple(self._by_name))
        object.__setattr__(self, "_events", tuple(dict.fromkeys(t.event for t in self.transitions)))
        guards = (t.guard for t in self.transitions if t.guard is not None)
        object.__setattr__(self, "_guards", tuple(dict.fromkeys(guards)))
        object.__setattr__(self, "_initial", next(s for s in self.stages if s.initial))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def stage(self, name: str) -> Stage:
        """Return the stage called *name*.

        Raises:
            UnknownStage: The funnel has no such stage.
        """
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise UnknownStage(name, self._by_name, funnel_name=self.name) from None

    @property
    def initial(self) -> Stage:
        """The stage every journey starts in."""
        return self._initial

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The stage names, in definition order."""
        return self._names

    @property
    def events(self) -> tuple[str, ...]:
        """Every event name, in order of first appearance."""
        return self._events

    @property
    def guards(self) -> tuple[str, ...]:
        """Every guard name the transitions refer to, in order of first appearance."""
        return self._guards

    @property
    def success_path(self) -> tuple[Stage, ...]:
        """The stages that are not exits, by rank (ties keep definition order)."""
        return tuple(sorted((s for s in self.stages if not s.kind.is_exit), key=_rank))

    @property
    def owners(self) -> Mapping[str, str | None]:
        """The default owning team of each stage (``None`` where none is set)."""
        return {s.name: s.owner for s in self.stages}

    def transitions_from(self, stage: str) -> tuple[Transition, ...]:
        """The transitions out of *stage*, in priority order.

        Raises:
            UnknownStage: The funnel has no such stage.
        """
        self.stage(stage)
        return self._outgoing[stage]

    def allowed_events(self, stage: str) -> tuple[str, ...]:
        """The events that may be sent from *stage* (before guards are asked).

        Raises:
            UnknownStage: The funnel has no such stage.
        """
        try:
            return self._allowed[stage]
        except (KeyError, TypeError):
            self.stage(stage)  # raises UnknownStage
            raise

    def extend(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        add_stages: Iterable[Stage] = (),
        replace_stages: Iterable[Stage] = (),
        remove_stages: Iterable[str] = (),
        add_transitions: Iterable[Transition] = (),
        replace_transitions: Iterable[Transition] = (),
        remove_transitions: Iterable[str | Transition] = (),
        acceptance: Acceptance | None = None,
    ) -> Funnel:
        """Return a new funnel with stages and transitions added, replaced or removed.

        All changes are applied together and the result is validated once, so
        a new stage and the transitions into it can be added in one call. The
        original funnel is unchanged.

        Args:
            name: The new funnel's name (defaults to this one's).
            description: The new description. When ``None`` (the default),
                the result keeps this funnel's description only if it keeps
                its name: a funnel renamed with *name* gets an empty
                description, so that it does not claim to be the preset it
                came from. Pass ``description=funnel.description`` to keep it.
            add_stages: Stages to add; their names must be new.
            replace_stages: Stages that replace the stage of the same name,
                keeping its position.
            remove_stages: Names of stages to remove, together with every
                transition into or out of them.
            add_transitions: Transitions to append (lowest priority).
            replace_transitions: Transitions that replace the one with the same
                source, event and guard, keeping its priority.
            remove_transitions: Event names (every transition of that event) or
                exact transitions to remove.
            acceptance: The new funnel's ``acceptance`` (defaults to this one's).

        Raises:
            InvalidFunnel: The result has problems, or a change names a stage
                or transition that does not exist.
        """
        problems: list[Problem] = []
        replaced = {s.name: s for s in replace_stages}
        removed = set(remove_stages)
        for missing in sorted((set(replaced) | removed) - set(self._by_name)):
            problems.append(
                Problem(
                    "unknown-stage",
                    f"cannot replace or remove stage {missing!r}: the funnel has no such stage",
                    missing,
                )
            )
        stages = [replaced.get(s.name, s) for s in self.stages if s.name not in removed]
        stages.extend(add_stages)

        def key(t: Transition) -> tuple[str, str, str | None]:
            return (t.source, t.event, t.guard)

        new_transitions = {key(t): t for t in replace_transitions}
        known_keys = {key(t) for t in self.transitions}
        for k in new_transitions:
            if k not in known_keys:
                problems.append(
                    Problem(
                        "unknown-transition",
                        f"cannot replace transition {k[1]!r} from {k[0]!r} (guard {k[2]!r}): "
                        "no such transition",
                        k[1],
                    )
                )
        drop_events = {r for r in remove_transitions if isinstance(r, str)}
        drop_exact = {r for r in remove_transitions if isinstance(r, Transition)}
        for r in sorted(drop_events - set(self.events)):
            problems.append(
                Problem("unknown-transition", f"cannot remove event {r!r}: no such event", r)
            )
        for t in drop_exact - set(self.transitions):
            problems.append(
                Problem(
                    "unknown-transition",
                    f"cannot remove {_transition_label(t)}: no such transition",
                    t.event,
                )
            )
        transitions = [
            new_transitions.get(key(t), t)
            for t in self.transitions
            if t.event not in drop_events
            and t not in drop_exact
            and t.source not in removed
            and t.target not in removed
        ]
        transitions.extend(add_transitions)
        new_name = self.name if name is None else name
        if problems:
            raise InvalidFunnel(new_name, problems + find_problems(stages, transitions))
        if description is None:
            description = self.description if new_name == self.name else ""
        return Funnel(
            new_name,
            stages,
            transitions,
            description,
            acceptance=self.acceptance if acceptance is None else acceptance,
        )


def _rank(stage: Stage) -> int:
    return stage.rank
