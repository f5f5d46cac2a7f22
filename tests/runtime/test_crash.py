"""The crash test: a job killed with SIGKILL at seeded random moments, restarted each time until it
finishes, leaves in its sinks exactly what an uninterrupted run leaves: nothing lost, nothing twice.

The job (``benchmarks/crash_job.py``, also the crash benchmark's) runs in a subprocess this test
starts, and only that process is killed, by its PID: each run once it has committed an epoch of
its own, at a seeded random moment of the next epoch or two (checkpoints every 20 ms), so kills
fall mid-batch, mid-checkpoint and mid-commit alike, and each next run has a checkpoint to
restore. Ten kills land before it is let finish. It runs twice: with the SQLite sink in a file
of its own (rows carry their epoch) and in the checkpoint store's file (rows commit with it).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.crash import kill_repeatedly, outputs, start, write_inputs

KILLS = 10


@pytest.mark.slow
@pytest.mark.parametrize("sums_file", ["own", "store"])
def test_a_job_killed_ten_times_writes_its_output_exactly_once(tmp_path: Path, sums_file: str) -> None:
    """``store``: the SQLite sink's file is a link to the checkpoint store's, so its rows are
    written in the store's commits (the sink resolves the link and shares the store)."""
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    for folder in (clean, crashed):
        folder.mkdir()
        write_inputs(folder, 100_000)
        if sums_file == "store":
            (folder / "out.db").symlink_to(folder / "store.db")
    job = start(clean)
    assert job.wait(timeout=120) == 0, (clean / "stderr").read_text()
    expected = outputs(clean)
    assert len(expected[0]) > 100
    assert len(expected[1]) > 1000

    kills = kill_repeatedly(crashed, KILLS, random.Random(2026))
    assert kills == KILLS
    job = start(crashed)  # the run that finishes (or, if one did already, restores its end)
    assert job.wait(timeout=120) == 0, (crashed / "stderr").read_text()
    assert outputs(crashed) == expected
