"""One measurement in a fresh interpreter: ``python -m benchmarks._child KIND NAME IMPL N``.

KIND is ``throughput`` (NAME a workload), ``latency`` or ``memory`` (NAME a measurement of
``benchmarks.memory``). Prints one JSON object: seconds (of the workload only), result, peak RSS,
and what the kind adds (latency percentiles; the expected result of a memory run). A memory run's
peak counts from the start of the run where Linux allows it (``/proc/self/clear_refs``), else
from the start of the process. Run by the harness, never imported by it, so that every
measurement starts from a clean process.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

WARMUP_ITEMS = 10_000


def _run(coroutine_or_value: Any, use_uvloop: bool) -> Any:
    if not inspect.isawaitable(coroutine_or_value):
        return coroutine_or_value

    async def wrap() -> Any:
        return await coroutine_or_value

    if use_uvloop:
        import uvloop

        return uvloop.run(wrap())
    return asyncio.run(wrap())


def main(kind: str, name: str, impl: str, n: int) -> dict[str, Any]:
    use_uvloop = impl.endswith("_uvloop")
    if kind == "throughput":
        from benchmarks.peers import WORKLOADS  # the baselines with the peers registered
        from benchmarks.workloads import INPUTS

        function = WORKLOADS[name][impl]
        # One small run first, for every implementation alike: imports and first-call setup
        # (a lazily imported backend, generated code) are not what a throughput number means.
        _run(function(INPUTS[name](min(n, WARMUP_ITEMS))), use_uvloop)
        data = INPUTS[name](n)
        started = time.perf_counter()
        result = _run(function(data), use_uvloop)
        seconds = time.perf_counter() - started
        out: dict[str, Any] = {"seconds": seconds, "result": result}
    elif kind == "memory":
        from benchmarks.memory import MEMORY

        # The peak of the run itself, not of the imports before it (they peak above where they
        # settle, which would hide a few MiB of growth): reset the kernel's high-water mark.
        gc.collect()
        at_start = _reset_peak_rss()
        started = time.perf_counter()
        out = _run(MEMORY[name](n), use_uvloop)
        out["seconds"] = time.perf_counter() - started
        if at_start is not None:
            out["rss_at_start_mb"] = at_start
            out["peak_rss_mb"] = _status_mb("VmHWM")
            return out
    else:
        from benchmarks.latency import LATENCY

        out = _run(LATENCY[impl](n), use_uvloop)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _status_mb(field: str) -> float:
    """A memory figure of this process from ``/proc/self/status``, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def _reset_peak_rss() -> float | None:
    """Reset the peak RSS to the current RSS and return it; None where Linux's way is missing."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS")
    except (OSError, LookupError):
        return None


if __name__ == "__main__":
    kind, name, impl, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(json.dumps(main(kind, name, impl, n)))
