"""`buyerjourney ingest --stage-history`: CRM stage exports through the command into a store."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buyerjourney import SQLiteStore
from buyerjourney.cli import main

UTC = timezone.utc

LEADS = "lead_id,at\nL1,2024-03-01T09:00:00Z\nL2,2024-03-01T10:00:00Z\n"
LEADS_MAPPING = 'kind_constant = "form_submit"\ntouch_id = false\n'

LONG = (
    "lead,stage,date\n"
    "L2,Closed Won,2024-03-09\n"
    "L1,SQL,2024-03-04\n"
    "L1,Closed Won,2024-03-08\n"
    "L3,Nowhere,2024-03-08\n"
    "L1,SQL,not a date\n"
)
LONG_MAPPING = (
    'lead = "lead"\nstage = "stage"\ntime = "date"\ntime_zone = "UTC"\n'
    '[stage_map]\n"Closed Won" = "won"\nSQL = "sql"\n'
)

WIDE = "lead,sql_date,won_date,segment\nL1,02-03-2024,04-03-2024,smb\nL2,,05-03-2024,ent\n"
WIDE_MAPPING = (
    'lead = "lead"\ntime_format = "%d-%m-%Y"\ntime_zone = "UTC"\nattributes = ["segment"]\n'
    '[stages]\nsql_date = "sql"\nwon_date = "won"\n'
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ingest_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    code, out, err = run(capsys, "ingest", *argv, "--format", "json", "--no-progress")
    assert code == 0, err
    counts: dict[str, object] = json.loads(out)
    return counts


@pytest.fixture
def long_args(tmp_path: Path) -> tuple[str, ...]:
    return (
        write(tmp_path, "leads.csv", LEADS),
        "--columns",
        write(tmp_path, "leads.toml", LEADS_MAPPING),
        "--stage-history",
        write(tmp_path, "crm.csv", LONG),
        "--stage-columns",
        write(tmp_path, "stages.toml", LONG_MAPPING),
        "--funnel",
        "waterfall",
        "--store",
        str(tmp_path / "j.db"),
    )


def test_the_long_shape_lands_with_the_touches_and_a_rerun_applies_nothing_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], long_args: tuple[str, ...]
) -> None:
    first = ingest_json(capsys, *long_args)
    # 2 touches + 3 overrides applied; the unknown stage and the bad date set aside
    assert (first["read"], first["applied"], first["duplicates"]) == (7, 5, 0)
    assert (first["refused"], first["quarantined"], first["journeys"]) == (0, 2, 2)
    with SQLiteStore(tmp_path / "j.db") as store:
        journeys = store.journeys()
        entries = sorted((e.line, e.code) for e in store.quarantined())
        overrides = [r for r in store.read(lead_id="L1") if r.kind.value == "override"]
    assert {lead: j.stage for lead, j in journeys.items()} == {"L1": "won", "L2": "won"}
    assert "sql" in journeys["L1"].stages  # it went through sql on the way
    assert journeys["L1"].stages["sql"].entered == datetime(2024, 3, 4, tzinfo=UTC)
    assert entries == [(5, "value"), (6, "time")]  # CSV lines, the header being line 1
    assert {r.actor.name for r in overrides} == {"crm-import"}
    assert all("stage history from crm.csv" in r.reason for r in overrides)

    code, out, _ = run(capsys, "ingest", *long_args, "--no-progress")
    assert code == 0
    assert out.startswith("nothing new: every input was applied before (7 read: 0 applied, 5 dup")
    again = ingest_json(capsys, *long_args)
    assert (again["applied"], again["duplicates"], again["records"]) == (0, 5, 0)
    assert again["log_records"] == first["log_records"]
    with SQLiteStore(tmp_path / "j.db") as store:
        assert len(store.quarantined()) == 2  # the same entries, not stored twice


def test_the_text_output_lists_the_quarantined_rows_with_file_and_line(
    capsys: pytest.CaptureFixture[str], long_args: tuple[str, ...]
) -> None:
    code, out, _ = run(capsys, "ingest", *long_args, "--no-progress")
    assert code == 0
    assert out.startswith("applied 5 (7 read: 5 applied, 0 duplicates, 0 refused, 2 quarantined")
    assert "crm.csv:5: 'Nowhere' is not a stage of funnel 'waterfall'" in out
    assert "crm.csv:6: the time column 'date' holds 'not a date'" in out


def test_the_wide_shape_alone_creates_journeys_through_its_attributes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "j.db")
    args = (
        "--stage-history",
        write(tmp_path, "deals.csv", WIDE),
        "--stage-columns",
        write(tmp_path, "deals.toml", WIDE_MAPPING),
        "--funnel",
        "waterfall",
        "--store",
        db,
    )
    counts = ingest_json(capsys, *args)
    # two attribute touches (they create the journeys) and three overrides
    assert (counts["read"], counts["applied"], counts["quarantined"]) == (5, 5, 0)
    code, out, _ = run(capsys, "journeys", "--store", db, "--format", "json")
    assert json.loads(out)["stages"] == [{"stage": "won", "owner": "sales", "journeys": 2}]
    code, out, _ = run(capsys, "journeys", "L1", "--store", db)
    assert code == 0
    assert "override inquiry -> sql by crm-import: stage history from deals.csv" in out
    with SQLiteStore(db) as store:
        assert store.journey("L2").attributes["segment"] == "ent"  # type: ignore[union-attr]
    assert ingest_json(capsys, *args)["duplicates"] == 5


def test_stage_entries_are_merged_in_time_order_with_the_touches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Touches after, between and at the same time as stage entries all land, none late."""
    touches = (
        "lead_id,at,kind\n"
        "L1,2024-03-01T00:00:00Z,form_submit\n"
        "L1,2024-03-05T00:00:00Z,page_view\n"
        "L2,2024-03-09T00:00:00Z,form_submit\n"
        "L1,2024-03-10T00:00:00Z,page_view\n"
    )
    history = "lead,stage,date\nL1,won,2024-03-08\nL1,sql,2024-03-04\nL2,won,2024-03-09\n"
    db = str(tmp_path / "j.db")
    counts = ingest_json(
        capsys,
        write(tmp_path, "touches.csv", touches),
        "--columns",
        write(tmp_path, "t.toml", "touch_id = false\n"),
        "--stage-history",
        write(tmp_path, "crm.csv", history),
        "--stage-columns",
        write(tmp_path, "s.toml", 'lead = "lead"\ntime = "date"\ntime_zone = "UTC"\n'),
        "--funnel",
        "waterfall",
        "--store",
        db,
    )
    assert (counts["applied"], counts["late"], counts["quarantined"], counts["refused"]) == (
        7,
        0,
        0,
        0,
    )
    with SQLiteStore(db) as store:
        # L2's touch and its stage entry share a time: the touch came first and made the journey
        assert store.journey("L2").stage == "won"  # type: ignore[union-attr]
        log = [(r.kind.value, r.at.day) for r in store.read(lead_id="L1")]
    # the log is in time order: touches (scored) before, between and after the overrides
    assert log == [
        ("created", 1),
        ("scored", 1),
        ("override", 4),
        ("handoff", 4),
        ("scored", 5),
        ("override", 8),
        ("scored", 10),
    ]


