"""Fuzzed input: malformed records and random bytes mixed into good ones.

Whatever is mixed in, the reader never raises; every good record comes out
exactly once, in order, at its line; every bad one is one Rejected at its
line, with a documented code and a short, printable text.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buyerjourney import Touch
from buyerjourney.readers import (
    MAX_TEXT_CHARS,
    REJECT_CODES,
    Columns,
    Location,
    Rejected,
    in_time_order,
    read,
)

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def good_json(index: int) -> bytes:
    at = (T0 + timedelta(minutes=index)).isoformat()
    record = {"touch_id": f"t{index}", "lead_id": f"L{index % 3}", "at": at, "kind": "view"}
    return json.dumps(record).encode()


BAD_JSON = [
    b"{",
    b"[1, 2]",
    b'"text"',
    b"null",
    b"[" * 5000,
    b"{" * 100_000,
    b'{"touch_id": "x", "lead_id": "L", "at": "2024-03-01T00:00:00Z", "kind": "v", "n": 1}',
    b'{"touch_id": "x", "lead_id": "L", "at": "2024-03-01T00:00:00", "kind": "v"}',
    b'{"touch_id": "x", "lead_id": "L", "at": "10000-03-01T00:00:00Z", "kind": "v"}',
    b'{"touch_id": "x", "lead_id": "\\udfff", "at": "2024-03-01T00:00:00Z", "kind": "v"}',
    b'{"touch_id": "x", "lead_id": "L", "at": "2024-03-01T00:00:00Z", "kind": NaN}',
    b'{"touch_id": "x", "lead_id": "L", "at": "2024-03-01T00:00:00Z", "kind": -Infinity}',
    b'{"touch_id": "x", "lead_id": "L", "at": "2024-03-01T00:00:00Z", "kind": "v", '
    b'"properties": {"n": ' + b"7" * 5000 + b"}}",
    b'{"touch_id": 1, "lead_id": "L", "at": "2024-03-01T00:00:00Z", "kind": "v"}',
    b'{"a": 1, "a": 1}',
    b'{"type": "action", "action": "override", "lead_id": "L", "at": "2024-03-01T00:00:00Z", '
    b'"actor": "system", "stage": "won", "reason": "x"}',
    b"\x00\x01\x02",
]

random_line = st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b)


@st.composite
def bad_json_line(draw: st.DrawFn, index: int) -> bytes:
    """A line that must be rejected."""
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.sampled_from(BAD_JSON))
    if choice == 1:
        line = good_json(index)
        cut = draw(st.integers(0, len(line)))
        byte = draw(st.integers(0x80, 0xFF)).to_bytes(1, "big")
        return line[:cut] + byte + line[cut:]
    return draw(random_line)


@st.composite
def jsonl_mix(draw: st.DrawFn) -> list[tuple[bool, bytes]]:
    """(good?, line) pairs: good touches with bad lines mixed in."""
    size = draw(st.integers(1, 40))
    lines = []
    for index in range(size):
        bad = draw(st.booleans())
        lines.append((not bad, draw(bad_json_line(index)) if bad else good_json(index)))
    return lines


def _blank(line: bytes, number: int) -> bool:
    if number == 1:
        line = line.removeprefix(b"\xef\xbb\xbf")  # a BOM at the start is dropped
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def _check_rejected(item: Rejected, line: int) -> None:
    assert item.location.line == line
    assert item.code in REJECT_CODES
    assert item.reason
    assert len(item.text) <= MAX_TEXT_CHARS
    item.text.encode("utf-8")  # printable: no lone surrogate
    assert all(ch >= " " or ch == "\t" for ch in item.text)


def _check(
    out: list[tuple[Any, Any]],
    lines: list[tuple[bool, bytes]],
    first_line: int,
    blank: Any = _blank,
) -> None:
    expected_good = [
        (number, line) for number, (ok, line) in enumerate(lines, start=first_line) if ok
    ]
    got_good = [(loc.line, item) for loc, item in out if not isinstance(item, Rejected)]
    assert [n for n, _ in got_good] == [n for n, _ in expected_good]
    assert all(isinstance(item, Touch) for _, item in got_good)
    assert [item.touch_id for _, item in got_good] == [
        f"t{n - first_line}" for n, _ in expected_good
    ]
    rejected = [(loc.line, item) for loc, item in out if isinstance(item, Rejected)]
    expected_bad = [
        number
        for number, (ok, line) in enumerate(lines, start=first_line)
        if not ok and not blank(line, number)
    ]
    assert [n for n, _ in rejected] == expected_bad
    for number, item in rejected:
        _check_rejected(item, number)


@FUZZ
@given(jsonl_mix())
def test_jsonl_bad_lines_never_cost_good_ones(lines: list[tuple[bool, bytes]]) -> None:
    out = list(read([line + b"\n" for _, line in lines], format="jsonl"))
    _check(out, lines, 1)


@FUZZ
@given(jsonl_mix())
def test_jsonl_from_a_file(tmp_path_factory: Any, lines: list[tuple[bool, bytes]]) -> None:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "s.jsonl"
    path.write_bytes(b"\n".join(line for _, line in lines))  # no final newline
    _check(list(read(path)), lines, 1)


def good_csv(index: int) -> bytes:
    at = (T0 + timedelta(minutes=index)).isoformat()
    return f"t{index},L{index % 3},{at},view".encode()


BAD_CSV = [
    b"t,L,2024-03-01T00:00:00Z",
    b"t,L,2024-03-01T00:00:00Z,v,extra",
    b"t,L,2024-03-01T00:00:00,v",
    b"t,,2024-03-01T00:00:00Z,v",
    b"t,L,10000-01-01T00:00:00Z,v",
    b"t,L\x00,2024-03-01T00:00:00Z,v",
    b'"unclosed quote',
    b'"q"x,L,2024-03-01T00:00:00Z,v',
]

random_csv_line = st.binary(min_size=1, max_size=60).filter(lambda b: not (set(b) & set(b'\n\r"')))


@st.composite
def csv_mix(draw: st.DrawFn) -> list[tuple[bool, bytes]]:
    size = draw(st.integers(1, 40))
    lines = []
    for index in range(size):
        if not draw(st.booleans()):
            lines.append((True, good_csv(index)))
            continue
        choice = draw(st.integers(0, 2))
        if choice == 0:
            line = draw(st.sampled_from(BAD_CSV))
        elif choice == 1:
            line = good_csv(index)
            cut = draw(st.integers(0, len(line)))
            line = line[:cut] + draw(st.integers(0x80, 0xFF)).to_bytes(1, "big") + line[cut:]
        else:
            line = draw(random_csv_line)
        lines.append((False, line))
    return lines


@FUZZ
@given(csv_mix())
def test_csv_bad_rows_never_cost_good_ones(lines: list[tuple[bool, bytes]]) -> None:
    text = [b"touch_id,lead_id,at,kind\n", *(line + b"\n" for _, line in lines)]
    out = list(read(text, format="csv", columns=Columns()))
    _check(out, lines, 2, blank=lambda _line, _number: False)  # only an empty CSV line is skipped


@FUZZ
@given(st.lists(st.integers(0, 1000), max_size=60), st.integers(1, 80))
def test_in_time_order_sorts_whatever_fits(minutes: list[int], limit: int) -> None:
    items = [
        (Location("s", i), Touch(f"t{i}", "L", T0 + timedelta(minutes=m), "x"))
        for i, m in enumerate(minutes)
    ]
    out = [item for _, item in in_time_order(items, limit=limit)]
    assert sorted(t.touch_id for t in out) == sorted(t.touch_id for _, t in items)
    if len(items) <= limit:
        assert out == [t for _, t in sorted(items, key=lambda pair: pair[1].at)]
