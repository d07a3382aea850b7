"""One conformance suite that every backend of a pipeline must pass.

A *backend* is anything that takes a :class:`~buyerjourney.Pipeline` and a
stream — touches, and, when it takes them, manual actions and clock advances
— and returns the log and the journeys it leads to (the :class:`Backend`
protocol). buyerjourney has several: the engine on its compiled table
(:class:`EngineBackend`), the engine on its python-statemachine class, and
the bulk path of :mod:`buyerjourney.bulk` in each of its modes
(:class:`BulkBackend`). A store that writes the log and reads it back is
one more. They must all do exactly the same thing, and
:class:`ConformanceSuite` says what that is.

Subclass it, say how to build your backend, and let pytest or unittest run
it, as eventsourcing's recorder test cases do::

    from buyerjourney.testing.conformance import ConformanceSuite, EngineBackend


    class TestMyPipelineOnTheStatemachine(ConformanceSuite):
        pipeline = my_pipeline  # or leave it out: random pipelines

        def create_backend(self):
            return EngineBackend("statemachine")

On random funnels, owner rules, scorers, policies and streams (or on your
pipeline and random streams), every backend must:

* write the same log, leave the same journeys and set aside the same items
  as the reference (the engine on its table, :meth:`~ConformanceSuite.create_reference`);
* do what the independent oracle (:mod:`buyerjourney.testing.oracle`), which
  shares no code with any backend, says the rules call for;
* leave journeys that rebuilding its own log gives back;
* keep its log well formed: ``seq`` counts 0, 1, 2 ... without gaps, time
  never goes back, every transition is one of the funnel's, every journey has
  a known owner and a highest stage that is on the success path;
* change no journey by an item it sets aside (a refused action writes one
  ``refused`` record, a rejected touch nothing; only time may pass);
* only append: the log of a stream's prefix is a prefix of its log;
* give the same output for the same input;
* call the guards with the same contexts, in the same order, as the
  reference, when the backend says it steps like the engine.

Each property is a test method of its own, so a failure names it; switch one
off by overriding it with a method that does nothing. Examples per property:
:attr:`ConformanceSuite.max_examples`, by default a quarter of the loaded
Hypothesis profile's (25 under Hypothesis's default settings), so a thorough
profile searches harder without slowing an ordinary run.
"""

from __future__ import annotations

import functools
import unittest
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeAlias, runtime_checkable

import attrs
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, note
from hypothesis import settings as Settings  # noqa: N812  (the class, beside `settings` values)
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from buyerjourney import presets
from buyerjourney._core.funnel import Funnel
from buyerjourney._core.journey import Journey, rebuild
from buyerjourney._core.policies import AnyOf, Decision, Policy, ThresholdPolicy, TouchKindPolicy
from buyerjourney._core.protocols import Context, Guard, Hooks
from buyerjourney._core.records import Action, Actor, Record, RecordKind, Touch
from buyerjourney._core.scoring import Lead, PointsRule, PointsScorer, Score, ScoreItem, Scorer
from buyerjourney._pipeline import Pipeline, default_scorer
from buyerjourney.errors import BuyerJourneyError, Duplicate, MissingExtra
from buyerjourney.testing.oracle import Advance, Oracle, _describe, _show
from buyerjourney.testing.strategies import (
    EPOCH,
    GUARD_NAMES,
    actors,
    funnels,
    owner_rules,
    standard_hooks,
    touch_streams,
)

if TYPE_CHECKING:
    from buyerjourney.bulk import Mode

__all__ = [
    "DEFAULT_STREAM_SIZE",
    "FAILING_KIND",
    "FAULTY_GUARDS",
    "Backend",
    "BackendRun",
    "BulkBackend",
    "Case",
    "ConformanceSuite",
    "EngineBackend",
    "Item",
    "SetAside",
    "conformance_hooks",
    "pipelines",
    "run_conformance_suite",
    "streams",
]

Item: TypeAlias = Touch | Action | Advance
"""One item of a stream: a touch, a manual action, or time passing."""

DEFAULT_STREAM_SIZE = 20
"""The most touches in a stream the suite draws, unless the suite says otherwise."""

FAILING_KIND = "boom"
"""A touch kind on which the suite's own scorers and policies fail (each in its own way)."""

FAULTY_GUARDS: tuple[str, ...] = ("fails", "not_a_bool")
"""Guards of :func:`conformance_hooks` that break their contract (one raises, one answers None)."""

_GENERIC_KINDS: tuple[str, ...] = ("page_view", "email_click", "demo_request")
_REASONS: tuple[str, ...] = ("", "checked with the buyer")
_UNKNOWN_EVENT = "no_such_event"
_UNKNOWN_STAGE = "no_such_stage"


# ---------------------------------------------------------------- what a backend is


@attrs.frozen
class SetAside:
    """An item a backend did not apply: a quarantined touch, a refused or invalid action.

    Attributes:
        position: The item's 0-based position in the stream.
        error: The name of the exception class that explains it (``"InvalidTouch"`` ...).
        message: The exception's message.
    """

    position: int
    error: str
    message: str


def _frozen_journeys(value: Mapping[str, Journey]) -> Mapping[str, Journey]:
    return MappingProxyType(dict(value))


def _records(value: Iterable[Record]) -> tuple[Record, ...]:
    return tuple(value)


def _set_aside(value: Iterable[SetAside]) -> tuple[SetAside, ...]:
    return tuple(value)


def _items(value: Iterable[Item]) -> tuple[Item, ...]:
    return tuple(value)


@attrs.frozen
class BackendRun:
    """What a backend made of a stream.

    Attributes:
        records: The log, oldest first.
        journeys: The journeys by lead id.
        set_aside: The items it did not apply, in stream order.
    """

    records: tuple[Record, ...] = attrs.field(converter=_records)
    journeys: Mapping[str, Journey] = attrs.field(converter=_frozen_journeys)
    set_aside: tuple[SetAside, ...] = attrs.field(default=(), converter=_set_aside)


