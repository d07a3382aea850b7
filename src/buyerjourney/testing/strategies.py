"""Hypothesis strategies for funnels, owner rules, leads, actors, touches and event streams.

Everything here follows Hypothesis's conventions: strategy functions are
plural nouns, their options are keyword-only and checked when the strategy is
built (a bad option raises :class:`hypothesis.errors.InvalidArgument`), and
every strategy builds valid values by construction, never by rejection
sampling, so examples shrink well.

* Funnels: :func:`funnels` (random, valid) and :func:`derived_funnels` (a
  given funnel with a few valid changes made through :meth:`Funnel.extend`);
* owners: :func:`owner_rules` for a funnel, and :func:`actors` who try to act;
* leads: :func:`lead_attributes`, the attributes owner-rule conditions and
  fit criteria look at;
* input: :func:`touches`, :func:`touch_streams` (time-ordered, optionally with
  duplicates and late touches) and :func:`raw_touch_streams` (JSON-like dicts,
  some malformed);
* guards: :func:`contexts`, :func:`event_sequences` and :func:`standard_hooks`.

Every funnel that :func:`funnels` generates names its guards from
:data:`GUARD_NAMES` and runs with :func:`standard_hooks`::

    from hypothesis import given, strategies as st
    from buyerjourney.testing import funnels, event_sequences, standard_hooks

    @given(funnels().flatmap(lambda f: st.tuples(st.just(f), event_sequences(f))))
    def test_my_pipeline(case):
        funnel, events = case
        ...

Generated funnels shrink towards two stages joined by an unguarded forward
transition; event sequences shrink towards fewer, legal events; derived
funnels shrink towards the funnel they derive from; streams shrink towards
fewer touches, one lead and no gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from buyerjourney._core.funnel import (
    RESERVED_NAMES,
    Direction,
    Funnel,
    Stage,
    StageKind,
    Transition,
    find_problems,
)
from buyerjourney._core.owners import BUILTIN_TEAMS, Condition, OwnerRule, OwnerRules
from buyerjourney._core.protocols import Context, Guard, Hooks
from buyerjourney._core.records import SYSTEM, Actor, Touch
from buyerjourney._core.table import CompiledFunnel
from buyerjourney.errors import BuyerJourneyError

__all__ = [
    "ENTERPRISE_EMPLOYEES",
    "EPOCH",
    "EXTRA_TEAMS",
    "GUARD_NAMES",
    "LEAD_ATTRIBUTES",
    "OWNERS",
    "PEOPLE",
    "SCORE_THRESHOLDS",
    "SOLO_PERSON",
    "TOUCH_KINDS",
    "UNKNOWN_EVENTS",
    "actors",
    "contexts",
    "derived_funnels",
    "event_sequences",
    "funnels",
    "lead_attributes",
    "owner_rules",
    "raw_touch_streams",
    "standard_hooks",
    "touch_streams",
    "touches",
]

GUARD_NAMES: tuple[str, ...] = (
    "always",
    "never",
    "score_at_least_10",
    "score_at_least_50",
    "is_enterprise",
)
"""The guard names :func:`funnels` uses by default; :func:`standard_hooks` registers them.

* ``always`` / ``never``: ``True`` / ``False`` whatever the context;
* ``score_at_least_10`` / ``score_at_least_50``: ``ctx.score >= 10`` / ``>= 50``;
* ``is_enterprise``: ``ctx.attributes["employees"] >= 1000`` (0 when absent).
"""

SCORE_THRESHOLDS: tuple[float, ...] = (10.0, 50.0)
"""The score thresholds of the standard guards; :func:`contexts` draws scores around them."""

ENTERPRISE_EMPLOYEES = 1000
"""From this many employees (``ctx.attributes["employees"]``) a lead is an enterprise."""

OWNERS: tuple[str, ...] = ("marketing", "sales")
"""The teams :func:`funnels` assigns stages to."""

UNKNOWN_EVENTS: tuple[str, ...] = ("no_such_event", "send", "stage", "")
"""Event names that no generated funnel defines; some are attributes of a machine."""

LEAD_ATTRIBUTES: Mapping[str, tuple[str | int, ...]] = MappingProxyType(
    {
        "segment": ("smb", "mid_market", "enterprise"),
        "region": ("amer", "emea", "apac"),
        "employees": (0, 10, 49, 50, 199, 200, 999, 1000, 1001, 50_000),
        "channel": ("organic", "paid", "partner", "referral"),
        "country": ("BR", "DE", "US"),
    }
)
"""The lead attributes :func:`lead_attributes` draws, with their typical values.

``employees`` is a number (drawn often on the boundaries listed, where
``gte`` / ``lt`` conditions and :data:`ENTERPRISE_EMPLOYEES` switch); the
others are categories that ``in`` / ``not_in`` conditions and fit criteria
match. :func:`owner_rules` writes its conditions on these keys and values.
"""

EXTRA_TEAMS: tuple[str, ...] = ("customer_success", "partners")
"""Teams :func:`owner_rules` may add to the built-in ``marketing`` and ``sales``."""

PEOPLE: tuple[str, ...] = ("founder", "rep_a", "rep_b")
"""Person ids :func:`actors` draws (besides the members of the owner rules)."""

SOLO_PERSON = "founder"
"""The one person who holds every team in the solo mode of :func:`owner_rules`."""

TOUCH_KINDS: tuple[str, ...] = (
    "page_view",
    "email_open",
    "email_click",
    "pricing_view",
    "content_download",
    "form_submit",
    "webinar_attended",
    "demo_request",
)
"""The touch kinds :func:`touches` and :func:`touch_streams` draw by default.

