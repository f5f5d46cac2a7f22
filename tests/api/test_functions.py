"""register_function / get_function, and registered names wherever a function is taken."""

from __future__ import annotations

import pytest

from sage_streams import LocalEnvironment, StreamError, get_function, register_function


@register_function
def triple(x: int) -> int:
    return 3 * x


@register_function("is_odd")
def odd(x: int) -> bool:
    return x % 2 == 1


def test_registered_under_its_name_or_the_given_one() -> None:
    assert get_function("triple") is triple
    assert get_function("is_odd") is odd


def test_registering_the_same_function_again_is_allowed_another_is_not() -> None:
    assert register_function(triple) is triple
    with pytest.raises(StreamError, match="a different function is already registered as 'triple'"):
        register_function("triple")(lambda x: x)


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(StreamError, match=r"no function registered as 'nope' \(registered: .*triple"):
        get_function("nope")


def test_registering_something_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="takes a function or a name"):
        register_function(42)  # type: ignore[call-overload]


async def test_names_work_wherever_a_function_is_taken() -> None:
    env = LocalEnvironment()
    assert await env.from_collection(range(5)).filter("is_odd").map("triple").collect() == [3, 9]


def test_unknown_name_fails_when_the_graph_is_built_not_when_it_runs() -> None:
    env = LocalEnvironment()
    with pytest.raises(StreamError, match="no function registered as 'tripel'"):
        env.from_collection([1]).map("tripel")


def test_a_non_callable_function_is_refused_when_built() -> None:
    env = LocalEnvironment()
    with pytest.raises(TypeError, match="map function must be callable or a registered name, got 3"):
        env.from_collection([1]).map(3)  # type: ignore[arg-type]
