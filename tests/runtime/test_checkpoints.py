"""Checkpoints through whole graphs: barriers in band, aligned at operators of several inputs,
epochs committed in order, and a run restored from the last one.

A crash is simulated by cancelling the run once some epochs have committed (what the store holds
is then all that survives, as after a kill); the restored run must then finish with exactly the
state an uninterrupted run has. The pipelines here emit their results when their inputs end
(windows fire at the end), so the restored run's output is compared whole. The clock is manual:
epochs start when the test moves it on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sage_streams import DataStream, LocalEnvironment, PipelineError
from sage_streams.checkpoint import SqliteStore
from sage_streams.checkpoint.codec import SAGE_CODEC
from sage_streams.connectors import JsonLinesSink
from sage_streams.errors import CheckpointError
from sage_streams.testing import ManualClock, leftover_tasks

Build = Callable[[LocalEnvironment], DataStream[Any]]


class Stall:
    """Holds the item numbered ``at`` back while ``on``: a crash then finds the run mid-way,
    with the epochs before the item committed (the sources wait behind it, so no later
    barrier passes and the epochs it holds up cannot complete). Until then every ``pace``-th
    item waits a second of ``clock``, so the epochs (one a second) fall between items however
    fast or loaded the machine is: the run cannot race to the stall inside one epoch."""

    on = False
    at = 600
    pace = 50
    clock = ManualClock()
    reached = asyncio.Event()

    @classmethod
    async def gate(cls, event: dict[str, Any]) -> dict[str, Any]:
        if cls.on and event["n"] == cls.at:
            cls.reached.set()
            await asyncio.Event().wait()  # until the crash cancels the run
        elif cls.on and event["n"] % cls.pace == 0:
            await cls.clock.sleep(1.0)
        return event


def environment(path: Path, clock: ManualClock, name: str = "job") -> LocalEnvironment:
    return LocalEnvironment(name, checkpoints=path, checkpoint_interval=1.0, clock=clock, batch_size=8)


async def run_to_end(env: LocalEnvironment, clock: ManualClock, build: Build) -> list[Any]:
    return await collect(build(env), clock)


async def collect(stream: DataStream[Any], clock: ManualClock) -> list[Any]:
    """``stream.collect()``, moving the clock on (one epoch a second) until it returns."""
    task = asyncio.ensure_future(stream.collect())
    while not task.done():
        await clock.advance(1.0)
    return task.result()


async def crash_after(env: LocalEnvironment, clock: ManualClock, build: Build) -> list[Any]:
    """Run until the stall, let the epochs before it commit, then cancel the run (the crash);
    returns what its sink had been given."""
    delivered: list[Any] = []
    build(env).sink(delivered.append)
    Stall.on, Stall.reached, Stall.clock = True, asyncio.Event(), clock
    try:
        task = asyncio.ensure_future(env.execute())
        while not Stall.reached.is_set():
            await clock.advance(1.0)
        for _ in range(1000):  # the store commits on its own thread: wait for it, not for the clock
            if env.metrics().checkpoints.get("committed", 0) >= 2:
                break
            await asyncio.sleep(0.01)
        assert env.metrics().checkpoints["committed"] >= 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        Stall.on = False
    return delivered


async def advance_then_complete(
    env: LocalEnvironment, clock: ManualClock, *, seconds: int, epochs: int
) -> None:
    """Move the clock on ``seconds``, a second at a time, then wait (really: the store commits
    on its own thread) until ``epochs`` epochs have completed, or ten seconds have passed."""
    for _ in range(seconds):
        await clock.advance(1.0)
    for _ in range(1000):
        if env.metrics().checkpoints["completed"] >= epochs:
            return
        await asyncio.sleep(0.01)


def keyed_sums(env: LocalEnvironment) -> DataStream[Any]:
    events = env.from_collection(
        [{"timestamp": 0, "user": i % 7, "n": i} for i in range(3000)], name="events"
    )
    windows = (
        events.map(Stall.gate, name="gate")
        .map(lambda e: {**e, "n": e["n"] * 2}, name="double")
        .window("tumbling", size=10, key_func=lambda e: e["user"], name="sums")
    )
    return windows.aggregate(lambda total, e: total + e["n"], initial=0, name="aggregate").map(
        lambda a: (a.key, a.value), name="pairs"
    )


def joined_counts(env: LocalEnvironment) -> DataStream[Any]:
    left = env.from_collection([{"k": i % 5, "side": "l", "n": i} for i in range(800)], name="left")
    left = left.map(Stall.gate, name="gate")
    right = env.from_collection([{"k": i % 5, "side": "r", "n": i} for i in range(600)], name="right")
    pairs = left.connect(right).join(key_func=lambda e: e["k"], name="join")
    stamped = pairs.map(lambda pair: {"timestamp": 0, "k": pair[0]["k"]}, name="stamp")
    counts = stamped.window("tumbling", size=10, key_func=lambda e: e["k"], name="counts")
    return counts.aggregate(lambda total, e: total + 1, initial=0, name="count").map(
        lambda a: (a.key, a.value), name="pairs"
    )


def concurrent_sums(env: LocalEnvironment) -> DataStream[Any]:
    async def slow_double(e: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {**e, "n": e["n"] * 2}

    events = env.from_collection(
        [{"timestamp": 0, "user": i % 3, "n": i} for i in range(1500)], name="events"
    )
    doubled = events.map(Stall.gate, name="gate").map(
        slow_double, concurrency=4, ordered=False, name="double"
    )
    windows = doubled.window("tumbling", size=10, key_func=lambda e: e["user"], name="sums")
    return windows.aggregate(lambda total, e: total + e["n"], initial=0, name="aggregate").map(
        lambda a: (a.key, a.value), name="pairs"
    )


@pytest.mark.parametrize("build", [keyed_sums, joined_counts, concurrent_sums])
async def test_a_run_restored_after_a_crash_ends_as_an_uninterrupted_one(
    tmp_path: Path, build: Build
) -> None:
    """Each key's total is emitted once its window fires, before or after the crash (a plain
    sink is at-least-once); whenever it is, it is the uninterrupted run's: the restored state
    counts nothing twice and misses nothing."""
    expected = dict(await run_to_end(environment(tmp_path / "clean.db", ManualClock()), ManualClock(), build))
    clock = ManualClock()
    before = await crash_after(environment(tmp_path / "crash.db", clock), clock, build)
    restored_env = environment(tmp_path / "crash.db", clock)
    after = await run_to_end(restored_env, clock, build)
    assert before == []  # the crash came mid-way: the restored run did the rest
    assert {key for key, _ in before + after} == set(expected)
    assert all(total == expected[key] for key, total in before + after)
    assert restored_env.metrics().checkpoints["restore_duration"] > 0
    assert not leftover_tasks()


async def test_epochs_commit_in_order_and_a_finished_run_commits_its_end(tmp_path: Path) -> None:
    clock = ManualClock()
    env = environment(tmp_path / "store.db", clock)
    stream = keyed_sums(env)
    out = await collect(stream, clock)
    assert len(out) == 7
    stats = env.metrics().checkpoints
    assert stats["committed"] >= 2
    assert stats["epoch"] >= stats["committed"]  # an epoch in which nothing changed writes nothing
    # A second run of the finished job restores its end: nothing is read or emitted again.
    assert await collect(stream, clock) == []
    assert env.metrics().checkpoints["epoch"] == stats["epoch"]


async def test_a_store_of_another_job_is_refused_before_anything_runs(tmp_path: Path) -> None:
    clock = ManualClock()
    await run_to_end(environment(tmp_path / "store.db", clock, "one"), clock, keyed_sums)
    other = environment(tmp_path / "store.db", clock, "two")
    with pytest.raises(PipelineError) as raised:
        await run_to_end(other, clock, keyed_sums)
    assert isinstance(raised.value.__cause__, CheckpointError)
    assert "'one'" in str(raised.value.__cause__)
    assert not leftover_tasks()


async def test_reset_checkpoints_starts_the_job_over(tmp_path: Path) -> None:
    clock = ManualClock()
    env = environment(tmp_path / "store.db", clock)
    first = await run_to_end(env, clock, keyed_sums)
    await env.reset_checkpoints()
    fresh = environment(tmp_path / "store.db", clock)
    assert sorted(await run_to_end(fresh, clock, keyed_sums)) == sorted(first)


async def test_a_state_value_the_codec_cannot_write_fails_the_graph_naming_the_operator(
    tmp_path: Path,
) -> None:
    class Opaque:
        pass

    clock = ManualClock()
    env = environment(tmp_path / "store.db", clock)

    def build(env: LocalEnvironment) -> DataStream[Any]:
        items = env.from_collection([{"timestamp": 0, "o": Opaque()} for _ in range(200)], name="items")
        return items.window("tumbling", size=10, name="held").map(len, name="sizes")

    with pytest.raises(PipelineError) as raised:
        await run_to_end(env, clock, build)
    error = raised.value.__cause__
    assert isinstance(error, CheckpointError)
    assert "Opaque" in str(error)
    assert any("'held'" in note for note in getattr(error, "__notes__", []))
    assert not leftover_tasks()


async def test_a_push_stream_gets_barriers_while_nothing_is_emitted(tmp_path: Path) -> None:
    clock = ManualClock()
    env = environment(tmp_path / "store.db", clock)
    events = env.create_stream("events")
    out = events.map(lambda x: x + 1, name="inc")
    got: list[int] = []
    out.sink(got.append)
    async with env.running():
        await events.emit(1)
        await advance_then_complete(env, clock, seconds=3, epochs=3)
        assert env.metrics().checkpoints["completed"] >= 3  # three barriers passed, no data
        await events.emit(2)
    assert got == [2, 3]


async def test_an_operator_holding_an_input_back_reads_it_ahead_to_align(tmp_path: Path) -> None:
    """An event synchronizer holds an input at its marker while a barrier waits on the other:
    the head reads the held input up to its barrier, keeps what it read in the snapshot, and
    the output is the same as without checkpoints."""

    async def run(checkpoints: bool) -> tuple[list[Any], dict[str, float]]:
        clock = ManualClock()
        env = (
            environment(tmp_path / "store.db", clock)
            if checkpoints
            else LocalEnvironment("job", clock=clock, batch_size=8)
        )
        first, second = env.create_stream("first"), env.create_stream("second")
        synced = first.connect(second).synchronize(
            "event", sync_event=lambda item: item == "MARK", name="sync"
        )
        got: list[Any] = []
        synced.sink(got.append)
        async with env.running():
            for item in (1, "MARK", 2):
                await first.emit(item)
            await clock.advance(1.0)  # a barrier while first is held at its marker
            await first.emit("MARK")
            await clock.advance(1.0)
            for item in (3, "MARK"):
                await second.emit(item)
            await clock.advance(1.0)
            for item in (4, "MARK"):
                await second.emit(item)
            await clock.advance(1.0)
        return got, env.metrics().checkpoints

    plain, _ = await run(False)
    checkpointed, stats = await run(True)
    assert checkpointed == plain == [([1], [3]), ([2], [4])]
    assert stats["completed"] >= 2
    assert not leftover_tasks()


def test_the_store_is_an_sqlite_store_for_a_path(tmp_path: Path) -> None:
    env = LocalEnvironment("job", checkpoints=tmp_path / "store.db")
    assert isinstance(env._store(), SqliteStore)
    with pytest.raises(ValueError, match="checkpoint_interval"):
        LocalEnvironment("job", checkpoints=tmp_path / "store.db", checkpoint_interval=0)


async def test_a_stream_state_one_operator_holds_is_restored_with_it(tmp_path: Path) -> None:
    states: list[Any] = []

    def counting(env: LocalEnvironment) -> DataStream[Any]:
        def count(readers: Any, state: Any) -> None:
            for reader in readers:
                for event in reader.read_all():
                    state.increment("seen")
                    state.increment(("user", event["user"]), event["n"])

        events = env.from_collection([{"user": i % 3, "n": i} for i in range(3000)], name="events")
        connected = events.map(Stall.gate, name="gate").connect(env.from_collection([], name="none"))
        states.append(connected.state)
        return connected.process(count, name="count")

    clock = ManualClock()
    await crash_after(environment(tmp_path / "store.db", clock), clock, counting)
    assert 0 < states[-1].get("seen") < 3000  # the crash came mid-way
    await run_to_end(environment(tmp_path / "store.db", clock), clock, counting)
    restored = states[-1]
    assert restored.get("seen") == 3000
    assert [restored.get(("user", user)) for user in range(3)] == [
        sum(n for n in range(3000) if n % 3 == user) for user in range(3)
    ]


async def test_a_stream_state_two_operators_share_is_refused_once_it_holds_data(tmp_path: Path) -> None:
    clock = ManualClock()
    env = environment(tmp_path / "store.db", clock)

    def count(readers: Any, state: Any) -> None:
        for reader in readers:
            for _ in reader.read_all():
                state.increment("seen")

    connected = env.from_collection(list(range(2000)), name="left").connect(
        env.from_collection([], name="right")
    )
    connected.process(count, name="first").sink(print)
    connected.process(count, name="second").sink(print)
    with pytest.raises(PipelineError) as raised:
        await env_run(env, clock)
    assert isinstance(raised.value.__cause__, CheckpointError)
    assert "'first', 'second'" in str(raised.value.__cause__)
    assert not leftover_tasks()


async def env_run(env: LocalEnvironment, clock: ManualClock) -> None:
    task = asyncio.ensure_future(env.execute())
    while not task.done():
        await clock.advance(1.0)
    task.result()


class FailingStore(SqliteStore):
    """A real SQLite store whose third commit fails, as a full disk would make it."""

    commits = 0

    async def commit(self, epoch: int, states: Any, positions: Any, sinks: Any) -> None:
        FailingStore.commits += 1
        if FailingStore.commits == 3:
            raise CheckpointError(f"cannot commit epoch {epoch}: disk full (simulated)")
        await super().commit(epoch, states, positions, sinks)


async def test_a_failing_commit_fails_the_graph_and_keeps_the_last_epoch(tmp_path: Path) -> None:
    clock = ManualClock()
    FailingStore.commits = 0
    env = LocalEnvironment("job", checkpoints=FailingStore(tmp_path / "store.db"), clock=clock, batch_size=8)
    with pytest.raises(PipelineError) as raised:
        await collect(keyed_sums(env), clock)
    assert raised.value.operator == "checkpoints"
    assert "disk full" in str(raised.value.__cause__)
    assert not leftover_tasks()
    store = SqliteStore(tmp_path / "store.db")
    kept = await store.open("job", "sage/1")
    await store.close()
    assert kept is not None
    assert kept.epoch == env.metrics().checkpoints["epoch"]


def test_the_guarantee_is_the_weakest_part(tmp_path: Path) -> None:
    plain = LocalEnvironment("job")
    plain.from_collection([1]).sink(print)
    assert plain.guarantee == "at_most_once"
    env = LocalEnvironment("job", checkpoints=tmp_path / "store.db")
    numbers = env.from_collection([1, 2, 3])
    numbers.sink(JsonLinesSink(tmp_path / "out.jsonl"))
    assert env.guarantee == "exactly_once"
    numbers.sink(print)
    assert env.guarantee == "at_least_once"
    env.create_stream("pushed").sink(JsonLinesSink(tmp_path / "more.jsonl"))
    assert env.guarantee == "at_most_once"


async def test_a_renamed_operator_is_refused_at_the_start_not_lost(tmp_path: Path) -> None:
    clock = ManualClock()
    await crash_after(environment(tmp_path / "store.db", clock), clock, keyed_sums)

    def renamed(env: LocalEnvironment) -> DataStream[Any]:
        events = env.from_collection([{"timestamp": 0, "user": 1, "n": 1}], name="events")
        windows = events.window("tumbling", size=10, key_func=lambda e: e["user"], name="sums_v2")
        return windows.aggregate(lambda total, e: total + e["n"], initial=0, name="aggregate")

    with pytest.raises(PipelineError) as raised:
        await run_to_end(environment(tmp_path / "store.db", clock), clock, renamed)
    error = raised.value.__cause__
    assert isinstance(error, CheckpointError)
    assert "'sums'" in str(error)
    assert "reset_checkpoints" in str(error)
    assert not leftover_tasks()


async def test_alignment_time_is_how_long_an_input_was_held_for_the_slower_barrier(tmp_path: Path) -> None:
    clock = ManualClock()
    env = environment(tmp_path / "store.db", clock)
    left, right = env.create_stream("left"), env.create_stream("right")

    async def slow(item: int) -> int:
        await clock.sleep(3)  # right's barrier waits behind this item, in right's own chain
        return item

    joined = left.connect(right.map(slow, name="slow")).join(condition=lambda a, b: True, name="join")
    joined.sink(print)
    async with env.running():
        await right.emit(1)
        # The item reaches the slow map at 1 s, just after epoch 1's barriers (no wait); epoch
        # 2's come at 2 s, left's at once, right's behind the item, once the map returns at 4 s.
        await advance_then_complete(env, clock, seconds=4, epochs=2)
        assert env.metrics().checkpoints["alignment"] == 2.0


class RecordingStore(SqliteStore):
    """The SQLite store, recording the state entries each commit was given, decoded."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits: list[dict[str, dict[Any, bool]]] = []

    async def commit(self, epoch: int, states: Any, positions: Any, sinks: Any) -> None:
        loads = SAGE_CODEC.loads
        self.commits.append(
            {
                name: {loads(key): value is not None for key, value in entries.items()}
                for name, entries in states.items()
            }
        )
        await super().commit(epoch, states, positions, sinks)


