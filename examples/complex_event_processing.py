"""Seed example "Complex Event Processing": a login followed by a purchase, across two streams.

The seed's ``event_processor`` runs as written. It is called whenever events have arrived, with
everything that has arrived on both streams since the last call, so it sees the web and the app
events together: Bo logs in on the web and buys in the app. (The seed's pattern needs the
purchase to follow the login directly in time order, with no other event between.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import LocalEnvironment
from sage_streams.connected_streams import ConnectedStreams, StreamState

WEB_EVENTS = [
    {"type": "login", "user_id": "ana", "timestamp": 100.0},
    {"type": "purchase", "user_id": "ana", "timestamp": 103.0, "amount": 59.9},
    {"type": "login", "user_id": "bo", "timestamp": 140.0},
]
APP_EVENTS = [
    {"type": "login", "user_id": "chen", "timestamp": 105.0},
    {"type": "purchase", "user_id": "chen", "timestamp": 110.0, "amount": 12.0},
    {"type": "purchase", "user_id": "bo", "timestamp": 150.0, "amount": 230.0},
]


def event_processor(streams: list[Any], state: StreamState) -> list[dict[str, Any]]:
    """Process complex event patterns"""
    events = []

    # Collect events from all streams
    for stream in streams:
        while stream.has_data():
            event = stream.read()
            events.append(event)

    # Sort by timestamp
    events.sort(key=lambda x: x["timestamp"])

    # Detect patterns
    patterns = []
    for i in range(len(events) - 1):
        current = events[i]
        next_event = events[i + 1]

        # Example: detect login followed by purchase
        if (
            current["type"] == "login"
            and next_event["type"] == "purchase"
            and current["user_id"] == next_event["user_id"]
        ):
            patterns.append(
                {
                    "pattern": "login_purchase",
                    "user_id": current["user_id"],
                    "login_time": current["timestamp"],
                    "purchase_time": next_event["timestamp"],
                    "purchase_amount": next_event["amount"],
                }
            )

    return patterns


async def main() -> None:
    env = LocalEnvironment()
    web = env.from_collection(WEB_EVENTS, name="web")
    app = env.from_collection(APP_EVENTS, name="app")
    connected = ConnectedStreams([web, app])

    result = connected.process(event_processor)

    for pattern in sorted(await result.collect(), key=lambda p: p["login_time"]):
        print(
            f"{pattern['user_id']}: login at {pattern['login_time']:.0f}, "
            f"purchase {pattern['purchase_amount']:.2f} at {pattern['purchase_time']:.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
