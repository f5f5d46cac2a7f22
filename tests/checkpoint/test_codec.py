"""The state codecs: the ``"sage"`` codec gives back every value it writes exactly, with the same
types all the way down, and names the place and the type of what it cannot write."""

from __future__ import annotations

import enum
import json
import math
import pickle
from collections import OrderedDict
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sage_streams.checkpoint import SAGE_CODEC, PickleCodec, codec_label, resolve_state_codec
from sage_streams.errors import UnknownNameError, UnwritableValueError


def same(a: Any, b: Any) -> bool:
    """Whether ``b`` is ``a`` again: the same type at every level, ``nan`` as ``nan``, dict
    keys in the same order, and a datetime's zone and fold kept."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float | Decimal):
        return repr(a) == repr(b)  # nan is nan, -0.0 is not 0.0, Decimal keeps its exponent
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if isinstance(a, datetime | time):
        return a == b and a.fold == b.fold and type(a.tzinfo) is type(b.tzinfo) and str(a) == str(b)
    return bool(a == b)


def round_trip(value: Any) -> Any:
    return SAGE_CODEC.loads(SAGE_CODEC.dumps(value))


ZONES = (
    st.none() | st.timezones() | st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23)))
)
HASHABLE_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**600, max_value=10**700)
    | st.floats()
    | st.text(st.characters(codec=None))
    | st.binary(max_size=8)
    | st.datetimes(timezones=ZONES)
    | st.dates()
    | st.times(timezones=ZONES)
    | st.timedeltas()
    | st.decimals(allow_nan=False)
)
HASHABLE = st.recursive(
    HASHABLE_LEAVES,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
TAG_LIKE_KEYS = st.sampled_from(["$tuple", "$set", "$frozenset", "$dict", "$int", "$bytes", "$other"])
VALUES = st.recursive(
    HASHABLE | st.decimals(),  # a signalling NaN cannot be hashed
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4) | TAG_LIKE_KEYS, inner, max_size=4)
        | st.dictionaries(TAG_LIKE_KEYS, inner, min_size=1, max_size=1)
        | st.dictionaries(HASHABLE, inner, max_size=4)
        | st.sets(HASHABLE, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.slow
@given(VALUES)
def test_every_value_it_writes_comes_back_exactly(value: Any) -> None:
    assert same(value, round_trip(value))


@pytest.mark.slow
@given(st.lists(VALUES, max_size=8))
def test_many_values_read_at_once_come_back_as_each_read_alone(values: list[Any]) -> None:
    written = [SAGE_CODEC.dumps(value) for value in values]
    many = SAGE_CODEC.loads_many(written)
    assert len(many) == len(values)
    assert all(same(value, read) for value, read in zip(values, many, strict=True))


JSON_LEAVES = st.none() | st.booleans() | st.integers(-(2**100), 2**100) | st.floats() | st.text()


@pytest.mark.slow
@given(st.lists(JSON_LEAVES, max_size=4).map(tuple))
def test_a_tuple_of_json_values_is_written_as_its_tag(value: tuple[Any, ...]) -> None:
    tagged = json.dumps({"$tuple": list(value)}, ensure_ascii=False, separators=(",", ":"))
    assert SAGE_CODEC.dumps(value) == b"~" + tagged.encode("utf-8", "surrogatepass")
    assert same(value, round_trip(value))


def test_many_values_of_both_kinds_keep_their_places() -> None:
    written = [SAGE_CODEC.dumps(value) for value in ([1, "a"], ("key", 2), None, {3: 4}, "\ud800")]
    assert SAGE_CODEC.loads_many(written) == [[1, "a"], ("key", 2), None, {3: 4}, "\ud800"]
    assert SAGE_CODEC.loads_many([]) == []


@pytest.mark.slow
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(), st.lists))
def test_a_value_of_json_values_is_written_as_json_writes_it(value: Any) -> None:
    assert SAGE_CODEC.dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "value",
    [
        {True: "b", 2: 2},
        {1: "a", False: 0},
        {frozenset({True, 2}), (1, True), 1.0},
        [True, 1, 1.0],
        {(True,): {False}},
    ],
    ids=repr,
)
def test_bool_stays_bool_inside_sets_tuples_and_keys(value: Any) -> None:
    assert same(value, round_trip(value))


def test_nan_and_infinities_come_back() -> None:
    back = round_trip([math.nan, math.inf, -math.inf, -0.0])
    assert math.isnan(back[0])
    assert back[1:] == [math.inf, -math.inf, -0.0]
    assert math.copysign(1.0, back[3]) == -1.0


def test_strings_keep_lone_surrogates() -> None:
    assert round_trip({"\ud800": ["\udfff", ("\ud83d",)]}) == {"\ud800": ["\udfff", ("\ud83d",)]}


def test_ints_past_the_decimal_digit_limit_are_written_in_hex() -> None:
    huge = 7**10_000
    assert SAGE_CODEC.dumps(huge).startswith(b'~{"$int":"0x')
    assert round_trip(-huge) == -huge


def test_datetimes_keep_their_zone_fold_and_microseconds() -> None:
    paris = datetime(2021, 10, 31, 2, 30, 0, 7, tzinfo=ZoneInfo("Europe/Paris"), fold=1)
    named = datetime(2020, 1, 1, tzinfo=timezone(-timedelta(hours=5, microseconds=3), "EST-ish"))
    back = round_trip([paris, named, time(23, 59, 59, 999999, tzinfo=UTC)])
    assert back[0].tzinfo is ZoneInfo("Europe/Paris")
    assert (back[0].fold, back[0].microsecond) == (1, 7)
    assert back[1].tzname() == "EST-ish"
    assert back[1].utcoffset() == -timedelta(hours=5, microseconds=3)
    assert back[2].tzinfo is UTC
    assert same([paris, named], back[:2])


def test_plain_json_values_are_written_untagged_and_tags_are_dicts_of_one_key() -> None:
    assert SAGE_CODEC.dumps({"a": [1, 2.5, None, "é"]}) == '{"a":[1,2.5,null,"é"]}'.encode()
    assert SAGE_CODEC.dumps({"a": (1, b"\x00")}) == b'~{"a":{"$tuple":[1,{"$bytes":"AA=="}]}}'
    assert SAGE_CODEC.dumps({2: Decimal("1.50")}) == b'~{"$dict":[[2,{"$decimal":"1.50"}]]}'


def test_a_dict_that_looks_like_a_tag_is_not_taken_for_one() -> None:
    # Alone, it is written as plain JSON, which is read back with no tags at all ...
    assert SAGE_CODEC.dumps({"$tuple": [1]}) == b'{"$tuple":[1]}'
    # ... beside a tag, it is written as a tagged dict of its items.
    mixed = [{"$tuple": [1]}, (1,), {"$set": {"$bytes": "AA=="}}]
    assert SAGE_CODEC.dumps(mixed) == (
        b'~[{"$dict":[["$tuple",[1]]]},{"$tuple":[1]},{"$dict":[["$set",{"$dict":[["$bytes","AA=="]]}]]}]'
    )
    assert same(mixed, round_trip(mixed))
    two_keys = {"$tuple": [1], "c": {3}}
    assert same(two_keys, round_trip(two_keys))


class Foo:
    """Not a type the codec writes."""


class Color(enum.IntEnum):
    RED = 1


class Offset(tzinfo):
    """A tzinfo that is neither a ``timezone`` nor a ``ZoneInfo``."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)


