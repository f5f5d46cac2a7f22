"""The checkpoint side of an environment: its store, a run's checkpointer, the guarantee.

:class:`Checkpointing` is the part of :class:`~sage_streams.LocalEnvironment` that reads its
``checkpoints``, ``checkpoint_interval`` and ``checkpoint_codec`` settings: a run gets a
:class:`~sage_streams._runtime.Checkpointer` over a store of its own (a new
:class:`~sage_streams.checkpoint.SqliteStore` for a path), and ``env.guarantee`` says what a
crash and a restart leave of the output.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sage_streams._graph.node import Node
from sage_streams._runtime import Checkpointer
from sage_streams.checkpoint import CheckpointStore, SqliteStore, StateCodec
from sage_streams.connectors import Guarantee, ReplayableSource, weakest
from sage_streams.errors import StreamError
from sage_streams.time import Clock

__all__ = ["Checkpointing"]


class Checkpointing:
    """``guarantee``, ``reset_checkpoints()`` and the checkpointer of each run."""

    name: str
    clock: Clock
    checkpoint_interval: float
    _checkpoints: str | os.PathLike[str] | CheckpointStore | None
    _codec: StateCodec
    _nodes: list[Node]

    if TYPE_CHECKING:

        @property
        def is_running(self) -> bool: ...

    @property
    def guarantee(self) -> Guarantee:
        """What a crash and a restart leave of the output: the weakest of the graph's parts.

        Without checkpoints a crash loses everything: ``"at_most_once"``. With them, a source
        read again from its position (a list, tuple or range; a
        :class:`~sage_streams.connectors.ReplayableSource` as it declares) and a transactional
        sink give ``"exactly_once"``; a function sink (and a ``collect()`` or ``async for``
        reader) is called again for what came after the last committed epoch:
        ``"at_least_once"``; a source that cannot be read again (a push stream, an iterator, an
        async source) loses what it had given after that epoch: ``"at_most_once"``.
        """
        if self._checkpoints is None:
            return "at_most_once"
        parts: list[Guarantee] = []
        for node in self._nodes:
            if node.kind == "push":
                parts.append("at_most_once")
            elif node.kind == "pull":
                source = node.source
                if isinstance(source, ReplayableSource):
                    parts.append(source.guarantee)
                else:
                    parts.append("exactly_once" if type(source) in (list, tuple, range) else "at_most_once")
            elif node.kind == "sink":
                parts.append("at_least_once" if node.sink is None else node.sink.guarantee)
        return weakest(parts)

    def _store(self) -> CheckpointStore | None:
        """The store of a run (a new :class:`SqliteStore` each run for a path: a store is
        opened at the start of a run and closed at its end)."""
        checkpoints = self._checkpoints
        if isinstance(checkpoints, str | os.PathLike):
            return SqliteStore(checkpoints)
        return checkpoints

    def _checkpointer(self) -> Checkpointer | None:
        """A run's checkpoints, if this environment takes them."""
        store = self._store()
        if store is None:
            return None
        return Checkpointer(
            self.name, store, self._codec, interval=self.checkpoint_interval, clock=self.clock
        )

    async def reset_checkpoints(self) -> None:
        """Forget every checkpoint of this job, so that the next run starts from nothing."""
        store = self._store()
        if store is None:
            raise StreamError(f"environment {self.name!r} takes no checkpoints")
        if self.is_running:
            raise StreamError(f"cannot reset the checkpoints of {self.name!r} while it runs")
        try:
            await store.reset()
        finally:
            await store.close()
