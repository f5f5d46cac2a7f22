"""Session windows in processing time through a whole graph with checkpoints: restored after a
crash, a session goes on from what it held and ends as in a run without one."""

from __future__ import annotations

import asyncio
import operator
from pathlib import Path
from typing import Any

import pytest

from sage_streams import DataStream, LocalEnvironment
from sage_streams.testing import ManualClock, leftover_tasks


class Crash(Exception):
    """Raised in the block of ``env.running()``: the graph is cancelled, as by a kill."""


def job(store: Path, clock: ManualClock) -> tuple[LocalEnvironment, DataStream[Any], list[Any]]:
    """Clicks counted per user in sessions of a 3 s gap in processing time, checkpointed every
    second: the environment, its push stream of clicks and the list its rows go to."""
    env = LocalEnvironment("visits", checkpoints=store, checkpoint_interval=1.0, clock=clock)
    clicks = env.create_stream("clicks")
    windows = clicks.window(
        "session", timeout=3, time="processing", key_func=lambda c: c["user"], name="visits"
    )
    counts = windows.aggregate(lambda n, c: n + 1, initial=0, merge=operator.add, name="count")
    rows: list[Any] = []
    counts.map(lambda a: (a.key, a.start_time, a.end_time, a.value), name="rows").sink(rows.append)
    return env, clicks, rows


async def click(clicks: DataStream[Any], clock: ManualClock) -> None:
    """A click, seen by the window operator now: its time is when the operator sees it."""
    await clicks.emit({"user": "ana"})
    await clock.advance(0)


async def until_the_checkpoint(env: LocalEnvironment, clicks: DataStream[Any], clock: ManualClock) -> None:
    """Clicks at 1000 and 1000.5, then the clock at 1001, where epoch 1 commits (the store
    commits on its own thread: waited for, not the clock)."""
    await click(clicks, clock)
    await clock.advance(0.5)
    await click(clicks, clock)
    await clock.advance(0.5)
    for _ in range(1000):
        if env.metrics().checkpoints.get("committed", 0) >= 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("epoch 1 did not commit")


async def after_the_checkpoint(clicks: DataStream[Any], clock: ManualClock) -> None:
    """A click at 1001.5, then five seconds on the clock: past the session's end."""
    await click(clicks, clock)
    for _ in range(5):
        await clock.advance(1.0)


async def test_a_processing_time_session_resumes_across_a_crash(tmp_path: Path) -> None:
    """Clicks at 1000 and 1000.5, a checkpoint at 1001, a crash; restarted at 1001.5 (the same
    wall clock), a click then: one session [1000, 1004.5) of 3 clicks, as without the crash."""
    clock = ManualClock(start=1000.0)
    env, clicks, whole = job(tmp_path / "whole.db", clock)
    async with env.running():
        await until_the_checkpoint(env, clicks, clock)
        await clock.advance(0.5)
        await after_the_checkpoint(clicks, clock)
    assert whole == [("ana", 1000.0, 1004.5, 3)]

    clock = ManualClock(start=1000.0)
    env, clicks, before = job(tmp_path / "cut.db", clock)
    with pytest.raises(Crash):
        async with env.running():
            await until_the_checkpoint(env, clicks, clock)
            raise Crash
    clock = ManualClock(start=1001.5)
    env, clicks, after = job(tmp_path / "cut.db", clock)
    async with env.running():
        await after_the_checkpoint(clicks, clock)
    assert (before, after) == ([], whole)
    assert not leftover_tasks()
