"""What every operator shares: the protocols the runtime feeds, and the item-error signal.

An operator's logic is synchronous where it can be (``state.py`` of each operator family) and
wrapped by an :class:`Operator` (``operator.py``) that the runtime (``sage_streams._runtime``)
calls from one task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sage_streams._codegen import Step


__all__ = [
    "IncrementalSnapshotting",
    "ItemError",
    "Operator",
    "OperatorBase",
    "Snapshotting",
    "SteppingOperator",
    "TimedOperator",
    "WatermarkOperator",
    "snapshot_of",
]


class ItemError(Exception):
    """Internal: an error of one item, raised by operator logic (keys, timestamps, user code).

    It says enough for the runtime to apply an error policy without losing or repeating work:

    * ``index``: the item's position in the batch being processed, when known. The items before
      it are done; going on means feeding ``batch[index + 1:]``, retrying means ``batch[index:]``.
    * ``output``: what the items before it produced, to be emitted whatever the policy decides.
    * ``restore``: for a failure with no position (a process function called on its readers),
      puts back what the failed call consumed, so that a retry sees the same input.

    Users never see this class: they see ``error``, chained and annotated.
    """

    def __init__(
        self,
        item: object,
        error: BaseException,
        index: int | None = None,
        output: Sequence[object] = (),
        restore: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(item, error, index)
        self.item = item
        self.error = error
        self.index = index
        self.output = output
        self.restore = restore


class Operator(Protocol):
    """The logic of a stateful operator (process, join, synchronize), fed by the runtime.

    The runtime reads the operator's inputs, one channel each, and calls these methods from one
    task, so the logic needs no locks. Items returned go to the operator's main output; items
    put in :attr:`side` under a port name go to that side output (``unmatched()``, ...).
    Errors of one item are raised as :class:`~sage_streams.operators.base.ItemError`.
    """

    side: dict[str, list[Any]]

    def wants(self, index: int) -> bool:
        """Whether input ``index`` should be read now (``False`` holds it back: alignment)."""
        ...

    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        """Items arrived on input ``index``; returns the items to emit."""
        ...

    async def on_end(self, index: int) -> Sequence[Any]:
        """Input ``index`` has ended."""
        ...

    async def on_idle(self) -> Sequence[Any]:
        """No wanted input has a message now: emit what waited for a quiet moment."""
        ...

    async def on_finish(self) -> Sequence[Any]:
        """Every input has ended: emit what is left."""
        ...

    def stalled(self) -> str:
        """Why the operator cannot go on when it wants none of its open inputs."""
        ...

    def details(self) -> dict[str, float]:
        """Operator-specific metrics (join hit rate, buffered items, state size, ...)."""
        ...


class OperatorBase(ABC):
    """The :class:`Operator` protocol with its no-op defaults, written once.

    An operator subclasses it, implements :meth:`on_batch` and overrides only what differs:
    by default every input is wanted (so the operator never stalls), the end of an input, a
    quiet moment and the finish emit nothing, and there are no operator-specific metrics.
    ``SIDE_PORTS`` names the side outputs; each instance gets its own empty list per port, so
    that two runs of one graph never share side items.
    """

    SIDE_PORTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.side: dict[str, list[Any]] = {port: [] for port in self.SIDE_PORTS}

    def wants(self, index: int) -> bool:
        """Every input is read whenever it has data."""
        return True

    @abstractmethod
    async def on_batch(self, index: int, batch: Sequence[Any]) -> Sequence[Any]:
        """Items arrived on input ``index``; returns the items to emit."""

    async def on_end(self, index: int) -> Sequence[Any]:
        """The end of one input emits nothing."""
        return ()

    async def on_idle(self) -> Sequence[Any]:
        """Nothing waits for a quiet moment."""
        return ()

    async def on_finish(self) -> Sequence[Any]:
        """Nothing is left at the finish."""
        return ()

    def stalled(self) -> str:
        """Why the operator stalls; with the default :meth:`wants` it never does."""
        return f"{type(self).__name__} wants every open input, so it never stalls"

    def details(self) -> dict[str, float]:
        """No operator-specific metrics."""
        return {}


@runtime_checkable
class TimedOperator(Protocol):
    """An operator that also acts on processing time (processing-time windows, idle inputs).

    The runtime arms a timer on the environment's clock for :meth:`next_timer` and calls
    :meth:`on_timer` once the clock reaches it, with or without new input.
    """

    def next_timer(self) -> float | None:
        """The clock time at which :meth:`on_timer` is next wanted, or ``None``."""
        ...

    async def on_timer(self, now: float) -> Sequence[Any]:
        """The clock has reached the timer; returns the items to emit."""
        ...


@runtime_checkable
class WatermarkOperator(Protocol):
    """An operator that keeps event time itself (a window): it takes the watermarks arriving on
    its inputs and says what its own output watermark is.

    The runtime passes on, after the operator's output, every rise of :meth:`output_watermark`.
    For other operators it passes on the smallest watermark over the inputs still open.
    """

    async def on_watermark(self, index: int, time: float) -> Sequence[Any]:
        """A watermark arrived on input ``index``; returns the items to emit (fired windows)."""
        ...

    def output_watermark(self) -> float:
        """Event time as far as this operator's output is concerned (``-inf`` for none)."""
        ...


