"""Shared, named, in-memory state for the operators of one graph.

A :class:`StreamState` is a dict with a few atomic verbs (``increment``, ``append``, ``update``)
that the operators handed it share. Every operation runs on one event loop and the synchronous
ones never await, so each is atomic with respect to every other coroutine: no other operator can
run between its read and its write.

``update`` also takes an ``async def`` function. Its read, await and write are then spread over
several steps of the loop, so it returns a coroutine that holds a per-key lock for the whole
read-modify-write: concurrent async updates of one key run one after the other, each seeing the
result of the previous one. While one holds a key, a synchronous change to that key is refused
with :class:`~sage_streams.errors.StreamError`, since the update's write would silently undo it.

Example::

    state = StreamState("orders")
    state.set("counter", 0)
    state.increment("counter")              # 1
    state.append("events", {"id": 7})       # creates the list
    state.update("total", lambda t: (t or 0) + 5)
    await state.update("rate", fetch_rate)  # async def fetch_rate(current): ...
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import numbers
import sys
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping
from typing import Any, TypeVar, overload

from sage_streams.errors import StreamError
from sage_streams.functions import is_async_callable, resolve_function

__all__ = ["StreamState"]

T = TypeVar("T")

_CONTAINERS = (dict, list, tuple, set, frozenset)
"""The types :meth:`StreamState.size_bytes` looks inside."""


class _KeyGuard:
    """The lock of one key and the number of async updates using or waiting for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class StreamState:
    """Shared, named state for the operators of one graph.

    Keys are any hashable values and keep their insertion order. Values are stored as given, not
    copied; :meth:`snapshot` is the way to get a copy. The state belongs to one event loop and is
    not thread-safe.

    Args:
        name: shown in metrics and in ``repr``; ``"state"`` when not given.

    Example::

        state = StreamState("clicks")
        state.increment("total")
        state.get("total")                  # 1
    """

    __slots__ = ("_data", "_guards", "_name")

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"a state's name must be a non-empty string, got {name!r}")
        self._name = "state" if name is None else name
        self._data: dict[Hashable, Any] = {}
        self._guards: dict[Hashable, _KeyGuard] = {}

    @property
    def name(self) -> str:
        """The state's name, as shown in metrics."""
        return self._name

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is missing."""
        return self._data.get(key, default)

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        self._check_free(key, "set")
        self._data[key] = value

    def increment(self, key: Hashable, amount: Any = 1) -> Any:
        """Add ``amount`` to the number under ``key`` and return the new value.

        A missing key starts at 0. The current value and ``amount`` must be numbers (``bool`` is
        not one here), else ``TypeError`` names the key.

        Example::

            state.increment("seen")             # 1
            state.increment("seen", 2.5)        # 3.5
        """
        self._check_free(key, "increment")
        current = self._data.get(key, 0)
        if not _is_number(current):
            raise TypeError(
                f"cannot increment state key {key!r}: its value is a {type(current).__name__}, not a number"
            )
        if not _is_number(amount):
            raise TypeError(
                f"cannot increment state key {key!r}: the amount must be a number, "
                f"got a {type(amount).__name__}"
            )
        try:
            new = current + amount
        except TypeError as exc:  # numbers that do not mix, as Decimal and float
            raise TypeError(
                f"cannot increment state key {key!r}: cannot add a {type(amount).__name__} "
                f"to a {type(current).__name__}"
            ) from exc
        self._data[key] = new
        return new

    def append(self, key: Hashable, value: Any) -> None:
        """Append ``value`` to the list under ``key``, creating the list when the key is missing.

        A value that is not a list raises ``TypeError`` naming the key.
        """
        self._check_free(key, "append to")
        current = self._data.get(key)
        if current is None and key not in self._data:
            self._data[key] = [value]
        elif isinstance(current, list):
            current.append(value)
        else:
            raise TypeError(
                f"cannot append to state key {key!r}: its value is a {type(current).__name__}, not a list"
            )

    @overload
    def update(
        self, key: Hashable, fn: Callable[[Any], Coroutine[Any, Any, T]]
    ) -> Coroutine[Any, Any, T]: ...
    @overload
    def update(self, key: Hashable, fn: Callable[[Any], T]) -> T: ...
    @overload
    def update(self, key: Hashable, fn: str) -> Any: ...
    def update(self, key: Hashable, fn: Callable[[Any], Any] | str) -> Any:
        """Replace the value of ``key`` with ``fn(current)`` and return it.

        ``current`` is ``None`` when the key is missing; ``fn`` may be a registered name. A plain
        function is applied at once. An ``async def`` function makes ``update`` return a
        coroutine to await: it takes the key's lock, reads the value, awaits ``fn`` and stores
        the result, so concurrent async updates of one key never interleave. If ``fn`` raises,
        nothing is stored.

        Example::

            state.update("stats", lambda s: {**(s or {}), "n": (s or {}).get("n", 0) + 1})
            await state.update("profile", enrich)   # async def enrich(profile): ...
        """
        function = resolve_function(fn, "update function")
        if is_async_callable(function):
            return self._update_async(key, function)
        self._check_free(key, "update")
        result = function(self._data.get(key))
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it, so that no warning points elsewhere
            raise TypeError(
                f"the update function for state key {key!r} returned a coroutine; "
                "define it with 'async def' so that update() awaits it under the key's lock"
            )
        self._data[key] = result
        return result

    async def _update_async(self, key: Hashable, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        guard = self._guards.get(key)
        if guard is None:
            guard = self._guards[key] = _KeyGuard()
        guard.users += 1
        try:
            async with guard.lock:
                # Read only once the lock is ours: the previous holder's write is then visible.
                result = await fn(self._data.get(key))
                self._data[key] = result
                return result
        finally:
            guard.users -= 1
            if not guard.users:  # nobody holds or waits: drop the lock, so keys do not leak
                del self._guards[key]

    def delete(self, key: Hashable) -> None:
        """Remove ``key``; a missing key is not an error."""
        self._check_free(key, "delete")
        self._data.pop(key, None)

    def keys(self) -> list[Any]:
        """The keys, in insertion order (a new list)."""
        return list(self._data)

    def len(self) -> int:
        """The number of keys (as ``len(state)``)."""
        return len(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def snapshot(self) -> dict[Any, Any]:
        """A deep copy of the whole state: changing it never changes the state, nor the reverse."""
        return copy.deepcopy(self._data)

    def snapshot_entries(self) -> dict[Hashable, Any]:
        """The state as checkpoint entries, one per key: ``("key", key)`` to its value.

        Unlike :meth:`snapshot` it copies no value, as a checkpoint encodes them at once; only
        lists, which :meth:`append` changes in place, are copied (one level deep), so that the
        entries do not change when the state goes on. A StreamState is shared by the operators
        of a graph, so the runtime stores it once, under its name, not as part of an operator.
        """
        return {
            ("key", key): list(value) if type(value) is list else value for key, value in self._data.items()
        }

    def restore_entries(self, entries: Mapping[Hashable, Any]) -> None:
        """Replace the state's data with that of ``entries``, made by :meth:`snapshot_entries`.

        Raises:
            StreamError: an async update is running; it would overwrite what is restored.
        """
        if self._guards:
            raise StreamError("cannot restore a state while an async update of it is running")
        self._data = {
            name[1]: list(value) if type(value) is list else value
            for name, value in entries.items()
            if isinstance(name, tuple)
        }

    def size_bytes(self) -> int:
        """An estimate of the memory the state holds, in bytes.

        It adds ``sys.getsizeof`` of the state's dict, its keys and values, looking inside dicts,
        lists, tuples, sets and frozensets and counting each object once however often it is
        referenced. Other objects count their own size only (not their attributes), and memory
        shared with the rest of the program (small ints, interned strings) is counted too: treat
        it as a trend to watch, not an exact figure.
        """
        seen: set[int] = set()
        pending: list[Any] = [self._data]
        total = 0
        while pending:  # a stack, not recursion: deeply nested values cannot overflow it
            obj = pending.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            total += sys.getsizeof(obj)
            if isinstance(obj, dict):
                pending.extend(obj.keys())
                pending.extend(obj.values())
            elif isinstance(obj, _CONTAINERS):
                pending.extend(obj)
        return total

    def __repr__(self) -> str:
        return f"StreamState(name={self._name!r}, keys={len(self._data)})"

    def _check_free(self, key: Hashable, operation: str) -> None:
        """Refuse a synchronous change to a key that an async update holds."""
        guard = self._guards.get(key)
        if guard is not None and guard.lock.locked():
            raise StreamError(
                f"cannot {operation} state key {key!r} while an async update of it is running: "
                "the update would overwrite the change when it finishes; await the update first, "
                "or make the change with an async update function"
            )


def _is_number(value: object) -> bool:
    """Whether ``value`` is a number; ``bool`` is not, although it is an ``int``."""
    if type(value) is int or type(value) is float:
        return True
    return isinstance(value, numbers.Number) and not isinstance(value, bool)
