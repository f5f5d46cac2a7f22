"""A source made of splits: partitions read side by side, each from a position of its own.

A Redis source over three stream keys has three splits, a JetStream source one per consumer,
a table source one. :class:`SplitSource` turns them into one
:class:`~sage_streams.connectors.ReplayableSource`: it asks the subclass for its ``splits()``
when a run starts, reads each with ``read(split, position, size)`` in a task of its own, and
gives their batches in the order they arrive, each with the position of the whole source, a
dict from split to that split's position. So a barrier records where every split stands, and a
restored run starts each where it was. Per-split order is kept; across splits, order is the
order of arrival (as a Flink source's splits interleave).

A source with one split is read in the caller's task, with no task or queue in between.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Final

from sage_streams.connectors.base import Guarantee

__all__ = ["SplitSource"]

_DONE: Final = object()
"""What a split's task puts in the queue when its reader has ended."""


class SplitSource(ABC):
    """Subclass with ``splits()`` and ``read()``; ``guarantee`` says what a replay gives."""

    guarantee: Guarantee = "exactly_once"

    @abstractmethod
    async def splits(self) -> list[str]:
        """The names of the splits, asked once per run before any read."""

    @abstractmethod
    def read(self, split: str, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """Batches of at most ``size`` items of ``split`` from ``position`` (``None``: where a
        new reader starts), each with the split's position after it; an async generator."""

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """The batches of every split, each with every split's position after it."""
        names = await self.splits()
        if position is not None and not (isinstance(position, dict) and set(position) <= set(names)):
            raise ValueError(
                f"{type(self).__name__}: {position!r} is not a position of splits {names!r}; "
                "did the splits change since the checkpoint?"
            )
        positions: dict[str, Any] = dict.fromkeys(names) | (position or {})
        if len(names) == 1:
            (name,) = names
            async for batch, after in self.read(name, positions[name], size):
                positions[name] = after
                yield batch, dict(positions)
            return
        queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue(maxsize=len(names))
        tasks = [asyncio.create_task(self._pump(name, positions[name], size, queue)) for name in names]
        try:
            running = len(tasks)
            while running:
                name, batch, after = await queue.get()
                if batch is _DONE:
                    if after is not None:
                        raise after
                    running -= 1
                    continue
                positions[name] = after
                yield batch, dict(positions)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(
        self, name: str, position: Any, size: int, queue: asyncio.Queue[tuple[str, Any, Any]]
    ) -> None:
        """Read ``name`` into ``queue`` (one batch ahead per split: the queue holds one per split)."""
        failure: BaseException | None = None
        reader = self.read(name, position, size)
        try:
            async for batch, after in reader:
                await queue.put((name, batch, after))
        except Exception as exc:
            exc.add_note(f"sage_streams: raised while reading split {name!r}")
            failure = exc
        finally:
            await reader.aclose()  # type: ignore[attr-defined]
        await queue.put((name, _DONE, failure))
