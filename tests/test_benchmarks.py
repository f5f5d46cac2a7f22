"""The benchmark harness keeps working: a tiny run end to end, results checked equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_tiny_harness_run_produces_a_checked_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "| W1 | sage_streams |" in done.stdout
    assert "FAILED" not in done.stdout
    report = json.loads((tmp_path / "latest.json").read_text())
    impls = report["throughput"]["W1"]["impls"]
    assert set(impls) == {
        "plain_loop",
        "generator_chain",
        "asyncio_queues",
        "sage_streams",
        "sage_streams_uvloop",
    }
    assert len({stats["result"] for stats in impls.values()}) == 1
    assert set(report["latency"]) == {"sage_streams", "asyncio_queues"}


def test_without_the_plain_loop_the_first_implementation_is_the_reference() -> None:
    from benchmarks.__main__ import _summarize

    run = {"seconds": 1.0, "peak_rss_mb": 1.0}
    summary = _summarize({"a": [{**run, "result": 1}], "b": [{**run, "result": 2}]})
    assert summary["b"] == {"failed": "wrong result 2 (expected 1)"}


def test_a_wrong_result_is_reported_as_a_failure() -> None:
    from benchmarks.__main__ import _summarize

    run = {"seconds": 1.0, "peak_rss_mb": 1.0}
    summary = _summarize({"plain_loop": [{**run, "result": 6}], "broken": [{**run, "result": 7}]})
    assert summary["broken"] == {"failed": "wrong result 7 (expected 6)"}
    assert summary["plain_loop"]["result"] == 6
