"""Enrichment: an async lookup with bounded concurrency and a timeout, then a table join.

First, each click is enriched by an async call (a stand-in for an HTTP geo service that takes
20 ms): ``concurrency=50`` keeps up to 50 calls in flight, so the twelve clicks take about one
call's time instead of twelve; results still leave in input order. One address makes the service
hang: after ``timeout=0.5`` seconds that call is cancelled and its click goes to the dead
letters (the handler says ``"continue"``), while the others go on.

Then the clicks are joined with a profile stream that keeps changing: ``join_table`` keeps only
the latest profile per user and never buffers the clicks. With ``timestamp=`` it is an
event-time temporal join: each click gets the profile version valid at its own time, whatever
order the two streams arrive in (without ``timestamp=``, the version current when the click
arrives). A profile of ``None`` deletes the user; a ``"left"`` join keeps a click without one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import DeadLetter, LocalEnvironment

CITIES = {"10.0.0.1": "Lisbon", "10.0.0.2": "Oslo", "10.0.0.3": "Rome"}
HANGS = "10.0.0.9"

CLICKS = [
    {"ts": ts, "user": user, "ip": ip}
    for ts, user, ip in [
        (1, "ana", "10.0.0.1"),
        (2, "bo", "10.0.0.2"),
        (3, "chen", "10.0.0.3"),
        (4, "ana", HANGS),
        (11, "ana", "10.0.0.1"),
        (12, "bo", "10.0.0.2"),
        (13, "chen", "10.0.0.3"),
        (14, "dee", "10.0.0.1"),
        (21, "ana", "10.0.0.1"),
        (22, "bo", "10.0.0.2"),
        (23, "chen", "10.0.0.3"),
        (24, "dee", "10.0.0.1"),
    ]
]

# The profile stream: versions over time. Ana turns gold at 10, Bo's account is deleted at 20
# (None: a tombstone), Dee signs up at 20.
PROFILES = [
    {"ts": 0, "user": "ana", "tier": "free"},
    {"ts": 0, "user": "bo", "tier": "gold"},
    {"ts": 0, "user": "chen", "tier": "free"},
    {"ts": 10, "user": "ana", "tier": "gold"},
    {"ts": 20, "user": "bo", "tier": None},
    {"ts": 20, "user": "dee", "tier": "free"},
]


async def geo_lookup(click: dict[str, Any]) -> dict[str, Any]:
    """An async service call: 20 ms, except for one address, where it hangs."""
    await asyncio.sleep(10 if click["ip"] == HANGS else 0.02)
    return {**click, "city": CITIES[click["ip"]]}


async def main() -> None:
    env = LocalEnvironment("enrichment")
    clicks = env.from_collection(CLICKS, name="clicks")
    clicks.on_error(lambda stream_id, error, context: "continue")
    located = clicks.map(geo_lookup, concurrency=50, timeout=0.5, name="geo")
    profiles = env.from_collection(PROFILES, name="profiles")
    enriched = located.join_table(
        profiles,
        key_func=lambda item: item["user"],
        join_type="left",
        value_func=lambda profile: profile if profile["tier"] else None,
        timestamp="ts",
        name="profile",
    )
    letters: list[DeadLetter] = []
    clicks.errors().sink(letters.append)

    for click, profile in await enriched.collect():
        tier = profile["tier"] if profile else "no profile"
        print(f"{click['ts']:>3} {click['user']:<5} {click['city']:<7} {tier}")
    for letter in letters:
        print(f"dead letter: {letter.item['user']} {letter.item['ip']} ({type(letter.error).__name__})")
    geo = env.metrics().operators["geo"]
    print(f"geo calls: {geo.details['completed']:.0f} completed, {geo.details['timed_out']:.0f} timed out")


if __name__ == "__main__":
    asyncio.run(main())
