"""The driver: graph -> chains of fused steps -> one task per chain in an anyio task group.

Planning walks the nodes in creation order (which is topological: a node is created after its
inputs). A stateless single-input node joins its producer's chain when it is that producer's only
consumer, as Flink chains operators; otherwise it starts a new chain that reads a channel fed by
the producer. Each chain is one task: a *head* produces batches (from an iterable, or from a
channel), the fused steps transform them, and *outlets* at emission points hand results on
(channels to other chains, collectors, live readers).

A failure of any task cancels the task group; every task then closes its channels in ``finally``
(aborting its outlets), and :meth:`Plan.run` raises one :class:`PipelineError` chained to the
first error. No task outlives :meth:`Plan.run`, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Protocol

import aiostream
import anyio

from sage_streams._fusion import FusedChain, Step
from sage_streams._graph import FUSABLE, Node, TimedOperator, WatermarkOperator
from sage_streams.channel import (
    ABORTED,
    END,
    ChannelConfig,
    ChannelStatistics,
    Control,
    Message,
    Receiver,
    Sender,
    Watermark,
    create_channel,
)
from sage_streams.errors import (
    BackpressureTimeout,
    BrokenChannelError,
    ErrorThresholdExceeded,
    ItemError,
    OperatorFailure,
    PipelineError,
    StreamError,
)
from sage_streams.overflow import SpillError
from sage_streams.policy import ErrorPolicy, PolicyRun, stopping
from sage_streams.time import Clock, TimerHandle

__all__ = ["ChannelOutlet", "ListOutlet", "Outlet", "Plan"]


class Outlet(Protocol):
    """Where a chain hands a batch it produced at one emission point."""

    async def send(self, batch: list[Any]) -> None: ...
    def send_control(self, message: Control) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class ListOutlet:
    """Appends every item to a list: what ``collect()`` reads."""

    __slots__ = ("target",)

    def __init__(self, target: list[Any]) -> None:
        self.target = target

    async def send(self, batch: list[Any]) -> None:
        self.target.extend(batch)

    def send_control(self, message: Control) -> None:
        """Nothing to do: a list holds items only."""

    def close(self) -> None:
        """Nothing to do: the list is complete."""

    def abort(self) -> None:
        """Nothing to do: the run's error tells the reader the list is incomplete."""


class ChannelOutlet:
    """Sends batches into a channel; a consumer that went away stops receiving, nothing else.

    A batch that times out under ``block``, or an item that cannot spill under ``buffer``, goes
    to the error policy of the consuming operator (``guard``): ``"continue"`` drops it (counted
    in the channel's ``dropped``), ``"retry"`` tries again.
    """

    __slots__ = ("guard", "sender")

    def __init__(self, sender: Sender, guard: tuple[PolicyRun, Node, str] | None = None) -> None:
        self.sender = sender
        self.guard = guard

    async def send(self, batch: list[Any]) -> None:
        attempt = 1
        while not self.sender.receiver_closed:  # else the reader left: its outputs are discarded
            try:
                await self.sender.send(batch)
                return
            except BrokenChannelError:
                return  # it left while we waited for room
            except (BackpressureTimeout, SpillError) as error:
                if self.guard is None:
                    raise
                # A timeout fails the whole batch; an item the overflow codec cannot write, itself.
                index = error.index if isinstance(error, SpillError) else None
                policy, node, stream_id = self.guard
                failed = batch if index is None else batch[index]
                if await policy.decide(node, stream_id, error, failed, attempt) == "retry":
                    attempt += 1
                    continue
                self.sender.discard(len(batch) if index is None else 1)
                if index is None:
                    return
                batch, attempt = batch[:index] + batch[index + 1 :], 1

    def send_control(self, message: Control) -> None:
        self.sender.send_control(message)

    def close(self) -> None:
        self.sender.close()

    def abort(self) -> None:
        self.sender.abort()


class _Head(Protocol):
    async def next_batch(self) -> Sequence[Any] | Control | None:
        """The next non-empty batch, a control message to pass on (a watermark), or ``None``
        at the end of the stream."""

    def close(self, completed: bool) -> None:
        """Release the inputs; ``completed`` says whether the stream ended normally."""


