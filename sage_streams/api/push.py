"""Push streams: the ``emit``/``close`` side of a stream made by ``create_stream(name)``.

:class:`PushStream` is the part of :class:`~sage_streams.DataStream` that feeds a push stream's
inbox, from the graph's loop (``emit``) or from another thread (``emit_threadsafe``). The inbox
is a bounded channel, so an emitter waits while the graph is behind (backpressure).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic

from sage_streams._graph.node import Node
from sage_streams._runtime import Plan, running_loop, wrong_loop
from sage_streams._typing import T
from sage_streams.channel import Sender
from sage_streams.connectors.ingest import IngestLog
from sage_streams.errors import BrokenChannelError, StreamError

if TYPE_CHECKING:
    from sage_streams.api.environment import LocalEnvironment

__all__ = ["PushStream"]

_current_loop = asyncio._get_running_loop  # the running loop or None: the per-emit check


class PushStream(Generic[T]):
    """``emit``, ``close`` and their thread-safe twins, for a stream with an inbox."""

    _node: Node

    if TYPE_CHECKING:

        @property
        def _env(self) -> LocalEnvironment: ...

        @property
        def name(self) -> str: ...

    def _inbox(self) -> Any:
        inbox = self._env._inboxes.get(self._node)
        if inbox is None:
            raise StreamError(
                f"stream {self.name!r} is not a push stream: only streams made by "
                "create_stream(name) or DataStream(name) take emit() and close()"
            )
        return inbox[0]

    def _on_graph_loop(self, what: str) -> Plan | None:
        """The run in progress, if any, after checking that ``what`` is called on its loop."""
        loop = running_loop(what)
        plan = self._env.running_plan()
        if plan is not None and plan.loop is not loop:
            raise wrong_loop(what, self._env.name)
        return plan

    async def emit(self, item: T) -> None:
        """Push one item into this stream; waits while the stream's buffer is full.

        Before the graph runs, the buffer holds the first ``buffer_size`` items; one more finds
        nothing that could make room, so it is refused unless a run starts meanwhile (a
        ``collect()`` gathered with the emitting coroutine).

        Raises:
            StreamError: the stream is closed, its graph has stopped consuming it, its buffer is
                full while its graph is not running, or this is not the graph's event loop.
        """
        node = self._node
        env = node.env
        plan = env.running_plan()
        inbox = env._inboxes.get(node)
        if inbox is None or plan is None or plan.loop is not _current_loop():
            if isinstance(node.source, IngestLog):
                await node.source.append(item)  # durable once it returns
                return
            sender = await self._before_a_run()  # the per-item path is the lines above only
        else:
            sender = inbox[0]
        try:
            await sender.send_item(item)
        except BrokenChannelError:
            if sender.closed:
                raise StreamError(f"cannot emit into stream {self.name!r}: it is closed") from None
            plan = self._env._plan
            failures = [] if plan is None else plan.failures
            raise StreamError(
                f"cannot emit into stream {self.name!r}: its graph has stopped reading it"
            ) from (failures[0].error if failures else None)

    async def _before_a_run(self) -> Sender:
        """The inbox of an ``emit`` that is not on its graph's running loop: on another loop it
        is refused; with no run, an item that does not fit waits only for a run that is starting."""
        sender: Sender = self._inbox()
        if self._on_graph_loop("emit()") is None and sender.full and not sender.closed:
            await self._env._restart_wait()  # a running() block restarting its graph
            await asyncio.sleep(0)  # a run that is starting (a gathered collect()) starts now
            if self._on_graph_loop("emit()") is None and sender.full:
                raise StreamError(
                    f"cannot emit into stream {self.name!r}: its buffer is full "
                    f"({self._env.buffer_size} items) and its graph is not running, so nothing "
                    "can make room; start the graph first (async with env.running(): ...)"
                )
        return sender

    async def close(self) -> None:
        """End this push stream: what was emitted is processed, then the stream ends."""
        if isinstance(self._node.source, IngestLog):
            await self._node.source.end()
            return
        sender = self._inbox()
        self._on_graph_loop("close()")
        sender.close()

    def emit_threadsafe(self, item: T) -> concurrent.futures.Future[None]:
        """Push one item from another thread into this stream of a running graph.

        The item is emitted on the graph's event loop; the returned future completes when
        :meth:`emit` has (``future.result()`` waits while the buffer is full, and raises what
        ``emit`` raised). Items given from one thread enter the stream in the order given. Do
        not wait for the future on the graph's own loop: that would block the loop it waits for.

        Raises:
            StreamError: the graph is not running (there is no loop to hand the item to).
        """
        return self._hand_over("emit_threadsafe()", lambda: self.emit(item))

    def close_threadsafe(self) -> concurrent.futures.Future[None]:
        """End this push stream from another thread, after the items given before with
        :meth:`emit_threadsafe`; the future completes once it is closed."""
        return self._hand_over("close_threadsafe()", self.close)

    def _hand_over(self, what: str, step: Callable[[], Awaitable[None]]) -> concurrent.futures.Future[None]:
        """Run ``step`` on the running graph's loop, after the steps handed over before it: one
        fair lock per push stream and run keeps the order they were given in."""
        self._inbox()
        plan = self._env.running_plan()
        if plan is None:
            raise StreamError(
                f"{what} on stream {self.name!r}: its graph is not running, so there is no event "
                "loop to hand the item to; start it first (async with env.running(): ...)"
            )

        async def in_order() -> None:
            async with plan.threadsafe_emits.setdefault(self._node, asyncio.Lock()):
                await step()

        return asyncio.run_coroutine_threadsafe(in_order(), plan.loop)

    @property
    def closed(self) -> bool:
        """Whether this push stream has been closed."""
        if isinstance(self._node.source, IngestLog):
            return self._node.source.closed
        return bool(self._inbox().closed)
