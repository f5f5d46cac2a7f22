"""Inlining user functions into fused loops: which functions qualify, and that an inlined chain
gives exactly what calling the functions gives (results, globals, closures, errors)."""

from __future__ import annotations

import asyncio
import functools
import linecache
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sage_streams import LocalEnvironment, PipelineError
from sage_streams._codegen.chain import FusedChain
from sage_streams._codegen.inline import inlinable, tracing
from sage_streams._codegen.steps import Lookup, Step
from sage_streams._codegen.window_loops import key_reader
from sage_streams.operators.joins.config import join_config
from tests.support import load_module

not_traced = pytest.mark.skipif(tracing(), reason="nothing is inlined under a tracer (coverage, pdb)")

OFFSET = 10


def double(x: int) -> int:
    """A docstring is allowed."""
    return x * 2


def shifted(x: int) -> int:
    return x + OFFSET  # a global, read when the item passes (late binding)


def two_statements(x: int) -> int:
    y = x + 1
    return y


def with_default(x: int, k: int = 2) -> int:
    return x * k


def with_comprehension(x: int) -> list[int]:
    return [x for _ in range(2)]


def with_walrus(x: int) -> int:
    return (y := x) + y


def with_locals(x: int) -> Any:
    return locals()


def reads_frame(x: int) -> Any:
    return sys._getframe().f_code.co_name


def varargs(*xs: int) -> int:
    return xs[0]


def generator(x: int) -> Any:
    yield x


async def coroutine(x: int) -> int:
    return x


class Mangled:
    @staticmethod
    def private(x: Any) -> Any:
        return x.__secret  # compiled as x._Mangled__secret: the source alone would differ


def closure_over(k: int) -> Any:
    return lambda x: x + k


def test_one_expression_functions_are_inlinable() -> None:
    def nested(x: int) -> bool:
        return x % 3 == 0

    cases = [(double, "(v * 2)"), (nested, "(v % 3 == 0)"), (lambda item: item["id"], "(v['id'])")]
    for function, text in cases:
        found = inlinable(function)
        assert found is not None, function
        assert found.text("v") == text
    found = inlinable(shifted)
    assert found is not None
    assert found.global_names == {"OFFSET"}
    found = inlinable(closure_over(1))
    assert found is not None
    assert (found.text("v"), found.global_names, set(found.cells)) == ("(v + k)", set(), {"k"})


@pytest.mark.parametrize(
    "function",
    [
        two_statements,
        with_default,
        with_comprehension,
        with_walrus,
        with_locals,
        reads_frame,
        varargs,
        generator,
        coroutine,
        Mangled.private,
        functools.partial(with_default, k=3),
        len,
        Mangled().__init__,
    ],
)
def test_functions_that_could_behave_differently_are_called(function: Any) -> None:
    assert inlinable(function) is None


def test_the_arity_must_match() -> None:
    assert inlinable(lambda a, b: a + b) is None
    found = inlinable(lambda a, b: a + b, arity=2)
    assert found is not None
    assert found.text("x", "y") == "(x + y)"
    with pytest.raises(ValueError, match="takes 2 argument"):
        found.text("x")


def test_each_lambda_of_a_line_is_told_apart() -> None:
    first, second = (lambda x: x + 1), (lambda x: x - 1)
    assert [inlinable(f).text("v") for f in (first, second)] == ["(v + 1)", "(v - 1)"]  # type: ignore[union-attr]


def test_a_source_file_edited_after_import_is_not_trusted(tmp_path: Path) -> None:
    module = load_module(tmp_path / "edited_udfs.py", "def f(x):\n    return x + 1\n")
    (tmp_path / "edited_udfs.py").write_text("def f(x):\n    return x - 1\n")
    linecache.checkcache(str(tmp_path / "edited_udfs.py"))
    assert inlinable(module.f) is None
    assert module.f(1) == 2


