"""Tests for the funnel file format: exact round trips and precise error reports."""

from __future__ import annotations

import copy
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from buyerjourney import presets
from buyerjourney._adapters.files import (
    SCHEMA,
    FileFormat,
    dump_funnel,
    dumps_funnel,
    load_funnel,
    loads_funnel,
)
from buyerjourney._core.funnel import Direction, Funnel, Stage, StageKind, Transition
from buyerjourney.errors import FunnelFormatError, InvalidFunnel
from buyerjourney.testing.strategies import funnels

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

FORMATS: tuple[FileFormat, ...] = ("toml", "json")


def round_trip(funnel: Funnel, fmt: FileFormat) -> Funnel:
    return loads_funnel(dumps_funnel(funnel, format=fmt), format=fmt)


def minimal() -> dict[str, Any]:
    """A small valid document as plain data, to break one piece at a time."""
    return {
        "format": SCHEMA,
        "name": "mini",
        "stages": [
            {"name": "start", "rank": 10, "initial": True},
            {"name": "done", "rank": 20, "kind": "won", "terminal": True},
            {"name": "gone", "rank": 0, "kind": "lost"},
        ],
        "transitions": [
            {"event": "finish", "source": "start", "target": "done"},
            {"event": "drop", "source": "start", "target": "gone", "direction": "exit"},
        ],
    }


def load_json(document: object) -> Funnel:
    return loads_funnel(json.dumps(document), format="json")


def format_error(document: object) -> FunnelFormatError:
    with pytest.raises(FunnelFormatError) as info:
        load_json(document)
    return info.value


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", presets.names())
def test_presets_round_trip(name: str, fmt: FileFormat) -> None:
    funnel = presets.get(name)
    assert round_trip(funnel, fmt) == funnel


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", presets.names())
def test_presets_round_trip_through_files(name: str, fmt: FileFormat, tmp_path: Path) -> None:
    funnel = presets.get(name)
    path = tmp_path / f"{name}.{fmt}"
    dump_funnel(funnel, path)
    assert load_funnel(path) == funnel
    assert load_funnel(str(path)) == funnel


def test_minimal_document_loads() -> None:
    funnel = load_json(minimal())
    assert funnel.name == "mini"
    assert funnel.stage("gone").terminal  # the default for a lost stage
    assert not funnel.stage("start").terminal
    assert funnel.transitions[1].direction is Direction.EXIT


def test_toml_output_is_canonical_and_leaves_out_defaults() -> None:
    text = dumps_funnel(presets.get("seed"), format="toml")
    assert text.startswith(f'format = "{SCHEMA}"\nname = "seed"\ndescription = ')
    advocacy = text.split('name = "advocacy"')[1].split("[[")[0]
    lost = text.split('name = "lost"')[1].split("[[")[0]
    assert "terminal = true" in advocacy  # differs from the after_purchase default
    assert "terminal" not in lost  # the lost default
    assert 'direction = "forward"' not in text
    assert 'kind = "open"' not in text
    assert "initial = false" not in text
    assert "gate" not in text


def test_sla_is_written_canonically() -> None:
    text = dumps_funnel(presets.get("waterfall"), format="toml")
    assert 'sla = "P3D"' in text


def test_transition_order_and_guards_survive() -> None:
    base = load_json(minimal())
    funnel = Funnel(
        base.name,
        [*base.stages, Stage("vip", 30, StageKind.WON, terminal=True)],
        [
            Transition("finish", "start", "vip", guard="is_big", description="big ones"),
            Transition("finish", "start", "done", guard="is_small"),
            *base.transitions,
        ],
    )
    for fmt in FORMATS:
        again = round_trip(funnel, fmt)
        assert again == funnel
        assert [t.guard for t in again.transitions] == ["is_big", "is_small", None, None]


def test_one_stage_funnel_without_transitions_round_trips() -> None:
    funnel = Funnel("solo", [Stage("only", 0, initial=True, terminal=True)], [])
    for fmt in FORMATS:
        assert round_trip(funnel, fmt) == funnel
    assert "transitions" not in dumps_funnel(funnel, format="toml")


