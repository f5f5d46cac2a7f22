"""A blocking producer in a thread feeding a running graph: ``emit_threadsafe`` and
``close_threadsafe`` hand each item to the graph's event loop and return a
``concurrent.futures.Future``; waiting on it holds the thread back while the buffer is full.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sage_streams import DataStream, LocalEnvironment


def read_sensor(stream: DataStream[Any], readings: list[float]) -> None:
    """A synchronous client's loop, as a thread runs it: one reading at a time."""
    for reading in readings:
        stream.emit_threadsafe(reading).result()
    stream.close_threadsafe().result()


async def main() -> None:
    env = LocalEnvironment(buffer_size=2)
    readings = env.create_stream("readings")
    fahrenheit = readings.map(lambda celsius: round(celsius * 9 / 5 + 32, 1))
    async with env.running():
        converted = asyncio.ensure_future(fahrenheit.collect())
        producer = threading.Thread(target=read_sensor, args=(readings, [21.5, 22.0, 19.8, 23.1]))
        producer.start()
        print("fahrenheit:", await converted)
        await asyncio.to_thread(producer.join)


if __name__ == "__main__":
    asyncio.run(main())
