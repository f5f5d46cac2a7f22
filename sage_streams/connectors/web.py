"""Sources for services: a WebSocket client (``websockets``) and a server-sent-events client
(``httpx`` with ``httpx-sse``), both reconnecting with backoff. Extra: ``sage-streams[http]``.

Each message (a WebSocket message, an SSE event) is one entry; ``decode`` turns it into the
item (by default ``json.loads`` of the message, or of the event's ``data``) as the operator
``NAME.decode``, so a message that does not decode is an error of that message, through the
stream's ``on_error`` policy (see :class:`~sage_streams.connectors.DecodingSource`).

**Reconnecting.** A connection that drops (a reset, a server restart, an abnormal close) is
opened again after ``backoff``'s delays; once a message has arrived the count starts over, and a
server away for all of ``backoff.attempts`` tries in a row stops the run with a
:class:`~sage_streams.errors.ConnectorError` naming the source. What cannot be right by trying
again fails at once, at the start of the run: a URL that is not one, a refused handshake
(``401``, ``403``, ``404``: wrong path or credentials), a response that is not an event stream.
A WebSocket the server closes normally ends the source (``reconnect=True`` opens it again
instead); an event stream is reopened after it ends, as a browser's ``EventSource`` does (after
``backoff.first`` seconds, longer each time in a row it ended with no event: never a hot loop
against the server), until the server answers ``204 No Content``, which ends it.

**Guarantee.** These servers do not replay what was sent while nobody listened, so both give
``at_most_once``: after a crash or a reconnection, what the server sent in between is gone. An
event stream whose events carry ids resumes: the source's position is the last event id, sent
as ``Last-Event-ID`` on every reconnection and kept in checkpoints, so a server that replays
from it (say so with ``resumes=True``) makes the source ``exactly_once``. To keep WebSocket
messages through a crash, emit them into a durable push stream
(``env.create_stream(name, durable=True)``) instead.

Example::

    ticks = env.create_stream("ticks", source=WebSocketSource("wss://feed.example/ws",
                              subscribe=['{"op": "subscribe", "channel": "trades"}']))
    alerts = env.create_stream("alerts", source=ServerSentEventsSource("https://example/events"))
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import anyio
import httpx
import httpx_sse
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError, InvalidHandshake, InvalidStatus, InvalidURI

from sage_streams.connectors.base import Guarantee
from sage_streams.connectors.retry import DEFAULT_BACKOFF, Backoff
from sage_streams.errors import ConnectorError

__all__ = ["ServerSentEventsSource", "WebSocketSource"]

PERMANENT_STATUS: Final = frozenset({400, 401, 403, 404, 405, 410})
"""Handshake answers that another try would only repeat: a wrong path or credentials."""


class _Reconnecting(ABC):
    """The loop both sources share: open, read until the connection ends, open again."""

    guarantee: Guarantee = "at_most_once"
    live = True
    """A service's messages are waited for: barriers pass while the source waits."""

    def __init__(self, url: str, backoff: Backoff, reconnect: bool) -> None:
        self.url = url
        self.backoff = backoff
        self.reconnect = reconnect

    @property
    @abstractmethod
    def owner(self) -> str:
        """How errors name this source."""

    @abstractmethod
    def session(self, position: Any) -> AsyncIterator[tuple[Any, Any]]:
        """One connection's entries from ``position``, each with the position after it; ends
        when the server ends the connection normally, raises ``OSError`` for a dropped one and
        :class:`ConnectorError` for one no retry can fix."""

    async def batches(self, position: Any, size: int) -> AsyncIterator[tuple[list[Any], Any]]:
        """Each entry as a batch of its own, the moment it arrives (a service's messages are
        waited for, not gathered)."""
        delays = self.backoff.delays()
        failures = quiet = 0
        while True:
            try:
                delivered = False
                async for entry, after in self.session(position):
                    failures, position, delivered = 0, after, True
                    yield [entry], position
                if not self.reconnect:
                    return
                # Ended normally: open it again, after a pause that grows while the server ends
                # connections without sending anything (never a hot loop against it).
                quiet = 0 if delivered else quiet + 1
                await anyio.sleep(min(self.backoff.limit, self.backoff.first * self.backoff.factor**quiet))
            except OSError as exc:
                if failures == len(delays):
                    raise ConnectorError(
                        f"{self.owner}: the connection failed {self.backoff.attempts} times in a row "
                        f"(over {sum(delays):.1f} s of backoff); last error: {exc!r}"
                    ) from exc
                await anyio.sleep(delays[failures])
                failures += 1
            except _Ended:
                return


