"""ConnectedStreams: operators over two or more streams (process, join, synchronize).

A connected operator reads one channel per input stream, so each input keeps its own bound; the
runtime feeds the operator whichever wanted input has data (see ``_runtime.operator_head``).
Every operator made from one ``ConnectedStreams`` is handed the same :class:`StreamState`.

Example::

    connected = ConnectedStreams([clicks, views])

    def merge(streams, state):
        return [dict(item, source=reader.name) for reader in streams for item in reader]

    merged = connected.process(merge)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sage_streams._graph.node import ErrorPolicy, Node, nearest_policy
from sage_streams._typing import CALL_OPTIONS, CallOptions, T, UserFunction, check_positive_int, check_seconds
from sage_streams.api.handling import ErrorHandling
from sage_streams.api.stream import DataStream
from sage_streams.api.windowing import Windowing
from sage_streams.channel import ChannelConfig, validate_strategy
from sage_streams.channel.config import Strategy
from sage_streams.channel.overflow import Codec, CodecName, resolve_codec
from sage_streams.errors import StreamError
from sage_streams.functions import emitted, is_async_callable, items_of, resolve_function
from sage_streams.operators.base import Operator
from sage_streams.operators.calls.config import call_config
from sage_streams.operators.joins.config import JoinType, TableJoinType, join_config, table_join_config
from sage_streams.operators.joins.operator import JoinOperator, TableJoinOperator
from sage_streams.operators.process import BatchProcessOperator, ProcessOperator, StreamReader
from sage_streams.operators.sync.config import SyncType, sync_config
from sage_streams.operators.sync.operator import SyncOperator
from sage_streams.operators.timestamps import TimestampSpec
from sage_streams.state import StreamState

if TYPE_CHECKING:
    from sage_streams.api.environment import LocalEnvironment

__all__ = ["ConnectedStreams", "JoinedStream", "StreamReader", "SynchronizedStream", "join_table"]


class ConnectedStreams(ErrorHandling, Windowing):
    """Two or more streams processed together.

    Args:
        streams: the input streams, in the order the operators see them.
        state: the :class:`StreamState` handed to every operator made from these streams (a new
            one if not given).

    Streams of different environments are connected into one graph when at most one of them was
    made by a ``LocalEnvironment`` you created: streams made by ``DataStream(name)`` join it.

    ``on_error``, ``set_error_threshold`` and ``errors()`` (see :mod:`sage_streams.api.handling`) cover
    every operator made from these streams and what is downstream of them, sinks included.
    Until one of them is called, those operators follow the policy of their inputs: the nearest
    one upstream, the first input's when two are as near.
    """

    def __init__(self, streams: Sequence[DataStream[Any]], *, state: StreamState | None = None) -> None:
        streams = list(streams)
        if len(streams) < 2 or not all(isinstance(s, DataStream) for s in streams):
            raise TypeError(f"ConnectedStreams takes a list of two or more DataStreams, got {streams!r}")
        if state is not None and not isinstance(state, StreamState):
            raise TypeError(f"state must be a StreamState, got {type(state).__name__}")
        _connect_environments(streams)
        self.streams = streams
        self.state = state if state is not None else StreamState()
        self._channel_config: ChannelConfig | None = None
        self._policy = ErrorPolicy(self, "errors(" + ", ".join(s.name for s in streams) + ")")
        self._nodes: list[Node] = []

    def __repr__(self) -> str:
        return f"<ConnectedStreams {[s.name for s in self.streams]}>"

    @property
    def env(self) -> LocalEnvironment:
        """The environment whose graph these streams belong to."""
        return self.streams[0].env

    def _operator(self, label: str, name: str | None, factory: Callable[[], Operator]) -> Node:
        node = self.env.add_node(Node("operator", name or label, tuple(s._node for s in self.streams)))
        node.operator = factory
        node.channel_config = self._channel_config
        node.policy = self._policy
        self._nodes.append(node)
        return node

    def process(
        self, processor_func: UserFunction, *, name: str | None = None, **kwargs: Any
    ) -> DataStream[Any]:
        """A stream of what ``processor_func(streams, state, **kwargs)`` returns.

        The function is called whenever items arrive on any input, with one
        :class:`StreamReader` per input (in the order given) and the shared state; it may be
        ``async``. A list, tuple or generator it returns emits each element, ``None`` nothing,
        anything else one item. Items it does not read stay for the next call; at the end of
        input it is called once more if items are left, and items still unread then are an
        error (nothing is dropped silently). An input with ``buffer_size`` unread items is not
        read until the function reads some (backpressure).
        """
        fn = resolve_function(processor_func, "process function")
        names = [s.name for s in self.streams]
        limit = self.env.buffer_size
        state = self.state
        label = f"process({getattr(fn, '__name__', 'fn')})"
        node = self._operator(label, name, lambda: ProcessOperator(fn, names, state, kwargs, limit))
        node.state = state
        return DataStream._of(self.env, node)

    def join(
        self,
        join_type: JoinType = "inner",
        key_func: UserFunction | tuple[UserFunction, UserFunction] | None = None,
        condition: UserFunction | None = None,
        *,
        within: float | None = None,
        timestamp: TimestampSpec = "timestamp",
        name: str | None = None,
    ) -> JoinedStream:
        """A streaming join of the two streams: a stream of ``(left, right)`` pairs.

        ``key_func`` is one function for both sides or a pair ``(left_key, right_key)``;
        ``condition(left, right)`` is a theta condition, alone or with keys; ``within`` makes it
        an event-time interval join. ``join_type`` is ``"inner"``, ``"left"``, ``"right"`` or
        ``"outer"``; a missing side is ``None``. See ``sage_streams.operators.joins.state`` for the semantics.

        The join buffers both sides: an item stays until the other input ends or ``within``
        evicts it, so against a profile stream that never ends every event is kept, and a
        profile update meets every past event of its key again. ``env.metrics()`` reports the
        items held in ``details["buffered"]`` (``buffered_left + buffered_right``). To enrich
        events with the current row of a changing table, use ``DataStream.join_table``.
        """
        if len(self.streams) != 2:
            raise StreamError(f"a join takes exactly two streams, these are {len(self.streams)}")
        keys = _resolve_keys(key_func)
        test = resolve_function(condition, "join condition") if condition is not None else None
        config = join_config(join_type, keys, test, within=within, timestamp=timestamp)
        env = self.env
        node = self._operator(
            f"join({join_type})",
            name,
            lambda: JoinOperator(config.build(inline=env.inlining(), codegen=env.codegen)),
        )
        joined = JoinedStream._of(self.env, node)
        joined._state = self.state
        return joined

    def synchronize(
        self,
        sync_type: SyncType = "timestamp",
        tolerance: float = 1.0,
        *,
        timestamp: TimestampSpec = "timestamp",
        sync_event: object = None,
        name: str | None = None,
    ) -> SynchronizedStream:
        """A stream of tuples with one entry per input, aligned by timestamp or by markers.

        ``"timestamp"``: one item per input, within ``tolerance`` of each other, each item used
        once; items that can no longer match go to ``.unmatched()``. ``"event"``: each input is
        held at its ``sync_event`` marker until every input has reached one, then one tuple of
        per-input lists (markers not included) is emitted. See ``sage_streams.operators.sync.state``.
        """
        config = sync_config(  # validates the arguments now, not at run time
            len(self.streams),
            sync_type,
            tolerance,
            timestamp=timestamp,
            sync_event=sync_event,
            max_buffered=self.env.buffer_size,
        )

        def factory() -> Operator:
            return SyncOperator(config.build())

        node = self._operator(f"synchronize({sync_type})", name, factory)
        synced = SynchronizedStream._of(self.env, node)
        synced._state = self.state
        return synced

    def _window_inputs(self) -> tuple[Sequence[DataStream[Any]], StreamState, UserFunction | None]:
        """These streams, their shared state, and no default key."""
        return self.streams, self.state, None

    def _windowed(self, node: Node) -> None:
        """A window across these streams is under their error policy and channel bounds."""
        node.policy = self._policy
        node.channel_config = self._channel_config
        self._nodes.append(node)

    def _error_policy(self) -> ErrorPolicy:
        return self._policy

    def _policy_in_effect(self) -> ErrorPolicy:
        """This object's policy once set; until then the nearest one its inputs are under (the
        first input's on a tie), else its own."""
        if self._policy.is_set:
            return self._policy
        return nearest_policy([s._node for s in self.streams]) or self._policy

    def configure_backpressure(
        self,
        strategy: Strategy = "block",
        buffer_size: int = 1000,
        timeout: float | None = None,
        *,
        codec: CodecName | Codec = "pickle",
    ) -> ConnectedStreams:
        """Bound every input channel of this connected operator at ``buffer_size`` items.

        ``"block"`` makes a producer wait when its channel is full; after ``timeout`` seconds
        the batch it could not deliver gets ``BackpressureTimeout`` through the error handler
        (``"continue"`` drops it, counted; ``"retry"`` waits again). ``"drop"`` drops the new
        items and ``"drop_oldest"`` the oldest ones, counted in the metrics. ``"buffer"`` never
        makes a producer wait: what does not fit spills, serialized with ``codec`` (``"pickle"``,
        ``"json"`` or an object with ``dumps``/``loads``), to a temporary SQLite file and comes
        back in order; an item the codec cannot serialize is a ``SpillError`` of that item.
        Control messages (end of stream) are never dropped. Applies to the operators made from
        these streams, before or after this call.
        """
        check_positive_int("buffer_size", buffer_size)
        if timeout is not None:
            check_seconds("timeout", timeout, allow_zero=False, why="give None to wait without a limit")
        self._channel_config = ChannelConfig(
            buffer_size, validate_strategy(strategy), timeout, resolve_codec(codec)
        )
        for node in self._nodes:
            node.channel_config = self._channel_config
        return self


