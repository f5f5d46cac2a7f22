"""``python -m benchmarks``: measure, check, and print a table.

Method: every measurement runs in a fresh interpreter; repetitions go round-robin over all
implementations so that drift of this machine spreads over all of them; the table shows medians
and ratios to baselines measured in the same run; a result that differs from the plain loop's is
shown as a failure, never as a number. Then memory: the peak RSS of sage_streams at a size and at
ten times that size, each in its own interpreter. Outputs: the markdown table on stdout, and
``latest.json`` and the chart ``latest.png`` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.chart import write_chart
from benchmarks.latency import ITEMS_TO_TIME, LATENCY
from benchmarks.peers import WORKLOADS, skip_reason
from benchmarks.progress import Progress
from benchmarks.workloads import SIZES

RESULTS = Path(__file__).parent / "results"
QUICK_FACTOR = 5
"""--quick divides the sizes by this."""

MEMORY_SIZES = {
    "full": {"W1": (1_000_000, 10_000_000), "backpressure": (100_000, 1_000_000)},
    "quick": {"W1": (200_000, 2_000_000), "backpressure": (20_000, 200_000)},
    "tiny": {"W1": (2_000, 20_000), "backpressure": (200, 2_000)},
}
"""Mode -> memory measurement -> (smaller, larger) item counts, each run once on sage_streams."""

MEMORY_LABELS = {
    "W1": "W1: range → map → filter → summing sink",
    "backpressure": "backpressure: async source → `block` channel (1,000) → slow sink",
}

Job = tuple[str, tuple[str, str, str, int]]
"""A label for the progress display, and the arguments of :func:`measure`."""


def measure(kind: str, name: str, impl: str, n: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter."""
    command = [sys.executable, "-m", "benchmarks._child", kind, name, impl, str(n)]
    root = Path(__file__).parent.parent
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=root)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure_all(jobs: list[Job], progress: Progress | None = None, parallel: int = 1) -> list[dict[str, Any]]:
    """Run the measurements in order, one at a time, and return their results in the same order.

    ``parallel`` > 1 runs that many at a time: for smoke runs only, since measurements that share
    the cores disturb each other's timings.
    """
    progress = progress or Progress(fancy=False)

    def one(job: Job) -> dict[str, Any]:
        label, arguments = job
        return progress.run(label, partial(measure, *arguments))

    if parallel <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, jobs))