TRICKY_TEXTS = [
    "",
    'a "quoted" word',
    "back\\slash and trailing backslash\\",
    'ends with a quote"',
    'three quotes """ inside',
    '"""',
    "line one\nline two",
    "\nstarts with a newline",
    "ends with a newline\n",
    "windows\r\nline ending",
    "lone\rcarriage return",
    "tab\there",
    "nul \x00, bell \x07, escape \x1b, delete \x7f",
    "unicode: é ß 漢字 🚀 \u2028 \u0085 \ufeff",
    "\\n is not a newline",
    "'single' quotes and ''' triple single",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_tricky_descriptions_round_trip(text: str, fmt: FileFormat) -> None:
    seed = presets.get("seed")
    funnel = attrs.evolve(
        seed,
        name=text,
        description=text,
        stages=[attrs.evolve(s, description=text) for s in seed.stages],
        transitions=[attrs.evolve(t, description=text) for t in seed.transitions],
    )
    assert round_trip(funnel, fmt) == funnel


@pytest.mark.parametrize(
    ("sla", "written"),
    [
        (timedelta(hours=72), "P3D"),
        (timedelta(minutes=90), "PT1H30M"),
        (timedelta(seconds=1), "PT1S"),
        (timedelta(microseconds=1), "PT0.000001S"),
        (timedelta(seconds=0.5), "PT0.5S"),
        (timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5), "P1DT2H3M4.000005S"),
        (timedelta(days=999_999_999, seconds=86399, microseconds=999_999), None),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_sla_round_trips(sla: timedelta, written: str | None, fmt: FileFormat) -> None:
    funnel = with_sla(sla)
    text = dumps_funnel(funnel, format=fmt)
    if written is not None:
        assert (f'sla = "{written}"' if fmt == "toml" else f'"sla": "{written}"') in text
    assert loads_funnel(text, format=fmt) == funnel


def with_sla(sla: timedelta) -> Funnel:
    seed = presets.get("seed")
    return seed.extend(replace_stages=[attrs.evolve(seed.stage("awareness"), sla=sla)])


@given(st.timedeltas(min_value=timedelta(microseconds=1)), st.sampled_from(FORMATS))
def test_any_positive_sla_round_trips(sla: timedelta, fmt: FileFormat) -> None:
    funnel = with_sla(sla)
    assert round_trip(funnel, fmt) == funnel


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("PT72H", timedelta(hours=72)),
        ("P3D", timedelta(days=3)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT90M", timedelta(minutes=90)),
        ("PT3600S", timedelta(hours=1)),
        ("PT0,25S", timedelta(seconds=0.25)),
        ("PT1.500000000S", timedelta(seconds=1.5)),
        ("P0DT1S", timedelta(seconds=1)),
    ],
)
def test_sla_accepts_iso_durations(written: str, expected: timedelta) -> None:
    document = minimal()
    document["stages"][0]["sla"] = written
    assert load_json(document).stage("start").sla == expected


@given(funnels(), st.sampled_from(FORMATS))
def test_generated_funnels_round_trip(funnel: Funnel, fmt: FileFormat) -> None:
    assert round_trip(funnel, fmt) == funnel


@st.composite
def funnels_with_any_text(draw: st.DrawFn) -> Funnel:
    """Generated funnels whose names and descriptions are arbitrary text."""
    funnel = draw(funnels())
    text = st.text()
    return attrs.evolve(
        funnel,
        name=draw(text),
        description=draw(text),
        stages=[attrs.evolve(s, description=draw(text)) for s in funnel.stages],
        transitions=[attrs.evolve(t, description=draw(text)) for t in funnel.transitions],
    )


@given(funnels_with_any_text(), st.sampled_from(FORMATS))
def test_any_text_round_trips(funnel: Funnel, fmt: FileFormat) -> None:
    assert round_trip(funnel, fmt) == funnel


@given(st.text(min_size=1))
def test_any_guard_name_round_trips_as_a_plain_name(guard: str) -> None:
    document = minimal()
    document["transitions"][0]["guard"] = guard
    funnel = load_json(document)
    assert funnel.transitions[0].guard == guard
    for fmt in FORMATS:
        assert round_trip(funnel, fmt) == funnel


def test_loading_never_runs_code() -> None:
    document = minimal()
    document["transitions"][0]["guard"] = "__import__('os').system('exit 1')"
    funnel = load_json(document)
    assert funnel.guards == ("__import__('os').system('exit 1')",)


def test_lone_surrogate_is_refused_by_toml_and_kept_by_json() -> None:
    seed = presets.get("seed")
    funnel = attrs.evolve(
        seed,
        stages=[attrs.evolve(seed.stages[0], description="half \ud83d a rocket"), *seed.stages[1:]],
    )
    with pytest.raises(FunnelFormatError) as info:
        dumps_funnel(funnel, format="toml")
    assert info.value.location == "stages[0].description"
    assert "U+D83D" in str(info.value)
    text = dumps_funnel(funnel, format="json")
    text.encode("utf-8")  # writable as a file
    assert loads_funnel(text, format="json") == funnel


def test_json_null_means_not_set() -> None:
    document = minimal()
    document["stages"][0].update(owner=None, sla=None)
    document["transitions"][0]["guard"] = None
    funnel = load_json(document)
    assert funnel.stage("start").owner is None
    assert funnel.stage("start").sla is None
    assert funnel.transitions[0].guard is None


def test_json_output_is_indented_and_ends_with_a_newline() -> None:
    text = dumps_funnel(presets.get("seed"), format="json")
    assert text.endswith("}\n")
    assert json.loads(text)["stages"][0] == {
        "name": "awareness",
        "rank": 10,
        "owner": "marketing",
        "initial": True,
        "description": "Marketing casts a wide net: content, social, newsletters, ads.",
    }


def test_toml_is_written_by_tomli_w_one_table_per_stage_and_transition() -> None:
    import tomli_w  # noqa: PLC0415

    funnel = presets.get("waterfall")
    text = dumps_funnel(funnel, format="toml")
    document = json.loads(dumps_funnel(funnel, format="json"))
    head, *tables = text.split("\n[[")
    scalars = {k: v for k, v in document.items() if not isinstance(v, list)}
    assert head == tomli_w.dumps(scalars)
    expected = [("stages", t) for t in document["stages"]]
    expected += [("transitions", t) for t in document["transitions"]]
    assert len(tables) == len(expected)
    for table, (key, values) in zip(tables, expected, strict=True):
        assert table == f"{key}]]\n" + tomli_w.dumps(values)
    assert tomllib.loads(text) == document


def test_toml_escapes_control_characters_and_keeps_line_breaks() -> None:
    seed = presets.get("seed")
    funnel = attrs.evolve(seed, description="a\x1fb\nc\r\nd\te")
    text = dumps_funnel(funnel, format="toml")
    assert 'description = "a\\u001fb\\nc\\r\\nd\te"\n' in text  # a tab may stay
    assert loads_funnel(text, format="toml") == funnel


def test_toml_refuses_integers_beyond_64_bits_and_json_keeps_them() -> None:
    funnel = Funnel(
        "big",
        [Stage("start", 1, initial=True), Stage("far", 2**63, StageKind.WON, terminal=True)],
        [Transition("go", "start", "far")],
    )
    with pytest.raises(FunnelFormatError) as info:
        dumps_funnel(funnel, format="toml")
    assert info.value.location == "stages[1].rank"
    assert "does not fit TOML's 64-bit integers" in str(info.value)
    assert round_trip(funnel, "json") == funnel


def test_toml_and_json_describe_the_same_document() -> None:
    funnel = presets.get("waterfall")
    from_toml = tomllib.loads(dumps_funnel(funnel, format="toml"))
    from_json = json.loads(dumps_funnel(funnel, format="json"))
    assert from_toml == from_json


# ---------------------------------------------------------------- errors: locations


def single_problem(document: object, location: str) -> str:
    """Load a document with exactly one problem; return the message after the location."""
    error = format_error(document)
    assert error.location == location
    prefix = f"<string>: {location}: "
    message = str(error)
    assert message.startswith(prefix), message
    return message[len(prefix) :]


def test_unknown_top_level_key() -> None:
    document = minimal()
    document["stage"] = []
    message = single_problem(document, "stage")
    assert message.startswith('unknown key "stage"; a funnel document has the keys format, name')
    assert 'did you mean "stages"?' in message


def test_unknown_stage_key_suggests_the_right_one() -> None:
    document = minimal()
    document["stages"][2]["intial"] = True
    message = single_problem(document, "stages[2].intial")
    assert 'unknown key "intial"' in message
    assert (
        "name, rank, kind, owner, initial, terminal, gate, sla, sla_calendar, accept_sla, "
        "accept_calendar, description" in message
    )
    assert 'did you mean "initial"?' in message


def test_unknown_transition_key() -> None:
    document = minimal()
    document["transitions"][1]["when"] = "always"
    message = single_problem(document, "transitions[1].when")
    assert "event, source, target, direction, guard, bypasses_gate, description" in message


@pytest.mark.parametrize(
    ("path", "value", "location", "expected"),
    [
        (("name",), 3, "name", "must be a string (got 3 that is an integer)"),
        (("description",), ["x"], "description", 'must be a string (got ["x"] that is an array)'),
        (("stages", 1, "rank"), "20", "stages[1].rank", 'must be an integer such as 10 (got "20"'),
        (("stages", 1, "rank"), 20.0, "stages[1].rank", "(got 20.0 that is a number)"),
        (("stages", 1, "rank"), True, "stages[1].rank", "(got true that is a boolean)"),
        (("stages", 0, "initial"), "yes", "stages[0].initial", "must be true or false (got"),
        (("stages", 0, "gate"), 1, "stages[0].gate", "must be true or false (got 1 that is"),
        (("stages", 1, "terminal"), None, "stages[1].terminal", "(got null that is null)"),
        (("stages", 0, "owner"), 7, "stages[0].owner", "must be a string (got 7"),
        (("stages", 0, "sla"), 72, "stages[0].sla", "must be an ISO-8601 duration string"),
        (("stages", 0, "description"), {}, "stages[0].description", "(got {} that is an object)"),
        (("transitions", 0, "event"), 1, "transitions[0].event", "must be a string"),
        (("transitions", 0, "source"), 1, "transitions[0].source", "a string naming a stage"),
        (("transitions", 1, "guard"), False, "transitions[1].guard", "a string naming a guard"),
    ],
)
def test_wrong_types(path: tuple[Any, ...], value: object, location: str, expected: str) -> None:
    document = minimal()
    parent: Any = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert expected in single_problem(document, location)


def test_stages_must_be_an_array_of_tables() -> None:
    document = minimal()
    document["stages"] = {"name": "start"}
    error = format_error(document)
    assert str(error).startswith("<string>: stages: must be an array of objects (got {")


def test_a_stage_must_be_a_table() -> None:
    document = minimal()
    document["stages"][1] = "done"
    message = str(format_error(document))
    assert 'stages[1]: a stage must be an object (got "done" that is a string)' in message


def test_the_document_must_be_a_table() -> None:
    error = format_error(["not", "a", "table"])
    assert error.location == ""
    assert str(error) == (
        '<string>: a funnel document must be an object (got ["not", "a", "table"] that is an array)'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("closed", 'must be one of "open", "won", "lost", "disqualified", "after_purchase"'),
        ("Won", 'did you mean "won"?'),
        (1, "(got 1 that is an integer)"),
    ],
)
def test_bad_kind(value: object, expected: str) -> None:
    document = minimal()
    document["stages"][0]["kind"] = value
    assert expected in single_problem(document, "stages[0].kind")


