"""The job the crash test and the crash benchmark kill: file sources -> map -> keyed window and
keyed join -> sinks.

Run as ``python -m benchmarks.crash_job DIR``: it reads ``DIR/events.jsonl`` and
``DIR/profiles.jsonl``, checkpoints into ``DIR/store.db`` every 20 ms, and writes the window
totals to the SQLite table ``sums`` in ``DIR/out.db`` and the enriched events to
``DIR/joined.jsonl``. Started again after a kill, it resumes from its last checkpoint.

Once the graph has started (after its restore), each run appends one line to
``DIR/restores.jsonl``, so that a run killed later still leaves its restore time:
``{"restore_duration": R, "start_seconds": S}``. ``R`` is the checkpoint metric: the seconds
reading the last committed epoch from the store took (0.0 when it held none); ``S`` the seconds
from entering ``env.running()`` to its block: the restore with the operators' state loaded into
them and the sources seeked, and the start of the tasks.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import uvloop

from sage_streams import LocalEnvironment
from sage_streams.connectors import JsonLinesSink, JsonLinesSource, SqliteSink


def build(folder: Path) -> LocalEnvironment:
    env = LocalEnvironment(
        "crash-job", checkpoints=folder / "store.db", checkpoint_interval=0.02, batch_size=64
    )
    events = env.create_stream("events", source=JsonLinesSource(folder / "events.jsonl"))
    doubled = events.map(lambda e: {**e, "amount": e["amount"] * 2}, name="double")
    windows = doubled.window("tumbling", size=10, key_func=lambda e: e["user"], name="window")
    sums = windows.aggregate(lambda total, e: total + e["amount"], initial=0, name="sums")
    rows = sums.map(lambda a: {"user": a.key, "start": a.start_time, "total": a.value}, name="rows")
    rows.sink(SqliteSink(folder / "out.db", "sums"), name="sums_sink")
    profiles = env.create_stream("profiles", source=JsonLinesSource(folder / "profiles.jsonl"))
    joined = doubled.connect(profiles).join(key_func=lambda item: item["user"], name="join")
    enriched = joined.map(_enrich, name="enrich")
    enriched.sink(JsonLinesSink(folder / "joined.jsonl"), name="joined_sink")
    return env


def _enrich(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    event, profile = pair
    return {"id": event["id"], "user": event["user"], "amount": event["amount"], "tier": profile["tier"]}


async def run(folder: Path) -> None:
    """Run the job to its end, recording its restore as soon as the graph has started."""
    env = build(folder)
    entered = time.perf_counter()
    async with env.running():  # the block starts after the restore
        started = time.perf_counter() - entered
        record = {"restore_duration": env.metrics().checkpoints["restore_duration"], "start_seconds": started}
        async with await anyio.open_file(folder / "restores.jsonl", "a") as out:
            await out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    uvloop.run(run(Path(sys.argv[1])))
