"""``python -m benchmarks.crash``: the crash test's check on 1,000,000 records.

The job of ``benchmarks/crash_job.py`` (file sources -> map -> keyed tumbling window and keyed
join -> a SQLite sink and a JSON Lines sink, checkpoints every 20 ms) runs twice on the same
input, each run in its own subprocess: once uninterrupted, and once killed with SIGKILL
``--kills`` times and restarted after each kill until it finishes. The report counts what the
killed run's sinks hold against the uninterrupted run's as multisets: rows lost (fewer copies than
expected), duplicated (more copies of an expected row) and unexpected (a row the uninterrupted run
never wrote), with each run's time and the restore time of every restart.

Each kill comes once the running process has committed an epoch of its own (so the next run has
a checkpoint to restore) and has written its share of the output: the k-th of n kills waits for
k / (n + 1) of the uninterrupted run's JSON Lines output, so the kills spread over the whole
input. Then it lands at a seeded random moment of the next 30 ms (mid-batch, mid-checkpoint or
mid-commit). Only the processes this module started are killed, by their PID.

The crash test (``tests/runtime/test_crash.py``) runs the same job with the same helpers at
100,000 records, its kills as early as the first commit of each run allows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KILL_WITHIN = 0.03
"""Seconds after a run is ready to be killed within which its kill lands (at random)."""


def write_inputs(folder: Path, events: int) -> None:
    """``events`` events of 50 users, 20 per time unit, and the profiles of every other user."""
    rng = random.Random(7)
    with open(folder / "events.jsonl", "w") as out:
        for i in range(events):
            record = {"id": i, "timestamp": i // 20, "user": rng.randrange(50), "amount": rng.randrange(100)}
            out.write(json.dumps(record) + "\n")
    with open(folder / "profiles.jsonl", "w") as out:
        for user in range(0, 50, 2):  # every other user has a profile
            out.write(json.dumps({"user": user, "tier": "gold" if user % 4 else "free"}) + "\n")


def start(folder: Path) -> subprocess.Popen[bytes]:
    """The job, its errors written to ``folder/stderr`` (no pipe is left open after a kill)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(folder / "stderr", "ab") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "benchmarks.crash_job", str(folder)], env=env, stderr=errors
        )


def outputs(folder: Path) -> tuple[list[Any], list[Any]]:
    """The sinks' contents, each sorted: the ``sums`` rows and the JSON Lines (keys sorted)."""
    with closing(sqlite3.connect(folder / "out.db")) as db:
        sums = sorted(db.execute("SELECT user, start, total FROM sums").fetchall())
    joined = sorted(
        json.dumps(json.loads(line), sort_keys=True)
        for line in (folder / "joined.jsonl").read_text().splitlines()
    )
    return sums, joined


def committed_epoch(folder: Path) -> int:
    """The last epoch the job's store committed (0 for none), read beside the job."""
    if not (folder / "store.db").exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{folder / 'store.db'}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT max(epoch) FROM epochs").fetchone()
    except sqlite3.Error:  # killed before the store had its tables
        return 0
    return int(row[0] or 0)


def kill_repeatedly(
    folder: Path,
    kills: int,
    rng: random.Random,
    *,
    launch: Callable[[Path], subprocess.Popen[bytes]] = start,
    ready: Callable[[int], bool] | None = None,
) -> int:
    """Start a job checkpointing into ``folder/store.db`` (with ``launch``: this module's job by
    default) and SIGKILL it, up to ``kills`` times; the number of kills made.

    Each run is killed once it has committed an epoch of its own and ``ready(k)`` holds (for the
    k-th kill: so much output written, say; always, without ``ready``), at a moment drawn from
    ``rng`` in the next :data:`KILL_WITHIN` seconds. A run that finishes first ends the kills
    early. The last run is killed too: the caller starts the one that ends. Every crash test
    kills through here, and only the processes it started, by their PID.
    """
    made = 0
    while made < kills:
        before = committed_epoch(folder)
        job = launch(folder)
        deadline = time.monotonic() + 60
        while job.poll() is None and time.monotonic() < deadline:
            if committed_epoch(folder) > before and (ready is None or ready(made)):
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0, KILL_WITHIN))
        if job.poll() is not None:
            break  # it finished between two kills
        os.kill(job.pid, signal.SIGKILL)  # only the process this module started
        job.wait()
        made += 1
    return made


def _size(path: Path) -> int:
    """The size of ``path`` in bytes, 0 while it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class Difference:
    """How one sink's rows differ from the expected rows, counted as multisets."""

    expected: int
    found: int
    lost: int
    """Copies of expected rows missing (a row expected twice and found once counts 1)."""
    duplicated: int
    """Copies of expected rows beyond the expected number."""
    unexpected: int
    """Rows the uninterrupted run never wrote (a wrong window total, say)."""