def test_bad_direction() -> None:
    document = minimal()
    document["transitions"][1]["direction"] = "sideways"
    message = single_problem(document, "transitions[1].direction")
    assert message == (
        'must be one of "forward", "backward", "exit" (got "sideways" that is a string)'
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("72h", 'such as "PT72H"'),
        ("PT", '(got "PT")'),
        ("P", '(got "P")'),
        ("P1DT", '(got "P1DT")'),
        ("PT1.5H", '(got "PT1.5H")'),
        ("P1M", "years, months and weeks are not accepted"),
        ("P1Y2D", "years, months and weeks are not accepted"),
        ("P2W", "years, months and weeks are not accepted"),
        ("-PT1H", "a duration cannot be signed"),
        ("pt1h", '(got "pt1h")'),
        ("PT\u0661H", "ISO-8601 duration"),  # an Arabic-Indic digit
        ("PT0S", "must be longer than zero"),
        ("P0D", "must be longer than zero"),
        ("PT0.0000001S", "more precise than a microsecond"),
        ("P9999999999D", "too long to be a duration"),
    ],
)
def test_bad_durations(written: str, expected: str) -> None:
    document = minimal()
    document["stages"][0]["sla"] = written
    assert expected in single_problem(document, "stages[0].sla")


@pytest.mark.parametrize(
    ("remove", "location", "expected"),
    [
        (("format",), "format", f'missing; start the document with "format": "{SCHEMA}"'),
        (("name",), "name", "missing; a funnel document needs 'name', a string"),
        (("stages",), "stages", "missing; a funnel document needs 'stages'"),
        (("stages", 2, "name"), "stages[2].name", "missing; every stage needs 'name'"),
        (("stages", 0, "rank"), "stages[0].rank", "missing; every stage needs 'rank'"),
        (("transitions", 0, "event"), "transitions[0].event", "missing; every transition"),
        (("transitions", 1, "source"), "transitions[1].source", "missing; every transition"),
        (("transitions", 1, "target"), "transitions[1].target", "missing; every transition"),
    ],
)
def test_missing_required_keys(remove: tuple[Any, ...], location: str, expected: str) -> None:
    document = minimal()
    parent: Any = document
    for key in remove[:-1]:
        parent = parent[key]
    del parent[remove[-1]]
    assert single_problem(document, location).startswith(expected)


