"""How an operator calls its user function when the calls may overlap: :class:`CallConfig`.

``map``, ``filter``, ``flat_map`` and ``sink`` (and ``windowed.process``, a flat_map) take
``concurrency=N``, ``ordered=``, ``timeout=``, ``in_thread=`` and ``key_func=``. With their
defaults (one call at a time, on the loop, no time limit) the operator is a step of its
chain, as always; anything else makes it an operator of its own that keeps up to ``N`` calls
in flight (``sage_streams._runtime.calls``), Flink's Async I/O operator:

* ``ordered=True``: results leave in input order (``orderedWait``);
* ``ordered=False``: results leave as calls complete (``unorderedWait``);
* ``ordered="key"``: calls of one key run one at a time, in input order, and their results
  leave in that order; calls of different keys overlap. The key is ``key_func(item)``, or the
  input stream's ``key_by`` key.

In every mode a control message (a watermark; a checkpoint barrier once there are checkpoints)
is a fence: it leaves after the results of every item that came before it, and no result of an
item after it leaves before it, so nothing before a barrier is still in flight when it passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sage_streams._typing import CallOptions, Ordering, check_positive_int, check_seconds
from sage_streams.functions import is_async_callable, resolve_function

__all__ = ["CallConfig", "call_config"]


@dataclass(frozen=True, slots=True)
class CallConfig:
    """The validated call settings of one operator.

    Attributes:
        concurrency: the most calls in flight at once; also the most items the operator holds
            (in flight, waiting for their key, or done and waiting for their turn to leave), so
            a slow call holds the producer back instead of growing memory.
        ordered: the order results leave in (see :data:`Ordering`).
        timeout: seconds a call may take, on the environment's clock; a call that takes longer
            is cancelled and is a ``TimeoutError`` of its item, for the error policy.
        in_thread: whether the function is a blocking one, run in a worker thread.
        key: the key of an item for ``ordered="key"``, else ``None``.
        per_batch: each call takes a batch, not an item (``joined.process``): the batches as
            they arrive, in slices of at most ``PROCESS_SLICE`` items, as the operator it
            stands for would see them.
    """

    concurrency: int = 1
    ordered: Ordering = True
    timeout: float | None = None
    in_thread: bool = False
    key: Callable[[Any], Any] | None = None
    per_batch: bool = False

    def __post_init__(self) -> None:
        check_positive_int("concurrency", self.concurrency)
        if not (isinstance(self.ordered, bool) or self.ordered == "key"):
            raise ValueError(f"ordered must be True, False or 'key', got {self.ordered!r}")
        if self.timeout is not None:
            check_seconds("timeout", self.timeout, allow_zero=False, why="give None for no limit")
        if not isinstance(self.in_thread, bool):
            raise TypeError(f"in_thread must be True or False, got {self.in_thread!r}")
        if (self.ordered == "key") != (self.key is not None):
            raise ValueError("ordered='key' needs a key, and a key needs ordered='key'")
        if self.per_batch and self.ordered == "key":
            raise ValueError("a call per batch has no key to order by: give ordered=True or False")

    @property
    def mode(self) -> str:
        """``"ordered"``, ``"unordered"`` or ``"key"``, for ``env.metrics()``."""
        if self.ordered == "key":
            return "key"
        return "ordered" if self.ordered else "unordered"


def call_config(
    fn: Callable[..., Any], what: str, options: CallOptions, *, stream_key: Callable[[Any], Any] | None
) -> CallConfig | None:
    """The call settings ``options`` give an operator calling ``fn`` (its ``what``), or ``None``
    for one call at a time on the loop (a step of its chain).

    ``stream_key`` is the input stream's ``key_by`` key, the default of ``ordered="key"``.

    Raises:
        TypeError: an option that does not exist, or ``in_thread=True`` for an ``async``
            function (it does not block).
        ValueError: a setting out of range, ``key_func`` without ``ordered="key"``, or
            ``ordered="key"`` with no key to order by.
    """
    unknown = sorted(set(options) - CallOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"{what}: unexpected keyword argument {unknown[0]!r}")
    ordered = options.get("ordered", True)
    key_func = options.get("key_func")
    if key_func is not None and ordered != "key":
        raise ValueError(f"key_func orders calls per key: give ordered='key' with it, not {ordered!r}")
    key = None
    if ordered == "key":
        key = resolve_function(key_func, "key function") if key_func is not None else stream_key
        if key is None:
            raise ValueError(
                "ordered='key' needs a key: give key_func=, or key the stream with key_by(...) first"
            )
    config = CallConfig(
        options.get("concurrency", 1), ordered, options.get("timeout"), options.get("in_thread", False), key
    )
    if config.in_thread and is_async_callable(fn):
        name = getattr(fn, "__name__", type(fn).__name__)
        raise TypeError(
            f"in_thread=True runs a blocking {what} in a worker thread, but {name!r} is async: "
            "it runs on the loop already; drop in_thread"
        )
    if config.concurrency == 1 and config.timeout is None and not config.in_thread:
        return None  # one call at a time on the loop: today's step, whatever the ordering
    return config
