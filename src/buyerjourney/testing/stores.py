"""A conformance suite for stores: what every :class:`~buyerjourney.Store` must do.

buyerjourney's own stores (:class:`~buyerjourney.MemoryStore`,
:class:`~buyerjourney.SQLiteStore`, the PostgreSQL store) all pass it, and a
store of your own (on another database, a queue, a cloud table) should too.
Subclass :class:`StoreConformance`, say how to make an empty store, and let
pytest or unittest run it::

    from buyerjourney.testing.stores import StoreConformance


    class TestMyStore(StoreConformance):
        def make_store(self):
            return MyStore(self.fresh_location())

        def reopen_store(self, store):  # a durable store: close it, open it again
            store.close()
            return MyStore(store.location)

The suite checks, each property a test method of its own:

* an empty store loads nothing;
* what is committed loads back exactly: records, touches and actions, text
  and numbers as they were, in order, over several commits;
* ``load(after=n)`` gives exactly what was committed from record *n* on;
* a commit written against a shorter log than the store's is refused with
  :class:`~buyerjourney.errors.StoreConflict`, and nothing of it is stored;
* a touch id or an action id stored already (or given twice in one commit)
  refuses the commit the same way: a commit that fails half-way leaves nothing;
* text a store cannot keep is refused with
  :class:`~buyerjourney.errors.StoreError` (never a driver's own error), or
  kept exactly;
* the journeys snapshot takes the journeys of each commit (an upsert) and
  :meth:`~buyerjourney.Store.replace_journeys` replaces it whole;
* the quarantine keeps entries in order, with ids, until they are released,
  and an input set aside again (same source, line, code and text) only once;
* an engine on the store: a stream ingested in two halves, with the store
  reopened in between, gives exactly the log and journeys of one
  uninterrupted run (also with manual actions and time passing); ingesting
  the same stream again applies nothing new and counts the duplicates; and
  rebuilding the journeys from the stored log gives the stored snapshot.

Examples per property: :attr:`StoreConformance.max_examples`, by default a
quarter of the loaded Hypothesis profile's (at least 10).
"""

from __future__ import annotations

import contextlib
import functools
import unittest
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

import attrs
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as Settings  # noqa: N812  (the class, beside `settings` values)
from hypothesis import strategies as st

from buyerjourney import presets
from buyerjourney._core.journey import Journey, rebuild
from buyerjourney._core.protocols import QuarantineEntry, Store, StoredLog
from buyerjourney._core.records import ACTIONS, Action, Actor, Record, RecordKind, Touch
from buyerjourney._engine import Engine
from buyerjourney._pipeline import Pipeline, default_pipeline
from buyerjourney.errors import BuyerJourneyError, StoreConflict, StoreError
from buyerjourney.testing.conformance import streams
from buyerjourney.testing.oracle import Advance
from buyerjourney.testing.strategies import EPOCH, actors, touch_streams, touches

__all__ = ["StoreConformance"]

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
"""Any text but lone surrogates and NUL (those have a property of their own)."""

_NAMES = st.one_of(
    st.sampled_from(("lead-1", "lead-2", "Zoë's lead", "lead ✓ 3", "")),
    _TEXT,
)
_OPTIONAL_TEXT = st.none() | _TEXT
_TIMES = st.datetimes(datetime(1970, 1, 1), datetime(2200, 12, 31), timezones=st.just(timezone.utc))
_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _records(draw: st.DrawFn) -> Record:
    """One record of any kind, its fields drawn freely (``seq`` is set when committed)."""
    return Record(
        lead_id=draw(_NAMES),
        seq=0,
        at=draw(_TIMES),
        kind=draw(st.sampled_from(list(RecordKind))),
        actor=draw(actors()),
        reason=draw(_TEXT),
        event=draw(_OPTIONAL_TEXT),
        source=draw(_OPTIONAL_TEXT),
        target=draw(_OPTIONAL_TEXT),
        from_team=draw(_OPTIONAL_TEXT),
        to_team=draw(_OPTIONAL_TEXT),
        score=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        touch_id=draw(_OPTIONAL_TEXT),
        data=draw(st.dictionaries(_TEXT, _JSON, max_size=4)),
    )


