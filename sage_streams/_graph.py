"""The lazy dataflow graph: nodes that say what to run, never how.

Building a graph only creates :class:`Node` objects; planning (``_runtime``) turns them into
tasks and channels. A node's counters live here so that metrics survive the run that filled them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from sage_streams.channel import Receiver, Sender, create_channel

if TYPE_CHECKING:
    from sage_streams._typing import Source

__all__ = ["FUSABLE", "Node", "NodeKind"]

NodeKind: TypeAlias = Literal["push", "pull", "map", "filter", "flat_map", "key_by", "sink"]

FUSABLE: frozenset[str] = frozenset({"map", "filter", "flat_map", "key_by", "sink"})
"""Stateless single-input kinds, chained into their producer's task when it has no other consumer."""


class Node:
    """One operator or source of a graph, with its counters."""

    __slots__ = ("fn", "inbox", "inputs", "items_in", "items_out", "key_func", "kind", "name", "source")

    def __init__(
        self,
        kind: NodeKind,
        name: str,
        inputs: tuple[Node, ...] = (),
        *,
        fn: Callable[..., Any] | None = None,
        source: Source | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.inputs = inputs
        self.fn = fn
        self.source = source
        self.inbox: tuple[Sender, Receiver] | None = None
        self.key_func: Callable[..., Any] | None = None
        self.items_in = 0
        self.items_out = 0

    def open_inbox(self, capacity: int, batch_size: int) -> None:
        """Give a push node the channel that ``emit`` feeds, before any run needs it."""
        self.inbox = create_channel(f"{self.name}.inbox", capacity, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"<Node {self.kind} {self.name!r}>"
