"""The benchmark harness keeps working: a tiny run end to end, results checked equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS = ("aiostream", "reactivex", "streamz", "bytewax")


@pytest.mark.slow
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
    assert "| W2 | sage_streams |" in done.stdout
    assert "FAILED" not in done.stdout
    report = json.loads((tmp_path / "latest.json").read_text())
    assert set(report) >= {"date", "cores", "python", "throughput", "latency", "memory", "chart"}
    assert list(report["throughput"]) == ["W1", "W2", "W3", "W4"]
    for name in ("W1", "W2"):
        impls = report["throughput"][name]["impls"]
        assert set(impls) == {
            "plain_loop",
            "generator_chain",
            "asyncio_queues",
            "sage_streams",
            "sage_streams_uvloop",
            *PEERS,
        }
        assert len({json.dumps(stats["result"]) for stats in impls.values() if "result" in stats}) == 1
    # The seed page's shapes, joined.process and windowed.process, checked against the baselines.
    for name in ("W3", "W4"):
        impls = report["throughput"][name]["impls"]
        assert impls["sage_streams_process"]["result"] == impls["plain_loop"]["result"]
        assert impls["sage_streams_process"]["result"] == impls["generator_chain"]["result"]
        assert f"| {name} | sage_streams_process |" in done.stdout
    # W2: 1,000 items in four sources, counted and summed alike by every implementation.
    assert report["throughput"]["W2"]["impls"]["sage_streams"]["result"] == [1000, sum(range(1000))]
    assert set(report["latency"]) == {"sage_streams", "asyncio_queues"}
    # Memory: two sizes each, results checked in the harness, growth reported.
    memory = report["memory"]
    assert set(memory) == {"W1", "backpressure"}
    assert [run["n"] for run in memory["W1"]["runs"]] == [2_000, 20_000]
    assert [run["n"] for run in memory["backpressure"]["runs"]] == [200, 2_000]
    for data in memory.values():
        assert data["growth_mb"] == data["runs"][1]["peak_rss_mb"] - data["runs"][0]["peak_rss_mb"]
        assert all(run["result"] == run["expected"] for run in data["runs"])
        if sys.platform == "linux":  # the peak counts from the start of the run, not of the process
            assert all(run["peak_rss_mb"] >= run["rss_at_start_mb"] > 0 for run in data["runs"])
    large = memory["backpressure"]["runs"][1]
    assert large["channel_capacity"] == 1_000
    assert 0 < large["channel_peak"] <= large["channel_capacity"]
    assert "| W1: range → map → filter → summing sink | 2,000 items: " in done.stdout
    chart = tmp_path / "latest.png"
    assert report["chart"] == str(chart)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 10_000
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


def test_w1_expected_result_in_closed_form_is_the_plain_loops() -> None:
    from benchmarks.memory import w1_expected
    from benchmarks.workloads import w1_plain_loop

    assert [w1_expected(n) for n in range(12)] == [w1_plain_loop(n) for n in range(12)]
    assert w1_expected(10_000) == w1_plain_loop(10_000)


def test_w2_sources_deal_the_events_round_robin() -> None:
    from benchmarks.workloads import w2_data, w2_plain_loop

    sources = w2_data(10)
    assert [[event["value"] for event in events] for events in sources] == [
        [0, 4, 8],
        [1, 5, 9],
        [2, 6],
        [3, 7],
    ]
    assert sources[1][1] == {"user_id": 5, "value": 5, "ts": 0.005}
    assert w2_plain_loop(sources) == (10, 45)


def test_a_wrong_memory_result_is_a_failure_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.__main__ as harness

    def measure(kind: str, name: str, impl: str, n: int) -> dict[str, object]:
        return {"result": n, "expected": n if n < 100 else 0, "peak_rss_mb": 30.0, "seconds": 0.1}

    monkeypatch.setattr(harness, "measure", measure)
    memory = harness.run_memory({"W1": (10, 100), "backpressure": (1, 10)})
    assert memory["W1"] == {"failed": "wrong result 100 (expected 0)"}
    assert memory["backpressure"]["growth_mb"] == 0.0
    printed = harness.table({"throughput": {}, "memory": memory})
    assert (
        "| W1: range → map → filter → summing sink | FAILED: wrong result 100 (expected 0) | | |" in printed
    )


def test_a_wrong_result_is_reported_as_a_failure() -> None:
    from benchmarks.__main__ import _summarize

    run = {"seconds": 1.0, "peak_rss_mb": 1.0}
    summary = _summarize({"plain_loop": [{**run, "result": 6}], "broken": [{**run, "result": 7}]})
    assert summary["broken"] == {"failed": "wrong result 7 (expected 6)"}
    assert summary["plain_loop"]["result"] == 6


@pytest.mark.parametrize("n", [0, 1, 1_000, 5_000])
def test_the_seed_shapes_return_the_baselines_results(n: int) -> None:
    import asyncio

    from benchmarks import workloads

    process = {"W3": workloads.w3_sage_streams_process, "W4": workloads.w4_sage_streams_process}
    for name in ("W3", "W4"):
        data = workloads.INPUTS[name](n)
        impls = workloads.WORKLOADS[name]
        expected = impls["plain_loop"](data)
        assert impls["generator_chain"](data) == expected
        assert impls["sage_streams_process"] is process[name]
        assert asyncio.run(process[name](data)) == expected, (name, n)


@pytest.mark.slow
def test_the_checkpoint_benchmark_runs_small_and_checks_its_restore() -> None:
    sizes = ["--events", "3000", "--reps", "1", "--live-keys", "500", "--restore-keys", "800"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.checkpoints", *sizes],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line and not line.startswith("|")] == [
        "W4, 3,000 events, median of 1 runs each, round-robin",
        "W4 with 500 live keys, 1,000 events, median of 1 runs each, round-robin",
        "Restart with 800 keys of window state",
    ]
    assert sum(line.startswith(("| off ", "| every ")) for line in lines) == 5


def test_the_service_benchmark_prints_both_rates_and_their_ratio() -> None:
    command = [sys.executable, "-m", "benchmarks.service", "--reps", "1", "--requests", "60"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, timeout=120)
    lines = done.stdout.splitlines()
    assert lines[0] == "| POST /events, 50 concurrent | requests/s |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "without the pipeline",
        "with the pipeline",
        "ratio (with / without)",
    ]
    assert float(lines[4].split("|")[2]) > 0
