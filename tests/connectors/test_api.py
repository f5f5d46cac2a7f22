"""The connector API: a source of splits read side by side, acknowledgements only for committed
positions, decoding as an operator of its own (bad entries through the error path), retries with
backoff, and a graph refused when it gives less than its environment requires."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import ConnectorError, DeadLetter, LocalEnvironment, PipelineError, StreamError
from sage_streams.checkpoint import SqliteStore
from sage_streams.checkpoint.codec import SAGE_CODEC
from sage_streams.connectors import (
    AcknowledgingSource,
    Backoff,
    DecodingSource,
    JsonLinesSink,
    ReplayableSource,
    SplitSource,
)
from sage_streams.testing import ManualClock, leftover_tasks


class Lists(SplitSource):
    """Splits over lists; a split's position is the index of its next item."""

    def __init__(self, data: dict[str, list[Any]], *, failing: str | None = None) -> None:
        self.data = data
        self.failing = failing

    async def splits(self) -> list[str]:
        return list(self.data)

    async def read(self, split: str, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        index = position or 0
        items = self.data[split]
        while index < len(items):
            await asyncio.sleep(0)
            if split == self.failing and index > 0:
                raise OSError(f"split {split} broke at {index}")
            batch = items[index : index + size]
            index += len(batch)
            yield batch, index


async def read(source: ReplayableSource, position: Any = None, size: int = 2) -> list[tuple[list[Any], Any]]:
    return [batch async for batch in source.batches(position, size)]


async def test_a_source_of_splits_gives_every_split_in_its_order_with_every_position() -> None:
    source = Lists({"a": [1, 2, 3], "b": [10, 20, 30, 40, 50]})
    batches = await read(source)
    assert sorted(item for batch, _ in batches for item in batch) == [1, 2, 3, 10, 20, 30, 40, 50]
    for items in source.data.values():
        assert [i for batch, _ in batches for i in batch if i in items] == items
    assert batches[-1][1] == {"a": 3, "b": 5}
    positions = [position for _, position in batches]
    for split in ("a", "b"):  # each split's position only moves on
        moves = [p[split] or 0 for p in positions]
        assert moves == sorted(moves)
    # from any position given: exactly the rest of each split
    for index, (_, position) in enumerate(batches):
        rest = [i for batch, _ in batches[index + 1 :] for i in batch]
        assert sorted(i for batch, _ in await read(source, position) for i in batch) == sorted(rest)
    assert not leftover_tasks()


async def test_one_split_is_read_in_place_and_a_foreign_position_is_refused() -> None:
    source = Lists({"only": [1, 2, 3]})
    assert await read(source) == [([1, 2], {"only": 2}), ([3], {"only": 3})]
    with pytest.raises(ValueError, match=r"Lists: \{'other': 1\} is not a position of splits \['only'\]"):
        await read(source, {"other": 1})


async def test_a_failing_split_fails_the_read_with_its_name_and_stops_the_others() -> None:
    source = Lists({"a": list(range(100)), "b": [1, 2, 3, 4]}, failing="b")
    with pytest.raises(OSError, match="split b broke at 2") as raised:
        await read(source)
    assert "sage_streams: raised while reading split 'b'" in raised.value.__notes__
    assert not leftover_tasks()


async def test_a_source_of_splits_is_restored_exactly_once_in_a_graph(tmp_path: Path) -> None:
    data = {"a": list(range(0, 3000)), "b": list(range(10000, 12000)), "c": list(range(50000, 50500))}

    async def run(fail_at: int | None) -> tuple[list[Any], float]:
        clock = ManualClock()
        env = LocalEnvironment("splits", checkpoints=tmp_path / "s.db", clock=clock, batch_size=16)

        seen = 0

        async def maybe_fail(x: int) -> int:
            nonlocal seen
            seen += 1
            if fail_at is not None and seen >= fail_at and env.metrics().checkpoints["committed"]:
                raise RuntimeError("crash")  # once an epoch is in, so that there is one to restore
            await asyncio.sleep(0)
            return x

        env.create_stream("in", source=Lists(data)).map(maybe_fail, name="gate").sink(
            JsonLinesSink(tmp_path / "out.jsonl")
        )
        task = asyncio.ensure_future(env.execute())
        while not task.done():
            await clock.advance(0.5)
        await task
        out = [int(line) for line in (tmp_path / "out.jsonl").read_text().split()]
        return out, env.metrics().checkpoints["restore_duration"]

    with pytest.raises(PipelineError):
        await run(fail_at=400)
    out, restore = await run(fail_at=None)
    assert restore > 0  # it went on from a checkpoint, it did not start over
    assert sorted(out) == sorted(x for items in data.values() for x in items)


class Acking:
    """A list source that records what it is told to acknowledge."""

    guarantee = "exactly_once"

    def __init__(self, items: list[int], log: list[tuple[str, Any]]) -> None:
        self.items = items
        self.log = log

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        index = position or 0
        while index < len(self.items):
            await asyncio.sleep(0)
            batch = self.items[index : index + size]
            index += len(batch)
            yield batch, index

    async def acknowledge(self, position: Any) -> None:
        self.log.append(("ack", position))


class Recording(SqliteStore):
    """The store, noting the source's position in each commit."""

    def __init__(self, path: Path, log: list[tuple[str, Any]]) -> None:
        super().__init__(path)
        self.log = log

    async def commit(self, epoch: int, states: Any, positions: Any, sinks: Any) -> None:
        await super().commit(epoch, states, positions, sinks)
        if "in" in positions:
            self.log.append(("commit", SAGE_CODEC.loads(positions["in"])))


async def test_a_source_acknowledges_only_positions_its_epochs_committed(tmp_path: Path) -> None:
    log: list[tuple[str, Any]] = []
    source = Acking(list(range(500)), log)
    assert isinstance(source, AcknowledgingSource)
    clock = ManualClock()
    env = LocalEnvironment("acks", checkpoints=Recording(tmp_path / "a.db", log), clock=clock, batch_size=10)

    async def slow(x: int) -> int:
        await asyncio.sleep(0)
        return x

    out: list[int] = []
    env.create_stream("in", source=source).map(slow, name="slow").sink(out.append)
    task = asyncio.ensure_future(env.execute())
    while not task.done():
        await clock.advance(0.25)
    await task
    assert out == list(range(500))
    acks = [position for what, position in log if what == "ack"]
    assert len(acks) >= 2
    assert acks == sorted(set(acks))
    assert acks[-1] == 500
    for index, (what, position) in enumerate(log):
        if what == "ack":  # the commit of that very position came just before
            assert log[index - 1] == ("commit", position)


async def test_without_checkpoints_each_batch_is_acknowledged_as_it_is_handed_on() -> None:
    log: list[tuple[str, Any]] = []
    env = LocalEnvironment("acks", batch_size=10)
    out = await env.create_stream("in", source=Acking(list(range(25)), log)).collect()
    assert out == list(range(25))
    assert log == [("ack", 10), ("ack", 20), ("ack", 25)]


class Raw:
    """Entries of bytes, decoded as ints; ``b"?"`` does not decode."""

    guarantee = "exactly_once"

    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        index = position or 0
        while index < len(self.entries):
            batch = self.entries[index : index + size]
            index += len(batch)
            yield batch, index

    def decode(self, entry: bytes) -> int:
        return int(entry)


async def test_an_entry_that_does_not_decode_goes_to_the_error_path_as_itself() -> None:
    env = LocalEnvironment("decode", batch_size=3)
    source = Raw([b"1", b"2", b"?", b"4", b"x5"])
    assert isinstance(source, DecodingSource)
    stream = env.create_stream("in", source=source)
    assert stream.name == "in.decode"
    stream.on_error(lambda sid, error, context: "continue")
    out: list[int] = []
    letters: list[DeadLetter] = []
    stream.map(lambda x: x * 10, name="times").sink(out.append)
    stream.errors().sink(letters.append)
    await env.execute()
    assert out == [10, 20, 40]
    assert [(d.item, d.operator, type(d.error)) for d in letters] == [
        (b"?", "in.decode", ValueError),
        (b"x5", "in.decode", ValueError),
    ]


async def test_without_a_handler_a_bad_entry_stops_the_graph_naming_it() -> None:
    env = LocalEnvironment("decode")
    with pytest.raises(PipelineError) as raised:
        await env.create_stream("in", source=Raw([b"1", b"?"])).collect()
    assert raised.value.operator == "in.decode"
    assert raised.value.item == b"?"
    assert isinstance(raised.value.__cause__, ValueError)
    assert not leftover_tasks()


async def test_backoff_retries_transient_errors_then_names_the_connector() -> None:
    tries: list[int] = []
    resets: list[int] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionResetError("reset by peer")
        return "ok"

    async def reset() -> None:
        resets.append(1)

    backoff = Backoff(attempts=4, first=0.001, limit=0.004)
    assert backoff.delays() == [0.001, 0.002, 0.004]
    assert await backoff.call("redis source 'x'", "XREAD", flaky, transient=(OSError,), reset=reset) == "ok"
    assert (len(tries), len(resets)) == (3, 2)

    async def down() -> str:
        tries.append(1)
        raise ConnectionRefusedError("refused")

    tries.clear()
    with pytest.raises(ConnectorError, match=r"^redis source 'x': XREAD failed 4 times in a row") as raised:
        await backoff.call("redis source 'x'", "XREAD", down, transient=(OSError,))
    assert len(tries) == 4
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)

    async def wrong() -> str:
        tries.append(1)
        raise PermissionError("bad password")

    tries.clear()
    with pytest.raises(PermissionError):
        await backoff.call("redis source 'x'", "AUTH", wrong, transient=(ConnectionError,))
    assert len(tries) == 1
    for bad in [
        {"attempts": 0},
        {"attempts": 1.5},
        {"first": -1.0},
        {"factor": 0.5},
        {"first": 3.0, "limit": 1.0},
    ]:
        with pytest.raises(ValueError, match=r"attempts must be|a backoff needs"):
            Backoff(**bad)  # type: ignore[arg-type]


