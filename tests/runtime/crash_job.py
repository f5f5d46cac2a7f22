"""The job the crash test kills: file sources -> map -> keyed window and keyed join -> sinks.

Run as ``python tests/runtime/crash_job.py DIR``: it reads ``DIR/events.jsonl`` and
``DIR/profiles.jsonl``, checkpoints into ``DIR/store.db`` every 20 ms, and writes the window
totals to the SQLite table ``sums`` in ``DIR/out.db`` and the enriched events to
``DIR/joined.jsonl``. Started again after a kill, it resumes from its last checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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


if __name__ == "__main__":
    build(Path(sys.argv[1])).run()
