"""Synchronization through the runtime: timestamp tuples with unmatched(), event barriers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sage_streams import ConnectedStreams, LocalEnvironment, PipelineError


def reading(sensor: str, ts: float) -> dict[str, Any]:
    return {"sensor": sensor, "timestamp": ts}


async def test_timestamp_sync_pairs_within_tolerance_and_the_rest_is_unmatched() -> None:
    env = LocalEnvironment()
    gps = env.from_collection([reading("gps", t) for t in (0.0, 1.0, 5.0)], name="gps")
    imu = env.from_collection([reading("imu", t) for t in (0.4, 2.9, 5.2)], name="imu")
    synced = ConnectedStreams([gps, imu]).synchronize("timestamp", tolerance=0.5)
    leftover = synced.unmatched()
    assert synced.unmatched().name == leftover.name  # one side output, however often asked
    async with env.running():
        tuples_reader = asyncio.ensure_future(synced.collect())
        unmatched_reader = asyncio.ensure_future(leftover.collect())
    tuples, unmatched = await tuples_reader, await unmatched_reader
    assert [(a["timestamp"], b["timestamp"]) for a, b in tuples] == [(0.0, 0.4), (5.0, 5.2)]
    assert sorted((u["sensor"], u["timestamp"]) for u in unmatched) == [("gps", 1.0), ("imu", 2.9)]


async def test_event_sync_emits_one_tuple_of_lists_per_marker_round() -> None:
    env = LocalEnvironment()
    a = env.from_collection([{"v": 1}, {"type": "marker"}, {"v": 2}, {"v": 3}, {"type": "marker"}], name="a")
    b = env.from_collection(
        [{"v": 10}, {"v": 11}, {"type": "marker"}, {"type": "marker"}, {"v": 12}], name="b"
    )
    synced = ConnectedStreams([a, b]).synchronize(sync_type="event", sync_event="marker")
    rounds = await synced.collect()
    values = [tuple([item["v"] for item in items] for items in round_) for round_ in rounds]
    assert values == [([1], [10, 11]), ([2, 3], []), ([], [12])]


async def test_synchronized_process_receives_lists_of_tuples() -> None:
    env = LocalEnvironment()
    a = env.from_collection([reading("a", 1.0)], name="a")
    b = env.from_collection([reading("b", 1.2)], name="b")
    synced = ConnectedStreams([a, b]).synchronize(tolerance=1.0)
    gaps = synced.process(
        lambda tuples, state: [round(y["timestamp"] - x["timestamp"], 3) for x, y in tuples]
    )
    assert await gaps.collect() == [0.2]


async def test_bad_timestamps_reach_the_error_path_with_their_item() -> None:
    env = LocalEnvironment()
    a = env.from_collection([{"timestamp": "noon"}], name="a")
    b = env.from_collection([reading("b", 1.0)], name="b")
    synced = ConnectedStreams([a, b]).synchronize(tolerance=1.0, name="align")
    with pytest.raises(
        PipelineError, match=r"operator 'align' failed on item \{'timestamp': 'noon'\}: TypeError"
    ):
        await synced.collect()


def test_invalid_synchronize_arguments_fail_when_the_graph_is_built() -> None:
    env = LocalEnvironment()
    connected = ConnectedStreams([env.from_collection([]), env.from_collection([])])
    with pytest.raises(ValueError, match="unknown sync_type 'sometimes'"):
        connected.synchronize("sometimes")
    with pytest.raises(ValueError, match="sync_event"):
        connected.synchronize("event")