def test_functions_without_source_are_called() -> None:
    namespace: dict[str, Any] = {}
    exec("def f(x):\n    return x + 1\n", namespace)  # filename "<string>": no source to read
    assert inlinable(namespace["f"]) is None


def _chain(*functions: Any) -> FusedChain:
    """An inlining chain of maps."""
    steps = [Step("map", f, f"s{i}") for i, f in enumerate(functions)]
    return FusedChain(steps, (len(steps),), inline=True)


def test_inlined_globals_keep_their_late_binding() -> None:
    global OFFSET
    chain = _chain(double, shifted)
    assert set(chain.inlined) == {0, 1}
    assert chain(iter([1, 2]))[0] == ([12, 14],)
    OFFSET = 100
    try:
        assert chain(iter([1, 2]))[0] == ([102, 104],)
    finally:
        OFFSET = 10


out = 1000  # the name of a local of the key reader's loop
o2 = 1000  # the name of a local of a generated chain: the list of its point 2


def test_a_global_named_like_a_loop_local_keeps_its_call() -> None:
    clashing = lambda x: x + o2  # noqa: E731 - a lambda reading the global ``o2``
    chain = _chain(double, clashing)
    assert set(chain.inlined) == {0}
    assert chain(iter([1, 2]))[0] == ([1002, 1004],)


hits = 3  # the name of a local of the join's probe loop


def test_join_and_window_loops_call_a_key_that_reads_a_loop_local_name() -> None:
    join = join_config("inner", key_func=lambda x: x + hits).build(inline=True)
    join.push(1, [5])
    assert join.push(0, [5, 5, 6]) == [(5, 5), (5, 5)]  # the probe's own ``hits`` counts 0, 1...
    keys, error = key_reader(lambda item: item + out, inline=True)([1, 2])  # ``out``: a loop local
    assert (keys, error) == ([1001, 1002], None)


def test_functions_of_another_module_are_called(tmp_path: Path) -> None:
    other = load_module(tmp_path / "other_udfs.py", "OFFSET = 1\ndef plus(x):\n    return x + OFFSET\n")
    chain = _chain(shifted, other.plus)
    assert set(chain.inlined) == {0}  # the fused function can run with one module's globals
    assert chain(iter([1]))[0] == ([12],)


KINDS = {
    "double": ("map", double),
    "shift": ("map", shifted),
    "odd": ("filter", lambda x: x % 2 == 1),
    "pair": ("flat_map", lambda x: (x, -x)),
    "key": ("key_by", lambda x: x % 5),
    "label": ("map", lambda x: f"<{x}>"),
}


async def _run(items: list[int], names: list[str], *, inline: bool, batch: int, fan_out: bool) -> list[Any]:
    env = LocalEnvironment(batch_size=batch, inline=inline)
    stream = env.from_collection(items)
    end: list[Any] = []
    middle: list[Any] = []
    for index, name in enumerate(names):
        method, function = KINDS[name]
        stream = getattr(stream, method)(function)
        if fan_out and index == len(names) // 2:
            stream.sink(middle.append)  # a second output point: the chain compiles to a loop
    stream.sink(end.append)
    try:
        await env.execute()
    except PipelineError as error:  # e.g. "label" then "key": str % 5; the same either way
        return [type(error.__cause__), error.operator, error.item, *end, "|", *middle]
    return [*end, "|", *middle]


@pytest.mark.slow
@not_traced
@settings(max_examples=80, deadline=None)
@given(
    items=st.lists(st.integers(-30, 30), max_size=40),
    names=st.lists(st.sampled_from(sorted(KINDS)), max_size=6),
    batch=st.integers(1, 8),
    fan_out=st.booleans(),
)
def test_an_inlined_chain_gives_what_calls_give(
    items: list[int], names: list[str], batch: int, fan_out: bool
) -> None:
    inlined = asyncio.run(_run(items, names, inline=True, batch=batch, fan_out=fan_out))
    called = asyncio.run(_run(items, names, inline=False, batch=batch, fan_out=fan_out))
    assert inlined == called


