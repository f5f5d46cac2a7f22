"""The head of a stateful operator: reads its input channels, keeps time, calls the operator."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import anyio

from sage_streams._graph.node import Node
from sage_streams._runtime.checkpoints import STATE_ENTRY, paused_gc, state_entries
from sage_streams._runtime.counters import Counters
from sage_streams._runtime.failures import OperatorFailure
from sage_streams._runtime.heads import Prefix, Prefixed
from sage_streams._runtime.outlets import Outlet
from sage_streams._runtime.policy import PolicyRun
from sage_streams.channel import (
    ABORTED,
    END,
    Barrier,
    Control,
    Message,
    Receiver,
    Unreadable,
    Watermark,
)
from sage_streams.errors import CheckpointError, SpillError, StreamError
from sage_streams.operators.base import (
    IncrementalSnapshotting,
    ItemError,
    SteppingOperator,
    TimedOperator,
    WatermarkOperator,
    snapshot_of,
)
from sage_streams.time import Clock, TimerHandle

if TYPE_CHECKING:
    from sage_streams._runtime.checkpoints import Checkpointer

__all__ = ["OperatorHead"]

_HEAD: Final = ("head",)
"""The entry of a checkpoint that holds the head's own state, beside the operator's."""


class OperatorHead:
    """Drives a stateful operator: reads whichever wanted input has a message, feeds it.

    One task waits on all inputs through a doorbell that every input channel rings on a put,
    so each input keeps its own bound and a fast input is held back by its own full channel.
    Inputs are visited round-robin so that none starves another.
    """

    def __init__(
        self, node: Node, receivers: list[Receiver], clock: Clock, scope: PolicyRun, counters: Counters
    ) -> None:
        assert node.operator is not None
        self.node = node
        self.counters = counters
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
        self._prefix: Prefix | None = None
        self._prefixed_input = -1
        # An operator that may take a batch in parts (a batch process function) says what is left.
        self._unfinished: Callable[[], tuple[int, Sequence[Any]] | None] | None = getattr(
            self.operator, "unfinished", None
        )
        self._doorbell = asyncio.Event()
        for receiver in receivers:
            receiver.watch(self._doorbell.set)
        self.checkpointer: Checkpointer | None = None
        """Set by the plan when the run takes checkpoints."""
        self.state_holders: tuple[str, ...] = (node.name,)
        """The nodes that share this node's StreamState (set by the plan)."""
        self._blocked = [False] * len(receivers)  # inputs whose barrier came, held for alignment
        self._aligning = 0  # the epoch of those barriers
        self._align_started = 0.0  # when the first of them came
        self._barrier_out: Barrier | None = None
        # Messages read ahead of the operator, up to their input's barrier, from inputs it held
        # back while the others waited at theirs (part of the snapshot: they came before it).
        self._early: list[deque[Message]] = [deque() for _ in receivers]

    async def next_batch(self) -> Sequence[Any] | Prefixed | Control | None:
        while not self._finished:
            if (barrier := self._barrier_out) is not None:
                self._barrier_out = None
                for outlets in self.side_outlets.values():
                    for outlet in outlets:
                        outlet.send_control(barrier)
                return barrier
            if (watermark := self._risen_watermark()) is not None:
                return watermark
            output = await self._step()
            await self._flush_side()
            if isinstance(output, Prefixed):
                return output
            if output:
                self.counters.items_out += len(output)
                return output
        return None

    def _align(self) -> None:
        """Once every open input's barrier has come: snapshot, release them, pass it on. An
        input whose end was read ahead has no barrier to come."""
        if not any(self._blocked):
            return
        for index, blocked in enumerate(self._blocked):
            early = self._early[index]
            if not (blocked or self._ended[index] or (early and early[-1] is END)):
                return
        assert self.checkpointer is not None
        self.checkpointer.report_alignment(self._aligning, self.clock.now() - self._align_started)
        with paused_gc():
            entries, gone = self.snapshot_changes()
            self.checkpointer.report_state(self._aligning, self.node.name, entries, gone)
        self._blocked = [False] * len(self._blocked)
        self._barrier_out = Barrier(self._aligning)

    def snapshot(self) -> dict[Hashable, Any]:
        """The operator's state entries, and the head's own (ended inputs, watermarks)."""
        return self._with_head(dict(snapshot_of(self.operator)))

    def snapshot_changes(self) -> tuple[dict[Hashable, Any], list[Hashable] | None]:
        """What :meth:`snapshot` gives, but of an operator that tells its changes only the
        entries that changed since its last snapshot and the keys of those gone; ``None`` for
        the keys gone of one that does not (its entries are then all of them)."""
        if isinstance(self.operator, IncrementalSnapshotting):
            entries, gone = self.operator.snapshot_changes()
            return self._with_head(entries), gone
        return self.snapshot(), None

    def _with_head(self, entries: dict[Hashable, Any]) -> dict[Hashable, Any]:
        """``entries`` with the StreamState's and the head's own added."""
        state = state_entries(self.node, self.state_holders)
        if state is not None:
            entries[STATE_ENTRY] = state
        entries[_HEAD] = {
            "early": [[_early_entry(self.node.name, message) for message in early] for early in self._early],
            "ended": list(self._ended),
            "marks": list(self._marks),
            "passed": self._passed_mark,
            "finished": self._finished,
        }
        return entries

    def restore(self, entries: dict[Hashable, Any]) -> None:
        """Bring the operator and the head back to a checkpoint's ``entries``."""
        head = entries.pop(_HEAD)
        state = entries.pop(STATE_ENTRY, None)
        if state is not None and self.node.state is not None:
            self.node.state.restore_entries(state)
        self.operator.restore(entries)  # type: ignore[attr-defined]
        self._early = [deque(_early_message(entry) for entry in early) for early in head["early"]]
        self._ended = list(head["ended"])
        self._marks = list(head["marks"])
        self._passed_mark = head["passed"]
        self._finished = head["finished"]
        self._find_prefix()  # an input that had ended may leave a lookup, as when it ended

    async def _step(self) -> Sequence[Any] | Prefixed:
        """Handle one message, or wait for one; returns what the operator emitted, or a batch
        for the chain to join."""
        if self._unfinished is not None and (rest := self._unfinished()) is not None:
            return await self._call(self.operator.on_batch, *rest)  # before anything else arrives
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
        if type(message) is Barrier:
            if not any(self._blocked):
                self._align_started = self.clock.now()
            self._blocked[index] = True
            self._aligning = message.epoch
            self._align()
            return ()
        if type(message) is list:
            if index == self._prefixed_input:
                assert self._prefix is not None
                return Prefixed(message, self._prefix)
            self.counters.items_in += len(message)
            return await self._call(self.operator.on_batch, index, message)
        if message is END:
            self._ended[index] = True
            output = await self._call(self.operator.on_end, index)
            self._find_prefix()
            if self.checkpointer is not None:
                self._align()  # an ended input no longer holds an epoch back
            return output
        if type(message) is Watermark:
            self._marks[index] = max(self._marks[index], message.time)
            if self._keeps_time:
                return await self._call(self.operator.on_watermark, index, message.time)  # type: ignore[attr-defined]
        if type(message) is Unreadable:
            return await self._read_back(index, message)
        if message is ABORTED:
            await anyio.sleep_forever()  # the failing producer's task group cancels us
        return ()

    async def _read_back(self, index: int, message: Unreadable) -> Sequence[Any]:
        """Feed the item a ``buffer`` input could not read back, once the error policy has
        decided: ``"retry"`` reads it again, ``"continue"`` lets it go (counted as dropped)."""

        async def read(index: int) -> list[Any]:
            try:
                return [message.read()]
            except SpillError as error:
                raise ItemError(error.item, error) from None

        batch = await self._call(read, index)
        if not batch:
            self.receivers[index].discard(1)
            return ()
        self.counters.items_in += 1
        return await self._call(self.operator.on_batch, index, batch)

    def _find_prefix(self) -> None:
        """Once one input is left open, ask a stepping operator whether it is now one step."""
        open_inputs = [i for i, ended in enumerate(self._ended) if not ended]
        if (
            self._prefix is not None
            or len(open_inputs) != 1
            or not isinstance(self.operator, SteppingOperator)
        ):
            return
        (index,) = open_inputs
        step = self.operator.as_step(index)
        if step is None:
            return
        step = replace(step, operator=self.node.name)  # its errors are the operator's
        self._prefix = Prefix(step, self.node, self.node.inputs[index].name, self.operator.record_step)
        self._prefixed_input = index

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
            if self._early[index]:
                self._next_input = index + 1
                return index, self._early[index].popleft()
            if self._blocked[index]:
                continue
            message = self.receivers[index].receive_nowait()
            if message is not None:
                self._next_input = index + 1
                return index, message
        return None

    async def _wait(self) -> None:
        """Wait for a message on a wanted input; an operator that wants none of its open
        inputs can never go on, which is an error rather than a hang."""
        wanted = [
            i
            for i, ended in enumerate(self._ended)
            if not ended and not self._blocked[i] and self.operator.wants(i)
        ]
        if not wanted and any(self._blocked):
            # Every input the operator wants waits at its barrier; the others are held back
            # by the operator: read those up to their barriers, so that the epoch can align.
            wanted = [i for i, ended in enumerate(self._ended) if not ended and not self._blocked[i]]
            wanted = [i for i in wanted if not (self._early[i] and self._early[i][-1] is END)]
            if self._read_ahead(wanted):
                self._align()
                return
        if not wanted:
            raise OperatorFailure(self.node.name, StreamError(self.operator.stalled()))
        # Cleared before looking, so a put between the look and the wait still wakes us. The
        # inputs we do not want may hold messages: they must not keep us from waiting.
        self._doorbell.clear()
        if self._timed:
            self._arm_timer()
        if not any(self.receivers[i].has_message() for i in wanted):
            await self._doorbell.wait()

    def _read_ahead(self, inputs: list[int]) -> bool:
        """Move what ``inputs`` hold, up to a barrier or their end, into their early buffers;
        whether anything was read."""
        moved = False
        for index in inputs:
            while (message := self.receivers[index].receive_nowait()) is not None:
                moved = True
                if type(message) is Barrier:
                    self._blocked[index] = True
                    break
                self._early[index].append(message)
                if message is END:
                    break
        return moved

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

    async def close(self, completed: bool) -> None:
        if self._timer is not None:
            self._timer[1].cancel()
            self._timer = None
        for receiver in self.receivers:
            receiver.watch(None)
            receiver.close()
        for outlets in self.side_outlets.values():
            for outlet in outlets:
                outlet.close() if completed else outlet.abort()


def _early_entry(operator: str, message: Message) -> Any:
    """A message read ahead, as plain data for a snapshot."""
    if type(message) is list:
        return ["items", list(message)]
    if message is END:
        return ["end"]
    if type(message) is Watermark:
        return ["watermark", message.time]
    raise CheckpointError(  # an item a "buffer" channel could not read back: it has no value
        f"operator {operator!r} cannot checkpoint an unreadable spilled item held ahead of a barrier"
    )


def _early_message(entry: Any) -> Message:
    kind = entry[0]
    if kind == "items":
        return list(entry[1])
    return END if kind == "end" else Watermark(entry[1])