def test_missing_format_in_toml_shows_the_toml_line() -> None:
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel('name = "x"\nstages = []\n', format="toml")
    assert f'format: missing; start the document with format = "{SCHEMA}"' in str(info.value)


def test_transitions_may_be_left_out() -> None:
    document = minimal()
    del document["transitions"]
    with pytest.raises(InvalidFunnel):  # a schema-valid document, but a dead end
        load_json(document)


def test_other_format_version_is_the_only_problem_reported() -> None:
    document = minimal()
    document["format"] = "buyerjourney.funnel/2"
    document["stages"] = "whatever version 2 does"
    document["colour"] = "red"
    message = single_problem(document, "format")
    assert message.startswith(
        f'unsupported format version "buyerjourney.funnel/2"; this version of buyerjourney '
        f'reads "{SCHEMA}"'
    )


@pytest.mark.parametrize("value", ["funnel/1", 1, None])
def test_format_must_be_the_schema(value: object) -> None:
    document = minimal()
    document["format"] = value
    assert single_problem(document, "format").startswith(f'must be "{SCHEMA}" (got ')


def test_duplicate_json_keys() -> None:
    text = json.dumps(minimal())
    text = text.replace('"rank": 20', '"rank": 20, "rank": 21', 1)
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format="json")
    assert str(info.value) == "<string>: stages[1].rank: appears more than once; keep one"