def reciprocal(x: int) -> float:
    return 1 / x


def _frames(error: BaseException) -> list[str]:
    return [frame.name for frame in traceback.extract_tb(error.__traceback__)]


async def _fail(*, inline: bool) -> PipelineError:
    env = LocalEnvironment(inline=inline, codegen=True)  # the generated path pastes
    stream = env.from_collection([4, 2, 0, 1], name="numbers").map(reciprocal, name="invert")
    with pytest.raises(PipelineError) as caught:
        await stream.collect()
    return caught.value


@not_traced
async def test_an_inlined_function_that_raises_names_its_operator_item_and_source() -> None:
    error = await _fail(inline=True)
    cause = error.__cause__
    assert isinstance(cause, ZeroDivisionError)
    assert (error.operator, error.item) == ("invert", 0)
    assert "reciprocal" not in _frames(cause)
    notes = "\n".join(getattr(cause, "__notes__", []))
    assert "reciprocal" in notes
    assert "test_inline.py" in notes
    assert "inline=False" in notes
    assert "1 / v" in "".join(traceback.format_exception(cause))  # the generated line is shown


async def test_inline_false_calls_the_function() -> None:
    error = await _fail(inline=False)
    assert (error.operator, error.item) == ("invert", 0)
    assert "reciprocal" in _frames(error.__cause__)  # type: ignore[arg-type]
    assert not any("inlined" in note for note in getattr(error.__cause__, "__notes__", []))


async def test_under_a_tracer_functions_are_called() -> None:
    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: None)
    try:
        error = await _fail(inline=True)
    finally:
        sys.settrace(previous)
    assert "reciprocal" in _frames(error.__cause__)  # type: ignore[arg-type]


# -- functions of several statements, and closures ------------------------------------------------


def clipped(x: int) -> int:
    y: int = x * 3
    if y > 10:
        y = 10
    elif y < -10:
        y = -10
    else:
        y += 1
    return y


def rebinds_its_parameter(x: int) -> int:
    x = x + 1
    return x * x


def checks(x: int) -> int:
    assert x != 13, "unlucky"
    if x > 1000:
        raise ValueError(f"too big: {x}")
    return x


def no_return(x: int) -> None:
    x + 1  # evaluated for its errors only


def maybe_assigned(x: int) -> int:
    if x > 0:
        y = x
    return y  # UnboundLocalError for x <= 0: inlined, it would read the last item's y


def augments_an_unassigned_local(x: int) -> int:
    total = 0
    count += 1  # type: ignore[name-defined]  # noqa: F821 - always UnboundLocalError
    return total + count


def early_return(x: int) -> int:
    if x > 0:
        return 1
    return 0


def loops(x: int) -> int:
    for _ in range(2):
        x += 1
    return x


def catches(x: int) -> int:
    try:
        return 1 // x
    except ZeroDivisionError:
        return 0


def bare_annotation(x: int) -> int:
    y: int
    y = x
    return y


def deletes(x: int) -> int:
    y = x
    del y
    return x


def reraises(x: int) -> int:
    if x:
        raise
    return x


def test_statements_are_inlined_only_where_statements_can_stand() -> None:
    assert inlinable(two_statements) is None  # a comprehension's clause, a join's key
    found = inlinable(two_statements, statements=True)
    assert found is not None
    assert found.block(["v0"], "u0_") == (["u0_y = v0 + 1"], "(u0_y)")
    with pytest.raises(ValueError, match="is not one expression"):
        found.text("v0")


def test_a_block_names_locals_with_the_prefix_and_binds_a_rebound_parameter() -> None:
    found = inlinable(clipped, statements=True)
    assert found is not None
    lines, value = found.block(["v3"], "u3_")
    assert lines[0] == "u3_y = v3 * 3"  # the annotation is never evaluated in a body: dropped
    assert value == "(u3_y)"
    found = inlinable(rebinds_its_parameter, statements=True)
    assert found is not None
    assert found.block(["v0"], "u0_") == (["u0_x = v0", "u0_x = u0_x + 1"], "(u0_x * u0_x)")
    found = inlinable(no_return, statements=True)
    assert found is not None
    assert found.block(["v0"], "u0_") == (["v0 + 1"], "(None)")


