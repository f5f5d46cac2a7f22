"""The job the JetStream crash test kills: JetStream -> map -> JetStream, checkpoints every 20 ms.

Run as ``python -m tests.connectors.nats_crash_job URL STREAM DIR``: it reads the subject
``STREAM.in`` of the stream through the durable consumer ``crash`` (without ``follow``: it ends
once it has read what the stream held), doubles each ``{"n": i}``, publishes the results to
``STREAM.out`` and checkpoints into ``DIR/store.db``. Started again after a kill, it resumes
from its last checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import uvloop

from sage_streams import LocalEnvironment
from sage_streams.connectors.nats_jetstream import JetStreamSink, JetStreamSource


def doubled(item: dict[str, Any]) -> dict[str, Any]:
    return {"n": item["n"], "double": 2 * item["n"]}


def build(url: str, stream: str, folder: Path) -> LocalEnvironment:
    env = LocalEnvironment(
        "nats-crash", checkpoints=folder / "store.db", checkpoint_interval=0.02, batch_size=64
    )
    source = JetStreamSource(url, stream, subject=f"{stream}.in", durable="crash")
    env.create_stream("orders", source=source).map(doubled, name="double").sink(
        JetStreamSink(url, f"{stream}.out"), name="out"
    )
    return env


if __name__ == "__main__":
    uvloop.run(build(sys.argv[1], sys.argv[2], Path(sys.argv[3])).execute())
