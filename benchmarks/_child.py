"""One measurement in a fresh interpreter: ``python -m benchmarks._child KIND NAME IMPL N``.

Prints one JSON object: seconds (of the workload only), result, peak RSS. Run by the harness,
never imported by it, so that every measurement starts from a clean process.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import resource
import sys
import time
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
    else:
        from benchmarks.latency import LATENCY

        out = _run(LATENCY[impl](n), use_uvloop)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


if __name__ == "__main__":
    kind, name, impl, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(json.dumps(main(kind, name, impl, n)))