@runtime_checkable
class Backend(Protocol):
    """What the conformance suite runs: a pipeline and a stream in, a :class:`BackendRun` out.

    Every call of :meth:`run` starts from nothing (a fresh engine, an empty
    store ...), and the suite calls it many times on one backend.
    """

    @property
    def name(self) -> str:
        """What failure messages call the backend."""
        ...

    @property
    def takes_actions(self) -> bool:
        """Whether streams may hold manual actions and clock advances besides touches."""
        ...

    @property
    def steps_like_the_engine(self) -> bool:
        """Whether it calls the guards as the engine does: same contexts, same order."""
        ...

    def run(self, pipeline: Pipeline, items: Sequence[Item]) -> BackendRun:
        """Replay *items*, in order, through *pipeline* from nothing.

        An item that cannot be applied (a duplicate or late touch, a failing
        hook, a refused action) is set aside with its position and error, and
        the rest still land, as :meth:`Engine.ingest <buyerjourney.Engine.ingest>`
        does.
        """
        ...


def _feed(engine: Any, item: Item) -> None:
    if isinstance(item, Touch):
        engine.ingest_one(item)
    elif isinstance(item, Advance):
        engine.advance(item.at)
    else:
        engine.perform(item)


@attrs.frozen
class EngineBackend:
    """The in-memory :class:`~buyerjourney.Engine`, fed one item at a time.

    Args:
        backend: The engine's stepping backend: ``"table"`` (the compiled
            table) or ``"statemachine"`` (python-statemachine).
    """

    backend: Literal["table", "statemachine"] = "table"

    @property
    def name(self) -> str:
        """``engine (table)`` or ``engine (statemachine)``."""
        return f"engine ({self.backend})"

    @property
    def takes_actions(self) -> bool:
        """The engine takes manual actions and clock advances."""
        return True

    @property
    def steps_like_the_engine(self) -> bool:
        """It is the engine."""
        return True

    def run(self, pipeline: Pipeline, items: Sequence[Item]) -> BackendRun:
        """Feed *items* to a new engine: ``ingest_one``, ``perform`` or ``advance``."""
        engine = pipeline.engine(backend=self.backend)
        set_aside: list[SetAside] = []
        for position, item in enumerate(items):
            try:
                _feed(engine, item)
            except Duplicate:
                continue  # skipped and counted, not set aside (as Engine.ingest does)
            except BuyerJourneyError as exc:
                set_aside.append(SetAside(position, type(exc).__name__, str(exc)))
        return BackendRun(engine.records, engine.journeys, set_aside)


@attrs.frozen
class BulkBackend:
    """The bulk path, :func:`buyerjourney.bulk.replay` (touches only; needs NumPy).

    Args:
        mode: The path to force (``"columnar"``, ``"hooks"``, ``"reference"``),
            or ``"auto"``. A forced path the pipeline does not allow raises, so
            draw pipelines that allow it (see :func:`pipelines`). A batch the
            fast paths hand to the engine (duplicates, late touches, a failing
            guard) still runs; ``hypothesis.event`` notes the path taken.
    """

    mode: Mode = "auto"

    @property
    def name(self) -> str:
        """``bulk (<mode>)``."""
        return f"bulk ({self.mode})"

    @property
    def takes_actions(self) -> bool:
        """The bulk path replays touches only."""
        return False

    @property
    def steps_like_the_engine(self) -> bool:
        """The fast paths ask guards only where a transition needs them, in their own order."""
        return False

    def run(self, pipeline: Pipeline, items: Sequence[Item]) -> BackendRun:
        """Replay the touches with :func:`buyerjourney.bulk.replay`.

        Raises:
            TypeError: An item is not a touch.
            MissingExtra: NumPy is not installed.
        """
        from buyerjourney.bulk import replay  # noqa: PLC0415  (the fast extra, imported on use)

        touches = [item for item in items if isinstance(item, Touch)]
        if len(touches) != len(items):
            msg = "the bulk path replays touches only; give it a stream without actions"
            raise TypeError(msg)
        result = replay(pipeline, touches, mode=self.mode)
        if currently_in_test_context():
            event(f"{self.name} took the {result.mode} path")
        set_aside = [
            SetAside(q.position, type(q.error).__name__, q.reason) for q in result.quarantined
        ]
        return BackendRun(result.records(), result.journey_dict(), set_aside)


# ---------------------------------------------------------------- the suite's pipelines


def _fails(ctx: Context) -> bool:
    msg = "the guard's service is down"
    raise RuntimeError(msg)


def _not_a_bool(ctx: Context) -> bool:
    return None  # type: ignore[return-value]  # on purpose: a guard that breaks its contract


def conformance_hooks() -> Hooks:
    """A new registry: :func:`~buyerjourney.testing.standard_hooks` and :data:`FAULTY_GUARDS`."""
    hooks = standard_hooks()
    hooks.add_guard(FAULTY_GUARDS[0], _fails)
    hooks.add_guard(FAULTY_GUARDS[1], _not_a_bool)
    return hooks


def _touch_count(lead: Lead, at: datetime) -> Score:
    """Ten points per touch so far; raises on a touch of kind :data:`FAILING_KIND`."""
    if lead.touches[-1].kind == FAILING_KIND:
        msg = "cannot score that touch"
        raise ValueError(msg)
    n = len(lead.touches)
    return Score.from_breakdown([ScoreItem("touches", 10.0 * n, f"{n} touches")])


