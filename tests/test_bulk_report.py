"""The full funnel report on a columnar log against ``analytics.funnel_report``: equal dicts.

Differential properties: random pipelines and touch streams replayed in bulk
(the cases of ``test_fast``), random hand-written logs with overrides,
rejections and recycles (``test_analytics_helpers.logs``), and logs with
revisions (late touches re-folded by the engine), each across random paths,
the three order modes, windows, as-of and since dates. Unit tests on the
hand-computed sample log, edge cases and the errors.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

np = pytest.importorskip("numpy")

from buyerjourney import (  # noqa: E402
    Funnel,
    Record,
    RecordKind,
    Touch,
    UnknownStage,
    default_pipeline,
    presets,
)
from buyerjourney._pipeline import Pipeline  # noqa: E402
from buyerjourney.analytics import ORDERS, funnel_report  # noqa: E402
from buyerjourney.bulk import ColumnarLog, replay  # noqa: E402
from buyerjourney.bulk._report import columnar_funnel_report  # noqa: E402
from buyerjourney.errors import InvalidTouch  # noqa: E402
from buyerjourney.testing.strategies import touch_streams  # noqa: E402
from test_analytics_helpers import T0, Log, logs, sample_log, trial_funnel  # noqa: E402
from test_fast import cases as replay_cases  # noqa: E402

HOUR = timedelta(hours=1)
PATH = ("awareness", "consideration", "conversion")
SLOW = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


@st.composite
def report_options(draw: st.DrawFn, funnel: Funnel, records: list[Record]) -> dict[str, Any]:
    """Random options of ``funnel_report``: path, order, window, as-of and since."""
    names = list(funnel.stage_names)
    times = sorted({r.at for r in records}) or [T0]
    moments = [times[0] - timedelta(days=1), *times, times[-1] + timedelta(minutes=1)]
    window = st.one_of(
        st.none(),
        st.sampled_from((timedelta(0), HOUR, timedelta(days=1), timedelta(days=7))),
        st.integers(0, 10 * 24).map(lambda n: n * HOUR),
    )
    return {
        "path": draw(
            st.none() | st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True)
        ),
        "order": draw(st.sampled_from(ORDERS)),
        "window": draw(window),
        "as_of": draw(st.none() | st.sampled_from(moments)),
        "since": draw(st.none() | st.sampled_from(moments)),
    }


def assert_same(log: ColumnarLog, records: list[Record], options: dict[str, Any]) -> Any:
    """The columnar report equals the analytics' report on the records: dicts and text."""
    got = columnar_funnel_report(log, **options)
    expected = funnel_report(log.funnel, records, **options)
    assert got.to_dict() == expected.to_dict(), options
    assert got.format() == expected.format()
    assert got.describe() == expected.describe()
    assert got.empty == expected.empty
    return got


# ---------------------------------------------------------------- differential


@settings(max_examples=120, **SLOW)
@given(replay_cases(), st.data())
def test_the_report_of_a_bulk_replay_equals_the_analytics_report(
    case: tuple[Pipeline, list[Touch]], data: st.DataObject
) -> None:
    pipeline, touches = case
    result = replay(pipeline, touches)
    records = result.records()
    options = data.draw(report_options(pipeline.funnel, records))
    got = assert_same(result.log, records, options)
    assert result.funnel_report(**options).to_dict() == got.to_dict()


@settings(max_examples=200, **SLOW)
@given(logs(), st.data())
def test_the_report_of_a_written_log_equals_the_analytics_report(
    case: tuple[Funnel, Log], data: st.DataObject
) -> None:
    """Overrides (any stage, back and forth), rejections out of gates and recycles."""
    funnel, log = case
    options = data.draw(report_options(funnel, log.records))
    assert_same(ColumnarLog.from_records(funnel, log.records), log.records, options)


WATERFALL = default_pipeline(presets.get("waterfall"))


@settings(max_examples=60, **SLOW)
@given(
    touch_streams(
        leads=(1, 4),
        max_size=30,
        kinds=("webinar_attended", "demo_request", "qualify", "hand_off", "recycle", "win"),
        late=True,
        start=T0,
        max_gap=timedelta(hours=6),
    ),
    st.data(),
)
def test_a_revised_log_is_read_as_the_analytics_read_it(
    touches: list[Touch], data: st.DataObject
) -> None:
    """Late touches within the lateness are re-folded: REVISED records supersede earlier ones."""
    engine = WATERFALL.engine(lateness=timedelta(hours=12))
    engine.ingest(touches)
    records = list(engine.records)
    options = data.draw(report_options(WATERFALL.funnel, records))
    assert_same(ColumnarLog.from_records(WATERFALL.funnel, records), records, options)


