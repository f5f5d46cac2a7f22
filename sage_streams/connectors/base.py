"""What the runtime asks of a connector at checkpoints: positions for sources, epochs for sinks.

Items between ``Barrier(e - 1)`` and ``Barrier(e)`` belong to epoch ``e``. A
:class:`ReplayableSource` gives its batches with the position after each, and starts again from
any position it gave: the runtime stores the position at each barrier, and a restored run reads
from the last committed one. A :class:`TransactionalSink` writes each batch with its epoch; at
``Barrier(e)`` it makes epoch ``e``'s writes durable and returns a small plain-data record
(``pre_commit``), which the runtime commits in the store's transaction for epoch ``e``; once that
transaction has committed, ``commit(e)`` makes them final. A restored run first calls
``recover(E, record)`` with the last committed epoch ``E`` and its record: the sink drops
whatever it wrote after epoch ``E`` (a file truncated to the length in the record, rows of a later
epoch deleted), and the replay writes it again, once. So output is exactly once.

A source that must be told when what it gave is safe (a consumer group acknowledging entries,
a JetStream consumer acking messages) is also an :class:`AcknowledgingSource`: the runtime calls
``acknowledge(position)`` with the source's position once the epoch holding it has committed,
so nothing is acknowledged that a crash could still lose. Without checkpoints it is called as
each batch is handed on (the run gives at most once anyway).

A source that may wait long for its next entry (a socket, a stream it follows) says so with an
attribute ``live = True``: the runtime then reads it in a task of its own, so that barriers pass
while it waits and epochs commit while it is idle.

A source whose entries arrive as bytes or raw fields and are decoded per entry is a
:class:`DecodingSource`: ``create_stream`` runs ``decode`` as the first operator (``NAME.decode``),
so an entry that cannot be decoded is an error of that entry, through the stream's error
policy (``on_error``, dead letters), and the source's position still moves past it.

A part declares what it gives (:data:`Guarantee`); a graph gives the weakest of its parts
(``env.guarantee``): a source that cannot be read again, or a plain function sink, makes a
restored run repeat or lose what was in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "GUARANTEES",
    "AcknowledgingSource",
    "DecodingSource",
    "Guarantee",
    "ReplayableSource",
    "StoreSharing",
    "TransactionalSink",
    "weakest",
]

Guarantee: TypeAlias = Literal["exactly_once", "at_least_once", "at_most_once"]

GUARANTEES: Final[tuple[Guarantee, ...]] = ("exactly_once", "at_least_once", "at_most_once")
"""The guarantees, strongest first."""


def weakest(guarantees: list[Guarantee]) -> Guarantee:
    """The weakest of ``guarantees`` (``"exactly_once"`` for none)."""
    return max(guarantees, key=GUARANTEES.index, default="exactly_once")


@runtime_checkable
class ReplayableSource(Protocol):
    """A source read in batches, each with the position after it, from any position it gave.

    Used as ``env.create_stream(name, source=...)``. Positions are plain data (the checkpoint
    codec writes them): a byte offset, a (file index, offset) pair, an entry id.
    """

    guarantee: Guarantee

    def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """Batches of at most ``size`` items from ``position`` on (``None``: the start), each
        with the position just after it; an async generator, closed when the run ends."""
        ...


@runtime_checkable
class AcknowledgingSource(Protocol):
    """A replayable source told when a position of its own is safe to acknowledge."""

    async def acknowledge(self, position: Any) -> None:
        """Everything up to ``position`` (one a batch gave) is committed: acknowledge it to the
        server. Called from the checkpoints' task, in the order the positions were given; never
        for an epoch committed before the source's first batch (there is nothing to acknowledge)."""
        ...


@runtime_checkable
class DecodingSource(Protocol):
    """A source whose raw entries are decoded by an operator of their own (see above)."""

    def decode(self, entry: Any) -> Any:
        """The item of one raw ``entry``; raises for an entry that cannot be decoded."""
        ...


@runtime_checkable
class TransactionalSink(Protocol):
    """A sink that takes part in checkpoints (see the module docstring). Used as
    ``stream.sink(sink)``; its methods are called from one task, in this order per run:
    ``recover`` once, then ``write``\\* and ``pre_commit`` per epoch, ``commit`` after each
    epoch the store committed, ``close`` at the end however the run ended."""

    guarantee: Guarantee

    async def recover(self, epoch: int | None, record: Any) -> None:
        """Before the first write of a run: drop what was written after ``epoch`` (the last
        committed, with its ``record``), or everything if ``epoch`` is ``None``."""
        ...

    async def write(self, batch: list[Any], epoch: int) -> None:
        """Write ``batch``, which belongs to ``epoch``."""
        ...

    async def pre_commit(self, epoch: int) -> Any:
        """Make every write of epochs up to ``epoch`` durable; return the plain-data record
        ``recover`` will be given if ``epoch`` is the last one committed."""
        ...

    async def commit(self, epoch: int) -> None:
        """The store has committed ``epoch``: make its writes final (visible, if they are not)."""
        ...

    async def close(self) -> None:
        """Release files and connections."""
        ...


@runtime_checkable
class StoreSharing(Protocol):
    """A transactional sink that can write in the checkpoint store's own transactions, so that
    an epoch's output and its checkpoint commit as one (a SQLite sink into the store's file)."""

    def share_store(self, store: object) -> bool:
        """Called once per run before ``recover``, with the run's checkpoint store: write each
        epoch's output in the store's commit of that epoch from now on, if this sink can with
        this store; whether it does."""
        ...