def _graded(lead: Lead, at: datetime) -> Score:
    """Thirty points per demo request, five per other touch, graded by company size.

    Breaks its contract (a NaN score) on a touch of kind :data:`FAILING_KIND`.
    """
    if lead.touches[-1].kind == FAILING_KIND:
        return Score(float("nan"))
    demos = sum(1 for t in lead.touches if t.kind == "demo_request")
    items = [
        ScoreItem("demos", 30.0 * demos),
        ScoreItem("touches", 5.0 * (len(lead.touches) - demos)),
    ]
    employees = lead.attributes.get("employees")
    grade = None if not isinstance(employees, int) else ("A" if employees >= 1000 else "C")
    return Score.from_breakdown(items, grade=grade)


@attrs.frozen
class _EventTouches:
    """A policy of one's own: a touch whose kind is an event of the funnel sends it.

    The reason is blank for touches of the ``spring`` campaign (so backward
    events are refused then); a touch of kind :data:`FAILING_KIND` gets an
    answer that is not a :class:`~buyerjourney.Decision`.
    """

    events: frozenset[str]
    __name__: ClassVar[str] = "event_touches"

    def __call__(self, journey: Journey, score: Score, touch: Touch) -> Decision:
        if touch.kind == FAILING_KIND:
            return "not a decision"  # type: ignore[return-value]  # on purpose: a broken policy
        if touch.kind not in self.events:
            return Decision()
        spring = touch.properties.get("campaign") == "spring"
        return Decision(touch.kind, "" if spring else "the buyer asked")


def _simple_points() -> PointsScorer:
    return PointsScorer(
        (
            PointsRule("views", 5, kind="page_view"),
            PointsRule("clicks", 12.5, kind="email_click"),
            PointsRule("demo", 30, kind="demo_request", repeatable=False),
        )
    )


def _built_in_policies(funnel: Funnel) -> st.SearchStrategy[Policy]:
    events = funnel.events
    by_kind = TouchKindPolicy({e: e for e in events})
    initial = funnel.initial.name
    first = funnel.allowed_events(initial)
    choices: list[st.SearchStrategy[Policy]] = [
        st.just(by_kind),
        st.builds(
            lambda kinds, targets: TouchKindPolicy(dict(zip(kinds, targets, strict=False))),
            st.lists(st.sampled_from(_GENERIC_KINDS), min_size=1, max_size=2, unique=True),
            st.lists(st.sampled_from((*events, _UNKNOWN_EVENT)), min_size=2, max_size=2),
        ),
    ]
    if first:
        choices.append(
            st.builds(
                lambda limit, event, scope: AnyOf(
                    ThresholdPolicy(limit, event, stages=scope), by_kind
                ),
                st.sampled_from((10.0, 20.0)),
                st.sampled_from(first),
                st.sampled_from(((initial,), ())),
            )
        )
    return st.one_of(choices)


def pipelines(
    *,
    funnels: st.SearchStrategy[Funnel] | None = None,
    hooks: Callable[[], Hooks] | None = None,
    custom_scorers: bool = True,
    custom_policies: bool = True,
    faulty_guards: bool = True,
) -> st.SearchStrategy[Pipeline]:
    """Generate whole pipelines: a funnel, owner rules, hooks, a scorer, a policy and thresholds.

    * Funnels: the presets and :func:`~buyerjourney.testing.funnels` of up to
      six stages, some of them guarded by :data:`FAULTY_GUARDS`;
    * owner rules: :func:`~buyerjourney.testing.owner_rules` (overrides on
      lead attributes, members, solo mode);
    * scorers: none, :func:`buyerjourney.default_scorer`, a small
      :class:`~buyerjourney.scoring.PointsScorer`, and, with
      *custom_scorers*, two functions of one's own (ten points a touch; points
      per kind with a grade), which fail on :data:`FAILING_KIND`;
    * policies: none, built-in ones (touch kinds to events, a threshold), and,
      with *custom_policies*, a function of one's own;
    * thresholds: none, one or two of 10, 20 and 50.

    The bulk path's columnar mode needs ``custom_scorers=False`` and
    ``custom_policies=False``; its hooks mode needs ``custom_policies=False``.

    Args:
        funnels: The funnels to draw from (default as above).
        hooks: Makes the registry of the guards the funnels name (default
            :func:`conformance_hooks`).
        custom_scorers: Whether to draw scorers of one's own.
        custom_policies: Whether to draw policies of one's own.
        faulty_guards: Whether generated funnels may name :data:`FAULTY_GUARDS`.

    Raises:
        InvalidArgument: An option is of the wrong type.
    """
    for name, flag in (
        ("custom_scorers", custom_scorers),
        ("custom_policies", custom_policies),
        ("faulty_guards", faulty_guards),
    ):
        if not isinstance(flag, bool):
            msg = f"{name} must be a bool (got {flag!r})"
            raise InvalidArgument(msg)
    if funnels is not None and not isinstance(funnels, st.SearchStrategy):
        msg = f"funnels must be a strategy of funnels or None (got {funnels!r})"
        raise InvalidArgument(msg)
    make_hooks = hooks if hooks is not None else conformance_hooks
    if funnels is None:
        choices = [
            st.sampled_from(presets.names()).map(presets.get),
            _generated_funnels(GUARD_NAMES),
        ]
        if faulty_guards:
            choices.append(_generated_funnels((*GUARD_NAMES, *FAULTY_GUARDS)))
        funnels = st.one_of(choices)
    scorer_choices: list[st.SearchStrategy[Scorer | None]] = [
        st.none(),
        st.builds(default_scorer),
        st.builds(_simple_points),
    ]
    if custom_scorers:
        scorer_choices.append(st.sampled_from((_touch_count, _graded)))
    scorers = st.one_of(scorer_choices)
    limits = st.lists(st.sampled_from((10.0, 20.0, 50.0)), max_size=2, unique=True)
    drawn_funnels = funnels

    @st.composite
    def build(draw: st.DrawFn) -> Pipeline:
        funnel = draw(drawn_funnels)
        owners = draw(owner_rules(funnel))
        policy_choices: list[st.SearchStrategy[Policy | None]] = [
            st.none(),
            _built_in_policies(funnel),
        ]
        if custom_policies:
            policy_choices.append(st.just(_EventTouches(frozenset(funnel.events))))
        return Pipeline(
            funnel=funnel,
            owners=owners,
            hooks=make_hooks(),
            scorer=draw(scorers),
            policy=draw(st.one_of(policy_choices)),
            thresholds=tuple(sorted(draw(limits))),
        )

    return build()


