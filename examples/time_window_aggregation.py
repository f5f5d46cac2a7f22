"""Seed example "Time-Window Aggregation": per-minute totals over two checkout streams.

The seed's ``window_aggregator`` runs as written. Each event carries its event time in
``"timestamp"`` (seconds); windows are 60-second tumbling windows aligned to multiples of 60,
and a window fires once both streams have passed its end (the watermark is the smaller of the
two streams' latest timestamps). At the end of input the last open window fires too.

The second part computes the same totals with ``aggregate``: each event is folded into its
window's running ``(count, total)`` as it arrives, so no window keeps its events. Over two
streams a ``WindowAggregate``'s ``value`` holds one accumulator per stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import LocalEnvironment, WindowAggregate
from sage_streams.connected_streams import ConnectedStreams

WEB = [
    {"timestamp": 3.0, "value": 20.0},
    {"timestamp": 41.0, "value": 35.5},
    {"timestamp": 75.0, "value": 12.0},
    {"timestamp": 130.0, "value": 80.0},
]
APP = [
    {"timestamp": 10.0, "value": 9.5},
    {"timestamp": 62.0, "value": 44.0},
    {"timestamp": 119.0, "value": 5.0},
]


def window_aggregator(window_data: Any, state: Any) -> dict[str, Any]:
    """Aggregate data within time windows"""
    total = 0
    count = 0

    for stream_data in window_data:
        for item in stream_data:
            total += item.get("value", 0)
            count += 1

    return {
        "window_start": window_data.start_time,
        "window_end": window_data.end_time,
        "total": total,
        "average": total / count if count > 0 else 0,
        "count": count,
    }


async def main() -> None:
    env = LocalEnvironment()
    web = env.from_collection(WEB, name="web")
    app = env.from_collection(APP, name="app")
    connected = ConnectedStreams([web, app])

    # Apply windowing
    windowed = connected.window("tumbling", size=60)
    aggregated = windowed.process(window_aggregator)

    for row in await aggregated.collect():
        print(
            f"[{row['window_start']:>5.0f}, {row['window_end']:>5.0f}) "
            f"count={row['count']} total={row['total']:.2f} average={row['average']:.2f}"
        )

    # The same windows, folded as events arrive.
    env = LocalEnvironment()
    connected = ConnectedStreams([env.from_collection(WEB, name="web"), env.from_collection(APP, name="app")])
    folded = connected.window("tumbling", size=60).aggregate(count_and_sum, initial=(0, 0.0))
    for window in await folded.collect():
        print(folded_line(window))


def count_and_sum(acc: tuple[int, float], item: dict[str, Any]) -> tuple[int, float]:
    return (acc[0] + 1, acc[1] + item.get("value", 0))


def folded_line(window: WindowAggregate) -> str:
    (web_count, web_total), (app_count, app_total) = window.value
    return (
        f"[{window.start_time:>5.0f}, {window.end_time:>5.0f}) folded: "
        f"web {web_count} ({web_total:.2f}) + app {app_count} ({app_total:.2f})"
    )


if __name__ == "__main__":
    asyncio.run(main())
