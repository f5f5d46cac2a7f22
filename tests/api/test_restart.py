"""A graph in a service: ``running(drain_timeout=..., restart=..., on_failure=...)`` and
``env.status``, with time moved by a manual clock."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from sage_streams import (
    DrainTimeout,
    Lifecycle,
    LocalEnvironment,
    PipelineError,
    RestartPolicy,
    Status,
    StreamError,
)
from sage_streams.testing import ManualClock, leftover_tasks


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a bounded number of steps, never a sleep)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def failing_on(bad: set[int]) -> Callable[[int], int]:
    """A map that fails on each value of ``bad`` the first time it sees it."""

    def check(x: int) -> int:
        if x in bad:
            bad.discard(x)
            raise ValueError(f"bad {x}")
        return x

    return check


def graph(clock: ManualClock, bad: set[int], seen: list[int]) -> tuple[LocalEnvironment, Any]:
    env = LocalEnvironment("svc", clock=clock, batch_size=1, buffer_size=4)
    numbers = env.create_stream("numbers")
    numbers.map(failing_on(bad), name="check").sink(seen.append, name="keep")
    return env, numbers


# -- drain_timeout ----------------------------------------------------------------------------


async def test_a_graph_that_drains_in_time_ends_finished() -> None:
    clock = ManualClock()
    seen: list[int] = []
    env, numbers = graph(clock, set(), seen)
    async with env.running(drain_timeout=5):
        for n in range(3):
            await numbers.emit(n)
    assert seen == [0, 1, 2]
    assert env.status == Status("finished", None, 0, 0.0, 0.0)


async def test_a_drain_past_its_timeout_is_cancelled_and_counts_what_is_left() -> None:
    clock = ManualClock()
    env = LocalEnvironment("svc", clock=clock, batch_size=1, buffer_size=4)
    numbers = env.create_stream("numbers")
    arrived: list[int] = []

    async def slow(x: int) -> None:
        arrived.append(x)
        await asyncio.Event().wait()  # a sink that never catches up

    numbers.map(lambda x: x, name="same").sink(slow, name="slow")

    async def serve() -> None:
        async with env.running(drain_timeout=30):
            for n in range(5):
                await numbers.emit(n)

    block = asyncio.ensure_future(serve())
    await until(lambda: arrived == [0] and env.metrics().channels["numbers.inbox"].depth == 4)
    await clock.advance(29)
    assert not block.done()  # still draining
    await clock.advance(1)
    with pytest.raises(DrainTimeout) as info:
        await block
    # 1 item in the sink (not counted: inside an operator), 4 queued in the inbox.
    assert info.value.undelivered == {"numbers.inbox": 4}
    assert info.value.total == 4
    assert "had not drained 30 s after its running() block" in str(info.value)
    assert "4 item(s) undelivered (numbers.inbox: 4)" in str(info.value)
    assert isinstance(info.value, PipelineError)
    assert arrived == [0]
    assert env.lifecycle is Lifecycle.CANCELLED
    assert env.status.state == "cancelled"
    assert env.status.error is info.value
    assert not env.status.healthy
    assert pickle.loads(pickle.dumps(info.value)).undelivered == info.value.undelivered
    assert not leftover_tasks()


async def test_without_a_drain_timeout_the_block_waits_for_the_drain() -> None:
    clock = ManualClock()
    env = LocalEnvironment("svc", clock=clock, batch_size=1)
    numbers = env.create_stream("numbers")
    release = asyncio.Event()
    written: list[int] = []
    arrived: list[int] = []

    async def slow(x: int) -> None:
        arrived.append(x)
        await release.wait()
        written.append(x)

    numbers.sink(slow, name="slow")

    async def serve() -> None:
        async with env.running():
            for n in range(3):
                await numbers.emit(n)

    block = asyncio.ensure_future(serve())
    await until(lambda: arrived == [0])
    await clock.advance(3600)
    assert not block.done()
    release.set()
    await block
    assert written == [0, 1, 2]


# -- on_failure -------------------------------------------------------------------------------


async def test_on_failure_is_told_once_and_the_block_goes_on_until_it_exits() -> None:
    clock = ManualClock()
    seen: list[int] = []
    env, numbers = graph(clock, {2}, seen)
    failures: list[PipelineError] = []
    with pytest.raises(PipelineError) as info:
        async with env.running(on_failure=failures.append):
            for n in range(3):
                await numbers.emit(n)
            await until(lambda: bool(failures))
            assert env.status.state == "failed"  # the host still runs: it can report this
            with pytest.raises(StreamError, match="its graph has stopped reading it") as emitted:
                await numbers.emit(3)
            assert emitted.value.__cause__ is failures[0].__cause__
            with pytest.raises(StreamError, match="its graph has stopped reading it"):
                await numbers.emit(4)
            await clock.advance(60)  # serving goes on; the failure is not raised into the block
    assert failures == [info.value]
    assert info.value.operator == "check"
    assert isinstance(info.value.__cause__, ValueError)
    assert seen == [0, 1]
    status = env.status
    assert (status.state, status.error, status.restarts, status.healthy) == ("failed", info.value, 0, False)
    assert status.started_at == 0.0
    assert status.ended_at == 0.0


async def test_an_async_on_failure_is_awaited() -> None:
    clock = ManualClock()
    env, numbers = graph(clock, {0}, [])
    told: list[str] = []

    async def report(error: PipelineError) -> None:
        await asyncio.sleep(0)
        told.append(str(error.operator))

    with pytest.raises(PipelineError):
        async with env.running(on_failure=report):
            await numbers.emit(0)
            await until(lambda: bool(told))
    assert told == ["check"]


async def test_a_block_error_caused_by_the_failure_is_part_of_it() -> None:
    env, numbers = graph(ManualClock(), {0}, [])
    failures: list[PipelineError] = []
    with pytest.raises(PipelineError) as info:
        async with env.running(on_failure=failures.append):
            await numbers.emit(0)
            await until(lambda: bool(failures))
            await numbers.emit(1)  # raises StreamError caused by the graph's error
    assert type(info.value) is PipelineError
    assert failures == [info.value]


# -- restart ----------------------------------------------------------------------------------


async def test_a_failed_run_is_restarted_after_its_backoff_and_counted() -> None:
    clock = ManualClock()
    seen: list[int] = []
    env, numbers = graph(clock, {2, 5}, seen)
    failures: list[PipelineError] = []
    policy = RestartPolicy(2, backoff=1.0, factor=3.0)
    async with env.running(restart=policy, on_failure=failures.append):
        assert env.status.state == "running"
        for n in range(3):
            await numbers.emit(n)
        await until(lambda: env.status.state == "restarting")
        first = env.status.error
        assert isinstance(first, PipelineError)
        assert str(first.__cause__) == "bad 2"
        assert env.status.restarts == 1
        assert env.metrics().restarts == 1
        assert not env.status.healthy
        await clock.advance(0.5)
        assert env.status.state == "restarting"
        await clock.advance(0.5)
        assert env.status.state == "running"
        assert env.lifecycle is Lifecycle.RUNNING
        assert env.status.error is first  # the last failure, kept for the health check
        for n in range(3, 7):
            await numbers.emit(n)
        await until(lambda: env.status.state == "restarting")
        assert env.status.restarts == 2
        await clock.advance(2.9)
        assert env.status.state == "restarting"
        await clock.advance(0.1)  # 1 s * 3
        assert env.status.state == "running"
        await numbers.emit(7)
        await numbers.emit(8)
    assert failures == []
    assert seen == [0, 1, 3, 4, 7, 8]  # 6 was queued in the inbox of the run that failed on 5
    assert env.status.state == "finished"
    assert env.metrics().restarts == 2
    assert env.metrics().operators["keep"].items_in == 2  # the last run's counts


async def test_the_failure_after_the_last_restart_is_final() -> None:
    clock = ManualClock()
    seen: list[int] = []
    env, numbers = graph(clock, {1, 2, 3}, seen)
    failures: list[PipelineError] = []
    with pytest.raises(PipelineError) as info:
        async with env.running(restart=RestartPolicy(2, backoff=1.0, factor=1.0), on_failure=failures.append):
            for n in (1, 2, 3):
                await until(lambda: env.status.state == "running")
                await numbers.emit(n)
                await until(lambda: env.status.state != "running")
                await clock.advance(1)
            assert env.status.state == "failed"
    assert failures == [info.value]
    assert str(info.value.__cause__) == "bad 3"
    assert env.status.restarts == 2
    assert env.metrics().restarts == 2
    assert seen == []
    assert not leftover_tasks()


async def test_without_on_failure_the_final_failure_cancels_the_block() -> None:
    clock = ManualClock()
    env, numbers = graph(clock, {1}, [])
    reached: list[str] = []
    with pytest.raises(PipelineError) as info:
        async with env.running(restart=RestartPolicy(0)):
            await numbers.emit(1)
            await clock.sleep(10)  # cancelled by the failure
            reached.append("end")
    assert reached == []
    assert info.value.operator == "check"


async def test_emits_during_the_restart_wait_are_read_by_the_next_run() -> None:
    clock = ManualClock()
    seen: list[int] = []
    env, numbers = graph(clock, {0}, seen)  # buffer_size=4
    async with env.running(restart=RestartPolicy(1, backoff=5.0)):
        await numbers.emit(0)
        await until(lambda: env.status.state == "restarting")
        for n in range(1, 5):
            await numbers.emit(n)  # fit in the new inbox
        waiting = asyncio.ensure_future(numbers.emit(5))  # the buffer is full: waits for the run
        for _ in range(50):
            await asyncio.sleep(0)
        assert not waiting.done()
        await clock.advance(5)
        await waiting
    assert seen == [1, 2, 3, 4, 5]


async def test_leaving_the_block_during_a_restart_wait_starts_the_run_and_drains_it() -> None:
    clock = ManualClock()
    seen: list[int] = []
    env, numbers = graph(clock, {0}, seen)
    async with env.running(restart=RestartPolicy(1, backoff=60.0)):
        await numbers.emit(0)
        await until(lambda: env.status.state == "restarting")
        await numbers.emit(1)
        await numbers.emit(2)
    assert seen == [1, 2]
    assert env.status.state == "finished"
    assert env.status.restarts == 1


async def test_a_restart_reads_a_list_source_again_from_its_start_without_checkpoints() -> None:
    clock = ManualClock()
    env = LocalEnvironment("svc", clock=clock, batch_size=1)
    seen: list[int] = []
    env.from_collection([1, 2, 3], name="numbers").map(failing_on({2}), name="check").sink(seen.append)
    async with env.running(restart=RestartPolicy(1, backoff=0.0)):
        await until(lambda: env.lifecycle is Lifecycle.FINISHED)
    assert seen == [1, 1, 2, 3]
    assert env.metrics().restarts == 1


# -- bad input --------------------------------------------------------------------------------


async def test_bad_arguments_are_refused_before_anything_runs() -> None:
    env, _ = graph(ManualClock(), set(), [])
    with pytest.raises(ValueError, match="drain_timeout"):
        async with env.running(drain_timeout=-1):
            pass
    with pytest.raises(TypeError, match="restart must be a RestartPolicy or None, got 3"):
        async with env.running(restart=3):  # type: ignore[arg-type]
            pass
    with pytest.raises(TypeError, match="on_failure must be callable"):
        async with env.running(on_failure="log"):  # type: ignore[arg-type]
            pass
    assert env.lifecycle is Lifecycle.BUILDING
    assert env.status == Status("idle")
    with pytest.raises(ValueError, match="max_restarts must be 0 or more, got -1"):
        RestartPolicy(-1)
    with pytest.raises(TypeError, match=r"max_restarts must be an int, got 1\.5"):
        RestartPolicy(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor must be at least 1"):
        RestartPolicy(1, factor=0.5)
    with pytest.raises(ValueError, match="backoff"):
        RestartPolicy(1, backoff=-2)


def test_the_backoff_grows_by_its_factor_up_to_its_bound() -> None:
    policy = RestartPolicy(5, backoff=0.5, factor=2.0, max_backoff=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