class _BatchStream(DataStream[T]):
    """A stream whose ``process(fn)`` receives whole batches (lists) and the shared state."""

    _state: StreamState

    def process(self, fn: UserFunction, *, name: str | None = None, **kwargs: Any) -> DataStream[Any]:
        """A stream of what ``fn(batch, state, **kwargs)`` returns, per batch of this stream.

        ``concurrency``, ``ordered`` (``True`` or ``False``: a batch has no one key),
        ``timeout`` and ``in_thread`` are those of :meth:`DataStream.map`, applied to the calls
        of ``fn``, one per batch (so those names are not passed on to ``fn`` in ``kwargs``);
        an error fails the call's batch, as without them.
        """
        function = resolve_function(fn, "process function")
        state = self._state
        label = name or f"process({getattr(function, '__name__', 'fn')})"
        options = CallOptions(**{key: kwargs.pop(key) for key in CALL_OPTIONS if key in kwargs})  # type: ignore[typeddict-item]
        calls = call_config(_per_batch(function, state, kwargs), "process function", options, stream_key=None)
        if calls is not None:
            node = Node("flat_map", label, (self._node,), fn=_per_batch(function, state, kwargs))
            node.calls = replace(calls, per_batch=True)
            node.state = state
            node.reported_kind = "operator"
            return DataStream._of(self.env, self.env.add_node(node))
        node = self.env.add_node(Node("operator", label, (self._node,)))
        node.operator = lambda: BatchProcessOperator(function, state, kwargs)
        node.state = state
        return DataStream._of(self.env, node)


