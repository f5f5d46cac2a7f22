"""A graph with every kind of metric, held still mid-run, and the series its snapshot stands for.

``paused(tmp_path)`` runs a graph with a keyed event-time window (a late item), a join with a
miss, a map whose errors are retried or sent to the dead letters, a ``drop`` channel and a
``buffer`` channel in front of process functions waiting on a gate (so items are dropped and
spilled), a shared ``StreamState``, a ``block`` channel filled by a slow async sink (so its
producer waits), and checkpoints with one epoch committed. It yields the environment once
nothing can move until the gate opens, so a scrape and ``env.metrics()`` see the same numbers.

:func:`expected_series` writes out, independently of the exporters, which series a snapshot
stands for; the tests compare what the exporters publish with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sage_streams import ConnectedStreams, LocalEnvironment, MetricsSnapshot, StreamState
from sage_streams.testing import ManualClock

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""``(sample name, labels) -> value``."""

PIPELINE = "shop"
DROP_EDGES = {"burst->dropper[0]", "ticks->dropper[1]"}
"""The input channels of the operator under ``configure_backpressure("drop")``."""

ISSUE_METRICS = {
    "sage_records_in_total",
    "sage_records_out_total",
    "sage_errors_total",
    "sage_retries_total",
    "sage_dead_letters_total",
    "sage_channel_depth",
    "sage_channel_capacity",
    "sage_channel_blocked_seconds_total",
    "sage_dropped_total",
    "sage_spilled_total",
    "sage_watermark_seconds",
    "sage_watermark_lag_seconds",
    "sage_late_records_total",
    "sage_windows_open",
    "sage_join_hit_ratio",
    "sage_state_bytes",
    "sage_checkpoint_duration_seconds",
    "sage_checkpoint_bytes",
    "sage_checkpoint_epoch",
    "sage_restore_duration_seconds",
    "sage_restarts_total",
}
"""Every metric issue 18 names."""


def parse(event: dict[str, Any]) -> dict[str, Any]:
    """Fails once for a ``flaky`` event (retried), always for a ``bad`` one (a dead letter)."""
    if event.get("bad"):
        raise ValueError("bad event")
    if event.pop("flaky", False):
        raise ConnectionError("flaky")
    return event


def decide(stream: str, error: Exception, context: Any) -> str:
    return "retry" if isinstance(error, ConnectionError) else "continue"


