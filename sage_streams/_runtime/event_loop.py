"""The event loop a graph runs on: sage_streams runs on asyncio, and says so at once elsewhere.

A graph's channels are ``asyncio.Queue``\\ s bound to the loop of its run. Under another async
library (trio through anyio) simple graphs would seem to run and the first wait would fail deep
inside asyncio; from another thread an ``emit`` would wake the graph's loop unsafely. Every entry
point asks :func:`running_loop` first, which costs one C call on the normal path.
"""

from __future__ import annotations

import asyncio
import sys

from sage_streams.errors import StreamError

__all__ = ["refuse_blocking_run", "running_loop", "wrong_loop"]


def running_loop(what: str) -> asyncio.AbstractEventLoop:
    """The asyncio loop running ``what`` (``"emit()"``, ...), or a :class:`StreamError` saying
    that sage_streams runs on asyncio."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise StreamError(_not_on_asyncio(what)) from None


def _not_on_asyncio(what: str) -> str:
    library = _other_async_library()
    if library is None:
        return f"{what} needs a running asyncio event loop: call it from async code run by asyncio"
    return (
        f"{what} was called under {library}, but sage_streams runs on asyncio: start your program "
        "with asyncio.run(main()) or anyio.run(main, backend='asyncio')"
    )


def _other_async_library() -> str | None:
    """The async library running this thread, if one other than asyncio is (as sniffio tells;
    sniffio is imported by every library it can name, so it is only looked up, never imported)."""
    sniffio = sys.modules.get("sniffio")
    if sniffio is None:
        return None
    try:
        library: str = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
    return library


def wrong_loop(what: str, env_name: str) -> StreamError:
    """The error of a call made from another thread (or event loop) than its graph's."""
    return StreamError(
        f"{what} was called from another thread or event loop than the one running the graph of "
        f"environment {env_name!r}; asyncio objects are not thread-safe: from another thread use "
        "stream.emit_threadsafe(item) and stream.close_threadsafe(), which return a "
        "concurrent.futures.Future"
    )


def refuse_blocking_run() -> None:
    """Refuse ``env.run()`` where an event loop already runs (a notebook, a service): it would
    block that loop, and asyncio refuses to start a second one in the same thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        library = _other_async_library()
    else:
        library = "asyncio"
    if library is not None:
        raise RuntimeError(
            f"env.run() cannot be called while an event loop is running in this thread ({library}): "
            "in async code (a notebook cell, a service) use await env.execute() instead"
        )
