"""The lazy dataflow graph: nodes that say what to run, never how.

Building a graph only creates :class:`Node` objects; planning (``_runtime``) turns them into
tasks and channels, and keeps each run's counters (``_runtime.counters``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from sage_streams._typing import check_seconds
from sage_streams.channel import ChannelConfig
from sage_streams.functions import resolve_function

if TYPE_CHECKING:
    from sage_streams._typing import Source, UserFunction
    from sage_streams.connectors import ReplayableSource, TransactionalSink
    from sage_streams.operators.base import Operator
    from sage_streams.operators.calls.config import CallConfig
    from sage_streams.state import StreamState

__all__ = ["FUSABLE", "ErrorPolicy", "Node", "NodeKind", "nearest_policy"]

NodeKind: TypeAlias = Literal[
    "push", "pull", "map", "filter", "flat_map", "key_by", "sink", "operator", "side", "dead_letters"
]

FUSABLE: frozenset[str] = frozenset({"map", "filter", "flat_map", "key_by", "sink"})
"""Stateless single-input kinds, chained into their producer's task when it has no other consumer."""

# An "operator" node runs an Operator made by ``node.operator()`` for each run, reading one
# channel per input (configured by ``node.channel_config``). A "side" node is the side output
# ``node.port`` of its one input, an operator node. A "dead_letters" node has no inputs: it is
# the ``errors()`` stream of the error policy ``node.errors_of``.


class Node:
    """One operator or source of a graph: what it runs, never its run's state."""

    __slots__ = (
        "calls",
        "channel_config",
        "env",
        "errors_of",
        "fn",
        "inputs",
        "key_func",
        "kind",
        "name",
        "operator",
        "policy",
        "port",
        "reported_kind",
        "sink",
        "source",
        "state",
    )

    def __init__(
        self,
        kind: NodeKind,
        name: str,
        inputs: tuple[Node, ...] = (),
        *,
        fn: Callable[..., Any] | None = None,
        source: Source | ReplayableSource | None = None,
    ) -> None:
        self.kind = kind
        self.reported_kind: str = kind
        """The kind ``env.metrics()`` shows: ``kind``, or what a step of that kind stands for
        (``"aggregate"`` for the step that carries a window's aggregates)."""
        self.name = name
        self.inputs = inputs
        self.fn = fn
        self.source = source
        self.key_func: Callable[..., Any] | None = None
        self.operator: Callable[[], Operator] | None = None
        self.port: str | None = None
        self.state: StreamState | None = None
        """The :class:`~sage_streams.StreamState` the node's user function is handed (a process
        function, a window function), for checkpoints."""
        self.sink: TransactionalSink | None = None
        """A sink node's :class:`~sage_streams.connectors.TransactionalSink`, when it writes to
        one instead of calling a function."""
        self.calls: CallConfig | None = None
        """How a map, filter, flat_map or sink calls its function when calls overlap; ``None``
        for one call at a time on the loop (a step of its producer's chain)."""
        self.channel_config: ChannelConfig | None = None
        """An operator node's configuration of its input channels (``configure_backpressure``)."""
        self.errors_of: ErrorPolicy | None = None
        """A dead-letter node's policy: the one whose ``errors()`` stream it is."""
        self.env: Any = None
        self.policy: ErrorPolicy | None = None
        """The error policy set on this node; without one (or one not set yet) the node follows
        the nearest upstream (see :func:`nearest_policy`)."""

    def governing_policy(self) -> ErrorPolicy | None:
        """The error policy this node's errors go to (see :func:`nearest_policy`): its own,
        else the nearest upstream, so a policy covers what is downstream of it, joins and other
        operators of several inputs included; ``None`` if there is none (every error stops the
        graph). A dead-letter stream has no inputs, so it inherits nothing: its errors are not
        those of the operators that feed it.

        A node's own set policy is never one whose ``errors()`` stream feeds it (the node's
        inputs existed before the object its policy was set on: its ``DataStream``, or the
        ``ConnectedStreams`` it was made from), and a node of one input has that input's
        upstream, so the walk up a chain needs no search until it meets several inputs."""
        node = self
        while len(node.inputs) == 1 and (node.policy is None or not node.policy.is_set):
            node = node.inputs[0]
        if node.policy is not None and node.policy.is_set:
            return node.policy
        return nearest_policy(node.inputs)

    def __repr__(self) -> str:
        return f"<Node {self.kind} {self.name!r}>"


def nearest_policy(nodes: Sequence[Node]) -> ErrorPolicy | None:
    """The set policy nearest upstream of ``nodes`` (themselves at distance 0), or ``None``.

    Nearest means the fewest edges up; between policies at the same distance, the one reached
    through the earlier input wins (breadth first, inputs in their order: ``ConnectedStreams``
    order, at the operator where the paths part). A policy whose own ``errors()`` stream is
    upstream is passed over: its dead-letter stream ends only when every operator under it has,
    so an operator it feeds cannot be one of them.
    """
    frontier = list(nodes)
    seen = set(frontier)
    found: list[ErrorPolicy] = []
    feeding: set[ErrorPolicy] = set()
    while frontier:
        upstream: list[Node] = []
        for node in frontier:
            if node.policy is not None and node.policy.is_set:
                found.append(node.policy)
            if node.errors_of is not None:
                feeding.add(node.errors_of)
            for producer in node.inputs:
                if producer not in seen:
                    seen.add(producer)
                    upstream.append(producer)
        frontier = upstream
    return next((policy for policy in found if policy not in feeding), None)


class ErrorPolicy:
    """The error configuration of one ``ConnectedStreams`` or ``DataStream`` (its ``owner``).

    Building a graph only sets these fields; each run gets a :class:`PolicyRun` with the state.
    """

    def __init__(self, owner: object, errors_name: str) -> None:
        self.owner = owner
        self.errors_name = errors_name
        """The name of the ``errors()`` stream."""
        self.handler: Callable[..., Any] | None = None
        self.max_retries = 3
        self.backoff = 0.0
        self.max_errors: int | None = None
        self.time_window = 0.0
        self.dead_letters: Node | None = None
        """The node of the ``errors()`` stream, once somebody asked for it."""

    @property
    def is_set(self) -> bool:
        """Whether anything made this policy one to follow: a handler, a threshold, or an
        ``errors()`` stream asked for. A ``ConnectedStreams`` makes its policy up front; until
        it is set, its operators follow the policy of their inputs."""
        return self.handler is not None or self.max_errors is not None or self.dead_letters is not None

    def set_handler(self, handler: UserFunction, max_retries: int, backoff: float) -> None:
        """Validate and set what ``on_error`` was given."""
        function = resolve_function(handler, "error handler")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.handler = function
        self.max_retries = max_retries
        self.backoff = check_seconds("backoff", backoff)

    def set_threshold(self, max_errors: int, time_window: float) -> None:
        """Validate and set what ``set_error_threshold`` was given."""
        if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 0:
            raise ValueError(f"max_errors must be an int >= 0, got {max_errors!r}")
        self.time_window = check_seconds("time_window", time_window, allow_zero=False)
        self.max_errors = max_errors