@functools.lru_cache(maxsize=8)
def _generated_funnels(guard_names: tuple[str, ...]) -> st.SearchStrategy[Funnel]:
    return funnels(max_stages=6, guard_names=guard_names)


# ---------------------------------------------------------------- the suite's streams

_ACTIONS_HERE = st.sampled_from((0, 0, 0, 1, 2))
_LATE_BY = st.sampled_from((timedelta(0), timedelta(0), timedelta(0), timedelta(hours=1)))
_LATER = st.sampled_from(
    (timedelta(0), timedelta(hours=1), timedelta(days=3), timedelta(days=30), timedelta(days=120))
)
_GAPS = st.sampled_from((timedelta(days=2), timedelta(days=30)))
_LEADS: tuple[str, ...] = ("lead-1", "lead-2", "lead-3")
_PEOPLE = st.sampled_from(("founder", "rep_a", "rep_b"))
_WHAT = st.sampled_from(("send", "send", "send", "override", "override", "accept", "reject"))
_ANSWER = st.sampled_from(("accept", "reject"))


@functools.lru_cache(maxsize=64)
def _touches(
    kinds: tuple[str, ...], max_size: int, duplicates: bool, late: bool, gap: timedelta
) -> st.SearchStrategy[list[Touch]]:
    return touch_streams(
        leads=(1, len(_LEADS)),
        max_size=max_size,
        kinds=kinds,
        duplicates=duplicates,
        late=late,
        max_gap=gap,
    )


