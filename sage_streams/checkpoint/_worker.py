"""One worker thread per file: its blocking file or SQLite calls run there, in order, off the loop.

A checkpoint store's, a sink's or a durable stream's file or connection is made, used and
closed on its worker (a :class:`~concurrent.futures.ThreadPoolExecutor` of one), so the event
loop only waits for results, and calls run in the order they were made, as a store's and a
sink's methods must.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from sage_streams.errors import StreamError

__all__ = ["Worker"]

R = TypeVar("R")


class Worker:
    """A thread started at the first :meth:`call` or :meth:`submit` and joined by :meth:`close`.

    Args:
        name: the thread's name prefix (``"sage-sink"``), which tests look threads up by.
        owner: what the worker runs for, named in the error of a call after :meth:`close`.
        closed: the type of that error.
    """

    def __init__(self, name: str, owner: str, closed: type[StreamError] = StreamError) -> None:
        self._name = name
        self._owner = owner
        self._closed_error = closed
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._last: Future[None] | None = None
        """``last``, once the worker is closing."""

    async def call(self, function: Callable[..., R], *args: object) -> R:
        """``function(*args)`` on the worker; ``closed`` (a :class:`StreamError`) once the
        worker is closed."""
        return await self.submit(function, *args)

    def submit(self, function: Callable[..., R], *args: object) -> asyncio.Future[R]:
        """Start ``function(*args)`` on the worker and return the future of its result, for a
        caller that is a loop callback rather than a task; raises as :meth:`call` does."""
        if self._closed:
            raise self._closed_error(f"{self._owner} is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        return asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def close(self, last: Callable[[], None]) -> None:
        """Run ``last`` (releasing the files) on the worker if it was started, then join it;
        after :meth:`close_nowait`, only join it; calling it again does nothing."""
        self.close_nowait(last)
        executor, self._executor = self._executor, None
        if executor is None or self._last is None:
            return
        try:
            await asyncio.wrap_future(self._last)
        finally:
            # The worker is idle now (or, if this task was cancelled, finishing ``last``):
            # joining it takes no time, and leaves no thread behind.
            executor.shutdown(wait=True)

    def close_nowait(self, last: Callable[[], None]) -> None:
        """Start closing, from a loop callback, which must not wait: the thread runs ``last``
        and ends on its own soon after; a later :meth:`close` joins it."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._last = self._executor.submit(last)
            self._executor.shutdown(wait=False)
