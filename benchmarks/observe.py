"""``python -m benchmarks.observe``: what the Prometheus exporter and the OpenTelemetry bridge cost on W1.

W1 (ints -> map(x * 2) -> filter(x % 3 == 0) -> sum, as in :mod:`benchmarks.workloads`) runs
plain, with ``serve_metrics`` serving and a thread scraping it every second, and with the
OpenTelemetry bridge on an SDK ``MeterProvider`` whose periodic reader collects every second;
repetitions go round-robin, so drift of the machine spreads over all three. The table gives
the medians and their ratio to plain (issue 18's target: at most 2% slower). Every run's
result is checked against the plain loop's, and each exporter run must have been read at
least once.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.workloads import divisible_by_3, double, w1_plain_loop
from sage_streams import LocalEnvironment

INTERVAL = 1.0
"""Seconds between two scrapes (or collections)."""


def w1(n: int) -> tuple[LocalEnvironment, Callable[[], Any]]:
    env = LocalEnvironment("W1")
    stream = env.from_collection(range(n), name="numbers").map(double).filter(divisible_by_3)

    async def run() -> int:
        return sum(await stream.collect())

    return env, run


@contextmanager
def plain(env: LocalEnvironment, reads: list[int]) -> Iterator[None]:
    yield


@contextmanager
def prometheus(env: LocalEnvironment, reads: list[int]) -> Iterator[None]:
    from sage_streams.observe.prometheus import serve_metrics

    stop = threading.Event()
    with serve_metrics(env, 0) as server:

        def scrape() -> None:
            while not stop.wait(INTERVAL):
                with urllib.request.urlopen(server.url, timeout=10) as response:
                    response.read()
                reads.append(1)

        scraper = threading.Thread(target=scrape, name="scraper")
        scraper.start()
        try:
            yield
        finally:
            stop.set()
            scraper.join()


@contextmanager
def otel(env: LocalEnvironment, reads: list[int]) -> Iterator[None]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )

    from sage_streams.observe.otel import instrument

    class Counting(MetricExporter):
        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            reads.append(1)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            pass

    reader = PeriodicExportingMetricReader(Counting(), export_interval_millis=INTERVAL * 1000)
    provider = MeterProvider(metric_readers=[reader])
    instrumentation = instrument(env, meter_provider=provider)
    try:
        yield
    finally:
        instrumentation.close()
        provider.shutdown()


MODES = {"plain": plain, "prometheus, scraped every 1 s": prometheus, "OpenTelemetry, read every 1 s": otel}


def one(n: int, mode: str) -> tuple[float, int, int]:
    env, run = w1(n)
    reads: list[int] = []
    with MODES[mode](env, reads):
        start = time.perf_counter()
        result = asyncio.run(run())
        elapsed = time.perf_counter() - start
    return elapsed, result, len(reads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observe", description=__doc__)
    parser.add_argument("--items", type=int, default=10_000_000, help="W1 items per run")
    parser.add_argument("--reps", type=int, default=5, help="runs per mode, round-robin")
    args = parser.parse_args(argv)
    expected = w1_plain_loop(args.items)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    one(min(args.items, 100_000), "plain")  # a warm-up, not counted: imports, first allocations
    for _ in range(args.reps):
        for mode in MODES:
            elapsed, result, reads = one(args.items, mode)
            if result != expected:
                raise AssertionError(f"W1 {mode}: {result} (expected {expected})")
            if mode != "plain" and elapsed > 2 * INTERVAL and reads == 0:
                raise AssertionError(f"W1 {mode}: never read in {elapsed:.1f} s")
            times[mode].append(elapsed)
    base = statistics.median(times["plain"])
    print(f"W1, {args.items:,} items, median of {args.reps} runs each, round-robin")
    print()
    print("| W1 | items/s | ratio to plain |")
    print("|---|---:|---:|")
    for mode, runs in times.items():
        median = statistics.median(runs)
        print(f"| {mode} | {args.items / median:,.0f} | {base / median:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
