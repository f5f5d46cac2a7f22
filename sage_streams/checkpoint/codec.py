"""The codecs that write operator state into a checkpoint, and read it back on restore.

A checkpoint outlives the process that wrote it, and often the code: so state is written with a
declared, versioned codec, whose name and version the store records and checks when it opens.
The default, :data:`SAGE_CODEC` (``"sage"``, version 1), writes JSON: a restore needs no class
of the code that wrote it, and a file can be read by other tools. It round-trips exactly, with
the same types all the way down, ``None``, ``bool``, ``int`` (of any size), ``float`` (``inf``
and ``nan`` too), ``str``, ``list`` and ``dict``, and, tagged, ``tuple``, ``set``,
``frozenset``, ``bytes``, ``dict`` with keys other than strings (in their order),
``datetime`` (naive or with a ``timezone`` or ``ZoneInfo``, its ``fold`` kept), ``date``,
``time``, ``timedelta`` and ``Decimal``. Only those exact types: a subclass (an ``IntEnum``, an
``OrderedDict``) would come back as its base, so it is refused with
:class:`~sage_streams.errors.UnwritableValueError`, as is anything else.

Checkpoints run every second, so the common case is fast: a value made only of JSON values is
written by :mod:`json` as it is (one quick walk checks that it is), and read back with no hook.
Only a value that needs tags is rewritten first. A tag is a dict of one key, the tag's name
(``{"$tuple": [1, 2]}``); a user's dict that looks like one is written as a tagged dict, so it
is never mistaken for one.

``PickleCodec`` (``"pickle"``) writes any picklable object; a user asks for it by name, as it
runs the code of whatever classes the file names when it loads. Any object with ``name``,
``version``, ``dumps`` and ``loads`` is a codec too (:class:`StateCodec`).

Example::

    codec = resolve_state_codec("sage")
    data = codec.dumps({"total": 3, "seen": {(1, 2), (3, 4)}})
    codec.loads(data)  # {'total': 3, 'seen': {(1, 2), (3, 4)}}
"""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Final, Literal, Protocol, TypeAlias, get_args
from zoneinfo import ZoneInfo

from sage_streams._typing import check_choice
from sage_streams.errors import UnwritableValueError, _error_text, _short_repr

__all__ = [
    "PickleCodec",
    "SAGE_CODEC",
    "SageCodec",
    "StateCodec",
    "StateCodecName",
    "codec_label",
    "resolve_state_codec",
]


class StateCodec(Protocol):
    """Turns a state value into bytes and back, for a checkpoint.

    ``loads(dumps(value))`` must give back a value equal to ``value``, of the same type.
    ``name`` and ``version`` are recorded with the checkpoint, and a store refuses to open
    with another codec, so change ``version`` whenever ``dumps`` writes what an older
    ``loads`` cannot read. ``dumps`` raises :class:`~sage_streams.errors.UnwritableValueError`
    for a value it cannot write. A codec may also have ``loads_many(datas) -> list``, giving
    what ``loads`` gives for each, which a restore then uses (the default codec has one).
    """

    name: str
    version: int

    def dumps(self, value: Any) -> bytes:
        """The bytes of ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """The value ``data`` was written from."""
        ...


def codec_label(codec: StateCodec) -> str:
    """The codec's name and version as a store records them: ``"sage/1"``."""
    return f"{codec.name}/{codec.version}"


_BIG: Final = 10**600
"""Ints this large or larger are written in hex: ``json`` writes an int in decimal, which Python
refuses past ``sys.get_int_max_str_digits()`` digits (never fewer than 640)."""

_TAGGED: Final = b"~"
"""The first byte of a value written with tags; JSON text never starts with it."""

_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"))


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is made only of values ``json`` writes and reads back as they are."""
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                return False
        return _all_plain(value.values())
    return _all_plain(value) if type(value) is list else _all_plain((value,))


def _all_plain(items: Iterable[Any]) -> bool:
    """Whether every one of ``items`` is plain (see :func:`_is_plain`).

    Scalars are checked in this loop, not by a call each: this walk is what every
    checkpointed value pays for the fast path.
    """
    for item in items:
        kind = type(item)
        if kind is str or kind is float or kind is bool or item is None:
            continue
        if kind is int:
            if -_BIG < item < _BIG:
                continue
            return False
        if (kind is not dict and kind is not list) or not _is_plain(item):
            return False
    return True


class _Unwritable(Exception):
    """Raised by :func:`_tag` at a part it cannot write; :func:`_locate` then finds where."""


def _tz_of(zone: tzinfo | None) -> Any:
    """A time zone as tagged JSON: ``None``; the key of a ``ZoneInfo``; or a ``timezone``'s
    offset as ``[days, seconds, microseconds]``, with its name when it has one."""
    if zone is None:
        return None
    if type(zone) is ZoneInfo and zone.key is not None:
        return zone.key
    if type(zone) is not timezone:
        raise _Unwritable
    offset, *name = zone.__getinitargs__()  # type: ignore[attr-defined]  # (offset,) or (offset, name)
    return [offset.days, offset.seconds, offset.microseconds, *name]


def _zone(spec: Any) -> tzinfo | None:
    """The time zone :func:`_tz_of` wrote as ``spec``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return ZoneInfo(spec)
    return timezone(timedelta(*spec[:3]), *spec[3:])