They are the kinds :func:`buyerjourney.default_scorer` gives points
for. Add a funnel's events (``(*TOUCH_KINDS, *funnel.events)``) so that event
policies such as :class:`~buyerjourney.TouchKindPolicy` fire.
"""

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
"""Where generated streams start by default (timezone-aware, UTC)."""

_BOUNDARY_SCORES: tuple[float, ...] = (0.0, 9.0, 9.999, 10.0, 10.001, 49.999, 50.0, 50.001, 100.0)
_REASONS: tuple[str, ...] = ("bad timing", "", "   ", "no budget this quarter")
_EVENT_NAMES: tuple[str, ...] = tuple(f"e{i}" for i in range(8))
_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.just("\n"), max_size=40)
_FUNNEL_NAMES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
_BOOLEANS = st.booleans()
_EVENTS = st.sampled_from(_EVENT_NAMES)
_OWNERS = st.sampled_from((None, *OWNERS))  # one choice: shrinks to None reliably
_SUCCESS_KINDS = st.sampled_from((StageKind.OPEN, StageKind.WON, StageKind.AFTER_PURCHASE))
_EXIT_KINDS = st.sampled_from((StageKind.LOST, StageKind.DISQUALIFIED))
_SLAS = st.none() | st.integers(1, 24 * 90).map(lambda hours: timedelta(hours=hours))
_MORE_EDGES = st.integers(0, 6)
_REASONS_OR_NONE = st.none() | st.sampled_from(_REASONS)
_KINDS_OF_EVENT = st.sampled_from(("legal", "any", "unknown"))
_UNKNOWN = st.sampled_from(UNKNOWN_EVENTS)


def _always(ctx: Context) -> bool:
    return True


def _never(ctx: Context) -> bool:
    return False


def _score_at_least(threshold: float) -> Guard:
    def guard(ctx: Context) -> bool:
        return bool(ctx.score >= threshold)

    guard.__name__ = f"score_at_least_{threshold:g}"
    return guard


def _is_enterprise(ctx: Context) -> bool:
    return bool(ctx.attributes.get("employees", 0) >= ENTERPRISE_EMPLOYEES)


def standard_hooks() -> Hooks:
    """A new registry with a deterministic guard for every name in :data:`GUARD_NAMES`."""
    return Hooks(
        {
            "always": _always,
            "never": _never,
            "score_at_least_10": _score_at_least(SCORE_THRESHOLDS[0]),
            "score_at_least_50": _score_at_least(SCORE_THRESHOLDS[1]),
            "is_enterprise": _is_enterprise,
        }
    )


def _check_size(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"{name} must be an int >= {minimum} (got {value!r})"
        raise InvalidArgument(msg)


def _check_guard_names(guard_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(guard_names)
    if not names or not all(isinstance(n, str) and n for n in names):
        msg = f"guard_names must be a non-empty sequence of non-empty str (got {guard_names!r})"
        raise InvalidArgument(msg)
    return tuple(dict.fromkeys(names))


@attrs.define
class _Edge:
    source: int
    target: int
    direction: Direction
    guard: str | None = None
    event: str = ""


def funnels(
    *,
    min_stages: int = 2,
    max_stages: int = 8,
    guards: bool = True,
    slas: bool = True,
    gates: bool = True,
    exits: bool = True,
    backward: bool = True,
    guard_names: Sequence[str] = GUARD_NAMES,
) -> st.SearchStrategy[Funnel]:
    """Generate valid funnels.

    A generated funnel has success-path stages ``s0``, ``s1`` ... (``s0`` is
    initial; ranks 10, 20 ...) reached by a spanning tree of forward
    transitions, possibly exit stages ``x0``, ``x1`` (lost or disqualified,
    terminal), extra forward, backward and exit transitions, events ``e0`` ...
    shared across sources, guarded alternatives for one (stage, event) with
    any unguarded one last, terminal success stages, gates with a backward
    transition out, owners from :data:`OWNERS` and SLAs on non-terminal stages.

    Args:
        min_stages: The fewest stages (at least 1).
        max_stages: The most stages (at least *min_stages*).
        guards: Whether transitions may have guards.
        slas: Whether non-terminal stages may have SLAs.
        gates: Whether stages may be gates (needs *backward*).
        exits: Whether to generate exit stages and exit transitions.
        backward: Whether to generate backward transitions.
        guard_names: The guard names to use (register a guard for each).

    Raises:
        InvalidArgument: An option is out of range.
    """
    _check_size("min_stages", min_stages, 1)
    _check_size("max_stages", max_stages, min_stages)
    names = _check_guard_names(guard_names)
    options = _Options(guards, slas, gates and backward, exits, backward, names)
    sizes = st.integers(min_stages, max_stages)

    @st.composite
    def build(draw: st.DrawFn) -> Funnel:
        # A composite rather than flatmap: the size and the funnel then shrink together.
        return draw(_funnels_of_size(draw(sizes), options))

    return build()


@attrs.frozen
class _Options:
    guards: bool
    slas: bool
    gates: bool
    exits: bool
    backward: bool
    guard_names: tuple[str, ...]


@lru_cache(maxsize=256)
def _funnels_of_size(n: int, options: _Options) -> st.SearchStrategy[Funnel]:
    """The funnels of *n* stages (cached: Hypothesis validates each new strategy object)."""
    guard_choice = st.none() | st.sampled_from(options.guard_names)

    @st.composite
    def build(draw: st.DrawFn) -> Funnel:
        n_exits = draw(st.integers(0, min(2, n - 1))) if options.exits else 0
        m = n - n_exits
        parents = [draw(st.integers(0, j - 1)) for j in range(1, m)]
        edges = [_Edge(p, j, Direction.FORWARD) for j, p in enumerate(parents, start=1)]
        has_child = set(parents)

        def ways_out(i: int) -> list[Direction]:
            ways = [Direction.FORWARD] if i < m - 1 else []
            if options.backward and i > 0:
                ways.append(Direction.BACKWARD)
            if n_exits:
                ways.append(Direction.EXIT)
            return ways

        terminal = [False] * m
        for i in range(m):
            if i in has_child or (m == 1 and n_exits):
                continue  # stays open: it has a way out, or exits must be reachable
            # False (the simplest choice) makes the stage terminal: shrinks to fewer moves.
            terminal[i] = not draw(_BOOLEANS) if ways_out(i) else True
        open_stages = [i for i in range(m) if not terminal[i]]

        def edge_out(i: int, direction: Direction) -> _Edge:
            if direction is Direction.FORWARD:
                return _Edge(i, draw(st.integers(i + 1, m - 1)), direction)
            if direction is Direction.BACKWARD:
                return _Edge(i, draw(st.integers(0, i - 1)), direction)
            return _Edge(i, m + draw(st.integers(0, n_exits - 1)), direction)

        for i in open_stages:
            if i not in has_child:
                edges.append(edge_out(i, draw(st.sampled_from(ways_out(i)))))
        for x in range(m, n):
            if not any(e.target == x for e in edges):
                edges.append(_Edge(draw(st.sampled_from(open_stages)), x, Direction.EXIT))
        gate = [False] * m
        if options.gates:
            for i in open_stages:
                if i > 0 and draw(_BOOLEANS):
                    gate[i] = True
                    if not any(e.source == i and e.direction is Direction.BACKWARD for e in edges):
                        edges.append(edge_out(i, Direction.BACKWARD))
        if open_stages:
            for _ in range(draw(_MORE_EDGES)):
                source = draw(st.sampled_from(open_stages))
                edges.append(edge_out(source, draw(st.sampled_from(ways_out(source)))))

        for edge in edges:
            edge.event = draw(_EVENTS)
            if options.guards:
                edge.guard = draw(guard_choice)
        transitions = _transitions(edges, m)

        stages = []
        for i in range(n):
            exit_stage = i >= m
            is_terminal = exit_stage or terminal[i]
            stages.append(
                Stage(
                    _stage_name(i, m),
                    rank=0 if exit_stage else 10 * (i + 1),
                    kind=draw(_EXIT_KINDS if exit_stage else _SUCCESS_KINDS),
                    sla=None if is_terminal or not options.slas else draw(_SLAS),
                    description=draw(_TEXT),
                    owner=draw(_OWNERS),
                    initial=i == 0,
                    terminal=is_terminal,
                    gate=not exit_stage and gate[i],
                )
            )
        name = draw(_FUNNEL_NAMES)
        return Funnel(name or "generated", stages, transitions, draw(_TEXT))

    return build()


def _stage_name(i: int, m: int) -> str:
    return f"s{i}" if i < m else f"x{i - m}"


def _transitions(edges: list[_Edge], m: int) -> list[Transition]:
    """Group edges by (source, event), giving each edge an event that keeps its group valid.

    Within a group the guards differ and at most one edge is unguarded, and it
    goes last. An edge that fits no group of its drawn event takes the next
    event name that it fits.
    """
    groups: dict[tuple[int, str], list[_Edge]] = {}
    spare = len(_EVENT_NAMES)
    for edge in edges:
        event = edge.event
        candidates = [event, *(e for e in _EVENT_NAMES if e != event)]
        for candidate in candidates:
            if _fits(groups.get((edge.source, candidate), []), edge):
                break
        else:
            candidate = f"e{spare}"
            spare += 1
        edge.event = candidate
        groups.setdefault((edge.source, candidate), []).append(edge)
    transitions = []
    for group in groups.values():
        ordered = [e for e in group if e.guard is not None] + [e for e in group if e.guard is None]
        for e in ordered:
            transitions.append(
                Transition(
                    e.event,
                    _stage_name(e.source, m),
                    _stage_name(e.target, m),
                    e.direction,
                    e.guard,
                )
            )
    return transitions


def _fits(group: list[_Edge], edge: _Edge) -> bool:
    if edge.guard is None:
        return all(e.guard is not None for e in group)
    return all(e.guard != edge.guard for e in group)


def _scores() -> st.SearchStrategy[float]:
    return st.sampled_from(_BOUNDARY_SCORES) | st.floats(
        min_value=-10.0, max_value=1000.0, allow_nan=False
    )


def lead_attributes(*, keys: Sequence[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Generate lead attributes: dicts whose keys are some of :data:`LEAD_ATTRIBUTES`.

    Each key is present or not; a category takes one of its listed values,
    ``employees`` a listed boundary (0, 49, 50, 199, 200, 999, 1000 ...) or any
    count up to 100 000. Dicts shrink towards ``{}``.

    Args:
        keys: The keys that may appear (default: every key of
            :data:`LEAD_ATTRIBUTES`).

    Raises:
        InvalidArgument: A key is not in :data:`LEAD_ATTRIBUTES`.
    """
    chosen = tuple(LEAD_ATTRIBUTES) if keys is None else _check_keys(keys)
    return st.fixed_dictionaries({}, optional={key: _values_of(key) for key in chosen})