@runtime_checkable
class SteppingOperator(Protocol):
    """An operator that may come down to one stateless step for its one open input, such as a
    keyed inner join whose other input has ended with one item per key: a lookup. The runtime
    then runs that step itself, first in the loop of the steps after the operator (see
    ``_runtime.chain``), and reports the work back.
    """

    @property
    def mode(self) -> str:
        """How the operator runs now, for ``env.metrics()`` (a join: ``"hash"`` or ``"lookup"``)."""
        ...

    def as_step(self, index: int) -> Step | None:
        """The step that does all the operator still does for input ``index``, if there is one."""
        ...

    def record_step(self, entered: int, emitted: int) -> None:
        """Count the items that entered the step and the items it emitted."""
        ...


@runtime_checkable
class Snapshotting(Protocol):
    """An operator whose whole state can be taken as plain data and put back: a checkpoint.

    The state comes as *entries*, entry key to value, so that the runtime can write only the
    entries whose encoded bytes changed since the last epoch: a user key's state (a window key,
    a join or table key) is its own entry, under a small tuple such as ``("key", user_key)``, and
    the scalars (watermarks, counters, sequence numbers, ended flags) are one entry, ``"meta"``.
    Entry keys and values hold only ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
    lists, tuples, dicts, sets and frozensets, apart from the user's own items, keys and
    accumulators, which are shared as they are (read-only by contract). A ``StreamState`` is
    shared by several operators, so it is not part of theirs: it has its own pair of methods.
    """

    def snapshot(self) -> dict[Hashable, Any]:
        """The operator's whole state, as entries.

        The containers are fresh: the snapshot does not change when the operator goes on, so
        that the runtime may encode it later.
        """
        ...

    def restore(self, entries: Mapping[Hashable, Any]) -> None:
        """Bring an operator fresh from the same configuration to the state of ``entries``.

        Counters and metrics come back too, so that the run goes on as if it never stopped.
        """
        ...


@runtime_checkable
class IncrementalSnapshotting(Snapshotting, Protocol):
    """An operator that also tells which of its entries changed since its last snapshot, so
    that an epoch costs what changed, not the size of the state (a window operator of a
    million keys of which a thousand took items)."""

    def snapshot_changes(self) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """The entries that may have changed since the last call (or since :meth:`restore`, or
        since the operator was made), and the entry keys that may have gone since.

        Either may hold more than changed (an entry written again with the same value, a key
        that was never snapshotted): the runtime compares with what the store holds. Nothing
        that changed may be missing. The entries are fresh containers, as
        :meth:`~Snapshotting.snapshot`'s are. :meth:`~Snapshotting.snapshot` takes the whole
        state without changing what the next call of this method gives.
        """
        ...


def snapshot_of(operator: object) -> dict[Hashable, Any]:
    """``operator.snapshot()``; an operator that cannot be snapshotted is a ``TypeError``."""
    if not isinstance(operator, Snapshotting):
        raise TypeError(
            f"operator {type(operator).__name__} cannot be snapshotted: it has no snapshot() and"
            " restore(), so a checkpoint could not bring its state back"
        )
    return operator.snapshot()
