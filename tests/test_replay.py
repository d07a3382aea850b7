"""Replaying streams: reading JSON Lines, quarantine, the summary, and `buyerjourney replay`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from buyerjourney import Transition, presets
from buyerjourney._adapters.sqlite import SQLiteStore
from buyerjourney._core.records import Action, Actor, Touch
from buyerjourney._engine import Engine
from buyerjourney._pipeline import default_pipeline, run
from buyerjourney._report import format_summary, summarize
from buyerjourney.cli import main
from buyerjourney.errors import InvalidTouch
from buyerjourney.readers import read_stream
from sample_funnels import demo_funnel

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def write_stream(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


GOOD = [
    {"touch_id": "a1", "lead_id": "a", "at": at(0), "kind": "demo_request"},
    {"touch_id": "a2", "lead_id": "a", "at": at(1), "kind": "webinar_attended"},
    {"touch_id": "a3", "lead_id": "a", "at": at(2), "kind": "content_download"},
    {"touch_id": "b1", "lead_id": "b", "at": at(3), "kind": "page_view"},
    {"type": "action", "action": "accept", "lead_id": "a", "at": at(4), "actor": "sam",
     "team": "sales"},
    {"type": "action", "action": "accept", "lead_id": "b", "at": at(5), "actor": "sam",
     "team": "sales"},
]  # fmt: skip


def test_read_stream_reports_each_bad_line_with_its_number(tmp_path: Path) -> None:
    path = write_stream(
        tmp_path / "s.jsonl",
        [
            GOOD[0],
            "{not json",
            {"touch_id": "x", "lead_id": "a", "at": "2024-05-01T10:00:00", "kind": "k"},
            {"touch_id": "y", "lead_id": "a", "at": at(1)},
            {"type": "action", "action": "fly", "lead_id": "a", "at": at(1), "actor": "x"},
            {"type": "other"},
            "",
            GOOD[4],
        ],
    )
    items = list(read_stream(path))
    assert [n for n, _ in items] == [1, 2, 3, 4, 5, 6, 8]
    assert isinstance(items[0][1], Touch)
    assert isinstance(items[-1][1], Action)
    errors = {n: item for n, item in items if isinstance(item, InvalidTouch)}
    assert sorted(errors) == [2, 3, 4, 5, 6]
    # one home for reading streams: the readers' codes, and their reasons in the message
    codes = {n: e.code for n, e in errors.items()}  # type: ignore[attr-defined]
    assert codes == {2: "json", 3: "time", 4: "missing-field", 5: "value", 6: "value"}
    assert "timezone-aware" in str(errors[3])
    assert "'kind'" in str(errors[4])
    assert "'action'" in str(errors[5])
    assert all(e.position == n for n, e in errors.items())


def test_action_from_dict_checks_every_field() -> None:
    base = {"action": "send", "lead_id": "a", "at": at(0), "actor": "sam", "event": "win"}
    action = Action.from_dict({**base, "team": "sales", "reason": "r"})
    assert action.actor == Actor("sam", "sales")
    for field, value in [("event", None), ("team", 3), ("reason", 1), ("extra", 1)]:
        with pytest.raises(InvalidTouch) as info:
            Action.from_dict({**base, field: value}, position=7)
        assert info.value.field == field
        assert info.value.position == 7


def test_run_quarantines_and_lands_the_rest(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "s.jsonl", [*GOOD[:3], GOOD[2], "{bad", *GOOD[3:]])
    engine = default_pipeline(presets.demand_waterfall()).engine()
    result = run(engine, read_stream(path))
    assert (result.touches, result.actions, result.refused) == (4, 1, 1)
    assert result.duplicates == 1  # line 4 repeats line 3: skipped and counted
    positions = [q[0] if isinstance(q, tuple) else q.position for q in result.quarantined]
    assert positions == [5]
    assert engine.journey("a").stage == "sal"
    assert not engine.journey("a").pending_acceptance
    assert engine.journey("b").stage == "inquiry"


def test_summary_counts_conversion_and_median_time() -> None:
    engine = Engine(presets.demand_waterfall())
    sam = Actor("sam", "sales")
    for n, lead in enumerate("abc"):
        engine.ingest_one(Touch(f"{lead}0", lead, T0 + timedelta(hours=n), "x"))
    for n, lead in enumerate("ab"):
        engine.send(
            lead, "qualify", actor=Actor("mia", "marketing"), at=T0 + timedelta(hours=10 + n)
        )
    engine.send("a", "hand_off", actor=Actor("mia", "marketing"), at=T0 + timedelta(hours=20))
    engine.reject("a", actor=sam, at=T0 + timedelta(hours=21), reason="student")
    summary = summarize(engine.funnel, engine.records)
    rows = {row.stage: row for row in summary.stages}
    assert (rows["inquiry"].reached, rows["inquiry"].entered, rows["inquiry"].exited) == (3, 4, 2)
    assert rows["inquiry"].current == 2
    assert rows["mql"].reached == 2
    assert rows["mql"].step_conversion == pytest.approx(2 / 3)
    assert rows["sal"].step_conversion == pytest.approx(1 / 2)
    assert rows["inquiry"].median_time == timedelta(hours=10)
    assert rows["mql"].median_time == timedelta(hours=10)
    assert rows["sql"].median_time is None
    assert summary.handoffs == {("marketing", "sales"): 1, ("sales", "marketing"): 1}
    assert (summary.accepted, summary.rejected, summary.leads) == (0, 1, 3)
    text = format_summary(summary)
    assert "marketing -> sales: 1" in text
    assert "66.7%" in text


def test_cli_replays_the_bundled_sample(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "journeys.db"
    assert main(["replay", "--sample", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "funnel 'waterfall'" in out
    assert "marketing -> sales" in out
    assert "SLA breaches:" in out
    assert "rebuilt state equals live state" in out
    with SQLiteStore(db) as store:
        first = list(store.read())
    assert len(first) > 4000
    assert main(["replay", "--sample", "--db", str(db)]) == 1
    assert "already holds a log" in capsys.readouterr().err
    assert main(["replay", "--sample", "--db", str(db), "--replace"]) == 0
    with SQLiteStore(db) as store:
        assert list(store.read()) == first  # same input, same log


def test_cli_replay_json_and_quarantine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_stream(tmp_path / "s.jsonl", [*GOOD[:3], "{oops", *GOOD[3:]])
    code = main(["replay", str(path), "--funnel", "waterfall", "--format", "json",
                 "--until", at(200)])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["touches"] == 4
    assert report["quarantined"][0]["position"] == 4
    # accepted at hour 4 but still in SAL at hour 200: past its 72-hour SLA
    assert report["sla_breaches"] == {"sal": 1}
    assert report["overdue_now"] == 1
    assert report["log_verified"] is True
    stages = {row["stage"]: row for row in report["stages"]}
    assert stages["sal"]["current"] == 1
    assert report["handoffs"] == [{"from": "marketing", "to": "sales", "count": 1}]


def test_cli_replay_escalates_until_the_given_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_stream(tmp_path / "s.jsonl", GOOD[:3])
    assert main(["replay", str(path), "--funnel", "waterfall", "--until", at(100)]) == 0
    out = capsys.readouterr().out
    assert "sal: 1" in out
    assert main(["replay", str(path), "--until", "yesterday"]) == 1
    assert "--until" in capsys.readouterr().err


def test_cli_replay_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay"]) == 2
    capsys.readouterr()


def test_bulk_replay_picks_the_fast_path_and_matches_the_engine() -> None:
    pytest.importorskip("numpy")
    from buyerjourney.bulk import replay  # noqa: PLC0415  (needs the fast extra)

    text = files("buyerjourney").joinpath("data/sample_touches.jsonl").read_text("utf-8")
    touches = [item for _, item in read_stream(text.splitlines()) if isinstance(item, Touch)]
    pipeline = default_pipeline(presets.demand_waterfall())
    fast = replay(pipeline, touches)
    assert fast.mode == "columnar"
    engine = pipeline.engine()
    engine.ingest(touches)
    assert tuple(fast.records()) == engine.records
    assert fast.journey_dict() == dict(engine.journeys)


def test_an_extended_and_renamed_preset_keeps_its_default_thresholds() -> None:
    """Regression: thresholds were keyed by funnel name, so ``extend(name=...)`` lost them."""
    base = default_pipeline(presets.seed())
    renamed = default_pipeline(presets.seed().extend(name="our_funnel"))
    assert renamed.thresholds == base.thresholds == (20,)
    touches = [
        Touch(f"t{i}", "acme", datetime(2024, 3, 4, 9, i, tzinfo=timezone.utc), "webinar_attended")
        for i in range(2)
    ]
    engine = renamed.engine()
    engine.ingest(touches)
    assert engine.journey("acme").stage == "consideration"


def test_default_thresholds_fit_only_what_the_funnel_still_has() -> None:
    trimmed = presets.demand_waterfall().extend(
        name="ours",
        remove_transitions=["hand_off"],
        add_transitions=[Transition("pass_to_sales", "mql", "sal")],
    )
    steps = presets.default_thresholds(trimmed)
    assert [(s.score, s.event, s.stage) for s in steps] == [(25, "qualify", "inquiry")]
    assert presets.default_thresholds(demo_funnel()) == ()
    assert presets.default_thresholds(presets.hubspot_lifecycle()) == (
        presets.ThresholdStep(10, "to_lead", "subscriber", "lead"),
        presets.ThresholdStep(50, "to_mql", "lead", "mql"),
    )


# ---------------------------------------------------------------- a pipeline file and hooks

HOOKS_MODULE = """\
from buyerjourney import Context, Hooks