def _tag_datetime(value: datetime) -> Any:
    return {"$datetime": [value.replace(tzinfo=None).isoformat(), _tz_of(value.tzinfo), value.fold]}


def _tag_time(value: time) -> Any:
    return {"$time": [value.replace(tzinfo=None).isoformat(), _tz_of(value.tzinfo), value.fold]}


def _untag_datetime(payload: list[Any]) -> datetime:
    text, zone, fold = payload
    return datetime.fromisoformat(text).replace(tzinfo=_zone(zone), fold=fold)


def _untag_time(payload: list[Any]) -> time:
    text, zone, fold = payload
    return time.fromisoformat(text).replace(tzinfo=_zone(zone), fold=fold)


_LEAVES: Final[dict[type, Callable[[Any], Any]]] = {
    bytes: lambda value: {"$bytes": base64.b64encode(value).decode("ascii")},
    datetime: _tag_datetime,
    date: lambda value: {"$date": value.isoformat()},
    time: _tag_time,
    timedelta: lambda value: {"$timedelta": [value.days, value.seconds, value.microseconds]},
    Decimal: lambda value: {"$decimal": str(value)},
}
"""How each type without parts inside is tagged (``int`` and ``float`` need no table)."""

_UNTAG: Final[dict[str, Callable[[Any], Any]]] = {
    "$int": lambda payload: int(payload, 16),
    "$tuple": tuple,
    "$set": set,
    "$frozenset": frozenset,
    "$dict": dict,
    "$bytes": lambda payload: base64.b64decode(payload),
    "$datetime": _untag_datetime,
    "$date": date.fromisoformat,
    "$time": _untag_time,
    "$timedelta": lambda payload: timedelta(*payload),
    "$decimal": Decimal,
}
"""Each tag and how its payload, already read, becomes the value again."""

_CONTAINERS: Final[dict[type, str]] = {tuple: "$tuple", set: "$set", frozenset: "$frozenset"}
"""The containers other than ``list`` and ``dict``, each tagged with its items as a list."""


def _tag(value: Any) -> Any:
    """``value`` as JSON values, with a tag for each part JSON would not give back as it is."""
    kind = type(value)
    if kind is str or kind is float or kind is bool or value is None:
        return value
    if kind is int:
        return value if -_BIG < value < _BIG else {"$int": hex(value)}
    if kind is dict:
        if all(type(key) is str for key in value) and not (len(value) == 1 and next(iter(value)) in _UNTAG):
            return {key: _tag(item) for key, item in value.items()}
        return {"$dict": [[_tag(key), _tag(item)] for key, item in value.items()]}
    if kind is list:
        return [_tag(item) for item in value]
    tag = _CONTAINERS.get(kind)
    if tag is not None:
        return {tag: [_tag(item) for item in value]}
    leaf = _LEAVES.get(kind)
    if leaf is None:
        raise _Unwritable
    return leaf(value)


def _untag(obj: dict[str, Any]) -> Any:
    """A dict read from tagged JSON, or the value it is the tag of (``json`` calls this for
    every dict, innermost first, so a tag's payload is already read)."""
    if len(obj) == 1:
        for key, payload in obj.items():
            untag = _UNTAG.get(key)
            if untag is not None:
                return untag(payload)
    return obj


def _parts(value: Any) -> Iterator[tuple[str, str, Any]]:
    """The parts inside ``value``, each with what to write before and after the path of
    ``value`` to reach it, as Python would: ``list(``, ``)[0]`` for a set's first item."""
    if type(value) is dict:
        for index, (key, item) in enumerate(value.items()):
            yield "list(", f")[{index}]", key
            yield "", f"[{_short_repr(key, 60)}]", item
    elif type(value) is list or type(value) is tuple:
        for index, item in enumerate(value):
            yield "", f"[{index}]", item
    elif type(value) is set or type(value) is frozenset:
        for index, item in enumerate(value):
            yield "list(", f")[{index}]", item


def _locate(value: Any, path: str = "value") -> tuple[str, Any]:
    """Where the part of ``value`` that :func:`_tag` cannot write is, and that part: the first
    and innermost one, so that the path ends at what to change."""
    for before, after, part in _parts(value):
        try:
            _tag(part)
        except _Unwritable:
            return _locate(part, before + path + after)
    return path, value


def _unwritable(value: Any) -> UnwritableValueError:
    """The error for ``value``, which :func:`_tag` could not write, naming where and why."""
    path, part = _locate(value)
    kind = type(part)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    bases = [base.__name__ for base in kind.__mro__[1:] if base in _WRITTEN]
    if kind is datetime or kind is time:
        zone = type(part.tzinfo).__qualname__
        why = f"its tzinfo is of type {zone}, neither a timezone nor a ZoneInfo with a key"
    elif bases:
        why = f"a subclass of {bases[0]}, which would come back as a plain {bases[0]}"
    else:
        why = "not a type the codec writes"
    return UnwritableValueError(
        f"the 'sage' codec cannot write {path}: {name} ({why}); it writes None, bool, int, float, "
        "str, bytes, list, tuple, dict, set, frozenset, datetime, date, time, timedelta and Decimal: "
        "make the state of those, or use codec='pickle' or a codec of your own",
        path,
        name,
    )