async def taken_in(env: LocalEnvironment, name: str, items: int) -> None:
    """Wait (really: the graph runs on) until operator ``name`` has taken ``items`` items in."""
    for _ in range(1000):
        if env.metrics().operators[name].items_in >= items:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} took {env.metrics().operators[name].items_in} items, not {items}")


async def test_an_epoch_writes_the_window_keys_that_changed_not_all_of_them(tmp_path: Path) -> None:
    clock = ManualClock()
    store = RecordingStore(tmp_path / "store.db")
    env = LocalEnvironment("job", checkpoints=store, checkpoint_interval=1.0, clock=clock, batch_size=64)
    events = env.create_stream("events")
    windows = events.window("tumbling", size=100, key_func=lambda e: e["k"], name="sums")
    windows.aggregate(lambda total, e: total + e["n"], initial=0, name="total").sink(lambda _: None)
    async with env.running():
        for k in range(500):
            await events.emit({"timestamp": 1.0, "k": k, "n": 1})
        await taken_in(env, "sums", 500)
        await advance_then_complete(env, clock, seconds=1, epochs=1)
        await events.emit({"timestamp": 2.0, "k": 7, "n": 5})
        await events.emit({"timestamp": 3.0, "k": 499, "n": 5})
        await taken_in(env, "sums", 502)
        await advance_then_complete(env, clock, seconds=1, epochs=2)
        await advance_then_complete(env, clock, seconds=1, epochs=3)  # nothing moved: nothing written
        await events.close()
    first, second, last = store.commits
    assert {key for key in first["sums"] if isinstance(key, tuple) and key[0] == "key"} == {
        ("key", k) for k in range(500)
    }
    changed = {key for key in second["sums"] if isinstance(key, tuple) and key[0] == "key"}
    assert changed == {("key", 7), ("key", 499)}
    assert all(second["sums"].values())  # written, none deleted
    # The end: every window fired, so every key goes; the run's last epoch says so.
    assert {key for key, written in last["sums"].items() if not written} >= {("key", k) for k in range(500)}
    assert env.metrics().checkpoints["committed"] == 3


async def test_no_epoch_starts_while_the_last_is_on_its_way_and_the_next_waits_an_interval(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    env = environment(tmp_path / "store.db", clock)
    reached, release = asyncio.Event(), asyncio.Event()

    async def held(x: int) -> int:
        if x == 1:
            reached.set()
            await release.wait()
        return x

    events = env.create_stream("events")
    got: list[int] = []
    events.map(held, name="held").sink(got.append)
    async with env.running():
        await advance_then_complete(env, clock, seconds=1, epochs=1)
        await events.emit(1)
        await reached.wait()
        for _ in range(4):  # epoch 2 starts, its barrier waits behind item 1: no epoch 3, 4 or 5
            await clock.advance(1.0)
        release.set()
        await advance_then_complete(env, clock, seconds=0, epochs=2)
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert env.metrics().checkpoints["completed"] == 2  # the due epochs were not queued up
        await advance_then_complete(env, clock, seconds=1, epochs=3)  # an interval after it
        assert env.metrics().checkpoints["completed"] == 3
        await events.close()
    assert got == [1]
