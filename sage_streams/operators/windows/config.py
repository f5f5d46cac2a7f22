"""Window configs: which windows a window operator keeps, as frozen records validated when made.

:class:`TumblingWindows`, :class:`SlidingWindows` and :class:`SessionWindows` say what windows
an item belongs to; :func:`window_config` makes one from the contract's spelling,
``window(window_type, size, slide, timeout=...)``. They hold no state: the logic that assigns
items, fires and purges is :class:`sage_streams.operators.windows.state.WindowState`, which
each one's ``build()`` makes.

Example::

    window_config("sliding", 60, 10)  # SlidingWindows(size=60.0, slide=10.0)
    TumblingWindows(0)  # ValueError: size must be finite and > 0, got 0: a window needs ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, get_args

from sage_streams._typing import check_choice, check_seconds
from sage_streams.operators.windows.contents import Accumulators
from sage_streams.operators.windows.state import WindowState

__all__ = [
    "MAX_WINDOWS_PER_ITEM",
    "SessionWindows",
    "SlidingWindows",
    "TumblingWindows",
    "WindowConfig",
    "WindowType",
    "window_config",
]

WindowType: TypeAlias = Literal["tumbling", "sliding", "session"]
"""The kinds of windows, as spelled by ``window(window_type, ...)``."""

WINDOW_TYPES: Final[tuple[str, ...]] = get_args(WindowType)

MAX_WINDOWS_PER_ITEM: Final = 10_000
"""The most sliding windows one item may belong to, ``ceil(size / slide)``.