async def test_a_graph_giving_less_than_required_is_refused_naming_each_part(tmp_path: Path) -> None:
    env = LocalEnvironment("strict", checkpoints=tmp_path / "s.db", required_guarantee="exactly_once")
    clicks = env.create_stream("clicks")
    clicks.sink(print, name="printer")
    env.from_collection([1, 2], name="numbers").sink(JsonLinesSink(tmp_path / "o.jsonl"), name="file")
    assert env.guarantee == "at_most_once"
    with pytest.raises(StreamError) as raised:
        await env.execute()
    assert str(raised.value) == (
        "environment 'strict' requires exactly_once, but push stream 'clicks' gives at_most_once; "
        "sink 'printer' (a function) gives at_least_once (env.guarantee is at_most_once)"
    )
    loose = LocalEnvironment("loose", required_guarantee="at_least_once")
    loose.from_collection([1]).sink(print)
    with pytest.raises(
        StreamError, match=r"environment 'loose' \(it takes no checkpoints\) gives at_most_once"
    ):
        await loose.execute()
    with pytest.raises(ValueError, match="required_guarantee must be one of"):
        LocalEnvironment("x", required_guarantee="exactly-once")  # type: ignore[arg-type]
    ok = LocalEnvironment("ok", checkpoints=tmp_path / "ok.db", required_guarantee="exactly_once")
    ok.from_collection([1, 2]).sink(JsonLinesSink(tmp_path / "ok.jsonl"))
    await ok.execute()
    assert ok.guarantee == "exactly_once"
    assert (tmp_path / "ok.jsonl").read_text() == "1\n2\n"


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    data=st.dictionaries(st.sampled_from("abcde"), st.lists(st.integers(), max_size=30), min_size=1),
    size=st.integers(1, 7),
    cut=st.integers(0, 20),
)
def test_any_position_given_resumes_every_split_with_exactly_its_rest(
    data: dict[str, list[int]], size: int, cut: int
) -> None:
    async def check() -> None:
        tagged = {split: [(split, i, x) for i, x in enumerate(items)] for split, items in data.items()}
        source = Lists(tagged)
        batches = await read(source, None, size)
        assert sorted(i for batch, _ in batches for i in batch) == sorted(
            i for v in tagged.values() for i in v
        )
        if not batches:
            return
        _, position = batches[min(cut, len(batches) - 1)]
        rest = await read(source, position, size)
        expected = {split: tagged[split][(position[split] or 0) :] for split in tagged}
        for split in tagged:
            assert [i for batch, _ in rest for i in batch if i[0] == split] == expected[split]

    asyncio.run(check())


