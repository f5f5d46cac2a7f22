"""Helpers the tests share: one copy each, imported as ``from tests.support import ...``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from sage_streams import DataStream, DeadLetter, LocalEnvironment
from sage_streams.operators.joins.state import JoinState


@contextlib.contextmanager
def watching_lookups() -> Iterator[asyncio.Event]:
    """An event set once a join has come down to a lookup (other input ended, a partner a key)."""
    started = asyncio.Event()
    original = JoinState.lookup

    def lookup(self: JoinState, side: int) -> Any:
        found = original(self, side)
        if found is not None:
            started.set()
        return found

    JoinState.lookup = lookup  # type: ignore[method-assign]
    try:
        yield started
    finally:
        JoinState.lookup = original  # type: ignore[method-assign]


def user(item: dict[str, Any]) -> Any:
    """The key of the tests' events: their ``"user"`` field."""
    return item["user"]


async def run_with_dead_letters(
    env: LocalEnvironment, main: DataStream[Any], errors: DataStream[DeadLetter]
) -> tuple[list[Any], list[DeadLetter]]:
    """Run the graph to its end with ``main`` and an ``errors()`` stream sunk into lists.

    The sinks are named ``out`` and ``letters``. A dead-letter stream that never ends would hang
    the run, so the run is given 10 s: a hang fails the test instead of stalling the suite.
    """
    out: list[Any] = []
    letters: list[DeadLetter] = []
    main.sink(out.append, name="out")
    errors.sink(letters.append, name="letters")
    await asyncio.wait_for(env.execute(), 10)
    return out, letters


def load_module(path: Path, source: str, *, register: bool = False) -> ModuleType:
    """Write ``source`` to ``path`` and import it as a module named after the file.

    User functions defined in a real file have source that ``inspect`` can read, as inlining
    needs. With ``register`` the module also goes into ``sys.modules``, as an imported one would.
    """
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
