"""The operators of connected streams, and what a process function reads: :class:`StreamReader`.

Each is the stateful object that the runtime's operator head feeds (see
``sage_streams._runtime.operator_head``): it gets the batches of its inputs, their ends and the
finish, and returns what it emits. ``ConnectedStreams`` (in :mod:`sage_streams.api.connected`)
builds them into the graph.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

from sage_streams.errors import NoDataError, StreamError
from sage_streams.functions import emitted
from sage_streams.operators.base import ItemError, OperatorBase
from sage_streams.state import StreamState

__all__ = ["BatchProcessOperator", "ProcessOperator", "StreamReader"]


class StreamReader:
    """What a process function sees of one input: the items that arrived and are not read yet.

    Items not read stay for the next call. Iterating a reader drains what is available.

    Arrived batches are kept as they came, and only a batch that is read item by item is moved
    into a deque: ``read_all()``, the common case, then copies each item once, not three times.
    The batches are shared with other consumers of the stream, so they are never handed out or
    changed themselves.
    """

    __slots__ = ("_batches", "_count", "_items", "_taken", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: deque[Any] = deque()  # a batch being read item by item: before _batches
        self._batches: deque[Sequence[Any]] = deque()
        self._count = 0
        self._taken: list[Any] = []
        """What the current call of the process function has read, to put back for a retry."""

    def __repr__(self) -> str:
        return f"<StreamReader {self.name!r}: {self._count} unread>"

    def __len__(self) -> int:
        return self._count

    def has_data(self) -> bool:
        """Whether an item is available."""
        return self._count > 0

    def read(self) -> Any:
        """The next item.

        Raises:
            NoDataError: none is available (an ``IndexError`` too); check ``has_data()`` first.
        """
        if not self._count:
            raise NoDataError(f"stream {self.name!r} has no data to read; check has_data() first")
        if not self._items:
            self._items.extend(self._batches.popleft())
        item = self._items.popleft()
        self._count -= 1
        self._taken.append(item)
        return item

    def read_all(self) -> list[Any]:
        """Every available item, in order."""
        items = list(self._items)
        self._items.clear()
        for batch in self._batches:
            items += batch
        self._batches.clear()
        self._count = 0
        self._taken += items
        return items

    def __iter__(self) -> Iterator[Any]:
        while self._count:
            yield self.read()

    def _unread(self) -> list[Any]:
        """The items not read yet, in order, left where they are: for a checkpoint."""
        items = list(self._items)
        for batch in self._batches:
            items += batch
        return items

    def _extend(self, items: Sequence[Any]) -> None:
        if items:
            self._batches.append(items)
            self._count += len(items)

    def _put_back(self) -> None:
        """Undo the reads of the current call, in their order."""
        self._items.extendleft(reversed(self._taken))
        self._count += len(self._taken)
        self._taken.clear()


class ProcessOperator(OperatorBase):
    """``fn(readers, state, **kwargs)`` called whenever items have arrived on any input.

    Everything that is ready on every input is read first, then the function is called once:
    it sees all streams, as the seed's complex-event example expects.
    """

    def __init__(
        self, fn: Callable[..., Any], names: list[str], state: StreamState, kwargs: dict[str, Any], limit: int
    ) -> None:
        super().__init__()
        self.fn = fn
        self.readers = [StreamReader(name) for name in names]
        self.state = state
        self.kwargs = kwargs
        self.limit = limit
        self._arrived = False

    def wants(self, index: int) -> bool:
        return len(self.readers[index]) < self.limit

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        self.readers[index]._extend(batch)
        self._arrived = True
        return ()

    async def on_idle(self) -> Sequence[Any]:
        if not self._arrived:
            return ()
        self._arrived = False
        return await self._call()

    async def _call(self) -> Sequence[Any]:
        """Call the function once. If it raises, what it read is the failed item; the error's
        ``restore`` puts that back for a retry. A failed call emits nothing."""
        for reader in self.readers:
            reader._taken.clear()
        try:
            return await emitted(self.fn(self.readers, self.state, **self.kwargs))
        except Exception as exc:
            raise ItemError(self._taken(), exc, restore=self._restore) from exc

    def _taken(self) -> list[Any] | None:
        """What the current call read, reader by reader (``None`` if nothing)."""
        return [item for reader in self.readers for item in reader._taken] or None

    def _restore(self) -> None:
        for reader in self.readers:
            reader._put_back()
        self._arrived = True

    def snapshot(self) -> dict[Hashable, Any]:
        """``("unread", i)``: reader ``i``'s unread items; ``"meta"``: whether items arrived
        since the last call. The ``StreamState`` is not included: it has its own entries."""
        entries: dict[Hashable, Any] = {"meta": self._arrived}
        for index, reader in enumerate(self.readers):
            entries["unread", index] = reader._unread()
        return entries

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        self._arrived = entries["meta"]
        for index, reader in enumerate(self.readers):
            reader._extend(list(entries["unread", index]))

    async def on_finish(self) -> Sequence[Any]:
        if not any(self.readers):
            return ()
        # One last call with what is left: no new items will come to trigger one.
        output = await self._call()
        unread = {reader.name: len(reader) for reader in self.readers if reader}
        if unread:
            # An error of the items left over, so that a handler can keep them (or retry).
            left = ", ".join(f"{count} of {name!r}" for name, count in unread.items())
            error = StreamError(f"the process function left items unread at the end of input: {left}")
            for reader in self.readers:
                reader._taken.clear()
                reader.read_all()
            raise ItemError(self._taken(), error, output=output, restore=self._restore)
        return output

    def stalled(self) -> str:
        return (
            f"the process function leaves {self.limit} or more items unread on every open input, "
            "so no input can be read: read them, or raise the environment's buffer_size"
        )

    def details(self) -> dict[str, float]:
        unread = {f"unread[{reader.name}]": float(len(reader)) for reader in self.readers}
        return {**unread, "state_bytes": float(self.state.size_bytes())}


PROCESS_SLICE = 256
"""The most pairs (or tuples) one call of a joined or synchronized stream's ``process(fn)`` gets.