def test_several_history_files_and_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sqls = write(tmp_path, "sql.jsonl", '{"lead_id": "L1", "stage": "sql", "at": "2024-03-04"}\n')
    wins = write(tmp_path, "won.csv", "lead_id,stage,at\nL1,won,2024-03-08\n")
    mapping = write(tmp_path, "m.toml", 'time_zone = "UTC"\nattributes = ["stage"]\n')
    counts = ingest_json(
        capsys,
        "--stage-history",
        wins,  # the later file first: the entries are put in time order
        "--stage-history",
        sqls,
        "--stage-columns",
        mapping,
        "--funnel",
        "waterfall",
        "--store",
        str(tmp_path / "j.db"),
    )
    assert (counts["applied"], counts["quarantined"]) == (4, 0)
    with SQLiteStore(tmp_path / "j.db") as store:
        assert store.journey("L1").stage == "won"  # type: ignore[union-attr]


def test_the_default_mapping_reads_lead_id_stage_and_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path, "h.csv", "lead_id,stage,at\nL1,sql,2024-03-04T00:00:00Z\n")
    leads = write(tmp_path, "leads.csv", LEADS)
    mapping = write(tmp_path, "leads.toml", LEADS_MAPPING)
    store = str(tmp_path / "j.db")
    counts = ingest_json(
        capsys,
        leads,
        "--columns",
        mapping,
        "--stage-history",
        history,
        "--funnel",
        "waterfall",
        "--store",
        store,
    )
    assert (counts["applied"], counts["quarantined"]) == (3, 0)


