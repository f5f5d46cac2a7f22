"""``window(...)``, written once for :class:`DataStream` (one input) and :class:`ConnectedStreams`.

:class:`Windowing` validates the arguments, builds the window operator's node and returns its
:class:`~sage_streams.api.windowed.WindowedStream`; the class it is mixed into says which inputs
and state the windows get and what it adds to the node (a connected operator's error policy and
channel bounds). The semantics are in :mod:`sage_streams.api.windowed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, get_args

from sage_streams._graph.node import Node
from sage_streams._typing import UserFunction, check_choice, check_seconds
from sage_streams.functions import resolve_function
from sage_streams.operators.timestamps import TimestampSpec, timestamp_reader
from sage_streams.operators.windows.config import WindowConfig, WindowType, window_config
from sage_streams.operators.windows.contents import Accumulators
from sage_streams.operators.windows.operator import WindowOperator
from sage_streams.operators.windows.state import WindowState
from sage_streams.state import StreamState

if TYPE_CHECKING:
    from sage_streams.api.stream import DataStream
    from sage_streams.api.windowed import WindowedStream

__all__ = ["WINDOW_TIMES", "WindowSpec", "WindowTime", "Windowing"]

WindowTime: TypeAlias = Literal["event", "processing"]
"""Which clock a window follows: the items' timestamps, or the environment's clock."""

WINDOW_TIMES: Final[tuple[str, ...]] = get_args(WindowTime)


@dataclass(slots=True)
class WindowSpec:
    """What a window operator's state is made from at each run; ``aggregate`` sets accumulators."""

    config: WindowConfig
    inputs: int
    allowed_lateness: float
    accumulators: Accumulators | None = None

    def state(self, accumulators: Accumulators | None, *, codegen: bool = True) -> WindowState:
        """A fresh window state for one run (it refuses sessions without ``merge`` at once)."""
        return self.config.build(
            inputs=self.inputs,
            allowed_lateness=self.allowed_lateness,
            accumulators=accumulators,
            codegen=codegen,
        )


class Windowing:
    """The ``window`` method of :class:`DataStream` and :class:`ConnectedStreams`."""

    __slots__ = ()

    def _window_inputs(self) -> tuple[Sequence[DataStream[Any]], StreamState, UserFunction | None]:
        """The streams windowed, the state handed to ``process``, and the default key function."""
        raise NotImplementedError

    def _windowed(self, node: Node) -> None:
        """Called with the window operator's node once it is added; a stream adds nothing."""

    def window(
        self,
        window_type: WindowType,
        size: float | None = None,
        slide: float | None = None,
        *,
        timeout: float | None = None,
        time: WindowTime = "event",
        timestamp: TimestampSpec = "timestamp",
        key_func: UserFunction | None = None,
        out_of_orderness: float = 0.0,
        allowed_lateness: float = 0.0,
        idle_timeout: float | None = None,
        name: str | None = None,
    ) -> WindowedStream:
        """Windows over this stream, or across these connected streams: a stream of
        :class:`~sage_streams.WindowData`, one per fired window.

        ``windowed.process(fn)`` calls ``fn(window_data, state)`` once per fired window (with the
        connected streams' state); ``windowed.late()`` is the stream of late items. A window
        ``[start, end)`` fires when the watermark (the smallest over the inputs still open of
        each one's largest timestamp minus ``out_of_orderness``) reaches ``end``; at the end of
        input every open window fires. See :mod:`sage_streams.api.windowed`.

        Args:
            window_type: ``"tumbling"`` (takes ``size``), ``"sliding"`` (``size`` and
                ``slide``) or ``"session"`` (``timeout``); a parameter the type does not use is
                refused, not ignored.
            size: the length of a window, in seconds; windows are aligned to multiples of
                ``size`` (tumbling) or of ``slide`` (sliding) from 0.
            slide: the seconds between the starts of sliding windows, at most ``size``.
            timeout: the gap, in seconds without items, that ends a session.
            time: ``"event"`` (the items' timestamps) or ``"processing"`` (the environment's
                clock: windows fire on time even when no item comes).
            timestamp: the field holding an item's timestamp, or a function of the item.
            key_func: one window per key (a function or a registered name); ``None``: the key
                function of a stream made by ``key_by``, else one window across all items (to
                window a keyed stream across keys, window it before ``key_by``).
            out_of_orderness: seconds an input's watermark trails its largest timestamp.
            allowed_lateness: seconds after its end during which a window fires again for an
                item that comes late; later items go to ``late()``.
            idle_timeout: seconds of processing time after which an input that delivered
                nothing no longer holds the watermark back; ``None``: never.
            name: the operator's name in errors and metrics.

        Raises:
            UnknownNameError: an unknown ``window_type`` or ``time``.
            ValueError: a missing or foreign parameter, or a bad number of seconds.
            TypeError: a parameter of the wrong type.

        Example::

            counts = clicks.window("tumbling", 60, key_func=lambda c: c["user"]).process(
                lambda window, state: (window.key, sum(len(items) for items in window))
            )
        """
        from sage_streams.api.windowed import WindowedStream

        inputs, state, default_key = self._window_inputs()
        env = inputs[0].env
        check_choice(time, WINDOW_TIMES, "time")
        if idle_timeout is not None:
            check_seconds("idle_timeout", idle_timeout)
            if idle_timeout == 0:
                raise ValueError("idle_timeout must be more than 0 seconds, or None for no timeout")
        config = window_config(window_type, size, slide, timeout=timeout)
        delay = check_seconds("out_of_orderness", out_of_orderness)
        lateness = check_seconds("allowed_lateness", allowed_lateness)
        key_func = key_func if key_func is not None else default_key
        key_of = resolve_function(key_func, "window key function") if key_func is not None else None
        timestamp_reader(timestamp)  # refuses a bad spec now, not at run time
        names = [stream.name for stream in inputs]
        spec = WindowSpec(config, len(names), lateness)
        clock = env.clock
        if time == "processing" and not callable(getattr(clock, "time", None)):
            raise TypeError(
                f"processing-time windows need a clock with time(), wall-clock seconds since the epoch,"
                f" for their bounds; {clock!r} has none (see sage_streams.time.Clock)"
            )

        def factory() -> WindowOperator:
            # Made for each run, when its graph is planned: inlining is off under a tracer then.
            inline, codegen = env.inlining(), env.codegen
            accumulators = (
                spec.accumulators.compiled(inline, codegen) if spec.accumulators is not None else None
            )
            return WindowOperator(
                names,
                spec.state(accumulators, codegen=codegen),
                key_func=key_of,
                timestamp=timestamp,
                out_of_orderness=delay,
                clock=clock,
                processing_time=time == "processing",
                idle_timeout=idle_timeout,
                aggregated=accumulators is not None,
                inline=inline,
            )

        node = env.add_node(
            Node("operator", name or f"window({window_type})", tuple(s._node for s in inputs))
        )
        node.operator = factory
        self._windowed(node)
        windowed = WindowedStream._of(env, node)
        windowed._state = state
        windowed._spec = spec
        return windowed
