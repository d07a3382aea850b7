"""The fold of ``buyerjourney._core.journey``, record by record, found missing by mutation testing.

The other journey tests fold whole engine logs; these fold hand-written records and check
each field the fold sets (times, versions, grades, learned attributes, the acceptance
flag), the boundaries of ``StageTime.latest`` and of the highest stage, and the exact
``CorruptLog`` for each record that does not fit. See docs/mutation.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from buyerjourney import Funnel, Stage, StageKind, Transition
from buyerjourney._core.journey import Journey, StageTime, apply, rebuild
from buyerjourney._core.records import Record, RecordKind
from buyerjourney.errors import CorruptLog
from sample_funnels import demo_funnel

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
TAIL = ". The log was changed by something other than buyerjourney, or belongs to another funnel."


def created(at: datetime = T0, target: str = "lead", to_team: str | None = "marketing") -> Record:
    return Record("l", 0, at, RecordKind.CREATED, target=target, to_team=to_team)


def start() -> Journey:
    return apply(demo_funnel(), None, created())


def corrupt(journey: Journey | None, record: Record) -> CorruptLog:
    with pytest.raises(CorruptLog) as info:
        apply(demo_funnel(), journey, record)
    assert info.value.record is record
    return info.value


def test_created_sets_every_field_from_the_record() -> None:
    at = T0 + 5 * HOUR
    journey = apply(demo_funnel(), None, created(at))
    assert (journey.lead_id, journey.stage, journey.highest, journey.owner) == (
        "l",
        "lead",
        "lead",
        "marketing",
    )
    assert (journey.created, journey.updated, journey.version) == (at, at, 1)
    assert journey.pending_acceptance is False
    assert journey.stages == {"lead": StageTime(entered=at, first_entered=at)}


def test_a_journey_created_in_a_gate_stage_waits_for_acceptance() -> None:
    journey = apply(demo_funnel(), None, created(target="sql", to_team="sales"))
    assert journey.pending_acceptance is True
    accepted = apply(demo_funnel(), journey, Record("l", 1, T0 + HOUR, RecordKind.ACCEPTED))
    assert accepted.pending_acceptance is False
    assert (accepted.version, accepted.updated) == (2, T0 + HOUR)


@pytest.mark.parametrize(
    "first",
    [
        Record("l", 0, T0, RecordKind.TRANSITION, source="lead", target="mql", to_team="sales"),
        Record("l", 0, T0, RecordKind.CREATED, to_team="marketing"),
    ],
    ids=["not-created", "created-without-target"],
)
def test_a_log_must_start_with_a_created_record_into_a_stage(first: Record) -> None:
    error = corrupt(None, first)
    assert str(error) == (
        f"record 0 ({first.kind.value}) of lead 'l': "
        f"the first record of a journey must be CREATED{TAIL}"
    )


@pytest.mark.parametrize(
    ("target", "to_team"),
    [("nowhere", "marketing"), ("lead", None)],
    ids=["unknown-stage", "no-owner"],
)
def test_a_created_record_needs_a_known_stage_and_an_owner(
    target: str, to_team: str | None
) -> None:
    error = corrupt(None, created(target=target, to_team=to_team))
    assert str(error) == (
        f"record 0 (created) of lead 'l': unknown initial stage {target!r} or no owner{TAIL}"
    )


def test_a_second_created_record_is_corrupt() -> None:
    error = corrupt(start(), created())
    assert str(error) == f"record 0 (created) of lead 'l': the journey already exists{TAIL}"


def test_a_move_to_an_unknown_stage_is_corrupt_even_from_the_right_stage() -> None:
    record = Record(
        "l", 1, T0, RecordKind.TRANSITION, event="qualify", source="lead", target="nowhere"
    )
    error = corrupt(start(), record)
    assert str(error) == (
        "record 1 (transition) of lead 'l': moves 'lead' -> 'nowhere' but the journey is in "
        f"'lead'{TAIL}"
    )


def test_scored_records_set_score_and_grade_and_keep_them_when_absent() -> None:
    journey = start()
    journey = apply(
        demo_funnel(),
        journey,
        Record("l", 1, T0, RecordKind.SCORED, score=12.5, data={"grade": "A"}),
    )
    assert (journey.score, journey.grade, journey.version) == (12.5, "A", 2)
    journey = apply(demo_funnel(), journey, Record("l", 2, T0 + HOUR, RecordKind.SCORED))
    assert (journey.score, journey.grade, journey.version) == (12.5, "A", 3)
    journey = apply(
        demo_funnel(),
        journey,
        Record("l", 3, T0 + HOUR, RecordKind.SCORED, score=0.0, data={"grade": "C"}),
    )
    assert (journey.score, journey.grade) == (0.0, "C")


def test_scored_records_merge_learned_attributes() -> None:
    journey = apply(
        demo_funnel(),
        None,
        Record(
            "l",
            0,
            T0,
            RecordKind.CREATED,
            target="lead",
            to_team="marketing",
            data={"attributes": {"segment": "smb"}},
        ),
    )
    assert journey.attributes == {"segment": "smb"}
    journey = apply(
        demo_funnel(),
        journey,
        Record("l", 1, T0, RecordKind.SCORED, score=1.0, data={"attributes": {"employees": 50}}),
    )
    assert journey.attributes == {"segment": "smb", "employees": 50}
    journey = apply(
        demo_funnel(),
        journey,
        Record("l", 2, T0, RecordKind.SCORED, score=2.0, data={"attributes": {"segment": "mid"}}),
    )
    assert journey.attributes == {"segment": "mid", "employees": 50}


def test_entering_a_stage_sets_its_first_entry_and_reentering_reopens_it() -> None:
    funnel = demo_funnel()
    log = [
        created(),
        Record(
            "l", 1, T0 + HOUR, RecordKind.TRANSITION, event="qualify", source="lead", target="sql"
        ),
        Record(
            "l",
            2,
            T0 + 3 * HOUR,
            RecordKind.TRANSITION,
            event="recycle",
            source="sql",
            target="lead",
            reason="bad timing",
        ),
        Record(
            "l",
            3,
            T0 + 4 * HOUR,
            RecordKind.TRANSITION,
            event="qualify",
            source="lead",
            target="sql",
        ),
    ]
    journey = rebuild(funnel, log)["l"]
    sql = journey.stages["sql"]
    assert sql == StageTime(
        entered=T0 + 4 * HOUR, first_entered=T0 + HOUR, exited=None, cumulative=2 * HOUR, visits=2
    )
    assert rebuild(funnel, log[:2])["l"].stages["sql"] == StageTime(
        entered=T0 + HOUR, first_entered=T0 + HOUR
    )
    assert journey.pending_acceptance is True


def test_latest_visit_of_a_closed_stage_ends_when_it_was_left() -> None:
    closed = StageTime(entered=T0, first_entered=T0, exited=T0 + 3 * HOUR)
    assert closed.latest(T0 + 100 * HOUR) == 3 * HOUR
    left_at_once = StageTime(entered=T0, first_entered=T0, exited=T0)
    assert left_at_once.latest(T0 + 100 * HOUR) == timedelta(0)
    still_open = StageTime(entered=T0, first_entered=T0)
    assert still_open.latest(T0 + 2 * HOUR) == 2 * HOUR
    # A visit re-entered after it was left: the exit belongs to an earlier visit.
    reentered = StageTime(entered=T0 + 5 * HOUR, first_entered=T0, exited=T0 + HOUR)
    assert reentered.latest(T0 + 7 * HOUR) == 2 * HOUR


def test_highest_moves_only_to_a_strictly_higher_rank() -> None:
    funnel = Funnel(
        "twins",
        [
            Stage("a", 10, initial=True),
            Stage("b", 20),
            Stage("c", 20),
            Stage("won", 30, StageKind.WON, terminal=True),
        ],
        [
            Transition("to_b", "a", "b"),
            Transition("to_c", "a", "c"),
            Transition("win", "b", "won"),
            Transition("win", "c", "won"),
        ],
    )
    log = [
        Record("l", 0, T0, RecordKind.CREATED, target="a", to_team="marketing"),
        Record("l", 1, T0, RecordKind.TRANSITION, event="to_b", source="a", target="b"),
        Record("l", 2, T0, RecordKind.OVERRIDE, source="b", target="c", reason="same rank"),
    ]
    journey = rebuild(funnel, log)["l"]
    assert (journey.stage, journey.highest) == ("c", "b")
