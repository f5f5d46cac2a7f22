"""Driving a transactional sink as the runtime does, with crashes: the sinks' tests share it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from sage_streams.connectors import TransactionalSink


def sink_threads() -> list[threading.Thread]:
    """The sinks' worker threads alive now."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("sage-sink")]


def open_files(path: Path) -> list[str]:
    """The files of this process that are ``path`` or start with it (a database's WAL)."""
    links = (os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink())
    return [link for link in links if link.startswith(str(path))]


@dataclass(frozen=True)
class Crash:
    """Where a run stops: after pre-committing ``epochs`` more epochs (the store committing the
    last of them, or not: the crash came first), then writing ``batches`` batches of the next."""

    epochs: int
    store_commits: bool
    batches: int


async def run(
    make: Callable[[], TransactionalSink], epochs: list[list[list[Any]]], crashes: list[Crash]
) -> list[int]:
    """Run ``epochs`` (epoch ``e`` is ``epochs[e - 1]``, a list of batches) on sinks made by
    ``make``, one per run: each run recovers the last epoch the store committed, replays from
    it and stops at its crash, or at the end; the last run has none. A crash is a ``close``
    without a ``pre_commit`` of the writes before it, so they are in the file, or rolled back.
    Returns the epoch each run started after (0: none committed)."""
    committed: tuple[int | None, Any] = (None, None)
    starts = []
    for crash in [*crashes, None]:
        sink = make()
        await sink.recover(*committed)
        start = committed[0] or 0
        starts.append(start)
        for epoch in range(start + 1, len(epochs) + 1):
            last = crash is not None and epoch == start + crash.epochs + 1
            batches = epochs[epoch - 1][: crash.batches] if crash is not None and last else epochs[epoch - 1]
            for batch in batches:
                await sink.write(batch, epoch)
            if last:
                break
            record = await sink.pre_commit(epoch)
            if crash is None or epoch != start + crash.epochs or crash.store_commits:
                committed = (epoch, record)
                await sink.commit(epoch)
        await sink.close()
    return starts


CRASHES = st.lists(st.builds(Crash, st.integers(0, 3), st.booleans(), st.integers(0, 3)), max_size=4)
"""Up to four crashed runs before the last."""


def epochs_of(items: st.SearchStrategy[Any]) -> st.SearchStrategy[list[list[list[Any]]]]:
    """One to five epochs of up to three batches of up to three ``items``."""
    return st.lists(st.lists(st.lists(items, max_size=3), max_size=3), min_size=1, max_size=5)
