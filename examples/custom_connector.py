"""A connector of your own, exactly once: a folder of text files in, a folder of files out.

The model for writing one (``docs/connectors.md`` walks through it). The source is a
:class:`~sage_streams.connectors.SplitSource`: each ``*.txt`` file of a folder is a split, read
line by line, whose position is the byte offset of its next line. The sink is a
:class:`~sage_streams.connectors.TransactionalSink` that commits in two phases, as Flink's file
sink does: epoch ``e``'s items go to a hidden ``.epoch-e.part`` file, made durable at the
epoch's barrier (``pre_commit``) and renamed to ``epoch-e.txt`` once the checkpoint holding it
has committed (``commit``). After a crash, ``recover`` finishes the renames of the epochs the
store committed and deletes the parts of the others, which the replay writes again.

The script runs the job twice: the first run fails on purpose half way, the second goes on from
its last checkpoint; the output holds every line once.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sage_streams import LocalEnvironment, PipelineError
from sage_streams.connectors import Guarantee, SplitSource


class FolderSource(SplitSource):
    """The lines of each ``*.txt`` file in ``folder``; one split per file."""

    guarantee: Guarantee = "exactly_once"  # a file read again from an offset gives the same lines

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def splits(self) -> list[str]:
        return sorted(path.name for path in self.folder.glob("*.txt"))

    async def read(self, split: str, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        offset = position or 0
        while True:
            lines, offset = await asyncio.to_thread(self._read, split, offset, size)
            if not lines:
                return
            yield lines, offset

    def _read(self, split: str, offset: int, size: int) -> tuple[list[str], int]:
        with open(self.folder / split, "rb") as file:
            file.seek(offset)
            lines = [line for _, line in zip(range(size), file, strict=False)]
        return [line.decode().rstrip("\n") for line in lines], offset + sum(map(len, lines))


def epoch_of(path: Path) -> int:
    """The epoch in a part's or a committed file's name (``.epoch-7.part``, ``epoch-7.txt``)."""
    return int(path.name.split("-")[1].split(".")[0])


class EpochFilesSink:
    """One file per epoch in ``folder``, visible once the epoch's checkpoint has committed."""

    guarantee: Guarantee = "exactly_once"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parts: dict[int, Any] = {}  # epoch -> its open part file

    def _part(self, epoch: int) -> Path:
        return self.folder / f".epoch-{epoch}.part"

    async def recover(self, epoch: int | None, record: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        last = -1 if epoch is None else epoch
        await self.commit(last)  # parts the store committed, not yet renamed: finish them
        for path in [*self.folder.glob(".epoch-*.part"), *self.folder.glob("epoch-*.txt")]:
            if epoch_of(path) > last:
                path.unlink()  # after the last committed epoch: the replay writes it again

    async def write(self, batch: list[Any], epoch: int) -> None:
        if epoch not in self.parts:
            self.parts[epoch] = await asyncio.to_thread(open, self._part(epoch), "a")  # closed at pre-commit
        self.parts[epoch].writelines(f"{item}\n" for item in batch)

    async def pre_commit(self, epoch: int) -> Any:
        for done in [e for e in self.parts if e <= epoch]:
            file = self.parts.pop(done)
            file.flush()
            await asyncio.to_thread(os.fsync, file.fileno())
            file.close()
        return None  # the files themselves say what was written: no record needed

    async def commit(self, epoch: int) -> None:
        for part in self.folder.glob(".epoch-*.part"):
            if epoch_of(part) <= epoch:
                part.rename(self.folder / f"epoch-{epoch_of(part)}.txt")

    async def close(self) -> None:
        for file in self.parts.values():
            file.close()


async def run(folder: Path, fail_at: int | None) -> LocalEnvironment:
    env = LocalEnvironment("folders", checkpoints=folder / "checkpoints.db", checkpoint_interval=0.05)
    seen = 0

    async def shout(line: str) -> str:
        nonlocal seen
        seen += 1
        if seen == fail_at:
            raise RuntimeError("a crash, on purpose")
        await asyncio.sleep(0.0005)  # some work, so that checkpoints fall during the run
        return line.upper()

    env.create_stream("lines", source=FolderSource(folder / "in")).map(shout).sink(
        EpochFilesSink(folder / "out")
    )
    await env.execute()
    return env


async def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "in").mkdir()
        for split in range(3):
            (folder / "in" / f"part-{split}.txt").write_text(
                "".join(f"line {split}.{n}\n" for n in range(200))
            )
        try:
            await run(folder, fail_at=300)
        except PipelineError as error:
            print(f"first run: {error.__cause__}")
        env = await run(folder, fail_at=None)
        out = [
            line
            for path in (folder / "out").glob("epoch-*.txt")
            for line in path.read_text().split("\n")[:-1]
        ]
        expected = sorted(f"LINE {split}.{n}" for split in range(3) for n in range(200))
        restored = env.metrics().checkpoints["restore_duration"] > 0
        once = sorted(out) == expected
        print(
            f"second run: restored a checkpoint: {restored}; {len(out)} lines out of 600, once each: {once}"
        )


if __name__ == "__main__":
    asyncio.run(main())