def test_every_document_problem_is_reported_at_once() -> None:
    document = minimal()
    document["name"] = 1
    document["stages"][0]["rank"] = "10"
    document["stages"][0]["sla"] = "soon"
    document["stages"][1]["kind"] = "victory"
    del document["stages"][2]["name"]
    document["transitions"][1]["direction"] = "out"
    document["transitions"][1]["colour"] = "red"
    error = format_error(document)
    message = str(error)
    locations = [
        "name",
        "stages[0].rank",
        "stages[0].sla",
        "stages[1].kind",
        "stages[2].name",
        "transitions[1].direction",
        "transitions[1].colour",
    ]
    assert message.startswith("<string>: 7 problems in the funnel document:\n")
    for location in locations:
        assert f"\n  - {location}: " in message
    assert error.location == ""


def test_every_toml_problem_is_reported_at_once() -> None:
    text = f"""\
format = "{SCHEMA}"
name = "broken"

[[stages]]
name = "start"
rank = "10"
initial = "yes"

[[stages]]
name = "done"
rank = 20
kind = "won"
sla = 5

[[transitions]]
event = "finish"
source = "start"
"""
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format="toml")
    message = str(info.value)
    assert "4 problems" in message
    assert (
        '  - stages[0].rank: must be an integer such as 10 (got "10" that is a string)' in message
    )
    assert '  - stages[0].initial: must be true or false (got "yes" that is a string)' in message
    assert "  - stages[1].sla: must be an ISO-8601 duration string" in message
    assert "  - transitions[0].target: missing; every transition needs 'target'" in message


