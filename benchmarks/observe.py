"""``python -m benchmarks.observe``: what the Prometheus exporter and the OpenTelemetry bridge cost on W1.

W1 (ints -> map(x * 2) -> filter(x % 3 == 0) -> sum, as in :mod:`benchmarks.workloads`) runs
plain, with ``serve_metrics`` serving (from the run's loop, and from a thread when started before
the loop) and another process scraping it every second (as Prometheus would: a scraper thread in
the measured process would add its own work), and with the
OpenTelemetry bridge on an SDK ``MeterProvider`` whose periodic reader collects every second;
repetitions go round-robin, each mode first in as many rounds, so drift of the machine and
the order spread over all modes. Each round gives
each exporter's ratio to the plain run of the same round; the table gives the median run and
the median of those ratios (issue 18's target: at most 2% slower). A run lasts a few seconds,
so it is read a few times: shorter runs would mostly end before the first read. Every run's
result is checked against the plain loop's, and each exporter run must have been read at
least once.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import subprocess
import sys
import time
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
def plain(env: LocalEnvironment, reads: list[float]) -> Iterator[None]:
    yield


SCRAPER = """
import sys, time, urllib.request
while True:
    time.sleep(float(sys.argv[2]))
    print("scrape", flush=True)
    start = time.perf_counter()
    with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
        response.read()
    print(time.perf_counter() - start, flush=True)
"""
"""The scraper: a process of its own, as Prometheus is, printing when a scrape starts and how
long each took (the last one may still be under way when the run ends and the scraper stops)."""


@contextmanager
def prometheus(env: LocalEnvironment, reads: list[float]) -> Iterator[None]:
    from sage_streams.observe.prometheus import serve_metrics

    with serve_metrics(env, 0) as server:
        scraper = subprocess.Popen(
            [sys.executable, "-c", SCRAPER, server.url, str(INTERVAL)], stdout=subprocess.PIPE, text=True
        )
        try:
            yield
        finally:
            scraper.kill()
            out, _ = scraper.communicate()
            lines = out.split()
            reads.extend(float(line) for line in lines if line != "scrape")
            reads.extend(math.nan for _ in range(lines.count("scrape") - len(reads)))


@contextmanager
def otel(env: LocalEnvironment, reads: list[float]) -> Iterator[None]:
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
            reads.append(0.0)  # read: the collection's time is not measured
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


MODES = {
    "plain": plain,
    "prometheus, scraped every 1 s": prometheus,
    "OpenTelemetry, read every 1 s": otel,
    "prometheus from a thread, scraped every 1 s": prometheus,
}


THREADED = "prometheus from a thread, scraped every 1 s"
"""The mode whose server is started before the loop runs, so it serves from a thread."""


def one(n: int, mode: str) -> tuple[float, int, list[float]]:
    env, run = w1(n)
    reads: list[float] = []

    async def measured() -> tuple[float, int]:
        with MODES[mode](env, reads):
            start = time.perf_counter()
            result = await run()
            return time.perf_counter() - start, result

    if mode == THREADED:
        with prometheus(env, reads):
            start = time.perf_counter()
            result = asyncio.run(run())
            return time.perf_counter() - start, result, reads
    elapsed, result = asyncio.run(measured())
    return elapsed, result, reads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observe", description=__doc__)
    parser.add_argument("--items", type=int, default=30_000_000, help="W1 items per run")
    parser.add_argument("--reps", type=int, default=15, help="runs per mode, round-robin")
    args = parser.parse_args(argv)
    expected = w1_plain_loop(args.items)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    ratios: dict[str, list[float]] = {mode: [] for mode in MODES}
    scrapes: dict[str, list[float]] = {mode: [] for mode in MODES if mode.startswith("prometheus")}
    one(min(args.items, 100_000), "plain")  # a warm-up, not counted: imports, first allocations
    names = list(MODES)
    for round_ in range(args.reps):
        turn = round_ % len(names)
        for mode in names[turn:] + names[:turn]:  # each mode first in as many rounds
            elapsed, result, reads = one(args.items, mode)
            if result != expected:
                raise AssertionError(f"W1 {mode}: {result} (expected {expected})")
            if mode != "plain" and elapsed > 2 * INTERVAL and not reads:
                raise AssertionError(f"W1 {mode}: never read in {elapsed:.1f} s")
            times[mode].append(elapsed)
            if mode.startswith("prometheus"):
                scrapes[mode].extend(read for read in reads if not math.isnan(read))
        for mode in MODES:
            ratios[mode].append(times["plain"][-1] / times[mode][-1])
    print(f"W1, {args.items:,} items, {args.reps} rounds of one run per mode")
    print()
    print("| W1 | items/s (median run) | ratio to plain (median over rounds) |")
    print("|---|---:|---:|")
    for mode, runs in times.items():
        median = statistics.median(runs)
        print(f"| {mode} | {args.items / median:,.0f} | {statistics.median(ratios[mode]):.3f} |")
    print()
    for mode, seconds in scrapes.items():
        if seconds:
            print(
                f"{mode}: {len(seconds)} scrapes finished during the runs, "
                f"median {statistics.median(seconds) * 1000:.0f} ms, longest {max(seconds) * 1000:.0f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