def difference(expected: list[Any], found: list[Any]) -> Difference:
    """Compare two lists of rows as multisets: order does not count, repetitions do."""
    want, have = Counter(expected), Counter(found)
    extra = have - want
    duplicated = sum(n for row, n in extra.items() if row in want)
    return Difference(
        expected=len(expected),
        found=len(found),
        lost=sum((want - have).values()),
        duplicated=duplicated,
        unexpected=sum(extra.values()) - duplicated,
    )


@dataclass(frozen=True)
class Report:
    """What one benchmark run found and how long its parts took."""

    records: int
    kills: int
    restarts: int
    """Runs that restored a committed epoch (each kill should be followed by one)."""
    sums: Difference
    joined: Difference
    clean_seconds: float
    killed_seconds: float
    """From the first start of the killed run to the end of the run that finished."""
    restores: list[float]
    """Seconds each restart's restore took (the ``restore_duration`` metric), in order."""
    starts: list[float]
    """Seconds from ``env.running()`` to its block in each restart: restore, state load, tasks."""
    clean_start: float
    """The same for the uninterrupted run, which restores nothing."""
    total_seconds: float

    @property
    def exact(self) -> bool:
        """Whether both sinks hold exactly the uninterrupted run's rows."""
        return all(d.lost == d.duplicated == d.unexpected == 0 for d in (self.sums, self.joined))


def measure(folder: Path, records: int, kills: int, seed: int) -> Report:
    """Both runs on ``records`` events in subfolders of ``folder``, and the comparison."""
    begun = time.perf_counter()
    clean, crashed = folder / "clean", folder / "crashed"
    for run in (clean, crashed):
        run.mkdir()
        write_inputs(run, records)
    started = time.perf_counter()
    if start(clean).wait() != 0:
        raise RuntimeError(f"the uninterrupted run failed:\n{(clean / 'stderr').read_text()}")
    clean_seconds = time.perf_counter() - started
    expected = outputs(clean)

    joined_size = (clean / "joined.jsonl").stat().st_size
    written = [joined_size * (k + 1) // (kills + 1) for k in range(kills)]
    started = time.perf_counter()
    made = kill_repeatedly(
        crashed, kills, random.Random(seed), ready=lambda k: _size(crashed / "joined.jsonl") >= written[k]
    )
    if start(crashed).wait() != 0:
        raise RuntimeError(f"the killed run failed to finish:\n{(crashed / 'stderr').read_text()}")
    killed_seconds = time.perf_counter() - started
    found = outputs(crashed)

    restarts = [run for run in _starts(crashed) if run["restore_duration"] > 0]
    return Report(
        records=records,
        kills=made,
        restarts=len(restarts),
        sums=difference(expected[0], found[0]),
        joined=difference(expected[1], found[1]),
        clean_seconds=clean_seconds,
        killed_seconds=killed_seconds,
        restores=[run["restore_duration"] for run in restarts],
        starts=[run["start_seconds"] for run in restarts],
        clean_start=_starts(clean)[0]["start_seconds"],
        total_seconds=time.perf_counter() - begun,
    )


def _starts(folder: Path) -> list[dict[str, float]]:
    """What each run of the job in ``folder`` recorded once its graph had started."""
    return [json.loads(line) for line in (folder / "restores.jsonl").read_text().splitlines()]


def table(report: Report) -> str:
    """The report as markdown: the sinks compared, then the times."""
    lines = [
        f"{report.records:,} records, {report.kills} kills, {report.restarts} restarts",
        "",
        "| | sums rows (SQLite) | joined lines (JSON Lines) |",
        "|---|---:|---:|",
    ]
    for field in ("expected", "found", "lost", "duplicated", "unexpected"):
        counts = [getattr(sink, field) for sink in (report.sums, report.joined)]
        lines.append(f"| {field} | {counts[0]:,} | {counts[1]:,} |")
    restores, starts = report.restores or [0.0], report.starts or [0.0]
    restarts = len(report.restores)
    lines += [
        "",
        "| time | seconds |",
        "|---|---:|",
        f"| uninterrupted run | {report.clean_seconds:.2f} |",
        f"| killed run, first start to finish ({report.kills + 1} processes) | {report.killed_seconds:.2f} |",
        f"| restore (reading the store), median of {restarts} | {statistics.median(restores):.4f} |",
        f"| restore (reading the store), longest | {max(restores):.4f} |",
        f"| restart to running (restore, state load, tasks), median of {restarts} "
        f"| {statistics.median(starts):.4f} |",
        f"| restart to running, longest | {max(starts):.4f} |",
        f"| start to running of the uninterrupted run (nothing to restore) | {report.clean_start:.4f} |",
        f"| total (inputs, both runs, comparison) | {report.total_seconds:.2f} |",
        "",
        "restores (s): " + ", ".join(f"{seconds:.4f}" for seconds in report.restores),
        "restarts to running (s): " + ", ".join(f"{seconds:.4f}" for seconds in report.starts),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crash", description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000, help="events in the input (1,000,000)")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs of the second run (10)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the kill moments (2026)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sage-crash-") as folder:
        report = measure(Path(folder), args.records, args.kills, args.seed)
    print(table(report))
    complete = report.kills == report.restarts == args.kills
    return 0 if report.exact and complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
