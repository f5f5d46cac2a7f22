"""The JetStream source: a durable pull consumer read from a stream sequence (see the package)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

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
from sage_streams.errors import ConnectorError

__all__ = ["JetStreamSource"]

_SERVER_AT_LEAST: Final = (2, 14)
"""The first nats-server with ``$JS.API.CONSUMER.RESET`` (ADR-60)."""

_ACK_TIMEOUT: Final = 2.0
"""Seconds the server has to confirm an ack before it is tried again."""


def _decode_json(source: JetStreamSource, msg: Msg) -> Any:
    try:
        return json.loads(msg.data)
    except ValueError as exc:
        raise ValueError(
            f"{source!r}: message {msg.metadata.sequence.stream} on {msg.subject!r} is not JSON: {exc}"
        ) from exc


class JetStreamSource:
    """Reads the messages of one JetStream stream in order, from the sequence a run starts at.

    The raw entries are the client's :class:`nats.aio.msg.Msg`, decoded per message by
    ``decode`` (default: the payload as JSON) in the stream's ``NAME.decode`` operator. One
    reader per durable consumer: two runs sharing a ``durable`` would reset each other's.
    See the module docstring for positions, acknowledgements and failures.

    Args:
        url: the server, ``nats://host:port`` (credentials in the URL if it needs them).
        stream: the stream's name; a missing stream is a
            :class:`~sage_streams.errors.ConnectorError` when the run starts.
        subject: read only the messages of this subject (wildcards allowed); ``None``: all.
        durable: the durable consumer's name, created if missing.
        decode: the item of one message; raises for one that is malformed.
        follow: wait for messages published after the run started (``False``: end when the
            messages the stream held at the start are read).
        backoff: how a lost connection is retried.
        fetch_timeout: seconds one pull waits for a message before asking again (``follow``).
    """

    guarantee: Guarantee = "exactly_once"

    def __init__(
        self,
        url: str,
        stream: str,
        *,
        subject: str | None = None,
        durable: str = "sage_streams",
        decode: Callable[[Msg], Any] | None = None,
        follow: bool = False,
        backoff: Backoff = DEFAULT_BACKOFF,
        fetch_timeout: float = 1.0,
    ) -> None:
        for name, value in (("url", url), ("stream", stream), ("durable", durable)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if not fetch_timeout > 0:
            raise ValueError(f"fetch_timeout must be > 0 seconds, got {fetch_timeout!r}")
        self.url = url
        self._shown = shown(url)
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.follow = follow
        self.live = follow
        """Following, it waits for messages: barriers pass while it does (see ``base``)."""
        self.backoff = backoff
        self.fetch_timeout = fetch_timeout
        self._decode = decode
        self._client: Connection | None = None
        self._pull: JetStreamContext.PullSubscription | None = None
        self._last = 0
        """The stream sequence of the last message given: a redelivery at or below it is skipped."""
        self._acked = 0
        """The sequence the consumer's ack floor stands at: where a reconnection resets it to."""
        self._replies: dict[int, str] = {}
        """The ack subject of the last message of each batch given and not yet acknowledged."""
        self._end = 0
        """The stream's last sequence when the run started: where a run without ``follow`` ends."""
        self._pending = 0
        """The messages the consumer had left after the last one fetched (0: none to wait for)."""

    def __repr__(self) -> str:
        return f"JetStreamSource({self._shown!r}, {self.stream!r})"

    def decode(self, entry: Msg) -> Any:
        """The item of one message (see :class:`~sage_streams.connectors.DecodingSource`)."""
        return _decode_json(self, entry) if self._decode is None else self._decode(entry)

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Msg], int]]:
        """The stream's messages after sequence ``position`` (``None``: after the consumer's
        ack floor), in batches of at most ``size``, each with the sequence of its last."""
        check_positive_int("size", size)
        if position is not None and (type(position) is not int or position < 0):
            raise ValueError(f"{self!r}: {position!r} is not a position it gave, a stream sequence")
        self._replies = {}
        try:
            await self.backoff.call(
                repr(self), f"connect to {self._shown}", lambda: self._open(position), transient=TRANSIENT
            )
            self._last = self._acked
            while self.follow or (self._pending > 0 and self._last < self._end):
                msgs = await self.backoff.call(
                    repr(self), "fetch", lambda: self._fetch(size), transient=TRANSIENT, reset=self._reopen
                )
                batch = self._fresh(msgs)
                if batch:
                    self._replies[self._last] = batch[-1].reply
                    yield batch, self._last
        finally:
            client, self._client, self._pull = self._client, None, None
            await close(client)

    async def acknowledge(self, position: Any) -> None:
        """Acknowledge every message up to sequence ``position`` (committed): one ``+ACK`` of
        the message at it, on the run's connection, or on one of its own once the run has ended."""
        reply = self._replies.pop(position, None)
        for older in [seq for seq in self._replies if seq < position]:
            del self._replies[older]
        if reply is None:  # given before a reconnection reset the consumer past it
            return
        self._acked = position
        await self.backoff.call(repr(self), "acknowledge", lambda: self._ack(reply), transient=TRANSIENT)

    async def _open(self, position: int | None) -> None:
        """Connect, check the stream, and reset the durable consumer to ``position`` (``None``:
        its ack floor), creating it if missing."""
        await close(self._client)
        self._client = client = await connect(self.url, repr(self))
        version = client.connected_server_version
        if (version.major, version.minor) < _SERVER_AT_LEAST:
            raise ConnectorError(
                f"{self!r}: the server at {self._shown} is nats-server"
                f" {version.major}.{version.minor}.{version.patch}; the source resets"
                " its consumer to where a run starts, which needs nats-server 2.14 or later"
            )
        js = client.jetstream()
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError as exc:
            raise ConnectorError(
                f"{self!r}: the server at {self._shown} has no stream {self.stream!r}"
            ) from exc
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            filter_subject=self.subject,
            max_ack_pending=-1,  # unacked until its epoch commits: an epoch may hold many
        )
        try:
            await js.add_consumer(self.stream, config)  # creates it, or leaves it as it is
            reset = await js.reset_consumer(
                self.stream, self.durable, None if position is None else position + 1
            )
        except nats.js.errors.ServiceUnavailableError:
            raise
        except nats.js.errors.APIError as exc:
            raise ConnectorError(
                f"{self!r}: cannot make the durable consumer {self.durable!r} an ack-all pull consumer"
                f" reset to where the run starts (is it another program's?): {exc}"
            ) from exc
        self._acked = reset.reset_seq - 1
        self._pending = reset.info.num_pending or 0
        self._end = info.state.last_seq
        self._pull = await js.pull_subscribe_bind(self.durable, self.stream)

    async def _reopen(self) -> None:
        """After a lost connection: a new one, the consumer reset to what was acknowledged (a
        fetch in flight may have taken messages that never arrived)."""
        await self._open(self._acked)
        self._replies = {}  # their ack subjects belong to the consumer before the reset

    async def _fetch(self, size: int) -> list[Msg]:
        assert self._pull is not None
        try:
            return await self._pull.fetch(size, timeout=self.fetch_timeout)
        except nats.errors.TimeoutError:
            if self._client is None or self._client.is_closed:
                raise nats.errors.ConnectionClosedError from None
            return []  # nothing new yet

    def _fresh(self, msgs: list[Msg]) -> list[Msg]:
        """The messages not given yet and, without ``follow``, held when the run started."""
        batch = []
        for msg in msgs:
            meta = msg.metadata
            seq = meta.sequence.stream
            self._pending = meta.num_pending
            if seq <= self._last:
                continue  # a redelivery, or a reset consumer's messages before where it stood
            if not self.follow and seq > self._end:
                self._pending = 0  # published after the run started: the next run reads it
                break
            batch.append(msg)
            self._last = seq
        return batch

    async def _ack(self, reply: str) -> None:
        """One ``+ACK``, confirmed by the server (so the ack floor has moved when it returns)."""
        if self._client is not None and not self._client.is_closed:
            await self._client.request(reply, b"+ACK", timeout=_ACK_TIMEOUT)
            return
        client = await connect(self.url, repr(self))  # the run has ended
        try:
            await client.request(reply, b"+ACK", timeout=_ACK_TIMEOUT)
        finally:
            await close(client)