def test_an_expression_argument_stands_where_a_parameter_read_once_is_read() -> None:
    found = inlinable(two_statements, statements=True)  # reads x once
    assert found is not None
    assert found.block(["(a, b)"], "u1_") == (["u1_y = (a, b) + 1"], "(u1_y)")
    found = inlinable(lambda x: x * x)  # reads x twice: evaluated once, first
    assert found is not None
    assert found.block(["(a, b)"], "u1_") == (["u1_x = (a, b)"], "(u1_x * u1_x)")
    found = inlinable(rebinds_its_parameter, statements=True)
    assert found is not None
    assert found.block(["(a, b)"], "u0_") == (["u0_x = (a, b)", "u0_x = u0_x + 1"], "(u0_x * u0_x)")


@pytest.mark.parametrize(
    "function",
    [
        maybe_assigned,
        augments_an_unassigned_local,
        early_return,
        loops,
        catches,
        bare_annotation,
        deletes,
        reraises,
        with_comprehension,
        with_walrus,
        with_locals,
    ],
)
def test_statements_that_could_behave_differently_are_called(function: Any) -> None:
    assert inlinable(function, statements=True) is None


def _tally() -> tuple[list[int], Any]:
    tally = [0, 0]

    def count(x: int) -> None:
        tally[0] += 1
        if x % 2:
            tally[1] += x

    return tally, count


def test_a_tallying_sink_runs_inlined_on_its_own_cells() -> None:
    tally, count = _tally()
    chain = FusedChain([Step("map", clipped, "clip"), Step("sink", count, "count")], (), inline="all")
    assert set(chain.inlined) == {0, 1}
    assert chain.function.__closure__ is not None
    assert chain(iter([1, 2, 5, -7]))[0] == ()
    assert tally == [4, 7]  # clipped: 4, 7, 10, -10; one is odd


def test_a_closure_reads_its_cell_when_the_item_passes() -> None:
    k = 1
    chain = _chain(lambda x: x + k)
    assert set(chain.inlined) == {0}
    assert chain(iter([1]))[0] == ([2],)
    k = 5
    assert chain(iter([1]))[0] == ([6],)


def test_free_variables_that_mean_different_things_are_not_both_inlined() -> None:
    first, second = closure_over(1), closure_over(10)  # two cells named k
    chain = _chain(first, second)
    assert set(chain.inlined) == {0}
    assert chain(iter([0]))[0] == ([11],)
    OFFSET = 1000  # a free variable named like shifted's global
    chain = _chain(shifted, lambda x: x + OFFSET)
    assert set(chain.inlined) == {0}
    assert chain(iter([0]))[0] == ([1010],)


def test_a_free_variable_named_like_a_loop_local_keeps_its_call() -> None:
    o2 = 7
    chain = _chain(double, lambda x: x + o2)
    assert set(chain.inlined) == {0}
    assert chain(iter([1]))[0] == ([9],)


def test_join_and_window_keys_inline_closures() -> None:
    field = "id"
    key = lambda item: item[field]  # noqa: E731
    join = join_config("inner", key_func=key).build(inline=True)
    join.push(1, [{"id": 1, "side": "r"}])
    assert join.push(0, [{"id": 1}, {"id": 2}]) == [({"id": 1}, {"id": 1, "side": "r"})]
    keys, error = key_reader(key, inline=True)([{"id": 3}])
    assert (keys, error) == ([3], None)


STATEMENT_KINDS = {
    "clip": ("map", clipped),
    "rebind": ("map", rebinds_its_parameter),
    "check": ("filter", checks),
    "nothing": ("map", no_return),
}


