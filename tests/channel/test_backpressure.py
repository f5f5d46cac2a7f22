"""configure_backpressure on connected operators: every strategy accounts for every item."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import (
    ConnectedStreams,
    DeadLetter,
    LocalEnvironment,
    PipelineError,
    SpillError,
    StreamReader,
    StreamState,
)
from sage_streams.channel.overflow import CODECS, same_value


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


# Items that spill but would not come back as they were (issue 13, points 10 and 11).


def _refuse_to_load(n: int) -> Any:
    raise ValueError(f"item {n} cannot be loaded")


class LoadsNever:
    """Pickles, but its loader raises: pickle.loads of its bytes fails."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _refuse_to_load, (self.n,)


class RefusesToLoad:
    """The json codec, except that ``loads`` refuses the item ``{"n": 25}``."""

    name = "picky"

    def dumps(self, item: Any) -> bytes:
        return json.dumps(item).encode()

    def loads(self, data: bytes) -> Any:
        item = json.loads(data)
        if item == {"n": 25}:
            raise ValueError("not this one")
        return item


class DamagedAfterTheCheck(RefusesToLoad):
    """Reads ``{"n": 25}`` back the first time (when its spill is checked), then fails: on
    every later read, or (``once``) on the next one only, as a flaky disk would."""

    def __init__(self, *, once: bool = False) -> None:
        self.once = once
        self.seen = 0

    def loads(self, data: bytes) -> Any:
        item = json.loads(data)
        if item == {"n": 25}:
            self.seen += 1
            if self.seen == 2 or (self.seen > 2 and not self.once):
                raise ValueError("damaged")
        return item


def nested(depth: int) -> list[Any]:
    item: list[Any] = []
    for _ in range(depth):
        item = [item]
    return item


async def run_buffered(
    items: list[Any], codec: Any, decision: str | None, *, capacity: int = 4, batch_size: int = 4
) -> tuple[list[Any], list[DeadLetter], list[tuple[str, Any, int]], LocalEnvironment]:
    """``items`` through a ``buffer`` channel of ``capacity`` that spills nearly all of them,
    under a handler answering ``decision``; the output, dead letters and handler calls."""
    env = LocalEnvironment(batch_size=batch_size)
    connected, merge = connected_pair(env, items, [])
    connected.configure_backpressure("buffer", buffer_size=capacity, codec=codec)
    calls: list[tuple[str, Any, int]] = []

    def handler(stream_id: str, error: BaseException, context: Any) -> str:
        assert isinstance(error, SpillError)
        calls.append((context.operator, context.item, context.attempt))
        assert decision is not None
        return decision

    if decision is not None:
        connected.on_error(handler)
    out: list[Any] = []
    letters: list[DeadLetter] = []
    connected.process(merge, name="merge").sink(out.append)
    connected.errors().sink(letters.append)
    await env.execute()
    return out, letters, calls, env


@pytest.mark.parametrize(
    ("bad", "codec"),
    [
        (LoadsNever(25), "pickle"),
        ({"n": 25}, RefusesToLoad()),
        (nested(100_000), "pickle"),
        (nested(100_000), "json"),
        ((25, "tuple"), "json"),  # back as a list
        ({25: "int key"}, "json"),  # back with the key "25"
    ],
    ids=["pickle-loader-raises", "codec-loads-raises", "deep-pickle", "deep-json", "tuple", "int-key"],
)
async def test_an_item_that_would_not_come_back_as_it_was_is_a_spill_error_of_that_item(
    bad: Any, codec: Any
) -> None:
    items: list[Any] = [{"n": i} for i in range(40)]
    items[25] = bad
    out, letters, calls, env = await run_buffered(items, codec, "continue")
    assert calls == [("merge", bad, 1)]
    assert [(d.item, d.operator, type(d.error)) for d in letters] == [(bad, "merge", SpillError)]
    rest = items[:25] + items[26:]
    assert out == rest
    assert [repr(item) for item in out] == [repr(item) for item in rest]  # same types, too
    stats = env.metrics().channels["left->merge[0]"]
    assert (stats.dropped, stats.overflow) == (1, 0)