def _check_keys(keys: Sequence[str]) -> tuple[str, ...]:
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        msg = f"keys must be a sequence of attribute names, not {keys!r}"
        raise InvalidArgument(msg)
    unknown = [k for k in keys if k not in LEAD_ATTRIBUTES]
    if unknown:
        msg = (
            f"keys {unknown!r} are not lead attributes this module knows; "
            f"choose from {', '.join(LEAD_ATTRIBUTES)}"
        )
        raise InvalidArgument(msg)
    return tuple(dict.fromkeys(keys))


def _values_of(key: str) -> st.SearchStrategy[Any]:
    listed = st.sampled_from(LEAD_ATTRIBUTES[key])
    return listed | st.integers(0, 100_000) if key == "employees" else listed


def contexts(*, funnel: Funnel | None = None) -> st.SearchStrategy[Context]:
    """Generate guard contexts, with scores and company sizes on the guards' boundaries.

    Scores are often exactly at, just under or just over the thresholds of
    :data:`SCORE_THRESHOLDS` (9.999, 10, 10.001, 49.999, 50 ...);
    ``attributes["employees"]`` is often 999, 1000 or 1001.

    Args:
        funnel: When given, ``stage`` and ``event`` are drawn from its stages
            and events; otherwise they are left empty.
    """
    if funnel is not None and not isinstance(funnel, Funnel):
        msg = f"funnel must be a buyerjourney.Funnel or None (got {funnel!r})"
        raise InvalidArgument(msg)
    stage = st.sampled_from(funnel.stage_names) if funnel is not None else st.just("")
    event = st.sampled_from(funnel.events) if funnel is not None and funnel.events else st.just("")
    return st.builds(
        Context,
        lead_id=st.sampled_from(("lead-1", "lead-2", "")) | st.text("abc123-", max_size=8),
        stage=stage,
        event=event,
        attributes=lead_attributes(),
        score=_scores(),
        at=st.none()
        | st.datetimes(
            min_value=datetime(2020, 1, 1),
            max_value=datetime(2030, 1, 1),
            timezones=st.just(timezone.utc),
        ),
    )