An item is stored in (or folded into) each of its windows, and each fires, so the work per item
grows with this number: 10,000 covers a day of windows sliding every 10 s and refuses, when the
graph is built, a ratio that would stall the loop on every item (an hour sliding by 0.1 ms).
"""


class _Windows:
    """What the three window configs share: :meth:`build`, the logic keeping such windows."""

    def _extent(self) -> tuple[float | None, float | None, float | None]:
        """``(size, slide, gap)``, each ``None`` where these windows have none."""
        raise NotImplementedError  # pragma: no cover - each config has its own

    def build(
        self,
        *,
        inputs: int = 1,
        allowed_lateness: float = 0.0,
        accumulators: Accumulators | None = None,
        codegen: bool = True,
    ) -> WindowState:
        """A new window state keeping these windows over ``inputs`` inputs, one per run.

        ``allowed_lateness`` is how long, in seconds after its end, a window is kept for late
        items; with ``accumulators`` each window folds its items rather than storing them;
        ``codegen=False`` runs the plain twins of the generated loops. See :class:`WindowState`.
        """
        size, slide, gap = self._extent()
        return WindowState(
            size=size,
            slide=slide,
            gap=gap,
            shape=repr(self),
            inputs=inputs,
            allowed_lateness=allowed_lateness,
            accumulators=accumulators,
            codegen=codegen,
        )


@dataclass(frozen=True)
class TumblingWindows(_Windows):
    """Back-to-back windows of ``size`` seconds: ``[k * size, (k + 1) * size)`` for every integer k.

    Windows are aligned to multiples of ``size`` from 0 (negative timestamps included), so every
    timestamp belongs to exactly one window; one exactly at a window's end belongs to the next.

    Example::

        TumblingWindows(60.0)  # [0, 60), [60, 120), ...; 59.9 -> [0, 60), 60.0 -> [60, 120)
    """

    size: float

    def __post_init__(self) -> None:
        size = check_seconds(
            "size", self.size, allow_zero=False, why="a window needs a positive, finite length"
        )
        object.__setattr__(self, "size", size)

    def _extent(self) -> tuple[float | None, float | None, float | None]:
        return self.size, None, None


@dataclass(frozen=True)
class SlidingWindows(_Windows):
    """Overlapping windows of ``size`` seconds, one starting every ``slide`` seconds.

    An item at ``t`` belongs to every window ``[s, s + size)`` whose start ``s`` is a multiple of
    ``slide`` with ``s <= t < s + size``: ``size / slide`` windows when that divides evenly.
    ``slide`` may not exceed ``size``; ``slide == size`` is the same as tumbling windows.
    ``ceil(size / slide)`` may not exceed :data:`MAX_WINDOWS_PER_ITEM` (10,000).

    Example::

        SlidingWindows(10.0, 5.0)  # 7.0 belongs to [0, 10) and [5, 15)
    """

    size: float
    slide: float

    def __post_init__(self) -> None:
        size = check_seconds(
            "size", self.size, allow_zero=False, why="a window needs a positive, finite length"
        )
        slide = check_seconds(
            "slide", self.slide, allow_zero=False, why="windows must start a positive, finite step apart"
        )
        if slide > size:
            raise ValueError(
                f"slide must not exceed size, or items between windows would belong to none "
                f"(got size={size!r}, slide={slide!r})"
            )
        windows = math.ceil(size / slide)  # the most windows any timestamp falls in
        if windows > MAX_WINDOWS_PER_ITEM:
            raise ValueError(
                f"SlidingWindows(size={size!r}, slide={slide!r}) would put every item in {windows:,}"
                f" windows, more than the {MAX_WINDOWS_PER_ITEM:,} allowed (MAX_WINDOWS_PER_ITEM):"
                " each item is stored in, and each window fires for, every one of them; use a larger"
                " slide"
            )
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "slide", slide)

    def _extent(self) -> tuple[float | None, float | None, float | None]:
        return self.size, self.slide, None


@dataclass(frozen=True)
class SessionWindows(_Windows):
    """Per-key bursts of activity, separated by at least ``gap`` seconds without items.

    A session runs from its first item's timestamp to its last item's plus the gap,
    ``[first, last + gap)``. An item at most ``gap`` away from a session joins it (an item exactly
    ``gap`` after the last one joins), and an item that comes within reach of two sessions merges
    them into one.

    Example::

        SessionWindows(30.0)  # items at 0, 30, 70 -> sessions [0, 60) and [70, 100)
    """

    gap: float

    def __post_init__(self) -> None:
        gap = check_seconds(
            "gap", self.gap, allow_zero=False, why="a session needs a positive, finite gap to end"
        )
        object.__setattr__(self, "gap", gap)

    def _extent(self) -> tuple[float | None, float | None, float | None]:
        return None, None, self.gap


WindowConfig: TypeAlias = TumblingWindows | SlidingWindows | SessionWindows
"""Any window config; :class:`WindowState` takes one."""

_PARAMETERS: Final[dict[str, tuple[str, ...]]] = {
    "tumbling": ("size",),
    "sliding": ("size", "slide"),
    "session": ("timeout",),
}

_MISSING: Final[dict[str, str]] = {
    "size": "size, the length of a window in seconds",
    "slide": "slide, the seconds between window starts (for windows that do not overlap, use 'tumbling')",
    "timeout": "timeout, the gap in seconds without items that ends a session",
}


def window_config(
    window_type: str,
    size: float | None = None,
    slide: float | None = None,
    *,
    timeout: float | None = None,
) -> WindowConfig:
    """A window config from the arguments of ``window(window_type, size, slide, timeout=...)``.

    ``"tumbling"`` takes ``size``; ``"sliding"`` takes ``size`` and ``slide``, both required;
    ``"session"`` takes ``timeout``, the gap. A parameter given to a type that does not use it is
    refused rather than ignored: it is almost always a mistake about which windows were meant.

    Raises:
        ValueError: an unknown ``window_type``, a missing or foreign parameter, a bad value.
        TypeError: a parameter that is not a number.

    Example::

        window_config("sliding", 60.0, 10.0)  # SlidingWindows(size=60.0, slide=10.0)
        window_config("session", timeout=300.0)  # SessionWindows(gap=300.0)
    """
    check_choice(window_type, WINDOW_TYPES, "window_type")
    given = {"size": size, "slide": slide, "timeout": timeout}
    wanted = _PARAMETERS[window_type]
    foreign = [name for name, value in given.items() if value is not None and name not in wanted]
    if foreign:
        raise ValueError(
            f"{window_type} windows take no {' or '.join(foreign)}; they use {' and '.join(wanted)}"
        )
    missing = [_MISSING[name] for name in wanted if given[name] is None]
    if missing:
        raise ValueError(f"{window_type} windows need {'; and '.join(missing)}")
    if window_type == "tumbling":
        return TumblingWindows(size)  # type: ignore[arg-type]
    if window_type == "sliding":
        return SlidingWindows(size, slide)  # type: ignore[arg-type]
    return SessionWindows(timeout)  # type: ignore[arg-type]