_TOUCHES = touches(lead_ids=("lead-1", "Zoë's lead", "lead ✓ 3"), start=EPOCH)
_ACTIONS = st.builds(
    Action,
    action=st.sampled_from(ACTIONS),
    lead_id=_NAMES,
    at=_TIMES,
    actor=actors().map(lambda a: Actor(a.name, a.team)),
    event=_OPTIONAL_TEXT,
    stage=_OPTIONAL_TEXT,
    reason=_TEXT,
    action_id=st.none() | st.integers(0, 50).map(lambda i: f"a{i}"),
)


@attrs.frozen
class _Commit:
    """One call of ``commit``: its records (numbered), touches and actions."""

    start: int
    records: tuple[Record, ...]
    touches: tuple[Touch, ...]
    actions: tuple[Action, ...]


@st.composite
def _commits(draw: st.DrawFn, max_commits: int = 4) -> list[_Commit]:
    """Commits as an engine makes them: records numbered from 0 on, ids never repeated."""
    out: list[_Commit] = []
    touch_ids: set[str] = set()
    action_ids: set[str] = set()
    length = 0
    for _ in range(draw(st.integers(1, max_commits))):
        records = draw(st.lists(_records(), max_size=4))
        numbered = tuple(attrs.evolve(r, seq=length + i) for i, r in enumerate(records))
        new_touches = draw(
            st.lists(
                _TOUCHES.filter(lambda t: t.touch_id not in touch_ids),
                max_size=3,
                unique_by=lambda t: t.touch_id,
            )
        )
        new_actions = draw(
            st.lists(
                _ACTIONS.filter(lambda a: a.action_id is None or a.action_id not in action_ids),
                max_size=2,
                unique_by=lambda a: a.action_id or object(),
            )
        )
        touch_ids.update(t.touch_id for t in new_touches)
        action_ids.update(a.action_id for a in new_actions if a.action_id is not None)
        out.append(_Commit(length, numbered, tuple(new_touches), tuple(new_actions)))
        length += len(numbered)
    return out


def _expected_load(commits: Sequence[_Commit], after: int) -> StoredLog:
    """What ``load(after=...)`` must give after *commits* (*after* at a commit's start)."""
    later = [c for c in commits if c.start >= after]
    return StoredLog(
        tuple(r for c in later for r in c.records),
        tuple(t for c in later for t in c.touches),
        tuple(a for c in later for a in c.actions),
    )


def _entry_key(entry: QuarantineEntry) -> tuple[str, int, str, str]:
    return (entry.source, entry.line, entry.code, entry.text)


def _kept_once(
    kept: Sequence[QuarantineEntry], new: Sequence[QuarantineEntry]
) -> list[QuarantineEntry]:
    """The entries of *new* a quarantine holding *kept* adds: those it does not hold yet."""
    seen = {_entry_key(e) for e in kept}
    out = []
    for entry in new:
        if _entry_key(entry) not in seen:
            seen.add(_entry_key(entry))
            out.append(entry)
    return out


def _engine(pipeline: Pipeline, store: Store) -> Engine:
    return Engine(
        pipeline.funnel,
        hooks=pipeline.hooks,
        owners=pipeline.owners,
        scorer=pipeline.scorer,
        policy=pipeline.policy,
        thresholds=pipeline.thresholds,
        store=store,
    )


def _feed(engine: Engine, items: Sequence[Touch | Action | Advance]) -> None:
    """Give *items* to *engine* one at a time; an item the engine refuses is set aside."""
    for item in items:
        with contextlib.suppress(BuyerJourneyError):
            if isinstance(item, Touch):
                engine.ingest_one(item)
            elif isinstance(item, Advance):
                engine.advance(item.at)
            else:
                engine.perform(item)


def _equal(got: object, wanted: object, what: str) -> None:
    if got != wanted:
        raise AssertionError(f"{what}: got {got!r}, wanted {wanted!r}")


