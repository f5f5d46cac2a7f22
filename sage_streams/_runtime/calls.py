"""The head of an operator whose calls overlap: up to ``concurrency`` calls in flight.

A ``map``, ``filter``, ``flat_map`` or ``sink`` with a
:class:`~sage_streams.operators.calls.config.CallConfig` is not a step of its producer's chain:
it reads a channel of its own, and this head starts one task per item, at most ``concurrency``
held at once (in flight, waiting for their key, or done
and waiting for their turn, :mod:`sage_streams.operators.calls.order`). While it holds that
many it reads no more input, so its input channel fills and the producer waits: a slow service
holds the source back, and memory stays bounded by the channel, one batch and the calls held.

Each call task runs the user function and, when it raises or its timeout passes, asks the error
policy itself: a ``"retry"`` runs that call again (the others go on meanwhile), a
``"continue"`` sends its item to the dead letters. A decision to stop, or any failure of the
head, cancels every call in flight and waits for them before the error goes on; so does the end
of the chain for any reason, so no task is left. At the end of input every call finishes, and
its results leave, before the stream ends.

A blocking function (``in_thread=True``) runs in anyio's worker threads, at most
``concurrency`` at once. A thread cannot be interrupted: cancelling waits for the calls running
in threads, except that with a ``timeout`` a call is abandoned once its time is up (its item
goes to the error path at once; its thread finishes in the background and its result is
dropped).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread

from sage_streams._graph.node import Node
from sage_streams._runtime.counters import Counters
from sage_streams._runtime.failures import OperatorFailure
from sage_streams._runtime.policy import PolicyRun
from sage_streams.channel import ABORTED, END, Control, Receiver
from sage_streams.operators.calls.config import CallConfig
from sage_streams.operators.calls.order import Call, make_order
from sage_streams.operators.process import PROCESS_SLICE
from sage_streams.time import Clock

__all__ = ["CallHead"]

_LATENCIES = 1024
"""How many recent call latencies the percentiles in the metrics are taken over."""


class CallHead:
    """Feeds a chain the results of overlapping calls of ``node``'s function (see the module)."""

    def __init__(
        self, node: Node, receiver: Receiver, clock: Clock, scope: PolicyRun, counters: Counters
    ) -> None:
        assert node.calls is not None
        assert node.fn is not None
        self.node = node
        self.config: CallConfig = node.calls
        self.receiver = receiver
        self.clock = clock
        self.scope = scope
        self.counters = counters
        self._fn = node.fn
        self._kind = node.kind
        self._limit = self.config.concurrency
        self._order = make_order(self.config.ordered)
        self._rest: deque[Any] = deque()  # the part of the input batch not admitted yet
        self._ended = False
        self._failure: OperatorFailure | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._bell = asyncio.Event()
        receiver.watch(self._bell.set)
        self._threads = anyio.CapacityLimiter(self._limit) if self.config.in_thread else None
        self.in_flight = 0
        self.completed = 0
        self.timed_out = 0
        self._latencies: deque[float] = deque(maxlen=_LATENCIES)

    async def next_batch(self) -> Sequence[Any] | Control | None:
        order = self._order
        while True:
            self._bell.clear()  # before looking: a call ending meanwhile rings again
            if self._failure is not None:
                raise self._failure
            out = order.take()
            if out is None:
                await self._admit()
                out = order.take()
            if out is not None:
                if type(out) is list:
                    self.counters.items_out += len(out)
                return out
            if self._ended and order.empty and not self._rest:
                return None
            await self._bell.wait()

    async def _admit(self) -> None:
        """Start calls for the next input items while fewer than ``concurrency`` are held."""
        order, rest = self._order, self._rest
        key = self.config.key
        while order.held < self._limit:
            if not rest:
                if self._ended:
                    return
                message = self.receiver.receive_nowait()
                if message is None:
                    return
                if type(message) is list:
                    self.counters.items_in += len(message)
                    if self.config.per_batch:
                        rest.extend(
                            message[i : i + PROCESS_SLICE] for i in range(0, len(message), PROCESS_SLICE)
                        )
                    else:
                        rest.extend(message)
                elif message is END:
                    self._ended = True
                elif message is ABORTED:
                    await anyio.sleep_forever()  # the failing producer's task group cancels us
                else:
                    assert isinstance(message, Control)
                    order.fence(message)
                continue
            item = rest.popleft()
            call = Call(item) if key is None else await self._keyed(item)
            if call is not None and order.admit(call):
                self._start(call)

    async def _keyed(self, item: Any) -> Call | None:
        """The call of ``item`` with its key, or ``None`` if the key failed and the policy let
        the item go; a ``"retry"`` computes the key again."""
        assert self.config.key is not None
        attempt = 1
        while True:
            try:
                key = self.config.key(item)
                hash(key)
                return Call(item, key)
            except Exception as exc:
                decision = await self.scope.decide(self.node, self.node.name, exc, item, attempt)
                if decision != "retry":
                    return None
                attempt += 1

    def _start(self, call: Call) -> None:
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(call))
        call.task = task
        self._tasks.add(task)

    async def _run(self, call: Call) -> None:
        """One item's call, tried again on ``"retry"``; its outputs go to the order."""
        outputs: list[Any] = []
        try:
            while True:
                try:
                    outputs = await self._attempt(call)
                    break
                except Exception as exc:
                    decision = await self.scope.decide(
                        self.node, self.node.name, exc, call.item, call.attempt
                    )
                    if decision != "retry":
                        break  # "continue": the item went to the dead letters
                    call.attempt += 1
        except OperatorFailure as failure:
            self._fail(failure)
            return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # SystemExit and the like, or a defect of this head
            exc.add_note(f"sage_streams: raised in operator {self.node.name!r}")
            self._fail(OperatorFailure(self.node.name, exc, call.item))
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self.in_flight -= 1
            self._tasks.discard(call.task)
        self.completed += 1
        following = self._order.finish(call, outputs)
        if following is not None and not self._stopping:
            self._start(following)
        self._bell.set()

    async def _attempt(self, call: Call) -> list[Any]:
        """One try of ``call``: the user function under the timeout, its result as outputs."""
        timeout = self.config.timeout
        call.started = start = self.clock.now()
        call.expired = False
        timer = None
        if timeout is not None:
            timer = self.clock.call_at(start + timeout, lambda: self._expire(call))
        try:
            result = await self._invoke(call.item)
        except asyncio.CancelledError as cancelled:
            task = call.task
            if self._stopping or task is None:
                raise
            if not call.expired:
                if task.cancelling():
                    raise  # cancelled from outside: not the item's doing
                # The function let a CancelledError out that nobody aimed at this call (it
                # awaited a future someone else cancelled): an error of its item, not a stop
                # that would leave the operator waiting for a call that never finishes.
                raise RuntimeError(
                    f"the call of {self.node.name!r} raised CancelledError, but nothing cancelled it"
                ) from cancelled
            if task.uncancel() > 0:
                raise
            self.timed_out += 1
            raise TimeoutError(
                f"the call of {self.node.name!r} took longer than its timeout of {timeout:g} s"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
        self._latencies.append(self.clock.now() - start)
        return self._outputs(call.item, result)

    def _expire(self, call: Call) -> None:
        """The call's timeout has passed: cancel it, to be seen as a timeout, not a stop."""
        if call.task is not None and not call.task.done():
            call.expired = True
            call.task.cancel()

    async def _invoke(self, item: Any) -> Any:
        """Call the user function on ``item``: awaited, drained, or in a worker thread."""
        fn = self._fn
        if self._threads is not None:
            abandon = self.config.timeout is not None
            return await anyio.to_thread.run_sync(
                self._blocking, item, limiter=self._threads, abandon_on_cancel=abandon
            )
        result = fn(item)
        if inspect.isasyncgen(result):
            return [value async for value in result]
        if not inspect.isawaitable(result):
            name = getattr(fn, "__name__", type(fn).__name__)
            raise TypeError(
                f"{self.node.name!r} runs its calls concurrently, so its function must return an "
                f"awaitable (an async def), but {name!r} returned {type(result).__name__}; give "
                "in_thread=True to run a blocking function in worker threads"
            )
        return await result

    def _blocking(self, item: Any) -> Any:
        """In a worker thread: the call, and a flat_map's results listed there too."""
        result = self._fn(item)
        return list(result) if self._kind == "flat_map" else result

    def _outputs(self, item: Any, result: Any) -> list[Any]:
        kind = self._kind
        if kind == "map":
            return [result]
        if kind == "filter":
            return [item] if result else []
        if kind == "flat_map":
            return result if type(result) is list else list(result)
        return []  # a sink

    def _fail(self, failure: OperatorFailure) -> None:
        if self._failure is None:
            self._failure = failure
        self._bell.set()

    def details(self) -> dict[str, float]:
        """Calls in flight, items held, items whose call is done (with a result or a dead
        letter), calls timed out, and recent call latency (p50, p99, seconds)."""
        latencies = sorted(self._latencies)
        return {
            "concurrency": float(self._limit),
            "in_flight": float(self.in_flight),
            "held": float(self._order.held),
            "completed": float(self.completed),
            "timed_out": float(self.timed_out),
            "latency_p50": _percentile(latencies, 0.5),
            "latency_p99": _percentile(latencies, 0.99),
        }

    async def close(self, completed: bool) -> None:
        """Cancel every call still in flight and wait for it (shielded: the chain may be
        cancelled), then release the input."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)
        self.receiver.watch(None)
        self.receiver.close()


def _percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted ``ordered`` (0.0 for none)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