WRITES = (
    "it writes None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, datetime, date, "
    "time, timedelta and Decimal: make the state of those, or use codec='pickle' or a codec of your own"
)


@pytest.mark.parametrize(
    ("value", "path", "kind", "why"),
    [
        ({"a": [1, 2, Foo()]}, "value['a'][2]", f"{__name__}.Foo", "not a type the codec writes"),
        ((1, {Foo(): 2}), "list(value[1])[0]", f"{__name__}.Foo", "not a type the codec writes"),
        (
            [{frozenset({Foo()})}],
            "list(list(value[0])[0])[0]",
            f"{__name__}.Foo",
            "not a type the codec writes",
        ),
        (
            {"x": [Color.RED]},
            "value['x'][0]",
            f"{__name__}.Color",
            "a subclass of int, which would come back as a plain int",
        ),
        (
            OrderedDict(a=1),
            "value",
            "collections.OrderedDict",
            "a subclass of dict, which would come back as a plain dict",
        ),
        (
            [datetime(2020, 1, 1, tzinfo=Offset())],
            "value[0]",
            "datetime.datetime",
            "its tzinfo is of type Offset, neither a timezone nor a ZoneInfo with a key",
        ),
    ],
)
def test_an_unwritable_value_is_refused_naming_where_and_what(
    value: Any, path: str, kind: str, why: str
) -> None:
    with pytest.raises(UnwritableValueError) as caught:
        SAGE_CODEC.dumps(value)
    assert str(caught.value) == f"the 'sage' codec cannot write {path}: {kind} ({why}); {WRITES}"
    assert (caught.value.path, caught.value.type) == (path, kind)


def test_a_value_that_holds_itself_is_refused() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(
        UnwritableValueError, match="nests deeper than Python's recursion limit, or holds itself"
    ):
        SAGE_CODEC.dumps(looped)


def test_the_unwritable_value_error_survives_pickle() -> None:
    error = UnwritableValueError("cannot write value[0]: Foo", "value[0]", "Foo")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.path, copy.type) == (
        UnwritableValueError,
        str(error),
        "value[0]",
        "Foo",
    )


def test_the_pickle_codec_writes_objects_and_names_what_pickle_refuses() -> None:
    codec = PickleCodec()
    assert (codec.name, codec.version, codec_label(codec)) == ("pickle", 1, "pickle/1")
    assert codec.loads(codec.dumps(Color.RED)) is Color.RED
    with pytest.raises(UnwritableValueError) as caught:
        codec.dumps({"f": lambda: 1})
    assert str(caught.value).startswith("the 'pickle' codec cannot write value: dict (")
    assert isinstance(caught.value.__cause__, pickle.PicklingError | AttributeError)


class Custom:
    name = "mine"
    version = 3

    def dumps(self, value: Any) -> bytes:
        return repr(value).encode()

    def loads(self, data: bytes) -> Any:
        return data.decode()


def test_resolving_a_codec_by_name_or_object() -> None:
    assert resolve_state_codec("sage") is SAGE_CODEC
    assert codec_label(resolve_state_codec("sage")) == "sage/1"
    assert isinstance(resolve_state_codec("pickle"), PickleCodec)
    custom = Custom()
    assert resolve_state_codec(custom) is custom
    with pytest.raises(UnknownNameError) as unknown:
        resolve_state_codec("json")
    assert str(unknown.value) == "unknown state codec 'json'; expected one of 'sage', 'pickle'"


def test_an_object_that_is_no_codec_is_refused_saying_what_it_lacks() -> None:
    class Half:
        name = "half"
        version = True

        def dumps(self, value: Any) -> bytes:
            return b""

    with pytest.raises(TypeError) as caught:
        resolve_state_codec(Half())  # type: ignore[arg-type]
    assert str(caught.value).endswith("lacks an int version, a loads() method")
    assert str(caught.value).startswith(
        "a state codec is 'sage', 'pickle' or an object with a str name, an int version, "
        "dumps() and loads(); "
    )
