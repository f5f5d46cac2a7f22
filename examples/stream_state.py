"""Seed example "StreamState usage": shared state updated by a connected operator.

As on the seed page; the state is handed to the process function of two connected streams
(checkouts from the web shop and from the app) and read after the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sage_streams import LocalEnvironment
from sage_streams.connected_streams import ConnectedStreams, StreamState

WEB = [{"order": 1, "amount": 30.0}, {"order": 2, "amount": 12.5}]
APP = [{"order": 3, "amount": 99.0}]


async def main() -> None:
    # Create shared state
    state = StreamState()

    # Store values
    state.set("counter", 0)
    state.set("last_timestamp", time.time())
    state.set("statistics", {"count": 0, "last_update": None})

    def update_stats(current_stats: dict[str, Any]) -> dict[str, Any]:
        current_stats["last_update"] = time.time()
        current_stats["count"] += 1
        return current_stats

    def count_checkouts(streams: list[Any], state: StreamState) -> None:
        for stream in streams:
            for new_event in stream:
                # Atomic operations
                state.increment("counter")
                state.append("events", {**new_event, "channel": stream.name})
                state.update("statistics", update_stats)

    env = LocalEnvironment()
    web = env.from_collection(WEB, name="web")
    app = env.from_collection(APP, name="app")
    ConnectedStreams([web, app], state=state).process(count_checkouts)
    await env.execute()

    # Retrieve values
    counter = state.get("counter", default=0)
    print(f"counter = {counter}, statistics.count = {state.get('statistics')['count']}")
    for event in sorted(state.get("events"), key=lambda e: e["order"]):
        print(f"order {event['order']} via {event['channel']}: {event['amount']:.2f}")
    print(f"keys: {', '.join(sorted(state.keys()))}")


if __name__ == "__main__":
    asyncio.run(main())
