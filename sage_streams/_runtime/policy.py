"""The per-run state of an error policy: decisions, retries, dead letters, the threshold."""

from __future__ import annotations

import inspect
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from sage_streams._graph.node import ErrorPolicy
from sage_streams._graph.policy import DECISIONS, DeadLetter, DeadLetterOutlet, Decision, ErrorContext, logger
from sage_streams._runtime.counters import RunCounters
from sage_streams._runtime.failures import OperatorFailure
from sage_streams.errors import ErrorThresholdExceeded, StreamError, _error_text, _short_repr

if TYPE_CHECKING:
    from sage_streams._graph.node import Node
    from sage_streams.time import Clock


__all__ = ["PolicyRun", "stopping"]


class PolicyRun:
    """One run's side of an :class:`ErrorPolicy`: recent error times, dead-letter outlets.

    ``decide`` is called by the task the error happened in and returns ``"continue"`` or
    ``"retry"``; every way of stopping raises :class:`OperatorFailure` instead, which fails the
    graph like any other operator failure.
    """

    def __init__(self, policy: ErrorPolicy, clock: Clock, counters: RunCounters) -> None:
        self.policy = policy
        self.clock = clock
        self.counters = counters
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
        self.counters[node].errors += 1
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
            self.counters[node].retries += 1
            await self._back_off(attempt)
        else:
            self.counters[node].dead_letters += 1
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