async def _run_statements(items: list[int], names: list[str], *, inline: Any, handled: bool) -> list[Any]:
    """``names`` as steps, then a tallying sink; with ``handled`` under a skipping handler."""
    env = LocalEnvironment(batch_size=3, inline=inline)
    stream = env.from_collection(items)
    if handled:
        stream.on_error(lambda stream_id, error, context: "continue")
    for name in names:
        method, function = STATEMENT_KINDS[name]
        stream = getattr(stream, method)(function)
    tally, count = _tally()
    seen: list[Any] = []
    stream.sink(seen.append)
    stream.sink(count)
    try:
        await env.execute()
    except PipelineError as error:
        return [type(error.__cause__), str(error.__cause__), error.operator, error.item, *seen, tally]
    return [*seen, tally]


@pytest.mark.slow
@not_traced
@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.sampled_from([-20, -3, 0, 1, 4, 13, 999, 1001]), max_size=12),
    names=st.lists(st.sampled_from(sorted(STATEMENT_KINDS)), max_size=4),
    handled=st.booleans(),
)
def test_inlined_statements_give_what_calls_give(items: list[int], names: list[str], handled: bool) -> None:
    inlined = asyncio.run(_run_statements(items, names, inline="all", handled=handled))
    called = asyncio.run(_run_statements(items, names, inline=False, handled=handled))
    assert inlined == called


# -- issue 13: what inlining must never change ----------------------------------------------------


def _transient(x: int, failed: list[int]) -> int:
    """Raise ``ConnectionError`` the first time ``x`` is 2; else 0."""
    if x == 2 and not failed:
        failed.append(1)
        raise ConnectionError("transient")
    return 0


def _adder(v: int) -> Any:
    """A step of one expression closing over ``v``, a name the generated code also uses; it fails
    once, on item 2."""
    failed: list[int] = []
    return lambda x: x + v + _transient(x, failed)


@pytest.mark.parametrize("inline", [True, "all", False])
async def test_a_closure_variable_named_v_never_stands_for_the_failing_item(inline: Any) -> None:
    env = LocalEnvironment(inline=inline)
    seen: list[Any] = []

    def retry(stream_id: str, error: BaseException, context: Any) -> str:
        seen.append((context.operator, context.item))
        return "retry"

    stream = env.from_collection([1, 2, 3]).on_error(retry).map(_adder(100), name="add")
    assert await stream.collect() == [101, 102, 103]
    assert seen == [("add", 2)]
    env = LocalEnvironment(inline=inline)
    sunk: list[int] = []
    env.from_collection([1, 2, 3]).map(_adder(100), name="add").sink(sunk.append)
    with pytest.raises(PipelineError) as caught:
        await env.execute()
    assert (caught.value.operator, caught.value.item, sunk) == ("add", 2, [101])


def test_equal_comparing_constants_tell_lambdas_of_a_line_apart() -> None:
    as_int, as_float = (lambda x: x * 2), (lambda x: x * 2.0)
    assert _chain(as_float)(iter([1, 2]))[0] == ([2.0, 4.0],)
    assert [type(y) for y in _chain(as_float)(iter([1]))[0][0]] == [float]
    assert [type(y) for y in _chain(as_int)(iter([1]))[0][0]] == [int]
    flag, one = (lambda e: e.get("n", True)), (lambda e: e.get("n", 1))
    assert _chain(flag)(iter([{}]))[0][0][0] is True
    assert _chain(one)(iter([{}]))[0][0][0] == 1
    assert _chain(one)(iter([{}]))[0][0][0] is not True
    same, twin = (lambda x: x + 1), (lambda x: x + 1)  # the same code: either text is right
    assert [inlinable(f).text("v") for f in (same, twin)] == ["(v + 1)", "(v + 1)"]  # type: ignore[union-attr]


