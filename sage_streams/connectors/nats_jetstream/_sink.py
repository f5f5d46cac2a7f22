"""The JetStream sink: publishes deduplicated by ``Nats-Msg-Id`` (see the package)."""

from __future__ import annotations

import asyncio
import json
import reprlib
import time
from collections.abc import Callable
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import PubAck

from sage_streams._typing import check_positive_int
from sage_streams.connectors.base import Guarantee
from sage_streams.connectors.nats_jetstream._connection import (
    DEFAULT_BACKOFF,
    TRANSIENT,
    Connection,
    close,
    connect,
    shown,
)
from sage_streams.connectors.retry import Backoff
from sage_streams.errors import ConnectorError, StreamError

__all__ = ["JetStreamSink"]

_LOOK_EVERY: Final = 0.05
"""Seconds between two looks at the connection while acks are awaited."""


def _encode_json(item: Any) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode()


class JetStreamSink:
    """Publishes each item to one subject, deduplicated by its ``Nats-Msg-Id``.

    The id of the ``n``-th item the sink writes in the job (from 0) is ``f"{id_prefix}:{n}"``;
    the record of an epoch is ``{"count": n}``, the items written up to it. A restored run
    numbers its items from the committed count, so the replay of what a crash left after the
    last commit carries the ids it had, and the stream drops them as duplicates (``duplicates``
    counts them). Ids number items, not epochs, as a replay's epochs need not end where the
    crashed run's did. This is exactly once when:

    * the job gives the sink the same items in the same order on a replay (a deterministic job:
      one ordered source, no wall-clock time, no merging of sources racing each other);
    * the stream's duplicate window (``duplicate_window``, two minutes by default) outlasts the
      time from the crashed run's publish to the replay's: a job restored later republishes
      what was uncommitted, as new messages;
    * no other writer uses the prefix: a job started over (checkpoints reset) within the window
      must take another ``id_prefix``, or the stream drops its first messages as duplicates.

    An epoch's encoded messages stay in memory until its ``pre_commit``, to be published again
    if the connection is lost (the ids make the republished ones that had arrived no-ops). A
    batch with an item ``encode`` refuses is a :class:`TypeError` naming the item, and none of
    the batch is published.

    Args:
        url: the server, ``nats://host:port``.
        subject: the subject published to; a stream must take it (checked at ``recover``).
        encode: the payload of one item (default: JSON, UTF-8); it must return ``bytes``.
        id_prefix: the ids' prefix (default: ``subject``).
        in_flight: publishes awaiting their ack at most (more wait for acks).
        ack_timeout: seconds to wait for the acks of an epoch before retrying it.
        backoff: how a lost connection is retried.
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(
        self,
        url: str,
        subject: str,
        *,
        encode: Callable[[Any], bytes] = _encode_json,
        id_prefix: str | None = None,
        in_flight: int = 4000,
        ack_timeout: float = 5.0,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        for name, value in (("url", url), ("subject", subject)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        check_positive_int("in_flight", in_flight)
        if not ack_timeout > 0:
            raise ValueError(f"ack_timeout must be > 0 seconds, got {ack_timeout!r}")
        self.url = url
        self._shown = shown(url)
        self.subject = subject
        self.id_prefix = subject if id_prefix is None else id_prefix
        self.in_flight = in_flight
        self.ack_timeout = ack_timeout
        self.backoff = backoff
        self.duplicates = 0
        """Messages the stream dropped as duplicates of ones it holds (a replay's)."""
        self._encode = encode
        self._client: Connection | None = None
        self._js: JetStreamContext | None = None
        self._count = 0
        self._unacked: list[tuple[str, bytes]] = []
        """The ids and payloads published since the last pre-commit."""
        self._acks: list[asyncio.Future[PubAck]] = []
        self._settled = 0
        """How many of ``_acks`` have come."""
        self._recovered = False
        self._resend = False
        """Whether the connection was lost since the last pre-commit: publish them all again."""

    def __repr__(self) -> str:
        return f"JetStreamSink({self._shown!r}, {self.subject!r})"

    async def recover(self, epoch: int | None, record: Any) -> None:
        """Connect, check that a stream takes the subject, and number the items from the
        record's count (0 with no epoch committed)."""
        if epoch is None:
            self._count = 0
        elif isinstance(record, dict) and record.keys() == {"count"} and type(record["count"]) is int:
            self._count = record["count"]
        else:
            raise ValueError(f"{self!r}: the record of epoch {epoch} must be {{'count': n}}, got {record!r}")
        await self.backoff.call(repr(self), f"connect to {self._shown}", self._connect, transient=TRANSIENT)
        self._recovered = True

    async def write(self, batch: list[Any], epoch: int) -> None:
        """Publish ``batch`` (acks are awaited at ``pre_commit``)."""
        messages = []
        for index, item in enumerate(batch):
            try:
                payload = self._encode(item)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{self!r} cannot encode item {index} of its batch, {reprlib.repr(item)}: {exc}"
                ) from exc
            if not isinstance(payload, bytes):
                raise TypeError(
                    f"{self!r}: encode must return bytes, gave {reprlib.repr(payload)} for item {index}"
                    f" of its batch, {reprlib.repr(item)}"
                )
            messages.append((f"{self.id_prefix}:{self._count + index}", payload))
        self._count += len(messages)
        self._unacked += messages
        if not self._resend:
            try:
                await self._publish(messages)
            except TRANSIENT:
                self._resend = True  # pre_commit reconnects and publishes them all again

    async def pre_commit(self, epoch: int) -> dict[str, int]:
        """Wait for the ack of every message published since the last pre-commit (publishing
        them again after a lost connection); the record is ``{"count": items written}``."""
        await self.backoff.call(repr(self), "publish", self._settle, transient=TRANSIENT)
        self._unacked, self._acks, self._settled = [], [], 0
        return {"count": self._count}

    async def commit(self, epoch: int) -> None:
        """Nothing: the stream holds the epoch's messages once ``pre_commit`` returns."""

    async def close(self) -> None:
        """Close the connection (messages not pre-committed are a crashed run's: the replay
        publishes them again)."""
        client, self._client, self._js = self._client, None, None
        await close(client)

    async def _connect(self) -> None:
        await close(self._client)
        self._client = client = await connect(self.url, repr(self))
        self._js = js = client.jetstream(
            publish_async_max_pending=self.in_flight + 1
        )  # the sink keeps the window
        try:
            await js.find_stream_name_by_subject(self.subject)
        except nats.js.errors.NotFoundError as exc:
            await self.close()
            raise ConnectorError(
                f"{self!r}: no stream on the server at {self._shown} takes the subject {self.subject!r}"
            ) from exc

    async def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        if not self._recovered:
            raise StreamError(f"{self!r}: recover must be called before the first write")
        js = self._js
        if js is None or self._client is None or self._client.is_closed:
            # A closed client's first async publish would still subscribe for the acks, and
            # leave that subscription's task behind.
            raise nats.errors.ConnectionClosedError
        for msg_id, payload in messages:
            if len(self._acks) - self._settled >= self.in_flight:
                await self._wait(self._settled + max(1, self.in_flight // 2))
            self._acks.append(await js.publish_async(self.subject, payload, headers={"Nats-Msg-Id": msg_id}))

    async def _wait(self, upto: int) -> None:
        """Wait until the acks of the first ``upto`` messages have come (or failed).

        A lost connection's acks never come: it is looked at every few milliseconds, so that
        the retry starts at once, and a server that takes more than ``ack_timeout`` seconds
        is a timeout (both are retried).
        """
        waiting = [ack for ack in self._acks[self._settled : upto] if not ack.done()]
        deadline = time.monotonic() + self.ack_timeout
        while waiting:
            if self._client is None or self._client.is_closed:
                raise nats.errors.ConnectionClosedError
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(waiting)} publishes unacknowledged after {self.ack_timeout} s")
            _, pending = await asyncio.wait(waiting, timeout=min(left, _LOOK_EVERY))
            waiting = list(pending)
        self._settled = upto

    async def _settle(self) -> None:
        """Wait for every ack; after a lost connection, reconnect and publish them all again."""
        try:
            if self._resend:
                await self._connect()
                self._acks, self._settled, self._resend = [], 0, False
                await self._publish(self._unacked)
            await self._wait(len(self._acks))
        except TRANSIENT:
            self._resend = True
            raise
        for (msg_id, _), ack in zip(self._unacked, self._acks, strict=True):
            error = ack.exception()
            if isinstance(error, TRANSIENT):
                self._resend = True
                raise error
            if error is not None:
                raise ConnectorError(f"{self!r}: the server refused message {msg_id!r}: {error}") from error
            self.duplicates += ack.result().duplicate is True