def _first_difference(got: Sequence[Any], wanted: Sequence[Any]) -> str:
    for i, (a, b) in enumerate(zip(got, wanted, strict=False)):
        if a != b:
            return f"item {i} differs: got {a!r}, wanted {b!r}"
    return f"got {len(got)} items, wanted {len(wanted)}"


def _same_log(got: StoredLog, wanted: StoredLog, where: str) -> None:
    for name in ("records", "touches", "actions"):
        mine, theirs = getattr(got, name), getattr(wanted, name)
        if mine != theirs:
            raise AssertionError(
                f"{where}: the {name} loaded are not the ones committed; "
                f"{_first_difference(mine, theirs)}"
            )


def _same_journeys(got: Mapping[str, Journey], wanted: Mapping[str, Journey], where: str) -> None:
    mine, theirs = dict(got), dict(wanted)
    if mine != theirs:
        lead = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))[0]
        raise AssertionError(
            f"{where}: the journey of {lead!r} is {mine.get(lead)!r}, wanted {theirs.get(lead)!r}"
        )


class StoreConformance(unittest.TestCase):
    """The properties every store must have; subclass it and define :meth:`make_store`.

    A subclass is a :class:`unittest.TestCase` that pytest and unittest
    collect; this base class is not collected, and skips itself under
    unittest.

    Attributes:
        pipeline: The pipeline the engine-level properties run (default: the
            demand waterfall preset with its default scorer and policy).
        max_examples: Examples per property, or ``None`` (the default) for a
            quarter of the loaded Hypothesis profile's ``max_examples``, at
            least 10.
    """

    __test__: ClassVar[bool] = False
    pipeline: ClassVar[Pipeline | None] = None
    max_examples: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    # ------------------------------------------------------------ to override

    def make_store(self) -> Store:
        """A new, empty store. Subclasses must define it; it is called once per example.

        Raises:
            NotImplementedError: Always, here.
        """
        msg = f"{type(self).__name__} must define make_store()"
        raise NotImplementedError(msg)

    def reopen_store(self, store: Store) -> Store:
        """*store* closed and opened again, as the next process would (default: *store* itself).

        A durable store overrides it (close, then open the same file, URL or
        location), so that the engine-level properties prove a resume from
        what was stored rather than from what the object keeps in memory.

        Args:
            store: A store :meth:`make_store` made (or this method returned).
        """
        return store

    def close_store(self, store: Store) -> None:
        """Release *store* once an example is done (default: its ``close()``, if it has one).

        Args:
            store: A store :meth:`make_store` or :meth:`reopen_store` returned.
        """
        close = getattr(store, "close", None)
        if callable(close):
            close()

    def the_pipeline(self) -> Pipeline:
        """The pipeline of the engine-level properties (from :attr:`pipeline`)."""
        chosen = type(self).pipeline
        return chosen if chosen is not None else default_pipeline(presets.demand_waterfall())

    def hypothesis_settings(self) -> Settings:
        """The settings of every property: the loaded profile's, with :attr:`max_examples`."""
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
                HealthCheck.filter_too_much,
            ),
            phases=tuple(p for p in profile.phases if p is not Phase.explain),
        )

    # ------------------------------------------------------------ running

    def setUp(self) -> None:
        """Skip the base class itself."""
        super().setUp()
        if type(self).make_store is StoreConformance.make_store:
            self.skipTest(f"{type(self).__name__} defines no make_store(); nothing to test")

    @contextlib.contextmanager
    def fresh_store(self) -> Iterator[list[Store]]:
        """A new store, closed at the end; ``box[0]`` is the store (reopening replaces it)."""
        store = self.make_store()
        if not isinstance(store, Store):
            self.close_store(store)
            msg = f"make_store() must return a Store (got {store!r})"
            raise TypeError(msg)
        box = [store]
        try:
            yield box
        finally:
            self.close_store(box[0])

    def _reopen(self, box: list[Store]) -> Store:
        box[0] = self.reopen_store(box[0])
        return box[0]

    def _check(self, prop: Callable[..., None], **strategies: st.SearchStrategy[Any]) -> None:
        """Run *prop* as a Hypothesis test on *strategies*."""

        def check(**values: Any) -> None:
            prop(**values)

        name = getattr(prop, "__name__", "property")
        key = f"{type(self).__module__}.{type(self).__qualname__}.{name}"
        check.__dict__["_hypothesis_internal_add_digest"] = key.encode()
        check.__qualname__ = f"{type(self).__qualname__}.{name}"
        self.hypothesis_settings()(given(**strategies)(check))()

    def _commit(self, store: Store, commit: _Commit, **journeys: Any) -> None:
        store.commit(
            commit.records, commit.touches, commit.actions, expected=commit.start, **journeys
        )

    def _refused(
        self, store: Store, before: StoredLog, where: str, call: Callable[[], None]
    ) -> None:
        """*call* must raise StoreConflict and leave the store's log as *before*."""
        try:
            call()
        except StoreConflict:
            pass
        else:
            raise AssertionError(f"{where}: the commit was not refused with StoreConflict")
        _same_log(store.load(), before, f"{where}: after the refused commit")

    # ------------------------------------------------------------ the log

    def test_an_empty_store_loads_nothing(self) -> None:
        """A new store has no records, touches, actions, journeys or quarantine."""
        with self.fresh_store() as box:
            store = box[0]
            _same_log(store.load(), StoredLog(), "a new store")
            _same_log(store.load(after=0), StoredLog(), "a new store, load(after=0)")
            _same_journeys(store.journeys(), {}, "a new store")
            _equal(store.quarantined(), [], "a new store has a quarantine")

    def test_what_is_committed_loads_back_exactly(self) -> None:
        """Records, touches and actions of several commits load back equal, in order."""
        self._check(self._round_trip, commits=_commits())

    def _round_trip(self, commits: list[_Commit]) -> None:
        with self.fresh_store() as box:
            for commit in commits:
                self._commit(box[0], commit)
            _same_log(box[0].load(), _expected_load(commits, 0), "load()")
            store = self._reopen(box)
            _same_log(store.load(), _expected_load(commits, 0), "load() after reopening")

    def test_load_after_gives_exactly_the_later_commits(self) -> None:
        """``load(after=n)``, *n* where a commit started, gives that commit and the later ones."""
        self._check(self._load_after, commits=_commits(), data=st.data())

    def _load_after(self, commits: list[_Commit], data: st.DataObject) -> None:
        with self.fresh_store() as box:
            for commit in commits:
                self._commit(box[0], commit)
            end = commits[-1].start + len(commits[-1].records)
            after = data.draw(st.sampled_from([*(c.start for c in commits), end]), label="after")
            _same_log(box[0].load(after=after), _expected_load(commits, after), f"load({after=})")

    def test_a_writer_behind_the_log_is_refused(self) -> None:
        """A commit expecting a shorter log than the store's: StoreConflict, nothing stored."""
        self._check(
            self._behind, commits=_commits(), extra=st.lists(_records(), min_size=1, max_size=3)
        )

    def _behind(self, commits: list[_Commit], extra: list[Record]) -> None:
        with self.fresh_store() as box:
            store = box[0]
            for commit in commits:
                self._commit(store, commit)
            length = commits[-1].start + len(commits[-1].records)
            if length == 0:
                return
            before = store.load()
            stale = length - 1
            late = [attrs.evolve(r, seq=stale + i) for i, r in enumerate(extra)]
            where = f"expected={stale} on a log of {length}"
            try:
                store.commit(late, expected=stale)
            except StoreConflict as exc:
                _equal(exc.expected, stale, f"{where}: StoreConflict.expected")
                _equal(exc.stored, length, f"{where}: StoreConflict.stored")
            else:
                raise AssertionError(f"{where}: the commit was not refused with StoreConflict")
            _same_log(store.load(), before, f"{where}: after the refused commit")
            # the writer that caught up succeeds
            current = [attrs.evolve(r, seq=length + i) for i, r in enumerate(extra)]
            store.commit(current, expected=length)
            _equal(store.load(after=length).records, tuple(current), "the commit after catching up")

    def test_an_id_stored_already_refuses_the_whole_commit(self) -> None:
        """A repeated touch or action id raises StoreConflict; none of that commit is stored."""
        self._check(
            self._repeated_id, commits=_commits(), extra=st.lists(_records(), max_size=3),
            new=st.lists(_TOUCHES, max_size=2), data=st.data(),
        )  # fmt: skip

    def _repeated_id(
        self, commits: list[_Commit], extra: list[Record], new: list[Touch], data: st.DataObject
    ) -> None:
        stored_touches = [t for c in commits for t in c.touches]
        stored_actions = [a for c in commits for a in c.actions if a.action_id is not None]
        taken = {t.touch_id for t in stored_touches}
        fresh = [t for t in {t.touch_id: t for t in new}.values() if t.touch_id not in taken]
        with self.fresh_store() as box:
            store = box[0]
            for commit in commits:
                self._commit(store, commit)
            length = commits[-1].start + len(commits[-1].records)
            records = [attrs.evolve(r, seq=length + i) for i, r in enumerate(extra)]
            before = store.load()
            cases: list[tuple[str, list[Touch], list[Action]]] = []
            if stored_touches:
                again = data.draw(st.sampled_from(stored_touches), label="touch again")
                cases.append((f"touch id {again.touch_id!r} again", [*fresh, again], []))
            if stored_actions:
                again_a = data.draw(st.sampled_from(stored_actions), label="action again")
                cases.append((f"action id {again_a.action_id!r} again", fresh, [again_a]))
            if fresh:
                cases.append((f"touch id {fresh[0].touch_id!r} twice", [*fresh, fresh[0]], []))
            for where, touches_, actions_ in cases:
                self._refused(store, before, where, functools.partial(
                    store.commit, records, touches_, actions_, expected=length
                ))  # fmt: skip
            # what was refused was not half-stored: the fresh touches still commit
            store.commit(records, fresh, expected=length)
            _equal(store.load().touches, (*before.touches, *fresh), "the touches refused before")

    def test_actions_without_ids_may_repeat(self) -> None:
        """An action without an id is not idempotent: the same one commits twice."""
        with self.fresh_store() as box:
            store = box[0]
            action = Action("send", "lead-1", EPOCH, Actor("rep_a", "sales"), event="qualify")
            store.commit([], (), [action], expected=0)
            store.commit([], (), [action], expected=0)
            _equal(store.load().actions, (action, action), "one action without an id, twice")

    def test_text_a_store_cannot_keep_is_refused_cleanly(self) -> None:
        """A lone surrogate or a NUL in a text is kept exactly, or refused with StoreError.

        Refused, nothing of the commit is stored; in no case does the
        database driver's own exception reach the caller.
        """
        for text in ("lead-\ud800", "lead\x00one"):
            with self.fresh_store() as box:
                store = box[0]
                touch = Touch("t-odd", text, EPOCH, "page_view")
                record = Record(text, 0, EPOCH, RecordKind.CREATED, reason=text, data={"k": text})
                try:
                    store.commit([record], [touch], expected=0)
                except StoreConflict as exc:
                    raise AssertionError(f"{text!r}: a conflict on an empty store: {exc}") from exc
                except StoreError:
                    _same_log(store.load(), StoredLog(), f"{text!r} refused")
                    continue
                _same_log(store.load(), StoredLog((record,), (touch,)), f"{text!r} kept")

    # ------------------------------------------------------------ snapshot, quarantine

    def test_the_journeys_snapshot_is_upserted_and_replaced(self) -> None:
        """Each commit's journeys are upserted; ``replace_journeys`` replaces the snapshot whole."""
        self._check(
            self._snapshot, stream=touch_streams(max_size=12, kinds=self._kinds()), data=st.data()
        )

    def _kinds(self) -> tuple[str, ...]:
        funnel = self.the_pipeline().funnel
        return (*funnel.events, "page_view", "email_click", "demo_request")

    def _snapshot(self, stream: list[Touch], data: st.DataObject) -> None:
        pipeline = self.the_pipeline()
        cut = data.draw(st.integers(0, len(stream)), label="cut")
        first, whole = pipeline.engine(), pipeline.engine()
        first.ingest(stream[:cut])
        whole.ingest(stream)
        start = len(first.records)
        changed = {lead: j for lead, j in whole.journeys.items() if first.journeys.get(lead) != j}
        with self.fresh_store() as box:
            store = box[0]
            store.commit(first.records, expected=0, journeys=first.journeys)
            _same_journeys(store.journeys(), first.journeys, "after the first commit")
            store.commit(whole.records[start:], expected=start, journeys=changed)
            _same_journeys(store.journeys(), whole.journeys, "after the second commit (an upsert)")
            lookup = getattr(store, "journey", None)
            if callable(lookup):
                for lead, journey in whole.journeys.items():
                    _equal(lookup(lead), journey, f"journey({lead!r})")
                _equal(lookup("no such lead"), None, "journey() of an unknown lead")
            keep = data.draw(
                st.lists(st.sampled_from(sorted(whole.journeys)), unique=True)
                if whole.journeys
                else st.just([]),
                label="kept by replace_journeys",
            )
            subset = {lead: whole.journeys[lead] for lead in keep}
            store.replace_journeys(subset)
            _same_journeys(store.journeys(), subset, "after replace_journeys")
            store = self._reopen(box)
            _same_journeys(store.journeys(), subset, "after replace_journeys and reopening")

    def test_the_quarantine_keeps_entries_until_released(self) -> None:
        """Entries come back in order with ids, each input once; released ones are gone."""
        entry = st.builds(
            QuarantineEntry,
            source=_TEXT, line=st.integers(0, 2**40), reason=_TEXT, text=_TEXT,
            code=st.sampled_from(("json", "late", "hook")),
        )  # fmt: skip
        self._check(
            self._quarantine,
            first=st.lists(entry, max_size=4),
            second=st.lists(entry, max_size=3),
            data=st.data(),
        )

    def _quarantine(
        self, first: list[QuarantineEntry], second: list[QuarantineEntry], data: st.DataObject
    ) -> None:
        with self.fresh_store() as box:
            store = box[0]
            store.quarantine(first)
            store.quarantine([])
            store.quarantine(first)  # the same inputs again: kept once
            kept = store.quarantined()
            self._same_entries(kept, _kept_once([], first), "after quarantine()")
            drop = data.draw(st.sets(st.sampled_from(kept)) if kept else st.just(set()))
            store.release(e.entry_id for e in drop if e.entry_id is not None)
            rest = [e for e in kept if e not in drop]
            _equal(store.quarantined(), rest, "after release()")
            store.quarantine(second)
            store = self._reopen(box)
            now = store.quarantined()
            _equal(now[: len(rest)], rest, "older entries after more were added")
            self._same_entries(now[len(rest) :], _kept_once(rest, second), "entries added later")

    def _same_entries(
        self, got: list[QuarantineEntry], wanted: list[QuarantineEntry], where: str
    ) -> None:
        ids = [e.entry_id for e in got]
        if any(i is None for i in ids) or len(set(ids)) != len(ids) or ids != sorted(ids):  # type: ignore[type-var]
            raise AssertionError(f"{where}: entry ids {ids} are not distinct, increasing ids")
        _equal([attrs.evolve(e, entry_id=None) for e in got], wanted, f"{where}: the entries")

    # ------------------------------------------------------------ an engine on the store

    def test_two_halves_with_a_reopened_store_equal_one_run(self) -> None:
        """Half a stream, reopen, the rest: the log and journeys of one uninterrupted run."""
        self._check(
            self._halves,
            stream=touch_streams(max_size=24, kinds=self._kinds(), duplicates=True, late=True),
            data=st.data(),
        )

    def _halves(self, stream: list[Touch], data: st.DataObject) -> None:
        pipeline = self.the_pipeline()
        whole = pipeline.engine()
        whole.ingest(stream)
        cut = data.draw(st.integers(0, len(stream)), label="cut")
        with self.fresh_store() as box:
            first = _engine(pipeline, box[0])
            first.ingest(stream[:cut])
            store = self._reopen(box)
            second = _engine(pipeline, store)
            _same_journeys(second.journeys, first.journeys, "the resumed engine, before ingesting")
            _equal(second.clock, first.clock, "the resumed engine's clock")
            second.ingest(stream[cut:])
            self._equals_run(store, second, whole, f"ingested in two parts at {cut}")

    def _equals_run(self, store: Store, engine: Engine, reference: Engine, where: str) -> None:
        if engine.records != reference.records:
            raise AssertionError(
                f"{where}: the engine's log is not one run's; "
                f"{_first_difference(engine.records, reference.records)}"
            )
        _same_journeys(engine.journeys, reference.journeys, f"{where}: the engine")
        stored = store.load()
        if stored.records != reference.records:
            raise AssertionError(
                f"{where}: the stored log is not one run's; "
                f"{_first_difference(stored.records, reference.records)}"
            )
        _same_journeys(store.journeys(), reference.journeys, f"{where}: the snapshot")
        applied = {t.touch_id for t in stored.touches}
        if len(applied) != len(stored.touches):
            raise AssertionError(f"{where}: a touch id is stored twice")
        caused = {r.touch_id for r in stored.records if r.touch_id is not None}
        if not caused <= applied:
            raise AssertionError(
                f"{where}: records name touches that are not stored: {sorted(caused - applied)}"
            )

    def test_resuming_with_actions_and_time_equals_one_run(self) -> None:
        """Touches, manual actions and time passing, split over two engines: one run's result."""
        pipeline = self.the_pipeline()
        self._check(
            self._halves_with_actions,
            stream=streams(pipeline, kinds=self._kinds(), max_size=12),
            data=st.data(),
        )

    def _halves_with_actions(
        self, stream: list[Touch | Action | Advance], data: st.DataObject
    ) -> None:
        pipeline = self.the_pipeline()
        whole = pipeline.engine()
        _feed(whole, stream)
        cut = data.draw(st.integers(0, len(stream)), label="cut")
        with self.fresh_store() as box:
            _feed(_engine(pipeline, box[0]), stream[:cut])
            store = self._reopen(box)
            second = _engine(pipeline, store)
            _feed(second, stream[cut:])
            self._equals_run(store, second, whole, f"fed in two parts at {cut}")

    def test_ingesting_again_applies_nothing_new(self) -> None:
        """The same stream again, on a reopened store: nothing new, each stored id a duplicate."""
        self._check(
            self._again,
            stream=touch_streams(max_size=24, kinds=self._kinds(), duplicates=True, late=True),
        )

    def _again(self, stream: list[Touch]) -> None:
        pipeline = self.the_pipeline()
        with self.fresh_store() as box:
            _engine(pipeline, box[0]).ingest(stream)
            store = self._reopen(box)
            before, snapshot = store.load(), store.journeys()
            again = _engine(pipeline, store)
            report = again.ingest(stream)
            _same_log(store.load(), before, "after ingesting the same stream again")
            _same_journeys(store.journeys(), snapshot, "after ingesting the same stream again")
            _equal(report.records, 0, "records written by the second ingest")
            _equal(report.accepted, 0, "touches applied by the second ingest")
            stored_ids = {t.touch_id for t in before.touches}
            known = sum(1 for t in stream if t.touch_id in stored_ids)
            duplicates = getattr(report, "duplicates", None)
            if duplicates is not None:
                _equal(duplicates, known, "duplicates counted by the second ingest")

    def test_rebuilding_the_stored_log_gives_the_snapshot(self) -> None:
        """Folding the stored log from scratch gives exactly the stored journeys."""
        self._check(
            self._rebuilds, stream=touch_streams(max_size=24, kinds=self._kinds(), late=True)
        )

    def _rebuilds(self, stream: list[Touch]) -> None:
        pipeline = self.the_pipeline()
        with self.fresh_store() as box:
            _engine(pipeline, box[0]).ingest(stream)
            store = self._reopen(box)
            rebuilt = rebuild(pipeline.funnel, store.load().records)
            _same_journeys(store.journeys(), rebuilt, "the snapshot against the rebuilt log")
            store.replace_journeys(rebuilt)
            _same_journeys(store.journeys(), rebuilt, "the snapshot replaced by the rebuilt one")