# ---------------------------------------------------------------- the sample log


def sample() -> ColumnarLog:
    return ColumnarLog.from_records(trial_funnel(), sample_log().records)


def test_counts_rates_and_exits_of_the_sample_log() -> None:
    result = columnar_funnel_report(sample(), path=PATH)
    assert [row.entered for row in result.steps] == [5, 4, 2]
    assert [(row.exited, row.balance) for row in result.steps] == [(4, 1), (4, 0), (0, 2)]
    assert [row.step_conversion for row in result.steps] == [None, 4 / 5, 2 / 4]
    assert result.overall_conversion == 2 / 5
    assert result.journeys == 5
    consideration = result.step("consideration")
    assert [(b.stage, b.kind, b.leads, b.converted) for b in consideration.exits] == [
        ("awareness", "back", 1, 0),  # e, recycled
        ("conversion", "next", 1, 1),
        ("lost", "exit", 1, 0),
        ("trial", "detour", 1, 1),  # b, through the optional stage
    ]


def test_durations_of_the_sample_log() -> None:
    rows = columnar_funnel_report(sample(), path=PATH).steps
    # awareness visits of a, b, c, e: 10h, 4h, 2h, 4h
    assert rows[0].time_in_stage.count == 4
    assert rows[0].time_in_stage.median == 4 * HOUR
    assert rows[0].time_in_stage.p90 == 8.2 * HOUR  # 4h + 0.7 x (10h - 4h)
    assert rows[0].velocity == 4 * HOUR
    assert rows[1].time_in_stage.median == 5.5 * HOUR  # 1h, 1h, 10h, 46h
    assert rows[2].time_in_stage.count == 0
    # to conversion: a 10h (10 -> 20), b 25h (5 -> 30)
    assert rows[1].time_to_convert.minimum == 10 * HOUR
    assert rows[1].time_to_convert.maximum == 25 * HOUR
    assert rows[2].time_from_start.median == 24.5 * HOUR  # a 20h, b 29h


def test_every_order_mode_on_the_sample_log_equals_the_analytics() -> None:
    log = sample()
    for order in ORDERS:
        for window in (None, 2 * HOUR, 30 * HOUR):
            assert_same(log, sample_log().records, {"path": PATH, "order": order, "window": window})


def test_a_path_with_the_optional_stage() -> None:
    log = sample()
    result = assert_same(
        log, sample_log().records, {"path": ("awareness", "consideration", "trial", "conversion")}
    )
    assert [row.entered for row in result.steps] == [5, 4, 1, 1]
    assert all(r.step_conversion is None or r.step_conversion <= 1 for r in result.steps)
    kinds = {b.stage: b.kind for b in result.step("consideration").exits}
    assert kinds["conversion"] == "skip"  # a went straight to conversion
    assert kinds["trial"] == "next"


def test_a_recycled_lead_is_counted_once_from_its_first_entry() -> None:
    log = Log(trial_funnel()).create("e", 0)
    log.move("e", 1, "consideration").move("e", 2, "awareness").move("e", 5, "consideration")
    log.move("e", 6, "conversion")
    records = log.records
    columnar = ColumnarLog.from_records(log.funnel, records)
    for order in ORDERS:
        result = assert_same(columnar, records, {"path": PATH, "order": order})
        assert [row.entered for row in result.steps] == [1, 1, 1]
        # ordered, any: the visit at 0 (left at 1); strict: the chain that starts at 2
        visit = 3 * HOUR if order == "strict" else HOUR
        assert result.steps[0].time_in_stage.median == visit
        assert result.steps[2].time_from_start.median == 6 * HOUR  # from the anchor at 0


# ---------------------------------------------------------------- edge cases


def test_an_empty_log() -> None:
    for funnel in (trial_funnel(), presets.seed()):
        log = ColumnarLog.from_records(funnel, [])
        result = assert_same(log, [], {})
        assert (result.leads, result.journeys, result.overall_conversion) == (0, 0, None)
        assert all(row.entered == 0 and row.time_in_stage.count == 0 for row in result.steps)