def test_a_join_key_with_a_float_constant_is_not_pasted_as_an_int() -> None:
    by_int, by_float = (lambda e: str(e["k"] * 1)), (lambda e: str(e["k"] * 1.0))
    join = join_config("inner", key_func=(by_float, lambda p: p["id"])).build(inline=True)
    join.push(1, [{"id": "2.0"}])
    assert join.push(0, [{"k": 2}]) == [({"k": 2}, {"id": "2.0"})]
    assert by_int({"k": 2}) == "2"


def test_a_source_edited_after_import_with_an_equal_constant_is_called(tmp_path: Path) -> None:
    path = tmp_path / "edited_constant.py"
    module = load_module(path, "def f(x):\n    return x * 1\n")
    path.write_text("def f(x):\n    return x * 1.0\n")
    linecache.checkcache(str(path))
    assert inlinable(module.f) is None
    assert _chain(module.f)(iter([3]))[0] == ([3],)
    assert type(_chain(module.f)(iter([3]))[0][0][0]) is int


def _keyed_on(type: str) -> Any:  # a parameter named like the built-in, on purpose
    return lambda event: event[type]


SHADOWING = """\
type = "click"
Exception = "not an exception"
len = None
hash = None
iter = None
list = None
KeyError = None

def key(event):
    return event["user"]

def add(total, event):
    return total + event["n"]
"""


def test_generated_loops_never_read_names_of_the_users_scopes(tmp_path: Path) -> None:
    join = join_config("inner", key_func=_keyed_on("user")).build(inline=True)
    join.push(1, [{"user": 1, "p": "a"}, {"user": 1, "p": "b"}])  # a Bucket: the probe's type test
    assert join.push(0, [{"user": 1}]) == [
        ({"user": 1}, {"user": 1, "p": "a"}),
        ({"user": 1}, {"user": 1, "p": "b"}),
    ]
    module = load_module(tmp_path / "shadowing_udfs.py", SHADOWING)
    join = join_config("inner", key_func=module.key).build(inline=True)
    join.push(1, [{"user": 1, "p": "a"}, {"user": 1, "p": "b"}])
    assert len(join.push(0, [{"user": 1}, {"user": 2}])) == 2
    keys, error = key_reader(module.key, inline=True)([{"user": 3}, {}])
    assert (keys, type(error)) == ([3], KeyError)
    table = Lookup({1: "one"}, item_first=True)
    steps = [Step("lookup", module.key, "join", lookup=table), Step("map", module.key, "m")]
    for resumable in (False, True):
        chain = FusedChain(steps[:1], (1,), inline=True, resumable=resumable)
        assert chain(iter([{"user": 1}, {"user": 2}]))[0][0] == [({"user": 1}, "one")]
    chain = FusedChain(
        [Step("flat_map", lambda e: [e, e], "f"), Step("map", module.key, "m")], (2,), inline=True
    )
    assert chain(iter([{"user": 5}]))[0] == ([5, 5],)


A_TYPE_DEF = """\
def type(obj):
    return [obj]

def key(event):
    return event["user"]
"""


def test_a_module_level_def_named_type_does_not_change_the_probe(tmp_path: Path) -> None:
    module = load_module(tmp_path / "type_def_udfs.py", A_TYPE_DEF)
    join = join_config("inner", key_func=module.key).build(inline=True)
    join.push(1, [{"user": 1, "p": "a"}, {"user": 1, "p": "b"}])  # a Bucket: the probe's type test
    assert join.push(0, [{"user": 1}]) == [
        ({"user": 1}, {"user": 1, "p": "a"}),
        ({"user": 1}, {"user": 1, "p": "b"}),
    ]


def expand(x: int) -> Any:
    yield x * 10
    if x == 2:
        raise ValueError("boom")
    yield x * 10 + 1


