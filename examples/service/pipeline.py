"""The service's graph: events joined with their user's region, counted per region in
one-minute event-time windows, with a running total per region.

``POST /events`` emits into the push stream ``events``; two :class:`~sage_streams.LatestView`
sinks hold what ``GET /stats`` shows: the latest fired window of each region, and each region's
total over every fired window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sage_streams import DataStream, LatestView, LocalEnvironment, StreamState, WindowAggregate

USERS = [{"user": f"u{n}", "region": ("eu", "us", "apac")[n % 3]} for n in range(9)]
"""The table events are joined with: user ``uN`` lives in one of three regions."""


@dataclass
class Pipeline:
    """The environment, the push stream handlers feed, and the views they read."""

    env: LocalEnvironment
    events: DataStream[dict[str, Any]]
    windows: LatestView[WindowAggregate]
    totals: LatestView[tuple[str, int]]

    def stats(self) -> dict[str, Any]:
        """What the views hold now: each a complete result of fired windows, never a partial one."""
        totals = {region: total for region, total in self.totals.snapshot().values()}
        windows = {
            str(region): {"start": record.start_time, "end": record.end_time, "count": record.value}
            for region, record in self.windows.snapshot().items()
        }
        return {"totals": totals, "counted": sum(totals.values()), "windows": windows}


def region_of(pair: tuple[dict[str, Any], dict[str, Any] | None]) -> dict[str, Any]:
    """An event with its user's region (``"unknown"`` for a user not in the table)."""
    event, row = pair
    return {**event, "region": "unknown" if row is None else row["region"]}


def build(name: str = "service") -> Pipeline:
    """The graph, built (it runs under ``env.running()`` in the app's lifespan)."""
    env = LocalEnvironment(name)
    events: DataStream[dict[str, Any]] = env.create_stream("events")
    users = env.from_collection(USERS, name="users")
    enriched = events.join_table(users, key_func=lambda item: item["user"], join_type="left", name="region")
    counts = (
        enriched.map(region_of, name="with_region")
        .window("tumbling", 60, key_func=lambda event: event["region"], name="minute")
        .aggregate(lambda count, _: count + 1, initial=0, name="count")
    )
    windows: LatestView[WindowAggregate] = LatestView("windows")
    counts.sink(windows, name="windows")
    running = StreamState("totals")

    def add_up(record: WindowAggregate) -> tuple[str, int]:
        return str(record.key), running.increment(record.key, record.value)

    totals: LatestView[tuple[str, int]] = LatestView("totals", key=lambda pair: pair[0])
    counts.map(add_up, name="total").sink(totals, name="totals")
    return Pipeline(env, events, windows, totals)
