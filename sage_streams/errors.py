"""The exceptions sage_streams raises.

The tree, from the most general::

    Exception
    └── StreamError                   misuse of the API or a broken stream
        ├── BrokenChannelError        a channel's receiving end is gone
        ├── BackpressureTimeout       a blocked producer waited longer than its timeout
        ├── SpillError                an item the ``buffer`` strategy's codec cannot write
        ├── NoDataError               reader.read() with nothing to read (also an IndexError)
        └── PipelineError             a running graph stopped; ``__cause__`` is the first error
            └── ErrorThresholdExceeded  too many errors inside the configured time window

User code raises its own exceptions; the runtime never swallows them. When one stops a graph,
``execute()`` raises :class:`PipelineError` chained to it, and the original exception carries a
note naming the operator and the item it failed on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "BackpressureTimeout",
    "BrokenChannelError",
    "ErrorThresholdExceeded",
    "ItemError",
    "NoDataError",
    "OperatorFailure",
    "PipelineError",
    "StreamError",
]


class StreamError(Exception):
    """Misuse of the streaming API, or a stream that can no longer be used."""


class BrokenChannelError(StreamError):
    """Raised to a sender whose channel's receiving end has been closed."""


class NoDataError(StreamError, IndexError):
    """``reader.read()`` found nothing to read; check ``reader.has_data()`` first."""


class BackpressureTimeout(StreamError):
    """A producer blocked on a full channel for longer than the configured timeout."""


class PipelineError(StreamError):
    """A running graph stopped because of one or more errors.

    Attributes:
        errors: every error that stopped the graph, the first one first.
        operator: the name of the operator where the first error happened.
        item: the item that operator was processing, or ``None`` when there was none.
    """

    def __init__(
        self,
        message: str,
        errors: Sequence[BaseException] = (),
        *,
        operator: str | None = None,
        item: object = None,
    ) -> None:
        super().__init__(message)
        self.errors: list[BaseException] = list(errors)
        self.operator = operator
        self.item = item


class ErrorThresholdExceeded(PipelineError):
    """More errors than allowed happened inside the configured time window.

    Attributes:
        count: how many errors the window held when the graph stopped.
        max_errors: the threshold's ``max_errors``.
        time_window: the threshold's ``time_window``, in seconds.
    """

    count: int = 0
    max_errors: int = 0
    time_window: float = 0.0


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


class OperatorFailure(Exception):
    """Internal: carries an error out of an operator's task with where it happened.

    The runtime raises it inside the task group and unwraps it into a :class:`PipelineError`;
    users never see it.
    """

    def __init__(self, operator: str, error: BaseException, item: object = None) -> None:
        super().__init__(operator, error, item)
        self.operator = operator
        self.error = error
        self.item = item

    def describe(self) -> str:
        """Say in one line which operator failed, how, and on what."""
        where = f"operator {self.operator!r} failed"
        what = f"{type(self.error).__name__}: {self.error}"
        if self.item is None:
            return f"{where}: {what}"
        return f"{where} on item {_short_repr(self.item)}: {what}"


def _short_repr(value: object, limit: int = 200) -> str:
    """``repr`` cut to ``limit`` characters, so huge items keep messages readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
