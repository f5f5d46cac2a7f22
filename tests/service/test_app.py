"""examples/service under uvicorn: 5,000 POSTs at 50 concurrent all counted in /stats while it
runs, then SIGTERM drains the graph with nothing lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from examples.service.pipeline import USERS

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 5000
CONCURRENCY = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """The app under uvicorn on a free port of 127.0.0.1; killed if a test leaves it running."""
    port = free_port()
    final = tmp_path / "final.json"
    env = {**os.environ, "SERVICE_FINAL_COUNTS": str(final)}
    command = [sys.executable, "-m", "uvicorn", "examples.service.app:app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        yield process, f"http://127.0.0.1:{port}", final
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


async def wait_until_up(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "uvicorn exited"
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the service did not come up")


def records_in(text: str) -> dict[str, float]:
    """``sage_records_in_total`` of the service's sources, by operator, from a scrape."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sage_records_in_total" and sample.labels["operator"] in ("events", "users"):
                assert sample.labels["pipeline"] == "service"
                found[sample.labels["operator"]] = sample.value
    return found


async def test_every_event_is_counted_and_sigterm_drains_with_nothing_lost(
    service: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, url, final = service
    region = {row["user"]: row["region"] for row in USERS}
    sent = [{"user": f"u{n % 9}", "timestamp": n / 100} for n in range(EVENTS)]  # all in [0, 60)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        await wait_until_up(client, process)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def post(event: dict[str, object]) -> int:
            async with gate:
                return (await client.post("/events", json=event)).status_code

        codes = await asyncio.gather(*(post(event) for event in sent))
        assert Counter(codes) == {202: EVENTS}
        stats = (await client.get("/stats")).json()
        assert stats["received"] == EVENTS
        assert stats["counted"] == 0  # the minute has not ended in event time: nothing fired
        # An event at t=1000 moves the watermark past 60: the first minute fires.
        assert (await client.post("/events", json={"user": "u0", "timestamp": 1000})).status_code == 202
        expected = Counter(region[str(event["user"])] for event in sent)
        for _ in range(200):
            stats = (await client.get("/stats")).json()
            if stats["counted"] == EVENTS:
                break
            await asyncio.sleep(0.05)
        assert stats["totals"] == dict(expected)
        assert stats["windows"] == {
            name: {"start": 0.0, "end": 60.0, "count": count} for name, count in expected.items()
        }
        health = (await client.get("/health")).json()
        assert health == {"state": "running", "healthy": True, "restarts": 0}
        scrape = await client.get("/metrics/")
        assert scrape.status_code == 200
        assert records_in(scrape.text) == {"events": EVENTS + 1, "users": len(USERS)}
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully (the lifespan exits), then re-raises the signal it caught.
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    counts = json.loads(final.read_text())
    # The drain fired the open minute [960, 1020) too: every event sent is counted, once.
    expected[region["u0"]] += 1
    assert counts["received"] == EVENTS + 1
    assert counts["counted"] == EVENTS + 1
    assert counts["totals"] == dict(expected)
