"""The batch entry point of distributed runs: whole leads in, named columns out, an explicit clock.

Every batch result is compared with one engine fed the whole stream in time
order and advanced to ``until``: the journeys, and every lead's records in
order. The two traps of the distributed prototype are regression tests: a
batch sorted by lead raises instead of quarantining, and batches replayed
with their own end as the clock miss escalations that ``until`` restores.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from buyerjourney import Touch, default_pipeline, presets  # noqa: E402
from buyerjourney.bulk import (  # noqa: E402
    JOURNEY_FRAME_COLUMNS,
    RECORD_FRAME_COLUMNS,
    BatchNotInTimeOrder,
    InvalidBatch,
    LeadNotWhole,
    from_micros,
    journeys_frame,
    records_frame,
    replay,
    replay_batch,
    replay_partition,
    to_micros,
)
from buyerjourney.bulk._batch import carry_error, raised_error  # noqa: E402
from buyerjourney.errors import HookError, InvalidAction  # noqa: E402

T0 = datetime(2024, 3, 1, 9, tzinfo=timezone.utc)
PIPELINE = default_pipeline(presets.demand_waterfall())  # SAL has a 72-hour SLA
KINDS = (
    "page_view", "email_open", "pricing_view", "demo_request", "webinar_attended",
    "content_download", "qualify_sales", "open_opportunity", "win", "lose", "disqualify",
)  # fmt: skip


def stream(n_touches: int, n_leads: int, *, seed: int, hours: float = 0.25) -> Any:
    """A time-ordered touch table; touch ids sort like the rows (ties in time included)."""
    rng = np.random.default_rng(seed)
    lead = rng.integers(0, n_leads, n_touches)
    gaps = (rng.exponential(hours * 3600, n_touches) // 60 * 60 * 10**6).astype(np.int64)
    gaps[rng.random(n_touches) < 0.05] = 0  # touches of one instant
    at = to_micros(T0) + np.cumsum(gaps)
    kind = rng.choice(len(KINDS), n_touches, p=_weights())
    return pd.DataFrame(
        {
            "touch_id": [f"t{i:07d}" for i in range(n_touches)],
            "lead_id": [f"lead-{c:05d}" for c in lead],
            "at": at,
            "kind": np.asarray(KINDS, object)[kind],
        }
    )


def _weights() -> Any:
    w = np.array([30, 20, 8, 6, 5, 5, 3, 2, 1, 1, 1], np.float64)
    return w / w.sum()


def engine_frames(table: Any, until: datetime) -> tuple[Any, Any]:
    """The single-process result: one engine, the whole stream, advanced to *until*."""
    engine = PIPELINE.engine()
    report = engine.ingest(
        Touch(row.touch_id, row.lead_id, from_micros(row.at), row.kind)
        for row in table.itertuples()
    )
    assert not report.quarantined
    engine.advance(until)
    return journeys_frame(engine.journeys), records_frame(engine.records)


def by_lead(frame: Any) -> Any:
    return frame.sort_values("lead_id", kind="stable").reset_index(drop=True)


def by_lead_seq(frame: Any) -> Any:
    return frame.sort_values(["lead_id", "lead_seq"], kind="stable").reset_index(drop=True)


def assert_same(results: Sequence[Any], expected: tuple[Any, Any]) -> None:
    journeys = pd.concat([r.journeys for r in results], ignore_index=True)
    records = pd.concat([r.records for r in results], ignore_index=True)
    assert list(journeys.columns) == list(JOURNEY_FRAME_COLUMNS)
    assert list(records.columns) == list(RECORD_FRAME_COLUMNS)
    pd.testing.assert_frame_equal(by_lead(journeys), by_lead(expected[0]))
    pd.testing.assert_frame_equal(by_lead_seq(records), by_lead_seq(expected[1]))


def batches_of(table: Any, assignment: Sequence[int]) -> list[Any]:
    """Split *table* into batches of whole leads (lead i goes to batch assignment[i % len])."""
    leads = sorted(set(table["lead_id"]))
    where = {lead: assignment[i % len(assignment)] for i, lead in enumerate(leads)}
    part = table["lead_id"].map(where)
    return [table[part == b].reset_index(drop=True) for b in sorted(set(part))]


def end_of(table: Any, extra: timedelta = timedelta(0)) -> datetime:
    return from_micros(int(table["at"].max())) + extra


# ---------------------------------------------------------------- one batch


def test_a_batch_equals_the_engine_advanced_to_until() -> None:
    table = stream(3000, 200, seed=1)
    until = end_of(table, timedelta(days=10))
    result = replay_batch(PIPELINE, table, until=until)
    assert result.mode == "columnar"
    assert_same([result], engine_frames(table, until))
    kinds = set(result.records["kind"])
    assert {"escalation", "refused", "transition", "handoff", "threshold"} <= kinds


def test_until_adds_the_escalations_due_after_the_last_touch() -> None:
    rows = [
        (f"{lead}{i}", lead, T0 + timedelta(hours=i + offset), kind)
        for lead, offset in (("a", 0), ("b", 1))
        for i, kind in enumerate(("demo_request", "webinar_attended", "content_download"))
    ]
    rows.sort(key=lambda row: row[2])
    table = pd.DataFrame(
        {
            "touch_id": [r[0] for r in rows],
            "lead_id": [r[1] for r in rows],
            "at": [to_micros(r[2]) for r in rows],
            "kind": [r[3] for r in rows],
        }
    )
    early = replay_batch(PIPELINE, table, until=end_of(table))
    assert "escalation" not in set(early.records["kind"])
    late = end_of(table, timedelta(days=5))
    result = replay_batch(PIPELINE, table, until=late)
    escalations = result.records[result.records["kind"] == "escalation"]
    assert list(escalations["lead_id"]) == ["a", "b"]  # both reached SAL, 72 hours passed
    assert_same([result], engine_frames(table, late))
    assert result.journeys["escalated"].all()


def test_replay_takes_until_and_checks_it() -> None:
    touches = [
        Touch("1", "x", T0, "demo_request"),
        Touch("2", "x", T0, "webinar_attended"),
        Touch("3", "x", T0, "content_download"),
    ]
    later = T0 + timedelta(days=4)
    result = replay(PIPELINE, touches, until=later)
    engine = PIPELINE.engine()
    engine.ingest(touches)
    engine.advance(later)
    assert result.records() == list(engine.records)
    assert any(r.kind.value == "escalation" for r in engine.records)
    with pytest.raises(InvalidAction, match="not before the batch's last touch"):
        replay(PIPELINE, touches, until=T0 - timedelta(seconds=1))
    with pytest.raises(InvalidAction, match="timezone-aware"):
        replay(PIPELINE, touches, until=datetime(2024, 3, 5))


def test_reference_mode_gives_the_same_frames() -> None:
    table = stream(600, 40, seed=2)
    until = end_of(table, timedelta(days=3))
    fast = replay_batch(PIPELINE, table, until=until)
    slow = replay_batch(PIPELINE, table, until=until, mode="reference")
    assert slow.mode == "reference"
    assert_same([slow], (fast.journeys, fast.records))


# ---------------------------------------------------------------- trap 1: order


def test_regression_a_batch_sorted_by_lead_raises_instead_of_quarantining() -> None:
    table = stream(2000, 100, seed=3)
    by_lead_table = table.sort_values(["lead_id", "at"], kind="stable")
    # the naive path: the bulk replay quarantines most of it, silently
    naive = replay(
        PIPELINE,
        [
            Touch(r.touch_id, r.lead_id, from_micros(r.at), r.kind)
            for r in by_lead_table.itertuples()
        ],
    )
    assert len(naive.quarantined) > len(table) // 2
    with pytest.raises(BatchNotInTimeOrder, match="sorted by lead") as caught:
        replay_batch(PIPELINE, by_lead_table, until=end_of(table))
    assert caught.value.grouped_by_lead
    assert caught.value.position > 0


def test_a_shuffled_batch_raises_without_claiming_lead_order() -> None:
    table = stream(200, 20, seed=4).sample(frac=1.0, random_state=1)
    with pytest.raises(BatchNotInTimeOrder, match="not sorted by time") as caught:
        replay_batch(PIPELINE, table, until=end_of(table))
    assert not caught.value.grouped_by_lead


def test_ties_must_follow_the_order_column() -> None:
    table = pd.DataFrame(
        {
            "touch_id": ["1", "2"],
            "lead_id": ["a", "b"],
            "at": [to_micros(T0)] * 2,
            "kind": ["page_view"] * 2,
            "seq": [5, 3],
        }
    )
    with pytest.raises(BatchNotInTimeOrder):
        replay_batch(PIPELINE, table, until=T0, columns={"order": "seq"})
    replay_batch(PIPELINE, table, until=T0)  # no order column: ties are the caller's order


# ---------------------------------------------------------------- trap 2: the clock


def test_regression_many_batches_need_the_global_clock() -> None:
    table = stream(1200, 150, seed=5, hours=0.3)
    until = end_of(table)
    expected = engine_frames(table, until)
    batches = batches_of(table, list(range(150)))  # one lead per batch
    # the naive path: each batch's own last touch as the clock misses escalations
    naive = [replay_batch(PIPELINE, b, until=end_of(b)) for b in batches]
    naive_escalations = sum(int((r.records["kind"] == "escalation").sum()) for r in naive)
    expected_escalations = int((expected[1]["kind"] == "escalation").sum())
    assert naive_escalations < expected_escalations
    assert_same([replay_batch(PIPELINE, b, until=until) for b in batches], expected)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_touches=st.integers(1, 80),
    n_leads=st.integers(1, 12),
    assignment=st.lists(st.integers(0, 5), min_size=1, max_size=12),
    extra_hours=st.integers(0, 200),
)
def test_any_partition_of_the_leads_gives_the_engines_result(
    seed: int, n_touches: int, n_leads: int, assignment: list[int], extra_hours: int
) -> None:
    table = stream(n_touches, n_leads, seed=seed)
    until = end_of(table, timedelta(hours=extra_hours))
    results = [replay_batch(PIPELINE, b, until=until) for b in batches_of(table, assignment)]
    assert_same(results, engine_frames(table, until))


# ---------------------------------------------------------------- partitions grouped by lead


def test_replay_partition_holds_back_leads_that_straddle_batches() -> None:
    table = stream(1500, 60, seed=6)
    until = end_of(table, timedelta(days=2))
    grouped = table.sort_values(["lead_id", "at"], kind="stable").reset_index(drop=True)
    chunks = [grouped.iloc[i : i + 7] for i in range(0, len(grouped), 7)]
    results = list(replay_partition(PIPELINE, chunks, until=until, touches_per_call=20))
    assert len(results) > 10
    seen = [set(r.journeys["lead_id"]) for r in results]
    assert sum(map(len, seen)) == len(set().union(*seen))  # every lead replayed once, whole
    assert_same(results, engine_frames(table, until))


def test_replay_partition_sorts_each_lead_by_time_then_order_then_touch_id() -> None:
    table = stream(300, 10, seed=7)
    until = end_of(table)
    grouped = table.sort_values(["lead_id", "touch_id"], ascending=[True, False])
    assert_same(
        list(replay_partition(PIPELINE, [grouped], until=until)), engine_frames(table, until)
    )


def test_a_lead_that_comes_back_raises() -> None:
    table = stream(200, 5, seed=8)
    grouped = table.sort_values(["lead_id", "at"], kind="stable").reset_index(drop=True)
    first = grouped["lead_id"].iloc[0]
    moved = pd.concat([grouped, grouped[grouped["lead_id"] == first].iloc[:1]])
    moved = moved.drop_duplicates("touch_id", keep="last")
    with pytest.raises(LeadNotWhole, match="comes back") as caught:
        list(replay_partition(PIPELINE, [moved], until=end_of(table)))
    assert caught.value.lead_id == first
    # the same across calls: a lead finished in one call turns up in a later one
    later = [grouped.iloc[:50], grouped[grouped["lead_id"] == first].iloc[-1:]]
    with pytest.raises(LeadNotWhole, match="earlier batch"):
        list(
            replay_partition(
                PIPELINE,
                [*later[:1], grouped.iloc[50:60], later[1]],
                until=end_of(table),
                touches_per_call=1,
            )
        )


# ---------------------------------------------------------------- input forms and errors


def test_columns_timestamps_arrow_and_mappings() -> None:
    table = stream(400, 30, seed=9)
    until = end_of(table, timedelta(days=1))
    expected = replay_batch(PIPELINE, table, until=until)
    renamed = table.rename(columns={"lead_id": "customer", "at": "ts"})
    renamed["ts"] = pd.to_datetime(renamed["ts"], unit="us", utc=True).dt.tz_convert("Europe/Paris")
    mapping = {"lead_id": "customer", "at": "ts"}
    for source in (renamed, pa.Table.from_pandas(renamed), dict(renamed.items())):
        got = replay_batch(PIPELINE, source, until=until, columns=mapping)
        assert_same([got], (expected.journeys, expected.records))


def test_attributes_and_properties_columns_reach_the_replay() -> None:
    table = pd.DataFrame(
        {
            "touch_id": ["1", "2"],
            "lead_id": ["a", "a"],
            "at": [to_micros(T0), to_micros(T0 + timedelta(hours=1))],
            "kind": ["page_view", "demo_request"],
            "attributes": [[("segment", "smb")], None],
            "properties": [{"url": "/pricing"}, None],
        }
    )
    result = replay_batch(PIPELINE, table, until=T0 + timedelta(days=1))
    engine = PIPELINE.engine()
    engine.ingest(
        [
            Touch("1", "a", T0, "page_view", {"url": "/pricing"}, {"segment": "smb"}),
            Touch("2", "a", T0 + timedelta(hours=1), "demo_request"),
        ]
    )
    engine.advance(T0 + timedelta(days=1))
    assert_same([result], (journeys_frame(engine.journeys), records_frame(engine.records)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns="kind"), "no column 'kind'"),
        (lambda t: t.assign(lead_id=[None, *t["lead_id"][1:]]), "non-empty strings"),
        (lambda t: t.assign(at=["x"] * len(t)), "timestamps or int64"),
        (lambda t: t.assign(touch_id=["same"] * len(t)), "repeats"),
        (lambda t: t.assign(attributes=[1] * len(t)), "a mapping"),
    ],
)
def test_bad_batches_raise_typed_errors(change: Any, message: str) -> None:
    table = stream(5, 2, seed=10)
    with pytest.raises(InvalidBatch, match=message):
        replay_batch(PIPELINE, change(table), until=end_of(table))


def test_unknown_fields_and_tables_are_refused() -> None:
    table = stream(5, 2, seed=11)
    with pytest.raises(InvalidBatch, match="not a touch field"):
        replay_batch(PIPELINE, table, until=end_of(table), columns={"lead": "lead_id"})
    with pytest.raises(InvalidBatch, match="pandas DataFrame"):
        replay_batch(PIPELINE, [1, 2], until=end_of(table))
    with pytest.raises(InvalidAction):
        replay_batch(PIPELINE, table, until=from_micros(int(table["at"].min())))


def test_a_failing_hook_raises_instead_of_quarantining() -> None:
    def broken(lead: Any, at: datetime) -> Any:
        msg = "no score today"
        raise RuntimeError(msg)

    pipeline = default_pipeline(presets.seed())
    import attrs  # noqa: PLC0415

    pipeline = attrs.evolve(pipeline, scorer=broken)
    table = stream(5, 2, seed=12)
    with pytest.raises(HookError, match="no score today"):
        replay_batch(pipeline, table, until=end_of(table))


def test_errors_travel_from_workers_typed() -> None:
    table = stream(50, 5, seed=13).sort_values("lead_id", kind="stable")
    with pytest.raises(BatchNotInTimeOrder) as caught:
        replay_batch(PIPELINE, table, until=end_of(table))
    text = f"Traceback (most recent call last):\n  ...\nRuntimeError: {carry_error(caught.value)}\n"
    again = raised_error(text)
    assert type(again) is BatchNotInTimeOrder
    assert str(again) == str(caught.value)
    assert again.position == caught.value.position
    assert raised_error("RuntimeError: something else") is None
    assert raised_error("buyerjourney-error:not base64!:") is None
