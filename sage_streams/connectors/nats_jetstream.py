"""NATS JetStream: a durable pull consumer as a replayable source, and a publisher sink whose
messages the server deduplicates by their ``Nats-Msg-Id``, so a replay publishes nothing twice.

:class:`JetStreamSource` reads one stream (optionally one subject filter of it) through a durable
pull consumer with ``AckPolicy.ALL``, created if missing. Its position is the stream sequence of
the last message it gave, and goes into the checkpoint. When a run starts, the consumer is reset
(``$JS.API.CONSUMER.RESET``, nats-server 2.14 or later) to the sequence after the checkpoint's,
so a restored run reads on from there whatever the consumer delivered before the crash; a run
without a position (a new job) resumes from the consumer's own ack floor (the stream's start for a
new consumer). A message is acknowledged only once the epoch that holds it has committed (one
``+ACK`` of the epoch's last message acknowledges all before it), so the server redelivers
whatever a crash lost, and the source skips any redelivered message at or below the sequence it
has given: each message is read once. ``follow=False`` reads what the stream holds when the run
starts and ends; ``follow=True`` waits for more.

:class:`JetStreamSink` publishes each item with an id made of its prefix and the item's number
among everything the sink has written in the job (kept in the checkpoint). A restored run numbers
its replay from the committed count, so a message the crashed run published after the last commit
is published again under the same id, and the server drops it. Publishes are asynchronous, at
most ``in_flight`` awaiting their acks; ``pre_commit`` waits for every ack of the epoch.

Exactly once, with three conditions (see :class:`JetStreamSink`): the replay must give the sink
the same items in the same order (a deterministic job), the stream's duplicate window (two
minutes by default) must outlast the time from a crash to the end of its replay, and the prefix
must be the sink's own.

Failures: a server that refuses or drops the connection is retried with the connector's
:class:`~sage_streams.connectors.Backoff` (the source reconnects and resets its consumer to
what it has acknowledged, skipping what it gave; the sink reconnects and publishes the epoch's
messages again, deduplicated), then is a :class:`~sage_streams.errors.ConnectorError`; a wrong
URL or a missing stream is one at the start of the run. A message ``decode`` refuses is an error
of that message, through the stream's ``on_error``.

Example::

    env = LocalEnvironment("orders", checkpoints="orders.db", checkpoint_interval=1.0)
    orders = env.create_stream("orders", source=JetStreamSource("nats://127.0.0.1:4222", "ORDERS"))
    orders.map(price).sink(JetStreamSink("nats://127.0.0.1:4222", "priced.orders"))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import reprlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, cast

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, PubAck

from sage_streams._typing import check_positive_int
from sage_streams.connectors.base import Guarantee
from sage_streams.connectors.retry import Backoff
from sage_streams.errors import ConnectorError, StreamError

__all__ = ["JetStreamSink", "JetStreamSource"]

TRANSIENT: Final[tuple[type[BaseException], ...]] = (
    OSError,
    asyncio.TimeoutError,  # nats.errors.TimeoutError too: a request the server did not answer
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoRespondersError,  # JetStream not up yet, as after a restart
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.TooManyStalledMsgsError,
)
"""What a server that is away, restarting or slow raises: tried again after a backoff."""

DEFAULT_BACKOFF: Final = Backoff()


async def _ignore(error: Exception) -> None:
    """nats-py's error callback: the failures reach us as the errors of the calls we make."""