_WRITTEN: Final = frozenset({int, float, str, dict, *_CONTAINERS, *_LEAVES})


class SageCodec:
    """The default codec: JSON values, plus tags for the other types it writes exactly.

    ``dumps`` refuses a value nested deeper than Python's recursion limit, or one that holds
    itself, with :class:`~sage_streams.errors.UnwritableValueError` too.
    """

    name = "sage"
    version = 1

    def dumps(self, value: Any) -> bytes:
        try:
            if _is_plain(value):
                return _ENCODER.encode(value).encode("utf-8", "surrogatepass")
            if type(value) is tuple and _all_plain(value):
                # What _tag makes of it, without its walk: entry keys such as ("key", 7).
                text = '{"$tuple":' + _ENCODER.encode(list(value)) + "}"
                return _TAGGED + text.encode("utf-8", "surrogatepass")
            text = _ENCODER.encode(_tag(value))
        except _Unwritable:
            raise _unwritable(value) from None
        except RecursionError:
            raise UnwritableValueError(
                "the 'sage' codec cannot write value: it nests deeper than Python's recursion "
                "limit, or holds itself",
                "value",
                type(value).__qualname__,
            ) from None
        return _TAGGED + text.encode("utf-8", "surrogatepass")

    def loads(self, data: bytes) -> Any:
        if data[:1] == _TAGGED:
            return json.loads(data[1:].decode("utf-8", "surrogatepass"), object_hook=_untag)
        return json.loads(data.decode("utf-8", "surrogatepass"))

    def loads_many(self, many: Sequence[bytes]) -> list[Any]:
        """``[self.loads(data) for data in many]``, read as two JSON arrays, the plain values'
        and the tagged ones': a restore of a million entries then parses in C, not one call each
        (measured: 4x faster on window state)."""
        plain = [index for index, data in enumerate(many) if data[:1] != _TAGGED]
        if len(plain) == len(many):
            return self._array([*many], None)
        values: list[Any] = [None] * len(many)
        tagged = [index for index, data in enumerate(many) if data[:1] == _TAGGED]
        for index, value in zip(plain, self._array([many[i] for i in plain], None), strict=True):
            values[index] = value
        for index, value in zip(tagged, self._array([many[i][1:] for i in tagged], _untag), strict=True):
            values[index] = value
        return values

    @staticmethod
    def _array(texts: list[bytes], hook: Callable[[dict[str, Any]], Any] | None) -> list[Any]:
        """The JSON texts ``texts`` read as one array."""
        joined = b"[" + b",".join(texts) + b"]"
        values: list[Any] = json.loads(joined.decode("utf-8", "surrogatepass"), object_hook=hook)
        return values


SAGE_CODEC: Final = SageCodec()


class PickleCodec:
    """Any picklable object, with pickle's protocol 5 (an explicit opt-in: ``codec="pickle"``).

    It writes objects of the user's own classes, but a restore then needs those classes,
    importable under the same names, and loading runs whatever code the file names: use it
    only for checkpoints you wrote. An object pickle refuses is an
    :class:`~sage_streams.errors.UnwritableValueError` naming the top value's type, with
    pickle's error chained.
    """

    name = "pickle"
    version = 1

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=5)
        except Exception as exc:
            kind = type(value).__qualname__
            raise UnwritableValueError(
                f"the 'pickle' codec cannot write value: {kind} ({_error_text(exc, 300)})", "value", kind
            ) from exc

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


StateCodecName: TypeAlias = Literal["sage", "pickle"]
"""The built-in state codecs."""

_BUILT_IN: Final[dict[str, StateCodec]] = {"sage": SAGE_CODEC, "pickle": PickleCodec()}


def resolve_state_codec(spec: str | StateCodec) -> StateCodec:
    """The codec named ``spec``, or ``spec`` itself when it has what a :class:`StateCodec` has.

    An unknown name is an :class:`~sage_streams.errors.UnknownNameError` (a ``ValueError``)
    listing the built-in ones; an object without a string ``name``, an int ``version`` and
    callable ``dumps`` and ``loads`` is a ``TypeError`` saying what it lacks.
    """
    if isinstance(spec, str):
        check_choice(spec, get_args(StateCodecName), "state codec")
        return _BUILT_IN[spec]
    lacks = [
        what
        for what, ok in (
            ("a str name", isinstance(getattr(spec, "name", None), str)),
            ("an int version", type(getattr(spec, "version", None)) is int),
            ("a dumps() method", callable(getattr(spec, "dumps", None))),
            ("a loads() method", callable(getattr(spec, "loads", None))),
        )
        if not ok
    ]
    if lacks:
        raise TypeError(
            f"a state codec is 'sage', 'pickle' or an object with a str name, an int version, "
            f"dumps() and loads(); {_short_repr(spec)} lacks {', '.join(lacks)}"
        )
    return spec