def _either(values: Sequence[Any], fallback: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Half the time one of *values* (when there are any), else *fallback*."""
    return st.sampled_from(tuple(values)) | fallback if values else fallback


def streams(
    pipeline: Pipeline,
    *,
    actions: bool = True,
    kinds: Sequence[str] | None = None,
    max_size: int = DEFAULT_STREAM_SIZE,
) -> st.SearchStrategy[list[Item]]:
    """Generate streams for *pipeline*: touches, and manual actions and time passing.

    The touches are a :func:`~buyerjourney.testing.touch_streams` stream for
    up to three leads (half the time with duplicates, half the time with
    late touches, up to two or up to thirty days apart). With *actions*,
    ``send``, ``accept``, ``reject`` and ``override`` come between them now
    and then, by the system or by people of the owner rules, with or without
    a reason, for events and stages that may not exist, now and then an hour
    late; the stream may end with an
    :class:`~buyerjourney.testing.oracle.Advance` up to 120 days on, so that
    SLAs run out. Generation follows the journeys with an
    :class:`~buyerjourney.testing.oracle.Oracle`, so that half of the actions
    are about leads that have a journey, by the team that owns it, with an
    event legal where it is, or answer a handoff that waits: streams go deep
    into the funnel rather than being refused at its door.

    Args:
        pipeline: The pipeline the stream is for (its hooks are called).
        actions: Whether to add manual actions and clock advances.
        kinds: The touch kinds (default: the funnel's events, a few common
            kinds and :data:`FAILING_KIND`).
        max_size: The most touches.

    Raises:
        InvalidArgument: An option is out of range.
    """
    if not isinstance(pipeline, Pipeline):
        msg = f"pipeline must be a buyerjourney.Pipeline (got {pipeline!r})"
        raise InvalidArgument(msg)
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        msg = f"max_size must be an int >= 0 (got {max_size!r})"
        raise InvalidArgument(msg)
    funnel = pipeline.funnel
    default_kinds = (*funnel.events, *_GENERIC_KINDS, FAILING_KIND)
    chosen = tuple(dict.fromkeys(kinds if kinds is not None else default_kinds))
    if not chosen or not all(isinstance(k, str) and k for k in chosen):
        msg = f"kinds must be non-empty str (got {kinds!r})"
        raise InvalidArgument(msg)
    return _streams(pipeline, actions, chosen, max_size)


def _action(draw: st.DrawFn, pipeline: Pipeline, oracle: Oracle, now: datetime) -> Action:
    """An action about a lead that the oracle knows half the time, by its owning team or anyone."""
    funnel = pipeline.funnel
    journeys = oracle.journeys
    lead = draw(_either(sorted(journeys), st.sampled_from(_LEADS)))
    journey = journeys.get(lead)
    waiting = journey is not None and journey.pending_acceptance
    kind = draw(_either(("accept", "reject") if waiting else (), _WHAT))
    anyone = actors(owner_rules=pipeline.owners, system=True)
    owning = anyone if journey is None else st.builds(Actor, _PEOPLE, st.just(journey.owner))
    legal = funnel.allowed_events(journey.stage) if journey is not None else ()
    any_event = st.sampled_from((*funnel.events, _UNKNOWN_EVENT))
    return Action(
        kind,
        lead,
        now - draw(_LATE_BY),
        draw(owning | anyone),
        event=draw(_either(legal, any_event)) if kind == "send" else None,
        stage=draw(st.sampled_from((*funnel.stage_names, _UNKNOWN_STAGE)))
        if kind == "override"
        else None,
        reason=draw(st.sampled_from(_REASONS)),
    )


@st.composite
def _streams(
    draw: st.DrawFn, pipeline: Pipeline, actions: bool, kinds: tuple[str, ...], max_size: int
) -> list[Item]:
    messy = (draw(st.booleans()), draw(st.booleans()))
    touches = draw(_touches(kinds, max_size, *messy, draw(_GAPS)))
    if not actions:
        return list(touches)
    oracle = Oracle.of(pipeline)
    items: list[Item] = []
    now = EPOCH

    def add(item: Item) -> None:
        oracle.perform(item)
        items.append(item)

    for touch in touches:
        for _ in range(draw(_ACTIONS_HERE)):
            add(_action(draw, pipeline, oracle, now))
        add(touch)
        now = max(now, touch.at)
    for _ in range(draw(_ACTIONS_HERE)):
        add(_action(draw, pipeline, oracle, now))
    if draw(st.booleans()):
        items.append(Advance(now + draw(_LATER)))
    return items


@attrs.frozen(repr=False)
class Case:
    """One example of the suite: a pipeline and a stream.

    Attributes:
        pipeline: The pipeline.
        items: The stream.
    """

    pipeline: Pipeline
    items: tuple[Item, ...] = attrs.field(converter=_items)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How Hypothesis shows a falsifying example: as :meth:`__repr__` does."""
        printer.text(repr(self))

    def __repr__(self) -> str:
        funnel = self.pipeline.funnel
        stages = ", ".join(
            s.name
            + "".join(
                f" {flag}"
                for flag, on in (
                    ("initial", s.initial),
                    ("gate", s.gate),
                    (s.kind.value, s.kind.value != "open"),
                    (f"owner={s.owner}", s.owner is not None),
                    (f"sla={s.sla}", s.sla is not None),
                )
                if on
            )
            for s in funnel.stages
        )
        transitions = ", ".join(
            f"{t.source} -{t.event}-> {t.target}"
            + (f" [{t.direction.value}]" if t.direction.value != "forward" else "")
            + (f" if {t.guard}" if t.guard else "")
            for t in funnel.transitions
        )
        pipeline = self.pipeline
        lines = [
            f"funnel {funnel.name!r}: stages {stages}; transitions {transitions}",
            f"owner rules: {pipeline.owners!r}",
            f"scorer {pipeline.scorer!r}, policy {pipeline.policy!r}, "
            f"thresholds {pipeline.thresholds!r}",
            "stream:",
            *(f"  {i}: {_item_line(item)}" for i, item in enumerate(self.items)),
        ]
        return "\n".join(lines)


def _item_line(item: Item) -> str:
    line = _describe(item)
    if isinstance(item, Touch):
        for name in ("attributes", "properties"):
            value = getattr(item, name)
            if value:
                line += f", {name} {dict(value)!r}"
    return line


# ---------------------------------------------------------------- comparing runs


def _fields_apart(got: Any, wanted: Any) -> str:
    return "; ".join(
        f"{f.name} is {getattr(got, f.name)!r}, not {getattr(wanted, f.name)!r}"
        for f in attrs.fields(type(got))
        if getattr(got, f.name) != getattr(wanted, f.name)
    )


def _runs_apart(got: BackendRun, wanted: BackendRun, *, who: str, whom: str) -> str | None:
    """How run *got* (by *who*) differs from run *wanted* (by *whom*), or ``None``."""
    for i, (mine, theirs) in enumerate(zip(got.records, wanted.records, strict=False)):
        if mine != theirs:
            return (
                f"record {i} of {who} differs from {whom}'s: {_fields_apart(mine, theirs)}\n"
                f"  {who}: {_show(mine)}\n  {whom}: {_show(theirs)}"
            )
    if len(got.records) != len(wanted.records):
        longer, name = (got, who) if len(got.records) > len(wanted.records) else (wanted, whom)
        extra = longer.records[min(len(got.records), len(wanted.records))]
        return (
            f"{who} wrote {len(got.records)} records and {whom} {len(wanted.records)}; "
            f"the first of {name}'s extra records: {_show(extra)}"
        )
    mine_j, theirs_j = dict(got.journeys), dict(wanted.journeys)
    if mine_j != theirs_j:
        lead = sorted(
            k for k in mine_j.keys() | theirs_j.keys() if mine_j.get(k) != theirs_j.get(k)
        )[0]
        a, b = mine_j.get(lead), theirs_j.get(lead)
        detail = _fields_apart(a, b) if a is not None and b is not None else f"{a} / {b}"
        return f"the journey of {lead!r} of {who} differs from {whom}'s: {detail}"
    if got.set_aside != wanted.set_aside:
        return (
            f"{who} set aside {[(s.position, s.error, s.message) for s in got.set_aside]}, "
            f"{whom} {[(s.position, s.error, s.message) for s in wanted.set_aside]}"
        )
    return None


class _Recorded:
    """A guard that notes every call (name and context) before answering."""

    def __init__(self, name: str, guard: Guard, calls: list[tuple[str, Context]]) -> None:
        self.name = name
        self.guard = guard
        self.calls = calls
        self.__name__ = name

    def __call__(self, ctx: Context, /) -> bool:
        self.calls.append((self.name, ctx))
        return self.guard(ctx)


def _recording(pipeline: Pipeline, calls: list[tuple[str, Context]]) -> Pipeline:
    guards = {name: _Recorded(name, fn, calls) for name, fn in pipeline.hooks.guards.items()}
    return attrs.evolve(pipeline, hooks=Hooks(guards))


# ---------------------------------------------------------------- the suite


@st.composite
def _cases(
    draw: st.DrawFn, suite: ConformanceSuite, pipelines: st.SearchStrategy[Pipeline]
) -> Case:
    pipeline = draw(pipelines)
    items: list[Item] = draw(suite.streams(pipeline))
    return Case(pipeline, tuple(items))


def _check_class(cls: type[ConformanceSuite]) -> None:
    owner = cls.__name__
    pipeline = cls.pipeline
    if pipeline is not None and not isinstance(pipeline, (Pipeline, st.SearchStrategy)):
        msg = (
            f"{owner}.pipeline must be a Pipeline, a strategy of pipelines or None "
            f"(got {pipeline!r})"
        )
        raise InvalidArgument(msg)
    kinds = cls.touch_kinds
    if kinds is not None and (
        isinstance(kinds, str) or not kinds or not all(isinstance(k, str) and k for k in kinds)
    ):
        msg = (
            f"{owner}.touch_kinds must be a non-empty tuple of non-empty str or None "
            f"(got {kinds!r})"
        )
        raise InvalidArgument(msg)
    size = cls.stream_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        msg = f"{owner}.stream_size must be an int >= 0 (got {size!r})"
        raise InvalidArgument(msg)
    examples = cls.max_examples
    if examples is not None and (
        isinstance(examples, bool) or not isinstance(examples, int) or examples < 1
    ):
        msg = f"{owner}.max_examples must be a positive int or None (got {examples!r})"
        raise InvalidArgument(msg)


class ConformanceSuite(unittest.TestCase):
    """The properties every backend must have; subclass it and define :meth:`create_backend`.

    A subclass is a :class:`unittest.TestCase` that pytest and unittest
    collect; this base class is not collected, and skips itself under
    unittest. Run a subclass at once with :func:`run_conformance_suite`.

    Attributes:
        pipeline: Your pipeline, a strategy of pipelines, or ``None`` (the
            default) for :func:`pipelines`. The oracle calls its hooks too, so
            they must be deterministic.
        touch_kinds: The touch kinds of the streams (default: the funnel's
            events, a few common kinds and :data:`FAILING_KIND`).
        stream_size: The most touches in a stream.
        max_examples: Examples per property, or ``None`` (the default) for a
            quarter of the loaded Hypothesis profile's ``max_examples``, at
            least 10.
    """

    __test__: ClassVar[bool] = False
    pipeline: ClassVar[Pipeline | st.SearchStrategy[Pipeline] | None] = None
    touch_kinds: ClassVar[tuple[str, ...] | None] = None
    stream_size: ClassVar[int] = DEFAULT_STREAM_SIZE
    max_examples: ClassVar[int | None] = None

    backend: Backend
    """The backend under test, made by :meth:`create_backend` for each test."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True
        _check_class(cls)

    # ------------------------------------------------------------ to override

    def create_backend(self) -> Backend:
        """The backend under test. Subclasses must define it.

        Raises:
            NotImplementedError: Always, here.
        """
        msg = f"{type(self).__name__} must define create_backend()"
        raise NotImplementedError(msg)

    def create_reference(self) -> Backend:
        """The backend the one under test must equal: the engine on its table."""
        return EngineBackend("table")

    def pipelines(self) -> st.SearchStrategy[Pipeline]:
        """The pipelines to test on (from :attr:`pipeline`)."""
        chosen = type(self).pipeline
        if chosen is None:
            return pipelines()
        if isinstance(chosen, Pipeline):
            return st.just(chosen)
        return chosen

    def streams(self, pipeline: Pipeline) -> st.SearchStrategy[list[Item]]:
        """The streams to replay through *pipeline* (see :func:`streams`).

        Args:
            pipeline: The pipeline the streams are for.
        """
        return streams(
            pipeline,
            actions=self.backend.takes_actions,
            kinds=self.touch_kinds,
            max_size=self.stream_size,
        )

    def cases(self) -> st.SearchStrategy[Case]:
        """The examples: a pipeline and a stream for it."""
        return _cases(self, self.pipelines())

    def hypothesis_settings(self) -> Settings:
        """The settings of every property: the loaded profile's, with :attr:`max_examples`.

        No deadline, no ``too_slow`` or ``data_too_large`` health checks, and
        no *explain* phase (on a pipeline it replays a failure at length,
        while the shrunk example already tells the story).
        """
        profile = Settings()
        examples = self.max_examples
        if examples is None:
            examples = max(10, profile.max_examples // 4)
        return Settings(
            profile,
            max_examples=examples,
            deadline=None,
            suppress_health_check=(
                *profile.suppress_health_check,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
            ),
            phases=tuple(p for p in profile.phases if p is not Phase.explain),
        )

    # ------------------------------------------------------------ running

    def setUp(self) -> None:
        """Make the backend; skip the base class itself."""
        super().setUp()
        if type(self).create_backend is ConformanceSuite.create_backend:
            self.skipTest(f"{type(self).__name__} defines no create_backend(); nothing to test")
        self.backend = self.create_backend()
        if not isinstance(self.backend, Backend):
            msg = f"create_backend() must return a Backend (got {self.backend!r})"
            raise TypeError(msg)

    def run_backend(
        self, case: Case, items: Sequence[Item] | None = None, *, backend: Backend | None = None
    ) -> BackendRun:
        """Run *backend* (default: the one under test) on *case*'s pipeline and stream.

        A backend that needs an extra that is not installed skips the test.

        Args:
            case: The example.
            items: Another stream for the same pipeline (a prefix, say).
            backend: Another backend (the reference, say).
        """
        chosen = backend if backend is not None else self.backend
        stream = case.items if items is None else tuple(items)
        try:
            result = chosen.run(case.pipeline, stream)
        except MissingExtra as exc:
            raise unittest.SkipTest(f"{chosen.name} needs what is not installed: {exc}") from exc
        if not isinstance(result, BackendRun):
            msg = f"{chosen.name}.run() must return a BackendRun (got {result!r})"
            raise TypeError(msg)
        return result

    def _check(self, prop: Callable[[Case, st.DataObject], None]) -> None:
        """Run *prop* as a Hypothesis test on :meth:`cases`."""

        def check(case: Case, data: st.DataObject) -> None:
            prop(case, data)

        name = getattr(prop, "__name__", "property")
        key = f"{type(self).__module__}.{type(self).__qualname__}.{name}"
        check.__dict__["_hypothesis_internal_add_digest"] = key.encode()
        check.__qualname__ = f"{type(self).__qualname__}.{name}"
        test = self.hypothesis_settings()(given(case=self.cases(), data=st.data())(check))
        test()

    def _skip_unless(self, condition: bool, reason: str) -> None:
        if not condition:
            self.skipTest(reason)

    def _is_reference(self) -> bool:
        return bool(self.backend == self.create_reference())

    # ------------------------------------------------------------ the properties

    def test_same_log_and_journeys_as_the_reference(self) -> None:
        """The same records, journeys and items set aside as the reference."""
        self._skip_unless(not self._is_reference(), "the backend is the reference")
        self._check(self._same_as_the_reference)

    def _same_as_the_reference(self, case: Case, data: st.DataObject) -> None:
        reference = self.create_reference()
        wanted = self.run_backend(case, backend=reference)
        got = self.run_backend(case)
        problem = _runs_apart(got, wanted, who=self.backend.name, whom=reference.name)
        if problem is not None:
            raise AssertionError(problem)

    def test_what_the_oracle_says(self) -> None:
        """The records (kinds, and fields the rules decide), journeys and errors of the oracle."""
        self._check(self._as_the_oracle_says)

    def _as_the_oracle_says(self, case: Case, data: st.DataObject) -> None:
        got = self.run_backend(case)
        oracle = Oracle.of(case.pipeline)
        done = 0
        aside = {s.position: s for s in got.set_aside}
        for position, item in enumerate(case.items):
            expected = oracle.perform(item)
            mine = got.records[done : done + len(expected.records)]
            done += len(expected.records)
            reported = aside.get(position)
            if expected.error is Duplicate and reported is None and not expected.records:
                continue  # skipped and counted by every backend, never set aside
            problem = expected.mismatch(
                mine,
                reported.error if reported is not None else None,
                who=f"the {self.backend.name} backend",
            )
            if problem is not None:
                raise AssertionError(f"item {position}: {problem}")
        if done != len(got.records):
            raise AssertionError(
                f"the {self.backend.name} backend wrote {len(got.records)} records, the oracle "
                f"{done}; the first extra: {_show(got.records[done])}"
            )
        mine_j, wanted_j = dict(got.journeys), dict(oracle.journeys)
        if mine_j != wanted_j:
            lead = sorted(
                k for k in mine_j.keys() | wanted_j.keys() if mine_j.get(k) != wanted_j.get(k)
            )[0]
            a, b = mine_j.get(lead), wanted_j.get(lead)
            detail = _fields_apart(a, b) if a is not None and b is not None else f"{a} / {b}"
            raise AssertionError(f"the journey of {lead!r} is not the oracle's: {detail}")

    def test_rebuilding_the_log_gives_the_journeys(self) -> None:
        """Folding the backend's own log from scratch gives exactly its journeys."""
        self._check(self._rebuilds)

    def _rebuilds(self, case: Case, data: st.DataObject) -> None:
        got = self.run_backend(case)
        rebuilt = rebuild(case.pipeline.funnel, got.records)
        live = dict(got.journeys)
        if rebuilt != live:
            lead = sorted(k for k in rebuilt.keys() | live.keys() if rebuilt.get(k) != live.get(k))[
                0
            ]
            a, b = live.get(lead), rebuilt.get(lead)
            detail = _fields_apart(a, b) if a is not None and b is not None else f"{a} / {b}"
            raise AssertionError(f"the journey of {lead!r} is not what its log rebuilds: {detail}")

    def test_the_log_is_well_formed(self) -> None:
        """Gap-free ``seq``, time in order, legal transitions, known owners, sound highest stage."""
        self._check(self._well_formed)

    def _well_formed(self, case: Case, data: st.DataObject) -> None:
        got = self.run_backend(case)
        funnel, owners = case.pipeline.funnel, case.pipeline.owners
        legal = {(t.source, t.event, t.target) for t in funnel.transitions}
        previous: Record | None = None
        for i, record in enumerate(got.records):
            if record.seq != i:
                raise AssertionError(f"record {i} has seq {record.seq}: {_show(record)}")
            if previous is not None and record.at < previous.at:
                raise AssertionError(
                    f"{_show(record)} comes after {_show(previous)}: time went back"
                )
            if record.kind is RecordKind.TRANSITION and (
                (record.source, record.event, record.target) not in legal
            ):
                raise AssertionError(f"{_show(record)} is no transition of the funnel")
            if record.kind is not RecordKind.REFUSED and record.lead_id not in got.journeys:
                raise AssertionError(f"{_show(record)} is about a lead without a journey")
            previous = record
        for lead, journey in got.journeys.items():
            if journey.owner not in owners.teams:
                raise AssertionError(f"journey {lead!r} is owned by unknown team {journey.owner!r}")
            highest, stage = funnel.stage(journey.highest), funnel.stage(journey.stage)
            if highest.kind.is_exit or (not stage.kind.is_exit and highest.rank < stage.rank):
                raise AssertionError(
                    f"journey {lead!r} is in {stage.name!r} with highest stage {highest.name!r}"
                )
        positions = [s.position for s in got.set_aside]
        if positions != sorted(set(positions)) or any(
            not 0 <= p < len(case.items) for p in positions
        ):
            raise AssertionError(
                f"set-aside positions {positions} are not stream positions in order"
            )

    def test_an_item_set_aside_changes_no_journey(self) -> None:
        """What a refused action or a rejected touch adds: escalations due by then, one refusal."""
        self._check(self._set_aside_changes_nothing)

    def _set_aside_changes_nothing(self, case: Case, data: st.DataObject) -> None:
        got = self.run_backend(case)
        if not got.set_aside:
            return
        chosen = data.draw(st.sampled_from(got.set_aside), label="set aside")
        i = chosen.position
        item = case.items[i]
        before = self.run_backend(case, case.items[:i])
        after = self.run_backend(case, case.items[: i + 1])
        where = f"item {i} ({_describe(item)}), set aside with {chosen.error}"
        count = len(before.records)
        if after.records[:count] != before.records:
            raise AssertionError(f"{where}: the records before it changed")
        new = after.records[count:]
        kinds = [r.kind for r in new]
        escalations = kinds.count(RecordKind.ESCALATION)
        refusal = kinds[escalations:]
        allowed: list[list[RecordKind]] = [[]]
        if isinstance(item, Action):
            allowed.append([RecordKind.REFUSED])
        if kinds[:escalations] != [RecordKind.ESCALATION] * escalations or refusal not in allowed:
            raise AssertionError(
                f"{where}: it added {[_show(r) for r in new]}; only escalations that came due "
                "and, for an action, one 'refused' record may be added"
            )
        if refusal:
            record = new[-1]
            assert isinstance(item, Action)
            if (record.lead_id, record.actor, record.at) != (item.lead_id, item.actor, item.at):
                raise AssertionError(f"{where}: the refusal {_show(record)} is not about it")
        if not escalations and dict(after.journeys) != dict(before.journeys):
            raise AssertionError(f"{where}: it changed a journey")
        if not after.set_aside or after.set_aside[-1].position != i:
            raise AssertionError(f"{where}: it is not set aside when the stream ends with it")

    def test_a_longer_stream_only_appends_to_the_log(self) -> None:
        """The log of a prefix of the stream is a prefix of the stream's log."""
        self._check(self._appends_only)

    def _appends_only(self, case: Case, data: st.DataObject) -> None:
        whole = self.run_backend(case)
        cut = data.draw(st.integers(0, len(case.items)), label="prefix length")
        part = self.run_backend(case, case.items[:cut])
        if whole.records[: len(part.records)] != part.records:
            first = (
                next(
                    i
                    for i, (a, b) in enumerate(zip(whole.records, part.records, strict=False))
                    if a != b
                )
                if len(whole.records) >= len(part.records)
                else len(whole.records)
            )
            raise AssertionError(
                f"the first {cut} items wrote a log that the whole stream's log does not start "
                f"with (from record {first})"
            )
        if part.set_aside != tuple(s for s in whole.set_aside if s.position < cut):
            raise AssertionError(
                f"the first {cut} items set aside other items than the whole stream"
            )

    def test_the_same_input_gives_the_same_output(self) -> None:
        """Two runs on one pipeline and stream give the same log, journeys and items set aside."""
        self._check(self._deterministic)

    def _deterministic(self, case: Case, data: st.DataObject) -> None:
        first = self.run_backend(case)
        second = self.run_backend(case)
        problem = _runs_apart(second, first, who="the second run", whom="the first")
        if problem is not None:
            raise AssertionError(problem)

    def test_guards_are_called_as_by_the_reference(self) -> None:
        """The same guards, with the same contexts, in the same order, as the reference."""
        self._skip_unless(
            self.backend.steps_like_the_engine, f"{self.backend.name} steps in its own way"
        )
        self._skip_unless(not self._is_reference(), "the backend is the reference")
        self._check(self._same_guard_calls)

    def _same_guard_calls(self, case: Case, data: st.DataObject) -> None:
        reference = self.create_reference()
        mine: list[tuple[str, Context]] = []
        theirs: list[tuple[str, Context]] = []
        self.run_backend(Case(_recording(case.pipeline, mine), case.items))
        self.run_backend(Case(_recording(case.pipeline, theirs), case.items), backend=reference)
        if mine != theirs:
            i = next(
                (k for k, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
                min(len(mine), len(theirs)),
            )
            note(f"{self.backend.name} called {[n for n, _ in mine]}")
            note(f"{reference.name} called {[n for n, _ in theirs]}")
            raise AssertionError(
                f"guard call {i} differs: {self.backend.name} made "
                f"{mine[i] if i < len(mine) else 'no more calls'}, {reference.name} "
                f"{theirs[i] if i < len(theirs) else 'no more calls'}"
            )


def run_conformance_suite(
    suite: type[ConformanceSuite], *, max_examples: int | None = None
) -> dict[str, str]:
    """Run every property of *suite* now, one after the other; raise the first failure.

    For a suite outside a test runner (a script, a notebook, a page of
    documentation). Under pytest or unittest, let the runner collect the
    subclass instead.

    Args:
        suite: A subclass of :class:`ConformanceSuite` that defines
            :meth:`~ConformanceSuite.create_backend`.
        max_examples: Examples per property (default: the suite's).

    Returns:
        Each property's test method and what became of it: ``"passed"`` or
        ``"skipped: <why>"``.

    Raises:
        InvalidArgument: *suite* is not such a subclass, or *max_examples* is
            not a positive int.
        AssertionError: A property failed; the shrunk example is in the
            exception's notes.
    """
    if (
        not isinstance(suite, type)
        or not issubclass(suite, ConformanceSuite)
        or suite.create_backend is ConformanceSuite.create_backend
    ):
        msg = (
            "suite must be a ConformanceSuite subclass that defines create_backend() "
            f"(got {suite!r})"
        )
        raise InvalidArgument(msg)
    chosen = suite
    if max_examples is not None:
        namespace = {
            "max_examples": max_examples,
            "__module__": suite.__module__,
            "__qualname__": suite.__qualname__,
            "__test__": False,
        }
        chosen = type(suite.__name__, (suite,), namespace)
    outcomes: dict[str, str] = {}
    for name in unittest.defaultTestLoader.getTestCaseNames(chosen):
        try:
            chosen(name).debug()
        except unittest.SkipTest as exc:
            outcomes[name] = f"skipped: {exc}"
        else:
            outcomes[name] = "passed"
    return outcomes