class _IterableHead:
    """Reads a synchronous iterable in batches, yielding to the loop once per batch.

    A ``list``, ``tuple`` or ``range`` is read in slices: a range slice stays lazy, so its numbers
    are made one at a time inside the fused loop instead of all at once.
    """

    def __init__(self, node: Node, batch_size: int) -> None:
        self.node = node
        self.batch_size = batch_size
        self._next: Callable[[], Any] | None = None

    async def next_batch(self) -> Sequence[Any] | None:
        try:
            if self._next is None:
                source: Any = self.node.source
                self._next = _batcher(source() if _is_factory(source) else source, self.batch_size)
            else:
                # Once per batch, never per item: let the other tasks (and cancellation) in.
                await asyncio.sleep(0)
            return self._next() or None
        except Exception as exc:
            exc.add_note(f"sage_streams: raised while reading source {self.node.name!r}")
            raise OperatorFailure(self.node.name, exc) from exc

    def close(self, completed: bool) -> None:
        self._next = None


def _batcher(source: Iterable[Any], size: int) -> Callable[[], Sequence[Any]]:
    """A function returning the next batch of ``source`` (empty at the end)."""
    if type(source) in (list, tuple, range):
        sequence: Sequence[Any] = source  # type: ignore[assignment]
        position = 0

        def next_slice() -> Sequence[Any]:
            nonlocal position
            batch = sequence[position : position + size]
            position += size
            return batch

        return next_slice
    iterator = iter(source)
    return lambda: list(islice(iterator, size))