A batch of the stream is handed over in slices of this size, and what each call returns goes
downstream before the next call. The lists a process function builds then stay small enough
for the CPU's caches, and under the garbage collector's threshold of 700 new containers: the
seed's ``joined.process(enrich_activity)`` into a sink measured ~20% faster than with the
whole batches of 1,024 (``benchmarks``, W3 ``sage_streams_process``).
"""


class BatchProcessOperator(OperatorBase):
    """``fn(batch, state, **kwargs)`` on each batch of a joined or synchronized stream, in slices
    of at most :data:`PROCESS_SLICE` items.

    ``on_batch`` calls ``fn`` on the first slice only and keeps the rest as :meth:`unfinished`,
    which the operator head hands back to ``on_batch`` before it reads anything else. A failed
    call's slice is its failed item: a retry calls ``fn`` on that slice again, ``"continue"``
    goes on with the next one.
    """

    def __init__(self, fn: Callable[..., Any], state: StreamState, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.fn = fn
        self.state = state
        self.kwargs = kwargs
        self.slice_size = PROCESS_SLICE
        self._rest: deque[Sequence[Any]] = deque()
        self._rest_index = 0

    def unfinished(self) -> tuple[int, Sequence[Any]] | None:
        """The input and the next slice of a batch that ``on_batch`` has not processed yet."""
        return (self._rest_index, self._rest.popleft()) if self._rest else None

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        size = self.slice_size
        if len(batch) > size:
            # Kept before the call: after a failure the rest goes on ("continue"), or the
            # retry's call on the same batch keeps it again.
            self._rest = deque(batch[start : start + size] for start in range(size, len(batch), size))
            self._rest_index = index
            batch = batch[:size]
        try:
            return await emitted(self.fn(list(batch), self.state, **self.kwargs))
        except Exception as exc:
            raise ItemError(list(batch), exc) from exc  # the whole slice is the failed item

    def snapshot(self) -> dict[Hashable, Any]:
        """``"meta"``: the input of the batch being sliced and its slices left, as lists. The
        ``StreamState`` is not included: it has its own entries."""
        return {"meta": (self._rest_index, [list(part) for part in self._rest])}

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        self._rest_index, rest = entries["meta"]
        self._rest = deque(list(part) for part in rest)

    def details(self) -> dict[str, float]:
        return {"state_bytes": float(self.state.size_bytes())}
