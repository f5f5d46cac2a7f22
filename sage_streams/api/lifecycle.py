"""A graph inside a service: ``env.running()``, ``env.status``, restarts and drain timeouts.

:class:`Supervising` is the part of :class:`~sage_streams.LocalEnvironment` that runs its graph in
the background of a host application (a web server's lifespan, a worker): ``async with
env.running(drain_timeout=..., restart=..., on_failure=...):``. Inside the block the graph runs;
leaving it closes the push streams and drains the graph, for at most ``drain_timeout`` seconds
of the environment's clock, then cancels what is left and counts it in a :class:`DrainTimeout`.

A graph that fails inside the block is, in order: restarted (a :class:`RestartPolicy`, each
restart a new run of the same graph, restored from the last checkpoint when the environment
takes checkpoints); once the policy is spent, reported (``on_failure(error)``, once, while the
block goes on: the host keeps serving, and an ``emit`` raises a :class:`StreamError` that says
the graph stopped); and raised when the block exits. Without ``on_failure`` a final failure
cancels the block at once, as it always did. ``env.status`` (a :class:`Status`) says where the
graph is at any moment, for a health check.

Example::

    async with env.running(drain_timeout=10, restart=RestartPolicy(3, backoff=1.0)):
        await events.emit({"user": "ann"})
        if not env.status.healthy:
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import anyio

from sage_streams._graph.node import Node
from sage_streams._runtime import Outlet, Plan
from sage_streams._typing import check_seconds
from sage_streams.channel import Receiver, Sender
from sage_streams.connectors.ingest import IngestLog
from sage_streams.errors import DrainTimeout, PipelineError, StreamError
from sage_streams.time import Clock

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Lifecycle", "RestartPolicy", "State", "Status", "Supervising"]


class Lifecycle(enum.Enum):
    """Where an environment's graph is in its life: ``env.lifecycle``.

    A graph is built (``BUILDING``), then runs (``RUNNING``), and its run ends one of three
    ways; an ended graph may be extended and run again::

        BUILDING ──> RUNNING ──> FINISHED | FAILED | CANCELLED
                        ^                      │
                        └──────────────────────┘

    While it runs, nothing can be added to it and it cannot be started again (a
    :class:`~sage_streams.StreamError` says so); ``emit_threadsafe`` needs it running.
    ``env.status`` adds what a service needs on top: restarts, the error, the times.
    """

    BUILDING = "building"
    """Never run: streams and operators are being added."""
    RUNNING = "running"
    """A run is in progress (``execute()``, ``env.running()``, a ``collect()`` or ``async for``)."""
    FINISHED = "finished"
    """The last run ended: every source was exhausted and every sink drained."""
    FAILED = "failed"
    """The last run stopped with a :class:`~sage_streams.PipelineError`."""
    CANCELLED = "cancelled"
    """The last run was cancelled before it ended: a reader left its ``async for``, the task
    awaiting it was cancelled, or the ``env.running()`` block raised."""


State: TypeAlias = Literal["idle", "running", "restarting", "finished", "failed", "cancelled"]
"""``env.status.state``: the lifecycle, with ``"idle"`` for a graph never run and
``"restarting"`` for the wait of a :class:`RestartPolicy` between a failed run and the next."""

_STATES: dict[Lifecycle, State] = {
    Lifecycle.BUILDING: "idle",
    Lifecycle.RUNNING: "running",
    Lifecycle.FINISHED: "finished",
    Lifecycle.FAILED: "failed",
    Lifecycle.CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How ``env.running(restart=...)`` restarts a graph that failed: at most ``max_restarts``
    times per block, waiting ``backoff`` seconds (of the environment's clock) before the first
    restart and ``factor`` times longer before each next one, up to ``max_backoff``.

    A restart is a new run of the same graph: with checkpoints, restored from the last committed
    epoch; without, from nothing (a list source is read again from its start, windows start
    empty). What the failed run held (items queued in its channels, open windows) is lost unless
    a checkpoint or a durable push stream keeps it. The failure after the last restart is final.

    Example::

        RestartPolicy(3, backoff=0.5)  # waits 0.5, 1, 2 s before restarts 1, 2, 3
    """

    max_restarts: int
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        restarts = self.max_restarts
        if not isinstance(restarts, int) or isinstance(restarts, bool):
            raise TypeError(f"max_restarts must be an int, got {restarts!r}")
        if restarts < 0:
            raise ValueError(f"max_restarts must be 0 or more, got {restarts!r}")
        check_seconds("backoff", self.backoff)
        check_seconds("max_backoff", self.max_backoff)
        if check_seconds("factor", self.factor) < 1:
            raise ValueError(f"factor must be at least 1 (waits do not shrink), got {self.factor!r}")

    def delay(self, restart: int) -> float:
        """Seconds to wait before restart number ``restart`` (1 for the first)."""
        return float(min(self.backoff * self.factor ** (restart - 1), self.max_backoff))


