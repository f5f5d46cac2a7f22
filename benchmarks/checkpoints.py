"""``python -m benchmarks.checkpoints``: what checkpoints cost on W4, side by side in one run.

W4 (1,000,000 events, 100 keys, 60 s tumbling sums with ``aggregate``) runs without
checkpoints and with them every second (one SQLite file in a temporary folder), repetitions
round-robin, on uvloop; the table gives the medians and their ratio, and the checkpoints' own
metrics of the last run (epochs committed, the last commit's duration and bytes). Each run's
result is checked against the plain loop's.

The second table is W4's shape with 1,000,000 live keys (``--live-keys``): every key has a
window open for the whole run, and each event goes to another key, so every epoch has as many
changed keys as it had events: the case where an incremental checkpoint costs the most.

The third (``--restore-keys``) is a restart with 1,000,000 keys of window state: a run is
stopped (cancelled, as a kill would leave it) once an epoch holding every key has committed,
and the restarted run is timed to running (restored) and to its first output, an item emitted
then that goes through a map.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from benchmarks.workloads import WINDOW, _w4_result, key_of, w4_data, w4_plain_loop
from sage_streams import DataStream, LocalEnvironment
from sage_streams.checkpoint import SAGE_CODEC

Run = tuple[float, tuple[int, int, int], dict[str, float]]

INTERVALS: dict[str, float | None] = {"off": None, "every 1 s": 1.0, "every 50 ms": 0.05}
"""W4 takes about a quarter of a second here: at 1 s only its last epoch commits, so a short
interval is measured too, to see what each epoch costs."""


def live_keys_data(n: int, keys: int) -> list[dict[str, Any]]:
    """``n`` events over ``keys`` keys in turn, all inside the first window of each key."""
    return [{"key": i % keys, "timestamp": i * (WINDOW / 2) / n, "value": i % 7} for i in range(n)]


def run(events: list[dict[str, Any]], folder: Path, interval: float | None) -> Run:
    checkpoints = None if interval is None else folder / f"w4-{time.perf_counter_ns()}.db"
    env = LocalEnvironment("W4", checkpoints=checkpoints, checkpoint_interval=interval or 1.0)
    windowed = env.from_collection(events, name="events").window("tumbling", size=WINDOW, key_func=key_of)
    sums = windowed.aggregate(lambda total, event: total + event["value"], initial=0, name="sums")
    out: list[Any] = []
    sums.sink(out.append)
    start = time.perf_counter()
    env.run()
    elapsed = time.perf_counter() - start
    result = _w4_result({(window.key, window.start_time): window.value for window in out})
    return elapsed, result, env.metrics().checkpoints


def measure(events: list[dict[str, Any]], reps: int, title: str, intervals: dict[str, float | None]) -> None:
    """Run ``events`` at each of ``intervals``, ``reps`` times round-robin; print the table."""
    expected = w4_plain_loop(events)
    times: dict[str, list[float]] = {label: [] for label in intervals}
    stats: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(reps):
            for label, interval in intervals.items():
                elapsed, result, metrics = run(events, Path(folder), interval)
                if result != expected:
                    raise AssertionError(f"{title} with checkpoints {label} gave a wrong result")
                times[label].append(elapsed)
                stats[label] = metrics
    off = statistics.median(times["off"])
    print(f"{title}, {len(events):,} events, median of {reps} runs each, round-robin")
    print()
    print("| checkpoints | events/s | ratio to off | epochs committed (last run) | bytes of the last |")
    print("|---|---:|---:|---:|---:|")
    for label, runs in times.items():
        median = statistics.median(runs)
        committed, written = stats[label].get("committed", 0), stats[label].get("bytes", 0)
        speed, ratio = len(events) / median, off / median
        print(f"| {label} | {speed:,.0f} | {ratio:.2f}x | {committed:.0f} | {written:,.0f} |")
    print()


def restore_graph(
    path: Path, keys: int, out: list[float], fired: list[Any]
) -> tuple[LocalEnvironment, DataStream[Any]]:
    """``keys`` keys with a window each, in a window operator that a push stream keeps open
    (its windows do not fire when the keys' source ends): they go to ``fired``. The time of
    each output of the push stream's map ``through`` goes to ``out``."""
    env = LocalEnvironment("restore", checkpoints=path, checkpoint_interval=0.5)
    items = [{"key": k, "timestamp": 1.0, "value": 1} for k in range(keys)]
    events = env.from_collection(items, name="events")
    live = env.create_stream("live")
    windows = events.connect(live).window("tumbling", size=WINDOW, key_func=key_of, name="windows")
    windows.aggregate(lambda total, e: total + e["value"], initial=0, name="sums").sink(fired.append)
    live.map(lambda e: e, name="through").sink(lambda _: out.append(time.perf_counter()), name="first")
    return env, live


async def stopped_with_every_key(path: Path, keys: int) -> None:
    """Run until the store holds an epoch in which the keys' source had given every key, then
    cancel the run, as a kill would stop it."""
    env, _ = restore_graph(path, keys, [], [])
    task = asyncio.ensure_future(env.execute())
    for _ in range(3000):  # the store is polled, read-only: a commit sets no event out here
        await asyncio.sleep(0.1)
        if committed_position(path, "events") == keys:
            break
    else:
        raise AssertionError("the keys' epoch did not commit in five minutes")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def committed_position(path: Path, source: str) -> Any:
    """The position of ``source`` in the last epoch committed to the store at ``path``."""
    if not path.exists():
        return None
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT position FROM positions WHERE source = ?", (source,)).fetchone()
        except sqlite3.OperationalError:  # no table yet
            return None
    return None if row is None else SAGE_CODEC.loads(row[0])


async def restarted(path: Path, keys: int) -> tuple[float, float, float]:
    """Seconds from the restart to the graph running (restored) and to the first output of an
    item emitted then, and the store read."""
    out: list[float] = []
    fired: list[Any] = []
    env, live = restore_graph(path, keys, out, fired)
    start = time.perf_counter()
    async with env.running():
        running = time.perf_counter() - start
        await live.emit({"key": 0, "timestamp": 2.0, "value": 1})
        for _ in range(100_000):  # before the close: every window fires then, on the same loop
            if out:
                break
            await asyncio.sleep(0.001)
        await live.close()  # the run ends once every window has fired (not timed)
    if len(fired) != keys:
        raise AssertionError("the restored run did not have every key's window")
    return running, out[0] - start, env.metrics().checkpoints["restore_duration"]


def measure_restore(keys: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "restore.db"
        asyncio.run(stopped_with_every_key(path, keys))
        running, first, read = asyncio.run(restarted(path, keys))
    print(f"Restart with {keys:,} keys of window state")
    print()
    print("| store read | restart to running | restart to first output |")
    print("|---:|---:|---:|")
    print(f"| {read:.2f} s | {running:.2f} s | {first:.2f} s |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--live-keys", type=int, default=1_000_000, help="0: skip the second table")
    parser.add_argument("--restore-keys", type=int, default=1_000_000, help="0: skip the third")
    args = parser.parse_args()
    measure(w4_data(args.events), args.reps, "W4", INTERVALS)
    if args.live_keys:
        events = live_keys_data(2 * args.live_keys, args.live_keys)
        intervals = {label: INTERVALS[label] for label in ("off", "every 1 s")}
        measure(events, args.reps, f"W4 with {args.live_keys:,} live keys", intervals)
    if args.restore_keys:
        measure_restore(args.restore_keys)


if __name__ == "__main__":
    main()