def _chosen(name: str, impls: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The implementations of ``name`` to report, and those of them that cannot run, with why."""
    chosen = [impl for impl in WORKLOADS[name] if impls is None or impl in impls]
    return chosen, {impl: reason for impl in chosen if (reason := skip_reason(impl)) is not None}


def run_throughput(
    workloads: list[str],
    impls: list[str] | None,
    reps: int,
    scale: float,
    progress: Progress | None = None,
    parallel: int = 1,
) -> dict[str, Any]:
    """Round-robin repetitions of every (workload, implementation); medians and checks.

    A peer whose library does not import here is not measured: it is reported as
    ``{"skipped": reason}``, which is neither a number nor a failure.
    """
    plans = {}
    jobs: list[Job] = []
    for name in workloads:
        n = max(1, int(SIZES[name] * scale))
        chosen, skipped = _chosen(name, impls)
        measured = [impl for impl in chosen if impl not in skipped]
        plans[name] = (n, chosen, skipped, measured)
        jobs += [
            (f"{name} {impl} rep {rep + 1}/{reps}", ("throughput", name, impl, n))
            for rep in range(reps)
            for impl in measured
        ]
    results = iter(measure_all(jobs, progress, parallel))

    report: dict[str, Any] = {}
    for name, (n, chosen, skipped, measured) in plans.items():
        samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in measured}
        for _ in range(reps):
            for impl in measured:
                samples[impl].append(next(results))
        summary = _summarize(samples) if samples else {}
        summary.update({impl: {"skipped": reason} for impl, reason in skipped.items()})
        report[name] = {"n": n, "impls": {impl: summary[impl] for impl in chosen}}
    return report


def _summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    # The plain loop's result is the reference; without it, the first implementation's.
    reference = "plain_loop" if "plain_loop" in samples else next(iter(samples))
    expected = next((run["result"] for run in samples[reference] if "result" in run), None)
    summary: dict[str, Any] = {}
    for impl, runs in samples.items():
        errors = [run["error"] for run in runs if "error" in run]
        wrong = [
            run["result"]
            for run in runs
            if "result" in run and expected is not None and run["result"] != expected
        ]
        if errors or wrong:
            summary[impl] = {
                "failed": errors[0] if errors else f"wrong result {wrong[0]!r} (expected {expected!r})"
            }
            continue
        summary[impl] = {
            "seconds": statistics.median(run["seconds"] for run in runs),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "result": runs[0]["result"],
        }
    return summary


def run_latency(reps: int, count: int, progress: Progress | None = None, parallel: int = 1) -> dict[str, Any]:
    jobs: list[Job] = [
        (f"latency {impl} rep {rep + 1}/{reps}", ("latency", "latency", impl, count))
        for rep in range(reps)
        for impl in LATENCY
    ]
    results = iter(measure_all(jobs, progress, parallel))
    samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in LATENCY}
    for _ in range(reps):
        for impl in LATENCY:
            samples[impl].append(next(results))
    return {
        impl: {key: statistics.median(run[key] for run in runs) for key in ("p50_us", "p99_us")}
        for impl, runs in samples.items()
    }


def run_memory(
    sizes: dict[str, tuple[int, int]], progress: Progress | None = None, parallel: int = 1
) -> dict[str, Any]:
    """Peak RSS of sage_streams at a smaller and a larger size, each in a fresh interpreter.

    A run that fails or whose result is not the expected one makes the measurement
    ``{"failed": reason}``; otherwise ``growth_mb`` is the larger run's peak minus the smaller's.
    """
    jobs: list[Job] = [
        (f"memory {name} {n:,} items", ("memory", name, "sage_streams", n))
        for name, pair in sizes.items()
        for n in pair
    ]
    results = iter(measure_all(jobs, progress, parallel))
    report: dict[str, Any] = {}
    for name, pair in sizes.items():
        runs = [{"n": n, **next(results)} for n in pair]
        failures = [
            run.get("error") or f"wrong result {run['result']!r} (expected {run['expected']!r})"
            for run in runs
            if "error" in run or run["result"] != run["expected"]
        ]
        if failures:
            report[name] = {"failed": failures[0]}
            continue
        report[name] = {
            "impl": "sage_streams",
            "runs": runs,
            "growth_mb": runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"],
        }
    return report


def table(report: dict[str, Any]) -> str:
    """The report as markdown tables: throughput, then latency and memory if measured."""
    lines = [
        "| workload | implementation | items/s | vs plain loop | vs generator chain | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, data in report["throughput"].items():
        impls = data["impls"]
        rate = {impl: data["n"] / s["seconds"] for impl, s in impls.items() if "seconds" in s}
        for impl, stats in impls.items():
            if "failed" in stats:
                lines.append(f"| {name} | {impl} | FAILED: {stats['failed']} | | | |")
                continue
            if "skipped" in stats:
                lines.append(f"| {name} | {impl} | skipped: {stats['skipped']} | | | |")
                continue
            loop = f"{rate[impl] / rate['plain_loop']:.3f}" if "plain_loop" in rate else "-"
            gen = f"{rate[impl] / rate['generator_chain']:.2f}" if "generator_chain" in rate else "-"
            rss = stats["peak_rss_mb"]
            lines.append(f"| {name} | {impl} | {rate[impl]:,.0f} | {loop} | {gen} | {rss:.0f} |")
    if report.get("latency"):
        lines += ["", "| pushed-item latency | p50 (µs) | p99 (µs) |", "|---|---:|---:|"]
        for impl, stats in report["latency"].items():
            lines.append(f"| {impl} | {stats['p50_us']:.1f} | {stats['p99_us']:.1f} |")
    if report.get("memory"):
        lines += _memory_table(report["memory"])
    return "\n".join(lines)


def _memory_table(memory: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| memory (sage_streams, a fresh process per run) | smaller run | larger run | growth (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for name, data in memory.items():
        label = MEMORY_LABELS.get(name, name)
        if "failed" in data:
            lines.append(f"| {label} | FAILED: {data['failed']} | | |")
            continue
        small, large = data["runs"]
        if "slowdown" in large:
            label += (
                f"; the sink {large['slowdown']:.0f} times slower than the source, "
                f"channel peak {large['channel_peak']:,.0f} items"
            )
        cells = [f"{run['n']:,} items: {run['peak_rss_mb']:.1f} MiB" for run in (small, large)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {data['growth_mb']:+.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"sizes / {QUICK_FACTOR}, 3 repetitions")
    parser.add_argument(
        "--tiny", action="store_true", help="a smoke run for the tests, 2 at a time (results are noise)"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, e.g. W1,W3")
    parser.add_argument("--impls", default=None, help="comma-separated implementation names")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per implementation (3)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory-growth measurements")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for the JSON and the chart")
    args = parser.parse_args(argv)

    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    scale = {"tiny": 0.001, "quick": 1 / QUICK_FACTOR, "full": 1.0}[mode]
    reps = args.reps or (1 if args.tiny else 3)
    parallel = 2 if args.tiny else 1
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    impls = [i.strip() for i in args.impls.split(",")] if args.impls else None
    memory_sizes = {} if args.no_memory else MEMORY_SIZES[mode]

    measured = sum(len(chosen) - len(skipped) for chosen, skipped in (_chosen(w, impls) for w in workloads))
    total = reps * measured + (0 if args.no_latency else reps * len(LATENCY)) + 2 * len(memory_sizes)
    started = time.time()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "mode": mode,
        "reps": reps,
    }
    with Progress(total) as progress:
        report["throughput"] = run_throughput(workloads, impls, reps, scale, progress, parallel)
        latency_items = 50 if args.tiny else ITEMS_TO_TIME
        report["latency"] = None if args.no_latency else run_latency(reps, latency_items, progress, parallel)
        report["memory"] = run_memory(memory_sizes, progress, parallel) if memory_sizes else None
    report["wall_seconds"] = time.time() - started

    args.output.mkdir(parents=True, exist_ok=True)
    chart = args.output / "latest.png"
    try:
        write_chart(report, chart)
        report["chart"] = str(chart)
    except ImportError as exc:
        report["chart"] = {"skipped": f"matplotlib is not installed ({exc})"}
    (args.output / "latest.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"\n{report['wall_seconds']:.0f} s; results in {args.output}", file=sys.stderr)
    failed = any("failed" in s for data in report["throughput"].values() for s in data["impls"].values())
    failed = failed or any("failed" in data for data in (report["memory"] or {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
