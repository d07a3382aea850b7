"""Late touches: put back in time order per lead, so the result equals on-time arrival.

The rule (docs/howto/persistence.md, "Late touches"): with ``lateness=L`` an
engine applies a touch that is at most ``L`` older than the latest time it has
seen; one older than its lead's latest change re-folds that lead's journey in
time order (a ``REVISED`` record supersedes the records that change). SLA
escalations wait for the watermark (the latest time less ``L``), and a lead's
own deadlines fire when its own inputs pass them, so each lead's log is the
one on-time arrival gives. Older touches are quarantined as too late.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buyerjourney import (
    Actor,
    Engine,
    MemoryStore,
    RecordKind,
    SQLiteStore,
    Touch,
    default_pipeline,
    presets,
)
from buyerjourney._core.journey import rebuild
from buyerjourney._core.lifecycle import effective
from buyerjourney.analytics import funnel_report, handoff_report
from buyerjourney.errors import InvalidAction, InvalidTouch
from buyerjourney.testing.strategies import touch_streams

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
PIPELINE = default_pipeline(presets.get("waterfall"))


def _engine(lateness: timedelta = timedelta(0), **kwargs: Any) -> Engine:
    return PIPELINE.engine(lateness=lateness, **kwargs)


def _per_lead(records: Any) -> dict[str, list[Any]]:
    """Each lead's records that count, without their place in the whole log."""
    out: dict[str, list[Any]] = {}
    for record in effective(records):
        out.setdefault(record.lead_id, []).append(attrs.evolve(record, seq=0))
    return out


def _touch(i: int, lead: str, hours: float, kind: str = "webinar_attended") -> Touch:
    return Touch(f"t{i}", lead, T0 + timedelta(hours=hours), kind)


def test_a_late_touch_refolds_its_journey_to_the_on_time_result() -> None:
    on_time = [_touch(1, "a", 0), _touch(2, "a", 1), _touch(3, "b", 2), _touch(4, "a", 3)]
    arrival = [on_time[0], on_time[2], on_time[3], on_time[1]]  # t2 comes after t4
    reference = _engine()
    reference.ingest(on_time)
    engine = _engine(lateness=6 * HOUR)
    report = engine.ingest(arrival)
    assert (report.accepted, report.late, report.quarantined) == (4, 1, ())
    assert dict(engine.journeys) == dict(reference.journeys)
    assert _per_lead(engine.records) == _per_lead(reference.records)
    revisions = [r for r in engine.records if r.kind is RecordKind.REVISED]
    assert [(r.lead_id, r.touch_id) for r in revisions] == [("a", "t2")]
    assert rebuild(PIPELINE.funnel, engine.records) == dict(engine.journeys)


def test_a_touch_older_than_the_lateness_is_quarantined() -> None:
    engine = _engine(lateness=HOUR)
    engine.ingest([_touch(1, "a", 0), _touch(2, "a", 5)])
    report = engine.ingest([_touch(3, "a", 3)])
    assert report.accepted == 0
    (entry,) = report.quarantined
    assert isinstance(entry.error, InvalidTouch)
    assert "too late" in entry.reason
    assert engine.ingest([_touch(4, "a", 4.5)]).late == 1  # within the hour: applied


def test_without_lateness_nothing_changes_a_late_touch_is_refused() -> None:
    engine = _engine()
    engine.ingest([_touch(1, "a", 0), _touch(2, "a", 5)])
    with pytest.raises(InvalidTouch, match="clock"):
        engine.ingest_one(_touch(3, "a", 3))
    assert not any(r.kind is RecordKind.REVISED for r in engine.records)


def test_escalations_wait_for_the_watermark_and_a_late_touch_can_prevent_one() -> None:
    """An SLA deadline passes only once the watermark passes it (not a late touch's clock)."""
    funnel = presets.seed().extend(
        name="seed_sla",
        replace_stages=[attrs.evolve(presets.seed().stage("consideration"), sla=2 * HOUR)],
    )
    pipeline = default_pipeline(funnel)
    engage = [Touch("e", "a", T0, "engage")]
    for lateness, escalated in ((timedelta(0), True), (3 * HOUR, False)):
        engine = pipeline.engine(lateness=lateness)
        engine.ingest(engage)
        assert engine.journey("a").stage == "consideration"
        # another lead's touch 2.5 h later: past a's deadline on the clock, not on the watermark
        engine.ingest([Touch("x", "b", T0 + 2.5 * HOUR, "visit")])
        kinds = [r.kind for r in engine.records if r.lead_id == "a"]
        assert (RecordKind.ESCALATION in kinds) is escalated


