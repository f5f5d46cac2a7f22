"""``python -m benchmarks.compare REV``: this checkout's sage_streams against revision ``REV``'s.

For a change that must not slow anything down (a refactoring, a new check on the hot path), the
question is a ratio measured in one run, not two tables from two runs on a noisy machine. This
extracts the package as it is at ``REV`` (``git archive``) into a temporary folder and times the
same workloads, written by this checkout's ``benchmarks/``, against both packages: every
measurement in a fresh interpreter, round-robin over (workload, implementation, package), so
that drift spreads over all of them. It prints, per workload and implementation, the median
seconds of each and the speed ratio (``REV``'s time / this checkout's time: above 1 is faster
now), and this checkout's speed relative to the plain loop and the generator chain measured in
the same run.

``--env '{"inline": false}'`` passes keyword arguments to every ``LocalEnvironment`` the
workloads make (see ``benchmarks.workloads.environment``), so the other paths (``inline=False``,
``inline="all"``) are compared the same way. The workloads use only the public API, so both
packages run the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from benchmarks.workloads import ENV_OPTIONS_VARIABLE, SIZES, WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ("plain_loop", "generator_chain")


def extract(rev: str, into: Path) -> None:
    """Write the ``sage_streams`` package as it is at ``rev`` under ``into``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "sage_streams"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def measure(package_root: Path, name: str, impl: str, n: int, env_options: str) -> float:
    """Seconds of one timed run, in a fresh interpreter importing the package under
    ``package_root`` and this checkout's benchmarks."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), str(ROOT)])}
    environ[ENV_OPTIONS_VARIABLE] = env_options
    with tempfile.TemporaryDirectory() as neutral:  # no checkout on sys.path[0]
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks._child", "throughput", name, impl, str(n)],
            capture_output=True,
            text=True,
            cwd=neutral,
            env=environ,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{name} {impl} failed: {done.stderr.strip()}")
    seconds: float = json.loads(done.stdout)["seconds"]
    return seconds


def package_file(package_root: Path) -> str:
    """Where the interpreter finds ``sage_streams`` with ``package_root`` first on the path."""
    environ = {**os.environ, "PYTHONPATH": str(package_root)}
    with tempfile.TemporaryDirectory() as neutral:
        return subprocess.run(
            [sys.executable, "-c", "import sage_streams; print(sage_streams.__file__)"],
            capture_output=True,
            text=True,
            cwd=neutral,
            env=environ,
            check=True,
        ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the revision to compare with, e.g. main~3 or a commit")
    parser.add_argument("--workloads", default="W1,W2,W3,W4")
    parser.add_argument("--impls", default="sage_streams", help="sage_streams implementations to compare")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    parser.add_argument("--env", default="{}", help="JSON keyword arguments for LocalEnvironment")
    args = parser.parse_args(argv)
    json.loads(args.env)  # refuse bad JSON before measuring anything

    with tempfile.TemporaryDirectory() as base:
        extract(args.rev, Path(base))
        trees = {"now": ROOT, args.rev: Path(base)}
        for label, tree in trees.items():
            print(f"{label}: {package_file(tree)}", file=sys.stderr)
        jobs = [
            (name, impl, label)
            for name in args.workloads.split(",")
            for impl in [*BASELINES, *args.impls.split(",")]
            if impl in WORKLOADS[name]
            for label in (trees if impl not in BASELINES else ["now"])
        ]
        seconds: dict[tuple[str, str, str], list[float]] = {job: [] for job in jobs}
        for rep in range(args.reps):
            for job in jobs:
                name, impl, label = job
                n = max(1, int(SIZES[name] * args.scale))
                seconds[job].append(measure(trees[label], name, impl, n, args.env))
                print(f"rep {rep + 1}/{args.reps} {name} {impl} {label}", file=sys.stderr)
    print(table(seconds, args.rev, args.env))
    return 0


def table(seconds: dict[tuple[str, str, str], list[float]], rev: str, env: str) -> str:
    """The markdown table of medians and ratios."""
    median = {job: statistics.median(values) for job, values in seconds.items()}
    lines = [
        f"LocalEnvironment options: `{env}`; medians of {len(next(iter(seconds.values())))} runs",
        "",
        f"| workload | impl | {rev} s | now s | speed now / {rev} | now / plain loop | now / gen. chain |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (name, impl, label), now in median.items():
        if label != "now" or impl in BASELINES:
            continue
        before = median[name, impl, rev]
        plain = median[name, "plain_loop", "now"]
        chain = median[name, "generator_chain", "now"]
        lines.append(
            f"| {name} | {impl} | {before:.3f} | {now:.3f} | {before / now:.2f}x "
            f"| {plain / now:.2f}x | {chain / now:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
