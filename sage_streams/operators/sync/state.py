"""Synchronization of two or more inputs: by timestamp, or by marker events (barrier alignment).

This is the pure, synchronous logic behind ``ConnectedStreams.synchronize``. The runtime feeds a
synchronizer the batches of each input with :meth:`~Synchronizer.push`, tells it when an input
ends with :meth:`~Synchronizer.end` and when every input has ended with
:meth:`~Synchronizer.finish`, and asks :meth:`~Synchronizer.wants` before reading an input.
``wants(index)`` is ``False`` for an input that has run ahead (a full buffer, or held at a
marker): the runtime leaves that input's channel unread, so its producer blocks on it and the
input that is behind catches up. Backpressure is the alignment mechanism; nothing here waits.

Every call returns a :class:`SyncOutput`: the tuples completed by that call and the items given
up as unmatched. Each input's items may arrive in batches of any size; how the batches are split
never changes which tuples are emitted.

A bad item (a missing or invalid timestamp, a non-mapping item for ``item['type']``) raises
:class:`SyncItemError`, an :class:`~sage_streams.operators.base.ItemError` whose ``index`` is the item's
position in the batch and whose ``partial`` holds what the items before it produced; those items
are fully processed, so the caller may go on with ``items[index + 1:]`` and nothing is lost.

Example::

    sync = sync_config(2, "timestamp", tolerance=0.5).build()
    sync.push(0, [{"timestamp": 1.0}, {"timestamp": 2.0}])
    out = sync.push(1, [{"timestamp": 1.4}])
    out.tuples       # [({"timestamp": 1.0}, {"timestamp": 1.4})]
    sync.finish().unmatched  # [{"timestamp": 2.0}]
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sage_streams.errors import StreamError
from sage_streams.operators.base import ItemError
from sage_streams.operators.timestamps import TimestampSpec, timestamp_reader

__all__ = ["EventSync", "SyncItemError", "SyncOutput", "Synchronizer", "TimestampSync"]


@dataclass(frozen=True)
class SyncOutput:
    """What one call of a synchronizer produced.

    Attributes:
        tuples: the completed tuples, in the order they were completed; one entry per input, in
            input order (an item for ``"timestamp"``, a list of items for ``"event"``).
        unmatched: items that can no longer be part of a tuple, in the order they were given up.
    """

    tuples: list[tuple[Any, ...]] = field(default_factory=list)
    unmatched: list[Any] = field(default_factory=list)


class SyncItemError(ItemError):
    """A bad item in a pushed batch; ``partial`` is what the items before it produced.

    The items before ``index`` have been fully processed and the failing item has not been kept,
    so the caller continues with ``items[index + 1:]`` after taking ``partial``.
    """

    def __init__(self, item: object, error: BaseException, index: int, output: SyncOutput) -> None:
        super().__init__(item, error, index)
        self.partial = output


class Synchronizer(Protocol):
    """The shape the runtime drives: one instance per run, called from one task."""

    def wants(self, index: int) -> bool:
        """Whether input ``index`` should be read now (``False`` holds it back)."""
        ...

    def push(self, index: int, items: Sequence[Any]) -> SyncOutput:
        """Items arrived on input ``index``, in order."""
        ...

    def end(self, index: int) -> SyncOutput:
        """Input ``index`` has ended; calling it again does nothing."""
        ...

    def finish(self) -> SyncOutput:
        """Every input has ended: emit and give up everything that is left."""
        ...

    def snapshot(self) -> dict[Hashable, Any]:
        """The state as entries (see :class:`~sage_streams.operators.base.Snapshotting`)."""
        ...

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        """Bring a fresh synchronizer of the same configuration to the state of ``entries``."""
        ...


class _Inputs:
    """Index checks and end-of-input bookkeeping shared by both synchronizers."""

    def __init__(self, n_inputs: int, max_buffered: int) -> None:
        self.n_inputs = n_inputs
        self.max_buffered = max_buffered
        self._ended = [False] * n_inputs

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.n_inputs:
            raise IndexError(f"input index {index} out of range for {self.n_inputs} inputs")

    def _check_open(self, index: int) -> None:
        self._check_index(index)
        if self._ended[index]:
            raise StreamError(f"input {index} has ended; nothing can be pushed to it")

    def _push(self, index: int, items: Sequence[Any], judge: Callable[[Any], Any]) -> SyncOutput:
        """Feed ``(judge(item), item)`` pairs; an item's error feeds those before it, then raises.

        Lossless: the caller gets what the earlier items produced in ``SyncItemError.partial``
        and goes on with ``items[index + 1:]``. The caller has checked ``index`` is open.
        """
        output = SyncOutput()
        judged: list[tuple[Any, Any]] = []
        for position, item in enumerate(items):
            try:
                judged.append((judge(item), item))
            except ItemError as exc:
                self._feed(index, judged, output)
                raise SyncItemError(exc.item, exc.error, position, output) from exc
        self._feed(index, judged, output)
        return output

    def end(self, index: int) -> SyncOutput:
        """Input ``index`` has ended; calling it again does nothing."""
        self._check_index(index)
        output = SyncOutput()
        if not self._ended[index]:
            self._ended[index] = True
            self._settle(output)
        return output

    def _feed(self, index: int, judged: list[tuple[Any, Any]], output: SyncOutput) -> None:
        raise NotImplementedError  # pragma: no cover - each synchronizer feeds its own way

    def _settle(self, output: SyncOutput) -> None:
        raise NotImplementedError  # pragma: no cover - each synchronizer settles its own way


# -- timestamp -------------------------------------------------------------------------------------


class TimestampSync(_Inputs):
    """Tuples of one item per input whose timestamps lie within ``tolerance`` of each other.

    Each input must arrive in timestamp order (a late item on one input may be given up as
    unmatched though a partner existed; it is never an error). Items are matched at the heads
    of the per-input queues: when the heads lie within ``tolerance`` (``max - min <= tolerance``)
    they form a tuple, in input order; otherwise the earliest head (the lowest input index on a
    tie) can never match, because every later item of every other input is at least as late as
    that input's head, and it is given up as unmatched. Each item is used at most once.

    When an input has ended and its queue is empty, nothing can match any more: everything queued
    is given up, earliest first (ties by input index), and items pushed afterwards go straight to
    ``unmatched``. :meth:`finish` gives up what is left in the same order.

    ``wants(index)`` is ``False`` while input ``index`` has ``max_buffered`` items queued (and
    once it has ended); the input that is behind always has an empty queue, so it stays wanted.

    Example::

        sync = TimestampSync(2, tolerance=0.0, timestamp="timestamp", max_buffered=1000)
        sync.push(0, [{"timestamp": 1}, {"timestamp": 2}])
        sync.push(1, [{"timestamp": 2}]).unmatched  # [{"timestamp": 1}], and one tuple at 2
    """

    def __init__(
        self, n_inputs: int, *, tolerance: float, timestamp: TimestampSpec, max_buffered: int
    ) -> None:
        super().__init__(n_inputs, max_buffered)
        self.tolerance = tolerance
        self._readers = [timestamp_reader(timestamp) for _ in range(n_inputs)]
        self._queues: list[deque[tuple[float, Any]]] = [deque() for _ in range(n_inputs)]
        self._exhausted = False  # an ended input has run dry: no tuple can be completed

    def wants(self, index: int) -> bool:
        """Whether input ``index`` is open and has fewer than ``max_buffered`` items queued."""
        self._check_index(index)
        return not self._ended[index] and len(self._queues[index]) < self.max_buffered

    def push(self, index: int, items: Sequence[Any]) -> SyncOutput:
        """Queue ``items`` on input ``index`` and match what can be matched.

        Raises:
            SyncItemError: an item without a valid timestamp; the items before it are processed.
        """
        self._check_open(index)
        return self._push(index, items, self._readers[index])

    def snapshot(self) -> dict[Hashable, Any]:
        """``("queue", i)``: input ``i``'s queued ``(timestamp, item)`` pairs, in order;
        ``"meta"``: the ended flags, and whether an ended input has run dry."""
        entries: dict[Hashable, Any] = {"meta": (list(self._ended), self._exhausted)}
        for index, queue in enumerate(self._queues):
            entries["queue", index] = list(queue)
        return entries

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        ended, self._exhausted = entries["meta"]
        self._ended = list(ended)
        self._queues = [deque(tuple(pair) for pair in entries["queue", i]) for i in range(self.n_inputs)]

    def _settle(self, output: SyncOutput) -> None:
        # An ended input, once its queue runs dry, leaves everything else unmatched.
        self._match(output)

    def finish(self) -> SyncOutput:
        """Give up every queued item as unmatched, earliest first."""
        self._ended = [True] * self.n_inputs
        self._exhausted = True
        output = SyncOutput()
        self._give_up_all(output)
        return output

    def _feed(self, index: int, stamped: list[tuple[Any, Any]], output: SyncOutput) -> None:
        if self._exhausted:
            output.unmatched.extend(item for _, item in stamped)
        elif stamped:
            self._queues[index].extend(stamped)
            self._match(output)

    def _match(self, output: SyncOutput) -> None:
        queues, tolerance = self._queues, self.tolerance
        while all(queues):
            heads = [queue[0][0] for queue in queues]
            earliest = min(heads)
            if max(heads) - earliest <= tolerance:
                output.tuples.append(tuple(queue.popleft()[1] for queue in queues))
            else:
                output.unmatched.append(queues[heads.index(earliest)].popleft()[1])
        if any(ended and not queue for ended, queue in zip(self._ended, queues, strict=True)):
            self._exhausted = True
            self._give_up_all(output)

    def _give_up_all(self, output: SyncOutput) -> None:
        # The same order as the matching loop gives items up in: earliest head first.
        keyed = [[(ts, i, item) for ts, item in queue] for i, queue in enumerate(self._queues)]
        output.unmatched.extend(item for _, _, item in heapq.merge(*keyed, key=lambda e: e[:2]))
        for queue in self._queues:
            queue.clear()


# -- event -----------------------------------------------------------------------------------------


def _marker_test(sync_event: Any) -> Callable[[Any], bool]:
    """``item -> is it a marker``, raising :class:`ItemError` for an item it cannot judge."""
    if callable(sync_event):
        predicate = sync_event

        def test(item: Any) -> bool:
            try:
                return bool(predicate(item))
            except Exception as exc:
                raise ItemError(item, exc) from exc

        return test

    def test_type(item: Any) -> bool:
        if not isinstance(item, Mapping):
            error = TypeError(
                f"event synchronization reads item['type'], but got an item of type {type(item).__name__}"
            )
            raise ItemError(item, error)
        return "type" in item and bool(item["type"] == sync_event)

    return test_type


class EventSync(_Inputs):
    """Barrier alignment: one tuple of per-input item lists each time every input reaches a marker.

    An item is a marker when ``sync_event(item)`` is true (a callable ``sync_event``), else when
    ``item["type"] == sync_event``; a mapping without ``"type"`` is an ordinary item and any
    other item is an error of that item. Each input collects its items since its previous marker.
    An input that reaches a marker is held (``wants`` is ``False``); items pushed to it after the
    marker wait, in order, for the next round. When every input is held, one tuple is emitted,
    per input (in input order) the list it collected, markers not included; then every input is
    released and its waiting items are processed (they may reach the next marker at once).

    An input that has ended counts as held for good: rounds go on completing as the other inputs
    reach markers, its list holding what it had left and then nothing. Nothing is lost at end of
    input: :meth:`finish` emits one last tuple with every input's remaining items when any input
    has some.

    Example::

        sync = EventSync(2, sync_event="tick", max_buffered=1000)
        sync.push(0, [{"v": 1}, {"type": "tick"}, {"v": 2}])
        sync.push(1, [{"v": 3}, {"type": "tick"}]).tuples  # [([{"v": 1}], [{"v": 3}])]
        sync.finish().tuples  # [([{"v": 2}], [])]
    """

    def __init__(self, n_inputs: int, *, sync_event: Any, max_buffered: int) -> None:
        super().__init__(n_inputs, max_buffered)
        self._is_marker = _marker_test(sync_event)
        self._collected: list[list[Any]] = [[] for _ in range(n_inputs)]
        self._held = [False] * n_inputs
        self._waiting: list[deque[tuple[bool, Any]]] = [deque() for _ in range(n_inputs)]  # (is marker, item)

    def wants(self, index: int) -> bool:
        """Whether input ``index`` is open, not held at a marker, and not backed up."""
        self._check_index(index)
        return (
            not self._ended[index] and not self._held[index] and len(self._waiting[index]) < self.max_buffered
        )

    def push(self, index: int, items: Sequence[Any]) -> SyncOutput:
        """Collect ``items`` on input ``index``, holding it at a marker; emit completed rounds.

        Raises:
            SyncItemError: an item that cannot be judged a marker or not; the items before it
                are processed.
        """
        self._check_open(index)
        return self._push(index, items, self._is_marker)

    def snapshot(self) -> dict[Hashable, Any]:
        """``("collected", i)``: input ``i``'s items of this round; ``("waiting", i)``: its
        ``(is marker, item)`` pairs after its marker; ``"meta"``: the ended and held flags."""
        entries: dict[Hashable, Any] = {"meta": (list(self._ended), list(self._held))}
        for index in range(self.n_inputs):
            entries["collected", index] = list(self._collected[index])
            entries["waiting", index] = list(self._waiting[index])
        return entries

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        ended, held = entries["meta"]
        self._ended, self._held = list(ended), list(held)
        self._collected = [list(entries["collected", i]) for i in range(self.n_inputs)]
        self._waiting = [deque(tuple(pair) for pair in entries["waiting", i]) for i in range(self.n_inputs)]

    def _settle(self, output: SyncOutput) -> None:
        # An ended input counts as held with what it has, which may complete rounds.
        self._complete_rounds(output)

    def finish(self) -> SyncOutput:
        """Complete the rounds still possible, then emit a last tuple if any items remain."""
        self._ended = [True] * self.n_inputs
        output = SyncOutput()
        self._complete_rounds(output)  # leaves no input held, so nothing waits any more
        if any(self._collected):
            self._emit(output)
        return output

    def _feed(self, index: int, classified: list[tuple[Any, Any]], output: SyncOutput) -> None:
        self._waiting[index].extend(classified)
        self._advance(index)
        self._complete_rounds(output)

    def _advance(self, index: int) -> None:
        """Move waiting items into the current round until the input reaches a marker."""
        waiting, collected = self._waiting[index], self._collected[index]
        while waiting and not self._held[index]:
            is_marker, item = waiting.popleft()
            if is_marker:
                self._held[index] = True
            else:
                collected.append(item)

    def _complete_rounds(self, output: SyncOutput) -> None:
        # At least one input must be at a real marker: inputs that have all ended complete nothing.
        while any(self._held) and all(
            held or ended for held, ended in zip(self._held, self._ended, strict=True)
        ):
            self._emit(output)
            self._held = [False] * self.n_inputs
            for index in range(self.n_inputs):
                self._advance(index)

    def _emit(self, output: SyncOutput) -> None:
        output.tuples.append(tuple(self._collected))
        self._collected = [[] for _ in range(self.n_inputs)]
