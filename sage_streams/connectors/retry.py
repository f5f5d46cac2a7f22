"""Retries with exponential backoff for the calls a connector makes to its server.

A server that restarts, fails over or drops a connection should not fail a run; one that stays
away should, clearly, rather than hang it. :meth:`Backoff.call` retries a call that raised one
of the connector's transient errors (a refused or reset connection, a timeout), waiting
``first``, ``first * factor``, ... seconds (at most ``limit`` each, with jitter so that many
clients do not retry in step), and after ``attempts`` tries raises
:class:`~sage_streams.errors.ConnectorError` naming the connector and what it tried, the last
error chained. Errors that are not transient (a wrong password, a missing table) are raised at
once.

Example::

    backoff = Backoff(attempts=5)
    entries = await backoff.call("redis source 'clicks'", "XREAD", lambda: client.xread(...),
                                 transient=(ConnectionError, TimeoutError))
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import anyio

from sage_streams.errors import ConnectorError

__all__ = ["DEFAULT_BACKOFF", "Backoff"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently a connector retries (5 tries over about 1.5 s by default)."""

    attempts: int = 5
    """Tries in all, the first included; 1 means no retry."""
    first: float = 0.1
    """Seconds before the first retry."""
    factor: float = 2.0
    limit: float = 2.0
    """The longest wait between two tries."""

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {self.attempts!r}")
        if not (self.first >= 0 and self.factor >= 1 and self.limit >= self.first):
            raise ValueError(f"a backoff needs 0 <= first <= limit and factor >= 1, got {self!r}")

    def delays(self) -> list[float]:
        """The waits before each retry, jitter left out."""
        return [min(self.limit, self.first * self.factor**n) for n in range(self.attempts - 1)]

    async def call(
        self,
        owner: str,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        transient: tuple[type[BaseException], ...],
        reset: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``await attempt()``, tried again after a ``transient`` error (``reset`` first, to
        reconnect, if given); a :class:`ConnectorError` once every try has failed."""
        delays = self.delays()
        for tried in range(self.attempts):
            try:
                return await attempt()
            except transient as exc:
                if tried == len(delays):
                    raise ConnectorError(
                        f"{owner}: {what} failed {self.attempts} times in a row "
                        f"(over {sum(delays):.1f} s of backoff); last error: {exc!r}"
                    ) from exc
                await anyio.sleep(delays[tried] * random.uniform(0.5, 1.0))
                if reset is not None:
                    with contextlib.suppress(*transient):  # the next try finds it away, and counts
                        await reset()
        raise AssertionError("unreachable: the last try returns or raises")


DEFAULT_BACKOFF: Final = Backoff()
"""The backoff a connector retries with unless given one."""
