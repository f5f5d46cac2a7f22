"""The Redis Streams source (see :mod:`sage_streams.connectors.redis_streams`)."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any, TypeAlias

import anyio
import redis.asyncio
from redis.exceptions import ResponseError

from sage_streams.connectors.redis_streams._client import call, entry_id, open_client, redacted
from sage_streams.connectors.retry import DEFAULT_BACKOFF, Backoff
from sage_streams.connectors.splits import SplitSource
from sage_streams.errors import ConnectorError

__all__ = ["Entry", "RedisStreamSource", "decode_fields"]

Entry: TypeAlias = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as the source gives it: its ID and its fields."""


def decode_fields(entry: Entry) -> dict[str, str]:
    """The default decoding: the entry's fields as a dict of str (UTF-8; other bytes raise)."""
    return {name.decode(): value.decode() for name, value in entry[1].items()}


class RedisStreamSource(SplitSource):
    """Reads the entries of Redis stream keys, each key a split, from where a checkpoint left it.

    Without ``group``, each key is read from its first entry (``XRANGE``; ``XREAD BLOCK`` when
    following), or from the checkpoint's ID. With ``group``, the source is ``consumer`` in that
    consumer group (created at the stream's first entry if it does not exist): it first reads
    again its own pending entries, those a run before was given but did not commit (the ones up
    to the checkpoint's IDs are acknowledged instead: they are committed), then new ones
    (``XREADGROUP ... >``); entries are acknowledged once their epoch commits (without
    checkpoints: as each batch is handed on, at most once). Entries of other consumers of the
    group are theirs: this source neither reads nor claims them.

    ``follow=False`` reads the entries each stream holds when the run starts, then ends (in
    group mode: until the group has none left to give); ``follow=True`` waits for new entries
    forever, ``block`` seconds per wait (it is then ``live``: the run reads it in a task of its
    own, so a checkpoint's barrier never waits behind an idle stream). Per key, entries keep
    their order; across keys, the order is that of arrival.

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS).
        streams: a stream key, or several; each must exist when the run starts.
        group: the consumer group to read as; ``None`` reads the streams without one.
        consumer: this reader's name in the group: give each job its own, and keep it from run
            to run, so a restored run finds its pending entries (default ``"sage_streams"``).
        decode: turns an :data:`Entry` into the item (default :func:`decode_fields`); what it
            raises is an error of that entry.
        follow: wait for new entries rather than end.
        block: seconds each wait for new entries lasts before the next, when following.
        backoff: how transient errors are retried.
    """

    def __init__(
        self,
        url: str,
        streams: str | Sequence[str],
        *,
        group: str | None = None,
        consumer: str | None = None,
        decode: Callable[[Entry], Any] = decode_fields,
        follow: bool = False,
        block: float = 0.1,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        keys = [streams] if isinstance(streams, str) else list(streams)
        if not keys or not all(isinstance(key, str) and key for key in keys) or len(set(keys)) < len(keys):
            raise ValueError(f"streams must be one or more distinct non-empty keys, got {streams!r}")
        if consumer is not None and group is None:
            raise ValueError("a consumer name needs a group: give group= too")
        if not block > 0:
            raise ValueError(f"block must be a number of seconds > 0, got {block!r}")
        self.url = url
        self.streams = keys
        self.group = group
        self.consumer = consumer or "sage_streams"
        self.follow = follow
        self.block = block
        self.live = follow
        self.backoff = backoff
        self._decode = decode
        self._client: redis.asyncio.Redis | None = None
        self._ends: dict[str, bytes | None] = {}  # per key: the last entry when the run began
        self._delivered: dict[str, deque[tuple[tuple[int, int], list[bytes]]]] = {}
        """Group mode, per key: the IDs of each read not yet acknowledged, with its last ID."""

    def __repr__(self) -> str:
        group = "" if self.group is None else f", group={self.group!r}, consumer={self.consumer!r}"
        return f"RedisStreamSource({redacted(self.url)!r}, {self.streams!r}{group})"

    def decode(self, entry: Entry) -> Any:
        """See :class:`~sage_streams.connectors.DecodingSource`: the item of ``entry``."""
        return self._decode(entry)

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """See :meth:`SplitSource.batches`; the run's client is closed when they end."""
        splits = super().batches(position, size)
        try:
            async for batch, after in splits:
                yield batch, after
        finally:
            # Shielded: a run cancelled mid-read ends here, and its client must close all the same.
            with anyio.CancelScope(shield=True):
                await splits.aclose()  # type: ignore[attr-defined]  # its tasks end before the client
                client, self._client = self._client, None
                if client is not None:
                    await client.aclose()

    async def splits(self) -> list[str]:
        """The stream keys, once each is checked to be a stream (and its group made)."""
        client = self._client = open_client(repr(self), self.url)
        self._delivered = {key: deque() for key in self.streams}
        for key in self.streams:
            kind = await self._call(f"TYPE {key}", lambda key=key: client.type(key))  # type: ignore[misc]
            if kind != b"stream":
                held = "does not exist" if kind == b"none" else f"holds a {kind.decode()}, not a stream"
                raise ConnectorError(f"{self!r}: the key {key!r} {held}")
            last = await self._call(f"XREVRANGE {key}", lambda key=key: client.xrevrange(key, count=1))  # type: ignore[misc]
            self._ends[key] = last[0][0] if last else None
            if self.group is not None:
                await self._create_group(client, key, self.group)
        return list(self.streams)

    async def _create_group(self, client: redis.asyncio.Redis, key: str, group: str) -> None:
        """Create ``group`` on ``key`` at its first entry, unless it exists."""

        async def create() -> None:
            try:
                await client.xgroup_create(key, group, id="0")
            except ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

        await self._call(f"XGROUP CREATE {key} {group}", create)

    def read(self, split: str, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """See :meth:`SplitSource.read`: the position is the ID (str) of the last entry read."""
        if position is not None and not isinstance(position, str):
            raise ValueError(f"{self!r}: {position!r} is not an entry ID it gave for {split!r}")
        if self.group is None:
            return (
                self._read_follow(split, position, size) if self.follow else self._read(split, position, size)
            )
        return self._read_group(split, self.group, position, size)

    async def _read(self, key: str, position: str | None, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """The entries after ``position`` up to the last one when the run began."""
        client, end = self._connected(), self._ends[key]
        last = position or "0-0"
        if end is None or entry_id(last) >= entry_id(end):
            return
        while True:
            entries = await self._call(f"XRANGE {key}", partial(client.xrange, key, f"({last}", end, size))
            if not entries:
                return
            last = entries[-1][0].decode()
            yield entries, last
            if entries[-1][0] == end:
                return

    async def _read_follow(
        self, key: str, position: str | None, size: int
    ) -> AsyncIterator[tuple[list[Any], Any]]:
        """The entries after ``position``, waiting for new ones forever."""
        client, block = self._connected(), round(self.block * 1000)
        last = position or "0-0"
        while True:
            reply = await self._call(f"XREAD {key}", partial(client.xread, {key: last}, size, block))
            if reply:
                entries = reply[0][1]
                last = entries[-1][0].decode()
                yield entries, last

    async def _read_group(
        self, key: str, group: str, position: str | None, size: int
    ) -> AsyncIterator[tuple[list[Any], Any]]:
        """This consumer's pending entries after ``position``, then new ones (see the class)."""
        client, end = self._connected(), self._ends[key]
        committed = entry_id(position) if position is not None else (0, 0)
        delivered = self._delivered[key]
        block = round(self.block * 1000) if self.follow else None
        given = position or "0-0"  # the ID after which a read takes up again
        cursor, history = "0-0", True  # history: reading pending entries after ``cursor``

        async def step() -> Any:
            if history:
                return await client.xreadgroup(group, self.consumer, {key: cursor}, count=size)
            return await client.xreadgroup(group, self.consumer, {key: ">"}, count=size, block=block)

        async def again() -> None:
            # A dropped reply may have been delivered (and made pending) all the same: read the
            # pending entries after what was given before new ones, so that none is skipped.
            nonlocal cursor, history
            cursor, history = given, True

        while True:
            reply = await self._call(f"XREADGROUP {group} {key}", step, again)
            entries = reply[0][1] if reply else []
            if not entries:
                if history:
                    history = False
                    continue
                if self.follow:
                    continue  # a wait in vain: wait again
                return
            if history:
                cursor = entries[-1][0].decode()
                done = [entry[0] for entry in entries if entry_id(entry[0]) <= committed]
                if done:  # committed by the checkpoint; a crash came before their XACK
                    await self._ack(key, done)
                    entries = entries[len(done) :]
                    if not entries:
                        continue
            # A pending entry deleted from the stream comes without fields: it is acknowledged
            # with the others, but there is nothing to give.
            delivered.append((entry_id(entries[-1][0]), [entry[0] for entry in entries]))
            batch = [entry for entry in entries if entry[1] is not None]
            if batch:
                given = batch[-1][0].decode()
                yield batch, given
            if (
                not history
                and not self.follow
                and end is not None
                and entry_id(entries[-1][0]) >= entry_id(end)
            ):
                return

    async def acknowledge(self, position: Any) -> None:
        """See :class:`~sage_streams.connectors.AcknowledgingSource`: ``XACK`` every entry
        given up to ``position``'s IDs (group mode; without a group there is nothing to do)."""
        if self.group is None:
            return
        for key, upto in position.items():
            delivered = self._delivered.get(key)
            if upto is None or not delivered:
                continue
            limit = entry_id(upto)
            done: list[bytes] = []
            while delivered and delivered[0][0] <= limit:
                done += delivered.popleft()[1]
            if done:
                await self._ack(key, done)

    async def _ack(self, key: str, ids: list[bytes]) -> None:
        """``XACK`` ``ids`` of ``key`` (with a client of its own once the run's is closed)."""
        assert self.group is not None
        group, client = self.group, self._client
        own = client is None
        if client is None:
            client = open_client(repr(self), self.url)
        try:
            await self._call(f"XACK {key} {group}", lambda: client.xack(key, group, *ids))
        finally:
            # Closed here if it is this call's own, or if the run's ended meanwhile: its close
            # may have cut this call's connection, and the retry opened another.
            if own or client is not self._client:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

    def _connected(self) -> redis.asyncio.Redis:
        assert self._client is not None, "splits() opens the run's client"
        return self._client

    async def _call(
        self, what: str, attempt: Callable[[], Any], reset: Callable[[], Any] | None = None
    ) -> Any:
        return await call(repr(self), self.backoff, what, attempt, reset)
