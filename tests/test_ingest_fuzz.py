"""Fuzzed input through the whole ingest path: bad bytes never cost a good touch.

Hypothesis mixes malformed records and raw bytes into a stream of good touches
and runs ``buyerjourney ingest`` on it: the command exits normally, prints no
traceback, applies every good touch exactly once (twice run: nothing new the
second time), and keeps one quarantine entry per bad line, with its line.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buyerjourney import SQLiteStore
from buyerjourney.cli import main

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)

_GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" ")),
    st.sampled_from(
        [
            b"{not json",
            b"[" * 5000,
            b'{"touch_id": "x", "lead_id": "y", "at": "2024-03-04T09:00:00+00:00", "kind": 1}',
            b'{"touch_id": "x", "lead_id": "y", "at": "10000-01-01T00:00:00+00:00", "kind": "k"}',
            b'{"touch_id": "x", "lead_id": "\\ud800", '
            b'"at": "2024-03-04T09:00:00+00:00", "kind": "k"}',
            b'{"touch_id": "x", "lead_id": "y", "at": "2024-03-04T09:00:00", "kind": "k"}',
            b'{"touch_id": "x", "lead_id": "y", "at": "2024-03-04T09:00:00+00:00", "kind": "k", '
            b'"score": ' + b"9" * 5000 + b"}",
            b"\xff\xfe\x00",
            b'{"type": "action", "action": "override", "lead_id": "y", "actor": "system", '
            b'"at": "2024-03-04T09:00:00+00:00", "stage": "x", "reason": "r"}',
        ]
    ),
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    good=st.integers(1, 25),
    bad=st.lists(st.tuples(st.integers(0, 30), _GARBAGE), max_size=8),
)
def test_bad_lines_are_quarantined_and_every_good_touch_lands_once(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    good: int,
    bad: list[tuple[int, bytes]],
) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    touches = [
        {
            "touch_id": f"g{i}",
            "lead_id": f"lead-{i % 4}",
            "at": (T0 + timedelta(minutes=i)).isoformat(),
            "kind": "page_view",
        }
        for i in range(good)
    ]
    lines: list[bytes] = [json.dumps(t).encode() for t in touches]
    bad_lines: set[int] = set()
    for where, garbage in bad:
        lines.insert(min(where, len(lines)), garbage)
    for number, line in enumerate(lines, start=1):
        if not line.startswith(b'{"touch_id": "g'):
            bad_lines.add(number)
    stream = directory / "stream.jsonl"
    stream.write_bytes(b"\n".join(lines) + b"\n")
    db = directory / "j.db"
    for run in range(2):
        code = main(
            ["ingest", str(stream), "--store", str(db), "--format", "json", "--no-progress"]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "Traceback" not in err
        counts = json.loads(out)
        if run == 0:
            assert counts["applied"] == good
        else:
            assert counts["applied"] == 0
            assert counts["duplicates"] == good
    with SQLiteStore(db) as store:
        assert sorted(t.touch_id for t in store.touches()) == sorted(t["touch_id"] for t in touches)
        quarantined = store.quarantined()
    blank = {n for n, line in enumerate(lines, start=1) if not line.strip()}
    assert {e.line for e in quarantined} == bad_lines - blank
    assert all(e.source == str(stream) and e.reason for e in quarantined)


def test_a_directory_given_as_a_stream_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ingest", str(tmp_path), "--store", str(tmp_path / "j.db"), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in err
    assert str(tmp_path) in err
