"""Hypothesis strategies for funnels, guard contexts and event streams.

Every funnel that :func:`funnels` generates is valid by construction (it
never relies on rejection sampling), names its guards from
:data:`GUARD_NAMES`, and runs with :func:`standard_hooks`::

    from hypothesis import given
    from buyerjourney.testing import funnels, event_sequences, standard_hooks

    @given(funnels().flatmap(lambda f: st.tuples(st.just(f), event_sequences(f))))
    def test_my_pipeline(case):
        funnel, events = case
        ...

Generated funnels shrink towards two stages joined by an unguarded forward
transition; event sequences shrink towards fewer, legal events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from functools import lru_cache, partial
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ..errors import BuyerJourneyError
from ..funnel import Direction, Funnel, Stage, StageKind, Transition
from ..hooks import Context, Guard, Hooks
from ..table import CompiledFunnel

__all__ = [
    "ENTERPRISE_EMPLOYEES",
    "GUARD_NAMES",
    "OWNERS",
    "SCORE_THRESHOLDS",
    "UNKNOWN_EVENTS",
    "contexts",
    "event_sequences",
    "funnels",
    "standard_hooks",
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

_BOUNDARY_SCORES: tuple[float, ...] = (0.0, 9.0, 9.999, 10.0, 10.001, 49.999, 50.0, 50.001, 100.0)
_BOUNDARY_EMPLOYEES: tuple[int, ...] = (0, 999, 1000, 1001, 50_000)
_REASONS: tuple[str, ...] = ("bad timing", "", "   ", "no budget this quarter")
_EVENT_NAMES: tuple[str, ...] = tuple(f"e{i}" for i in range(8))
_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.just("\n"), max_size=40)
_FUNNEL_NAMES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
_BOOLEANS = st.booleans()
_EVENTS = st.sampled_from(_EVENT_NAMES)
_OWNERS = st.none() | st.sampled_from(OWNERS)
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
    return st.integers(min_stages, max_stages).flatmap(partial(_funnels_of_size, options=options))


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
            terminal[i] = draw(_BOOLEANS) if ways_out(i) else True
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


def _attributes() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "employees": st.sampled_from(_BOUNDARY_EMPLOYEES) | st.integers(0, 100_000),
            "segment": st.sampled_from(("smb", "mid_market", "enterprise")),
            "country": st.sampled_from(("BR", "DE", "US")),
        },
    )


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
        attributes=_attributes(),
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
