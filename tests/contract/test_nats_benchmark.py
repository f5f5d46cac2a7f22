"""The NATS JetStream benchmark keeps working: a tiny run, its table checked (its own server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_nats_benchmark_runs_small_and_prints_both_pipelines_and_the_ratio() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.nats_jetstream", "--messages", "300", "--reps", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "JetStream -> map -> JetStream, 300 messages, median of 1 runs (uvloop)"
    assert lines[2:4] == ["| pipeline | messages/s | guarantee |", "|---|---:|---|"]
    rows = [line.rsplit(" | ", 2) for line in lines[4:6]]
    assert [(row[0], row[2]) for row in rows] == [
        ("| hand-written nats-py loop", "at least once |"),
        ("| sage_streams, checkpoints every 1 s", "exactly once |"),
    ]
    assert all(float(row[1].replace(",", "")) > 0 for row in rows)
    assert lines[7].startswith("ratio sage_streams / hand-written: ")
    assert float(lines[7].rsplit(" ", 1)[1]) > 0
