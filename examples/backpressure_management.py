"""Seed example "Backpressure Management": a fast feed and a slow consumer.

A clickstream arrives far faster than the enrichment step can handle it. With
``configure_backpressure(strategy="block", buffer_size=1000, timeout=30)`` the feed waits whenever
1,000 clicks are queued, so memory stays bounded and nothing is dropped; the same graph with
``"drop"`` keeps up by dropping (counted), and with ``"buffer"`` the overflow spills to a temporary
SQLite file and comes back in order.

Differences from the seed: ``await`` where sage_streams is asynchronous; the strategy comment on
the seed lists "block", "drop" and "buffer", and this script runs all three.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from sage_streams import LocalEnvironment
from sage_streams.connected_streams import ConnectedStreams

CLICKS = 20_000

Strategy = Literal["block", "drop", "drop_oldest", "buffer"]


async def run(strategy: Strategy) -> None:
    env = LocalEnvironment(batch_size=250)
    clicks = env.from_collection(
        ({"user": i % 300, "page": f"/p/{i % 17}"} for i in range(CLICKS)), name="clicks"
    )
    campaigns = env.from_collection([{"campaign": "winter", "pages": 17}], name="campaigns")
    connected = ConnectedStreams([clicks, campaigns])

    # Configure backpressure
    connected.configure_backpressure(
        strategy=strategy,  # or "drop", "buffer"
        buffer_size=1000,
        timeout=30,
    )

    async def enrich(streams: list[Any], state: Any) -> list[dict[str, Any]]:
        await asyncio.sleep(0.002)  # a slow lookup per call: the consumer is the bottleneck
        clicks: list[dict[str, Any]] = [dict(click, enriched=True) for click in streams[0].read_all()]
        campaigns: list[dict[str, Any]] = streams[1].read_all()
        return clicks + campaigns

    enriched = await connected.process(enrich, name="enrich").collect()
    channel = env.metrics().channels["clicks->enrich[0]"]
    delivered = len(enriched) - 1  # the campaign record is the one item that is not a click
    print(
        f"{strategy:>6}: delivered + dropped = {CLICKS}: {delivered + channel.dropped == CLICKS}, "
        f"dropped any: {channel.dropped > 0}, peak <= 1000: {channel.peak <= 1000}, "
        f"spilled: {channel.spilled > 0}"
    )


async def main() -> None:
    strategies: tuple[Strategy, ...] = ("block", "drop", "buffer")
    for strategy in strategies:
        await run(strategy)


if __name__ == "__main__":
    asyncio.run(main())
