"""The readers: each format, each mapping option, each quarantine code, and the regressions."""

from __future__ import annotations

import builtins
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from buyerjourney import Actor, Engine, OwnerRules, Touch, presets
from buyerjourney._core.records import Action
from buyerjourney.errors import ActionRefused, BuyerJourneyError, MissingExtra
from buyerjourney.readers import (
    MAX_CSV_RECORD_LINES,
    MAX_RECORD_BYTES,
    MAX_TEXT_CHARS,
    REJECT_CODES,
    Columns,
    Constant,
    InvalidMapping,
    Location,
    Rejected,
    StageColumns,
    UnreadableSource,
    ValueMap,
    importer_rules,
    in_time_order,
    load_stage_columns,
    read,
    read_stage_history,
    stage_columns_from_dict,
)

UTC = timezone.utc
AT = "2024-03-01T09:00:00+00:00"


def touch_line(touch_id: str, lead: str = "L1", at: str = AT, **extra: Any) -> str:
    return json.dumps({"touch_id": touch_id, "lead_id": lead, "at": at, "kind": "x", **extra})


def items(source: Any, **kwargs: Any) -> list[tuple[Location, Any]]:
    return list(read(source, **kwargs))


def rejected(pairs: list[tuple[Location, Any]]) -> list[Rejected]:
    return [item for _, item in pairs if isinstance(item, Rejected)]


def good(pairs: list[tuple[Location, Any]]) -> list[Any]:
    return [item for _, item in pairs if not isinstance(item, Rejected)]


def codes(pairs: list[tuple[Location, Any]]) -> list[str]:
    return [r.code for r in rejected(pairs)]


# ---------------------------------------------------------------- values


def test_location_prints_source_and_line() -> None:
    assert str(Location("a.csv", 3)) == "a.csv:3"


def test_rejected_text_is_short_and_safe() -> None:
    reject = Rejected(Location("s", 1), "json", "bad", "a\x00b\udc80" + "z" * 500)
    assert len(reject.text) <= MAX_TEXT_CHARS
    assert "\x00" not in reject.text
    assert "\\x00" in reject.text
    assert "\\udc80" in reject.text
    reject.text.encode("utf-8")  # no lone surrogate left
    assert str(reject) == "s:1: [json] bad"


def test_every_code_used_is_documented(tmp_path: Path) -> None:
    lines = [
        b"\xff\n",
        b"[1]\n",
        b'{"a": 1, "a": 2}\n',
        b"[" * 200 + b"\n",
        b"x" * (MAX_RECORD_BYTES + 5) + b"\n",
        touch_line("t", properties={"n": 0}).replace('"n": 0', '"n": NaN').encode(),
        touch_line("t", at="2024-03-01T09:00:00").encode(),
        b'{"lead_id": "L1", "at": "2024-03-01T09:00:00Z", "kind": "x"}\n',
        touch_line("t", lead=42).encode(),  # type: ignore[arg-type]
        touch_line("t", extra=1).encode(),
        b'{"type": "other"}\n',
    ]
    found = codes(items(lines, format="jsonl"))
    assert found == [
        "encoding",
        "json",
        "duplicate-key",
        "too-deep",
        "too-large",
        "number",
        "time",
        "missing-field",
        "type",
        "unknown-field",
        "value",
    ]
    assert set(found) <= set(REJECT_CODES)
    columns = Columns("a", "b", kind=Constant("v"), touch_id=None)
    csv_codes = codes(items(["a,b\n", "1,2,3\n", '"x\n'], format="csv", columns=columns))
    assert csv_codes == ["field-count", "csv"]
    assert set(csv_codes) <= set(REJECT_CODES)


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_stream_format_reads_touches_and_actions(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    action = {
        "type": "action",
        "action": "override",
        "lead_id": "L1",
        "at": AT,
        "actor": "ana",
        "stage": "won",
        "reason": "signed",
        "action_id": "a1",
    }
    path.write_text(f"{touch_line('t1')}\n\n{json.dumps(action)}\n", encoding="utf-8")
    pairs = items(path)
    assert [location.line for location, _ in pairs] == [1, 3]
    assert all(location.source == str(path) for location, _ in pairs)
    touch, act = (item for _, item in pairs)
    assert isinstance(touch, Touch)
    assert touch.touch_id == "t1"
    assert isinstance(act, Action)
    assert act.action_id == "a1"
    assert act.actor == Actor("ana")


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".JSONL"])
def test_jsonl_suffixes_are_guessed(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"s{suffix}"
    path.write_text(touch_line("t1") + "\n", encoding="utf-8")
    assert len(good(items(path))) == 1


def test_a_json_suffix_or_lines_without_a_format_ask_for_one(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InvalidMapping, match="format='jsonl'"):
        read(path)
    with pytest.raises(InvalidMapping, match="format="):
        read([touch_line("t1")])
    with pytest.raises(InvalidMapping, match="'xml'"):
        read(path, format="xml")  # type: ignore[arg-type]


def test_the_input_can_never_claim_the_system_actor() -> None:
    line = json.dumps(
        {
            "type": "action",
            "action": "override",
            "lead_id": "L1",
            "at": AT,
            "actor": "system",
            "stage": "won",
            "reason": "x",
        }
    )
    (reject,) = rejected(items([line], format="jsonl"))
    assert reject.code == "value"
    assert "system" in reject.reason


def test_a_bom_at_the_start_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + touch_line("t1").encode() + b"\n")
    assert [t.touch_id for t in good(items(path))] == ["t1"]
    csv_path = tmp_path / "s.csv"
    csv_path.write_bytes(b"\xef\xbb\xbftouch_id,lead_id,at,kind\nt1,L1," + AT.encode() + b",x\n")
    assert [t.touch_id for t in good(items(csv_path))] == ["t1"]


