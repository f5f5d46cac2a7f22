"""Soak: a million items through a flaky function, a slow sink and block backpressure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sage_streams import ConnectedStreams, DeadLetter, LocalEnvironment, StreamReader, StreamState
from sage_streams.testing import leftover_tasks

ITEMS = 1_000_000
BOUND = 1000


@pytest.mark.slow
async def test_a_million_items_with_one_percent_failures_are_all_accounted_for() -> None:
    # Batches of 250 into a bound of 1000: "block" admits a batch while the channel holds fewer
    # items than its bound, so the bound holds exactly when the batch size divides it.
    env = LocalEnvironment(batch_size=250)
    readings = env.from_collection(range(ITEMS), name="readings")
    heartbeats = env.from_collection(range(100), name="heartbeats")
    connected = ConnectedStreams([readings, heartbeats])
    connected.configure_backpressure("block", buffer_size=BOUND)
    connected.on_error(lambda stream_id, error, context: "continue")

    def merge(streams: list[StreamReader], state: StreamState) -> list[Any]:
        return streams[0].read_all() + streams[1].read_all()

    def flaky(x: int) -> int:
        if x % 100 == 37:  # 1% of the items
            raise ValueError(f"flaky on {x}")
        return x

    delivered = 0
    checksum = 0

    async def slow_sink(x: int) -> None:
        nonlocal delivered, checksum
        delivered += 1
        checksum += x
        if delivered % 500 == 0:
            await asyncio.sleep(0)  # a yield, not a wait: the producer must wait, not pile up

    letters: list[DeadLetter] = []
    connected.process(merge, name="merge").map(flaky, name="flaky").sink(slow_sink, name="sink")
    connected.errors().sink(letters.append)
    await env.execute()

    emitted = ITEMS + 100
    failed = [x for x in range(ITEMS) if x % 100 == 37] + [37]  # a heartbeat 37 fails too
    assert sorted(d.item for d in letters) == sorted(failed)
    assert delivered + len(letters) == emitted
    assert checksum == sum(range(ITEMS)) + sum(range(100)) - sum(failed)
    channels = env.metrics().channels
    assert channels["readings->merge[0]"].peak <= BOUND
    assert channels["readings->merge[0]"].dropped == 0
    operators = env.metrics().operators
    assert (operators["flaky"].errors, operators["flaky"].dead_letters) == (len(failed), len(failed))
    assert not leftover_tasks()
