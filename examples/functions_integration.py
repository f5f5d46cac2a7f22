"""Seed examples "With DataStream API" and "With Functions API".

``DataStream(name)`` makes push streams without an environment; connecting them builds one graph
(run by a default environment). A registered function builds the processing step, and is looked
up by name as another service would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import DataStream, get_function
from sage_streams.connected_streams import ConnectedStreams
from sage_streams.functions import register_function


def my_processor(streams: list[Any], state: Any) -> list[str]:
    return [f"{reader.name}:{item}" for reader in streams for item in reader]


@register_function
def connected_processor(connected_streams: ConnectedStreams) -> Any:
    return connected_streams.process(my_processor)


async def main() -> None:
    # Create individual streams
    stream1: DataStream[str] = DataStream("stream1")
    stream2: DataStream[str] = DataStream("stream2")

    # Connect them
    connected = ConnectedStreams([stream1, stream2])

    processed = get_function("connected_processor")(connected)

    async def feed() -> None:
        await stream1.emit("temperature=21")
        await stream2.emit("humidity=40")
        await stream1.emit("temperature=22")
        await stream1.close()
        await stream2.close()

    results, _ = await asyncio.gather(processed.collect(), feed())
    for line in sorted(results):
        print(line)
    print(f"ran in environment {processed.env.name!r}")


if __name__ == "__main__":
    asyncio.run(main())