def _simulator(
    funnel: Funnel, hooks: Hooks | None
) -> Callable[[str, str, Context, str | None], str]:
    """Return a function that steps *funnel* as the engines would, for steering generation."""
    if hooks is None and set(funnel.guards) <= set(GUARD_NAMES):
        hooks = standard_hooks()
    if hooks is None:
        hooks = Hooks(dict.fromkeys(funnel.guards, _always))
    try:
        table = CompiledFunnel(funnel, hooks)
    except BuyerJourneyError:
        table = CompiledFunnel(funnel, Hooks(dict.fromkeys(funnel.guards, _always)))

    def step(stage: str, event: str, ctx: Context, reason: str | None) -> str:
        try:
            return table.step(stage, event, ctx, reason=reason).target
        except BuyerJourneyError:
            return stage

    return step


def event_sequences(
    funnel: Funnel,
    *,
    max_size: int = 30,
    stage: str | None = None,
    hooks: Hooks | None = None,
) -> st.SearchStrategy[list[tuple[str, Context, str | None]]]:
    """Generate streams of ``(event, ctx, reason)`` to send to a journey of *funnel*.

    Most events are legal where the journey is at that point (generation
    follows the journey, so deep stages are reached); the rest are events of
    the funnel that may be illegal there, and unknown names from
    :data:`UNKNOWN_EVENTS`. Reasons are ``None``, blank or real, so backward
    moves are tried with and without one. Each context carries the stage the
    journey is expected in and the event.

    Args:
        funnel: The funnel the events are for.
        max_size: The most events in a stream.
        stage: Where the journey starts (default: the initial stage).
        hooks: The guards used to follow the journey while generating
            (default: :func:`standard_hooks` when the funnel only uses
            :data:`GUARD_NAMES`, else guards that always pass). A guard that
            fails leaves the journey where it is.

    Raises:
        InvalidArgument: *max_size* is negative or *stage* is not in the funnel.
    """
    if not isinstance(funnel, Funnel):
        msg = f"funnel must be a buyerjourney.Funnel (got {funnel!r})"
        raise InvalidArgument(msg)
    _check_size("max_size", max_size, 0)
    if stage is not None and stage not in funnel:
        msg = f"stage {stage!r} is not a stage of funnel {funnel.name!r}"
        raise InvalidArgument(msg)
    start = stage if stage is not None else funnel.initial.name
    step = _simulator(funnel, hooks)
    legal_from = {
        name: st.sampled_from(events) if (events := funnel.allowed_events(name)) else None
        for name in funnel.stage_names
    }
    any_event = st.sampled_from(funnel.events or UNKNOWN_EVENTS)
    steps_count = st.integers(0, max_size)

    @st.composite
    def build(draw: st.DrawFn) -> list[tuple[str, Context, str | None]]:
        current = start
        steps: list[tuple[str, Context, str | None]] = []
        for _ in range(draw(steps_count)):
            legal = legal_from[current]
            kind = draw(_KINDS_OF_EVENT)
            if kind == "legal" and legal is not None:
                event = draw(legal)
            elif kind == "unknown":
                event = draw(_UNKNOWN)
            else:
                event = draw(any_event)
            ctx = attrs.evolve(draw(_CONTEXTS), stage=current, event=event)
            reason = draw(_REASONS_OR_NONE)
            steps.append((event, ctx, reason))
            current = step(current, event, ctx, reason)
        return steps

    return build()


_CONTEXTS = contexts()


# ---------------------------------------------------------------- derived funnels

_SLA_CHOICES: tuple[timedelta, ...] = tuple(timedelta(hours=h) for h in (24, 72, 168, 720))
_ADDED = "Added by derived_funnels()."

_Change = Callable[[st.DrawFn, Funnel, tuple[str, ...]], Funnel]


