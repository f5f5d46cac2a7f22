"""The worker thread of a store, a sink or a durable log: calls in order on one thread, closed
from a task or, without waiting, from a loop callback, and joined either way."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sage_streams.checkpoint._worker import Worker
from sage_streams.errors import CheckpointError


def workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("sage-test")]


async def test_calls_and_submits_run_in_order_on_one_thread_joined_by_close() -> None:
    worker = Worker("sage-test", "the test")
    ran: list[tuple[int, str]] = []

    def job(number: int) -> int:
        ran.append((number, threading.current_thread().name))
        return number * 2

    submitted = [worker.submit(job, n) for n in range(5)]  # no task needed, as in a callback
    assert await worker.call(job, 5) == 10
    assert [await future for future in submitted] == [0, 2, 4, 6, 8]
    assert [number for number, _ in ran] == list(range(6))
    assert len({name for _, name in ran}) == 1
    assert len(workers()) == 1
    closed: list[str] = []
    await worker.close(lambda: closed.append(threading.current_thread().name))
    assert closed == [ran[0][1]]
    assert not workers()


async def test_close_nowait_from_a_callback_then_close_joins_it_and_calls_are_refused() -> None:
    worker = Worker("sage-test", "the test", CheckpointError)
    await worker.call(lambda: None)
    closed: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_soon(worker.close_nowait, lambda: closed.append("closed"))
    await asyncio.sleep(0)
    with pytest.raises(CheckpointError, match="the test is closed"):
        worker.submit(lambda: None)
    await worker.close(lambda: closed.append("again"))  # only joins
    assert closed == ["closed"]
    assert not workers()
    await worker.close(lambda: None)  # and again: nothing


async def test_a_worker_never_started_closes_without_a_thread() -> None:
    worker = Worker("sage-test", "the test")
    worker.close_nowait(lambda: None)
    await worker.close(lambda: None)
    assert not workers()
