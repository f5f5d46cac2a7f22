"""``on_error``, ``set_error_threshold`` and ``errors()``: the error API of streams."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from sage_streams._graph.node import ErrorPolicy, Node
from sage_streams._graph.policy import DeadLetter

if TYPE_CHECKING:
    from sage_streams._typing import UserFunction
    from sage_streams.api.environment import LocalEnvironment
    from sage_streams.api.stream import DataStream


__all__ = ["ErrorHandling"]


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
        of the environment's clock first. See :mod:`sage_streams.api.handling`.
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
        from sage_streams.api.stream import DataStream

        policy = self._policy_in_effect()
        if policy.dead_letters is None:
            node = self.env.add_node(Node("dead_letters", policy.errors_name))
            node.errors_of = policy
            policy.dead_letters = node
        return DataStream._of(self.env, policy.dead_letters)