@settings(max_examples=60)
@given(
    stream=touch_streams(leads=(1, 4), max_size=30, max_gap=timedelta(hours=6)),
    seed=st.integers(0, 2**32 - 1),
)
def test_shuffled_within_the_lateness_and_duplicated_equals_sorted(
    stream: list[Touch], seed: int
) -> None:
    """Issue property: shuffled within the allowed lateness and 5 % duplicated gives the
    journeys of the sorted, de-duplicated stream."""
    lateness = 12 * HOUR
    rng = random.Random(seed)
    jitter = [rng.uniform(0, lateness.total_seconds()) for _ in stream]
    order = sorted(range(len(stream)), key=lambda i: stream[i].at + timedelta(seconds=jitter[i]))
    arrival = [stream[i] for i in order]
    for touch in list(arrival):
        if rng.random() < 0.05:  # a retried delivery, later
            arrival.insert(rng.randrange(arrival.index(touch), len(arrival) + 1), touch)
    seen: set[str] = set()
    unique = [t for t in arrival if not (t.touch_id in seen or seen.add(t.touch_id))]
    expected = sorted(unique, key=lambda t: t.at)  # stable: arrival order on ties
    reference = _engine()
    reference.ingest(expected)
    engine = _engine(lateness=lateness)
    report = engine.ingest(arrival)
    assert report.quarantined == ()
    assert report.duplicates == len(arrival) - len(expected)
    end = max((t.at for t in stream), default=T0)
    reference.advance(end)
    engine.advance(end)
    assert dict(engine.journeys) == dict(reference.journeys)
    assert _per_lead(engine.records) == _per_lead(reference.records)
    assert rebuild(PIPELINE.funnel, engine.records) == dict(engine.journeys)


def test_refolded_journeys_survive_a_restart(tmp_path: Any) -> None:
    on_time = [_touch(i, "ab"[i % 2], i) for i in range(12)]
    arrival = on_time[:4] + on_time[6:9] + on_time[4:6] + on_time[9:]
    reference = _engine()
    reference.ingest(on_time)
    path = tmp_path / "j.db"
    with SQLiteStore(path) as store:
        _engine(lateness=5 * HOUR, store=store).ingest(arrival[:8])
    with SQLiteStore(path) as store:
        engine = _engine(lateness=5 * HOUR, store=store)
        report = engine.ingest(arrival[8:])
        assert report.late >= 1
        assert dict(engine.journeys) == dict(reference.journeys)
        assert store.journeys() == dict(reference.journeys)
        assert rebuild(PIPELINE.funnel, store.read()) == dict(reference.journeys)
    with SQLiteStore(path) as store:  # a third process resumes the re-folded state
        resumed = _engine(lateness=5 * HOUR, store=store)
        assert dict(resumed.journeys) == dict(reference.journeys)
        more = [_touch(20, "a", 13), _touch(21, "b", 12.5)]
        resumed.ingest(more)
        reference.ingest(sorted(more, key=lambda t: t.at))
        assert dict(resumed.journeys) == dict(reference.journeys)


def test_a_late_action_for_a_lead_is_refused_not_refolded() -> None:
    engine = _engine(lateness=5 * HOUR)
    engine.ingest([_touch(1, "a", 0), _touch(2, "a", 3)])
    with pytest.raises(InvalidAction, match="latest change"):
        engine.override("a", "lost", actor=Actor("mia", "marketing"), at=T0 + HOUR, reason="test")


def test_a_memory_store_keeps_revisions_like_any_record() -> None:
    store = MemoryStore()
    engine = _engine(lateness=5 * HOUR, store=store)
    engine.ingest([_touch(1, "a", 0), _touch(2, "a", 3), _touch(3, "a", 1)])
    assert [r.kind for r in store.load().records].count(RecordKind.REVISED) == 1
    assert store.journeys() == dict(engine.journeys)


def test_reports_read_a_revised_log_as_the_on_time_log() -> None:
    on_time = [_touch(i, "abc"[i % 3], i, "demo_request" if i % 4 == 0 else "webinar_attended")
               for i in range(15)]  # fmt: skip
    arrival = on_time[:5] + on_time[8:11] + on_time[5:8] + on_time[11:]
    reference = _engine()
    reference.ingest(on_time)
    engine = _engine(lateness=6 * HOUR)
    assert engine.ingest(arrival).late >= 1
    funnel = PIPELINE.funnel
    assert funnel_report(funnel, engine.records).to_dict() == (
        funnel_report(funnel, reference.records).to_dict()
    )
    assert handoff_report(funnel, engine.records).to_dict() == (
        handoff_report(funnel, reference.records).to_dict()
    )
