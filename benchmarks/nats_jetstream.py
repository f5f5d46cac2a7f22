"""``python -m benchmarks.nats_jetstream``: JetStream -> map -> JetStream, messages per second.

A nats-server of its own (``servers.start("nats")``, file storage) holds ``--messages`` JSON
orders in a stream. Two pipelines read them all, add a field, and publish each result to another
stream with a ``Nats-Msg-Id``, in the same run, alternating:

* sage_streams: ``JetStreamSource`` (durable pull consumer, ``follow=False``) -> ``map`` ->
  ``JetStreamSink``, checkpoints every second into SQLite: exactly once;
* a hand-written nats-py loop: fetch a batch of the batch size sage_streams uses, publish each
  result asynchronously, wait for the batch's acks, then ack the batch's last message (ack-all):
  at least once, no checkpoints.

Each run gets fresh streams and is checked: the output stream holds every result once. Medians
of the repetitions, on uvloop; the ratio is sage_streams' rate over the loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import uvloop
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from sage_streams import LocalEnvironment
from sage_streams.connectors.nats_jetstream import JetStreamSink, JetStreamSource
from servers import start

BATCH = 1024
"""The batch size of both pipelines (sage_streams' default)."""


def priced(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "total": order["qty"] * order["price"]}


async def fill(nc: Client, run: str, messages: int) -> None:
    """Streams ``IN_<run>`` holding the orders and an empty ``OUT_<run>``."""
    js = nc.jetstream(publish_async_max_pending=4000)
    await js.add_stream(name=f"IN_{run}", subjects=[f"in.{run}"])
    await js.add_stream(name=f"OUT_{run}", subjects=[f"out.{run}"])
    for i in range(messages):
        order = {"id": i, "qty": i % 7 + 1, "price": 2.5}
        await js.publish_async(f"in.{run}", json.dumps(order).encode())
    await js.publish_async_completed()


async def sage_streams_run(url: str, run: str, folder: Path) -> None:
    env = LocalEnvironment(
        "bench", checkpoints=folder / f"{run}.db", checkpoint_interval=1.0, batch_size=BATCH
    )
    orders = env.create_stream("orders", source=JetStreamSource(url, f"IN_{run}", durable="bench"))
    orders.map(priced, name="price").sink(JetStreamSink(url, f"out.{run}"), name="out")
    await env.execute()


async def hand_written_run(url: str, run: str, folder: Path) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    config = ConsumerConfig(durable_name="bench", ack_policy=AckPolicy.ALL, max_ack_pending=-1)
    await js.add_consumer(f"IN_{run}", config)
    pull = await js.pull_subscribe_bind("bench", f"IN_{run}")
    left = (await js.consumer_info(f"IN_{run}", "bench")).num_pending
    count = 0
    while left > 0:
        msgs = await pull.fetch(BATCH, timeout=5)
        acks = []
        for msg in msgs:
            payload = json.dumps(priced(json.loads(msg.data)), separators=(",", ":")).encode()
            headers = {"Nats-Msg-Id": f"out.{run}:{count}"}
            acks.append(await js.publish_async(f"out.{run}", payload, headers=headers))
            count += 1
        await asyncio.gather(*acks)
        await msgs[-1].ack()
        left = msgs[-1].metadata.num_pending
    await nc.close()


async def timed(
    url: str, pipeline: Callable[[str, str, Path], Awaitable[None]], messages: int, folder: Path
) -> float:
    """Messages per second of one run of ``pipeline`` on fresh streams, its output checked."""
    run = f"r{time.perf_counter_ns()}"
    nc = await nats.connect(url)
    try:
        await fill(nc, run, messages)
        start_time = time.perf_counter()
        await pipeline(url, run, folder)
        elapsed = time.perf_counter() - start_time
        js = nc.jetstream()
        held = (await js.stream_info(f"OUT_{run}")).state.messages
        if held != messages:
            raise AssertionError(f"{pipeline.__name__}: the output stream holds {held} of {messages}")
        last = await js.get_last_msg(f"OUT_{run}", f"out.{run}")
        if json.loads(last.data or b"") != priced(
            {"id": messages - 1, "qty": (messages - 1) % 7 + 1, "price": 2.5}
        ):
            raise AssertionError(f"{pipeline.__name__}: the last result is {last.data!r}")
        await js.delete_stream(f"IN_{run}")
        await js.delete_stream(f"OUT_{run}")
    finally:
        await nc.close()
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    pipelines = {"hand-written nats-py loop": hand_written_run, "sage_streams": sage_streams_run}
    rates: dict[str, list[float]] = {label: [] for label in pipelines}
    with start("nats") as server, tempfile.TemporaryDirectory() as folder:
        for _ in range(args.reps):
            for label, pipeline in pipelines.items():
                rates[label].append(uvloop.run(timed(server.url, pipeline, args.messages, Path(folder))))
    medians = {label: statistics.median(values) for label, values in rates.items()}
    print(f"JetStream -> map -> JetStream, {args.messages:,} messages, median of {args.reps} runs (uvloop)")
    print()
    print("| pipeline | messages/s | guarantee |")
    print("|---|---:|---|")
    print(f"| hand-written nats-py loop | {medians['hand-written nats-py loop']:,.0f} | at least once |")
    print(f"| sage_streams, checkpoints every 1 s | {medians['sage_streams']:,.0f} | exactly once |")
    print()
    ratio = medians["sage_streams"] / medians["hand-written nats-py loop"]
    print(f"ratio sage_streams / hand-written: {ratio:.2f}")


if __name__ == "__main__":
    main()