def test_jsonl_with_a_mapping(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "e1", "who": "L1", "when": "2024-03-01 10:00", "what": "view", "p": 1}),
        json.dumps({"id": "e2", "who": "L2", "when": "2024-03-01 10:00", "what": "view", "x": 1}),
        json.dumps({"id": "e3", "when": "2024-03-01 10:00", "what": "view"}),
        "[1, 2]",
    ]
    columns = Columns(
        lead="who",
        time="when",
        kind="what",
        touch_id="id",
        time_zone="Europe/Paris",
        properties={"p": "page"},
        unknown="reject",
    )
    pairs = items(lines, format="jsonl", columns=columns)
    (touch,) = good(pairs)
    assert touch.properties == {"page": 1}
    assert touch.at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert codes(pairs) == ["unknown-field", "missing-field", "json"]


# ---------------------------------------------------------------- regressions of issue 10


def test_a_non_utf8_byte_rejects_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    lines = [touch_line(f"t{i}").encode() for i in range(501)]
    lines[250] = lines[250].replace(b"L1", b"L\xff")
    path.write_bytes(b"\n".join(lines) + b"\n")
    pairs = items(path)
    assert len(good(pairs)) == 500
    (reject,) = rejected(pairs)
    assert reject.code == "encoding"
    assert reject.location.line == 251
    assert "0xff" in reject.reason
    assert "\\xff" in reject.text


def test_a_lone_surrogate_is_rejected_not_passed_on() -> None:
    lines = [touch_line("t1"), touch_line("t2", lead="\ud800"), touch_line("t3")]
    assert "\\ud800" in lines[1]
    pairs = items(lines, format="jsonl")
    assert [t.touch_id for t in good(pairs)] == ["t1", "t3"]
    assert codes(pairs) == ["encoding"]
    surrogate_pair = touch_line("t4", lead="\U0001f600")  # a real pair is fine
    assert len(good(items([surrogate_pair], format="jsonl"))) == 1


def test_100k_nested_brackets_do_not_raise() -> None:
    lines = [touch_line("t1"), "[" * 100_000 + "]" * 100_000, "{" * 100_000, touch_line("t2")]
    pairs = items(lines, format="jsonl")
    assert [t.touch_id for t in good(pairs)] == ["t1", "t2"]
    assert codes(pairs) == ["too-deep", "too-deep"]


def test_brackets_inside_strings_are_not_nesting() -> None:
    line = touch_line("t1", properties={"note": "[" * 500})
    assert len(good(items([line], format="jsonl"))) == 1


def test_a_5000_digit_integer_is_rejected() -> None:
    line = touch_line("t1", properties={"n": 0}).replace('"n": 0', '"n": ' + "9" * 5000)
    (reject,) = rejected(items([line, touch_line("t2")], format="jsonl"))
    assert reject.code == "number"
    assert reject.location.line == 1


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_rejected(number: str) -> None:
    line = touch_line("t1", properties={"n": 0}).replace('"n": 0', f'"n": {number}')
    assert codes(items([line], format="jsonl")) == ["number"]


def test_a_date_past_year_9999_is_rejected() -> None:
    pairs = items(
        [touch_line("t1", at="10000-01-01T00:00:00+00:00"), touch_line("t2")], format="jsonl"
    )
    assert codes(pairs) == ["time"]
    csv_lines = ["touch_id,lead_id,at,kind\n", "t1,L1,10000-01-01T00:00:00+00:00,x\n"]
    assert codes(items(csv_lines, format="csv")) == ["time"]
    # within the calendar locally, beyond it in UTC
    edge = ["touch_id,lead_id,at,kind\n", "t1,L1,9999-12-31T23:00:00-05:00,x\n"]
    (reject,) = rejected(items(edge, format="csv"))
    assert reject.code == "time"
    assert "beyond the calendar" in reject.reason


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_device_is_not_a_file(path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} does not exist here")
    with pytest.raises(UnreadableSource, match="device"):
        read(path, format="jsonl")


def test_a_directory_a_fifo_and_a_missing_file_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="directory"):
        read(tmp_path, format="csv")
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableSource, match="FIFO"):
        read(fifo)
    with pytest.raises(UnreadableSource, match="no such file") as info:
        read(tmp_path / "missing.csv")
    assert isinstance(info.value, BuyerJourneyError)
    assert isinstance(info.value, OSError)