async def test_a_spill_error_without_a_handler_stops_the_graph_naming_the_item() -> None:
    items: list[Any] = [{"n": i} for i in range(40)]
    items[25] = (25, "tuple")
    env = LocalEnvironment(batch_size=4)
    connected, merge = connected_pair(env, items, [])
    connected.configure_backpressure("buffer", buffer_size=4, codec="json")
    with pytest.raises(PipelineError) as caught:
        await connected.process(merge, name="merge").collect()
    error = caught.value
    assert (error.operator, error.item, type(error.__cause__)) == ("merge", (25, "tuple"), SpillError)
    assert str(error.__cause__) == (
        "cannot spill item (25, 'tuple') of channel 'left->merge[0]' with codec 'json': "
        "it would come back as [25, 'tuple'], which is not the same"
    )


async def test_an_item_that_cannot_be_read_back_later_goes_to_the_handler_in_its_place() -> None:
    items: list[Any] = [{"n": i} for i in range(40)]
    out, letters, calls, env = await run_buffered(items, DamagedAfterTheCheck(), "continue")
    assert out == items[:25] + items[26:]
    ((operator, item, attempt),) = calls
    assert (operator, attempt) == ("merge", 1)
    assert item == b'{"n": 25}'  # what is left of it: the bytes its codec cannot read
    assert [(d.item, d.operator) for d in letters] == [(item, "merge")]
    assert str(letters[0].error) == (
        "cannot read back an item spilled by channel 'left->merge[0]' with codec 'picky': ValueError: damaged"
    )
    assert env.metrics().channels["left->merge[0]"].dropped == 1


async def test_retrying_an_item_that_cannot_be_read_back_reads_it_again() -> None:
    items: list[Any] = [{"n": i} for i in range(40)]
    out, letters, calls, env = await run_buffered(items, DamagedAfterTheCheck(once=True), "retry")
    assert out == items
    assert (calls, letters) == ([("merge", b'{"n": 25}', 1)], [])
    assert env.metrics().channels["left->merge[0]"].dropped == 0


async def test_an_item_that_cannot_be_read_back_without_a_handler_stops_the_graph() -> None:
    items: list[Any] = [{"n": i} for i in range(40)]
    env = LocalEnvironment(batch_size=4)
    connected, merge = connected_pair(env, items, [])
    connected.configure_backpressure("buffer", buffer_size=4, codec=DamagedAfterTheCheck())
    with pytest.raises(PipelineError) as caught:
        await connected.process(merge, name="merge").collect()
    error = caught.value
    assert (error.operator, error.item, type(error.__cause__)) == ("merge", b'{"n": 25}', SpillError)


def test_backpressure_configuration_is_validated() -> None:
    env = LocalEnvironment()
    connected, _ = connected_pair(env, [1], [2])
    with pytest.raises(ValueError, match="unknown overflow codec 'xml'"):
        connected.configure_backpressure("buffer", codec="xml")
    with pytest.raises(ValueError, match="unknown backpressure strategy 'spill'"):
        connected.configure_backpressure("spill")
    assert connected.configure_backpressure("buffer", buffer_size=5) is connected


_items = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # nan and the infinities included
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=2) | st.integers(-2, 2), inner, max_size=3)
    ),
    max_leaves=8,
)


def _json_exact(item: Any) -> bool:
    """Whether the json codec gives ``item`` back as it was."""
    json_codec = CODECS["json"]
    try:
        return same_value(json_codec.loads(json_codec.dumps(item)), item)
    except Exception:
        return False


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(_items, max_size=40),
    capacity=st.integers(1, 20),
    batch_size=st.integers(1, 9),
    codec=st.sampled_from(["pickle", "json"]),
)
def test_spilled_items_come_back_in_order_or_each_as_its_own_spill_error(
    items: list[Any], capacity: int, batch_size: int, codec: str
) -> None:
    """Through a slow consumer's buffer channel, every item comes out in its place, except that
    with json each one json would not give back exactly is a SpillError of that very item."""
    before = spill_files()
    out, letters, calls, env = asyncio.run(
        run_buffered(items, codec, "continue", capacity=capacity, batch_size=batch_size)
    )
    # The first ``capacity`` items fit in memory and are never spilled, so never checked.
    refused = [
        i for i, item in enumerate(items) if codec == "json" and i >= capacity and not _json_exact(item)
    ]
    kept = [item for i, item in enumerate(items) if i not in refused]
    assert [repr(item) for item in out] == [repr(item) for item in kept]
    assert [(d.operator, type(d.error), d.attempts) for d in letters] == [("merge", SpillError, 1)] * len(
        refused
    )
    assert all(d.item is items[i] for d, i in zip(letters, refused, strict=True))
    assert [item for _, item, _ in calls] == [d.item for d in letters]
    assert env.metrics().channels["left->merge[0]"].dropped == len(refused)
    assert spill_files() <= before
