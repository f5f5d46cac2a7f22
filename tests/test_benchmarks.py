"""The benchmark harness keeps working: a tiny run end to end, results checked equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PEERS = ("aiostream", "reactivex", "streamz", "bytewax")


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
        *PEERS,
    }
    assert len({json.dumps(stats["result"]) for stats in impls.values() if "result" in stats}) == 1
    assert set(report["latency"]) == {"sage_streams", "asyncio_queues"}
    # Every installed peer ran and returned the plain loop's result; the others say why not.
    from benchmarks.peers import skip_reason

    for name, data in report["throughput"].items():
        expected = data["impls"]["plain_loop"]["result"]
        for peer in PEERS:
            stats = data["impls"][peer]
            if skip_reason(peer) is None:
                assert stats["result"] == expected, (name, peer, stats)
            else:
                assert set(stats) == {"skipped"}, (name, peer, stats)
                assert f"| {name} | {peer} | skipped: " in done.stdout


def test_a_peer_that_does_not_import_is_skipped_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import peers
    from benchmarks.__main__ import run_throughput, table

    monkeypatch.setitem(peers.PEER_MODULES, "reactivex", "no_such_module_for_the_benchmarks")
    throughput = run_throughput(["W1"], ["plain_loop", "reactivex"], reps=1, scale=0.0001)
    reason = (
        "no_such_module_for_the_benchmarks is not installed (pip install no_such_module_for_the_benchmarks)"
    )
    assert throughput["W1"]["impls"]["reactivex"] == {"skipped": reason}
    assert "result" in throughput["W1"]["impls"]["plain_loop"]
    printed = table({"throughput": throughput})
    assert f"| W1 | reactivex | skipped: {reason} | | | |" in printed
    assert "FAILED" not in printed


def test_a_peer_whose_import_raises_is_skipped_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from benchmarks import peers

    def broken(name: str) -> None:
        raise OSError(f"{name}: wrong ELF class")

    monkeypatch.setattr(importlib, "import_module", broken)
    assert peers.skip_reason("bytewax") == "import bytewax failed: OSError: bytewax: wrong ELF class"
    assert peers.skip_reason("plain_loop") is None


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
