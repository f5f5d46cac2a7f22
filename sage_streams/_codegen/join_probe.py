"""The hot loop of a keyed inner join: one generated function per side and buffering mode.

A keyed inner join without condition or ``within`` does, per arriving item, what a dict
lookup in a plain loop does: compute the key, find the partners, emit the pairs, and buffer the
item unless the other input has ended. As with fused chains (:mod:`sage_streams._codegen.chain`), the
loop is generated so that it holds nothing but that: the key function is inlined when it is one
expression (:mod:`sage_streams._codegen.inline`), the side decides the order of each pair at compile
time, and the buffering code is left out once it is no longer needed.

A key mostly has one partner (a profile per user), so a bucket holds the item itself until a
second one comes; then it becomes a :class:`Bucket`, a list type no user item can be. The probe
tells them apart with one type test instead of iterating a one-element list. Once the other
input has ended its buckets no longer change, and when every one of them holds one item (a
dimension table: one profile per user) the probe leaves out that test and its count of hits,
which is then the number of pairs.

The loop stops at the first item that fails (its key function raises, returns ``None``, or
returns an unhashable key) and reports it. That item left no trace: pairs are emitted and the
item buffered only after every step that can fail.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from sage_streams._codegen.inline import Inlinable, define, inlinable
from sage_streams._codegen.lookups import MISSING, Bucket, Probe, lookup_error, none_key
from sage_streams._codegen.plain import plain_probe

__all__ = ["compile_probe", "generate_probe"]


def compile_probe(
    side: int,
    key_func: Callable[[Any], Any],
    theirs: dict[Hashable, Any],
    *,
    buffering: bool,
    unique: bool = False,
    inline: bool,
    codegen: bool = True,
) -> Probe:
    """The loop joining items of ``side`` against ``theirs``, the other side's buckets.

    The returned function takes an iterator of items, an empty list for the pairs, and this
    side's buckets (``None`` when not ``buffering``). It returns how many items found partners;
    and, when an item failed, the item, the error to report (what the key function raised, or
    the error of a ``None`` or unhashable key) and the exception that caused it (``None`` for a
    ``None`` key); else ``None, None, None``. The iterator then stands just past the failed
    item. ``unique`` promises that every bucket of ``theirs`` holds one item and keeps doing so
    (the other side has ended): only possible when not ``buffering``. Without ``codegen``, the
    plain twin (:func:`~sage_streams._codegen.plain.plain_probe`).
    """
    if unique and buffering:
        raise ValueError("a buffering probe's buckets change: they cannot be promised unique")
    if not codegen:
        return plain_probe(side, key_func, theirs, buffering=buffering)
    return generate_probe(side, key_func, theirs, buffering=buffering, unique=unique, inline=inline)[0]


def generate_probe(
    side: int,
    key_func: Callable[[Any], Any],
    theirs: dict[Hashable, Any],
    *,
    buffering: bool,
    unique: bool,
    inline: bool,
) -> tuple[Probe, str]:
    """:func:`compile_probe`'s generated loop, and its source: the code it runs, so that it can
    be read and reviewed (the tests diff it against committed renderings)."""
    found = inlinable(key_func) if inline else None
    namespace: dict[str, Any] = {
        "key": key_func,
        "theirs": theirs,
        "Bucket": Bucket,
        "MISSING": MISSING,
        "none_key": none_key,
        "lookup_error": lookup_error,
    }

    def source(inlined: Mapping[int, Inlinable]) -> list[str]:
        return _lines(side, buffering, unique, inlined.get(0))

    probe, kept = define(source, "probe", "join probe", namespace, {} if found is None else {0: found})
    return probe, "\n".join(source(kept)) + "\n"  # what it compiled


_PLACE = "a join's probe loop"


def _lines(side: int, buffering: bool, unique: bool, found: Inlinable | None) -> list[str]:
    """The probe's source, with the key's expression pasted in when ``found``."""
    key = found.text("v") if found is not None else "key(v)"
    # An inlined key has no frame of its own: its errors say where it came from.
    note = "pass" if found is None else f"exc.add_note({found.note(_PLACE)!r})"
    pair = "(v, {})" if side == 0 else "({}, v)"
    hits = "_len(out)" if unique else "hits"
    lines = [
        # Every name it uses is a default: it may run with a user module's globals and cells.
        "def probe(it, out, mine, *, key=key, get=theirs.get, Bucket=Bucket, MISSING=MISSING,",
        "          none_key=none_key, lookup_error=lookup_error, _len=len, _type=type,",
        "          _Exception=Exception):",
        "    emit = out.append",
        *([] if unique else ["    hits = 0"]),  # unique: the hits are the pairs
        "    for v in it:",
        "        try:",
        f"            k = {key}",
        "        except _Exception as exc:",
        f"            {note}",
        f"            return {hits}, v, exc, exc",
        "        if k is None:",
        f"            return {hits}, v, none_key(v), None",
        "        try:",
        "            p = get(k, MISSING)",
        "        except _Exception as exc:",
        f"            return {hits}, v, lookup_error(k, exc), exc",
        "        if p is not MISSING:",
    ]
    if unique:
        lines.append(f"            emit({pair.format('p')})")
    else:
        lines += [
            "            hits += 1",
            "            if _type(p) is Bucket:",
            "                for q in p:",
            f"                    emit({pair.format('q')})",
            "            else:",
            f"                emit({pair.format('p')})",
        ]
    if buffering:
        lines += [
            "        b = mine.get(k, MISSING)",
            "        if b is MISSING:",
            "            mine[k] = v",
            "        elif _type(b) is Bucket:",
            "            b.append(v)",
            "        else:",
            "            mine[k] = Bucket((b, v))",
        ]
    lines.append(f"    return {hits}, None, None, None")
    return lines
