"""The window operator's per-item loops, generated so that small user functions are pasted in.

Two loops run once per item in a window operator: reading each item's key, and, for tumbling
windows, putting each item of a run in its window (``WindowState.add_run``):
appending it to the window's items, or folding it into the window's accumulator with the
``add`` of ``aggregate``. As the fused chains of :mod:`sage_streams._codegen.chain` do, we generate
their source, so that a user function whose body is one expression (``lambda e: e["key"]``,
``lambda total, e: total + e["value"]``) is pasted in rather than called
(:mod:`sage_streams._codegen.inline`): on CPython 3.11 the call costs more than such a function's work.

A loop that pastes a function in runs with that function's module globals, so that the
expression's global names mean what they meant; the built-ins the loop needs itself come in as
defaults. A function whose expression reads a global named like one of the loop's locals is
called instead. An error raised by a pasted expression has no frame of the function's own, so
it gets a note naming the function and its file.

Example::

    read = key_reader(lambda event: event["key"], inline=True)
    read([{"key": 1}, {}, {"key": 2}])  # ([1], KeyError('key')): the keys up to the failure
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import CodeType
from typing import Any, Generic, NamedTuple, TypeAlias, TypeVar

from sage_streams._codegen.inline import Inlinable, define, inlinable
from sage_streams._codegen.plain import plain_run_loop

__all__ = ["KeyReader", "RunLoop", "each", "key_reader", "key_reader_source", "run_loop"]

KeyReader: TypeAlias = Callable[[Sequence[Any]], tuple[list[Any], Exception | None]]
"""Items -> their keys up to the first the key function fails for, and what it raised."""


def each(function: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], Exception | None]:
    """``function`` of each item, up to the first it raises for; and what it raised."""
    results: list[Any] = []
    try:
        results.extend(map(function, items))  # keeps what it appended before an exception
    except Exception as exc:
        return results, exc
    return results, None


# -- key reading -----------------------------------------------------------------------------------

_KEYS = """\
def keys(items, *, _Exception=Exception):
    out = []
    append = out.append
    try:
        for item in items:
            append({key})
    except _Exception as exc:
        return out, exc
    return out, None
"""
# An append loop keeps the keys read before a failure, so that no key function is called twice
# on an item; a comprehension would be ~7 ns an item faster, but loses them when one fails.


def _key_code(pasted: Inlinable | None) -> str:
    return pasted.text("item") if pasted is not None else "_key(item)"


def key_reader(function: Callable[[Any], Any], *, inline: bool) -> KeyReader:
    """The keys of a batch's items by ``function``, with the contract of :func:`each`.

    When ``inline`` and ``function`` is one expression, the expression runs in a generated loop
    (~25 ns an item instead of ~40 ns for a call through ``map``); otherwise ``map`` calls it.
    """
    generated = _key_loop(function) if inline else None
    if generated is None:
        return lambda items: each(function, items)
    keys, line = generated.function, generated.line
    pasted: Inlinable = generated.inlined

    def read(items: Sequence[Any]) -> tuple[list[Any], Exception | None]:
        result: tuple[list[Any], Exception | None] = keys(items)
        if result[1] is not None:
            _annotate(result[1], keys.__code__, line, pasted)
        return result

    return read


def key_reader_source(function: Callable[[Any], Any]) -> str | None:
    """The source of the loop ``key_reader(function, inline=True)`` runs, so that it can be read
    and reviewed (the tests diff it against committed renderings); ``None`` when that reader
    calls ``function`` through ``map`` instead."""
    generated = _key_loop(function)
    return None if generated is None else generated.source


def _key_loop(function: Callable[[Any], Any]) -> _Generated[Inlinable] | None:
    """The key loop with ``function``'s expression pasted in; ``None`` when it cannot be."""
    found = inlinable(function, 1)
    if found is None:
        return None
    generated = _generate("keys", _KEYS, "key", _key_code, {"_key": function}, found)
    if generated.inlined is None:  # its expression reads a global named like a local of the loop
        return None
    return _Generated(generated.function, generated.inlined, generated.line, generated.source)


# -- runs of items into tumbling windows ---------------------------------------------------------

_RUN = """\
def run(triples, index, size, number_of, due, number, start, end, cells, *, _KeyError=KeyError, _add=_add):
    for item, stamp, key in triples:
        if not start <= stamp < end:  # consecutive items mostly share a window: skip the division
            number = number_of(stamp, size)
            start = number * size
            end = (number + 1) * size
            cells = due.get(number)
            if cells is None:
                cells = due[number] = {{}}
        try:
            cell = cells[key]
        except _KeyError:
            return item, key, number, start, end, cells
        {body}
    return None
"""

