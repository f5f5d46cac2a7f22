"""``python -m benchmarks.durable``: emits per second into a durable push stream.

100 concurrent emitters each ``await stream.emit(item)`` 300 times into
``env.create_stream(name, durable=True)`` while the graph runs (a map into a JSON Lines sink,
checkpoints every second); every ``emit`` returns only once its item is committed to the log
(WAL, ``synchronous = FULL``, on the log's own thread), the 100 emits of a round sharing one
commit. Beside it, in the same run, a plain push stream (nothing on disk) as the baseline.
Medians of the repetitions, on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from sage_streams import LocalEnvironment
from sage_streams.connectors import JsonLinesSink

EMITTERS = 100
EACH = 300


async def emits_per_second(folder: Path | None) -> float:
    checkpoints = None if folder is None else folder / f"store-{time.perf_counter_ns()}.db"
    env = LocalEnvironment("durable", checkpoints=checkpoints)
    stream = env.create_stream("orders", durable=folder is not None)
    target = (folder or Path(tempfile.gettempdir())) / f"out-{time.perf_counter_ns()}.jsonl"
    stream.map(lambda order: order, name="same").sink(JsonLinesSink(target), name="out")

    async def emitter(number: int) -> None:
        for i in range(EACH):
            await stream.emit({"emitter": number, "i": i})

    async with env.running():
        start = time.perf_counter()
        await asyncio.gather(*(emitter(n) for n in range(EMITTERS)))
        elapsed = time.perf_counter() - start
    lines = target.read_text().count("\n")
    target.unlink()
    if lines != EMITTERS * EACH:
        raise AssertionError(f"{lines} items written, {EMITTERS * EACH} emitted")
    return EMITTERS * EACH / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"plain push stream": [], "durable push stream": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.reps):
            rates["plain push stream"].append(uvloop.run(emits_per_second(None)))
            rates["durable push stream"].append(uvloop.run(emits_per_second(Path(folder))))
    print(f"{EMITTERS} concurrent emitters x {EACH} emits, median of {args.reps} runs")
    print()
    print("| stream | emits/s | each emit durable when it returns |")
    print("|---|---:|---|")
    for label, values in rates.items():
        print(f"| {label} | {statistics.median(values):,.0f} | {'yes' if 'durable' in label else 'no'} |")


if __name__ == "__main__":
    main()
