"""The heads that drive connectors: a replayable source read from a position, a transactional sink.

A :class:`ReplayHead` reads a :class:`~sage_streams.connectors.ReplayableSource` batch by
batch, keeping the position after each, so that a barrier reports where the source stands and a
restored run starts there; without checkpoints, an
:class:`~sage_streams.connectors.AcknowledgingSource` acknowledges each batch as it is handed
on (with them, the checkpointer acknowledges committed positions). A :class:`SinkHead` heads
the chain of a sink node that writes to a
:class:`~sage_streams.connectors.TransactionalSink`: it recovers the sink when the run starts
(dropping what was written after the last committed epoch), writes each batch with the epoch it
belongs to, pre-commits at each barrier (the record goes into the epoch's store transaction),
and the checkpointer commits the sink once the store has (``Checkpointer.commit_sinks``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import anyio

from sage_streams._graph.node import Node
from sage_streams._runtime.checkpoints import Checkpointer, close_sink
from sage_streams._runtime.counters import Counters
from sage_streams._runtime.failures import OperatorFailure
from sage_streams._runtime.heads import SourceBarriers
from sage_streams.channel import ABORTED, END, Barrier, Control, Receiver
from sage_streams.connectors import AcknowledgingSource, ReplayableSource, StoreSharing, TransactionalSink

__all__ = ["ReplayHead", "SinkHead"]


class ReplayHead:
    """Reads a replayable source in batches from a position, reporting it at each barrier."""

    def __init__(self, node: Node, batch_size: int, barriers: SourceBarriers | None) -> None:
        assert isinstance(node.source, ReplayableSource)
        self.node = node
        self.source: ReplayableSource = node.source
        self.batch_size = batch_size
        self.barriers = barriers
        self.position: Any = None
        """Where the source stands: the position after the last batch given out (``None``:
        the start)."""
        self._batches: AsyncIterator[tuple[list[Any], Any]] | None = None
        self._acknowledger = (
            self.source if barriers is None and isinstance(self.source, AcknowledgingSource) else None
        )
        """The source, when it acknowledges each batch as it is handed on (no checkpoints)."""
        self._live = barriers is not None and getattr(self.source, "live", False) is True
        """Whether barriers must pass while a read waits (a live source, with checkpoints)."""
        self._read: asyncio.Future[tuple[list[Any], Any]] | None = None
        """The read of the next batch in flight, for a live source (see ``_read_or_ring``)."""

    def start_at(self, position: Any) -> None:
        """Start from ``position`` (a restored checkpoint's)."""
        self.position = position

    async def next_batch(self) -> Sequence[Any] | Barrier | None:
        if self.barriers is not None and (barrier := self.barriers.take(self.position)) is not None:
            return barrier
        try:
            if self._batches is None:
                self._batches = self.source.batches(self.position, self.batch_size)
            if not self._live:
                batch, position = await anext(self._batches)
            else:
                while (read := await self._read_or_ring()) is None:
                    # a barrier came while the source waited for data
                    assert self.barriers is not None
                    if (barrier := self.barriers.take(self.position)) is not None:
                        return barrier
                batch, position = read
            if self._acknowledger is not None:
                await self._acknowledger.acknowledge(position)
        except StopAsyncIteration:
            return None
        except Exception as exc:
            exc.add_note(f"sage_streams: raised while reading source {self.node.name!r}")
            raise OperatorFailure(self.node.name, exc) from exc
        self.position = position
        return batch

    async def _read_or_ring(self) -> tuple[list[Any], Any] | None:
        """The next batch, or ``None`` once a barrier is owed first.

        A live source (``source.live``: a socket, a followed stream) may wait a long time for
        its next entry; its barriers must not wait with it, or no epoch could commit while it is
        idle. The read runs as a task that outlives a barrier: the next call waits for the same
        read. (A task per batch costs a few microseconds, so sources that never wait long, files
        and bounded reads, are read in place.)
        """
        assert self._batches is not None
        assert self.barriers is not None
        if self._read is None:
            self._read = asyncio.ensure_future(anext(self._batches))
        if not self._read.done():
            rung = asyncio.get_running_loop().create_future()
            self.barriers.bell = partial(_ring, rung)
            try:
                await asyncio.wait((self._read, rung), return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.barriers.bell = None
            if not self._read.done():
                return None
        read, self._read = self._read, None
        return read.result()

    async def close(self, completed: bool) -> None:
        read, self._read = self._read, None
        batches, self._batches = self._batches, None
        with anyio.CancelScope(shield=True):
            if read is not None:
                read.cancel()  # the generator sees the cancellation at its await and closes
                await asyncio.gather(read, return_exceptions=True)
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()


def _ring(rung: asyncio.Future[None]) -> None:
    if not rung.done():
        rung.set_result(None)


class SinkHead:
    """Writes a transactional sink's input, epoch by epoch; passes the barriers on."""

    def __init__(
        self, node: Node, receiver: Receiver, counters: Counters, checkpointer: Checkpointer | None
    ) -> None:
        assert node.sink is not None
        self.node = node
        self.sink: TransactionalSink = node.sink
        self.receiver = receiver
        self.counters = counters
        self.checkpointer = checkpointer
        self.record: Any = None
        """The sink's record at its end (its last pre-commit), for the last epoch."""
        self._recovered = False
        self._epoch = 1

    async def next_batch(self) -> Sequence[Any] | Control | None:
        if not self._recovered:
            await self._recover()
        while True:
            message = await self.receiver.receive()
            if type(message) is list:
                self.counters.items_in += len(message)
                await self._do(self.sink.write(message, self._epoch), "write")
                continue
            if type(message) is Barrier:
                record = await self._do(self.sink.pre_commit(message.epoch), "pre-commit")
                assert self.checkpointer is not None
                self.checkpointer.report_sink(message.epoch, self.node.name, record)
                self._epoch = message.epoch + 1
                return message
            if message is END:
                self.record = await self._do(self.sink.pre_commit(self._epoch), "pre-commit")
                return None
            if message is ABORTED:
                await anyio.sleep_forever()  # the failing producer's task group cancels us
            assert isinstance(message, Control)
            return message

    async def _recover(self) -> None:
        """Drop what the sink holds beyond the last committed epoch (all of it, with none)."""
        self._recovered = True
        epoch, record = None, None
        if self.checkpointer is not None:
            epoch, record = self.checkpointer.restored_sink(self.node.name)
            self.checkpointer.add_sink(self.node.name, self.sink)
            if isinstance(self.sink, StoreSharing):
                self.sink.share_store(self.checkpointer.store)
        if epoch is not None:
            self._epoch = epoch + 1
        await self._do(self.sink.recover(epoch, record), "recovery")

    async def _do(self, step: Any, what: str) -> Any:
        try:
            return await step
        except Exception as exc:
            exc.add_note(f"sage_streams: raised by the {what} of sink {self.node.name!r}")
            raise OperatorFailure(self.node.name, exc) from exc

    async def close(self, completed: bool) -> None:
        """Release the input; the sink itself is closed by the checkpoints once they have
        committed its last epoch, or here when the run takes none."""
        self.receiver.close()
        if self.checkpointer is None:
            await close_sink(self.node.name, self.sink, completed)
