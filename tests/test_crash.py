"""Crash safety: SIGKILL an ingesting process at random points; resuming gives a clean run's log.

The stored log must always be a state that existed live: whole operations,
never part of one. Bounded: 20 kills of a process ingesting a few thousand
touches, well under a minute.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from buyerjourney import MemoryStore, SQLiteStore, Touch, default_pipeline, presets

KILLS = 20
T0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
KINDS = ("page_view", "email_open", "email_click", "content_download", "demo_request", "qualify")

INGEST = textwrap.dedent(
    """
    import json, sys
    from buyerjourney import Engine, SQLiteStore, Touch, default_pipeline, presets
    pipeline = default_pipeline(presets.demand_waterfall())
    store = SQLiteStore(sys.argv[1])
    engine = Engine(pipeline.funnel, owners=pipeline.owners, scorer=pipeline.scorer,
                    policy=pipeline.policy, thresholds=pipeline.thresholds, store=store)
    with open(sys.argv[2], encoding="utf-8") as lines:
        touches = [Touch.from_dict(json.loads(line)) for line in lines]
    print("ready", flush=True)
    for start in range(0, len(touches), 250):
        engine.ingest(touches[start : start + 250])
    store.close()
    print("done")
    """
)


def _stream(n: int) -> list[Touch]:
    rng = random.Random(5)
    return [
        Touch(
            f"t{i}",
            f"lead-{rng.randrange(n // 8)}",
            T0 + timedelta(minutes=7 * i),
            rng.choice(KINDS),
        )
        for i in range(n)
    ]


def _engine(store: object) -> object:
    pipeline = default_pipeline(presets.demand_waterfall())
    from buyerjourney import Engine  # noqa: PLC0415

    return Engine(
        pipeline.funnel,
        owners=pipeline.owners,
        scorer=pipeline.scorer,
        policy=pipeline.policy,
        thresholds=pipeline.thresholds,
        store=store,  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_equals_a_clean_run(tmp_path: Path) -> None:
    touches = _stream(4000)
    stream = tmp_path / "touches.jsonl"
    stream.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in touches), "utf-8")
    clean = _engine(MemoryStore())
    clean.ingest(touches)  # type: ignore[attr-defined]

    db = tmp_path / "journeys.db"
    rng = random.Random(11)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    lengths = []
    for _ in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", INGEST, str(db), str(stream)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready": imported, store opened, about to ingest
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        with SQLiteStore(db) as store:
            stored = store.load()
        # a prefix of the clean log, made of whole operations: never a torn one
        assert list(stored.records) == list(clean.records[: len(stored.records)])  # type: ignore[attr-defined]
        ids = {r.touch_id for r in stored.records if r.touch_id}
        assert ids == {t.touch_id for t in stored.touches}
        lengths.append(len(stored.records))
    finished = subprocess.run(
        [sys.executable, "-c", INGEST, str(db), str(stream)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    assert finished.stdout.split() == ["ready", "done"]
    with SQLiteStore(db) as store:
        resumed = _engine(store)
        assert resumed.records == clean.records  # type: ignore[attr-defined]
        assert dict(resumed.journeys) == dict(clean.journeys)  # type: ignore[attr-defined]
    assert lengths == sorted(lengths)  # progress is never lost
    assert any(0 < n < len(clean.records) for n in lengths)  # kills landed mid-ingest  # type: ignore[attr-defined]
