"""Faults of a real PostgreSQL under a running job (a server of the test's own, stopped by it): a
server that comes back within the backoff costs nothing; one that stays away fails the run with a
PipelineError naming the connector, the table holding only epochs that were written whole, and the
next run, once the server is back, leaves each row once; a commit whose answer the network lost is
retried without writing its rows twice."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sage_streams import LocalEnvironment, PipelineError
from sage_streams.connectors import Backoff
from sage_streams.connectors.postgres import PostgresSink, PostgresSource
from sage_streams.errors import ConnectorError
from servers import Server, start
from tests.connectors.postgres import until


@pytest.fixture
def server() -> Iterator[Server]:
    with start("postgres") as server:
        yield server


async def prepare(url: str, rows: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE events (id bigint PRIMARY KEY, amount bigint)")
        await connection.execute("CREATE TABLE doubled (id bigint, amount bigint, _epoch bigint)")
        await insert(connection, range(1, rows + 1))
    finally:
        await connection.close()


async def insert(connection: asyncpg.Connection, ids: range) -> None:
    await connection.executemany("INSERT INTO events VALUES ($1, $2)", [(i, i) for i in ids])


def job(url: str, store: Path, backoff: Backoff, *, follow: bool) -> LocalEnvironment:
    env = LocalEnvironment("faults", checkpoints=store, checkpoint_interval=0.05, batch_size=50)
    source = PostgresSource(url, "events", "id", follow=follow, poll_interval=0.05, backoff=backoff)
    events = env.create_stream("events", source=source)
    doubled = events.map(lambda e: {"id": e["id"], "amount": e["amount"] * 2}, name="double")
    doubled.sink(PostgresSink(url, "doubled", backoff=backoff), name="doubled_sink")
    return env


async def committed(url: str) -> int:
    """The last epoch the sink's marker says the checkpoint committed (0 for none yet)."""
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval("SELECT coalesce(max(committed), 0) FROM sage_streams_epochs") or 0
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await connection.close()


async def contents(url: str) -> tuple[list[tuple[int, int]], int]:
    """The sink's rows (id, amount) by id, and the epoch its marker says is written."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT id, amount FROM doubled ORDER BY id")
        written = await connection.fetchval("SELECT written FROM sage_streams_epochs")
        return [(row["id"], row["amount"]) for row in rows], written
    finally:
        await connection.close()


async def test_a_server_that_stays_away_fails_the_run_naming_the_connector(
    server: Server, tmp_path: Path
) -> None:
    await prepare(server.url, 200)
    backoff = Backoff(attempts=3, first=0.05)
    run = asyncio.ensure_future(job(server.url, tmp_path / "store.db", backoff, follow=True).execute())
    await until(lambda: committed(server.url))
    server.stop()
    with pytest.raises(PipelineError) as failed:
        await asyncio.wait_for(run, 60)
    error = failed.value.__cause__
    assert isinstance(error, ConnectorError)
    assert "failed 3 times in a row" in str(error)
    assert str(error).startswith(("PostgresSource('postgresql://postgres@127.0.0.1:", "PostgresSink("))
    assert ("doubled_sink" if str(error).startswith("PostgresSink") else "events") in str(failed.value)

    server.restart()
    rows, _ = await contents(server.url)
    assert rows == [(i, 2 * i) for i in range(1, len(rows) + 1)]  # whole epochs, in order, once
    await job(server.url, tmp_path / "store.db", backoff, follow=False).execute()
    rows, _ = await contents(server.url)
    assert rows == [(i, 2 * i) for i in range(1, 201)]


async def test_a_server_back_within_the_backoff_costs_the_run_nothing(server: Server, tmp_path: Path) -> None:
    await prepare(server.url, 100)
    backoff = Backoff(attempts=40, first=0.05, limit=0.25)  # about 10 s of retries
    run = asyncio.ensure_future(job(server.url, tmp_path / "store.db", backoff, follow=True).execute())
    await until(lambda: committed(server.url))
    restarted = threading.Thread(target=server.restart)  # stopped now, started again meanwhile
    restarted.start()
    await asyncio.to_thread(restarted.join)
    connection = await asyncpg.connect(server.url)
    try:
        await insert(connection, range(101, 201))
        while (await contents(server.url))[0][-1:] != [(200, 400)]:
            assert not run.done(), run.exception()
            await asyncio.sleep(0.02)
    finally:
        await connection.close()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    rows, _ = await contents(server.url)
    assert rows == [(i, 2 * i) for i in range(1, 201)]


class CommitCutter:
    """A TCP relay to a server that, when armed, passes the next ``COMMIT`` on and drops the
    client's connection before the server's answer gets back: the commit happened, and the
    client cannot know. The network's fault, not a fake of the server: everything else passes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.armed = False
        self.cuts = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"postgresql://postgres@127.0.0.1:{self._server.sockets[0].getsockname()[1]}/postgres"

    async def __aexit__(self, *_: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        server, to_server = await asyncio.open_connection("127.0.0.1", self.port)
        cut = asyncio.Event()

        async def down() -> None:
            while (data := await server.read(65536)) and not cut.is_set():
                to_client.write(data)
                await to_client.drain()
            if not cut.is_set():
                to_client.close()  # the server ended the connection: so does the relay

        answers = asyncio.ensure_future(down())
        try:
            while data := await client.read(65536):
                if self.armed and b"COMMIT" in data:
                    self.armed, self.cuts = False, self.cuts + 1
                    cut.set()  # the answer is not passed on
                    to_server.write(data)
                    await to_server.drain()
                    await asyncio.sleep(0.2)  # the server commits meanwhile
                    break
                to_server.write(data)
                await to_server.drain()
        finally:
            answers.cancel()
            await asyncio.gather(answers, return_exceptions=True)
            to_client.transport.abort()
            to_server.transport.abort()


async def test_a_commit_whose_answer_was_lost_is_not_written_again(server: Server) -> None:
    connection = await asyncpg.connect(server.url)
    try:
        await connection.execute("CREATE TABLE doubled (id bigint, amount bigint, _epoch bigint)")
        cutter = CommitCutter(server.port)
        async with cutter as url:
            sink = PostgresSink(url, "doubled", backoff=Backoff(attempts=3, first=0.01))
            await sink.recover(None, None)
            await sink.write([(1, 2), (2, 4)], 1)
            cutter.armed = True  # the epoch's COMMIT commits, and its answer is lost
            assert await sink.pre_commit(1) == {"epoch": 1}  # retried: the marker says it is in
            assert cutter.cuts == 1
            await sink.write([(3, 6)], 2)
            await sink.pre_commit(2)
            await sink.close()
        rows = await connection.fetch("SELECT * FROM doubled ORDER BY id")
        assert [tuple(row) for row in rows] == [(1, 2, 1), (2, 4, 1), (3, 6, 2)]
    finally:
        await connection.close()