def test_another_importer_acts_and_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], long_args: tuple[str, ...]
) -> None:
    ingest_json(capsys, *long_args, "--importer", "ops-bot")
    with SQLiteStore(tmp_path / "j.db") as store:
        actors = {r.actor.name for r in store.read() if r.kind.value == "override"}
    assert actors == {"ops-bot"}


def test_a_lead_without_a_journey_is_quarantined_and_lands_on_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not refused: a refusal's id is stored, so the import could never land later."""
    db = str(tmp_path / "j.db")
    history = write(tmp_path, "crm.csv", LONG)
    mapping = write(tmp_path, "stages.toml", LONG_MAPPING)
    stage_args = ("--stage-history", history, "--stage-columns", mapping, "--funnel", "waterfall")
    counts = ingest_json(capsys, *stage_args, "--store", db)
    assert (counts["applied"], counts["refused"], counts["quarantined"]) == (0, 0, 5)
    with SQLiteStore(db) as store:
        waiting = sorted(e.line for e in store.quarantined() if e.code == "no-journey")
        (entry, *_) = [e for e in store.quarantined() if e.code == "no-journey"]
    assert waiting == [2, 3, 4]
    assert "has no journey yet" in entry.reason
    assert "quarantine --retry" in entry.reason

    leads = write(tmp_path, "leads.csv", LEADS)
    leads_mapping = write(tmp_path, "l.toml", LEADS_MAPPING)
    ingest_json(capsys, leads, "--columns", leads_mapping, "--funnel", "waterfall", "--store", db)
    code, out, err = run(capsys, "quarantine", "--retry", "--store", db, *stage_args)
    assert err == ""
    assert out == "retried 5: 3 landed, 2 still quarantined\n"
    assert code == 1  # the unknown stage and the bad date still fail
    with SQLiteStore(db) as store:
        assert {lead: j.stage for lead, j in store.journeys().items()} == {"L1": "won", "L2": "won"}
        assert sorted(e.code for e in store.quarantined()) == ["time", "value"]


def test_retrying_without_naming_the_history_file_keeps_its_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "j.db")
    history = write(tmp_path, "crm.csv", "lead,stage,date\nL1,SQL,2024-03-04\n")
    mapping = write(tmp_path, "stages.toml", LONG_MAPPING)
    ingest_json(capsys, "--stage-history", history, "--stage-columns", mapping, "--store", db,
                "--funnel", "waterfall")  # fmt: skip
    code, _, err = run(capsys, "quarantine", "--retry", "--store", db, "--funnel", "waterfall")
    assert code == 1  # read as touches, the file's header lacks the touch columns
    assert "has no column" in err
    assert "Traceback" not in err


