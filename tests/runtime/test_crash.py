"""The crash test: a job killed with SIGKILL at seeded random moments, restarted each time until it
finishes, leaves in its sinks exactly what an uninterrupted run leaves: nothing lost, nothing twice.

The job (``crash_job.py``) runs in a subprocess this test starts, and only that process is killed,
by its PID. The moments are uniform over the job's running time, so they fall mid-batch,
mid-checkpoint and mid-commit alike; at least ten kills land before it is let finish.
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


@pytest.mark.slow
def test_a_job_killed_ten_times_writes_its_output_exactly_once(tmp_path: Path) -> None:
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    for folder in (clean, crashed):
        folder.mkdir()
        write_inputs(folder, 20_000)
    started = time.perf_counter()
    job = start(clean)
    assert job.wait(timeout=120) == 0, (clean / "stderr").read_text()
    duration = time.perf_counter() - started
    expected = outputs(clean)
    assert len(expected[0]) > 100
    assert len(expected[1]) > 1000

    rng = random.Random(2026)
    kills = 0
    for _ in range(200):
        job = start(crashed)
        if kills < KILLS:
            try:
                job.wait(timeout=rng.uniform(0.05, duration))
            except subprocess.TimeoutExpired:
                os.kill(job.pid, signal.SIGKILL)  # only the process this test started
                job.wait()
                kills += 1
                continue
        else:
            job.wait(timeout=120)
        assert job.returncode == 0, (crashed / "stderr").read_text()
        if kills >= KILLS:
            break
    assert kills >= KILLS
    assert outputs(crashed) == expected