def test_as_of_before_everything_and_since_after_everything() -> None:
    log = sample()
    early = assert_same(log, sample_log().records, {"as_of": T0 - timedelta(days=1)})
    assert (early.leads, early.journeys) == (0, 0)
    late = assert_same(log, sample_log().records, {"since": T0 + timedelta(days=30)})
    assert (late.leads, late.journeys) == (0, 5)


def test_as_of_and_since_cut_the_sample_log() -> None:
    log = sample()
    records = sample_log().records
    result = assert_same(log, records, {"path": PATH, "as_of": T0 + 9 * HOUR, "since": T0 + HOUR})
    assert [row.entered for row in result.steps] == [4, 3, 0]  # b, c, d, e; b, c, e


def test_a_log_with_a_revision_is_read_without_the_superseded_records() -> None:
    def touch(i: int, lead: str, hours: float, kind: str) -> Touch:
        return Touch(f"t{i}", lead, T0 + hours * HOUR, kind)

    on_time = [touch(i, "abc"[i % 3], i, "demo_request" if i % 4 == 0 else "webinar_attended")
               for i in range(15)]  # fmt: skip
    arrival = on_time[:5] + on_time[8:11] + on_time[5:8] + on_time[11:]
    engine = WATERFALL.engine(lateness=6 * HOUR)
    engine.ingest(arrival)
    records = list(engine.records)
    assert any(r.kind is RecordKind.REVISED for r in records)
    reference = WATERFALL.engine()
    reference.ingest(on_time)
    log = ColumnarLog.from_records(WATERFALL.funnel, records)
    for order in ORDERS:
        got = assert_same(log, records, {"order": order})
        assert (
            got.to_dict()
            == funnel_report(WATERFALL.funnel, reference.records, order=order).to_dict()
        )


def test_the_replay_of_the_seed_pipeline_on_a_longer_stream() -> None:
    pipeline = default_pipeline(presets.seed())
    kinds = ("page_view", "email_click", "demo_request", "pricing_view", "purchase", "unsubscribe")
    rng = np.random.default_rng(7)
    at = T0
    touches = []
    for i in range(3000):
        at += timedelta(minutes=int(rng.integers(0, 600)))
        lead = f"lead{int(rng.integers(0, 300))}"
        touches.append(Touch(f"t{i}", lead, at, kinds[int(rng.integers(0, len(kinds)))]))
    result = replay(pipeline, touches)
    records = result.records()
    middle = records[len(records) // 2].at
    for order in ORDERS:
        for options in (
            {},
            {"window": timedelta(days=3)},
            {"as_of": middle, "since": T0 + 5 * HOUR},
        ):
            assert_same(result.log, records, {"order": order, **options})


# ---------------------------------------------------------------- errors


def test_options_are_checked_as_the_analytics_check_them() -> None:
    log = sample()
    with pytest.raises(UnknownStage):
        columnar_funnel_report(log, path=("awareness", "nowhere"))
    with pytest.raises(ValueError, match="order"):
        columnar_funnel_report(log, order="sideways")
    with pytest.raises(ValueError, match="window"):
        columnar_funnel_report(log, window=-HOUR)
    with pytest.raises(ValueError, match="twice"):
        columnar_funnel_report(log, path=("awareness", "awareness"))
    with pytest.raises(InvalidTouch):
        columnar_funnel_report(log, as_of=datetime(2024, 1, 1))  # naive
    with pytest.raises(TypeError, match="ColumnarLog"):
        columnar_funnel_report(sample_log().records)  # type: ignore[arg-type]


def test_a_record_entering_a_stage_the_funnel_lacks_is_refused() -> None:
    records = [
        Record("x", 0, T0, RecordKind.CREATED, target="awareness", to_team="marketing"),
        Record("x", 1, T0 + HOUR, RecordKind.OVERRIDE, source="awareness", target="limbo"),
    ]
    log = ColumnarLog.from_records(trial_funnel(), records)
    with pytest.raises(UnknownStage, match="limbo"):
        columnar_funnel_report(log)


def test_times_in_other_zones_are_the_same_instants() -> None:
    log = sample()
    zone = timezone(timedelta(hours=-5))
    as_of = (T0 + 9 * HOUR).astimezone(zone)
    assert (
        columnar_funnel_report(log, as_of=as_of).to_dict()["steps"]
        == (columnar_funnel_report(log, as_of=T0 + 9 * HOUR).to_dict()["steps"])
    )
    assert_same(log, sample_log().records, {"as_of": as_of.isoformat()})
