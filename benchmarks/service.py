"""``python -m benchmarks.service``: requests per second of ``POST /events`` on examples/service.

The same app twice under uvicorn on 127.0.0.1, each in its own process: with its graph
(``POST /events`` emits into the push stream feeding the join and the keyed window) and with
``SERVICE_PIPELINE=0`` (the same routes, no graph). 50 concurrent httpx clients post the events;
the rate is the median of the repetitions, the ratio the pipeline's cost per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def requests_per_second(pipeline: bool, requests: int, concurrency: int) -> float:
    """The rate of one run of the app, in a uvicorn process of its own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "SERVICE_PIPELINE": "1" if pipeline else "0"}
    command = [sys.executable, "-m", "uvicorn", "examples.service.app:app", "--host", "127.0.0.1"]
    server = subprocess.Popen([*command, "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        return asyncio.run(_post_all(port, requests, concurrency))
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _post_all(port: int, requests: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        for _ in range(200):
            try:
                await client.get("/health")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        gate = asyncio.Semaphore(concurrency)

        async def post(n: int) -> None:
            async with gate:
                reply = await client.post("/events", json={"user": f"u{n % 9}", "timestamp": n / 100})
                reply.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post(n) for n in range(requests)))
        return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.reps):  # round-robin, so drift of the machine spreads over both
        for pipeline in (False, True):
            rates[pipeline].append(requests_per_second(pipeline, args.requests, args.concurrency))
    without, with_ = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"| POST /events, {args.concurrency} concurrent | requests/s |")
    print("|---|---:|")
    print(f"| without the pipeline | {without:,.0f} |")
    print(f"| with the pipeline | {with_:,.0f} |")
    print(f"| ratio (with / without) | {with_ / without:.2f} |")


if __name__ == "__main__":
    main()