def derived_funnels(
    funnel: Funnel, *, max_changes: int = 3, guard_names: Sequence[str] = GUARD_NAMES
) -> st.SearchStrategy[Funnel]:
    """Generate valid funnels made from *funnel* by a few changes through :meth:`Funnel.extend`.

    Use it to check that a pipeline still holds when the funnel it was built
    for is customised. Each change keeps the funnel valid by construction:

    * **insert a stage** between two ranks, with a forward transition in from
      an open stage and one out to a higher stage (or as a new terminal stage
      on top), sometimes as a gate with a recycle transition back, with an SLA
      and the owner of a neighbour;
    * **add an exit** (a new lost or disqualified stage, or an existing one)
      reached from one to three open stages by a new event;
    * **add a guard** from *guard_names* to an unguarded transition (it then
      comes last among the transitions of its stage and event);
    * **add a backward** (recycle) transition to a lower-ranked stage;
    * **set an SLA** on an open stage;
    * **remove a transition** that the funnel can do without (every stage
      stays reachable, no open stage becomes a dead end, every gate keeps its
      recycle transition).

    New stages are called ``extra1``, ``dropped1`` ...; new events
    ``enter_extra1``, ``leave_extra1``, ``drop1``, ``recycle1`` ...: names the
    funnel does not use yet. New stages take the owner of a neighbouring stage, so owner rules for
    the original funnel stay complete when every original stage has an owner.
    Derived funnels shrink towards *funnel* itself.

    Args:
        funnel: The funnel to start from.
        max_changes: The most changes to make (0 gives *funnel* back).
        guard_names: The guards that added guards name (register a guard for
            each; :func:`standard_hooks` covers the default).

    Raises:
        InvalidArgument: *funnel* is not a funnel, or an option is out of range.
    """
    if not isinstance(funnel, Funnel):
        msg = f"funnel must be a buyerjourney.Funnel (got {funnel!r})"
        raise InvalidArgument(msg)
    _check_size("max_changes", max_changes, 0)
    names = _check_guard_names(guard_names)

    @st.composite
    def build(draw: st.DrawFn) -> Funnel:
        current = funnel
        for _ in range(draw(st.integers(0, max_changes))):
            changes = _changes(current, names)
            if not changes:
                break
            change = draw(st.sampled_from(changes))
            current = change(draw, current, names)
        return current

    return build()


def _changes(funnel: Funnel, guard_names: tuple[str, ...]) -> list[_Change]:
    """The changes that can be made to *funnel*, simplest first."""
    changes: list[_Change] = []
    if _open_success_stages(funnel):
        changes.append(_insert_stage)
    if _non_terminal(funnel):
        changes.append(_add_exit)
    if _guardable(funnel, guard_names):
        changes.append(_add_guard)
    if _recyclable(funnel):
        changes.append(_add_backward)
    if _non_terminal(funnel):
        changes.append(_set_sla)
    if _removable(funnel):
        changes.append(_remove_transition)
    return changes


def _non_terminal(funnel: Funnel) -> list[Stage]:
    return [s for s in funnel.stages if not s.terminal]


def _open_success_stages(funnel: Funnel) -> list[Stage]:
    return [s for s in funnel.stages if not s.terminal and not s.kind.is_exit]


def _taken(funnel: Funnel) -> set[str]:
    return {*funnel.stage_names, *funnel.events}


def _fresh(taken: set[str], stem: str) -> str:
    """The first of ``stem1``, ``stem2`` ... that is neither taken nor reserved; now taken."""
    k = 1
    while f"{stem}{k}" in taken or f"{stem}{k}" in RESERVED_NAMES:
        k += 1
    name = f"{stem}{k}"
    taken.add(name)
    return name


def _unused(taken: set[str], name: str) -> str:
    """*name*, or ``name_2``, ``name_3`` ... if it is taken or reserved; now taken."""
    if name in taken or name in RESERVED_NAMES:
        return _fresh(taken, f"{name}_")
    taken.add(name)
    return name


def _insert_stage(draw: st.DrawFn, funnel: Funnel, guard_names: tuple[str, ...]) -> Funnel:
    below = draw(st.sampled_from(_open_success_stages(funnel)))
    above_options = [s for s in funnel.success_path if s.rank >= below.rank + 2]
    above = draw(st.none() | st.sampled_from(above_options)) if above_options else None
    taken = _taken(funnel)
    name = _fresh(taken, "extra")
    if above is None:
        rank = draw(st.integers(below.rank + 1, below.rank + 20))
    else:
        rank = draw(st.integers(below.rank + 1, above.rank - 1))
    terminal = above is None
    gate = not terminal and draw(_BOOLEANS)
    owners = [s.owner for s in (below, above) if s is not None and s.owner is not None]
    stage = Stage(
        name,
        rank,
        StageKind.OPEN if below.kind is StageKind.OPEN else StageKind.AFTER_PURCHASE,
        sla=None if terminal else draw(st.none() | st.sampled_from(_SLA_CHOICES)),
        description=_ADDED,
        owner=draw(st.sampled_from(owners)) if owners else None,
        terminal=terminal,
        gate=gate,
    )
    transitions = [Transition(_unused(taken, f"enter_{name}"), below.name, name)]
    if above is not None:
        transitions.append(Transition(_unused(taken, f"leave_{name}"), name, above.name))
    if gate:
        recycle = _unused(taken, f"recycle_{name}")
        transitions.append(Transition(recycle, name, below.name, Direction.BACKWARD))
    return funnel.extend(add_stages=[stage], add_transitions=transitions)


def _add_exit(draw: st.DrawFn, funnel: Funnel, guard_names: tuple[str, ...]) -> Funnel:
    exits = [s for s in funnel.stages if s.kind.is_exit and s.terminal]
    target = draw(st.none() | st.sampled_from(exits)) if exits else None
    sources = draw(st.lists(st.sampled_from(_non_terminal(funnel)), min_size=1, max_size=3))
    sources = list(dict.fromkeys(sources))
    taken = _taken(funnel)
    new_stages = []
    if target is None:
        target = Stage(
            _fresh(taken, "dropped"),
            0,
            draw(_EXIT_KINDS),
            description=_ADDED,
            owner=sources[0].owner,
        )
        new_stages.append(target)
    event = _fresh(taken, "drop")
    transitions = [Transition(event, s.name, target.name, Direction.EXIT) for s in sources]
    return funnel.extend(add_stages=new_stages, add_transitions=transitions)


def _guardable(
    funnel: Funnel, guard_names: tuple[str, ...]
) -> list[tuple[Transition, tuple[str, ...]]]:
    """Unguarded transitions, each with the guards its (source, event) group does not use."""
    out = []
    for t in funnel.transitions:
        if t.guard is not None:
            continue
        used = {
            other.guard for other in funnel.transitions_from(t.source) if other.event == t.event
        }
        free = tuple(g for g in guard_names if g not in used)
        if free:
            out.append((t, free))
    return out


