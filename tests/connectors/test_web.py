"""The WebSocket and event-stream sources against real servers on 127.0.0.1: a ``websockets``
server, and an HTTP server on asyncio's streams speaking ``text/event-stream``. Each message
once and in order, reconnection with backoff after a drop (and ``Last-Event-ID`` on it), a clear
error for what no retry fixes, and decoding errors through the error path."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from sage_streams import ConnectorError, DeadLetter, LocalEnvironment, PipelineError
from sage_streams.connectors import Backoff, JsonLinesSink
from sage_streams.connectors.web import ServerSentEventsSource, WebSocketSource
from sage_streams.testing import ManualClock, leftover_tasks

QUICK = Backoff(attempts=3, first=0.01, limit=0.02)


@contextlib.asynccontextmanager
async def websocket_server(
    handler: Callable[[ServerConnection], Awaitable[None]],
    refuse: HTTPStatus | None = None,
) -> AsyncIterator[tuple[str, Server]]:
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        return None if refuse is None else connection.respond(refuse, "refused\n")

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", server


async def collect(env: LocalEnvironment, source: Any) -> list[Any]:
    return await env.create_stream("feed", source=source).collect()


async def test_websocket_messages_arrive_once_in_order_and_a_normal_close_ends_the_source() -> None:
    subscriptions: list[str | bytes] = []

    async def handler(socket: ServerConnection) -> None:
        subscriptions.append(await socket.recv())
        for n in range(50):
            await socket.send(json.dumps({"n": n}))
        await socket.send(b"[1, 2]")

    async with websocket_server(handler) as (url, _):
        source = WebSocketSource(url, subscribe=['{"op": "subscribe"}'])
        assert source.guarantee == "at_most_once"
        out = await collect(LocalEnvironment("ws"), source)
    assert out == [{"n": n} for n in range(50)] + [[1, 2]]
    assert subscriptions == ['{"op": "subscribe"}']
    assert not leftover_tasks()


async def test_a_message_that_does_not_decode_goes_to_the_error_path() -> None:
    async def handler(socket: ServerConnection) -> None:
        for text in ["1", "not json", "3", "{", "5"]:
            await socket.send(text)

    async with websocket_server(handler) as (url, _):
        env = LocalEnvironment("ws")
        stream = env.create_stream("feed", source=WebSocketSource(url))
        stream.on_error(lambda sid, error, context: "continue")
        out: list[Any] = []
        letters: list[DeadLetter] = []
        stream.sink(out.append)
        stream.errors().sink(letters.append)
        await env.execute()
    assert out == [1, 3, 5]
    assert [(letter.item, letter.operator) for letter in letters] == [
        ("not json", "feed.decode"),
        ("{", "feed.decode"),
    ]
    assert all(isinstance(letter.error, json.JSONDecodeError) for letter in letters)


async def test_a_dropped_websocket_is_reopened_and_resubscribed() -> None:
    sent: list[int] = []
    subscriptions = 0

    async def handler(socket: ServerConnection) -> None:
        nonlocal subscriptions
        await socket.recv()
        subscriptions += 1
        for _ in range(4):
            sent.append(len(sent))
            await socket.send(str(sent[-1]))
        if len(sent) < 12:
            assert socket.transport is not None
            socket.transport.abort()  # a drop: no close frame

    async with websocket_server(handler) as (url, _):
        out = await collect(LocalEnvironment("ws"), WebSocketSource(url, subscribe=["sub"], backoff=QUICK))
    assert out == list(range(12))
    assert subscriptions == 3


async def test_a_websocket_server_that_stays_away_stops_the_run_naming_the_source() -> None:
    async def handler(socket: ServerConnection) -> None:
        await socket.send("1")
        socket.server.close()  # stops listening: every reconnection is refused
        assert socket.transport is not None
        socket.transport.abort()

    async with websocket_server(handler) as (url, _):
        env = LocalEnvironment("ws")
        out: list[Any] = []
        env.create_stream("feed", source=WebSocketSource(url, backoff=QUICK)).sink(out.append)
        with pytest.raises(PipelineError) as raised:
            await env.execute()
    cause = raised.value.__cause__
    assert isinstance(cause, ConnectorError)
    assert str(cause).startswith(f"websocket source {url!r}: the connection failed 3 times in a row")
    assert isinstance(cause.__cause__, OSError)
    assert raised.value.operator == "feed"
    assert out == [1]
    assert not leftover_tasks()


async def test_a_refused_handshake_and_a_wrong_url_fail_at_once() -> None:
    async def handler(socket: ServerConnection) -> None:
        raise AssertionError("never reached")

    async with websocket_server(handler, refuse=HTTPStatus.FORBIDDEN) as (url, _):
        with pytest.raises(PipelineError) as raised:
            await collect(LocalEnvironment("ws"), WebSocketSource(url))
    assert (
        str(raised.value.__cause__) == f"websocket source {url!r}: the server refused the handshake with 403"
    )
    with pytest.raises(PipelineError) as raised:
        await collect(LocalEnvironment("ws"), WebSocketSource("http://127.0.0.1:1/ws"))
    assert isinstance(raised.value.__cause__, ConnectorError)
    assert "not a WebSocket URL" in str(raised.value.__cause__)


class EventServer:
    """An HTTP server of one event stream: ``events`` (id, data), ``per_connection`` of them a
    connection from after the request's ``Last-Event-ID``, then it ends the response; ``204``
    once none are left. ``status`` and ``content_type`` answer every request instead."""

    def __init__(self, events: list[tuple[str, str]], per_connection: int) -> None:
        self.events = events
        self.per_connection = per_connection
        self.status = 200
        self.content_type = "text/event-stream"
        self.last_ids: list[str | None] = []
        self.empty_sessions = 0
        """Connections answered with an empty event stream once the events are all sent, before
        the ``204``."""
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/events"

    async def __aenter__(self) -> EventServer:
        self.server = await asyncio.start_server(self.answer, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = Headers()
        for line in head.split("\r\n")[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name] = value.strip()
        last = headers.get("Last-Event-ID")
        self.last_ids.append(last)
        ids = [event_id for event_id, _ in self.events]
        start = 0 if last is None else ids.index(last) + 1
        if start == len(self.events) and self.empty_sessions and self.status == 200:
            self.empty_sessions -= 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        elif self.status != 200 or start == len(self.events):
            status = 204 if self.status == 200 else self.status
            writer.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Length: 0\r\n\r\n".encode()
            )
        else:
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\nConnection: close\r\n\r\n".encode()
            )
            writer.write(b": a comment, ignored\n\n")
            for event_id, data in self.events[start : start + self.per_connection]:
                writer.write(f"id: {event_id}\nevent: tick\ndata: {data}\n\n".encode())
        await writer.drain()
        writer.close()


async def test_events_arrive_once_in_order_across_reconnections_with_last_event_id() -> None:
    events = [(f"e{n}", json.dumps({"n": n})) for n in range(10)]
    async with EventServer(events, per_connection=4) as server:
        source = ServerSentEventsSource(server.url, backoff=QUICK)
        out = await collect(LocalEnvironment("sse"), source)
    assert out == [{"n": n} for n in range(10)]
    assert server.last_ids == [None, "e3", "e7", "e9"]  # the last answered 204: the end
    assert source.guarantee == "at_most_once"


async def test_an_event_stream_refused_or_of_another_type_fails_at_once() -> None:
    async with EventServer([("1", "1")], per_connection=1) as server:
        server.status = 401
        with pytest.raises(PipelineError) as raised:
            await collect(LocalEnvironment("sse"), ServerSentEventsSource(server.url))
        assert (
            str(raised.value.__cause__)
            == f"event stream source {server.url!r}: the server answered 401 Unauthorized"
        )
        assert server.last_ids == [None]
        server.status, server.content_type = 200, "text/html"
        with pytest.raises(PipelineError) as raised:
            await collect(LocalEnvironment("sse"), ServerSentEventsSource(server.url))
        assert "not an event stream" in str(raised.value.__cause__)
        server.status = 503  # a server error is tried again, then named
        with pytest.raises(PipelineError) as raised:
            await collect(LocalEnvironment("sse"), ServerSentEventsSource(server.url, backoff=QUICK))
        assert "the connection failed 3 times in a row" in str(raised.value.__cause__)
        assert len(server.last_ids) == 5  # 401 once, the page once, 503 three times
    with pytest.raises(PipelineError) as raised:
        await collect(LocalEnvironment("sse"), ServerSentEventsSource("ftp://127.0.0.1/events"))
    assert "not an http(s) URL" in str(raised.value.__cause__)
    assert not leftover_tasks()


async def test_an_event_stream_that_resumes_is_restored_exactly_once(tmp_path: Path) -> None:
    events = [(str(n), str(n)) for n in range(40)]

    async def run(fail_at: int | None) -> None:
        clock = ManualClock()
        env = LocalEnvironment(
            "sse", checkpoints=tmp_path / "c.db", clock=clock, required_guarantee="exactly_once"
        )

        async def gate(n: int) -> int:
            await asyncio.sleep(0)
            if n == fail_at:
                raise RuntimeError("crash")
            return n

        source = ServerSentEventsSource(server.url, resumes=True, decode=lambda e: int(e.data))
        assert source.guarantee == "exactly_once"
        env.create_stream("feed", source=source).map(gate, name="gate").sink(
            JsonLinesSink(tmp_path / "o.jsonl")
        )
        task = asyncio.ensure_future(env.execute())
        while not task.done():
            await clock.advance(1.0)
        await task

    async with EventServer(events, per_connection=3) as server:
        with pytest.raises(PipelineError):
            await run(fail_at=25)
        resumed_from = len(server.last_ids)
        await run(fail_at=None)
    assert [int(line) for line in (tmp_path / "o.jsonl").read_text().split()] == list(range(40))
    assert server.last_ids[resumed_from] not in (None, "24")  # from the checkpoint, not the start


async def test_an_event_stream_ended_without_events_is_reopened_after_a_growing_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sage_streams.connectors import web

    pauses: list[float] = []

    async def recorded(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(web, "anyio", SimpleNamespace(sleep=recorded))  # the source's pauses only
    async with EventServer([("a", "1"), ("b", "2")], per_connection=2) as server:
        server.empty_sessions = 4
        backoff = Backoff(attempts=3, first=0.01, factor=2.0, limit=0.05)
        out = await collect(LocalEnvironment("sse"), ServerSentEventsSource(server.url, backoff=backoff))
    assert out == [1, 2]
    assert server.last_ids == [None] + ["b"] * 5  # four empty streams, then the 204
    assert pauses == [0.01, 0.02, 0.04, 0.05, 0.05]  # after the events, then growing to the limit