_APPEND = "cell.append(item)"
_FOLD = "acc = cell[index]; cell[index] = {add}"


@dataclass(frozen=True, slots=True)
class RunLoop:
    """A generated loop putting a run of items in their tumbling windows, up to the first miss.

    ``function(triples, index, size, number_of, due, number, start, end, cells)`` takes
    ``(item, timestamp, key)`` triples from the iterator ``triples``; ``number_of(t, size)`` is
    the number ``k`` of the window ``[k * size, (k + 1) * size)`` holding ``t``. ``due`` maps a
    window number to the *cells* of that window by key: the list of the items of input
    ``index`` (to append to), or the window's list of accumulators, one per input (to fold input
    ``index``'s into). ``number``, ``start``, ``end`` and ``cells`` are those of the window of
    the previous item (any window whose range holds no timestamp, at first).

    It returns ``None`` when ``triples`` is exhausted, or, at the first item whose key has no
    cell in its window, ``(item, key, number, start, end, cells)``, for the caller to
    make the cell and call it again with the same iterator. An exception (an unhashable key, a
    timestamp out of range, an ``add`` that raises) is that of the item last taken; nothing of
    it was stored.
    """

    function: Callable[..., tuple[Any, ...] | None]
    inlined: Inlinable | None = None
    line: int = 0
    source: str = ""
    """The generated code, to be read and reviewed (empty for the plain twin)."""

    def annotate(self, error: BaseException) -> None:
        """Name the pasted function on an error raised by its expression."""
        if self.inlined is not None:
            _annotate(error, self.function.__code__, self.line, self.inlined)


def run_loop(
    add: Callable[[Any, Any], Any] | None = None, *, inline: bool = False, codegen: bool = True
) -> RunLoop:
    """The loop appending items to their windows' lists, or, given ``add``, folding them in.

    The fold computes ``cell[index] = add(cell[index], item)``, with ``add``'s expression pasted
    in when ``inline`` and it is one expression. Without ``codegen``, the plain twin
    (:func:`~sage_streams._codegen.plain.plain_run_loop`).
    """
    if not codegen:
        return RunLoop(plain_run_loop(add))
    if add is None:
        return _appending()
    found = inlinable(add, 2) if inline else None

    def fold(pasted: Inlinable | None) -> str:
        return _FOLD.format(add=pasted.text("acc", "item") if pasted is not None else "_add(acc, item)")

    return RunLoop(*_generate("run", _RUN, "body", fold, {"_add": add}, found))


@cache
def _appending() -> RunLoop:
    """The appending loop: one for the process, made when a window first needs it, so that
    nothing is compiled when the package is imported."""
    return RunLoop(*_generate("run", _RUN, "body", lambda _: _APPEND, {"_add": None}, None))


# -- generating -------------------------------------------------------------------------------------

P = TypeVar("P", bound=Inlinable | None)


class _Generated(NamedTuple, Generic[P]):
    """A generated loop: the function, what it pasted in, the number of the line of the pasted
    expression (errors there are the pasted function's), and its source."""

    function: Callable[..., Any]
    inlined: P
    line: int
    source: str


def _generate(
    name: str,
    template: str,
    slot: str,
    code: Callable[[Inlinable | None], str],
    defaults: dict[str, Any],
    found: Inlinable | None,
) -> _Generated[Inlinable | None]:
    """Define the function ``name`` of ``template`` with its ``slot`` filled with one line,
    ``code(found)``, or ``code(None)`` when ``found``'s expression cannot be pasted in (see
    :func:`~sage_streams._codegen.inline.define`).

    Returns:
        The loop; its ``line`` is that of the slot.
    """
    line = 1 + next(i for i, text in enumerate(template.splitlines()) if f"{{{slot}}}" in text)

    def source(inlined: Mapping[int, Inlinable]) -> list[str]:
        return template.format(**{slot: code(inlined.get(0))}).splitlines()

    function, kept = define(source, name, f"window {name}", defaults, {} if found is None else {0: found})
    return _Generated(function, kept.get(0), line, "\n".join(source(kept)) + "\n")  # what it compiled


def _annotate(error: BaseException, code: CodeType, line: int, found: Inlinable) -> None:
    """Add a note to ``error`` if it was raised on ``line`` of ``code``, by the pasted expression."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code and tb.tb_lineno == line:
            error.add_note(found.note("the window operator's loop"))
            return
        tb = tb.tb_next