def _per_batch(fn: Callable[..., Any], state: StreamState, kwargs: dict[str, Any]) -> Callable[[Any], Any]:
    """``fn(batch, state, **kwargs)`` as a function of the batch alone, giving its items as a
    list: ``async`` if ``fn`` is, so that its calls may overlap."""
    if is_async_callable(fn):

        async def apply_async(batch: list[Any]) -> list[Any]:
            return list(await emitted(fn(batch, state, **kwargs)))

        return apply_async

    def apply(batch: list[Any]) -> list[Any]:
        return list(items_of(fn(batch, state, **kwargs)))

    return apply


class JoinedStream(_BatchStream[tuple[Any, Any]]):
    """The ``(left, right)`` pairs of a join; ``process(fn)`` receives lists of pairs."""


class SynchronizedStream(_BatchStream[tuple[Any, ...]]):
    """The tuples of a synchronization; ``unmatched()`` is the stream of items left over."""

    def unmatched(self) -> DataStream[Any]:
        """Items that can no longer be part of a tuple (``"timestamp"`` synchronization)."""
        return self._side_output("unmatched")


def _resolve_keys(key_func: Any) -> Any:
    if key_func is None:
        return None
    if isinstance(key_func, tuple | list):
        if len(key_func) != 2:
            raise TypeError(f"key_func pair must be (left_key, right_key), got {len(key_func)} functions")
        return tuple(resolve_function(fn, "join key function") for fn in key_func)
    return resolve_function(key_func, "join key function")


def join_table(
    events: DataStream[Any],
    table: DataStream[Any],
    key_func: UserFunction | tuple[UserFunction, UserFunction],
    join_type: TableJoinType = "inner",
    *,
    value_func: UserFunction | None = None,
    timestamp: TimestampSpec | None = None,
    name: str | None = None,
) -> DataStream[tuple[Any, Any]]:
    """The node of ``events.join_table(table, ...)`` (see ``DataStream.join_table``): the config
    is checked now, and the join follows the error policy that governs the events."""
    if not isinstance(table, DataStream):
        raise TypeError(f"join_table takes the table as a DataStream, got {table!r}")
    if table is events:
        raise StreamError(f"a stream cannot be joined as a table with itself ({events.name!r})")
    keys = _resolve_keys(key_func)
    value = resolve_function(value_func, "table value function") if value_func is not None else None
    config = table_join_config(join_type, keys, value_func=value, timestamp=timestamp)
    _connect_environments([events, table])
    env = events.env
    label = name or f"join_table({join_type})"
    node = env.add_node(Node("operator", label, (events._node, table._node)))
    event_time = timestamp is not None
    node.operator = lambda: TableJoinOperator(
        config.build(inline=env.inlining(), codegen=env.codegen), event_time=event_time
    )
    node.policy = events._policy_in_effect()
    return DataStream._of(env, node)


def _connect_environments(streams: Sequence[DataStream[Any]]) -> None:
    """Put every stream into one environment, or say why they cannot be."""
    environments: list[LocalEnvironment] = []
    for stream in streams:
        if stream.env not in environments:
            environments.append(stream.env)
    chosen = [env for env in environments if not env._implicit]
    if len(chosen) > 1:
        names = ", ".join(repr(env.name) for env in chosen)
        raise StreamError(f"cannot connect streams of different environments ({names}): build them in one")
    target = chosen[0] if chosen else environments[0]
    for env in environments:
        if env is not target:
            target._adopt(env)
