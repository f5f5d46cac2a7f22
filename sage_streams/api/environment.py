"""LocalEnvironment: one dataflow graph and the runtime that runs it in this process.

Building is synchronous and lazy: ``create_stream`` and every ``DataStream`` method only add
nodes. Running is ``async``: ``await env.execute()`` runs until every source is exhausted and
every sink has drained; ``async with env.running():`` runs the graph in the background of a
service; ``env.run()`` is ``asyncio.run(env.execute())`` for scripts, on uvloop when installed.

A graph may run again after a run has ended: pull sources are read afresh (a list again from the
start; a one-shot iterator or generator has nothing left), push streams stay closed once closed.
``env.lifecycle`` says where the graph is: a :class:`Lifecycle`; ``env.status`` adds restarts,
the last error and times, for a service's health check (see :mod:`sage_streams.api.lifecycle`).

Example::

    env = LocalEnvironment()
    doubled = env.from_collection(range(5)).map(lambda x: 2 * x)
    print(await doubled.collect())  # [0, 2, 4, 6, 8]
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterable, Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

from sage_streams._codegen import Inline, tracing
from sage_streams._graph.node import Node
from sage_streams._runtime import Counters, Outlet, Plan, is_sync_source, refuse_blocking_run, running_loop
from sage_streams._typing import T, check_positive_int, check_seconds
from sage_streams.api.checkpointing import Checkpointing, checked_guarantee
from sage_streams.api.drawing import Drawing
from sage_streams.api.lifecycle import Lifecycle, Supervising
from sage_streams.channel import Receiver, Sender, create_channel
from sage_streams.checkpoint import CheckpointStore, StateCodec, resolve_state_codec
from sage_streams.connectors import DecodingSource, Guarantee, ReplayableSource
from sage_streams.connectors.ingest import IngestLog
from sage_streams.errors import StreamError
from sage_streams.metrics import MetricsSnapshot, OperatorMetrics
from sage_streams.time import Clock, SystemClock

if TYPE_CHECKING:
    from sage_streams._typing import Source
    from sage_streams.api.stream import DataStream

__all__ = ["Lifecycle", "LocalEnvironment"]


class LocalEnvironment(Checkpointing, Supervising, Drawing):
    """One dataflow graph and its runtime.

    Args:
        name: shown in errors and metrics.
        buffer_size: the bound, in items, of every channel of the graph (backpressure).
        batch_size: how many items move through a channel or a fused chain at a time.
        clock: processing time for processing-time windows and idle timeouts (the event loop's
            clock by default; ``sage_streams.testing.ManualClock`` in tests).
        inline: paste the code of small user functions into the generated loops instead of
            calling them, about twice as fast for a cheap step. ``True`` pastes functions of
            one expression (``lambda x: x * 2``, a ``def`` of one ``return``); ``"all"`` also
            straight-line bodies of statements (a sink that tallies into a list it closes
            over), which a logger or a warning then places in the loop; ``False`` calls every
            function. A pasted function has no frame of its own in tracebacks (a note names
            it). Nothing is inlined while a tracer or profiler (a debugger, coverage) is active.
        codegen: run the generated loops (the default), or, when false, their plain interpreted
            twins, which are slower but hold no generated code: a debugger steps through them,
            and the tests hold the generated loops to them. ``None`` reads the environment
            variable ``SAGE_STREAMS_CODEGEN`` (``0`` for the plain path, ``1`` or unset for the
            generated one). Without code generation nothing is inlined.
        checkpoints: where the graph's checkpoints go: a path (one SQLite file, written off the
            event loop) or a :class:`~sage_streams.checkpoint.CheckpointStore`; ``None`` (the
            default) takes none. A run on a store holding a committed epoch starts from it:
            operator state restored, replayable sources (lists, tuples, ranges) from their
            positions. ``name`` identifies the job in the store, operator names their state.
        checkpoint_interval: seconds of ``clock`` between two checkpoints.
        checkpoint_codec: how state is written: ``"sage"`` (JSON values and tagged tuples, sets,
            bytes, datetimes, decimals), ``"pickle"`` (an explicit opt-in) or a codec object.
        required_guarantee: ``"exactly_once"`` (or ``"at_least_once"``) to refuse, at the start
            of a run, a graph whose parts give less (see ``guarantee``); ``None``: no check.
    """

    def __init__(
        self,
        name: str = "default",
        *,
        buffer_size: int = 1000,
        batch_size: int = 1024,
        clock: Clock | None = None,
        inline: Inline = True,
        codegen: bool | None = None,
        checkpoints: str | os.PathLike[str] | CheckpointStore | None = None,
        checkpoint_interval: float = 1.0,
        checkpoint_codec: str | StateCodec = "sage",
        required_guarantee: Guarantee | None = None,
    ) -> None:
        _check_name("an environment", name)
        check_positive_int("buffer_size", buffer_size)
        check_positive_int("batch_size", batch_size)
        if not (isinstance(inline, bool) or inline == "all"):
            raise TypeError(f"inline must be True, 'all' or False, got {inline!r}")
        self.name = name
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.inline: Inline = inline
        self.codegen: bool = _codegen_default() if codegen is None else _checked_codegen(codegen)
        self.checkpoint_interval = check_seconds("checkpoint_interval", checkpoint_interval, allow_zero=False)
        self._codec = resolve_state_codec(checkpoint_codec)
        self._checkpoints = checkpoints
        self.required_guarantee = checked_guarantee(required_guarantee)
        self._nodes: list[Node] = []
        self._inboxes: dict[Node, tuple[Sender, Receiver]] = {}
        """The channel ``emit`` feeds, of each push stream: made with the stream, so that items
        emitted before a run wait in it for the run."""
        self._names: set[str] = set()
        self._lifecycle = Lifecycle.BUILDING
        self._plan: Plan | None = None  # of the run in progress, or of the last one
        self._implicit = False
        self._supervisor = None  # of the last running() block
        self._started_at: float | None = None  # clock.time() of the current or last run's start
        self._ended_at: float | None = None

    @classmethod
    def _for_unbound_stream(cls) -> LocalEnvironment:
        """The environment of a ``DataStream(name)``: it joins the graph it is connected to."""
        env = cls("default")
        env._implicit = True
        return env

    def _adopt(self, other: LocalEnvironment) -> None:
        """Move the graph of an implicit environment into this one (renaming on clashes)."""
        if Lifecycle.RUNNING in (self._lifecycle, other._lifecycle):
            raise StreamError("cannot connect streams while their graph is running")
        for node in other._nodes:
            node.name = self._unique(node.name)
            node.env = self
            self._names.add(node.name)
            self._nodes.append(node)
        self._inboxes.update(other._inboxes)
        other._inboxes = {}
        other._nodes = []
        other._names = set()

    def __repr__(self) -> str:
        return f"<LocalEnvironment {self.name!r}: {len(self._nodes)} nodes>"

    # -- building -------------------------------------------------------------------------

    @overload
    def create_stream(self, name: str, source: None = None, *, durable: bool = False) -> DataStream[Any]: ...
    @overload
    def create_stream(
        self, name: str, source: Iterable[T] | AsyncIterable[T] | Callable[[], AsyncIterable[T]]
    ) -> DataStream[T]: ...
    @overload
    def create_stream(self, name: str, source: ReplayableSource) -> DataStream[Any]: ...
    def create_stream(
        self, name: str, source: Source | ReplayableSource | None = None, *, durable: bool = False
    ) -> DataStream[Any]:
        """A push stream fed with ``await s.emit(item)``, or with ``source``, a pull stream.

        ``source`` may be an iterable, an async iterable (aiostream streams included), an
        async generator function, called afresh for each run, or a
        :class:`~sage_streams.connectors.ReplayableSource` (a file source, say), which a run
        restored from checkpoints reads again from its committed position. A source that
        decodes its entries (a :class:`~sage_streams.connectors.DecodingSource`: the Redis,
        NATS and PostgreSQL sources) gives the stream of an operator ``NAME.decode`` after it,
        so an entry that cannot be decoded goes through that stream's ``on_error`` policy.

        ``durable=True`` makes a push stream whose ``await emit(item)`` returns once the item
        is committed to a log on disk (``<checkpoints>.<name>.log``, group-committed, see
        :mod:`sage_streams.connectors.ingest`): after a crash, the restored run reads on from
        its checkpoint's position in the log, so no emitted item is lost or read twice. It
        needs ``checkpoints=`` a path.
        """
        from sage_streams.api.stream import DataStream

        if durable:
            if source is not None:
                raise TypeError(f"stream {name!r}: a durable stream is a push stream, it takes no source")
            checkpoints = self._checkpoints
            if not isinstance(checkpoints, str | os.PathLike):
                raise StreamError(
                    f"stream {name!r}: a durable push stream keeps its log beside the checkpoint "
                    "file; give the environment checkpoints=<a path>"
                )
            node = self.add_node(Node("pull", name))
            node.source = IngestLog(f"{os.fspath(checkpoints)}.{node.name}.log", self._codec)
        elif source is None:
            node = self.add_node(Node("push", name))
            self._open_inbox(node)
        elif isinstance(source, ReplayableSource):
            node = self.add_node(Node("pull", name, source=source))
            if isinstance(source, DecodingSource):
                return DataStream._of(self, node).map(source.decode, name=f"{node.name}.decode")
        else:
            if not (callable(source) or hasattr(source, "__iter__") or hasattr(source, "__aiter__")):
                raise TypeError(
                    f"source of stream {name!r} must be an iterable, an async iterable or an "
                    f"async generator function, got {type(source).__name__}"
                )
            node = self.add_node(Node("pull", name, source=source))
        return DataStream._of(self, node)

    def from_collection(self, items: Iterable[T], name: str | None = None) -> DataStream[T]:
        """A finite pull stream over ``items`` (read afresh on each run)."""
        if not is_sync_source(items):
            raise TypeError(f"from_collection takes an iterable, got {type(items).__name__}")
        return self.create_stream(name or "collection", source=items)

    def add_node(self, node: Node) -> Node:
        """Add ``node`` to this graph, under its name made unique (``name``, else ``name#2``, ...)."""
        name = node.name
        _check_name("a stream", name)
        if self._lifecycle is Lifecycle.RUNNING:
            raise StreamError(f"cannot add {name!r} to environment {self.name!r} while its graph is running")
        node.name = self._unique(name)
        node.env = self
        self._names.add(node.name)
        self._nodes.append(node)
        return node

    def _open_inbox(self, node: Node) -> None:
        """Give the push stream ``node`` the channel that ``emit`` feeds."""
        self._inboxes[node] = create_channel(
            f"{node.name}.inbox", self.buffer_size, batch_size=self.batch_size
        )

    def _unique(self, name: str) -> str:
        unique, n = name, 1
        while unique in self._names:
            n += 1
            unique = f"{name}#{n}"
        return unique

    # -- running ----------------------------------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        """Where the graph is: being built, running, or how its last run ended."""
        return self._lifecycle

    @property
    def is_running(self) -> bool:
        """Whether a run of this graph is in progress (``lifecycle is Lifecycle.RUNNING``)."""
        return self._lifecycle is Lifecycle.RUNNING

    def running_plan(self) -> Plan | None:
        """The plan of the run in progress, or ``None`` when the graph is not running."""
        return self._plan if self._lifecycle is Lifecycle.RUNNING else None

    async def execute(self) -> None:
        """Run the graph until every source is exhausted and every sink has drained.

        Raises:
            PipelineError: an operator failed; ``__cause__`` is the first error.
            StreamError: not called under asyncio (sage_streams runs on asyncio only).
        """
        await self.run_with({}, "execute()")

    async def run_with(self, taps: dict[Node, list[Outlet]], what: str) -> None:
        """Run the graph with extra outlets on some nodes (``collect``, ``async for``); ``what``
        names the call in errors."""
        await self._run(self._start(taps, what))

    def spawn_with(self, taps: dict[Node, list[Outlet]], what: str) -> asyncio.Task[None]:
        """Start a run as a task of its own; the caller must await or cancel it."""
        plan = self._start(taps, what)
        task = asyncio.ensure_future(self._run(plan))
        # A task cancelled before its first step never enters _run: it ends the run here.
        task.add_done_callback(lambda _: self._end(plan, Lifecycle.CANCELLED))
        return task

    async def _run(self, plan: Plan) -> None:
        """Run ``plan`` and record how it ended: finished, failed, or cancelled."""
        ended = Lifecycle.CANCELLED
        try:
            await plan.run()
            ended = Lifecycle.FINISHED
        finally:
            self._end(plan, Lifecycle.FAILED if plan.error is not None else ended)

    def _end(self, plan: Plan, ended: Lifecycle) -> None:
        """Leave ``RUNNING`` for ``ended``, unless the run of ``plan`` has already ended."""
        if self._plan is plan and self._lifecycle is Lifecycle.RUNNING:
            self._lifecycle = ended
            self._ended_at = self.clock.time()

    def inlining(self) -> bool:
        """Whether one-expression user functions are inlined in the run starting now (see
        ``inline``)."""
        return self.codegen and self.inline is not False and not tracing()

    def _start(self, taps: dict[Node, list[Outlet]], what: str) -> Plan:
        loop = running_loop(what)
        if self._lifecycle is Lifecycle.RUNNING:
            raise StreamError(f"the graph of environment {self.name!r} is already running")
        if not self._nodes:
            raise StreamError(f"environment {self.name!r} has no streams to run")
        self._check_guarantee()
        self._plan = Plan(
            self.name,
            self._nodes,
            taps,
            self._inboxes,
            capacity=self.buffer_size,
            batch_size=self.batch_size,
            clock=self.clock,
            inline=self.inline if self.inlining() else False,
            codegen=self.codegen,
            loop=loop,
            checkpointer=self._checkpointer(),
        )
        self._lifecycle = Lifecycle.RUNNING
        self._started_at = self.clock.time()
        return self._plan

    def run(self) -> None:
        """Run the graph to completion from synchronous code, on uvloop when it is installed.

        Raises:
            RuntimeError: an event loop is already running in this thread (a notebook, a
                service), which ``run()`` would block: ``await env.execute()`` there instead.
        """
        refuse_blocking_run()
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self.execute())

    # -- observing --------------------------------------------------------------------------

    def metrics(self) -> MetricsSnapshot:
        """A snapshot of every operator and channel of the current or last run."""
        plan = self._plan
        if plan is not None:
            plan.flush_counts()
        elapsed = 0.0 if plan is None else (plan.ended_at or time.perf_counter()) - plan.started_at
        details = plan.operator_details() if plan is not None else {}
        modes = plan.operator_modes() if plan is not None else {}
        counters = plan.counters if plan is not None else {}
        operators = {}
        for node in self._nodes:
            counted = counters.get(node) or Counters()
            operators[node.name] = OperatorMetrics(
                name=node.name,
                kind=node.reported_kind,
                items_in=counted.items_in,
                items_out=counted.items_out,
                rate=counted.items_in / elapsed if elapsed > 0 else 0.0,
                details=details.get(node.name, {}),
                mode=modes.get(node.name),
                errors=counted.errors,
                retries=counted.retries,
                dead_letters=counted.dead_letters,
            )
        channels = plan.channel_statistics() if plan is not None else {}
        if plan is None:
            for sender, _ in self._inboxes.values():
                channels[sender.name] = sender.statistics()
        states = plan.state_sizes() if plan is not None else {}
        checkpoints = {}
        if plan is not None and plan.checkpointer is not None:
            stats = plan.checkpointer.stats
            checkpoints = {
                "epoch": float(stats.epoch),
                "completed": float(stats.completed),
                "committed": float(stats.committed),
                "duration": stats.duration,
                "bytes": float(stats.bytes_written),
                "alignment": stats.alignment,
                "restore_duration": stats.restore_duration,
            }
        return MetricsSnapshot(
            operators=operators,
            channels=channels,
            elapsed=elapsed,
            states=states,
            checkpoints=checkpoints,
            restarts=self._restarts(),
        )


def _check_name(what: str, name: object) -> None:
    """Refuse a name that is not a string: names key the metrics and appear in every error."""
    if not isinstance(name, str):
        raise TypeError(f"{what}'s name must be a string, got {name!r}")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _checked_codegen(codegen: object) -> bool:
    if not isinstance(codegen, bool):
        raise TypeError(f"codegen must be True, False or None, got {codegen!r}")
    return codegen


def _codegen_default() -> bool:
    """``SAGE_STREAMS_CODEGEN``: ``0`` selects the plain path; ``1``, empty or unset the generated one."""
    value = os.environ.get("SAGE_STREAMS_CODEGEN", "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"SAGE_STREAMS_CODEGEN must be 0 or 1, got {value!r}")
    return value != "0"