class Connection(Client):
    """A client that never reconnects by itself (the connector does, with its backoff, and
    resets what a lost connection left behind), and that says when it has finished closing: a
    lost connection closes in the client's own task, which stops the subscriptions' last."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = asyncio.Event()

    async def _finish(self) -> None:
        self.finished.set()

    async def close_fully(self) -> None:
        """Close, and wait until the subscriptions' tasks have ended.

        A lost connection is closed by the client's reading task, and that close can fail half
        way (a write to the dead socket raising) before it stops the subscriptions: what it
        left is stopped here.
        """
        if not self.is_closed:
            with contextlib.suppress(*TRANSIENT):  # a connection that broke while closing is closed
                await self.close()
        if self.finished.is_set():
            return
        subscriptions = list(self._subs.values())
        self._subs.clear()
        for subscription in subscriptions:
            subscription._stop_processing()
        if self._transport is not None:
            self._transport.close()  # type: ignore[no-untyped-call]
        tasks = [cast("asyncio.Task[None] | None", sub._wait_for_msgs_task) for sub in subscriptions]
        await asyncio.gather(*(task for task in tasks if task is not None), return_exceptions=True)
        self.finished.set()


async def connect(url: str, owner: str) -> Connection:
    """A :class:`Connection` to ``url``; a :class:`ConnectorError` for refused credentials."""
    client = Connection()
    try:
        await client.connect(
            url,
            name=owner,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # one try per server (0 would retry for ever)
            reconnect_time_wait=0,
            connect_timeout=2,
            error_cb=_ignore,
            closed_cb=client._finish,
        )
    except nats.errors.AuthorizationError as exc:
        raise ConnectorError(f"{owner}: the server at {url} refused the credentials: {exc}") from exc
    return client


async def close(client: Connection | None) -> None:
    """Close ``client`` fully, unless it is ``None``."""
    if client is not None:
        await client.close_fully()


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
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.follow = follow
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
        self._pending = 0

    def __repr__(self) -> str:
        return f"JetStreamSource({self.url!r}, {self.stream!r})"

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
                repr(self), f"connect to {self.url}", lambda: self._open(position), transient=TRANSIENT
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
        if self._client is not None and not self._client.is_closed:
            await self._client.publish(reply, b"+ACK")
            return
        await self.backoff.call(
            repr(self), "acknowledge", lambda: self._ack_alone(reply), transient=TRANSIENT
        )

    async def _open(self, position: int | None) -> None:
        """Connect, check the stream, and reset the durable consumer to ``position`` (``None``:
        its ack floor), creating it if missing."""
        await close(self._client)
        self._client = client = await connect(self.url, repr(self))
        js = client.jetstream()
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError as exc:
            raise ConnectorError(f"{self!r}: the server at {self.url} has no stream {self.stream!r}") from exc
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            filter_subject=self.subject,
            max_ack_pending=-1,  # unacked until its epoch commits: an epoch may hold many
        )
        await js.add_consumer(self.stream, config)  # creates it, or leaves it as it is
        reset = await js.reset_consumer(self.stream, self.durable, None if position is None else position + 1)
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

    async def _ack_alone(self, reply: str) -> None:
        client = await connect(self.url, repr(self))
        try:
            await client.publish(reply, b"+ACK")
            await client.flush()
        finally:
            await close(client)


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
    if the connection is lost (the ids make the republished ones that had arrived no-ops).

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
        self._recovered = False
        self._resend = False
        """Whether the connection was lost since the last pre-commit: publish them all again."""

    def __repr__(self) -> str:
        return f"JetStreamSink({self.url!r}, {self.subject!r})"

    async def recover(self, epoch: int | None, record: Any) -> None:
        """Connect, check that a stream takes the subject, and number the items from the
        record's count (0 with no epoch committed)."""
        if epoch is None:
            self._count = 0
        elif isinstance(record, dict) and record.keys() == {"count"} and type(record["count"]) is int:
            self._count = record["count"]
        else:
            raise ValueError(f"{self!r}: the record of epoch {epoch} must be {{'count': n}}, got {record!r}")
        await self.backoff.call(repr(self), f"connect to {self.url}", self._connect, transient=TRANSIENT)
        self._recovered = True

    async def write(self, batch: list[Any], epoch: int) -> None:
        """Publish ``batch`` (acks are awaited at ``pre_commit``)."""
        messages = []
        for index, item in enumerate(batch):
            payload = self._encode(item)
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
        await self.backoff.call(repr(self), "publish", self._settle, transient=TRANSIENT, reset=self._connect)
        self._unacked, self._acks = [], []
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
        self._js = js = client.jetstream(publish_async_max_pending=self.in_flight)
        try:
            await js.find_stream_name_by_subject(self.subject)
        except nats.js.errors.NotFoundError as exc:
            await self.close()
            raise ConnectorError(
                f"{self!r}: no stream on the server at {self.url} takes the subject {self.subject!r}"
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
            ack = await js.publish_async(
                self.subject, payload, headers={"Nats-Msg-Id": msg_id}, wait_stall=self.ack_timeout
            )
            self._acks.append(ack)

    async def _settle(self) -> None:
        """Wait for every ack; after a lost connection, publish every message again first."""
        try:
            if self._resend:
                self._acks = []
                self._resend = False
                await self._publish(self._unacked)
            acks = await asyncio.wait_for(
                asyncio.gather(*self._acks, return_exceptions=True), self.ack_timeout
            )
        except TRANSIENT:
            self._resend = True
            raise
        for (msg_id, _), ack in zip(self._unacked, acks, strict=True):
            if isinstance(ack, TRANSIENT):
                self._resend = True
                raise ack
            if isinstance(ack, BaseException):
                raise ConnectorError(f"{self!r}: the server refused message {msg_id!r}: {ack}") from ack
            self.duplicates += ack.duplicate is True