@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.parametrize("shape", ["collect", "sink", "handled"])
async def test_a_generator_flat_map_that_raises_is_blamed_with_its_input(inline: bool, shape: str) -> None:
    env = LocalEnvironment(inline=inline)
    stream = env.from_collection([1, 2, 3])
    seen: list[Any] = []
    if shape == "handled":

        def skip(stream_id: str, error: BaseException, context: Any) -> str:
            seen.append((context.operator, context.item))
            return "continue"

        stream = stream.on_error(skip)
    negated = stream.flat_map(expand).map(lambda x: -x)
    if shape == "handled":
        assert await negated.collect() == [-10, -11, -30, -31]  # a flat_map's results: all or none
        assert seen == [("flat_map(expand)", 2)]
        return
    got: list[int] = []
    if shape == "sink":
        negated.sink(got.append)
    with pytest.raises(PipelineError) as caught:
        await (env.execute() if shape == "sink" else negated.collect())
    assert (caught.value.operator, caught.value.item) == ("flat_map(expand)", 2)
    assert got == ([-10, -11, -20] if shape == "sink" else [])


def _logged(records: list[logging.LogRecord]) -> Any:
    log = logging.getLogger("sage_streams.test_inline")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log.addHandler(Keep())
    log.propagate = False
    log.setLevel(logging.INFO)

    def log_it(x: int) -> None:
        y = x + 1
        log.info("item %s", y)

    return log_it


@not_traced
@pytest.mark.parametrize(("inline", "pasted"), [(True, False), ("all", True), (False, False)])
def test_by_default_only_one_expression_functions_are_pasted(inline: Any, pasted: bool) -> None:
    tally, count = _tally()
    chain = FusedChain(
        [Step("map", lambda x: x * 3, "triple"), Step("sink", count, "count")],
        (),
        inline=inline,
    )
    assert set(chain.inlined) == ({0, 1} if pasted else set() if inline is False else {0})
    chain(iter([1, 2]))
    assert tally == [2, 3]


@not_traced
async def test_a_logging_sink_keeps_its_own_function_name_by_default() -> None:
    records: list[logging.LogRecord] = []
    env = LocalEnvironment()
    env.from_collection([1, 2]).sink(_logged(records))
    await env.execute()
    assert [(r.getMessage(), r.funcName) for r in records] == [("item 2", "log_it"), ("item 3", "log_it")]


from inspect import currentframe as where_am_i  # noqa: E402 - aliases the frame functions, on purpose
from sys import _getframe as g  # noqa: E402


def _frame_readers() -> list[Any]:
    held = sys._getframe
    return [
        lambda x: g().f_code.co_name,
        lambda x: where_am_i().f_code.co_name,  # type: ignore[union-attr]
        lambda x: held().f_code.co_name,
    ]


@not_traced
@pytest.mark.parametrize("reader", range(3))
def test_frame_access_is_refused_by_what_a_name_means_not_how_it_is_spelled(reader: int) -> None:
    function = _frame_readers()[reader]
    assert inlinable(function) is None
    assert inlinable(function, statements=True) is None
    assert _chain(function)(iter([1]))[0] == (["<lambda>"],)


def test_inline_takes_true_all_or_false() -> None:
    assert LocalEnvironment(inline="all").inline == "all"
    with pytest.raises(TypeError, match="inline must be True, 'all' or False, got 'no'"):
        LocalEnvironment(inline="no")  # type: ignore[arg-type]


NAMED_LIKE_LOOPS = """\
keys = 2
fused = 3

def make(k):
    return lambda x: x + k + keys

def make_step(k):
    return lambda x: x + k + fused

key = make(1)
step = make_step(1)
"""


def test_a_closure_reading_a_global_named_like_the_generated_function_keeps_its_call(
    tmp_path: Path,
) -> None:
    # The generated function's definition binds its name in the scope that holds the cells.
    module = load_module(tmp_path / "named_like_loops.py", NAMED_LIKE_LOOPS)
    assert key_reader(module.key, inline=True)([1, 2]) == ([4, 5], None)
    assert _chain(module.step)(iter([1]))[0] == ([5],)
