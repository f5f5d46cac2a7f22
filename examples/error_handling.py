"""Seed examples "Error Handling" (both snippets): bad readings handled, nothing lost.

Two payment feeds are merged; some events are malformed. The first snippet's handler prints each
error and answers ``"continue"``: the bad event is dropped from the output and kept as a dead
letter on ``connected.errors()``. The second snippet's ``robust_processor`` catches its own errors
and records them in the shared state, and ``set_error_threshold(max_errors=10, time_window=60)``
stops the graph with ``ErrorThresholdExceeded`` when a feed goes bad altogether.

Differences from the seed: ``await`` where sage_streams is asynchronous, and ``process_streams``
(left undefined on the seed page) is a small function here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sage_streams import DeadLetter, ErrorThresholdExceeded, LocalEnvironment
from sage_streams.connected_streams import ConnectedStreams

CARDS = [
    {"id": "c1", "amount": "19.90", "currency": "EUR"},
    {"id": "c2", "amount": "n/a", "currency": "EUR"},
    {"id": "c3", "amount": "5.00", "currency": "EUR"},
]
WALLET = [
    {"id": "w1", "amount": "7.25", "currency": "EUR"},
    {"id": "w2", "currency": "EUR"},
    {"id": "w3", "amount": "100.00", "currency": "EUR"},
]
BROKEN = [{"id": f"x{i}", "currency": "EUR"} for i in range(20)]  # a terminal sending no amounts


def to_cents(event: dict[str, Any]) -> dict[str, Any]:
    """Parse an event's amount; raises on a malformed one (missing, not a number)."""
    return {"id": event["id"], "cents": round(float(event["amount"]) * 100)}


def merge(streams: list[Any], state: Any) -> list[dict[str, Any]]:
    return [dict(event, feed=stream.name) for stream in streams for event in stream]


async def first_snippet() -> None:
    env = LocalEnvironment()
    cards = env.from_collection(CARDS, name="cards")
    wallet = env.from_collection(WALLET, name="wallet")
    connected = ConnectedStreams([cards, wallet])

    def error_handler(stream_id: str, error: BaseException, context: Any) -> str:
        print(f"Error in stream {stream_id}: {error}")
        # Log error and continue processing
        return "continue"

    connected.on_error(error_handler)
    # The handler covers the operators made from `connected` and what is downstream of them.
    payments = connected.process(merge, name="merge").map(to_cents, name="parse")

    paid: list[dict[str, Any]] = []
    letters: list[DeadLetter] = []
    payments.sink(paid.append)
    connected.errors().sink(letters.append)
    await env.execute()
    print("paid:", ", ".join(f"{p['id']}={p['cents']}" for p in sorted(paid, key=lambda p: p["id"])))
    for letter in letters:
        print(f"dead letter from {letter.operator}: {letter.item['id']} ({letter.item['feed']})")


def process_streams(streams: list[Any]) -> list[dict[str, Any]]:
    """Parse every event the readers hold; one malformed event fails the whole call."""
    return [to_cents(event) for stream in streams for event in stream.read_all()]


async def second_snippet() -> None:
    env = LocalEnvironment()
    cards = env.from_collection(CARDS, name="cards")
    broken = env.from_collection(BROKEN, name="broken-terminal")
    connected = ConnectedStreams([cards, broken])

    def robust_processor(streams: list[Any], state: Any) -> list[dict[str, Any]]:
        try:
            # Processing logic
            return process_streams(streams)
        except Exception as e:
            # Log error
            state.append("errors", str(e))
            # Return empty result or default
            return []

    # Configure error handling
    connected.on_error(lambda stream_id, error, context: "continue")
    connected.set_error_threshold(max_errors=10, time_window=60)

    # The seed's pattern: a call that fails returns [] and drops what it read, with only the
    # message kept in the state. on_error (above) keeps every item instead.
    robust = connected.process(robust_processor)
    print(f"robust_processor emitted {len(await robust.collect())}; errors kept in state:")
    for error in connected.state.get("errors"):
        print(f"  {error}")

    # The same feeds through a strict parser: every broken event is an error, until the
    # threshold stops the graph.
    env = LocalEnvironment()
    strict = ConnectedStreams(
        [env.from_collection(CARDS, name="cards"), env.from_collection(BROKEN, name="broken-terminal")]
    )
    strict.on_error(lambda stream_id, error, context: "continue")
    strict.set_error_threshold(max_errors=10, time_window=60)
    parsed = strict.process(merge, name="merge").map(to_cents, name="parse")
    skipped: list[DeadLetter] = []
    strict.errors().sink(skipped.append)
    try:
        await parsed.collect()
    except ErrorThresholdExceeded as stop:
        print(f"stopped: {stop.count} errors within {stop.time_window:g} s in {stop.operator!r}")
        print(f"skipped before the stop: {len(skipped)}")


async def main() -> None:
    await first_snippet()
    await second_snippet()


if __name__ == "__main__":
    asyncio.run(main())