BAD_MAPPINGS = [
    ('lead = "lead"\ncolour = "red"\n', "unknown key 'colour'"),
    ('lead = "lead\n', "not a valid UTF-8 TOML file"),
    ('stage = "s"\n[stages]\nwon_date = "won"\n', "keep one shape"),
    ("[stages]\n", "[stages] is empty"),
    ('time_zone = "Mars/Olympus"\n', "'Mars/Olympus' is not a time zone name"),
    ("lead = 3\n", "lead must be a non-empty string (got 3 that is a int)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_MAPPINGS)
def test_a_mapping_file_that_cannot_be_used_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    db = tmp_path / "j.db"
    code, out, err = run(
        capsys,
        "ingest",
        "--stage-history",
        write(tmp_path, "crm.csv", LONG),
        "--stage-columns",
        write(tmp_path, "bad.toml", text),
        "--store",
        str(db),
    )
    assert code == 1  # a malformed file, as for every file (see buyerjourney.cli)
    assert out == ""
    assert err.startswith("buyerjourney: --stage-columns: column mapping")
    assert message in err
    assert err.count("\n") == 1  # one line
    assert "Traceback" not in err
    assert not db.exists()  # nothing opened, nothing ingested


def test_unusable_sources_fail_and_misused_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crm = write(tmp_path, "crm.csv", LONG)
    wide = write(tmp_path, "wide.toml", WIDE_MAPPING)
    long = write(tmp_path, "long.toml", LONG_MAPPING)
    store = ("--store", str(tmp_path / "j.db"), "--funnel", "waterfall")
    cases = [
        (("--stage-history", crm, "--stage-columns", str(tmp_path / "none.toml")),
         "--stage-columns ", "cannot read the mapping file: no such file", 1),
        (("--stage-history", str(tmp_path / "none.csv"), "--stage-columns", long),
         "--stage-history ", "none.csv: no such file", 1),
        (("--stage-history", str(tmp_path), "--stage-columns", long),
         "--stage-history ", "the format is told by the file's suffix (none)", 1),
        (("--stage-history", crm, "--stage-columns", wide),
         "--stage-history ", "has no column 'segment', 'sql_date', 'won_date'", 1),
        (("--stage-history", crm, "--stage-columns", long, "--importer", "system"),
         "--importer: ", "'system' is reserved", 2),
        (("--stage-history", crm, "--stage-columns", long, "--importer", "policy:x"),
         "--importer: ", "is reserved", 2),
        (("--stage-columns", long, crm), "--stage-columns needs --stage-history", "", 2),
        (("--importer", "ops", crm), "--importer needs --stage-history", "", 2),
        (("--stage-history", crm, "--stage-columns", long, "--importer", " "),
         "--importer needs a name", "", 2),
    ]  # fmt: skip
    for argv, start, message, status in cases:
        code, _, err = run(capsys, "ingest", *argv, *store)
        assert code == status, (argv, err)
        assert err.startswith(f"buyerjourney: {start}"), err
        assert message in err, err
        assert "Traceback" not in err
        assert not (tmp_path / "j.db").exists()


def test_a_stage_the_funnel_lacks_in_the_mapping_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Named by the mapping, the stage is wrong for every row: the command stops at once."""
    crm = write(tmp_path, "crm.csv", WIDE)
    code, _, err = run(capsys, "ingest", "--stage-history", crm, "--stage-columns",
                       write(tmp_path, "m.toml", WIDE_MAPPING), "--funnel", "seed",
                       "--store", str(tmp_path / "j.db"))  # fmt: skip
    assert code == 1
    assert "'sql', 'won' not a stage of funnel 'seed'" in err
    mapping = LONG_MAPPING.replace('SQL = "sql"', 'SQL = "sqll"')
    code, _, err = run(capsys, "ingest", "--stage-history", write(tmp_path, "l.csv", LONG),
                       "--stage-columns", write(tmp_path, "l.toml", mapping),
                       "--funnel", "waterfall", "--store", str(tmp_path / "j.db"))  # fmt: skip
    assert code == 1
    assert "stage_map: 'sqll' not a stage of funnel 'waterfall'" in err


def test_stage_history_options_of_quarantine_are_for_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crm = write(tmp_path, "crm.csv", LONG)
    code, _, err = run(capsys, "quarantine", "--stage-history", crm, "--store",
                       str(tmp_path / "j.db"))  # fmt: skip
    assert code == 2
    assert "--stage-history is for --retry" in err


def test_nothing_to_ingest_names_the_stage_history_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "ingest", "--store", str(tmp_path / "j.db"))
    assert code == 2
    assert "--stage-history FILE" in err


STAGES = ("mql", "sal", "sql", "opportunity", "won", "lost")


@st.composite
def exports(draw: st.DrawFn) -> list[tuple[str, str, int]]:
    """Stage entries (lead, stage, day of March): at most one entry per lead and day."""
    rows = []
    for lead in draw(st.lists(st.sampled_from(["L1", "L2", "L3"]), min_size=1, unique=True)):
        days = draw(st.lists(st.integers(2, 28), min_size=1, max_size=4, unique=True))
        rows += [(lead, draw(st.sampled_from(STAGES)), day) for day in days]
    return draw(st.permutations(rows))


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=exports())
def test_any_row_order_gives_the_journeys_of_the_sorted_export_and_a_rerun_adds_nothing(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    rows: list[tuple[str, str, int]],
) -> None:
    tmp = tmp_path_factory.mktemp("orders")
    leads = write(tmp, "leads.csv", "lead_id,at\nL1,2024-03-01\nL2,2024-03-01\nL3,2024-03-01\n")
    mapping = write(tmp, "leads.toml", LEADS_MAPPING + 'time_zone = "UTC"\n')
    stages = write(tmp, "s.toml", 'lead = "lead"\ntime = "date"\ntime_zone = "UTC"\n')
    journeys = []
    for name, order in (("shuffled", rows), ("sorted", sorted(rows, key=lambda row: row[2]))):
        text = "lead,stage,date\n" + "".join(f"{a},{b},2024-03-{c:02}\n" for a, b, c in order)
        db = str(tmp / f"{name}.db")
        args = (leads, "--columns", mapping, "--stage-history", write(tmp, f"{name}.csv", text),
                "--stage-columns", stages, "--funnel", "waterfall", "--store", db)  # fmt: skip
        first = ingest_json(capsys, *args)
        assert first["quarantined"] == first["late"] == 0
        assert first["read"] == 3 + len(rows)
        again = ingest_json(capsys, *args)
        assert (again["applied"], again["records"]) == (0, 0)
        assert again["duplicates"] == first["applied"] + first["refused"]  # type: ignore[operator]
        with SQLiteStore(db) as store:
            journeys.append(store.journeys())
    assert journeys[0] == journeys[1]


OLIST_LEADS = """
lead = "mql_id"
time = "first_contact_date"
time_format = "%d-%m-%Y"
time_zone = "UTC"
kind_constant = "qualify"
touch_id = false
attributes = ["origin"]
"""
OLIST_DEALS = """
lead = "mql_id"
time_format = "%d-%m-%Y %H:%M"
time_zone = "UTC"
attributes = ["business_segment", "has_company", "declared_monthly_revenue"]
attributes_kind = "deal"

[stages]
won_date = "won"

[types]
has_company = "bool"
declared_monthly_revenue = "float"
"""


def test_the_olist_funnel_loads_from_the_command_line(
    olist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real export: 8,000 MQLs (not in time order: --sort) and 842 won deals (wide shape)."""
    db = str(tmp_path / "olist.db")
    counts = ingest_json(
        capsys,
        str(olist_dir / "olist_marketing_qualified_leads_dataset.csv"),
        "--sort",
        "--columns",
        write(tmp_path, "leads.toml", OLIST_LEADS),
        "--stage-history",
        str(olist_dir / "olist_closed_deals_dataset.csv"),
        "--stage-columns",
        write(tmp_path, "deals.toml", OLIST_DEALS),
        "--funnel",
        "waterfall",
        "--store",
        db,
    )
    # 8,000 lead touches, and per deal an attributes touch and an override to won
    assert counts["read"] == counts["applied"] == 8000 + 2 * 842
    assert (counts["quarantined"], counts["refused"], counts["journeys"]) == (0, 0, 8000)
    code, out, _ = run(capsys, "journeys", "--store", db, "--format", "json")
    assert code == 0
    stages = {row["stage"]: row["journeys"] for row in json.loads(out)["stages"]}
    assert stages == {"mql": 8000 - 842, "won": 842}


def test_a_retry_that_fails_for_another_reason_is_not_counted_as_landed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """History first, then leads whose touches are later than the stage dates: the retry's
    override is too old for the store's clock. It stays quarantined (under the new reason),
    and says so; with a lateness that reaches back to it, it lands."""
    db = str(tmp_path / "j.db")
    history = write(tmp_path, "crm.csv", "lead,stage,date\nL1,SQL,2024-03-04\n")
    mapping = write(
        tmp_path,
        "s.toml",
        'lead = "lead"\nstage = "stage"\ntime = "date"\ntime_zone = "UTC"\n'
        '[stage_map]\nSQL = "sql"\n',
    )
    staged = ("--stage-history", history, "--stage-columns", mapping, "--funnel", "waterfall",
              "--store", db)  # fmt: skip
    run(capsys, "ingest", *staged, "--no-progress")
    with SQLiteStore(db) as store:
        assert [e.code for e in store.quarantined()] == ["no-journey"]
    leads = write(tmp_path, "leads.csv", "lead_id,at\nL1,2024-03-01T09:00:00Z\n"
                  "L2,2024-03-20T10:00:00Z\n")  # fmt: skip
    code, _, _ = run(capsys, "ingest", leads, "--columns", write(tmp_path, "l.toml", LEADS_MAPPING),
                     "--funnel", "waterfall", "--store", db, "--no-progress")  # fmt: skip
    assert code == 0
    code, out, _ = run(capsys, "quarantine", "--retry", *staged)
    assert (code, out) == (1, "retried 1: 0 landed, 1 still quarantined\n")
    with SQLiteStore(db) as store:
        assert [e.code for e in store.quarantined()] == ["invalid"]
        assert store.journeys()["L1"].stage != "sql"
    code, out, _ = run(capsys, "quarantine", "--retry", *staged, "--lateness", "P30D")
    assert (code, out) == (0, "retried 1: 1 landed, 0 still quarantined\n")
    with SQLiteStore(db) as store:
        assert store.quarantined() == []
        assert store.journeys()["L1"].stage == "sql"


def test_lateness_of_quarantine_is_for_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "quarantine", "--lateness", "P1D", "--store", str(tmp_path / "j"))
    assert code == 2
    assert "--lateness is for --retry" in err