def test_a_line_without_an_end_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with path.open("wb") as handle:
        handle.write(touch_line("t1").encode() + b"\n")
        handle.write(b"x" * (3 * MAX_RECORD_BYTES) + b"\n")
        handle.write(touch_line("t2").encode() + b"\n")
        handle.write(b"y" * (2 * MAX_RECORD_BYTES))
    pairs = items(path)
    assert [t.touch_id for t in good(pairs)] == ["t1", "t2"]
    assert [(r.code, r.location.line) for r in rejected(pairs)] == [
        ("too-large", 2),
        ("too-large", 4),
    ]
    assert all(len(r.text) <= MAX_TEXT_CHARS for r in rejected(pairs))


def test_naive_times_take_the_configured_zone() -> None:
    lines = ["lead,at\n", "L1,2024-07-01 09:00\n", "L1,2024-01-15T09:00:00+02:00\n"]
    columns = Columns("lead", "at", kind=Constant("view"), touch_id=None, time_zone="Europe/Paris")
    first, second = good(items(lines, format="csv", columns=columns))
    assert first.at == datetime(2024, 7, 1, 7, 0, tzinfo=UTC)  # CEST, +02:00
    assert second.at == datetime(2024, 1, 15, 7, 0, tzinfo=UTC)  # aware: its own offset
    without = Columns("lead", "at", kind=Constant("view"), touch_id=None)
    (reject,) = rejected(items(lines[:2], format="csv", columns=without))
    assert reject.code == "time"
    assert "time_zone" in reject.reason


def test_dst_offsets_are_normalised_to_utc() -> None:
    # Europe/Paris leaves summer time on 2024-10-27 at 03:00 (back to 02:00).
    lines = [
        "lead,at\n",
        "L1,2024-10-27 01:30\n",  # +02:00
        "L1,2024-10-27 03:30\n",  # +01:00
        "L1,2024-10-27T02:30:00+02:00\n",
        "L1,2024-10-27T02:15:00+01:00\n",
    ]
    columns = Columns("lead", "at", kind=Constant("v"), touch_id=None, time_zone="Europe/Paris")
    times = [t.at for t in good(items(lines, format="csv", columns=columns))]
    assert times == [
        datetime(2024, 10, 26, 23, 30, tzinfo=UTC),
        datetime(2024, 10, 27, 2, 30, tzinfo=UTC),
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        datetime(2024, 10, 27, 1, 15, tzinfo=UTC),
    ]
    assert all(t.tzinfo is UTC for t in times)
    # The engine compares them consistently: the 45-minute-later touch is not late.
    engine = Engine(presets.seed())
    ordered = sorted(good(items(lines, format="csv", columns=columns)), key=lambda touch: touch.at)
    report = engine.ingest(ordered)
    assert report.quarantined == ()


# ---------------------------------------------------------------- CSV


CSV_TEXT = (
    "id,email,signed_up,status,segment,employees,page\n"
    "e1,a@x.io,01-02-2024 09:30,open,smb,12,/pricing\n"
    "e2,b@x.io,02-02-2024 10:00,closed,,,/home\n"
)


def csv_file(tmp_path: Path, text: str = CSV_TEXT, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_every_mapping_option(tmp_path: Path) -> None:
    columns = Columns(
        lead="email",
        time="signed_up",
        kind=ValueMap("status", {"open": "signup", "closed": "unsubscribe"}),
        touch_id="id",
        time_format="%d-%m-%Y %H:%M",
        time_zone="UTC",
        attributes={"segment": "segment", "employees": "size"},
        properties=("page",),
        types={"employees": "int"},
    )
    pairs = items(csv_file(tmp_path), columns=columns)
    assert [location.line for location, _ in pairs] == [2, 3]
    first, second = good(pairs)
    assert first == Touch(
        "e1",
        "a@x.io",
        datetime(2024, 2, 1, 9, 30, tzinfo=UTC),
        "signup",
        {"page": "/pricing"},
        {"segment": "smb", "size": 12},
    )
    assert second.kind == "unsubscribe"
    assert second.attributes == {"segment": None, "size": None}  # empty cells: missing


def test_csv_value_map_default_and_miss(tmp_path: Path) -> None:
    mapped = ValueMap("status", {"open": "signup"})
    columns = Columns(
        "email",
        "signed_up",
        kind=mapped,
        touch_id="id",
        time_format="%d-%m-%Y %H:%M",
        time_zone="UTC",
    )
    pairs = items(csv_file(tmp_path), columns=columns)
    assert codes(pairs) == ["value"]
    assert "'closed'" in rejected(pairs)[0].reason
    with_default = Columns(
        "email",
        "signed_up",
        kind=ValueMap("status", {"open": "signup"}, default="other"),
        touch_id="id",
        time_format="%d-%m-%Y %H:%M",
        time_zone="UTC",
    )
    assert [t.kind for t in good(items(csv_file(tmp_path), columns=with_default))] == [
        "signup",
        "other",
    ]


def test_derived_ids_are_deterministic_and_identical_rows_are_one_touch(tmp_path: Path) -> None:
    text = "lead,at,kind\nL1,2024-03-01T09:00:00Z,view\nL1,2024-03-01T09:00:00Z,view\n"
    text += "L1,2024-03-01T10:00:00+01:00,view\nL2,2024-03-01T09:00:00Z,view\n"
    columns = Columns("lead", "at", touch_id=None)
    path = csv_file(tmp_path, text, "export.csv")
    ids = [t.touch_id for t in good(items(path, columns=columns))]
    again = [t.touch_id for t in good(items(path, columns=columns))]
    assert ids == again
    assert ids[0] == ids[1] == ids[2]  # the same row, the same instant in UTC
    assert ids[3] != ids[0]
    assert ids[0].startswith("export.csv:")
    other = csv_file(tmp_path, text, "other.csv")
    assert good(items(other, columns=columns))[0].touch_id != ids[0]


def test_csv_unknown_columns(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "lead": "email",
        "time": "signed_up",
        "kind": Constant("signup"),
        "touch_id": "id",
        "time_format": "%d-%m-%Y %H:%M",
        "time_zone": "UTC",
    }
    (touch, _) = good(items(csv_file(tmp_path), columns=Columns(**base)))
    assert touch.properties == {}
    kept = good(items(csv_file(tmp_path), columns=Columns(**base, unknown="properties")))
    assert kept[0].properties == {
        "status": "open",
        "segment": "smb",
        "employees": "12",
        "page": "/pricing",
    }
    with pytest.raises(InvalidMapping, match="status"):
        items(csv_file(tmp_path), columns=Columns(**base, unknown="reject"))


def test_csv_missing_columns_and_bad_header_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidMapping, match="'touch_id'"):
        items(csv_file(tmp_path))
    with pytest.raises(UnreadableSource, match="more than once"):
        items(csv_file(tmp_path, "a,a\n1,2\n"), columns=Columns("a", "a", touch_id=None))


