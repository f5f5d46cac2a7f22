"""``python -m benchmarks``: measure, check, and print a table.

Method: every measurement runs in a fresh interpreter; repetitions go round-robin over all
implementations so that drift of this machine spreads over all of them; the table shows medians
and ratios to baselines measured in the same run; a result that differs from the plain loop's is
shown as a failure, never as a number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.latency import ITEMS_TO_TIME, LATENCY
from benchmarks.peers import WORKLOADS, skip_reason
from benchmarks.workloads import SIZES

RESULTS = Path(__file__).parent / "results"
QUICK_FACTOR = 5
"""--quick divides the sizes by this."""


def measure(kind: str, name: str, impl: str, n: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter."""
    command = [sys.executable, "-m", "benchmarks._child", kind, name, impl, str(n)]
    root = Path(__file__).parent.parent
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=root)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_throughput(workloads: list[str], impls: list[str] | None, reps: int, scale: float) -> dict[str, Any]:
    """Round-robin repetitions of every (workload, implementation); medians and checks.

    A peer whose library does not import here is not measured: it is reported as
    ``{"skipped": reason}``, which is neither a number nor a failure.
    """
    report: dict[str, Any] = {}
    for name in workloads:
        n = max(1, int(SIZES[name] * scale))
        chosen = [impl for impl in WORKLOADS[name] if impls is None or impl in impls]
        skipped = {impl: reason for impl in chosen if (reason := skip_reason(impl)) is not None}
        samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in chosen if impl not in skipped}
        for rep in range(reps):
            for impl in samples:
                print(f"  {name} {impl} rep {rep + 1}/{reps}", file=sys.stderr, flush=True)
                samples[impl].append(measure("throughput", name, impl, n))
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


def run_latency(reps: int, count: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in LATENCY}
    for rep in range(reps):
        for impl in LATENCY:
            print(f"  latency {impl} rep {rep + 1}/{reps}", file=sys.stderr, flush=True)
            samples[impl].append(measure("latency", "latency", impl, count))
    return {
        impl: {key: statistics.median(run[key] for run in runs) for key in ("p50_us", "p99_us")}
        for impl, runs in samples.items()
    }


def table(report: dict[str, Any]) -> str:
    """The report as a markdown table (and the latency lines)."""
    lines = [
        "| workload | implementation | items/s | vs plain loop | vs generator chain | peak RSS (MB) |",
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"sizes / {QUICK_FACTOR}, 3 repetitions")
    parser.add_argument("--tiny", action="store_true", help="a smoke run for the tests (results are noise)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, e.g. W1")
    parser.add_argument("--impls", default=None, help="comma-separated implementation names")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per implementation")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--output", type=Path, default=RESULTS, help="folder for the JSON results")
    args = parser.parse_args(argv)

    scale = 0.001 if args.tiny else (1 / QUICK_FACTOR if args.quick else 1.0)
    reps = args.reps or (1 if args.tiny else 3 if args.quick else 5)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    impls = [i.strip() for i in args.impls.split(",")] if args.impls else None

    started = time.time()
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "throughput": run_throughput(workloads, impls, reps, scale),
        "latency": None if args.no_latency else run_latency(reps, 50 if args.tiny else ITEMS_TO_TIME),
    }
    report["wall_seconds"] = time.time() - started
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(report, indent=2))
    print(table(report))
    failed = any("failed" in s for data in report["throughput"].values() for s in data["impls"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