def test_the_package_imports_without_any_connector_library() -> None:
    """The client libraries are extras: importing sage_streams (and its connectors package)
    must not need them; each connector module imports its own."""
    code = (
        "import sys, sage_streams, sage_streams.connectors\n"
        "print(sorted(m for m in ('redis', 'nats', 'asyncpg', 'websockets', 'httpx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


class Idle:
    """Gives [1, 2], then waits for ``release`` before [3]: a live source, idle in between."""

    guarantee = "exactly_once"
    live = True

    def __init__(self, release: asyncio.Event, fail: bool = False) -> None:
        self.release = release
        self.fail = fail

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        if position is None:
            yield [1, 2], 2
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the feed broke")
        yield [3], 3


async def first_commit(env: LocalEnvironment, clock: ManualClock) -> None:
    """Move the clock on until an epoch has committed (the store commits on its own thread:
    each step gives it real time too), or fail after a thousand steps."""
    for _ in range(1000):
        if env.metrics().checkpoints.get("committed", 0) >= 1:
            return
        await clock.advance(1.0)
        await asyncio.sleep(0.01)
    raise AssertionError("no epoch committed in a thousand seconds of the clock")


async def test_a_live_source_waiting_for_data_lets_its_barriers_pass(tmp_path: Path) -> None:
    log: list[tuple[str, Any]] = []
    clock = ManualClock()
    env = LocalEnvironment("live", checkpoints=Recording(tmp_path / "l.db", log), clock=clock)
    release = asyncio.Event()
    out: list[int] = []
    env.create_stream("in", source=Idle(release)).sink(out.append)
    task = asyncio.ensure_future(env.execute())
    await first_commit(env, clock)  # committed while the source waited
    assert log[0] == ("commit", 2)
    assert out == [1, 2]
    release.set()
    while not task.done():
        await clock.advance(1.0)
    await task
    assert out == [1, 2, 3]
    assert log[-1] == ("commit", 3)


class LateAcking:
    """A live acknowledging source idle until ``release`` before its first batch, [7, 8]."""

    guarantee = "exactly_once"
    live = True

    def __init__(self, release: asyncio.Event, log: list[tuple[str, Any]]) -> None:
        self.release = release
        self.log = log

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        await self.release.wait()
        yield [7, 8], "after 8"

    async def acknowledge(self, position: Any) -> None:
        self.log.append(("ack", position))


async def test_epochs_committed_before_a_live_source_gives_anything_acknowledge_nothing(
    tmp_path: Path,
) -> None:
    """Its position is still ``None`` in those epochs: the source is not asked to acknowledge
    it (a Redis group source failed on it), and is told of its first batch once that commits."""
    log: list[tuple[str, Any]] = []
    clock = ManualClock()
    env = LocalEnvironment("late", checkpoints=Recording(tmp_path / "late.db", log), clock=clock)
    release = asyncio.Event()
    out: list[int] = []
    env.create_stream("in", source=LateAcking(release, log)).sink(out.append)
    task = asyncio.ensure_future(env.execute())
    await first_commit(env, clock)
    assert log[0] == ("commit", None)
    assert ("ack", None) not in log
    release.set()
    while not task.done():
        await clock.advance(1.0)
    await task
    assert out == [7, 8]
    assert [entry for entry in log if entry[0] == "ack"] == [("ack", "after 8")]
    assert log[-2:] == [("commit", "after 8"), ("ack", "after 8")]


async def test_a_live_source_failing_while_it_waits_fails_the_run_and_leaves_no_task(tmp_path: Path) -> None:
    clock = ManualClock()
    env = LocalEnvironment("live", checkpoints=tmp_path / "f.db", clock=clock)
    release = asyncio.Event()
    env.create_stream("in", source=Idle(release, fail=True)).sink(lambda x: None)
    task = asyncio.ensure_future(env.execute())
    for _ in range(5):
        await clock.advance(1.0)
    release.set()
    while not task.done():
        await clock.advance(1.0)
    with pytest.raises(PipelineError) as raised:
        await task
    assert isinstance(raised.value.__cause__, ConnectionError)
    assert raised.value.operator == "in"
    # and one cancelled while it waits (another part fails): its read is cancelled and awaited
    env = LocalEnvironment("live", checkpoints=tmp_path / "g.db", clock=clock)
    env.create_stream("in", source=Idle(asyncio.Event())).sink(lambda x: None)
    env.from_collection([1], name="bad").map(lambda x: 1 / 0, name="divide").sink(lambda x: None)
    task = asyncio.ensure_future(env.execute())
    while not task.done():
        await clock.advance(1.0)
    with pytest.raises(PipelineError) as raised:
        await task
    assert raised.value.operator == "divide"
    assert not leftover_tasks()