def test_toml_type_words() -> None:
    text = f'format = "{SCHEMA}"\nname = "x"\nstages = {{ name = "a" }}\n'
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format="toml")
    assert "stages: must be an array of tables ([[stages]]) (got" in str(info.value)
    assert "that is a table)" in str(info.value)


def test_toml_dates_are_described_as_dates() -> None:
    text = f'format = "{SCHEMA}"\nname = 1979-05-27\nstages = []\n'
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format="toml")
    assert "name: must be a string (got 1979-05-27 that is a date)" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("name = ", "toml", "<string>: not valid TOML: "),
        ('format = "a"\nformat = "b"\n', "toml", "<string>: not valid TOML: "),
        ("{", "json", "<string>: not valid JSON: Expecting property name"),
        ('{"a": 1,}', "json", "(at line 1, column 9)"),
        ("", "json", "<string>: not valid JSON: Expecting value (at line 1, column 1)"),
    ],
)
def test_syntax_errors(text: str, fmt: FileFormat, expected: str) -> None:
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format=fmt)
    assert expected in str(info.value)


def test_semantic_problems_raise_invalid_funnel_listing_all() -> None:
    document = minimal()
    document["stages"][1]["terminal"] = False  # done: a dead end
    document["stages"].append({"name": "island", "rank": 5})  # unreachable and a dead end
    with pytest.raises(InvalidFunnel) as info:
        load_json(document)
    codes = sorted(p.code for p in info.value.problems)
    assert codes == ["dead-end", "dead-end", "unreachable-stage"]
    assert info.value.funnel_name == "mini"


def test_unknown_format_argument() -> None:
    with pytest.raises(FunnelFormatError, match="unknown format 'yaml'; expected 'toml' or 'json'"):
        loads_funnel("", format="yaml")  # type: ignore[arg-type]
    with pytest.raises(FunnelFormatError, match="unknown format"):
        dumps_funnel(presets.get("seed"), format="yml")  # type: ignore[arg-type]


# ---------------------------------------------------------------- errors: files


def test_load_funnel_needs_a_known_suffix(tmp_path: Path) -> None:
    path = tmp_path / "funnel.yaml"
    path.write_text("name: x\n", encoding="utf-8")
    with pytest.raises(FunnelFormatError) as info:
        load_funnel(path)
    assert str(info.value) == (
        f"{path}: cannot tell the format from the file name (suffix '.yaml'); "
        "name the file with .toml or .json"
    )
    with pytest.raises(FunnelFormatError, match=r"\(no suffix\)"):
        load_funnel(tmp_path / "funnel")