class _ChannelHead:
    """Reads the batches of a channel until it ends."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def next_batch(self) -> list[Any] | Control | None:
        message = await self.receiver.receive()
        if message is END:
            return None
        if message is ABORTED:
            # The producer failed, so the task group is cancelling us; what came so far is
            # incomplete and must not be passed on as a finished stream.
            await anyio.sleep_forever()
        return message

    def close(self, completed: bool) -> None:
        self.receiver.close()


class _OperatorHead:
    """Drives a stateful operator: reads whichever wanted input has a message, feeds it.

    One task waits on all inputs through a doorbell that every input channel rings on a put,
    so each input keeps its own bound and a fast input is held back by its own full channel.
    Inputs are visited round-robin so that none starves another.
    """

    def __init__(self, node: Node, receivers: list[Receiver], clock: Clock, scope: PolicyRun) -> None:
        assert node.operator is not None
        self.node = node
        self.scope = scope
        self.receivers = receivers
        self.clock = clock
        self.operator = node.operator()
        self._timed = isinstance(self.operator, TimedOperator)
        self._timer: tuple[float, TimerHandle] | None = None
        self.side_outlets: dict[str, list[Outlet]] = {}
        self._ended = [False] * len(receivers)
        self._marks = [-math.inf] * len(receivers)  # the last watermark each input brought
        self._passed_mark = -math.inf
        self._keeps_time = isinstance(self.operator, WatermarkOperator)
        self._finished = False
        self._next_input = 0
        self._doorbell = asyncio.Event()
        for receiver in receivers:
            receiver.watch(self._doorbell.set)

    async def next_batch(self) -> Sequence[Any] | Control | None:
        while not self._finished:
            if (watermark := self._risen_watermark()) is not None:
                return watermark
            output = await self._step()
            await self._flush_side()
            if output:
                self.node.items_out += len(output)
                return output
        return None

    async def _step(self) -> Sequence[Any]:
        """Handle one message, or wait for one; returns what the operator emitted."""
        ready = self._ready_input()
        if ready is None:
            output = await self._call(self._on_time) if self._timed else ()
            if output:
                return output
            output = await self._call(self.operator.on_idle)
            if output:
                return output
            if all(self._ended):
                self._finished = True
                return await self._call(self.operator.on_finish)
            await self._wait()
            return ()
        index, message = ready
        if type(message) is list:
            self.node.items_in += len(message)
            return await self._call(self.operator.on_batch, index, message)
        if message is END:
            self._ended[index] = True
            return await self._call(self.operator.on_end, index)
        if type(message) is Watermark:
            self._marks[index] = max(self._marks[index], message.time)
            if self._keeps_time:
                return await self._call(self.operator.on_watermark, index, message.time)  # type: ignore[attr-defined]
        if message is ABORTED:
            await anyio.sleep_forever()  # the failing producer's task group cancels us
        return ()

    def _risen_watermark(self) -> Watermark | None:
        """The output watermark, if it has risen since it was last passed on."""
        if self._keeps_time:
            mark: float = self.operator.output_watermark()  # type: ignore[attr-defined]
        else:
            open_marks = [m for m, ended in zip(self._marks, self._ended, strict=True) if not ended]
            mark = min(open_marks) if open_marks else -math.inf
        if mark <= self._passed_mark:
            return None
        self._passed_mark = mark
        return Watermark(mark)

    def _ready_input(self) -> tuple[int, Message] | None:
        count = len(self.receivers)
        for offset in range(count):
            index = (self._next_input + offset) % count
            if self._ended[index] or not self.operator.wants(index):
                continue
            message = self.receivers[index].receive_nowait()
            if message is not None:
                self._next_input = index + 1
                return index, message
        return None

    async def _wait(self) -> None:
        """Wait for a message on a wanted input; an operator that wants none of its open
        inputs can never go on, which is an error rather than a hang."""
        wanted = [i for i, ended in enumerate(self._ended) if not ended and self.operator.wants(i)]
        if not wanted:
            raise OperatorFailure(self.node.name, StreamError(self.operator.stalled()))
        # Cleared before looking, so a put between the look and the wait still wakes us. The
        # inputs we do not want may hold messages: they must not keep us from waiting.
        self._doorbell.clear()
        if self._timed:
            self._arm_timer()
        if not any(self.receivers[i].has_message() for i in wanted):
            await self._doorbell.wait()

    async def _on_time(self) -> Sequence[Any]:
        """Let a timed operator act when a timer is due: the one we armed (whose deadline the
        operator may no longer report, having passed it), or one already in the past."""
        operator: Any = self.operator
        now = self.clock.now()
        armed_due = self._timer is not None and now >= self._timer[0]
        if armed_due:
            self._timer = None  # it has rung
        else:
            deadline = operator.next_timer()
            if deadline is None or now < deadline:
                return ()
        result: Sequence[Any] = await operator.on_timer(now)
        return result

    def _arm_timer(self) -> None:
        """Ring the doorbell when the operator's next timer is due (one timer at a time)."""
        deadline = self.operator.next_timer()  # type: ignore[attr-defined]
        if self._timer is not None:
            if self._timer[0] == deadline:
                return
            self._timer[1].cancel()
            self._timer = None
        if deadline is not None:
            self._timer = (deadline, self.clock.call_at(deadline, self._doorbell.set))

    async def _call(self, method: Callable[..., Awaitable[Sequence[Any]]], *args: Any) -> Sequence[Any]:
        """Call an operator method, putting the errors of its items through the error policy.

        An error at a position of a batch goes on with the items after it, or on ``"retry"``
        from it. An error with no position (a process function) is retried after the operator
        puts back what the failed call read; on ``"continue"``, a call that can be made again
        (one that had something to put back) is made again to go on past the failure.
        What the items before the failure produced is emitted in every case.
        """
        emitted: list[Any] = []
        attempt = 0
        while True:
            try:
                result = await method(*args)
            except ItemError as exc:
                emitted += exc.output
                same_unit = attempt > 0 and exc.index in (None, 0)
                attempt = attempt + 1 if same_unit else 1
                stream_id = self.node.inputs[args[0]].name if args else self.node.name
                decision = await self.scope.decide(self.node, stream_id, exc.error, exc.item, attempt)
                retry = decision == "retry"
                if exc.index is not None:
                    index, batch = args
                    args = (index, batch[exc.index if retry else exc.index + 1 :])
                elif retry and exc.restore is not None:
                    exc.restore()
                elif not retry and exc.restore is None:
                    return emitted
                if not retry:
                    attempt = 0
            else:
                if emitted:
                    emitted += result
                    return emitted
                return result

    async def _flush_side(self) -> None:
        for port, items in self.operator.side.items():
            if items:
                batch = list(items)
                items.clear()
                for outlet in self.side_outlets.get(port, ()):
                    await outlet.send(batch)

    def close(self, completed: bool) -> None:
        if self._timer is not None:
            self._timer[1].cancel()
            self._timer = None
        for receiver in self.receivers:
            receiver.watch(None)
            receiver.close()
        for outlets in self.side_outlets.values():
            for outlet in outlets:
                outlet.close() if completed else outlet.abort()


