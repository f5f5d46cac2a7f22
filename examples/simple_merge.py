"""Seed example "Simple Stream Merge": two sensor feeds merged into one stream.

As on the seed page, with ``await`` where sage_streams is asynchronous: the feeds are pushed with
``await stream.emit(...)`` and the merged stream is read with ``await result_stream.collect()``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import LocalEnvironment
from sage_streams.connected_streams import ConnectedStreams

KITCHEN = [{"sensor": "t1", "celsius": 21.5, "at": 0}, {"sensor": "t1", "celsius": 21.9, "at": 60}]
GARAGE = [
    {"sensor": "t7", "celsius": 9.0, "at": 0},
    {"sensor": "t7", "celsius": 8.4, "at": 60},
    {"sensor": "t7", "celsius": 8.1, "at": 120},
]


async def main() -> None:
    # Setup
    env = LocalEnvironment()
    stream1 = env.create_stream("data1")
    stream2 = env.create_stream("data2")

    # Connect and merge
    connected = ConnectedStreams([stream1, stream2])

    def merge_data(streams: list[Any], state: Any) -> list[dict[str, Any]]:
        merged = []
        for stream in streams:
            while stream.has_data():
                item = stream.read()
                item["source"] = stream.name
                merged.append(item)
        return merged

    result_stream = connected.process(merge_data)

    async def feed(stream: Any, readings: list[dict[str, Any]]) -> None:
        for reading in readings:
            await stream.emit(reading)
        await stream.close()

    merged, _, _ = await asyncio.gather(
        result_stream.collect(), feed(stream1, KITCHEN), feed(stream2, GARAGE)
    )
    for item in sorted(merged, key=lambda r: (r["at"], r["sensor"])):
        print(f"{item['at']:>4}s {item['source']}: {item['sensor']} {item['celsius']:.1f} C")
    print(f"merged {len(merged)} readings from {len(KITCHEN)} + {len(GARAGE)}")


if __name__ == "__main__":
    asyncio.run(main())