hooks = Hooks()


@hooks.guard("is_enterprise")
def is_enterprise(ctx: Context) -> bool:
    return ctx.attributes.get("employees", 0) >= 1000
"""


@pytest.fixture
def guarded(tmp_path: Path) -> Path:
    """A funnel file with a guard, a pipeline file naming it, a hooks module and a stream."""
    from buyerjourney._adapters.files import dump_funnel  # noqa: PLC0415

    funnel = presets.demand_waterfall().extend(
        name="fast",
        add_transitions=[Transition("fast_track", "inquiry", "sal", guard="is_enterprise")],
    )
    dump_funnel(funnel, tmp_path / "my.toml")
    (tmp_path / "pipeline.toml").write_text(
        'format = "buyerjourney.pipeline/1"\nfunnel = "my.toml"\n', encoding="utf-8"
    )
    (tmp_path / "my_hooks.py").write_text(HOOKS_MODULE, encoding="utf-8")
    write_stream(
        tmp_path / "stream.jsonl",
        [
            {"touch_id": "t1", "lead_id": "big", "at": at(0), "kind": "fast_track",
             "attributes": {"employees": 5000}},
            {"touch_id": "t2", "lead_id": "small", "at": at(1), "kind": "fast_track",
             "attributes": {"employees": 20}},
        ],
    )  # fmt: skip
    return tmp_path


def test_cli_replay_with_a_guard_needs_hooks_and_says_how(
    capsys: pytest.CaptureFixture[str], guarded: Path
) -> None:
    """It used to say only "Register it with `hooks.add_guard(name, fn)`"."""
    code = main(["replay", str(guarded / "stream.jsonl"), "--funnel", str(guarded / "my.toml")])
    err = capsys.readouterr().err
    assert code == 1
    assert "no guard registered under 'is_enterprise'" in err
    assert "pass --hooks MODULE" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("hooks", ["my_hooks", "my_hooks.py"])
def test_cli_replay_with_a_pipeline_file_and_hooks(
    capsys: pytest.CaptureFixture[str],
    guarded: Path,
    monkeypatch: pytest.MonkeyPatch,
    hooks: str,
) -> None:
    monkeypatch.chdir(guarded)
    monkeypatch.delitem(__import__("sys").modules, "my_hooks", raising=False)
    code = main(
        ["replay", "stream.jsonl", "--pipeline", "pipeline.toml", "--hooks", hooks,
         "--format", "json"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    report = json.loads(captured.out)
    assert report["funnel"] == "fast"
    # the guard refused the small lead, and the log says which guard
    assert report["refusals"] == {
        "event 'fast_track' from stage 'inquiry': guard 'is_enterprise' refused it, "
        "so the journey stays in 'inquiry'": 1
    }
    stages = {row["stage"]: row for row in report["stages"]}
    assert stages["sal"]["current"] == 1
    assert stages["inquiry"]["current"] == 1


def test_cli_replay_pipeline_excludes_funnel_and_owners(
    capsys: pytest.CaptureFixture[str], guarded: Path
) -> None:
    stream, pipeline = str(guarded / "stream.jsonl"), str(guarded / "pipeline.toml")
    assert main(["replay", stream, "--pipeline", pipeline, "--funnel", "seed"]) == 2
    assert "cannot be combined with a funnel" in capsys.readouterr().err
    assert main(["replay", stream, "--pipeline", pipeline, "--owners", "o.toml"]) == 2
    assert "cannot be combined with --owners" in capsys.readouterr().err


def test_cli_replay_summary_counts_actions_unambiguously(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """It said "2 actions (1 refused)": performed, plus refused, or of which refused?"""
    refused = {"type": "action", "action": "accept", "lead_id": "a", "at": at(6), "actor": "sam",
               "team": "sales"}  # fmt: skip
    path = write_stream(tmp_path / "s.jsonl", [*GOOD, refused])
    assert main(["replay", str(path), "--funnel", "waterfall"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "funnel 'waterfall': 4 touches; 3 actions: 1 performed, 2 refused; 0 lines quarantined"
    )
    assert main(["replay", str(path), "--funnel", "waterfall", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = (report["total_actions"], report["performed_actions"], report["refused_actions"])
    assert counts == (3, 1, 2)


def test_read_stream_drops_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD[0]) + "\n").encode("utf-8"))
    ((number, item),) = list(read_stream(path))
    assert number == 1
    assert isinstance(item, Touch)