def test_dump_funnel_with_a_bad_suffix_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "funnel.txt"
    with pytest.raises(FunnelFormatError):
        dump_funnel(presets.get("seed"), path)
    assert not path.exists()


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    path = tmp_path / "FUNNEL.TOML"
    dump_funnel(presets.get("hubspot"), path)
    assert load_funnel(path) == presets.get("hubspot")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        dumps_funnel(load_json(minimal()), format="toml").replace(
            'name = "gone"', 'name = "gone"\nsla = "soon"'
        ),
        encoding="utf-8",
    )
    with pytest.raises(FunnelFormatError) as info:
        load_funnel(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: stages[2].sla: must be an ISO-8601 duration")


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_funnel(tmp_path / "absent.json")


def test_file_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(f'format = "{SCHEMA}"\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(FunnelFormatError, match="the file is not UTF-8 text"):
        load_funnel(path)


def test_a_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + dumps_funnel(presets.get("seed"), format="json").encode())
    assert load_funnel(path) == presets.get("seed")


def test_files_use_unix_line_endings(tmp_path: Path) -> None:
    seed = presets.get("seed")
    funnel = attrs.evolve(seed, description="two\nlines")
    path = tmp_path / "seed.toml"
    dump_funnel(funnel, path)
    assert b"\r\n" not in path.read_bytes()
    assert load_funnel(path) == funnel


def test_crlf_files_written_by_hand_load(tmp_path: Path) -> None:
    path = tmp_path / "crlf.toml"
    text = dumps_funnel(load_json(minimal()), format="toml")
    path.write_bytes(text.replace("\n", "\r\n").encode())
    assert load_funnel(path) == load_json(minimal())


def test_document_is_not_mutated_by_loading() -> None:
    document = minimal()
    before = copy.deepcopy(document)
    load_json(document)
    assert document == before


# ---------------------------------------------------------------- the how-to


def test_how_to_example_is_the_file_its_code_writes() -> None:
    """The TOML shown in the file-format how-to is the text its Python block loads."""
    guide = (Path(__file__).parents[1] / "docs" / "howto" / "file-format.md").read_text(
        encoding="utf-8"
    )
    shown = guide.split("```toml\n", 1)[1].split("```", 1)[0]
    code = guide.split("```python\n", 1)[1].split("```", 1)[0]
    assert f"'''\\\n{shown}'''" in code
    funnel = loads_funnel(shown, format="toml")
    assert funnel.name == "self_serve"
    # Written canonically: the SLA with its days split off, the description on one line.
    canonical = shown.replace('"PT48H"', '"P2D"').replace(
        'description = """\n' + funnel.description + '"""',
        "description = " + json.dumps(funnel.description),
    )
    assert canonical != shown
    assert dumps_funnel(funnel, format="toml") == canonical


# ---------------------------------------------------------------- declared gate bypasses


def gated(bypass: bool) -> Funnel:
    return Funnel(
        "gated",
        [
            Stage("visitor", 10, initial=True, owner="marketing"),
            Stage("review", 20, gate=True, owner="sales"),
            Stage("customer", 30, "won", owner="sales", terminal=True),
        ],
        [
            Transition("ask", "visitor", "review"),
            Transition("buy", "visitor", "customer", bypasses_gate=bypass),
            Transition("accept", "review", "customer"),
            Transition("reject", "review", "visitor", Direction.BACKWARD),
        ],
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_bypasses_gate_round_trips_and_is_left_out_when_false(fmt: FileFormat) -> None:
    declared = gated(True)
    assert round_trip(declared, fmt) == declared
    assert round_trip(gated(False), fmt) == gated(False)
    assert dumps_funnel(declared, format=fmt).count("bypasses_gate") == 1
    assert "bypasses_gate" not in dumps_funnel(gated(False), format=fmt)


def test_bypasses_gate_is_written_after_the_guard() -> None:
    text = dumps_funnel(gated(True), format="toml")
    assert 'event = "buy"\nsource = "visitor"\ntarget = "customer"\nbypasses_gate = true\n' in text


def test_bypasses_gate_must_be_a_boolean() -> None:
    document = minimal()
    document["transitions"][0]["bypasses_gate"] = "yes"
    message = single_problem(document, "transitions[0].bypasses_gate")
    assert 'must be true or false (got "yes" that is a string)' in message


# ---------------------------------------------------------------- documents that used to crash

HUGE = "9" * 5000


def toml_error(text: str) -> FunnelFormatError:
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format="toml")
    return info.value


def json_error(text: str) -> FunnelFormatError:
    with pytest.raises(FunnelFormatError) as info:
        loads_funnel(text, format="json")
    return info.value


@pytest.mark.parametrize("depth", [40, 50_000])
def test_deep_nesting_is_a_format_error(depth: int) -> None:
    """50,000 levels used to raise RecursionError from the TOML parser."""
    nested = "[" * depth + "]" * depth
    for error in (
        toml_error(f'format = "{SCHEMA}"\nname = "x"\nstages = {nested}\n'),
        toml_error(
            f'format = "{SCHEMA}"\nname = "x"\nstages = ' + "{a=" * depth + "1" + "}" * depth
        ),
        json_error(f'{{"format": "{SCHEMA}", "name": "x", "stages": {nested}}}'),
    ):
        assert "nested more than 32 levels deep" in str(error)


def test_a_5000_digit_rank_is_a_format_error() -> None:
    text = f'format = "{SCHEMA}"\nname = "x"\n[[stages]]\nname = "a"\nrank = {HUGE}\n'
    for error in (toml_error(text), json_error(json.dumps(minimal()).replace("10", HUGE, 1))):
        assert "an integer has more than 4300 digits" in str(error)
        assert "set_int_max_str_digits" not in str(error)  # advice for programmers, not users


@pytest.mark.parametrize("sla", [f"P{HUGE}D", f"PT{HUGE}H", f"PT{HUGE}S", "PT1234567890123456789M"])
def test_a_very_long_sla_is_a_located_problem(sla: str) -> None:
    """A 5000-digit SLA used to raise ValueError from int()."""
    document = minimal()
    document["stages"][0]["sla"] = sla
    message = single_problem(document, "stages[0].sla")
    assert "is too long to be a duration" in message


def test_leading_zeros_do_not_make_an_sla_too_long() -> None:
    document = minimal()
    document["stages"][0]["sla"] = "P" + "0" * 40 + "3D"
    assert load_json(document).stage("start").sla == timedelta(days=3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_byte_order_mark_in_text_is_dropped(fmt: FileFormat) -> None:
    """It used to be "Invalid statement (at line 1, column 1)" or "Unexpected UTF-8 BOM"."""
    seed = presets.get("seed")
    assert loads_funnel("\ufeff" + dumps_funnel(seed, format=fmt), format=fmt) == seed


def test_an_endless_file_is_refused_at_the_bound(tmp_path: Path) -> None:
    """``/dev/zero`` behind a .toml name used to fill memory (MemoryError)."""
    from buyerjourney._adapters.files import MAX_FILE_BYTES  # noqa: PLC0415

    if not Path("/dev/zero").exists():
        pytest.skip("needs /dev/zero")
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(FunnelFormatError) as info:
        load_funnel(link)
    assert str(info.value) == (
        f"{link}: the file is larger than 4 MiB ({MAX_FILE_BYTES} bytes), the most a "
        "definition file may hold; is it the right file?"
    )


def test_a_file_at_the_bound_is_read(tmp_path: Path) -> None:
    from buyerjourney._adapters.files import MAX_FILE_BYTES  # noqa: PLC0415

    text = dumps_funnel(presets.get("seed"), format="toml")
    path = tmp_path / "padded.toml"
    path.write_text(text + "#" * (MAX_FILE_BYTES - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_funnel(path) == presets.get("seed")
    path.write_text(text + "#" * (MAX_FILE_BYTES - len(text.encode())) + "\n")
    with pytest.raises(FunnelFormatError, match="larger than 4 MiB"):
        load_funnel(path)
