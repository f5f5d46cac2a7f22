"""Seed example "Stream Join": enrich user activity with user profiles.

As on the seed page, with ``await`` where sage_streams is asynchronous. Profiles and activity
arrive on two push streams; the inner join on ``user_id`` pairs each activity with its profile
whichever arrives first. The second half shows the seed's custom join condition with an outer
join: pairs whose timestamps are equal, and unmatched items of both sides with ``None``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import LocalEnvironment, StreamState
from sage_streams.connected_streams import ConnectedStreams

PROFILES = [
    {"user_id": 1, "name": "Ana", "tier": "gold", "location": "Lisbon"},
    {"user_id": 2, "name": "Bo", "tier": "free", "location": "Oslo"},
]
ACTIVITY = [
    {"user_id": 1, "action": "view", "page": "/shoes"},
    {"user_id": 2, "action": "view", "page": "/hats"},
    {"user_id": 1, "action": "buy", "page": "/shoes/42"},
    {"user_id": 3, "action": "view", "page": "/"},  # no profile: an inner join leaves it out
]


async def enrich() -> None:
    env = LocalEnvironment()
    # User activity and user profile streams
    activity_stream = env.create_stream("user_activity")
    profile_stream = env.create_stream("user_profiles")

    connected = ConnectedStreams([activity_stream, profile_stream])

    # Join on user_id
    def get_user_id(item: dict[str, Any]) -> Any:
        return item.get("user_id")

    joined = connected.join(join_type="inner", key_func=get_user_id)

    def enrich_activity(
        joined_data: list[tuple[dict[str, Any], dict[str, Any]]], state: StreamState
    ) -> list[Any]:
        """Enrich activity with profile data"""
        enriched = []
        for activity, profile in joined_data:
            enriched_activity = activity.copy()
            enriched_activity.update(
                {
                    "user_name": profile.get("name"),
                    "user_tier": profile.get("tier"),
                    "user_location": profile.get("location"),
                }
            )
            enriched.append(enriched_activity)
        return enriched

    enriched_stream = joined.process(enrich_activity)

    async def feed() -> None:
        for profile in PROFILES:
            await profile_stream.emit(profile)
        for event in ACTIVITY:
            await activity_stream.emit(event)
        await profile_stream.close()
        await activity_stream.close()

    enriched, _ = await asyncio.gather(enriched_stream.collect(), feed())
    # A join emits a pair when its second item arrives: sort for a stable printout.
    for event in sorted(enriched, key=lambda e: (e["user_id"], e["page"])):
        who = f"{event['user_name']} ({event['user_tier']}, {event['user_location']})"
        print(f"{who} {event['action']} {event['page']}")


async def outer_condition_join() -> None:
    env = LocalEnvironment()
    left = env.from_collection([{"timestamp": 1, "v": "a"}, {"timestamp": 2, "v": "b"}], name="left")
    right = env.from_collection([{"timestamp": 2, "v": "x"}, {"timestamp": 3, "v": "y"}], name="right")
    connected = ConnectedStreams([left, right])

    # Custom join condition
    def join_condition(item1: dict[str, Any], item2: dict[str, Any]) -> bool:
        return bool(item1["timestamp"] == item2["timestamp"])

    joined = connected.join(join_type="outer", condition=join_condition)
    for pair in sorted(await joined.collect(), key=lambda p: [x["v"] if x else "" for x in p]):
        print("outer:", tuple(item["v"] if item else None for item in pair))


async def main() -> None:
    await enrich()
    await outer_condition_join()


if __name__ == "__main__":
    asyncio.run(main())
