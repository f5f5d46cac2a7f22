"""The Redis crash test: a job reading a Redis stream in a consumer group, windowing it by key and
writing to a Redis stream and a Redis hash (``benchmarks/redis_job.py``), killed with SIGKILL ten
times at seeded moments and restarted each time, leaves in Redis exactly what an uninterrupted
run leaves: no window total lost, none twice, no entry left pending in the group.

The kills come from :func:`benchmarks.crash.kill_repeatedly`: each once the running process has
committed an epoch of its own (checkpoints every 20 ms), at a random moment of the next 30 ms,
so they fall mid-batch, mid-checkpoint, between a commit and its XACK or its move. Only the job's
processes are killed, by their PID; the Redis server is this test's own.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

import servers
from benchmarks.crash import difference, kill_repeatedly
from benchmarks.redis_job import launcher, outputs, produce

KILLS = 10
EVENTS = 40_000


@pytest.mark.slow
def test_a_redis_job_killed_ten_times_writes_its_output_exactly_once(tmp_path: Path) -> None:
    with servers.start("redis") as server:
        for prefix in ("clean", "crashed"):
            (tmp_path / prefix).mkdir()
            asyncio.run(produce(server.url, prefix, EVENTS))
        job = launcher(server.url, "clean")(tmp_path / "clean")
        assert job.wait(timeout=120) == 0, (tmp_path / "clean" / "stderr").read_text()
        sums, totals, pending = asyncio.run(outputs(server.url, "clean"))
        assert len(sums) == len(totals) > 1000
        assert pending == 0

        launch = launcher(server.url, "crashed")
        assert kill_repeatedly(tmp_path / "crashed", KILLS, random.Random(2026), launch=launch) == KILLS
        job = launch(tmp_path / "crashed")
        assert job.wait(timeout=120) == 0, (tmp_path / "crashed" / "stderr").read_text()
        found_sums, found_totals, found_pending = asyncio.run(outputs(server.url, "crashed"))
        found = difference(sums, found_sums)
        assert (found.lost, found.duplicated, found.unexpected) == (0, 0, 0)
        assert sorted(found_sums) == sorted(sums)
        assert found_totals == totals
        assert found_pending == 0
