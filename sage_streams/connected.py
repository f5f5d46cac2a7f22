"""ConnectedStreams: operators over two or more streams (process, join, synchronize).

A connected operator reads one channel per input stream, so each input keeps its own bound; the
runtime feeds the operator whichever wanted input has data (see ``_runtime._OperatorHead``).
Every operator made from one ``ConnectedStreams`` is handed the same :class:`StreamState`.

Example::

    connected = ConnectedStreams([clicks, views])

    def merge(streams, state):
        return [dict(item, source=reader.name) for reader in streams for item in reader]

    merged = connected.process(merge)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sage_streams._conventions import emitted
from sage_streams._graph import Node, Operator
from sage_streams._typing import UserFunction
from sage_streams.channel import ChannelConfig, validate_strategy
from sage_streams.errors import ItemError, NoDataError, StreamError
from sage_streams.functions import resolve_function
from sage_streams.joins import JoinState, join_config
from sage_streams.overflow import Codec, resolve_codec
from sage_streams.policy import ErrorHandling, ErrorPolicy
from sage_streams.state import StreamState
from sage_streams.stream import DataStream
from sage_streams.sync import SyncItemError, make_synchronizer

if TYPE_CHECKING:
    from sage_streams.environment import LocalEnvironment
    from sage_streams.windowing import WindowedStream

__all__ = ["ConnectedStreams", "JoinedStream", "StreamReader", "SynchronizedStream"]


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

    def _extend(self, items: Sequence[Any]) -> None:
        if items:
            self._batches.append(items)
            self._count += len(items)

    def _put_back(self) -> None:
        """Undo the reads of the current call, in their order."""
        self._items.extendleft(reversed(self._taken))
        self._count += len(self._taken)
        self._taken.clear()


class _ProcessOperator:
    """``fn(readers, state, **kwargs)`` called whenever items have arrived on any input.

    Everything that is ready on every input is read first, then the function is called once:
    it sees all streams, as the seed's complex-event example expects.
    """

    def __init__(
        self, fn: Callable[..., Any], names: list[str], state: StreamState, kwargs: dict[str, Any], limit: int
    ) -> None:
        self.fn = fn
        self.readers = [StreamReader(name) for name in names]
        self.state = state
        self.kwargs = kwargs
        self.limit = limit
        self.side: dict[str, list[Any]] = {}
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

    async def on_end(self, index: int) -> Sequence[Any]:
        return ()

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


class _BatchProcessOperator:
    """``fn(batch, state, **kwargs)`` on each batch of a joined or synchronized stream."""

    def __init__(self, fn: Callable[..., Any], state: StreamState, kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.state = state
        self.kwargs = kwargs
        self.side: dict[str, list[Any]] = {}

    def wants(self, index: int) -> bool:
        return True

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        try:
            return await emitted(self.fn(list(batch), self.state, **self.kwargs))
        except Exception as exc:
            raise ItemError(list(batch), exc) from exc  # the whole batch is the failed item

    async def on_end(self, index: int) -> Sequence[Any]:
        return ()

    async def on_idle(self) -> Sequence[Any]:
        return ()

    async def on_finish(self) -> Sequence[Any]:
        return ()

    def stalled(self) -> str:  # pragma: no cover - wants() is always true
        return "never stalls"

    def details(self) -> dict[str, float]:
        return {"state_bytes": float(self.state.size_bytes())}


class _JoinOperator:
    """Feeds a :class:`~sage_streams.joins.JoinState` from the two inputs."""

    def __init__(self, join: JoinState) -> None:
        self.join = join
        self.side: dict[str, list[Any]] = {}

    def wants(self, index: int) -> bool:
        return True

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        return self.join.push(index, batch)

    async def on_end(self, index: int) -> Sequence[Any]:
        return self.join.end(index)

    async def on_idle(self) -> Sequence[Any]:
        return ()

    async def on_finish(self) -> Sequence[Any]:
        return self.join.finish()

    def stalled(self) -> str:  # pragma: no cover - wants() is always true
        return "never stalls"

    def details(self) -> dict[str, float]:
        stats = self.join.stats()
        return {
            "probes": float(stats.probes),
            "matches": float(stats.matches),
            "misses": float(stats.probes - stats.hits),
            "hit_rate": stats.hit_rate,
            "buffered_left": float(stats.buffered_left),
            "buffered_right": float(stats.buffered_right),
        }


class _SyncOperator:
    """Feeds a synchronizer; items that can no longer match go to the ``unmatched`` side."""

    def __init__(self, synchronizer: Any) -> None:
        self.sync = synchronizer
        self.side: dict[str, list[Any]] = {"unmatched": []}
        self.emitted_tuples = 0

    def wants(self, index: int) -> bool:
        return bool(self.sync.wants(index))

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        try:
            return self._take(self.sync.push(index, batch))
        except SyncItemError as exc:
            raise ItemError(exc.item, exc.error, exc.index, self._take(exc.partial)) from exc.error

    async def on_end(self, index: int) -> Sequence[Any]:
        return self._take(self.sync.end(index))

    async def on_idle(self) -> Sequence[Any]:
        return ()

    async def on_finish(self) -> Sequence[Any]:
        return self._take(self.sync.finish())

    def _take(self, output: Any) -> Sequence[Any]:
        self.side["unmatched"].extend(output.unmatched)
        self.emitted_tuples += len(output.tuples)
        return list(output.tuples)

    def stalled(self) -> str:
        return "synchronization holds back every open input (each has a full buffer or waits at a marker)"

    def details(self) -> dict[str, float]:
        return {"tuples": float(self.emitted_tuples)}


class ConnectedStreams(ErrorHandling):
    """Two or more streams processed together.

    Args:
        streams: the input streams, in the order the operators see them.
        state: the :class:`StreamState` handed to every operator made from these streams (a new
            one if not given).

    Streams of different environments are connected into one graph when at most one of them was
    made by a ``LocalEnvironment`` you created: streams made by ``DataStream(name)`` join it.

    ``on_error``, ``set_error_threshold`` and ``errors()`` (see :mod:`sage_streams.policy`) cover
    every operator made from these streams and what is downstream of them, sinks included.
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
        node = self.env.add_node("operator", name or label, tuple(s._node for s in self.streams))
        node.operator = factory
        node.settings = self._channel_config
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
        node = self._operator(label, name, lambda: _ProcessOperator(fn, names, state, kwargs, limit))
        return DataStream._of(self.env, node)

    def join(
        self,
        join_type: str = "inner",
        key_func: Any = None,
        condition: UserFunction | None = None,
        *,
        within: float | None = None,
        timestamp: str | Callable[[Any], Any] = "timestamp",
        name: str | None = None,
    ) -> JoinedStream:
        """A streaming join of the two streams: a stream of ``(left, right)`` pairs.

        ``key_func`` is one function for both sides or a pair ``(left_key, right_key)``;
        ``condition(left, right)`` is a theta condition, alone or with keys; ``within`` makes it
        an event-time interval join. ``join_type`` is ``"inner"``, ``"left"``, ``"right"`` or
        ``"outer"``; a missing side is ``None``. See ``sage_streams.joins`` for the semantics.
        """
        if len(self.streams) != 2:
            raise StreamError(f"a join takes exactly two streams, these are {len(self.streams)}")
        keys = _resolve_keys(key_func)
        test = resolve_function(condition, "join condition") if condition is not None else None
        config = join_config(join_type, keys, test, within=within, timestamp=timestamp)  # type: ignore[arg-type]
        env = self.env
        node = self._operator(
            f"join({join_type})", name, lambda: _JoinOperator(JoinState(config, inline=env.inlining()))
        )
        joined = JoinedStream._of(self.env, node)
        joined._state = self.state
        return joined

    def synchronize(
        self,
        sync_type: str = "timestamp",
        tolerance: float = 1.0,
        *,
        timestamp: str | Callable[[Any], Any] = "timestamp",
        sync_event: Any = None,
        name: str | None = None,
    ) -> SynchronizedStream:
        """A stream of tuples with one entry per input, aligned by timestamp or by markers.

        ``"timestamp"``: one item per input, within ``tolerance`` of each other, each item used
        once; items that can no longer match go to ``.unmatched()``. ``"event"``: each input is
        held at its ``sync_event`` marker until every input has reached one, then one tuple of
        per-input lists (markers not included) is emitted. See ``sage_streams.sync``.
        """
        count = len(self.streams)
        limit = self.env.buffer_size

        def factory() -> Operator:
            return _SyncOperator(
                make_synchronizer(
                    count,
                    sync_type,
                    tolerance,
                    timestamp=timestamp,
                    sync_event=sync_event,
                    max_buffered=limit,
                )
            )

        factory()  # validates the arguments now, not at run time
        node = self._operator(f"synchronize({sync_type})", name, factory)
        synced = SynchronizedStream._of(self.env, node)
        synced._state = self.state
        return synced

    def window(
        self, window_type: str, size: float | None = None, slide: float | None = None, **options: Any
    ) -> WindowedStream:
        """Event-time windows across the streams: a stream of :class:`WindowData`.

        ``"tumbling"`` (size), ``"sliding"`` (size, slide) or ``"session"`` (timeout, the gap);
        keywords ``timestamp``, ``key_func``, ``out_of_orderness``, ``allowed_lateness`` and
        ``name`` as in :func:`sage_streams.windowing.window_node`. ``windowed.process(fn)`` calls
        ``fn(window_data, state)`` once per fired window, with this object's state.
        """
        from sage_streams.windowing import window_node

        windowed = window_node(self.env, self.streams, self.state, window_type, size, slide, **options)
        windowed._node.policy = self._policy
        windowed._node.settings = self._channel_config
        self._nodes.append(windowed._node)
        return windowed

    def _error_policy(self) -> ErrorPolicy:
        return self._policy

    def configure_backpressure(
        self,
        strategy: str = "block",
        buffer_size: int = 1000,
        timeout: float | None = None,
        *,
        codec: str | Codec = "pickle",
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
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive int, got {buffer_size!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self._channel_config = ChannelConfig(
            buffer_size, validate_strategy(strategy), timeout, resolve_codec(codec)
        )
        for node in self._nodes:
            node.settings = self._channel_config
        return self


class _BatchStream(DataStream[Any]):
    """A stream whose ``process(fn)`` receives whole batches (lists) and the shared state."""

    _state: StreamState

    def process(self, fn: UserFunction, *, name: str | None = None, **kwargs: Any) -> DataStream[Any]:
        """A stream of what ``fn(batch, state, **kwargs)`` returns, per batch of this stream."""
        function = resolve_function(fn, "process function")
        state = self._state
        label = f"process({getattr(function, '__name__', 'fn')})"
        node = self.env.add_node("operator", name or label, (self._node,))
        node.operator = lambda: _BatchProcessOperator(function, state, kwargs)
        return DataStream._of(self.env, node)


class JoinedStream(_BatchStream):
    """The ``(left, right)`` pairs of a join; ``process(fn)`` receives lists of pairs."""


class SynchronizedStream(_BatchStream):
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