@dataclass(frozen=True, slots=True)
class Status:
    """Where a graph is, for a health check: ``env.status``, a snapshot (it does not change).

    Attributes:
        state: the lifecycle as a word (see :data:`State`): ``"idle"``, ``"running"``,
            ``"restarting"``, ``"finished"``, ``"failed"`` or ``"cancelled"``.
        error: the last failure of the current or last ``running()`` block or run: the
            :class:`~sage_streams.PipelineError` that stopped it (kept after a restart that
            succeeded, so it can be shown), a :class:`~sage_streams.DrainTimeout`, or ``None``.
        restarts: the restarts of the current or last ``running()`` block.
        started_at: when the current or last run started, in wall-clock seconds of the
            environment's clock (``clock.time()``); ``None`` before any run.
        ended_at: when the last run ended (same clock); ``None`` while it runs or before any.
    """

    state: State
    error: BaseException | None = None
    restarts: int = 0
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def healthy(self) -> bool:
        """Whether nothing went wrong: idle, running or finished (not restarting, failed or
        cancelled)."""
        return self.state in ("idle", "running", "finished")


OnFailure: TypeAlias = Callable[[PipelineError], object]
"""``on_failure(error)``: a function, or an ``async def`` (awaited), told of a final failure."""


class _Supervisor:
    """One ``running()`` block's runs: the current plan, the restarts, the final failure."""

    def __init__(
        self, env: Supervising, plan: Plan, restart: RestartPolicy | None, on_failure: OnFailure | None
    ) -> None:
        self.env = env
        self.plan = plan
        self.restart = restart
        self.on_failure = on_failure
        self.restarts = 0
        self.restarting = False
        self.leaving = False
        self.error: BaseException | None = None
        """The last failure (see ``Status.error``)."""
        self.final: PipelineError | None = None
        """The failure reported to ``on_failure``, raised when the block exits."""
        self.done = asyncio.Event()
        self.resumed = asyncio.Event()
        """Set while no restart is under way."""
        self.resumed.set()
        self._wake = asyncio.Event()

    async def supervise(self) -> None:
        """Run the plan, and a new one after each failure the policy restarts."""
        try:
            while True:
                try:
                    await self.env._run(self.plan)
                    return
                except PipelineError as error:
                    self.error = error
                    policy = self.restart
                    if policy is None or self.restarts >= policy.max_restarts:
                        if self.on_failure is None:
                            raise  # cancels the block, as a failure always did
                        self.final = error
                        outcome = self.on_failure(error)
                        if inspect.isawaitable(outcome):
                            await outcome
                        return
                await self._restart(policy)
        finally:
            self.restarting = False
            self.resumed.set()
            self.done.set()

    async def _restart(self, policy: RestartPolicy) -> None:
        """Wait the policy's backoff (cut short when the block exits), then start a new run."""
        env = self.env
        self.restarts += 1
        self.restarting = True
        self.resumed.clear()
        env._reopen_inboxes()  # emits during the wait queue up for the next run
        if not self.leaving:
            await _wait(env.clock, policy.delay(self.restarts), self._wake)
        self.plan = env._start({}, "env.running()")
        self.restarting = False
        self.resumed.set()
        if self.leaving:
            env._close_push_streams()  # the new run reads what was emitted, then ends

    def leave(self) -> None:
        """The block exited: end the push streams and any restart wait, so the graph drains."""
        self.leaving = True
        self._wake.set()
        self.env._close_push_streams()

    async def restarted(self) -> None:
        """Return once no restart is under way (at once when none is)."""
        await self.resumed.wait()

    def undelivered(self) -> dict[str, int]:
        """Items queued in each channel of the current run (push inboxes included), by channel
        name: what cancelling it now would not deliver."""
        counts = {}
        for name, stats in self.plan.channel_statistics().items():
            if stats.depth + stats.overflow:
                counts[name] = stats.depth + stats.overflow
        return counts


