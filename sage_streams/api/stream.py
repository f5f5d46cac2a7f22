"""DataStream: a lazy handle on one stream of a graph.

Methods that transform a stream (``map``, ``filter``, ``flat_map``, ``key_by``, ``sink``) only add
a node and return a new handle; nothing runs until the graph does. A stream is consumed with
``async for``, ``await stream.collect()`` or ``stream.sink(fn)``. When the graph is not running,
``collect()`` and ``async for`` run the graph (its sinks too) until this stream ends, then close
its push streams and let the rest drain; inside ``env.running()`` they read the live stream from
the moment they are called. Everything here runs on the graph's asyncio loop; another thread
hands items over with ``emit_threadsafe``.

Items are shared, not copied, between the consumers of a stream: treat them as read-only, or
copy them in a ``map`` first.

Example::

    env = LocalEnvironment()
    clicks = env.create_stream("clicks")
    totals = clicks.filter(lambda c: c["ok"]).map(lambda c: c["amount"])

    async with env.running():
        await clicks.emit({"ok": True, "amount": 3})
        await clicks.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Never, Self, Unpack, overload

from sage_streams._graph.node import ErrorPolicy, Node, NodeKind
from sage_streams._runtime import (
    ChannelOutlet,
    ListOutlet,
    LiveCollect,
    Outcome,
    Plan,
    Reader,
)
from sage_streams._typing import CallOptions, R, T, UserFunction
from sage_streams.api.handling import ErrorHandling
from sage_streams.api.push import PushStream
from sage_streams.api.windowing import Windowing
from sage_streams.channel import Receiver, create_channel
from sage_streams.connectors import TransactionalSink
from sage_streams.errors import PipelineError
from sage_streams.functions import resolve_function
from sage_streams.operators.calls.config import call_config

if TYPE_CHECKING:
    from sage_streams.api.connected import ConnectedStreams
    from sage_streams.api.environment import LocalEnvironment
    from sage_streams.operators.joins.config import TableJoinType
    from sage_streams.operators.timestamps import TimestampSpec
    from sage_streams.state import StreamState

__all__ = ["DataStream"]


class DataStream(PushStream[T], ErrorHandling, Windowing, Generic[T]):
    """A stream of items in a dataflow graph.

    ``DataStream(name)`` creates a push stream that is not yet bound to an environment: it runs
    in an environment of its own (named ``"default"``) unless it is connected to a stream of
    another environment, whose graph it then joins (its name gets a ``#2`` suffix if taken).

    ``DataStream[T]`` is a stream of items of type ``T``, for type checkers: ``map`` and
    ``flat_map`` give the type their function returns (an ``async def``'s result type included),
    ``filter`` and ``key_by`` keep it, and a registered name, whose function is known only when
    the graph is built, gives ``DataStream[Any]``.
    """

    _node: Node

    def __init__(self, name: str) -> None:
        from sage_streams.api.environment import LocalEnvironment

        env = LocalEnvironment._for_unbound_stream()
        node = env.add_node(Node("push", name))
        env._open_inbox(node)
        self._node = node

    @classmethod
    def _of(cls, env: LocalEnvironment, node: Node) -> Self:
        stream = cls.__new__(cls)
        stream._node = node
        return stream

    @property
    def _env(self) -> LocalEnvironment:
        env: LocalEnvironment = self._node.env
        return env

    def __repr__(self) -> str:
        return f"<DataStream {self.name!r} ({self._node.kind})>"

    def _error_policy(self) -> ErrorPolicy:
        """This stream's own policy, made on first use: it covers this stream's operator and
        everything downstream without a policy of its own."""
        node = self._node
        if node.policy is None or node.policy.owner is not node:
            node.policy = ErrorPolicy(node, f"{node.name}.errors")
        return node.policy

    def _policy_in_effect(self) -> ErrorPolicy:
        """The policy the runtime applies to this stream (its own if it has none yet)."""
        return self._node.governing_policy() or self._error_policy()

    @property
    def name(self) -> str:
        """The stream's unique name in its graph (used in errors and metrics)."""
        return self._node.name

    @property
    def env(self) -> LocalEnvironment:
        """The environment whose graph this stream belongs to."""
        return self._env

    # -- transformations ----------------------------------------------------------------

    def _then(
        self,
        kind: NodeKind,
        fn: UserFunction,
        name: str | None,
        role: str,
        calls: CallOptions | None = None,
    ) -> DataStream[Any]:
        function = resolve_function(fn, role)
        config = None if calls is None else call_config(function, role, calls, stream_key=self._node.key_func)
        label = name or f"{kind}({getattr(function, '__name__', type(function).__name__)})"
        node = Node(kind, label, (self._node,), fn=function)
        node.calls = config
        return DataStream._of(self._env, self._env.add_node(node))

    @overload
    def map(
        self, fn: Callable[[T], Awaitable[R]], *, name: str | None = None, **calls: Unpack[CallOptions]
    ) -> DataStream[R]: ...
    @overload
    def map(
        self, fn: Callable[[T], R], *, name: str | None = None, **calls: Unpack[CallOptions]
    ) -> DataStream[R]: ...
    @overload
    def map(self, fn: str, *, name: str | None = None, **calls: Unpack[CallOptions]) -> DataStream[Any]: ...
    def map(
        self,
        fn: UserFunction,
        *,
        name: str | None = None,
        **calls: Unpack[CallOptions],
    ) -> DataStream[Any]:
        """Each item replaced by ``fn(item)`` (awaited if ``fn`` is async), in order.

        The new stream's item type is what ``fn`` returns (what it resolves to for an
        ``async def``); a registered name gives ``DataStream[Any]``, its function being known only
        when the graph is built.

        Calls may overlap, as Flink's Async I/O operator and aiostream's ``task_limit`` let them:

        Args:
            concurrency: at most this many calls in flight (and items held) at once; with the
                default 1, ``fn`` is awaited one item at a time, a step of its chain.
            ordered: ``True``, results leave in input order; ``False``, as calls complete;
                ``"key"``, one key's calls run one at a time and leave in input order, different
                keys' calls overlap. A watermark never passes a result of an item before it.
            timeout: seconds a call may take (on the environment's clock); a call that takes
                longer is cancelled and is a ``TimeoutError`` of its item, for the error policy
                (``"retry"`` calls again, ``"continue"`` sends the item to the dead letters).
            in_thread: ``fn`` is a blocking function: it runs in worker threads (through anyio),
                ``concurrency`` at once, and the loop never blocks.
            key_func: the key of ``ordered="key"`` (default: the ``key_by`` key of this stream).

        With ``concurrency`` > 1 or a ``timeout``, ``fn`` must return an awaitable (an
        ``async def``, or a function returning a coroutine): any other result is a
        ``TypeError`` of its item. See :mod:`sage_streams.operators.calls.config`.
        """
        return self._then("map", fn, name, "map function", calls)

    def filter(
        self,
        fn: Callable[[T], object] | str,
        *,
        name: str | None = None,
        **calls: Unpack[CallOptions],
    ) -> DataStream[T]:
        """Only the items for which ``fn(item)`` is true (awaited if ``fn`` is async), in order.

        ``concurrency``, ``ordered``, ``timeout``, ``in_thread`` and ``key_func`` are those of
        :meth:`map`.
        """
        return self._then("filter", fn, name, "filter predicate", calls)

    @overload
    def flat_map(
        self, fn: Callable[[T], AsyncIterable[R]], *, name: str | None = None, **calls: Unpack[CallOptions]
    ) -> DataStream[R]: ...
    @overload
    def flat_map(
        self,
        fn: Callable[[T], Awaitable[Iterable[R]]],
        *,
        name: str | None = None,
        **calls: Unpack[CallOptions],
    ) -> DataStream[R]: ...
    @overload
    def flat_map(
        self, fn: Callable[[T], Iterable[R]], *, name: str | None = None, **calls: Unpack[CallOptions]
    ) -> DataStream[R]: ...
    @overload
    def flat_map(
        self, fn: str, *, name: str | None = None, **calls: Unpack[CallOptions]
    ) -> DataStream[Any]: ...
    def flat_map(
        self,
        fn: UserFunction,
        *,
        name: str | None = None,
        **calls: Unpack[CallOptions],
    ) -> DataStream[Any]:
        """Each item replaced by the items of ``fn(item)``, in order: the elements of an iterable
        (a string is an iterable of characters), or what an async generator yields.

        ``concurrency``, ``ordered``, ``timeout``, ``in_thread`` and ``key_func`` are those of
        :meth:`map`; with calls overlapping, one call's items leave together, and an async
        generator is drained (under the timeout) before they do.
        """
        return self._then("flat_map", fn, name, "flat_map function", calls)

    def key_by(self, fn: Callable[[T], object] | str, *, name: str | None = None) -> DataStream[T]:
        """The same items, keyed by ``fn(item)`` for the keyed operators that follow.

        As in Flink, keying does not change the items. Each key is computed as the item passes
        and must be hashable: an item whose key function raises or returns an unhashable value
        fails with an error of its own. The key function is kept as ``stream.key_func``.
        """
        keyed = self._then("key_by", fn, name, "key function")
        keyed._node.key_func = keyed._node.fn
        return keyed

    @property
    def key_func(self) -> Any:
        """The key function of a stream made by ``key_by``, else ``None``."""
        return self._node.key_func

    def connect(self, *others: DataStream[Any], state: StreamState | None = None) -> ConnectedStreams:
        """This stream and ``others`` as one :class:`~sage_streams.ConnectedStreams`."""
        from sage_streams.api.connected import ConnectedStreams

        return ConnectedStreams([self, *others], state=state)

    def join_table(
        self,
        table: DataStream[Any],
        key_func: UserFunction | tuple[UserFunction, UserFunction],
        join_type: TableJoinType = "inner",
        *,
        value_func: UserFunction | None = None,
        timestamp: TimestampSpec | None = None,
        name: str | None = None,
    ) -> DataStream[tuple[T, Any]]:
        """Each event of this stream with the current row of ``table``: ``(event, row)`` pairs.

        ``table`` is a stream of rows of which only the latest per key is kept; a row stands
        for ``value_func(row)`` (the row itself by default), and a value of ``None`` deletes its
        key. ``key_func`` is one function for events and rows, or a pair ``(event_key,
        row_key)``; a registered name works as elsewhere. Events are never kept for later rows:
        each one is joined once, with the row its key has when the event arrives (what the join
        has read of the table by then), and an update never re-emits a past event. ``"inner"``
        drops an event without a row (a miss); ``"left"`` emits ``(event, None)``. Events leave
        in the order they came.

        With ``timestamp`` (a field name or a function of an item, as for ``join``) the join is
        in event time, Flink's temporal join: an event at ``t`` gets the row version of largest
        timestamp at or before ``t``, once the table's timestamps have passed ``t`` (or the
        table has ended), so the result does not depend on how the inputs interleave; only the
        versions that events still to come can see are kept. A late event (behind an earlier
        event's timestamp ``W``) sees the table as of ``W``. The details, with state bounds and
        metrics, are in ``sage_streams.operators.joins.table``.

        The join's errors (a key, a value or a timestamp that fails, on either side) are errors
        of their item under the policy that governs this stream, or the one set on the result.
        ``env.metrics()`` shows ``table_rows``, ``probes``, ``hits``, ``misses`` and
        ``buffered`` (0 in processing time), with mode ``"table"``. The symmetric
        ``ConnectedStreams.join`` instead buffers both sides until they end.

        Example::

            enriched = clicks.join_table(profiles, key_func=lambda item: item["user"], join_type="left")
        """
        from sage_streams.api.connected import join_table

        return join_table(
            self, table, key_func, join_type, value_func=value_func, timestamp=timestamp, name=name
        )

    def _window_inputs(self) -> tuple[Sequence[DataStream[Any]], StreamState, UserFunction | None]:
        """This stream alone, a state of its own, and its key function (``key_by``) by default."""
        from sage_streams.state import StreamState

        return [self], StreamState(), self._node.key_func

    def sink(
        self,
        fn: Callable[[T], object] | str | TransactionalSink,
        *,
        name: str | None = None,
        **calls: Unpack[CallOptions],
    ) -> DataStream[Never]:
        """Call ``fn(item)`` for every item, for its effect, or write every item to ``fn``, a
        :class:`~sage_streams.connectors.TransactionalSink` (``JsonLinesSink(path)``, ...).

        Returns the sink's own stream, which carries no items: it ends once the sink has been
        called for everything, so ``await sink.collect()`` waits for the whole graph.
        ``concurrency``, ``timeout``, ``in_thread`` and ``key_func`` are those of :meth:`map`
        (``ordered="key"`` writes one key at a time, in order; ``True`` and ``False`` are alike,
        a sink emitting nothing). A function sink is at-least-once under checkpoints (a restored
        run calls it again for what came after the last committed epoch); a transactional sink
        writes each epoch once (see :mod:`sage_streams.connectors.base`).
        """
        if isinstance(fn, TransactionalSink):
            if calls:
                raise TypeError("a transactional sink takes no call options: it writes batches itself")
            node = Node("sink", name or f"sink({type(fn).__name__})", (self._node,))
            node.sink = fn
            return DataStream._of(self._env, self._env.add_node(node))
        return self._then("sink", fn, name, "sink function", calls)

    def _side_output(self, port: str) -> DataStream[Any]:
        """The side output ``port`` of this operator's stream: the same stream however often
        asked (``unmatched()``, ``late()``)."""
        for node in self._env._nodes:
            if node.kind == "side" and node.inputs == (self._node,) and node.port == port:
                return DataStream._of(self._env, node)
        node = self._env.add_node(Node("side", f"{self.name}.{port}", (self._node,)))
        node.port = port
        return DataStream._of(self._env, node)

    # -- consuming -------------------------------------------------------------------------

    def collect(self) -> Awaitable[list[T]]:
        """All items of the stream, in order, once it has ended.

        Not running: runs the graph and returns when this stream has ended. At that moment the
        graph's push streams are closed (as when leaving ``env.running()``), so that one nobody
        feeds does not hold the return back; the rest of the graph drains, then the run ends.
        Running: reads the live stream from the moment ``collect()`` is called (not awaited)
        until it ends, so ``asyncio.ensure_future(stream.collect())`` misses nothing emitted
        afterwards; such a collect detaches if it is cancelled or dropped before it runs.
        """
        if plan := self._live_plan("collect()"):
            return LiveCollect(self._live_reader(plan), self.name)
        return self._collect_run()

    def _live_plan(self, what: str) -> Plan | None:
        """The run in progress, checked to be on this loop; ``None`` when the graph is not
        running (a run started by ``what`` will then check the loop itself)."""
        return self._on_graph_loop(what) if self._env.is_running else None

    async def _collect_run(self) -> list[T]:
        items: list[T] = []
        await self._env.run_with(
            {self._node: [ListOutlet(items, self._env._close_push_streams)]}, "collect()"
        )
        return items

    def __aiter__(self) -> AsyncIterator[T]:
        """Iterate the items: the whole run, or the live stream from now (see :meth:`collect`)."""
        reader = self._live_reader(plan) if (plan := self._live_plan("async for")) else self._run_reader()
        items: AsyncIterator[T] = reader.items()
        return items

    def _reader_channel(self) -> tuple[ChannelOutlet, Receiver]:
        sender, receiver = create_channel(f"{self.name}->reader", self._env.buffer_size)
        return ChannelOutlet(sender), receiver

    def _live_reader(self, plan: Plan) -> Reader:
        outlet, receiver = self._reader_channel()
        plan.attach(self._node, outlet)

        async def finish(outcome: Outcome) -> None:
            if outcome == "aborted":
                await plan.done.wait()
                raise plan.error or PipelineError(f"the graph stopped while {self.name!r} was read")

        return Reader(receiver, finish)

    def _run_reader(self) -> Reader:
        """A reader that runs the graph when it starts reading, and stops it if it leaves."""
        outlet, receiver = self._reader_channel()
        runs: list[asyncio.Task[None]] = []

        def begin() -> None:
            runs.append(self._env.spawn_with({self._node: [outlet]}, "async for"))

        async def finish(outcome: Outcome) -> None:
            (run,) = runs
            if outcome == "ended":
                self._env._close_push_streams()  # as collect() does: the stream has ended
                await run  # raises the run's error, if any
            elif outcome == "aborted":
                await run  # raises the run's error
            else:
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)

        return Reader(receiver, finish, begin)