def _is_factory(source: object) -> bool:
    """A source given as a function to call at the start of each run."""
    return callable(source) and not hasattr(source, "__iter__") and not hasattr(source, "__aiter__")


def is_sync_source(source: object) -> bool:
    """Whether a pull source is read with ``iter`` (else it is asynchronous)."""
    if _is_factory(source):
        return False
    return hasattr(source, "__iter__") and not hasattr(source, "__aiter__")


@contextlib.asynccontextmanager
async def _open_async_source(source: Any) -> AsyncIterator[Any]:
    """Open an asynchronous source for one run, and close it afterwards, however it ends."""
    if isinstance(source, aiostream.core.Stream):
        async with source.stream() as streamer:
            yield streamer
        return
    items = source() if _is_factory(source) else source
    if hasattr(items, "__iter__") and not hasattr(items, "__aiter__"):
        yield _aiter_sync(items)
        return
    if not hasattr(items, "__aiter__"):
        raise TypeError(f"source function returned {type(items).__name__}, not an (async) iterable")
    iterator = aiter(items)
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _aiter_sync(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def _feed(node: Node, sender: Sender) -> None:
    """Read an asynchronous source item by item into a channel that batches them."""
    try:
        async with _open_async_source(node.source) as items:
            async for item in items:
                await sender.send_item(item)
    except BrokenChannelError:
        pass  # the reading chain is gone, which only happens when the graph is stopping
    except Exception as exc:
        sender.abort()
        exc.add_note(f"sage_streams: raised while reading source {node.name!r}")
        raise OperatorFailure(node.name, exc) from exc
    except BaseException:
        sender.abort()
        raise
    else:
        sender.close()


class ChainTask:
    """One task: a head, fused stateless steps, and outlets at emission points.

    Point ``0`` is what the head yields (the output of ``head_node``, when the chain starts at a
    source); point ``k`` is the output of ``nodes[k - 1]``.
    """

    def __init__(
        self, name: str, head: _Head, head_node: Node | None, scopes: dict[Node, PolicyRun], *, inline: bool
    ) -> None:
        self.name = name
        self.inline = inline
        self.head = head
        self.head_node = head_node
        self.nodes: list[Node] = []
        self.outlets: dict[int, list[Outlet]] = {}
        self.scopes = scopes
        self.finished = False
        self._fused: FusedChain | None = None
        self._suffixes: dict[tuple[int, bool], FusedChain] = {}
        self._totals: list[int] = [0, 0]

    def scopes_held(self) -> set[PolicyRun]:
        """The policies of the operators this task runs (its head's and its steps')."""
        members = [*self.nodes, self.head.node] if isinstance(self.head, _OperatorHead) else self.nodes
        return {self.scopes[node] for node in members}

    def attach(self, point: int, outlet: Outlet) -> None:
        """Add an outlet, also while running: the loop is recompiled before the next batch."""
        if self.finished:
            outlet.close()
            return
        self.outlets.setdefault(point, []).append(outlet)
        self.flush_counts()
        self._fused = None

    def _compile(self) -> FusedChain:
        # Under an error handler the chain must be able to go on after a failure.
        resumable = any(self.scopes[node].handles for node in self.nodes)
        self._fused = self._chain(0, self._points(), resumable)
        self._suffixes.clear()
        self._totals = [0] * (len(self._fused.counted) + 2)
        return self._fused

    def _points(self) -> list[int]:
        return [point for point, outlets in self.outlets.items() if outlets]

    def _chain(self, start: int, points: list[int], resumable: bool) -> FusedChain:
        steps = [Step(node.kind, node.fn, node.name) for node in self.nodes[start:]]  # type: ignore[arg-type]
        return FusedChain(steps, [point - start for point in points], resumable=resumable, inline=self.inline)

    def _suffix(self, start: int, retry: bool) -> FusedChain:
        """The chain from step ``start`` on; a retry's item was already emitted at ``start``."""
        if start == 0 and not retry:
            return self._fused or self._compile()
        chain = self._suffixes.get((start, retry))
        if chain is None:
            points = [p for p in self._points() if p > start or (p == start and not retry)]
            chain = self._suffixes[start, retry] = self._chain(start, points, resumable=True)
        return chain

    async def run(self) -> None:
        completed = False
        try:
            while (batch := await self.head.next_batch()) is not None:
                if isinstance(batch, Control):
                    self._pass_on(batch)
                else:
                    await self._process(batch)
            completed = True
        finally:
            self.finished = True
            self.flush_counts()
            for scope in self.scopes_held():
                scope.release(completed)
            self.head.close(completed)
            for outlets in self.outlets.values():
                for outlet in outlets:
                    outlet.close() if completed else outlet.abort()

    def _pass_on(self, message: Control) -> None:
        """A control message passes the stateless steps unchanged: to every outlet, in order
        after what the batches before it produced."""
        for outlets in self.outlets.values():
            for outlet in outlets:
                outlet.send_control(message)

    async def _process(self, batch: Sequence[Any]) -> None:
        fused = self._fused or self._compile()
        if not fused.steps:  # a source read by others: its batches pass on as they are
            await self._pass_through(batch if type(batch) is list else list(batch))
            return
        if fused.resumable:
            await self._process_handled(batch)
            return
        iterator = iter(batch)
        try:
            result = fused(iterator)
            outputs, counters = (await result) if fused.is_async else result
        except Exception as exc:
            raise self._failure(fused, exc, len(batch), iterator) from exc
        # Counts are linear in what a batch consumed and produced: add them up here and turn
        # them into per-operator numbers only when someone reads the metrics.
        totals = self._totals
        totals[0] += len(batch)
        totals[1] += len(outputs[-1]) if outputs else 0
        for index, count in enumerate(counters, 2):
            totals[index] += count
        for point, output in zip(fused.points, outputs, strict=True):
            if output:
                for outlet in self.outlets.get(point, ()):
                    await outlet.send(output)

    async def _pass_through(self, batch: list[Any]) -> None:
        self._totals[0] += len(batch)
        for outlet in self.outlets.get(0, ()):
            await outlet.send(batch)

    async def _process_handled(self, batch: Sequence[Any]) -> None:
        """Run a batch under error handlers, going on from wherever an item fails.

        After a failure the work left is, in order: the failing step again on the same item (on
        ``"retry"``), the results of each enclosing flat_map not processed yet (innermost
        first), then the rest of the run. It is kept on a stack of runs, so that no item is
        lost or processed twice however many fail.
        """
        work = [_Run(0, iter(batch), 0)]
        while work:
            run = work.pop()
            fused = self._suffix(run.start, retry=run.attempt > 0)
            try:
                result = fused(run.items)
                outputs, entries = (await result) if fused.is_async else result
            except Exception as exc:
                failure = fused.explain(exc, 0, run.items)
                if failure.step < 0:  # pragma: no cover - the loop's own code does not raise
                    raise
                await self._deliver(run, fused, failure.outputs, failure.entries)
                step = run.start + failure.step
                attempt = run.attempt if run.attempt and failure.step == 0 else 1
                node = self.nodes[step]
                decision = await self.scopes[node].decide(node, node.name, exc, failure.item, attempt)
                work.append(run)  # its iterator stands past the failed item
                work.extend(_Run(run.start + i + 1, rest, 0) for i, rest in reversed(failure.pending))
                if decision == "retry":
                    work.append(_Run(step, iter([failure.item]), attempt + 1))
            else:
                await self._deliver(run, fused, outputs, entries)

    async def _deliver(
        self, run: _Run, fused: FusedChain, outputs: Sequence[list[Any]], entries: Sequence[int]
    ) -> None:
        """Hand on what a run produced and count what entered each step.

        Items entering step ``j`` left step ``j - 1`` (or the chain's source); a retried item
        had entered its step, and left the one before, on its first try.
        """
        for j, count in enumerate(entries):
            if not count or (j == 0 and run.attempt):
                continue
            step = run.start + j
            if step < len(self.nodes):
                self.nodes[step].items_in += count
            if step > 0:
                self.nodes[step - 1].items_out += count
            elif self.head_node is not None:
                self.head_node.items_in += count
                self.head_node.items_out += count
        for point, output in zip(fused.points, outputs, strict=True):
            if output:
                for outlet in self.outlets.get(run.start + point, ()):
                    await outlet.send(output)

    def flush_counts(self) -> None:
        """Move the counts gathered since the last flush into the nodes' counters."""
        fused, totals = self._fused, self._totals
        if fused is None or not totals[0]:
            return
        consumed, produced, counters = totals[0], totals[1], totals[2:]
        if self.head_node is not None:
            self.head_node.items_in += consumed
            self.head_node.items_out += consumed
        for node, (n_in, n_out) in zip(self.nodes, fused.counts(consumed, counters, produced), strict=True):
            node.items_in += n_in
            node.items_out += n_out
        self._totals = [0] * len(totals)

    def _failure(self, fused: FusedChain, exc: Exception, size: int, it: Any) -> OperatorFailure:
        failure = fused.explain(exc, size, it)
        if self.head_node is not None:
            self.head_node.items_in += failure.consumed
            self.head_node.items_out += failure.consumed
        node = self.nodes[failure.step] if failure.step >= 0 else (self.head_node or self.nodes[0])
        node.errors += 1
        if (inlined := fused.inlined.get(failure.step)) is not None:
            exc.add_note(
                f"sage_streams: {inlined.function.__qualname__} ({inlined.where}) ran inlined in the"
                " fused loop, so it has no frame above; LocalEnvironment(inline=False) calls it"
            )
        return stopping(node.name, exc, failure.item)


class _Run:
    """Work for a handled chain: feed ``items`` to the steps from ``start`` on.

    ``attempt`` > 0 marks the retry of one failed item (its number of the try to come).
    """

    __slots__ = ("attempt", "items", "start")

    def __init__(self, start: int, items: Iterator[Any], attempt: int) -> None:
        self.start = start
        self.items = items
        self.attempt = attempt


class Plan:
    """The tasks and channels of one run of a graph."""

    def __init__(
        self,
        env_name: str,
        nodes: list[Node],
        taps: dict[Node, list[Outlet]],
        *,
        capacity: int,
        batch_size: int,
        clock: Clock,
        inline: bool = False,
    ) -> None:
        self.env_name = env_name
        self.clock = clock
        self.inline = inline
        self.capacity = capacity
        self.batch_size = batch_size
        self.chains: list[ChainTask] = []
        self.feeders: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self.where: dict[Node, tuple[ChainTask, int]] = {}
        self.operators: dict[Node, _OperatorHead] = {}
        self.channels: list[Sender] = []
        self.failures: list[OperatorFailure] = []
        self.error: PipelineError | None = None
        self.done = asyncio.Event()
        self.started_at = time.perf_counter()
        self.ended_at: float | None = None
        self.policy_runs: dict[ErrorPolicy, PolicyRun] = {}
        self.scopes = self._resolve_policies(nodes)
        self._build(nodes)
        for node, outlets in taps.items():
            for outlet in outlets:
                self.attach(node, outlet)
        self._hold_policies()

    def _resolve_policies(self, nodes: list[Node]) -> dict[Node, PolicyRun]:
        """The policy run each node's errors go to (see ``Node.governing_policy``); nodes under
        no policy share a default run that stops the graph on every error."""
        default = PolicyRun(ErrorPolicy(None, "errors"), self.clock)
        scopes: dict[Node, PolicyRun] = {}
        for node in nodes:
            policy = node.governing_policy()
            if policy is None:
                scopes[node] = default
                continue
            if policy not in self.policy_runs:
                self.policy_runs[policy] = PolicyRun(policy, self.clock)
            scopes[node] = self.policy_runs[policy]
        return scopes

    def _hold_policies(self) -> None:
        """Tell each policy how many tasks run its operators; its ``errors()`` stream ends
        when the last of them does (at once, if none does)."""
        for chain in self.chains:
            for scope in chain.scopes_held():
                scope.hold()
        for scope in self.policy_runs.values():
            scope.end_if_idle()

    def _build(self, nodes: list[Node]) -> None:
        consumers: dict[Node, int] = {node: 0 for node in nodes}
        for node in nodes:
            for producer in node.inputs:
                consumers[producer] += 1
        for node in nodes:
            if node.kind in FUSABLE:
                self._place_operator(node, consumers)
            elif node.kind == "push":
                assert node.inbox is not None
                self.channels.append(node.inbox[0])
                self._new_chain(node, _ChannelHead(node.inbox[1]), head_node=node)
            elif node.kind == "pull":
                self._place_source(node)
            elif node.kind == "operator":
                self._place_stateful(node)
            elif node.kind == "side":
                self._place_side(node)
            elif node.kind == "dead_letters":
                self._place_dead_letters(node)
            else:  # pragma: no cover - a kind added to _graph without a planner
                raise StreamError(f"no planner for operator kind {node.kind!r}")

    def _new_chain(self, node: Node, head: _Head, *, head_node: Node | None) -> ChainTask:
        chain = ChainTask(node.name, head, head_node, self.scopes, inline=self.inline)
        self.chains.append(chain)
        if head_node is not None:
            self.where[node] = (chain, 0)
        return chain

    def _place_source(self, node: Node) -> None:
        if is_sync_source(node.source):
            self._new_chain(node, _IterableHead(node, self.batch_size), head_node=node)
            return
        sender, receiver = self._channel(f"{node.name}.reader")
        self.feeders.append((f"{node.name}.reader", lambda: _feed(node, sender)))
        self._new_chain(node, _ChannelHead(receiver), head_node=node)

    def _place_operator(self, node: Node, consumers: dict[Node, int]) -> None:
        (producer,) = node.inputs
        chain, point = self.where[producer]
        if consumers[producer] != 1:
            sender, receiver = self._channel(f"{producer.name}->{node.name}")
            chain.attach(point, ChannelOutlet(sender))
            chain, point = self._new_chain(node, _ChannelHead(receiver), head_node=None), 0
        chain.nodes.append(node)
        self.where[node] = (chain, point + 1)

    def _place_stateful(self, node: Node) -> None:
        config: ChannelConfig | None = node.settings
        receivers = []
        scope = self.scopes[node]
        for index, producer in enumerate(node.inputs):
            sender, receiver = self._channel(f"{producer.name}->{node.name}[{index}]", config)
            self.attach(producer, ChannelOutlet(sender, (scope, node, producer.name)))
            receivers.append(receiver)
        head = _OperatorHead(node, receivers, self.clock, scope)
        self.operators[node] = head
        chain = self._new_chain(node, head, head_node=None)
        self.where[node] = (chain, 0)

    def _place_side(self, node: Node) -> None:
        (producer,) = node.inputs
        assert node.port is not None
        sender, receiver = self._channel(f"{producer.name}.{node.port}")
        self.operators[producer].side_outlets.setdefault(node.port, []).append(ChannelOutlet(sender))
        self._new_chain(node, _ChannelHead(receiver), head_node=node)

    def _place_dead_letters(self, node: Node) -> None:
        sender, receiver = self._channel(node.name)
        scope = self.policy_runs.get(node.settings)
        if scope is None:  # no operator of this run is under the policy: the stream is empty
            sender.close()
        else:
            scope.outlets.append(ChannelOutlet(sender))
        self._new_chain(node, _ChannelHead(receiver), head_node=node)

    def _channel(self, name: str, config: ChannelConfig | None = None) -> tuple[Sender, Receiver]:
        if config is None:
            config = ChannelConfig(self.capacity)
        sender, receiver = create_channel(
            name,
            config.capacity,
            strategy=config.strategy,
            timeout=config.timeout,
            batch_size=self.batch_size,
            codec=config.codec,
        )
        self.channels.append(sender)
        return sender, receiver

    def attach(self, node: Node, outlet: Outlet) -> None:
        """Send what ``node`` produces from now on to ``outlet`` too."""
        chain, point = self.where[node]
        chain.attach(point, outlet)

    def state_sizes(self) -> dict[str, int]:
        """``size_bytes()`` of every distinct shared state of the operators, by name."""
        sizes: dict[str, int] = {}
        seen: set[int] = set()
        for head in self.operators.values():
            state = getattr(head.operator, "state", None)
            if state is None or id(state) in seen:
                continue
            seen.add(id(state))
            name, n = state.name, 1
            while name in sizes:
                n += 1
                name = f"{state.name}#{n}"
            sizes[name] = state.size_bytes()
        return sizes

    def operator_details(self) -> dict[str, dict[str, float]]:
        """Operator-specific metrics of every stateful operator, by operator name."""
        return {node.name: head.operator.details() for node, head in self.operators.items()}

    def flush_counts(self) -> None:
        """Bring every node's counters up to date (metrics read them)."""
        for chain in self.chains:
            chain.flush_counts()

    def channel_statistics(self) -> dict[str, ChannelStatistics]:
        return {sender.name: sender.statistics() for sender in self.channels}

    async def run(self) -> None:
        """Run every task to completion; on failure raise :class:`PipelineError`."""
        try:
            async with anyio.create_task_group() as group:
                for name, feeder in self.feeders:
                    group.start_soon(self._guard, name, feeder, name=name)
                for chain in self.chains:
                    group.start_soon(self._guard, chain.name, chain.run, name=chain.name)
        except BaseExceptionGroup as group:
            self.error = self._pipeline_error(group)
            raise self.error from self.error.__cause__
        finally:
            self.ended_at = time.perf_counter()
            self.done.set()

    async def _guard(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run one task, recording its failure; an operator cancelled by anyone but us fails."""
        try:
            await run()
        except OperatorFailure as failure:
            self.failures.append(failure)
            raise
        except anyio.get_cancelled_exc_class():
            # -inf: this graph's scope or an enclosing one was cancelled; anything else is a
            # task.cancel() aimed at one operator, which would otherwise end its stream early.
            if anyio.current_effective_deadline() == -math.inf:
                raise
            error = asyncio.CancelledError(f"operator {name!r} was cancelled from outside the graph")
            cancelled = OperatorFailure(name, error)
            self.failures.append(cancelled)
            raise cancelled from None
        except Exception as exc:
            exc.add_note(f"sage_streams: raised in operator {name!r}")
            unexpected = OperatorFailure(name, exc)
            self.failures.append(unexpected)
            raise unexpected from exc

    def _pipeline_error(self, group: BaseExceptionGroup[Any]) -> PipelineError:
        if not self.failures:  # pragma: no cover - every task runs under _guard
            raise group
        first = self.failures[0]
        if isinstance(first.error, ErrorThresholdExceeded):
            first.error.errors += [failure.error for failure in self.failures[1:]]
            return first.error
        others = len(self.failures) - 1
        more = f" (and {others} more error{'s' if others > 1 else ''})" if others else ""
        error = PipelineError(
            f"pipeline {self.env_name!r} failed: {first.describe()}{more}",
            [failure.error for failure in self.failures],
            operator=first.operator,
            item=first.item,
        )
        error.__cause__ = first.error
        return error