def test_csv_header_with_a_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b"a,\xff\n1,2\n")
    with pytest.raises(UnreadableSource, match="header"):
        items(path)


def test_an_empty_csv_gives_nothing(tmp_path: Path) -> None:
    assert items(csv_file(tmp_path, "")) == []


def test_csv_wrong_field_counts_nul_bytes_and_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(
        b"lead,at\n"
        b"L1,2024-03-01T09:00:00Z\n"
        b"L2,2024-03-01T09:00:00Z,extra\n"
        b"L3\x00,2024-03-01T09:00:00Z\n"
        b"L\xe94,2024-03-01T09:00:00Z\n"
        b"L5,2024-03-01T09:00:00Z\n"
    )
    pairs = items(path, columns=Columns("lead", "at", kind=Constant("v"), touch_id=None))
    assert [t.lead_id for t in good(pairs)] == ["L1", "L5"]
    assert [(r.code, r.location.line) for r in rejected(pairs)] == [
        ("field-count", 3),
        ("encoding", 4),
        ("encoding", 5),
    ]


def test_csv_quoted_line_breaks_and_an_unclosed_quote(tmp_path: Path) -> None:
    text = (
        "lead,at,note\n"
        'L1,2024-03-01T09:00:00Z,"two\nlines"\n'
        'L2,2024-03-01T09:00:00Z,"never closed\n'
        "L3,2024-03-01T09:00:00Z,fine\n"
        'L4,2024-03-01T09:00:00Z,"a ""quoted"" word"\n'
        'L5,2024-03-01T09:00:00Z,"x"y\n'
        "L6,2024-03-01T09:00:00Z,end\n"
    )
    columns = Columns("lead", "at", kind=Constant("v"), touch_id=None, properties=("note",))
    pairs = items(csv_file(tmp_path, text), columns=columns)
    touches = good(pairs)
    assert [t.lead_id for t in touches] == ["L1", "L3", "L4", "L6"]
    assert touches[0].properties == {"note": "two\nlines"}
    assert touches[2].properties == {"note": 'a "quoted" word'}
    assert [(location.line, type(item).__name__) for location, item in pairs] == [
        (2, "Touch"),
        (4, "Rejected"),
        (5, "Touch"),
        (6, "Touch"),
        (7, "Rejected"),
        (8, "Touch"),
    ]
    assert codes(pairs) == ["csv", "csv"]


def test_an_unclosed_quote_spans_at_most_the_record_line_limit() -> None:
    body = [f"L{i},2024-03-01T09:00:00Z\n" for i in range(MAX_CSV_RECORD_LINES + 50)]
    lines = ["lead,at\n", 'L0,"open\n', *body]
    columns = Columns("lead", "at", kind=Constant("v"), touch_id=None)
    pairs = items(lines, format="csv", columns=columns)
    assert codes(pairs) == ["csv"]
    assert len(good(pairs)) == len(body)


def test_csv_typed_columns(tmp_path: Path) -> None:
    text = (
        "lead,at,n,f,b\n"
        "L1,2024-03-01T09:00:00Z,42,2.5,yes\n"
        "L2,2024-03-01T09:00:00Z,x,1,no\n"
        "L3,2024-03-01T09:00:00Z,1,inf,no\n"
        f"L4,2024-03-01T09:00:00Z,{'9' * 5000},1,no\n"
        "L5,2024-03-01T09:00:00Z,1,1,maybe\n"
    )
    columns = Columns(
        "lead",
        "at",
        kind=Constant("v"),
        touch_id=None,
        attributes=("n", "f", "b"),
        types={"n": "int", "f": "float", "b": "bool"},
    )
    pairs = items(csv_file(tmp_path, text), columns=columns)
    (touch,) = good(pairs)
    assert touch.attributes == {"n": 42, "f": 2.5, "b": True}
    assert codes(pairs) == ["number", "number", "number", "value"]


