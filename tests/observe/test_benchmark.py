"""The exporters' benchmark keeps working: a small run, results checked, a table of four modes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_observe_benchmark_runs_small_and_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.observe", "--items", "200000", "--reps", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows == [
        "W1",
        "plain",
        "prometheus, scraped every 1 s",
        "OpenTelemetry, read every 1 s",
        "prometheus from a thread, scraped every 1 s",
    ]
