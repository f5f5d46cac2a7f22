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

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias, get_args

if TYPE_CHECKING:
    pass

__all__ = ["DeadLetter", "Decision", "ErrorContext"]

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
