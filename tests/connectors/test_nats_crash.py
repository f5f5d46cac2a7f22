"""The JetStream crash test: a JetStream -> map -> JetStream job killed with SIGKILL ten times at
seeded moments, restarted each time until it finishes, leaves each result in the output subject
once, in order, and the durable consumer acknowledged to the end.

The job (``tests/connectors/nats_crash_job.py``) runs in a subprocess this test starts, and only
that process is killed, by its PID: the k-th run once it has committed an epoch of its own and
the output holds k / 11 of the results, at a seeded random moment of the next 30 ms, so the
kills spread over the input and fall mid-batch, mid-publish and mid-commit alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import nats
import pytest

from benchmarks.crash import kill_repeatedly
from servers import Server

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 10_000
KILLS = 10


async def _query(url: str, stream: str, what: str) -> Any:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if what == "fill":
            for i in range(MESSAGES):
                await js.publish_async(f"{stream}.in", json.dumps({"n": i}).encode())
            await js.publish_async_completed()
            return None
        info = await js.stream_info(stream, subjects_filter=f"{stream}.out")
        if what == "count":
            return (info.state.subjects or {}).get(f"{stream}.out", 0)
        messages = [await js.get_msg(stream, seq) for seq in range(1, info.state.last_seq + 1)]
        outputs = [json.loads(m.data or b"") for m in messages if m.subject == f"{stream}.out"]
        acked = (await js.consumer_info(stream, "crash")).ack_floor.stream_seq
        return outputs, acked
    finally:
        await nc.close()


def query(url: str, stream: str, what: str) -> Any:
    return asyncio.run(_query(url, stream, what))


def start(url: str, stream: str, folder: Path) -> subprocess.Popen[bytes]:
    with open(folder / "stderr", "ab") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.connectors.nats_crash_job", url, stream, str(folder)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=errors,
        )


@pytest.mark.slow
def test_a_nats_job_killed_ten_times_publishes_each_result_once(nats_server: Server, tmp_path: Path) -> None:
    stream = f"CRASH{random.Random().randrange(10**9)}"

    async def create() -> None:
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().add_stream(name=stream, subjects=[f"{stream}.>"])
        await nc.close()

    asyncio.run(create())
    query(nats_server.url, stream, "fill")
    launch = partial(start, nats_server.url, stream)
    kills = kill_repeatedly(
        tmp_path,
        KILLS,
        random.Random(2026),
        launch=launch,
        ready=lambda k: query(nats_server.url, stream, "count") >= MESSAGES * (k + 1) // (KILLS + 1),
    )
    assert kills == KILLS
    job = launch(tmp_path)
    assert job.wait(timeout=120) == 0, (tmp_path / "stderr").read_text()
    outputs, acked = query(nats_server.url, stream, "all")
    assert outputs == [{"n": i, "double": 2 * i} for i in range(MESSAGES)]
    assert acked == MESSAGES  # the input's stream sequences are 1..MESSAGES
