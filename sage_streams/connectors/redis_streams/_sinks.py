"""The Redis sinks, exactly once: an epoch's output is staged in Redis, then moved into place in one
script once the epoch has committed (imported from :mod:`sage_streams.connectors.redis_streams`).

Why staging, and not entry IDs derived from the epoch in the stream itself, or a fence key: a
reader of the output stream (another service, another job's :class:`RedisStreamSource`) must
never see an entry a crash then takes back, or it would act on it twice. So the output of epoch
``e`` is written to a staging stream beside the target (``<key>.sage-staging``), each entry with
the explicit ID ``e-n``; ``pre_commit(e)`` returns once all of it is there; ``commit(e)``, after
the checkpoint store has committed ``e``, runs a Lua script that appends the staged entries of
the epochs up to ``e`` to the target (``XADD *``, or ``HSET``) and deletes them from staging, in
chunks of :data:`MOVE_CHUNK`, each chunk atomic (an emptied staging stream is deleted). A run
killed between the two finds them still staged: ``recover(E, ...)`` moves what is staged up to
``E`` (committed), then deletes the staging stream (epochs after ``E``, which the replay writes
again). A reader therefore sees each committed epoch once, up to one checkpoint later than it
was computed, and nothing of an epoch that did not commit. The output is as durable as the
Redis server makes it (its AOF or snapshot settings); the moves need a single Redis server (not
a Cluster: the script touches two keys).

A run without checkpoints has no epoch to wait for: the sink learns of it (no checkpoint store
is offered to it before ``recover``) and writes each batch straight to the target, one
pipelined round trip each (a retry after a dropped connection may write a batch twice: such a
run gives at least once at best anyway).
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import redis.asyncio

from sage_streams.connectors.base import Guarantee
from sage_streams.connectors.redis_streams._client import call, entry_id, open_client, redacted
from sage_streams.connectors.retry import DEFAULT_BACKOFF, Backoff
from sage_streams.errors import StreamError

__all__ = ["MOVE_CHUNK", "RedisHashSink", "RedisStreamSink"]

MOVE_CHUNK: Final = 2000
"""Staged entries moved per script call: each call is atomic, and blocks the server while it runs."""

FLUSH_AT: Final = 2000
"""Entries a sink with checkpoints holds before it stages them (pipelined), between pre-commits."""

_MOVE: Final = """
local entries = redis.call('XRANGE', KEYS[1], '-', ARGV[1], 'COUNT', ARGV[2])
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if ARGV[3] == 'hset' then
    redis.call('HSET', KEYS[2], fields[2], fields[4])
  else
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
  redis.call('XDEL', KEYS[1], entry[1])
end
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return #entries
"""
"""KEYS: staging, target; ARGV: the last epoch to move, the chunk, ``xadd`` or ``hset``."""

Scalar = str | bytes | int | float


def _scalar(value: Any) -> Scalar:
    """``value`` as Redis stores it: str, bytes, int and float as they are, others as JSON."""
    kind = type(value)
    if kind is str or kind is bytes or kind is int or kind is float:
        return value  # type: ignore[no-any-return]
    return json.dumps(value)


class _StagedSink:
    """What both sinks share: staging an epoch's writes, moving them at commit (see above)."""

    guarantee: Guarantee = "exactly_once"
    _mode: str  # "xadd" or "hset": what the move does with each staged entry

    def __init__(self, url: str, key: str, backoff: Backoff) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        self.url = url
        self.key = key
        self.staging = f"{key}.sage-staging"
        self.backoff = backoff
        self._client: redis.asyncio.Redis | None = None
        self._move: Any = None  # the registered script
        self._staged = False  # whether this run stages (it has checkpoints) or writes through
        self._pending: list[tuple[int, dict[str, Scalar]]] = []  # (epoch, fields), not yet out
        self._sequence = (0, 0)  # (epoch, next n) of the staging IDs

    def share_store(self, store: object) -> bool:
        """Never writes in the store's transactions; being offered one says the run has
        checkpoints, so its epochs are staged until they commit."""
        self._staged = True
        return False

    async def recover(self, epoch: int | None, record: Any) -> None:
        """See :meth:`~sage_streams.connectors.TransactionalSink.recover`: move what is staged up
        to ``epoch``, drop the rest (``record`` is ``{"epoch": epoch}``)."""
        if epoch is not None and record != {"epoch": epoch}:
            raise ValueError(
                f"{self!r}: the record of epoch {epoch} must be {{'epoch': {epoch}}}, got {record!r}"
            )
        self._client = client = open_client(repr(self), self.url)
        self._move = client.register_script(_MOVE)
        if not self._staged:
            return
        if epoch is not None:
            await self._move_upto(epoch)
        await self._call(f"DEL {self.staging}", lambda: client.delete(self.staging))

    async def write(self, batch: list[Any], epoch: int) -> None:
        """See :meth:`~sage_streams.connectors.TransactionalSink.write`; an item that cannot be
        encoded is a :class:`TypeError` naming it, and none of the batch is written."""
        encoded = [(epoch, self._fields(index, item)) for index, item in enumerate(batch)]
        self._pending += encoded
        if len(self._pending) >= FLUSH_AT or not self._staged:
            await self._flush()

    async def pre_commit(self, epoch: int) -> dict[str, int]:
        """Write out everything up to ``epoch``; the record is ``{"epoch": epoch}``."""
        await self._flush()
        return {"epoch": epoch}

    async def commit(self, epoch: int) -> None:
        """Move the staged entries of the epochs up to ``epoch`` into place."""
        await self._move_upto(epoch)

    async def close(self) -> None:
        """Close the connection; what is not pre-committed is dropped, as a crash would."""
        self._pending = []
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _fields(self, index: int, item: Any) -> dict[str, Scalar]:
        raise NotImplementedError

    def _target(self, pipe: Any, fields: dict[str, Scalar]) -> None:
        """Queue on ``pipe`` the write of ``fields`` straight to the target (no checkpoints)."""
        raise NotImplementedError

    async def _flush(self) -> None:
        """Write the pending entries out, pipelined: to staging, with their IDs, or through."""
        if not self._pending:
            return
        client = self._connected()
        if not self._staged:
            chunk = self._pending

            async def through() -> None:
                pipe = client.pipeline(transaction=False)
                for _, fields in chunk:
                    self._target(pipe, fields)
                await pipe.execute()

            await self._call(f"write to {self.key}", through)
            self._pending = []
            return
        staged: list[tuple[str, dict[str, Scalar]]] = []
        epoch, n = self._sequence
        for of, fields in self._pending:
            if of != epoch:
                epoch, n = of, 0
            staged.append((f"{epoch}-{n}", fields))
            n += 1
        self._sequence = epoch, n

        async def stage() -> None:
            pipe = client.pipeline(transaction=False)
            for id_, fields in staged:
                pipe.xadd(self.staging, fields, id=id_)  # type: ignore[arg-type]
            await pipe.execute()

        async def after_failure() -> None:
            # The pipeline may have been applied in part before the connection dropped: the
            # retry writes only the entries after the last one staging holds.
            nonlocal staged
            last = await client.xrevrange(self.staging, count=1)
            if last:
                top = entry_id(last[0][0])
                staged = [(id_, fields) for id_, fields in staged if entry_id(id_) > top]

        await self._call(f"XADD {self.staging}", stage, after_failure)
        self._pending = []

    async def _move_upto(self, epoch: int) -> None:
        client, keys = self._connected(), [self.staging, self.key]
        while True:
            moved = await self._call(
                f"move of epoch {epoch} into {self.key}",
                lambda: self._move(keys=keys, args=[epoch, MOVE_CHUNK, self._mode], client=client),
            )
            if moved < MOVE_CHUNK:
                return

    def _connected(self) -> redis.asyncio.Redis:
        if self._client is None:
            raise StreamError(f"{self!r}: recover must be called before the first write")
        return self._client

    async def _call(
        self, what: str, attempt: Callable[[], Any], reset: Callable[[], Any] | None = None
    ) -> Any:
        return await call(repr(self), self.backoff, what, attempt, reset)