def test_csv_missing_required_cells(tmp_path: Path) -> None:
    text = "touch_id,lead_id,at,kind\nt1,,2024-03-01T09:00:00Z,x\nt2,L1,,x\nt3,L1,bad,x\n"
    pairs = items(csv_file(tmp_path, text))
    assert codes(pairs) == ["missing-field", "missing-field", "time"]


def test_another_delimiter(tmp_path: Path) -> None:
    text = "touch_id;lead_id;at;kind\nt1;L1;2024-03-01T09:00:00Z;x\n"
    assert len(good(items(csv_file(tmp_path, text), columns=Columns(delimiter=";")))) == 1


def test_mapping_errors_are_typed() -> None:
    with pytest.raises(InvalidMapping, match="Mars/Olympus"):
        Columns(time_zone="Mars/Olympus")
    with pytest.raises(InvalidMapping, match="decimal"):
        Columns(types={"a": "decimal"})  # type: ignore[dict-item]
    with pytest.raises(InvalidMapping, match=r"\('origin',\)"):
        Columns(attributes="origin")  # type: ignore[arg-type]
    with pytest.raises(InvalidMapping, match="unknown"):
        Columns(unknown="keep")  # type: ignore[arg-type]
    with pytest.raises(InvalidMapping, match="delimiter"):
        Columns(delimiter=";;")
    with pytest.raises(InvalidMapping, match="lead"):
        Columns(lead="")


# ---------------------------------------------------------------- Parquet


def parquet_file(tmp_path: Path, table: Any, name: str = "t.parquet") -> Path:
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / name
    pq.write_table(table, path, row_group_size=3)
    return path


