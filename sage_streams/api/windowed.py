"""Windowed streams: event-time windows over one or more inputs.

The window operator reads each item's timestamp, keeps a watermark per input (the largest
timestamp seen minus ``out_of_orderness``, never going back) and takes the smallest over the
inputs that have not ended as its own, as Flink does. It feeds the pure logic of
:mod:`sage_streams.operators.windows.state`, which fires a window ``[start, end)`` once the watermark reaches
``end``. An item all of whose windows are past ``end + allowed_lateness`` is late: it goes to
``windowed.late()``, never silently away. At the end of input every open window fires.

A windowed stream is a stream of :class:`WindowData`; ``process(fn)`` turns each into results.
``aggregate(add, initial=...)`` makes the windows fold their items as they arrive instead of
keeping them, and gives a stream of :class:`WindowAggregate`: when a window needs only a fold
of its items (a sum, a count, a maximum), that saves storing them and walking them again.

Example::

    windowed = connected.window("tumbling", size=60)
    totals = windowed.process(lambda window, state: sum(i["value"] for s in window for i in s))
    # or, folding as items arrive (one accumulator per input: ``value`` is a tuple here):
    totals = windowed.aggregate(lambda total, item: total + item["value"], initial=0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sage_streams._typing import CALL_OPTIONS, CallOptions, UserFunction
from sage_streams.api.stream import DataStream
from sage_streams.api.windowing import WindowSpec
from sage_streams.errors import StreamError
from sage_streams.functions import is_async_callable, resolve_function, window_results
from sage_streams.operators.windows.contents import Accumulators
from sage_streams.operators.windows.operator import WindowAggregate, WindowData
from sage_streams.state import StreamState

__all__ = ["WindowAggregate", "WindowData", "WindowedStream"]


def _same(window: WindowData) -> WindowAggregate:
    """The step of ``aggregate``: the window operator makes the records; this step gives them a
    stream, a name and metrics of their own, as ``process``'s step does for its results.

    Once aggregated, the operator's stream (typed ``WindowData``) carries ``WindowAggregate``
    records instead, so this step only renames the type.
    """
    return window  # type: ignore[return-value]


class WindowedStream(DataStream[WindowData]):
    """The fired windows of a window operator, as :class:`WindowData`; see :meth:`process` and
    :meth:`aggregate`."""

    _state: StreamState
    _spec: WindowSpec

    def process(
        self,
        fn: UserFunction,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> DataStream[Any]:
        """A stream of what ``fn(window_data, state, **kwargs)`` returns for each window.

        One result per window, a tuple included; a list or generator gives several, ``None``
        none. ``fn`` may be ``async``. ``concurrency``, ``ordered``, ``timeout``, ``in_thread``
        and ``key_func`` are those of :meth:`DataStream.map`, applied to the calls of ``fn``,
        one per window (so those names are not passed on to ``fn`` in ``kwargs``):
        ``ordered="key"`` with ``key_func=lambda window: window.key`` processes one key's
        windows in order while other keys' overlap.
        """
        if self._spec.accumulators is not None:
            raise StreamError(
                f"{self.name!r} is aggregated: its windows hold accumulators, not items;"
                " process a window(...) of its own"
            )
        function = resolve_function(fn, "window function")
        state = self._state
        label = name or f"process({getattr(function, '__name__', 'fn')})"
        options = CallOptions(**{key: kwargs.pop(key) for key in CALL_OPTIONS if key in kwargs})  # type: ignore[typeddict-item]
        if is_async_callable(function):

            async def apply_async(window: WindowData) -> Sequence[Any]:
                return window_results(await function(window, state, **kwargs))

            processed = self.flat_map(apply_async, name=label, **options)
        else:

            def apply(window: WindowData) -> Sequence[Any]:
                return window_results(function(window, state, **kwargs))

            processed = self.flat_map(apply, name=label, **options)
        processed._node.state = state
        return processed

    def aggregate(
        self,
        add: UserFunction,
        *,
        initial: Any,
        merge: UserFunction | None = None,
        name: str | None = None,
    ) -> DataStream[WindowAggregate]:
        """A stream of one :class:`WindowAggregate` per fired window, its items folded by ``add``.

        Each item is folded into its window's accumulator when it arrives,
        ``accumulator = add(accumulator, item)``, instead of being kept until the window fires
        (Flink's ``AggregateFunction``, Bytewax's ``fold_window``): nothing is stored and nothing
        is walked twice, so a sum, count or maximum per window costs much less than with
        :meth:`process`. A window starts at ``initial``, or, if it is callable, at what it returns:
        it is called for each new window and input (``initial=list`` for an accumulator that
        ``add`` changes in place). Over several inputs, ``value`` is a tuple of one accumulator
        per input, in input order. Windows fire, refire within ``allowed_lateness`` (the same
        accumulator, late items folded in: one changed in place changes what was emitted before
        too) and send late items to :meth:`late` as with :meth:`process`. Sessions merge when
        an item bridges two, so they need ``merge(earlier, later)`` (a ``ValueError`` here
        without it); the bridging item is folded into the merged accumulator.

        ``add`` and ``merge`` may be registered names and must be plain functions (a
        ``TypeError`` here for ``async def``): they run in the window operator as items arrive.
        An ``add`` that raises is an error of its item for the error policy, as a failing key
        function is; it leaves no trace if ``add`` returns a new accumulator rather than changing
        one in place. A window is aggregated or processed, not both; once aggregated, this
        windowed stream carries the ``WindowAggregate`` records too.

        Example::

            sums = events.window("tumbling", size=60, key_func=lambda e: e["user"]).aggregate(
                lambda total, event: total + event["amount"], initial=0
            )
            # WindowAggregate(key="ann", start_time=0.0, end_time=60.0, value=42, refire=False)
        """
        adder = resolve_function(add, "window aggregate function")
        merger = resolve_function(merge, "window merge function") if merge is not None else None
        spec = self._spec
        accumulators = Accumulators(adder, initial, merger)
        spec.state(accumulators)  # refuses sessions without merge now, not at run time
        if spec.accumulators is not None:
            raise StreamError(f"{self.name!r} is aggregated already; aggregate a window(...) of its own")
        readers = [
            node.name for node in self._env._nodes if self._node in node.inputs and node.kind != "side"
        ]
        if readers:
            raise StreamError(
                f"{self.name!r} already feeds {', '.join(map(repr, readers))} with its WindowData;"
                " aggregate a window(...) of its own"
            )
        label = name or f"aggregate({getattr(adder, '__name__', 'add')})"
        aggregated: DataStream[WindowAggregate] = self.map(_same, name=label)
        aggregated._node.reported_kind = "aggregate"
        spec.accumulators = accumulators
        return aggregated

    def late(self) -> DataStream[Any]:
        """Items that came after all of their windows had closed (``end + allowed_lateness``)."""
        return self._side_output("late")