def _add_guard(draw: st.DrawFn, funnel: Funnel, guard_names: tuple[str, ...]) -> Funnel:
    transition, free = draw(st.sampled_from(_guardable(funnel, guard_names)))
    guarded = attrs.evolve(transition, guard=draw(st.sampled_from(free)))
    return funnel.extend(remove_transitions=[transition], add_transitions=[guarded])


def _recyclable(funnel: Funnel) -> list[Stage]:
    """Open success-path stages with a lower-ranked success-path stage to recycle to."""
    lowest = min((s.rank for s in funnel.success_path), default=0)
    return [s for s in _open_success_stages(funnel) if s.rank > lowest]


def _add_backward(draw: st.DrawFn, funnel: Funnel, guard_names: tuple[str, ...]) -> Funnel:
    source = draw(st.sampled_from(_recyclable(funnel)))
    target = draw(st.sampled_from([s for s in funnel.success_path if s.rank < source.rank]))
    event = _fresh(_taken(funnel), "recycle")
    return funnel.extend(
        add_transitions=[Transition(event, source.name, target.name, Direction.BACKWARD)]
    )


def _set_sla(draw: st.DrawFn, funnel: Funnel, guard_names: tuple[str, ...]) -> Funnel:
    stage = draw(st.sampled_from(_non_terminal(funnel)))
    sla = draw(st.sampled_from(_SLA_CHOICES))
    return funnel.extend(replace_stages=[attrs.evolve(stage, sla=sla)])


def _removable(funnel: Funnel) -> list[Transition]:
    """The transitions whose removal leaves a valid funnel."""
    return [
        t
        for t in funnel.transitions
        if not find_problems(funnel.stages, [x for x in funnel.transitions if x != t])
    ]


def _remove_transition(draw: st.DrawFn, funnel: Funnel, guard_names: tuple[str, ...]) -> Funnel:
    return funnel.extend(remove_transitions=[draw(st.sampled_from(_removable(funnel)))])


# ---------------------------------------------------------------- owners and actors


def _condition_strategy(key: str) -> st.SearchStrategy[Condition]:
    values = st.sampled_from(LEAD_ATTRIBUTES[key])
    listed = st.lists(values, min_size=1, max_size=3, unique=True).map(tuple)
    membership = st.builds(Condition, st.just(key), listed, st.sampled_from(("in", "not_in")))
    if key != "employees":
        return membership
    bound = st.builds(
        Condition, st.just(key), values.map(lambda v: (v,)), st.sampled_from(("gte", "lt"))
    )
    return bound | membership


_CONDITIONS = st.one_of(*(_condition_strategy(key) for key in LEAD_ATTRIBUTES))


def _check_teams(teams: Sequence[str]) -> tuple[str, ...]:
    if isinstance(teams, str) or not all(isinstance(t, str) and t.isidentifier() for t in teams):
        msg = f"teams must be a sequence of team names (identifiers), not {teams!r}"
        raise InvalidArgument(msg)
    return tuple(dict.fromkeys(teams))


def owner_rules(
    funnel: Funnel,
    *,
    solo: bool | None = None,
    teams: Sequence[str] = EXTRA_TEAMS,
    max_overrides: int = 3,
) -> st.SearchStrategy[OwnerRules]:
    """Generate valid owner rules for *funnel*.

    * **Defaults**: every stage gets one, its own ``owner`` or (sometimes, and
      always when the stage has none) a team drawn from the built-in teams,
      the funnel's teams and some of *teams*.
    * **Overrides**: up to *max_overrides* rules for some stages (or every
      stage), each with up to two :class:`~buyerjourney.Condition` on
      the keys of :data:`LEAD_ATTRIBUTES` (``segment in [...]``,
      ``employees >= 200`` ...). A drawn rule that would make the set invalid
      (a duplicate, or one that an earlier rule shadows) is left out, so the
      result always passes :meth:`OwnerRules.validate`.
    * **Members**: in solo mode :data:`SOLO_PERSON` holds every team; otherwise
      up to two of :data:`PEOPLE` hold some teams, never all of them.

    Rules shrink towards the funnel's own owners, no override and no member.

    Args:
        funnel: The funnel the rules are for.
        solo: ``True`` for solo mode only, ``False`` never, ``None`` for both.
        teams: Teams beyond ``marketing``, ``sales`` and the funnel's own
            that the rules may use (identifiers).
        max_overrides: The most overrides to draw.

    Raises:
        InvalidArgument: *funnel* is not a funnel, or an option is invalid.
    """
    if not isinstance(funnel, Funnel):
        msg = f"funnel must be a buyerjourney.Funnel (got {funnel!r})"
        raise InvalidArgument(msg)
    if solo not in (None, True, False):
        msg = f"solo must be True, False or None (got {solo!r})"
        raise InvalidArgument(msg)
    extra_teams = _check_teams(teams)
    _check_size("max_overrides", max_overrides, 0)
    stage_names = st.sampled_from(funnel.stage_names)
    funnel_teams = tuple(dict.fromkeys(s.owner for s in funnel.stages if s.owner is not None))

    @st.composite
    def build(draw: st.DrawFn) -> OwnerRules:
        extra = tuple(draw(st.lists(st.sampled_from(extra_teams), unique=True))) if teams else ()
        pool = tuple(dict.fromkeys((*BUILTIN_TEAMS, *funnel_teams, *extra)))
        team = st.sampled_from(pool)
        defaults = {}
        for stage in funnel.stages:
            if stage.owner is None or draw(_BOOLEANS):
                defaults[stage.name] = draw(team)
        merged = {**{s.name: s.owner for s in funnel.stages if s.owner is not None}, **defaults}
        overrides: list[OwnerRule] = []
        for _ in range(draw(st.integers(0, max_overrides))):
            rule = OwnerRule(
                draw(team),
                tuple(draw(st.lists(stage_names, max_size=3, unique=True))),
                tuple(draw(st.lists(_CONDITIONS, max_size=2))),
            )
            candidate = OwnerRules(merged, (*overrides, rule), pool)
            if not candidate.problems(funnel):
                overrides.append(rule)
        is_solo = draw(_BOOLEANS) if solo is None else solo
        members: dict[str, tuple[str, ...]] = {}
        if is_solo:
            members[SOLO_PERSON] = pool
        else:
            for person in draw(st.lists(st.sampled_from(PEOPLE), max_size=2, unique=True)):
                held = st.lists(team, min_size=1, max_size=len(pool) - 1, unique=True)
                members[person] = tuple(draw(held))
        return OwnerRules.for_funnel(
            funnel, overrides=overrides, teams=extra, members=members, defaults=defaults
        )

    return build()


