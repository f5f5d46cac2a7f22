"""Reading a running graph's results from the host application: :class:`LatestView`.

A view is a sink kept as a dict: ``stream.sink(view)`` stores each item under ``key(item)``,
replacing the one before, and a request handler of the same event loop reads it with
``view.get(key)``, ``view.snapshot()`` or ``await view.latest(key)``.

The guarantee: a view holds, per key, the last item the graph delivered to its sink, whole.
Over a window's stream (``aggregate``, ``process``) each value is a complete result of a fired
window, never a partial one: windows emit only when they fire. A view is changed only by its
sink, between two of its items, and read on the same loop, so a ``snapshot()`` is one
consistent moment (no item half-applied, no key from a later item beside an earlier value of
another), and ``updates`` counts the items applied up to it. What is still in flight (queued
in a channel, in a window not yet fired) is not in the view yet: ``await
view.wait_for(n)`` waits until ``n`` items have been applied, which is how a caller reads its
own writes once it knows how many results they make.

Example::

    totals = LatestView("totals", key=lambda window: window.key)
    events.window("tumbling", 60, key_func=lambda e: e["user"]).aggregate(add, initial=0).sink(totals)
    ...
    await totals.latest("ann")  # WindowAggregate(key='ann', ..., value=42)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any, Generic

from sage_streams._typing import T

__all__ = ["LatestView"]


def _key_of_record(item: Any) -> Hashable:
    """A window record's key (``WindowAggregate.key``, ``WindowData.key``)."""
    return item.key  # type: ignore[no-any-return]


class LatestView(Generic[T]):
    """The latest item per key of a stream, as a dict the host application reads.

    Args:
        name: shown in ``repr`` (name the sink itself with ``sink(view, name=...)``).
        key: the key of an item (its ``.key`` by default, as window records have).

    A view belongs to the event loop of its graph and is not thread-safe. It keeps its values
    across runs; :meth:`clear` empties it.
    """

    def __init__(self, name: str = "view", *, key: Callable[[T], Hashable] = _key_of_record) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a view's name must be a non-empty string, got {name!r}")
        if not callable(key):
            raise TypeError(f"key must be callable, got {key!r}")
        self.name = name
        self._key = key
        self._data: dict[Hashable, T] = {}
        self._updates = 0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def __call__(self, item: T) -> None:
        """Store ``item`` under its key (what ``stream.sink(view)`` calls for each item)."""
        self._data[self._key(item)] = item
        self._updates += 1
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        waiting = []
        for ready, future in self._waiters:
            if future.done():
                continue
            if ready():
                future.set_result(None)
            else:
                waiting.append((ready, future))
        self._waiters = waiting

    async def _until(self, ready: Callable[[], bool]) -> None:
        if ready():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ready, future))
        await future

    @property
    def updates(self) -> int:
        """How many items the view has applied so far."""
        return self._updates

    def get(self, key: Hashable, default: Any = None) -> T | Any:
        """The latest item of ``key``, or ``default`` when it has none yet."""
        return self._data.get(key, default)

    def snapshot(self) -> dict[Hashable, T]:
        """A copy of the view: every key's latest item, all as of one moment."""
        return dict(self._data)

    async def latest(self, key: Hashable) -> T:
        """The latest item of ``key``, waiting for its first one if it has none yet."""
        await self._until(lambda: key in self._data)
        return self._data[key]

    async def wait_for(self, updates: int) -> None:
        """Return once at least ``updates`` items have been applied (at once if they have)."""
        await self._until(lambda: self._updates >= updates)

    def clear(self) -> None:
        """Forget every key (``updates`` goes on counting)."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<LatestView {self.name!r}: {len(self._data)} keys, {self._updates} updates>"