class _Ended(Exception):
    """The server said there is no more (an event stream's ``204``)."""


class WebSocketSource(_Reconnecting):
    """The messages of a WebSocket, from connecting on (``at_most_once``, see the module).

    Args:
        url: ``ws://`` or ``wss://``.
        subscribe: messages sent after each connection opens (a subscription request), before
            reading.
        headers: extra handshake headers (a bearer token).
        decode: message (``str`` or ``bytes``) to item; ``json.loads`` by default.
        reconnect: open the socket again after the server closes it normally, rather than end.
        backoff: the reconnection delays.
    """

    def __init__(
        self,
        url: str,
        *,
        subscribe: Sequence[str | bytes] = (),
        headers: Mapping[str, str] | None = None,
        decode: Callable[[str | bytes], Any] = json.loads,
        reconnect: bool = False,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        super().__init__(url, backoff, reconnect)
        self.subscribe = list(subscribe)
        self.headers = dict(headers or {})
        self._decode = decode

    @property
    def owner(self) -> str:
        return f"websocket source {self.url!r}"

    def decode(self, entry: str | bytes) -> Any:
        return self._decode(entry)

    async def _open(self) -> ClientConnection:
        try:
            return await websockets.connect(self.url, additional_headers=self.headers, proxy=None)
        except InvalidURI as exc:
            raise ConnectorError(f"{self.owner}: not a WebSocket URL ({exc})") from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in PERMANENT_STATUS:
                raise ConnectorError(f"{self.owner}: the server refused the handshake with {status}") from exc
            raise OSError(f"handshake answered {status}") from exc
        except InvalidHandshake as exc:
            raise OSError(f"handshake failed: {exc}") from exc

    async def session(self, position: Any) -> AsyncIterator[tuple[Any, Any]]:
        socket = await self._open()
        try:
            for message in self.subscribe:
                await socket.send(message)
            async for message in socket:  # ends at a normal close
                yield message, None
        except ConnectionClosedError as exc:
            raise OSError(f"the connection closed abnormally: {exc}") from exc
        finally:
            await socket.close()


class ServerSentEventsSource(_Reconnecting):
    """The events of a ``text/event-stream`` (see the module for reconnection and ids).

    Args:
        url: ``http://`` or ``https://``.
        headers: extra request headers (a bearer token).
        decode: :class:`httpx_sse.ServerSentEvent` to item; ``json.loads`` of its ``data`` by
            default (``lambda e: (e.event, e.data)`` keeps the event's name).
        resumes: the server replays the events after ``Last-Event-ID``, so a restored run
            misses nothing: the source then declares ``exactly_once``.
        reconnect: open the stream again after the server ends it (the default, as the SSE
            standard says); ``False`` ends the source instead.
        backoff: the reconnection delays.
        timeout: seconds to connect (reading waits for as long as the server is silent).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        decode: Callable[[httpx_sse.ServerSentEvent], Any] = lambda event: json.loads(event.data),
        resumes: bool = False,
        reconnect: bool = True,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(url, backoff, reconnect)
        self.headers = dict(headers or {})
        self._decode = decode
        self.timeout = timeout
        if resumes:
            self.guarantee = "exactly_once"

    @property
    def owner(self) -> str:
        return f"event stream source {self.url!r}"

    def decode(self, entry: httpx_sse.ServerSentEvent) -> Any:
        return self._decode(entry)

    async def session(self, position: Any) -> AsyncIterator[tuple[Any, Any]]:
        headers = dict(self.headers)
        if position is not None:
            headers["Last-Event-ID"] = str(position)
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, trust_env=False) as client,
                httpx_sse.aconnect_sse(client, "GET", self.url, headers=headers) as events,
            ):
                self._check(events.response)
                async for event in events.aiter_sse():
                    if event.id:
                        position = event.id
                    yield event, position
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ConnectorError(f"{self.owner}: not an http(s) URL ({exc})") from exc
        except httpx_sse.SSEError as exc:
            raise ConnectorError(f"{self.owner}: not an event stream ({exc})") from exc
        except httpx.TransportError as exc:  # refused, reset, timed out, cut mid-event
            raise OSError(f"{type(exc).__name__}: {exc}") from exc

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 204:
            raise _Ended
        if status in PERMANENT_STATUS:
            raise ConnectorError(f"{self.owner}: the server answered {status} {response.reason_phrase}")
        if status >= 300:
            raise OSError(f"the server answered {status} {response.reason_phrase}")