async def until(condition: Any, what: str) -> None:
    """Let the loop run until ``condition()`` holds (a few seconds at most)."""
    for _ in range(5_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def settle(env: LocalEnvironment) -> None:
    """Yield until two snapshots a few hundred steps apart agree: nothing moves any more."""
    previous = None
    for _ in range(200):
        for _ in range(50):
            await asyncio.sleep(0)
        now = still(env.metrics())
        if now == previous:
            return
        previous = now
    raise AssertionError("the graph never came to rest")


def still(snapshot: MetricsSnapshot) -> MetricsSnapshot:
    """The snapshot without what moves with time alone (elapsed, rates)."""
    from dataclasses import replace

    operators = {name: replace(op, rate=0.0) for name, op in snapshot.operators.items()}
    return replace(snapshot, operators=operators, elapsed=0.0)


@contextlib.asynccontextmanager
async def paused(tmp_path: Path) -> AsyncIterator[LocalEnvironment]:
    clock = ManualClock()
    env = LocalEnvironment(
        PIPELINE, buffer_size=4, batch_size=2, clock=clock, checkpoints=tmp_path / "checkpoints.db"
    )
    gate = asyncio.Event()
    sums: list[Any] = []
    dead: list[Any] = []
    events = env.create_stream("events")
    parsed = events.map(parse, name="parse").on_error(decide, max_retries=3)
    parsed.errors().sink(dead.append, name="dead")
    windowed = parsed.window(
        "tumbling", size=10, key_func=lambda e: e["user"], timestamp="ts", name="per_user"
    )
    windowed.aggregate(lambda total, e: total + e["v"], initial=0, name="sums").sink(
        sums.append, name="sums_out"
    )
    profiles = env.from_collection([{"user": 1, "name": "a"}, {"user": 2, "name": "b"}], name="profiles")
    joined = ConnectedStreams([parsed, profiles]).join(key_func=lambda item: item["user"], name="enrich")
    joined.sink(lambda pair: None, name="enriched")

    held = StreamState("held")

    async def hold(readers: Any, state: StreamState) -> list[Any]:
        state.increment("calls")
        await gate.wait()
        return [item for reader in readers for item in reader.read_all()]

    burst, ticks = env.create_stream("burst"), env.create_stream("ticks")
    dropping = ConnectedStreams([burst, ticks], state=held).configure_backpressure("drop", buffer_size=2)
    dropping.process(hold, name="dropper").sink(lambda item: None, name="dropped_out")
    spill, spill_ticks = env.create_stream("spill"), env.create_stream("spill_ticks")
    spilling = ConnectedStreams([spill, spill_ticks]).configure_backpressure("buffer", buffer_size=2)
    spilling.process(hold, name="spiller").sink(lambda item: None, name="spilled_out")

    async def slowly(item: Any) -> None:
        await gate.wait()

    slow = env.create_stream("slow")
    slow.map(lambda x: x, name="slow_map").sink(slowly, concurrency=2, name="slow_sink")

    async with env.running():
        for user, ts, v, extra in [
            (1, 1.0, 5, {}),
            (1, 2.0, 7, {"flaky": True}),
            (2, 3.0, 1, {}),
            (3, 4.0, 2, {}),
        ]:
            await events.emit({"user": user, "ts": ts, "v": v, **extra})
        await events.emit({"user": 1, "ts": 5.0, "v": 0, "bad": True})
        await events.emit({"user": 1, "ts": 15.0, "v": 3})
        await until(lambda: len(sums) == 3, "the first windows fire")
        await events.emit({"user": 2, "ts": 6.0, "v": 9})  # behind the watermark of 15: late
        await settle(env)
        await clock.advance(1.0)  # the first checkpoint
        await until(lambda: env.metrics().checkpoints.get("epoch") == 1.0, "epoch 1 commits")
        for x in range(12):
            await burst.emit(x)
            await spill.emit(x)
        await ticks.emit(0)
        await spill_ticks.emit(0)

        async def feed_slowly() -> None:
            for x in range(20):  # more than the channels hold: the last emits wait for the gate
                await slow.emit(x)

        feeding = asyncio.create_task(feed_slowly())
        try:
            await until(lambda: env.metrics().channels["burst->dropper[0]"].dropped > 0, "drops")
            await until(lambda: env.metrics().channels["spill->spiller[0]"].spilled > 0, "spills")
            await until(lambda: env.metrics().channels["slow_map->slow_sink"].depth >= 4, "a full channel")
            await settle(env)
            yield env
        finally:
            gate.set()
            await feeding


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset({"pipeline": PIPELINE, **pairs}.items())


def expected_series(snapshot: MetricsSnapshot) -> Series:
    """The series the exporters must publish for ``snapshot`` of the scene's graph, written
    out from the issue's list (a second spelling of the mapping, not the exporters' own)."""
    series: Series = {}
    for name, op in snapshot.operators.items():
        series["sage_records_in_total", labels(operator=name)] = op.items_in
        series["sage_records_out_total", labels(operator=name)] = op.items_out
        series["sage_errors_total", labels(operator=name, kind=op.kind)] = op.errors
        series["sage_retries_total", labels(operator=name)] = op.retries
        series["sage_dead_letters_total", labels(operator=name)] = op.dead_letters
        details = op.details
        if "watermark" in details and math.isfinite(details["watermark"]):
            series["sage_watermark_seconds", labels(operator=name, input="")] = details["watermark"]
        if "watermark_lag" in details:
            series["sage_watermark_lag_seconds", labels(operator=name, input="")] = details["watermark_lag"]
        if "late_items" in details:
            series["sage_late_records_total", labels(operator=name)] = details["late_items"]
        if "open_windows" in details:
            series["sage_windows_open", labels(operator=name)] = details["open_windows"]
        if "hit_rate" in details:
            series["sage_join_hit_ratio", labels(operator=name)] = details["hit_rate"]
    for edge, stats in snapshot.channels.items():
        series["sage_channel_depth", labels(edge=edge)] = stats.depth
        series["sage_channel_capacity", labels(edge=edge)] = stats.capacity
        series["sage_channel_peak_depth", labels(edge=edge)] = stats.peak
        series["sage_channel_blocked_seconds_total", labels(edge=edge)] = stats.blocked_seconds
        reason = "drop" if edge in DROP_EDGES else "error_policy"
        series["sage_dropped_total", labels(edge=edge, reason=reason)] = stats.dropped
        series["sage_spilled_total", labels(edge=edge)] = stats.spilled
        series["sage_channel_overflow", labels(edge=edge)] = stats.overflow
    for state, size in snapshot.states.items():
        series["sage_state_bytes", labels(state=state)] = size
    checkpoints = snapshot.checkpoints
    series["sage_checkpoint_epoch", labels()] = checkpoints["epoch"]
    series["sage_checkpoint_duration_seconds", labels()] = checkpoints["duration"]
    series["sage_checkpoint_bytes", labels()] = checkpoints["bytes"]
    series["sage_checkpoints_committed_total", labels()] = checkpoints["committed"]
    series["sage_checkpoint_alignment_seconds", labels()] = checkpoints["alignment"]
    series["sage_restore_duration_seconds", labels()] = checkpoints["restore_duration"]
    series["sage_restarts_total", labels()] = snapshot.restarts
    return series


def check_scene(snapshot: MetricsSnapshot) -> None:
    """The scene shows what it is for: each kind of metric is non-trivial somewhere."""
    ops, channels = snapshot.operators, snapshot.channels
    assert (ops["parse"].errors, ops["parse"].retries, ops["parse"].dead_letters) == (2, 1, 1)
    assert ops["per_user"].details["late_items"] == 1
    assert ops["per_user"].details["watermark"] == 15.0
    assert ops["per_user"].details["open_windows"] == 1
    assert 0 < ops["enrich"].details["hit_rate"] < 1  # user 3 has no profile
    assert channels["burst->dropper[0]"].dropped > 0
    assert channels["spill->spiller[0]"].spilled > 0
    assert channels["slow_map->slow_sink"].depth >= channels["slow_map->slow_sink"].capacity == 4
    assert snapshot.states["held"] > 0
    assert snapshot.checkpoints["epoch"] == 1.0
    assert snapshot.checkpoints["bytes"] > 0
