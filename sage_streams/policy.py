"""Error policies: what happens to an item whose processing raised.

Every error of one item — in a user function, a key function, a join condition, a timestamp, a
sink, or a producer's ``BackpressureTimeout`` — goes to the policy of the operator it happened in.
The policy asks the user's handler, ``handler(stream_id, error, context)``, for a decision:

* ``"continue"``: drop the item and go on. The item is kept as a :class:`DeadLetter` on the
  ``errors()`` stream (or logged, when the graph has none) and counted in the metrics.
* ``"retry"``: run the failing step again on the same input, at most ``max_retries`` times, after
  ``backoff * 2 ** (attempt - 1)`` seconds; a retry past the bound counts as ``"stop"``.
* ``"stop"``: fail the graph with a ``PipelineError`` chained to the error. Without a handler every
  error stops the graph.

A policy covers the operators made from the object it was set on (a ``ConnectedStreams``, or one
``DataStream``) and every operator downstream of them that has no policy of its own, sinks and
operators of several inputs (joins, windows, synchronize, process) included. Where the inputs of
an operator lead to different policies, the nearest wins (the fewest operators upstream), and of
two as near that of the earlier input, in the order given to ``ConnectedStreams``; a policy set
on the ``ConnectedStreams`` itself is nearer than any of its inputs'. A policy never covers an
operator its own ``errors()`` stream feeds (that stream ends only after such operators).
``set_error_threshold(max_errors, time_window)`` stops the graph with
:class:`~sage_streams.errors.ErrorThresholdExceeded` once more than ``max_errors`` errors happened
inside any ``time_window`` seconds of the environment's clock, whatever the handler says.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self, TypeAlias, get_args

import anyio

from sage_streams._typing import check_seconds
from sage_streams.errors import ErrorThresholdExceeded, OperatorFailure, StreamError, _error_text, _short_repr
from sage_streams.functions import resolve_function

if TYPE_CHECKING:
    from sage_streams._graph import Node
    from sage_streams._typing import UserFunction
    from sage_streams.environment import LocalEnvironment
    from sage_streams.stream import DataStream
    from sage_streams.time import Clock

__all__ = ["DeadLetter", "Decision", "ErrorContext", "ErrorHandling", "ErrorPolicy", "PolicyRun"]

Decision: TypeAlias = Literal["continue", "retry", "stop"]
DECISIONS: Final[tuple[str, ...]] = get_args(Decision)

logger = logging.getLogger("sage_streams")


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What the error handler is told besides the error.

    Attributes:
        item: the item that failed (for a process function, the list of items the failed call
            read; for a backpressure timeout, the batch that could not be delivered).
        operator: the name of the operator the error happened in.
        attempt: 1 for the first failure of this item in this operator, 2 after one retry, ...
        max_retries: how many retries the policy allows.
        stream_id: the stream the error belongs to (also the handler's first argument).
    """

    item: Any
    operator: str
    attempt: int
    max_retries: int
    stream_id: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An error handled with ``"continue"``: the item that did not make it, and why.

    Attributes:
        item: the item (see :attr:`ErrorContext.item`).
        error: the exception it raised.
        operator: the operator it raised in.
        stream_id: the stream the error belongs to.
        time: when it was handled, in seconds since the epoch (``time.time()``).
        attempts: how many times the item was tried.
    """

    item: Any
    error: BaseException
    operator: str
    stream_id: str
    time: float
    attempts: int


class DeadLetterOutlet(Protocol):
    """Where a policy's dead letters go during a run (the ``errors()`` stream's channel)."""

    async def send(self, batch: list[Any]) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class ErrorPolicy:
    """The error configuration of one ``ConnectedStreams`` or ``DataStream`` (its ``owner``).

    Building a graph only sets these fields; each run gets a :class:`PolicyRun` with the state.
    """

    def __init__(self, owner: object, errors_name: str) -> None:
        self.owner = owner
        self.errors_name = errors_name
        """The name of the ``errors()`` stream."""
        self.handler: Callable[..., Any] | None = None
        self.max_retries = 3
        self.backoff = 0.0
        self.max_errors: int | None = None
        self.time_window = 0.0
        self.dead_letters: Node | None = None
        """The node of the ``errors()`` stream, once somebody asked for it."""

    @property
    def is_set(self) -> bool:
        """Whether anything made this policy one to follow: a handler, a threshold, or an
        ``errors()`` stream asked for. A ``ConnectedStreams`` makes its policy up front; until
        it is set, its operators follow the policy of their inputs."""
        return self.handler is not None or self.max_errors is not None or self.dead_letters is not None

    def set_handler(self, handler: UserFunction, max_retries: int, backoff: float) -> None:
        """Validate and set what ``on_error`` was given."""
        function = resolve_function(handler, "error handler")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.handler = function
        self.max_retries = max_retries
        self.backoff = check_seconds("backoff", backoff)

    def set_threshold(self, max_errors: int, time_window: float) -> None:
        """Validate and set what ``set_error_threshold`` was given."""
        if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 0:
            raise ValueError(f"max_errors must be an int >= 0, got {max_errors!r}")
        self.time_window = check_seconds("time_window", time_window, allow_zero=False)
        self.max_errors = max_errors


class ErrorHandling:
    """The error-policy methods of :class:`ConnectedStreams` and :class:`DataStream`."""

    __slots__ = ()

    @property
    def env(self) -> LocalEnvironment:
        raise NotImplementedError

    def _error_policy(self) -> ErrorPolicy:
        """The policy ``on_error`` and ``set_error_threshold`` configure (made on first use)."""
        raise NotImplementedError

    def _policy_in_effect(self) -> ErrorPolicy:
        """The policy whose dead letters ``errors()`` gives."""
        return self._error_policy()

    def on_error(self, handler: UserFunction, *, max_retries: int = 3, backoff: float = 0.0) -> Self:
        """Decide what happens to an item whose processing raises.

        ``handler(stream_id, error, context)`` (sync or ``async``, or a registered name) returns
        ``"continue"``, ``"retry"`` or ``"stop"``; ``context`` has ``item``, ``operator``,
        ``attempt`` and ``max_retries``. A retry waits ``backoff * 2 ** (attempt - 1)`` seconds
        of the environment's clock first. See :mod:`sage_streams.policy`.
        """
        self._error_policy().set_handler(handler, max_retries, backoff)
        return self

    def set_error_threshold(self, max_errors: int, time_window: float) -> Self:
        """Stop the graph with ``ErrorThresholdExceeded`` once more than ``max_errors`` errors
        happened within any ``time_window`` seconds, whatever the handler decides."""
        self._error_policy().set_threshold(max_errors, time_window)
        return self

    def errors(self) -> DataStream[DeadLetter]:
        """The dead letters: a :class:`DeadLetter` for every error handled with ``"continue"``.

        A stream like any other (the same one however often asked); it ends when every
        operator under this policy has.
        """
        from sage_streams.stream import DataStream

        policy = self._policy_in_effect()
        if policy.dead_letters is None:
            node = self.env.add_node("dead_letters", policy.errors_name)
            node.settings = policy
            policy.dead_letters = node
        return DataStream._of(self.env, policy.dead_letters)


class PolicyRun:
    """One run's side of an :class:`ErrorPolicy`: recent error times, dead-letter outlets.

    ``decide`` is called by the task the error happened in and returns ``"continue"`` or
    ``"retry"``; every way of stopping raises :class:`OperatorFailure` instead, which fails the
    graph like any other operator failure.
    """

    def __init__(self, policy: ErrorPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.outlets: list[DeadLetterOutlet] = []
        self._recent: deque[float] = deque()
        self._tasks = 0

    @property
    def handles(self) -> bool:
        """Whether some errors may be survived (a handler is set)."""
        return self.policy.handler is not None

    def hold(self) -> None:
        """A task with operators under this policy has started."""
        self._tasks += 1

    def release(self, completed: bool) -> None:
        """Such a task has ended; the dead-letter stream ends with the last of them."""
        self._tasks -= 1
        if not completed:
            for outlet in self.outlets:
                outlet.abort()
        else:
            self.end_if_idle()

    def end_if_idle(self) -> None:
        """End the dead-letter stream if no task runs operators under this policy."""
        if self._tasks == 0:
            for outlet in self.outlets:
                outlet.close()

    async def decide(
        self, node: Node, stream_id: str, error: BaseException, item: Any, attempt: int
    ) -> Decision:
        """Count ``error``, ask the handler, and act on its answer.

        Raises:
            OperatorFailure: the graph must stop (the decision, the retry bound, the threshold,
                an invalid decision or a handler that raised).
        """
        node.errors += 1
        self._check_threshold(node, error, item)
        policy = self.policy
        if policy.handler is None:
            raise stopping(node.name, error, item)
        context = ErrorContext(item, node.name, attempt, policy.max_retries, stream_id)
        decision = await self._ask(node, stream_id, error, context)
        if decision == "retry" and attempt > policy.max_retries:
            error.add_note(f"sage_streams: still failing after {policy.max_retries} retries")
            decision = "stop"
        if decision == "stop":
            raise stopping(node.name, error, item)
        if decision == "retry":
            node.retries += 1
            await self._back_off(attempt)
        else:
            node.dead_letters += 1
            await self._keep(DeadLetter(item, error, node.name, stream_id, time.time(), attempt))
        return decision

    async def _ask(self, node: Node, stream_id: str, error: BaseException, context: ErrorContext) -> Decision:
        assert self.policy.handler is not None
        try:
            decision = self.policy.handler(stream_id, error, context)
            if inspect.isawaitable(decision):
                decision = await decision
        except Exception as exc:
            exc.add_note(f"sage_streams: raised by the error handler of operator {node.name!r}")
            exc.__context__ = error  # it happened while handling ``error``
            raise OperatorFailure(node.name, exc, context.item) from exc
        if decision not in DECISIONS:
            invalid = StreamError(
                f"the error handler of operator {node.name!r} returned {decision!r}; "
                f"expected one of {', '.join(map(repr, DECISIONS))}"
            )
            invalid.__cause__ = error
            raise OperatorFailure(node.name, invalid, context.item)
        return decision  # type: ignore[no-any-return]

    def _check_threshold(self, node: Node, error: BaseException, item: Any) -> None:
        limit = self.policy.max_errors
        if limit is None:
            return
        now, window, recent = self.clock.now(), self.policy.time_window, self._recent
        recent.append(now)
        while recent[0] <= now - window:
            recent.popleft()
        if len(recent) > limit:
            exceeded = ErrorThresholdExceeded(
                f"{len(recent)} errors within {window:g} s (max_errors={limit}, time_window={window:g}), "
                f"the last in operator {node.name!r}: {_error_text(error)}",
                [error],
                operator=node.name,
                item=item,
            )
            exceeded.count, exceeded.max_errors, exceeded.time_window = len(recent), limit, window
            exceeded.__cause__ = error
            raise OperatorFailure(node.name, exceeded, item)

    async def _back_off(self, attempt: int) -> None:
        delay = self.policy.backoff * 2 ** (attempt - 1)
        if delay <= 0:
            return
        ring = anyio.Event()
        timer = self.clock.call_at(self.clock.now() + delay, ring.set)
        try:
            await ring.wait()
        finally:
            timer.cancel()

    async def _keep(self, letter: DeadLetter) -> None:
        if not self.outlets:
            logger.warning(
                "operator %r skipped item %s after %s (no errors() stream keeps it)",
                letter.operator,
                _short_repr(letter.item),
                _error_text(letter.error),
            )
            return
        for outlet in self.outlets:
            await outlet.send([letter])


def stopping(operator: str, error: BaseException, item: Any) -> OperatorFailure:
    """The failure that stops a graph on ``error``, with a note naming operator and item."""
    where = f"operator {operator!r}" if item is None else f"operator {operator!r} on item {_short_repr(item)}"
    error.add_note(f"sage_streams: raised in {where}")
    return OperatorFailure(operator, error, item)
