"""configure_backpressure on connected operators: every strategy accounts for every item."""

from __future__ import annotations

import asyncio
import glob
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from sage_streams import (
    ConnectedStreams,
    DeadLetter,
    LocalEnvironment,
    PipelineError,
    SpillError,
    StreamReader,
    StreamState,
)


def spill_files() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "sage_streams-overflow-*")))


Merge = Callable[[list[StreamReader], StreamState], Awaitable[list[Any]]]


def connected_pair(
    env: LocalEnvironment, left: list[Any], right: list[Any]
) -> tuple[ConnectedStreams, Merge]:
    """Two pull streams, and a merge that first waits until both have sent everything.

    Their channels then overflow however fast this machine runs: a consumer that only sleeps a
    little per call can keep pace with the producers when the machine is loaded.
    """
    pending = [2]
    all_sent = asyncio.Event()

    def source(items: list[Any]) -> Callable[[], Iterator[Any]]:
        def items_then_mark() -> Iterator[Any]:
            yield from items
            pending[0] -= 1
            if not pending[0]:
                all_sent.set()

        return items_then_mark

    async def merge(streams: list[StreamReader], state: StreamState) -> list[Any]:
        await all_sent.wait()
        return [item for reader in streams for item in reader]

    streams = [
        env.create_stream("left", source=source(left)),
        env.create_stream("right", source=source(right)),
    ]
    return ConnectedStreams(streams), merge


async def test_buffer_never_blocks_the_producer_and_keeps_order() -> None:
    before = spill_files()
    env = LocalEnvironment(batch_size=16)
    items = [{"n": i} for i in range(3000)]
    connected, merge = connected_pair(env, items, [])
    connected.configure_backpressure("buffer", buffer_size=32)
    result = await connected.process(merge, name="merge").collect()
    assert result == items
    stats = env.metrics().channels["left->merge[0]"]
    assert (stats.dropped, stats.blocked_seconds) == (0, 0.0)
    assert stats.spilled > 0
    assert stats.overflow == 0
    assert stats.peak <= 32
    assert spill_files() <= before  # the overflow file is gone


async def test_an_item_the_codec_cannot_write_goes_to_the_handler() -> None:
    env = LocalEnvironment(batch_size=4)
    items: list[Any] = [{"n": i} for i in range(40)]
    items[25] = {"n": 25, "tags": {"a", "b"}}  # a set: not JSON
    connected, merge = connected_pair(env, items, [])
    connected.configure_backpressure("buffer", buffer_size=4, codec="json")
    connected.on_error(lambda stream_id, error, context: "continue")
    out: list[Any] = []
    letters: list[DeadLetter] = []
    connected.process(merge, name="merge").sink(out.append)
    connected.errors().sink(letters.append)
    await env.execute()
    stats = env.metrics().channels["left->merge[0]"]
    assert [d.item for d in letters] == [items[25]]
    assert isinstance(letters[0].error, SpillError)
    assert stats.spilled > 0
    assert stats.dropped == 1
    # What spilled came back as JSON: equal, in order, and nothing else lost.
    assert out == [item for i, item in enumerate(items) if i != 25]
    assert len(out) + len(letters) == len(items)


async def test_an_unwritable_item_without_a_handler_stops_the_graph() -> None:
    env = LocalEnvironment(batch_size=2)
    items: list[Any] = [{"n": i} for i in range(20)]
    items[15] = {"f": lambda: None}
    connected, merge = connected_pair(env, items, [])
    connected.configure_backpressure("buffer", buffer_size=2)
    with pytest.raises(PipelineError, match=r"cannot spill item .* with codec 'pickle'") as caught:
        await connected.process(merge, name="merge").collect()
    assert isinstance(caught.value.__cause__, SpillError)


@pytest.mark.parametrize("strategy", ["drop", "drop_oldest"])
async def test_dropping_strategies_count_every_item_and_still_end(strategy: str) -> None:
    env = LocalEnvironment(batch_size=8)
    connected, merge = connected_pair(env, list(range(500)), list(range(500, 600)))
    connected.configure_backpressure(strategy, buffer_size=10)
    out = await connected.process(merge, name="merge").collect()
    channels = env.metrics().channels
    dropped = channels["left->merge[0]"].dropped + channels["right->merge[1]"].dropped
    assert dropped > 0
    assert len(out) + dropped == 600
    assert len(set(out)) == len(out)
    # Within each input the survivors keep their order.
    left = [x for x in out if x < 500]
    assert left == sorted(left)


def test_backpressure_configuration_is_validated() -> None:
    env = LocalEnvironment()
    connected, _ = connected_pair(env, [1], [2])
    with pytest.raises(ValueError, match="unknown overflow codec 'xml'"):
        connected.configure_backpressure("buffer", codec="xml")
    with pytest.raises(ValueError, match="unknown backpressure strategy 'spill'"):
        connected.configure_backpressure("spill")
    assert connected.configure_backpressure("buffer", buffer_size=5) is connected
