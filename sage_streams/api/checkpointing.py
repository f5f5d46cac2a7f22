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
from sage_streams.connectors import GUARANTEES, Guarantee, ReplayableSource, weakest
from sage_streams.errors import StreamError
from sage_streams.time import Clock

__all__ = ["Checkpointing", "checked_guarantee"]


def checked_guarantee(required: object) -> Guarantee | None:
    """An environment's ``required_guarantee``, checked."""
    if required is None or required in GUARANTEES:
        return required
    raise ValueError(f"required_guarantee must be one of {GUARANTEES} or None, got {required!r}")


class Checkpointing:
    """``guarantee``, ``reset_checkpoints()`` and the checkpointer of each run."""

    name: str
    clock: Clock
    checkpoint_interval: float
    required_guarantee: Guarantee | None
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

        An environment made with ``required_guarantee=`` refuses to start a run whose graph
        gives less, naming each part that falls short.
        """
        return weakest([given for _, given in self._guarantee_parts()])

    def _guarantee_parts(self) -> list[tuple[str, Guarantee]]:
        """Each part of the graph that bounds the guarantee, described, with what it gives."""
        if self._checkpoints is None:
            return [(f"environment {self.name!r} (it takes no checkpoints)", "at_most_once")]
        parts: list[tuple[str, Guarantee]] = []
        for node in self._nodes:
            if node.kind == "push":
                parts.append((f"push stream {node.name!r}", "at_most_once"))
            elif node.kind == "pull":
                source = node.source
                if isinstance(source, ReplayableSource):
                    parts.append((f"source {node.name!r} ({type(source).__name__})", source.guarantee))
                else:
                    replayable = type(source) in (list, tuple, range)
                    given: Guarantee = "exactly_once" if replayable else "at_most_once"
                    parts.append((f"source {node.name!r} ({type(source).__name__})", given))
            elif node.kind == "sink":
                if node.sink is None:
                    parts.append((f"sink {node.name!r} (a function)", "at_least_once"))
                else:
                    parts.append((f"sink {node.name!r} ({type(node.sink).__name__})", node.sink.guarantee))
        return parts

    def _check_guarantee(self) -> None:
        """Refuse to run a graph that gives less than the environment's ``required_guarantee``."""
        required = self.required_guarantee
        if required is None:
            return
        short = [
            f"{part} gives {given}"
            for part, given in self._guarantee_parts()
            if GUARANTEES.index(given) > GUARANTEES.index(required)
        ]
        if short:
            raise StreamError(
                f"environment {self.name!r} requires {required}, but "
                + "; ".join(short)
                + f" (env.guarantee is {self.guarantee})"
            )

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