def actors(
    *, owner_rules: OwnerRules | None = None, system: bool = False
) -> st.SearchStrategy[Actor]:
    """Generate the people (and possibly the system) who try to act on journeys.

    A person is one of :data:`PEOPLE` or a member of *owner_rules* (the solo
    person included), acting for one of the rules' teams or for no team
    (``team=None``: only the teams the person holds as a member count). Most
    such actors may not act on a given journey, which is the point: the
    engine must refuse them.

    Args:
        owner_rules: The rules whose teams and members to draw from (default:
            the built-in teams and no members).
        system: Whether to also draw :data:`~buyerjourney.SYSTEM`, which may
            always act (about half of the actors then).

    Raises:
        InvalidArgument: *owner_rules* is not an :class:`~buyerjourney.OwnerRules`.
    """
    if owner_rules is not None and not isinstance(owner_rules, OwnerRules):
        msg = f"owner_rules must be buyerjourney.OwnerRules or None (got {owner_rules!r})"
        raise InvalidArgument(msg)
    members = tuple(owner_rules.members) if owner_rules is not None else ()
    names = tuple(dict.fromkeys((*PEOPLE, *members)))
    teams = owner_rules.teams if owner_rules is not None else BUILTIN_TEAMS
    people = st.builds(Actor, st.sampled_from(names), st.none() | st.sampled_from(teams))
    return st.just(SYSTEM) | people if system else people


# ---------------------------------------------------------------- touches and streams

_PROPERTIES = st.fixed_dictionaries(
    {},
    optional={
        "campaign": st.sampled_from(("spring", "summer", "webinar")),
        "page": st.sampled_from(("/", "/pricing", "/blog")),
    },
)
_STREAM_STEP = st.integers(0, 9)
"""What comes next in a stream: 0-7 an on-time touch, 8 a duplicate, 9 a late touch."""
_DUPLICATE, _LATE = 8, 9