def test_parquet_rows_in_batches(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    at = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    table = pa.table(
        {
            "touch_id": [f"t{i}" for i in range(7)],
            "lead_id": ["L1", "L2", None, "L4", "L5", "L6", "L7"],
            "at": [at + timedelta(minutes=i) for i in range(7)],
            "kind": ["view"] * 7,
            "segment": ["smb", None, "smb", "ent", "smb", "smb", "smb"],
            "employees": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    path = parquet_file(tmp_path, table)
    columns = Columns(attributes=("segment", "employees"))
    pairs = items(path, columns=columns)
    assert [location.line for location, _ in pairs] == [1, 2, 3, 4, 5, 6, 7]
    assert codes(pairs) == ["missing-field"]
    touches = good(pairs)
    assert touches[1].attributes == {"segment": None, "employees": 2}
    assert touches[0].at == at


def test_parquet_naive_times_integer_ids_and_a_column_of_the_wrong_type(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table(
        {
            "touch_id": [1, 2],
            "lead_id": [10, 20],
            "at": [datetime(2024, 7, 1, 9), datetime(2024, 7, 1, 10)],
            "kind": ["v", "v"],
        }
    )
    touches = good(items(parquet_file(tmp_path, table), columns=Columns(time_zone="Europe/Paris")))
    assert [(t.touch_id, t.lead_id, t.at.hour) for t in touches] == [("1", "10", 7), ("2", "20", 8)]
    wrong = pa.table({"touch_id": ["a"], "lead_id": ["L"], "at": [1.5], "kind": ["v"]})
    pairs = items(parquet_file(tmp_path, wrong, "w.parquet"))
    assert codes(pairs) == ["type"]


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "x.parquet"
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(UnreadableSource, match="not a Parquet file"):
        items(path)
    with pytest.raises(InvalidMapping, match="Parquet"):
        read(["x"], format="parquet")


def test_parquet_without_pyarrow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = builtins.__import__

    def no_arrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_arrow)
    monkeypatch.setattr("importlib.import_module", no_arrow)
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(MissingExtra, match="arrow"):
        read(path)


# ---------------------------------------------------------------- stage history


LONG = (
    "lead,stage,date,segment\n"
    "L2,Closed Won,2024-03-05T10:00:00Z,ent\n"
    "L1,SQL,2024-03-02T10:00:00Z,smb\n"
    "L1,Closed Won,2024-03-04T10:00:00Z,smb\n"
    "L3,Nowhere,2024-03-04T10:00:00Z,smb\n"
)


def long_columns(**extra: Any) -> StageColumns:
    return StageColumns(
        lead="lead",
        stage="stage",
        time="date",
        stage_map={"Closed Won": "won", "SQL": "sql"},
        **extra,
    )


def test_stage_history_long_shape(tmp_path: Path) -> None:
    funnel = presets.demand_waterfall()
    path = csv_file(tmp_path, LONG, "crm.csv")
    pairs = list(read_stage_history(path, columns=long_columns(), funnel=funnel))
    actions = good(pairs)
    assert [(a.lead_id, a.stage) for a in actions] == [("L2", "won"), ("L1", "sql"), ("L1", "won")]
    assert all(a.action == "override" and a.actor == Actor("crm-import") for a in actions)
    assert "crm.csv" in actions[0].reason
    assert codes(pairs) == ["value"]
    again = [
        a.action_id for a in good(read_stage_history(path, columns=long_columns(), funnel=funnel))
    ]
    assert again == [a.action_id for a in actions]
    assert len(set(again)) == 3
    renamed = csv_file(tmp_path, LONG, "crm-later-export.csv")
    later = good(read_stage_history(renamed, columns=long_columns(), funnel=funnel))
    assert [a.action_id for a in later] == again  # the same facts, the same ids


def test_stage_history_wide_shape_with_attributes(tmp_path: Path) -> None:
    text = (
        "lead,sql_date,won_date,segment\n"
        "L1,02-03-2024,04-03-2024,smb\n"
        "L2,,05-03-2024,ent\n"
        "L3,,,ent\n"
    )
    columns = StageColumns(
        lead="lead",
        stages={"sql_date": "sql", "won_date": "won"},
        time_format="%d-%m-%Y",
        time_zone="UTC",
        attributes=("segment",),
    )
    pairs = list(
        read_stage_history(
            csv_file(tmp_path, text), columns=columns, funnel=presets.demand_waterfall()
        )
    )
    kinds = [(location.line, type(item).__name__) for location, item in pairs]
    assert kinds == [
        (2, "Touch"),
        (2, "Action"),
        (2, "Action"),
        (3, "Touch"),
        (3, "Action"),
        (4, "Rejected"),
    ]
    touch = pairs[0][1]
    assert touch.kind == "crm_update"
    assert touch.attributes == {"segment": "smb"}
    assert touch.at == datetime(2024, 3, 2, tzinfo=UTC)
    assert codes(pairs) == ["missing-field"]
    with pytest.raises(InvalidMapping, match="'closed'"):
        read_stage_history(
            csv_file(tmp_path, text),
            columns=StageColumns(lead="lead", stages={"won_date": "closed"}),
            funnel=presets.demand_waterfall(),
        )


def test_stage_history_from_json_lines() -> None:
    lines = [
        json.dumps({"lead": "L1", "stage": "won", "date": "2024-03-04T10:00:00Z"}),
        "not json",
    ]
    pairs = list(
        read_stage_history(
            lines, columns=long_columns(), funnel=presets.demand_waterfall(), format="jsonl"
        )
    )
    assert [a.stage for a in good(pairs)] == ["won"]
    assert codes(pairs) == ["json"]


def test_the_importer_can_never_be_the_system_or_a_policy(tmp_path: Path) -> None:
    for actor in ("system", Actor("system"), "policy:threshold"):
        with pytest.raises(InvalidMapping, match="reserved"):
            read_stage_history(
                csv_file(tmp_path, LONG),
                columns=long_columns(),
                funnel=presets.demand_waterfall(),
                actor=actor,
            )


def test_imported_overrides_are_permitted_with_importer_rules(tmp_path: Path) -> None:
    funnel = presets.demand_waterfall()
    touches = [
        Touch("t1", "L1", datetime(2024, 3, 1, tzinfo=UTC), "x"),
        Touch("t2", "L2", datetime(2024, 3, 1, tzinfo=UTC), "x"),
    ]
    history = read_stage_history(csv_file(tmp_path, LONG), columns=long_columns(), funnel=funnel)
    stream = in_time_order([(Location("t", 1), t) for t in touches] + list(history))
    engine = Engine(funnel, owners=importer_rules(OwnerRules.for_funnel(funnel)))
    for _, item in stream:
        if isinstance(item, Touch):
            engine.ingest_one(item)
        elif isinstance(item, Action):
            engine.perform(item)
    assert engine.journeys["L1"].stage == "won"
    assert engine.journeys["L2"].stage == "won"
    # without the importer's membership the owner team refuses it
    plain = Engine(funnel)
    plain.ingest_one(touches[0])
    action = good(
        read_stage_history(csv_file(tmp_path, LONG), columns=long_columns(), funnel=funnel)
    )[1]
    with pytest.raises(ActionRefused):
        plain.perform(action)


# ---------------------------------------------------------------- time order


def test_in_time_order_is_stable_and_keeps_rejected() -> None:
    t0 = datetime(2024, 3, 1, tzinfo=UTC)

    def at(hours: int, name: str) -> tuple[Location, Touch]:
        return Location("s", hours), Touch(name, "L", t0 + timedelta(hours=hours), "x")

    reject = (Location("s", 99), Rejected(Location("s", 99), "json", "bad", "{"))
    given = [at(3, "c"), at(1, "a1"), reject, at(1, "a2"), at(2, "b")]
    out = list(in_time_order(given))
    assert out[0] == reject
    assert [item.touch_id for _, item in out[1:]] == ["a1", "a2", "b", "c"]


def test_in_time_order_is_bounded() -> None:
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    given = [
        (Location("s", i), Touch(f"t{i}", "L", t0 + timedelta(hours=h), "x"))
        for i, h in enumerate([5, 4, 3, 2, 1, 0])
    ]
    out = [item.touch_id for _, item in in_time_order(given, limit=2)]
    assert sorted(out) == sorted(t for _, t in ((0, f"t{i}") for i in range(6)))
    assert out != [f"t{i}" for i in reversed(range(6))]  # too far out of order for 2
    assert [item.touch_id for _, item in in_time_order(given, limit=6)] == [
        f"t{i}" for i in reversed(range(6))
    ]
    with pytest.raises(ValueError, match="positive"):
        in_time_order(given, limit=0)


# ---------------------------------------------------------------- stage-history mapping files


def test_a_stage_mapping_with_every_long_shape_field() -> None:
    data = {
        "lead": "email",
        "stage": "status",
        "time": "changed",
        "stage_map": {"Closed Won": "won"},
        "time_format": "%d/%m/%Y",
        "time_zone": "Europe/Paris",
        "attributes": ["segment", "size"],
        "attributes_kind": "crm_sync",
        "types": {"size": "int"},
        "delimiter": ";",
    }
    assert stage_columns_from_dict(data) == StageColumns(
        lead="email",
        stage="status",
        time="changed",
        stage_map={"Closed Won": "won"},
        time_format="%d/%m/%Y",
        time_zone="Europe/Paris",
        attributes=("segment", "size"),
        attributes_kind="crm_sync",
        types={"size": "int"},
        delimiter=";",
    )


def test_a_stage_mapping_of_the_wide_shape_and_attributes_renamed() -> None:
    data = {"stages": {"sql_date": "sql", "won_date": "won"}, "attributes": {"seg": "segment"}}
    columns = stage_columns_from_dict(data)
    assert columns == StageColumns(
        stages={"sql_date": "sql", "won_date": "won"}, attributes={"seg": "segment"}
    )
    assert columns.used() == ("lead_id", "seg", "sql_date", "won_date")


def test_a_constant_or_value_mapped_stage_and_the_defaults() -> None:
    assert stage_columns_from_dict({}) == StageColumns()
    assert stage_columns_from_dict({"stage_constant": "won"}).stage == Constant("won")
    table = {"column": "status", "values": {"W": "won"}, "default": "lost"}
    assert stage_columns_from_dict({"stage_value_map": table}).stage == ValueMap(
        "status", {"W": "won"}, "lost"
    )
    only_default = stage_columns_from_dict(
        {"stage_value_map": {"column": "s", "values": {}, "default": "won"}}
    )
    assert only_default.stage == ValueMap("s", {}, "won")


def test_a_stage_value_map_that_maps_nothing_is_refused() -> None:
    """Regression: no value and no default rejected every row, one by one, at read time."""
    with pytest.raises(InvalidMapping, match="maps no value and has no default"):
        stage_columns_from_dict({"stage_value_map": {"column": "s", "values": {}}})


def test_a_stage_mapping_file_reads_a_file(tmp_path: Path) -> None:
    mapping = tmp_path / "crm.toml"
    mapping.write_text(
        'lead = "lead"\ndelimiter = ";"\ntime_zone = "UTC"\nattributes = ["seats"]\n'
        '[types]\nseats = "int"\n[stages]\nwon_on = "won"\n',
        encoding="utf-8",
    )
    columns = load_stage_columns(mapping)
    export = csv_file(tmp_path, "lead;won_on;seats\nL1;2024-03-04;12\n", "deals.csv")
    touch, action = good(
        list(read_stage_history(export, columns=columns, funnel=presets.demand_waterfall()))
    )
    assert touch.attributes == {"seats": 12}
    assert (action.stage, action.at) == ("won", datetime(2024, 3, 4, tzinfo=UTC))


BAD_STAGE_MAPPINGS: list[tuple[Any, str, str]] = [
    ({"colour": "red"}, "colour", "unknown key 'colour'; the keys of a stage-history mapping"),
    (["lead"], "<mapping>", "expected a table of keys"),
    ({"stages": {"a": "won"}, "stage": "s"}, "stage", "keep one shape"),
    ({"stages": {"a": "won"}, "time": "t"}, "time", "keep one shape"),
    ({"stages": {"a": "won"}, "stage_map": {}}, "stage_map", "name the funnel's stages in"),
    ({"stages": {"a": "won"}, "stage_constant": "won"}, "stage_constant", "keep one shape"),
    ({"stages": {}}, "stages", "[stages] is empty"),
    ({"stages": ["a"]}, "stages", "stages must be a table (got ['a'] that is a list)"),
    ({"stages": {"a": 1}}, "stages", "stages maps names to names, but 'a' maps to 1"),
    ({"stages": {"a": ""}}, "stages", "but 'a' maps to ''"),
    ({"stage": "s", "stage_constant": "won"}, "stage_constant", "give one of stage"),
    ({"stage": 1}, "stage", "stage must be a non-empty string (got 1 that is a int)"),
    ({"stage": ""}, "stage", "stage must be a non-empty string"),
    ({"stage_constant": True}, "stage_constant", "stage_constant must be a non-empty string"),
    ({"stage_value_map": "s"}, "stage_value_map", "must be a table with column, values"),
    ({"stage_value_map": {"column": "s", "values": {}, "x": 1}}, "stage_value_map", "'x'"),
    ({"stage_value_map": {"values": {}}}, "stage_value_map.column", "non-empty string"),
    ({"stage_value_map": {"column": "s", "values": 3}}, "stage_value_map.values", "a table"),
    ({"stage_value_map": {"column": "s"}}, "stage_value_map.values", "got None"),
    ({"stage_value_map": {"column": "s", "values": {}, "default": 2}}, "stage_value_map.default",
     "non-empty string"),
    ({"stage_map": ["a"]}, "stage_map", "write [stage_map] then"),
    ({"stage_map": {"Won": 5}}, "stage_map", "'Won' maps to 5"),
    ({"time": None}, "time", "time must be a non-empty string"),
    ({"lead": 3}, "lead", "lead must be a non-empty string"),
    ({"time_format": []}, "time_format", "time_format must be a non-empty string"),
    ({"attributes_kind": ""}, "attributes_kind", "attributes_kind must be a non-empty string"),
    ({"time_zone": "Mars/Olympus"}, "time_zone", "'Mars/Olympus' is not a time zone name"),
    ({"time_zone": 1}, "time_zone", "time_zone must be a non-empty string"),
    ({"attributes": "segment"}, "attributes", 'write attributes = ["segment", "country"]'),
    ({"attributes": ["a", 2]}, "attributes", "an array of column names"),
    ({"attributes": {"a": 2}}, "attributes", "'a' maps to 2"),
    ({"types": ["int"]}, "types", "types must be a table"),
    ({"types": {"n": "integer"}}, "types", "column 'n': 'integer' is not one of str, int"),
    ({"delimiter": ";;"}, "delimiter", "delimiter must be one character (got ';;')"),
    ({"delimiter": 0}, "delimiter", "delimiter must be one character (got 0)"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "field", "message"), BAD_STAGE_MAPPINGS)
def test_a_bad_stage_mapping_says_which_key_what_came_and_what_to_do(
    data: Any, field: str, message: str
) -> None:
    with pytest.raises(InvalidMapping) as caught:
        stage_columns_from_dict(data, source="crm.toml")
    assert caught.value.field == field
    text = str(caught.value)
    assert message in text
    assert "crm.toml" in text
    assert any(hint in text for hint in ("write", "give", "use", "keep", "map ", "the keys"))


def test_a_stage_mapping_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSource, match="cannot read the mapping file: no such file"):
        load_stage_columns(tmp_path / "missing.toml")
    with pytest.raises(UnreadableSource, match="directory"):
        load_stage_columns(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('lead = "x\n', encoding="utf-8")
    with pytest.raises(InvalidMapping, match="not a valid UTF-8 TOML file"):
        load_stage_columns(bad)
    bad.write_bytes(b'lead = "\xff"\n')
    with pytest.raises(InvalidMapping, match="not a valid UTF-8 TOML file"):
        load_stage_columns(bad)
    bad.write_bytes(b"#" * (MAX_RECORD_BYTES + 1))
    with pytest.raises(InvalidMapping, match="larger than 1,000,000 bytes"):
        load_stage_columns(bad)
    bad.write_text('lead = "lead"\nstages = "won"\n', encoding="utf-8")
    with pytest.raises(InvalidMapping, match=r"bad\.toml: stages must be a table"):
        load_stage_columns(bad)


@pytest.mark.parametrize(
    ("columns", "field"),
    [
        (StageColumns(stage_map={"Closed Won": "closed"}), "stage_map"),
        (StageColumns(stage=Constant("closed")), "stage"),
        (StageColumns(stage=ValueMap("s", {"W": "closed"})), "stage"),
        (StageColumns(stage=ValueMap("s", {"W": "won"}, default="closed")), "stage"),
    ],
)
def test_a_stage_the_mapping_names_must_be_the_funnels(columns: StageColumns, field: str) -> None:
    """Wrong for every row, it is a mapping error at the call, not a rejection per row."""
    with pytest.raises(
        InvalidMapping, match="'closed' not a stage of funnel 'waterfall'"
    ) as caught:
        read_stage_history(["lead_id,stage,at\n"], columns=columns,
                           funnel=presets.demand_waterfall(), format="csv")  # fmt: skip
    assert caught.value.field == field


def test_a_constant_or_value_mapped_stage_goes_through_the_stage_map() -> None:
    lines = ["lead_id,s,at\n", "L1,W,2024-03-04T00:00:00Z\n"]
    funnel = presets.demand_waterfall()
    renamed = StageColumns(stage=Constant("Closed Won"), stage_map={"Closed Won": "won"})
    (action,) = good(list(read_stage_history(lines, columns=renamed, funnel=funnel, format="csv")))
    assert action.stage == "won"
    mapped = StageColumns(stage=ValueMap("s", {"W": "Won!"}), stage_map={"Won!": "won"})
    (action,) = good(list(read_stage_history(lines, columns=mapped, funnel=funnel, format="csv")))
    assert action.stage == "won"
