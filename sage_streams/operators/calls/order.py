"""The order results of overlapping calls leave in: the pure bookkeeping behind the three modes.

An :class:`Order` is told, in input order, of every call (:meth:`~Order.admit`) and of every
control message between them (:meth:`~Order.fence`); then, in any order, of each call's outputs
(:meth:`~Order.finish`). :meth:`~Order.take` gives what may leave now. It knows nothing of tasks
or clocks, so its rules are tested on their own (``tests/operators/calls``):

* :class:`InputOrder` (``ordered=True``): a call's outputs leave once every call before it has
  left; a call done early waits for its turn.
* :class:`CompletionOrder` (``ordered=False``): outputs leave as calls finish, within a
  *segment*: the calls between two control messages. A control message leaves once every call
  before it has, and a call after it does not overtake it (Flink's unordered mode keeps
  watermarks so).
* :class:`KeyOrder` (``ordered="key"``): completion order, and a call whose key has a call
  admitted before it that has not finished waits (``admit`` says so, ``finish`` hands it back):
  one key's calls run one at a time, in input order.

``held`` counts the calls admitted whose outputs have not left: the operator keeps it at most at
its concurrency, which bounds its memory whatever the calls' latencies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from sage_streams.channel import Control

__all__ = ["Call", "CompletionOrder", "InputOrder", "KeyOrder", "Order", "make_order"]

C = TypeVar("C", bound="Call")


class Call:
    """One item's call: the item, its key (``ordered="key"``), and its outputs once done."""

    __slots__ = ("attempt", "done", "expired", "item", "key", "outputs", "segment", "started", "task")

    def __init__(self, item: Any, key: Hashable = None) -> None:
        self.item = item
        self.key = key
        self.outputs: list[Any] = []
        self.done = False
        self.segment: _Segment | None = None
        self.attempt = 1
        """The number of the try in progress (a ``"retry"`` makes another)."""
        self.started = 0.0
        self.expired = False
        """Set when the call's timeout passed: the cancellation that follows is a timeout."""
        self.task: Any = None


class Order(Generic[C]):
    """What every mode shares: the count of calls held, and the interface the runtime uses."""

    def __init__(self) -> None:
        self.held = 0

    def admit(self, call: C) -> bool:
        """``call`` came next in input order; whether it may start now."""
        raise NotImplementedError

    def fence(self, control: Control) -> None:
        """``control`` came next in input order."""
        raise NotImplementedError

    def finish(self, call: C, outputs: list[Any]) -> C | None:
        """``call`` is done and produced ``outputs``; returns a call that may start now, if any."""
        raise NotImplementedError

    def take(self) -> list[Any] | Control | None:
        """What may leave now: a non-empty list of outputs, a control message, or ``None``."""
        raise NotImplementedError

    @property
    def empty(self) -> bool:
        """Whether nothing is held and no control message waits."""
        raise NotImplementedError


class InputOrder(Order[C]):
    """Outputs leave in input order (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[C | Control] = deque()

    def admit(self, call: C) -> bool:
        self._queue.append(call)
        self.held += 1
        return True

    def fence(self, control: Control) -> None:
        self._queue.append(control)

    def finish(self, call: C, outputs: list[Any]) -> C | None:
        call.outputs = outputs
        call.done = True
        return None

    def take(self) -> list[Any] | Control | None:
        queue = self._queue
        out: list[Any] = []
        left = 0
        while queue:
            first = queue[0]
            if isinstance(first, Control):
                if out:
                    break
                queue.popleft()
                self.held -= left
                return first
            if not first.done:
                break
            queue.popleft()
            left += 1
            out += first.outputs
        self.held -= left
        return out or None

    @property
    def empty(self) -> bool:
        return not self._queue


class _Segment:
    """The calls between two control messages: how many are not done, what the done ones
    produced and how many they are, and the control message that ends the segment."""

    __slots__ = ("control", "done", "outputs", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.done = 0
        self.outputs: list[Any] = []
        self.control: Control | None = None


class CompletionOrder(Order[C]):
    """Outputs leave as calls finish, within segments (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._segments: deque[_Segment] = deque([_Segment()])

    def admit(self, call: C) -> bool:
        segment = self._segments[-1]
        segment.pending += 1
        call.segment = segment
        self.held += 1
        return True

    def fence(self, control: Control) -> None:
        self._segments[-1].control = control
        self._segments.append(_Segment())

    def finish(self, call: C, outputs: list[Any]) -> C | None:
        segment = call.segment
        assert segment is not None
        segment.pending -= 1
        segment.done += 1
        segment.outputs += outputs
        call.done = True
        return None

    def take(self) -> list[Any] | Control | None:
        first = self._segments[0]
        if first.done:
            out, first.outputs = first.outputs, []
            self.held -= first.done
            first.done = 0
            if out:
                return out
        if first.pending == 0 and first.control is not None:
            self._segments.popleft()
            return first.control
        return None

    @property
    def empty(self) -> bool:
        return self.held == 0 and len(self._segments) == 1


class KeyOrder(CompletionOrder[C]):
    """Completion order, one call at a time per key (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: dict[Hashable, deque[C]] = {}

    def admit(self, call: C) -> bool:
        super().admit(call)
        waiting = self._waiting.get(call.key)
        if waiting is None:
            self._waiting[call.key] = deque()
            return True
        waiting.append(call)
        return False

    def finish(self, call: C, outputs: list[Any]) -> C | None:
        super().finish(call, outputs)
        waiting = self._waiting[call.key]
        if waiting:
            return waiting.popleft()
        del self._waiting[call.key]
        return None


def make_order(mode: bool | str) -> Order[Call]:
    """The :class:`Order` of ``ordered=mode``."""
    if mode == "key":
        return KeyOrder()
    return InputOrder() if mode else CompletionOrder()
