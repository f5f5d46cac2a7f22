"""Pull sources: telling synchronous from asynchronous ones, and feeding the asynchronous into
a channel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiostream

from sage_streams._graph.node import Node
from sage_streams._runtime.failures import OperatorFailure
from sage_streams.channel import Sender
from sage_streams.errors import BrokenChannelError

__all__ = ["feed", "is_factory", "is_sync_source"]


def is_factory(source: object) -> bool:
    """A source given as a function to call at the start of each run."""
    return callable(source) and not hasattr(source, "__iter__") and not hasattr(source, "__aiter__")


def is_sync_source(source: object) -> bool:
    """Whether a pull source is read with ``iter`` (else it is asynchronous)."""
    if is_factory(source):
        return False
    return hasattr(source, "__iter__") and not hasattr(source, "__aiter__")


@contextlib.asynccontextmanager
async def _open_async_source(source: Any) -> AsyncIterator[Any]:
    """Open an asynchronous source for one run, and close it afterwards, however it ends."""
    if isinstance(source, aiostream.core.Stream):
        async with source.stream() as streamer:
            yield streamer
        return
    items = source() if is_factory(source) else source
    if hasattr(items, "__iter__") and not hasattr(items, "__aiter__"):
        yield _aiter_sync(items)
        return
    if not hasattr(items, "__aiter__"):
        raise TypeError(f"source function returned {type(items).__name__}, not an (async) iterable")
    iterator = aiter(items)
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _aiter_sync(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def feed(node: Node, sender: Sender) -> None:
    """Read an asynchronous source item by item into a channel that batches them."""
    try:
        async with _open_async_source(node.source) as items:
            async for item in items:
                await sender.send_item(item)
    except BrokenChannelError:
        pass  # the reading chain is gone, which only happens when the graph is stopping
    except Exception as exc:
        sender.abort()
        exc.add_note(f"sage_streams: raised while reading source {node.name!r}")
        raise OperatorFailure(node.name, exc) from exc
    except BaseException:
        sender.abort()
        raise
    else:
        sender.close()