async def _wait(clock: Clock, seconds: float, wake: asyncio.Event) -> bool:
    """Wait ``seconds`` of ``clock`` or until ``wake`` is set; ``True`` if it was set."""
    if wake.is_set() or seconds <= 0:
        return wake.is_set()
    ring = asyncio.Event()
    timer = clock.call_at(clock.now() + seconds, ring.set)
    waiters = [asyncio.ensure_future(ring.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    return wake.is_set()


class Supervising:
    """``running()``, ``status`` and what they share, for :class:`~sage_streams.LocalEnvironment`."""

    name: str
    clock: Clock
    _nodes: list[Node]
    _inboxes: dict[Node, tuple[Sender, Receiver]]
    _lifecycle: Lifecycle
    _plan: Plan | None
    _supervisor: _Supervisor | None
    _started_at: float | None
    _ended_at: float | None

    if TYPE_CHECKING:

        def _start(self, taps: dict[Node, list[Outlet]], what: str) -> Plan: ...
        async def _run(self, plan: Plan) -> None: ...
        def _end(self, plan: Plan, ended: Lifecycle) -> None: ...
        def _open_inbox(self, node: Node) -> None: ...

    @property
    def status(self) -> Status:
        """Where the graph is now, as a :class:`Status`: a health check reads it.

        ``status.healthy`` is false while a :class:`RestartPolicy` waits to restart a failed
        run, and once a run failed or was cancelled; ``status.error`` says why.
        """
        supervisor = self._current_supervisor()
        plan = self._plan
        state = _STATES[self._lifecycle]
        error: BaseException | None = plan.error if plan is not None else None
        restarts = 0
        if supervisor is not None:
            state = "restarting" if supervisor.restarting else state
            error = supervisor.error or error
            restarts = supervisor.restarts
        running = self._lifecycle is Lifecycle.RUNNING
        return Status(state, error, restarts, self._started_at, None if running else self._ended_at)

    def _current_supervisor(self) -> _Supervisor | None:
        """The supervisor of the current or last run, if a ``running()`` block started it."""
        supervisor = self._supervisor
        if supervisor is not None and (supervisor.restarting or supervisor.plan is self._plan):
            return supervisor
        return None

    def _restarts(self) -> int:
        """The restarts of the current or last ``running()`` block (``metrics().restarts``)."""
        supervisor = self._current_supervisor()
        return 0 if supervisor is None else supervisor.restarts

    @contextlib.asynccontextmanager
    async def running(
        self,
        *,
        drain_timeout: float | None = None,
        restart: RestartPolicy | None = None,
        on_failure: OnFailure | None = None,
    ) -> AsyncIterator[Self]:
        """Run the graph in the background while the block runs.

        The block starts once the graph does: with checkpoints, after its restore.

        Leaving the block normally closes every push stream, lets the graph drain and waits for
        it: for as long as it takes, or, with ``drain_timeout``, at most that many seconds of
        the environment's clock; the graph is then cancelled and :class:`DrainTimeout` raised,
        its ``undelivered`` counting the items still queued in each channel. An error in the
        block cancels the graph.

        A failure of the graph is restarted by ``restart`` (see :class:`RestartPolicy`;
        ``metrics().restarts`` and ``status.restarts`` count them). While a restart waits, an
        ``emit`` goes into the push stream's buffer for the next run, and, when the buffer is
        full, waits for that run; an ``emit`` waiting in the failed run raises
        :class:`StreamError`. A failure that is not restarted is final: with ``on_failure``,
        that is called once with the :class:`PipelineError` and the block goes on (every
        ``emit`` then raises :class:`StreamError`, caused by the graph's error), and the error
        is raised when the block exits; without it, the failure cancels the block and raises
        one :class:`PipelineError` from the ``async with``. What the block raised because the
        graph had stopped (an ``emit`` into a stream nobody reads any more, a live reader
        raising the same error) is part of that error, not a second one.

        Raises:
            PipelineError: the graph failed for good.
            DrainTimeout: the graph had not drained ``drain_timeout`` seconds after the block.
        """
        drain = None if drain_timeout is None else check_seconds("drain_timeout", drain_timeout)
        if restart is not None and not isinstance(restart, RestartPolicy):
            raise TypeError(f"restart must be a RestartPolicy or None, got {restart!r}")
        if on_failure is not None and not callable(on_failure):
            raise TypeError(f"on_failure must be callable or None, got {on_failure!r}")
        plan = self._start({}, "env.running()")
        supervisor = self._supervisor = _Supervisor(self, plan, restart, on_failure)
        undelivered: dict[str, int] | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(supervisor.supervise, name=f"{self.name}.run")
                try:
                    await plan.started.wait()  # restored from its checkpoints, if it takes them
                    yield self
                except BaseException:
                    group.cancel_scope.cancel()
                    raise
                supervisor.leave()
                if drain is not None and not await _wait(self.clock, drain, supervisor.done):
                    undelivered = supervisor.undelivered()
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = _outcome(group, supervisor.plan)
            raise error from error.__cause__  # a PipelineError keeps its first error as cause
        finally:
            self._end(supervisor.plan, Lifecycle.CANCELLED)  # a run task that never started
        if supervisor.final is not None:
            raise supervisor.final from supervisor.final.__cause__
        if undelivered is not None:
            total = sum(undelivered.values())
            timeout = DrainTimeout(
                f"the graph of environment {self.name!r} had not drained {drain:g} s after its "
                f"running() block: cancelled with {total} item(s) undelivered "
                f"({', '.join(f'{name}: {count}' for name, count in undelivered.items()) or 'none queued'})",
                undelivered,
            )
            supervisor.error = timeout
            raise timeout

    async def _restart_wait(self) -> None:
        """Return once no restart of a ``running()`` block is under way (``emit`` waits here
        for the next run when the buffer is full)."""
        if self._supervisor is not None:
            await self._supervisor.restarted()

    def _close_push_streams(self) -> None:
        for sender, _ in self._inboxes.values():
            sender.close()
        for node in self._nodes:
            if isinstance(node.source, IngestLog):
                node.source.drain()  # this run ends; the log goes on in the next

    def _reopen_inboxes(self) -> None:
        """Give every push stream not closed a new inbox, for a restart: the failed run closed
        the old one (and what was queued in it went with the run)."""
        for node, (sender, _) in list(self._inboxes.items()):
            if not sender.closed:
                sender.close()
                self._open_inbox(node)


def _outcome(group: BaseExceptionGroup[Any], plan: Plan) -> BaseException:
    """The one exception a ``running()`` block raises for the exceptions of its task group.

    When the graph failed, that is its :class:`PipelineError`, and the block's exceptions that
    only followed from the stop (the same error, or a :class:`StreamError` caused by one of the
    graph's errors) are folded into it; anything else the block raised is kept beside it.
    """
    exceptions = _leaves(group)
    if plan.error is not None:
        causes = [failure.error for failure in plan.failures]
        own = [
            exc
            for exc in exceptions
            if exc is not plan.error
            and not (isinstance(exc, StreamError) and any(exc.__cause__ is cause for cause in causes))
        ]
        if not own:
            return plan.error
        message = f"the graph of environment {plan.env_name!r} and its running() block both failed"
        return BaseExceptionGroup(message, [plan.error, *own])
    return exceptions[0] if len(exceptions) == 1 else group


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions of a group and of the groups inside it, in order."""
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves
