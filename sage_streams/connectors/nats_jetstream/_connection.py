"""The connection both JetStream connectors use: one that never reconnects by itself, the errors
that are worth a retry, and a close that leaves no task of the client behind."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from typing import Final, cast

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from sage_streams.connectors.retry import Backoff
from sage_streams.errors import ConnectorError

__all__ = ["DEFAULT_BACKOFF", "TRANSIENT", "Connection", "close", "connect", "shown"]

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


def shown(url: str) -> str:
    """``url`` as messages and reprs show it: a password or a token in it is ``***``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0] + ":***" if ":" in userinfo else "***"  # no password: a token
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


async def connect(url: str, owner: str) -> Connection:
    """A :class:`Connection` to ``url``; a :class:`ConnectorError` if the server refuses it
    (wrong credentials, TLS required): a refusal is not worth a retry."""
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
    except Exception as exc:
        await client.close_fully()  # the socket of a refused connection is left open
        if isinstance(exc, TRANSIENT) or not isinstance(exc, nats.errors.Error):
            raise
        raise ConnectorError(f"{owner}: the server at {shown(url)} refused the connection: {exc}") from exc
    return client


async def close(client: Connection | None) -> None:
    """Close ``client`` fully, unless it is ``None``."""
    if client is not None:
        await client.close_fully()
