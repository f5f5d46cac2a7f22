"""The crash test: a job killed with SIGKILL at seeded random moments, restarted each time until it
finishes, leaves in its sinks exactly what an uninterrupted run leaves: nothing lost, nothing twice.

The job (``crash_job.py``) runs in a subprocess this test starts, and only that process is killed,
by its PID: each run once it has committed an epoch of its own, at a seeded random moment of
the next epoch or two (checkpoints every 20 ms), so kills fall mid-batch, mid-checkpoint and
mid-commit alike, and each next run has a checkpoint to restore. Ten kills land before it is
let finish.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

JOB = Path(__file__).with_name("crash_job.py")
ROOT = Path(__file__).resolve().parents[2]
KILLS = 10


def write_inputs(folder: Path, events: int) -> None:
    rng = random.Random(7)
    with open(folder / "events.jsonl", "w") as out:
        for i in range(events):
            record = {"id": i, "timestamp": i // 20, "user": rng.randrange(50), "amount": rng.randrange(100)}
            out.write(json.dumps(record) + "\n")
    with open(folder / "profiles.jsonl", "w") as out:
        for user in range(0, 50, 2):  # every other user has a profile
            out.write(json.dumps({"user": user, "tier": "gold" if user % 4 else "free"}) + "\n")


def start(folder: Path) -> subprocess.Popen[bytes]:
    """The job, its errors written to ``folder/stderr`` (no pipe is left open after a kill)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(folder / "stderr", "ab") as errors:
        return subprocess.Popen([sys.executable, str(JOB), str(folder)], env=env, stderr=errors)


def outputs(folder: Path) -> tuple[list[Any], list[Any]]:
    with sqlite3.connect(folder / "out.db") as db:
        sums = sorted(db.execute("SELECT user, start, total FROM sums").fetchall())
    joined = sorted(
        json.dumps(json.loads(line), sort_keys=True)
        for line in (folder / "joined.jsonl").read_text().splitlines()
    )
    return sums, joined


def committed_epoch(folder: Path) -> int:
    """The last epoch the job's store committed (0 for none), read beside the job."""
    if not (folder / "store.db").exists():
        return 0
    try:
        with sqlite3.connect(f"file:{folder / 'store.db'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT max(epoch) FROM epochs").fetchone()
    except sqlite3.Error:  # killed before the store had its tables
        return 0
    return int(row[0] or 0)


@pytest.mark.slow
def test_a_job_killed_ten_times_writes_its_output_exactly_once(tmp_path: Path) -> None:
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    for folder in (clean, crashed):
        folder.mkdir()
        write_inputs(folder, 100_000)
    job = start(clean)
    assert job.wait(timeout=120) == 0, (clean / "stderr").read_text()
    expected = outputs(clean)
    assert len(expected[0]) > 100
    assert len(expected[1]) > 1000

    rng = random.Random(2026)
    kills = 0
    while kills < KILLS:
        before = committed_epoch(crashed)
        job = start(crashed)
        # Once the run has committed an epoch of its own (so each kill comes after progress,
        # and the next run restores it), kill it at a random moment of the next two epochs:
        # mid-batch, mid-checkpoint or mid-commit.
        deadline = time.monotonic() + 60
        while job.poll() is None and committed_epoch(crashed) <= before and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        if job.poll() is not None:
            break  # it finished between two kills
        os.kill(job.pid, signal.SIGKILL)  # only the process this test started
        job.wait()
        kills += 1
    assert kills == KILLS
    job = start(crashed)  # the run that finishes (or, if one did already, restores its end)
    assert job.wait(timeout=120) == 0, (crashed / "stderr").read_text()
    assert outputs(crashed) == expected