def _check_names(name: str, value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not value or not all(isinstance(v, str) and v for v in value):
        msg = f"{name} must be a non-empty sequence of non-empty str (got {value!r})"
        raise InvalidArgument(msg)
    return tuple(dict.fromkeys(value))


def _check_time(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        msg = f"{name} must be a timezone-aware datetime (got {value!r})"
        raise InvalidArgument(msg)
    return value


def _check_gap(value: timedelta) -> int:
    if not isinstance(value, timedelta) or value < timedelta(seconds=1):
        msg = f"max_gap must be a datetime.timedelta of at least one second (got {value!r})"
        raise InvalidArgument(msg)
    return int(value.total_seconds())


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def touches(
    *,
    lead_ids: Sequence[str] = ("lead-1", "lead-2", "lead-3"),
    kinds: Sequence[str] = TOUCH_KINDS,
    start: datetime = EPOCH,
    end: datetime | None = None,
) -> st.SearchStrategy[Touch]:
    """Generate single touches, each with some properties and lead attributes.

    Ids are ``t0`` … ``t1000000`` and are not unique across draws; use
    :func:`touch_streams` for streams with unique ids in time order.

    Args:
        lead_ids: The leads the touches belong to.
        kinds: The touch kinds (default :data:`TOUCH_KINDS`).
        start: The earliest time (timezone-aware; times are drawn in UTC).
        end: The latest time (default: a year after *start*).

    Raises:
        InvalidArgument: An option is empty, naive, or *end* is before *start*.
    """
    leads = _check_names("lead_ids", lead_ids)
    kind_names = _check_names("kinds", kinds)
    start = _check_time("start", start)
    end = start + timedelta(days=365) if end is None else _check_time("end", end)
    if end < start:
        msg = f"end ({end.isoformat()}) must not be before start ({start.isoformat()})"
        raise InvalidArgument(msg)
    return st.builds(
        Touch,
        touch_id=st.integers(0, 10**6).map(lambda i: f"t{i}"),
        lead_id=st.sampled_from(leads),
        at=st.datetimes(_naive_utc(start), _naive_utc(end), timezones=st.just(timezone.utc)),
        kind=st.sampled_from(kind_names),
        properties=_PROPERTIES,
        attributes=lead_attributes(),
    )


def _check_leads(leads: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(leads, tuple)
        or len(leads) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in leads)
        or not 1 <= leads[0] <= leads[1]
    ):
        msg = f"leads must be a (min, max) tuple of ints with 1 <= min <= max (got {leads!r})"
        raise InvalidArgument(msg)
    return leads


def touch_streams(
    *,
    leads: tuple[int, int] = (1, 5),
    max_size: int = 40,
    kinds: Sequence[str] | None = None,
    duplicates: bool = False,
    late: bool = False,
    start: datetime = EPOCH,
    max_gap: timedelta = timedelta(days=2),
) -> st.SearchStrategy[list[Touch]]:
    """Generate streams of touches for many leads, in time order.

    The *i*-th touch of a stream has id ``t<i>`` and belongs to one of the
    stream's leads ``lead-1`` … ``lead-<n>``; each touch is up to *max_gap*
    after the one before (often at the same time), so without *duplicates*
    and *late* a stream is exactly what :meth:`Engine.ingest` accepts whole.

    * With ``duplicates=True``, about one touch in ten re-sends an earlier
      on-time touch: same id, lead, kind, properties and attributes, at the
      stream's current time (a retried delivery). The engine quarantines it.
    * With ``late=True``, about one touch in ten is late: it has a new id but
      is up to *max_gap* (at least a second) earlier than the touch before it.
      The engine quarantines it, and the stream's time goes on from where it
      was.

    For JSON-like input, some of it malformed, see :func:`raw_touch_streams`.

    Args:
        leads: The fewest and the most distinct leads, as ``(min, max)``.
        max_size: The most touches in a stream.
        kinds: The touch kinds (default :data:`TOUCH_KINDS`).
        duplicates: Whether to re-send earlier touches.
        late: Whether to send touches late (back in time).
        start: When the stream starts (timezone-aware).
        max_gap: The longest time between two touches (at least a second).

    Raises:
        InvalidArgument: An option is out of range.
    """
    low, high = _check_leads(leads)
    _check_size("max_size", max_size, 0)
    kind_names = _check_names("kinds", TOUCH_KINDS if kinds is None else kinds)
    start = _check_time("start", start)
    gap_seconds = _check_gap(max_gap)
    for name, flag in (("duplicates", duplicates), ("late", late)):
        if not isinstance(flag, bool):
            msg = f"{name} must be a bool (got {flag!r})"
            raise InvalidArgument(msg)
    gaps = st.integers(0, gap_seconds).map(lambda s: timedelta(seconds=s))
    backs = st.integers(1, gap_seconds).map(lambda s: timedelta(seconds=s))
    kind = st.sampled_from(kind_names)
    attributes = lead_attributes()

    @st.composite
    def build(draw: st.DrawFn) -> list[Touch]:
        count = draw(st.integers(low, high))
        lead = st.sampled_from([f"lead-{i}" for i in range(1, count + 1)])
        now = start
        stream: list[Touch] = []
        on_time: list[int] = []
        for i in range(draw(st.integers(0, max_size))):
            step = draw(_STREAM_STEP) if duplicates or late else 0
            if step == _DUPLICATE and duplicates and on_time:
                now += draw(gaps)
                stream.append(attrs.evolve(stream[draw(st.sampled_from(on_time))], at=now))
                continue
            if step == _LATE and late and stream:
                at = now - draw(backs)
            else:
                now += draw(gaps)
                at = now
                on_time.append(i)
            stream.append(
                Touch(f"t{i}", draw(lead), at, draw(kind), draw(_PROPERTIES), draw(attributes))
            )
        return stream

    return build()


_REQUIRED = ("touch_id", "lead_id", "at", "kind")


def _malformed(draw: st.DrawFn, touch: Touch) -> dict[str, Any]:
    """*touch* as a dict with one thing wrong that :meth:`Touch.from_dict` rejects."""
    data = touch.to_dict()
    flaw = draw(st.integers(0, 6))
    if flaw == 0:
        del data[draw(st.sampled_from(_REQUIRED))]
    elif flaw == 1:
        data["at"] = _naive_utc(touch.at).isoformat()
    elif flaw == 2:
        data["at"] = draw(
            st.sampled_from(("yesterday", "", "2024-13-01T00:00:00+00:00", touch.at.timestamp()))
        )
    elif flaw == 3:
        field = draw(st.sampled_from(("touch_id", "lead_id", "kind")))
        data[field] = draw(st.sampled_from(("", 42, None, ["x"])))
    elif flaw == 4:
        key = draw(st.sampled_from(("properties", "attributes")))
        data[key] = draw(st.sampled_from((["campaign"], "enterprise", 7)))
    elif flaw == 5:
        data[draw(st.sampled_from(("source", "timestamp", "lead")))] = "crm"
    else:
        data["at"] = _naive_utc(touch.at)
    return data


def raw_touch_streams(
    *,
    leads: tuple[int, int] = (1, 5),
    max_size: int = 40,
    kinds: Sequence[str] | None = None,
    malformed: bool = True,
    duplicates: bool = False,
    late: bool = False,
    start: datetime = EPOCH,
    max_gap: timedelta = timedelta(days=2),
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Generate JSON-like input: lists of dicts, some of them malformed.

    Each entry is :meth:`Touch.to_dict` of a touch of a :func:`touch_streams`
    stream (``at`` as an ISO-8601 string with an offset), so
    :meth:`Touch.from_dict` turns it back into the touch. With
    ``malformed=True``, about one entry in five has one flaw instead, which
    :meth:`Touch.from_dict` always rejects with
    :class:`~buyerjourney.errors.InvalidTouch`: a required field missing, a
    naive or unparsable time (or a number, or a naive datetime object), an
    empty id or one of the wrong type, ``properties`` or ``attributes`` that
    are not objects, or an unknown field. ``json.dumps`` each entry for JSON
    Lines (a naive datetime object needs ``default=str``).

    Args:
        leads: The fewest and the most distinct leads, as ``(min, max)``.
        max_size: The most entries.
        kinds: The touch kinds (default :data:`TOUCH_KINDS`).
        malformed: Whether to include malformed entries.
        duplicates: As for :func:`touch_streams`.
        late: As for :func:`touch_streams`.
        start: When the stream starts (timezone-aware).
        max_gap: The longest time between two touches.

    Raises:
        InvalidArgument: An option is out of range.
    """
    streams = touch_streams(
        leads=leads,
        max_size=max_size,
        kinds=kinds,
        duplicates=duplicates,
        late=late,
        start=start,
        max_gap=max_gap,
    )
    if not malformed:
        return streams.map(lambda stream: [t.to_dict() for t in stream])
    flawed = st.integers(0, 4)

    @st.composite
    def build(draw: st.DrawFn) -> list[dict[str, Any]]:
        return [_malformed(draw, t) if draw(flawed) == 4 else t.to_dict() for t in draw(streams)]

    return build()