class RedisStreamSink(_StagedSink):
    """Appends each item to a Redis stream as one entry (``XADD``), exactly once.

    ``encode`` turns an item into the entry's fields, a mapping of str (or bytes) keys; values
    that are str, bytes, int or float are written as they are, others as JSON. The default takes
    a dict item as it is. Entries appear in the stream when their epoch commits (see the module
    docstring), in the order the sink was given them, with IDs Redis makes (``*``).

    Args:
        url: ``redis://[[user]:password@]host:port/db``.
        stream: the stream key written to (created by the first entry).
        encode: an item's fields.
        backoff: how transient errors are retried.
    """

    _mode = "xadd"

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        encode: Callable[[Any], Mapping[Any, Any]] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        super().__init__(url, stream, backoff)
        self._encode = encode

    def __repr__(self) -> str:
        return f"RedisStreamSink({redacted(self.url)!r}, {self.key!r})"

    def _fields(self, index: int, item: Any) -> dict[str, Scalar]:
        fields = item if self._encode is None else self._encode(item)
        if not isinstance(fields, Mapping) or not fields:
            raise TypeError(
                f"{self!r} writes each item as an entry's fields, a non-empty mapping; item {index} "
                f"of its batch {'is' if self._encode is None else 'was encoded as'} {reprlib.repr(fields)}"
            )
        for name in fields:
            if type(name) is not str and type(name) is not bytes:
                raise TypeError(
                    f"{self!r}: item {index} of its batch has a field name {name!r} that is not a str"
                )
        return {name: _scalar(value) for name, value in fields.items()}

    def _target(self, pipe: Any, fields: dict[str, Scalar]) -> None:
        pipe.xadd(self.key, fields)


class RedisHashSink(_StagedSink):
    """Sets one field of a Redis hash per item (``HSET``): keyed results other services read.

    Each item sets ``field(item)`` to ``value(item)`` (by default an item is a ``(field, value)``
    pair, a window's ``(key, total)`` say; a value that is not str, bytes, int or float is
    written as JSON); a later item of the same field overwrites it, as the latest result for a
    key should. Exactly once, as the stream sink: an epoch's updates are staged and applied to
    the hash when it commits, each chunk of them atomically, so a reader sees the hash as of a
    committed epoch (or between two, during a move), never a value of an epoch a crash undid.

    Args:
        url: ``redis://[[user]:password@]host:port/db``.
        key: the hash's key.
        field: an item's field in the hash (str or bytes; other values are taken as ``str()``).
        value: an item's value.
        backoff: how transient errors are retried.
    """

    _mode = "hset"

    def __init__(
        self,
        url: str,
        key: str,
        *,
        field: Callable[[Any], Any] = lambda item: item[0],
        value: Callable[[Any], Any] = lambda item: item[1],
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        super().__init__(url, key, backoff)
        self._field = field
        self._value = value

    def __repr__(self) -> str:
        return f"RedisHashSink({redacted(self.url)!r}, {self.key!r})"

    def _fields(self, index: int, item: Any) -> dict[str, Scalar]:
        name = self._field(item)
        return {
            "f": name if type(name) is str or type(name) is bytes else str(name),
            "v": _scalar(self._value(item)),
        }

    def _target(self, pipe: Any, fields: dict[str, Scalar]) -> None:
        pipe.hset(self.key, fields["f"], fields["v"])
