"""The Redis Streams benchmark keeps working: a tiny run, both implementations' totals checked equal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_redis_benchmark_prints_both_rates_and_their_ratio() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.redis_streams", "--entries", "4000", "--repeat", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "4,000 entries, 100 window totals, medians of 1"
    assert lines[1:3] == ["| implementation | entries/s (median) | runs |", "|---|---:|---|"]
    assert re.fullmatch(r"\| sage_streams \| [\d,]+ \| [\d,]+ \|", lines[3])
    assert re.fullmatch(r"\| sage_streams, consumer group \| [\d,]+ \| [\d,]+ \|", lines[4])
    assert re.fullmatch(r"\| redis-py loop \| [\d,]+ \| [\d,]+ \|", lines[5])
    assert re.fullmatch(r"sage_streams / redis-py loop: \d+\.\d\dx", lines[7])
