"""The public API keeps item types: mypy, run once on a snippet, reveals what each call returns
and reports each wrong-typed call, with exactly the expected message; no other line of the
snippet may be reported at all.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import mypy.api
import pytest

ROOT = Path(__file__).resolve().parents[2]
STREAM = "sage_streams.api.stream.DataStream"
WINDOWS = "sage_streams.operators.windows.operator"

PRELUDE = textwrap.dedent(
    """\
    from collections.abc import AsyncIterator

    from sage_streams import ConnectedStreams, LocalEnvironment

    env = LocalEnvironment()
    numbers = env.from_collection([1, 2, 3])
    both = ConnectedStreams([numbers, numbers])


    async def half(x: int) -> float:
        return x / 2


    async def repeat(x: int) -> AsyncIterator[str]:
        yield str(x)


    async def pairs(x: int) -> list[tuple[int, int]]:
        return [(x, x)]
    """
)

REVEALED = [
    ("numbers", f"{STREAM}[int]"),
    ("numbers.map(str)", f"{STREAM}[str]"),
    ("numbers.map(half)", f"{STREAM}[float]"),
    ('numbers.map("double")', f"{STREAM}[Any]"),
    ("numbers.filter(lambda x: x > 1)", f"{STREAM}[int]"),
    ("numbers.key_by(lambda x: x % 2)", f"{STREAM}[int]"),
    ("numbers.flat_map(lambda x: [x, x])", f"{STREAM}[int]"),
    ("numbers.flat_map(repeat)", f"{STREAM}[str]"),
    ("numbers.flat_map(pairs)", f"{STREAM}[tuple[int, int]]"),
    ("numbers.map(lambda x: x * 1.5).collect()", "typing.Awaitable[list[float]]"),
    ("numbers.sink(print)", f"{STREAM}[Never]"),
    ('env.create_stream("push")', f"{STREAM}[Any]"),
    ('env.create_stream("pull", source=["a"])', f"{STREAM}[str]"),
    ('numbers.window("tumbling", 10)', "sage_streams.api.windowed.WindowedStream"),
    ('numbers.window("tumbling", 10).aggregate(max, initial=0)', f"{STREAM}[{WINDOWS}.WindowAggregate]"),
    ("both.join(key_func=str).map(lambda pair: pair[0])", f"{STREAM}[Any]"),
    ("aiter(both.join(key_func=str))", "typing.AsyncIterator[tuple[Any, Any]]"),
    ("aiter(both.synchronize())", "typing.AsyncIterator[tuple[Any, ...]]"),
    ("both.errors()", f"{STREAM}[sage_streams._graph.policy.DeadLetter]"),
]
"""``(expression, the type mypy reveals for it)``."""

REFUSED = [
    ("numbers.map(lambda x: x.upper())", '"int" has no attribute "upper"  [attr-defined]'),
    (
        "numbers.map(42)",
        'No overload variant of "map" of "DataStream" matches argument type "int"  [call-overload]',
    ),
    (
        "numbers.filter(len)",
        'Argument 1 to "filter" of "DataStream" has incompatible type "Callable[[Sized], int]";'
        ' expected "Callable[[int], object] | str"  [arg-type]',
    ),
    (
        'numbers.window("hopping", 10)',
        'Argument 1 to "window" of "Windowing" has incompatible type "Literal[\'hopping\']";'
        " expected \"Literal['tumbling', 'sliding', 'session']\"  [arg-type]",
    ),
    (
        'numbers.window("tumbling", 10, time="wall")',
        'Argument "time" to "window" of "Windowing" has incompatible type "Literal[\'wall\']";'
        " expected \"Literal['event', 'processing']\"  [arg-type]",
    ),
    (
        'numbers.window("tumbling", 10, lateness=1.0)',
        'Unexpected keyword argument "lateness" for "window" of "Windowing"  [call-arg]',
    ),
    (
        'both.join("cross", key_func=str)',
        'Argument 1 to "join" of "ConnectedStreams" has incompatible type "Literal[\'cross\']";'
        " expected \"Literal['inner', 'left', 'right', 'outer']\"  [arg-type]",
    ),
    (
        'both.synchronize("clock")',
        'Argument 1 to "synchronize" of "ConnectedStreams" has incompatible type "Literal[\'clock\']";'
        " expected \"Literal['timestamp', 'event']\"  [arg-type]",
    ),
    (
        'both.configure_backpressure("fast")',
        'Argument 1 to "configure_backpressure" of "ConnectedStreams" has incompatible type'
        " \"Literal['fast']\"; expected \"Literal['block', 'drop', 'drop_oldest', 'buffer']\"  [arg-type]",
    ),
    (
        'both.window("session", timeout=5, out_of_order=1.0)',
        'Unexpected keyword argument "out_of_order" for "window" of "Windowing";'
        ' did you mean "out_of_orderness"?  [call-arg]',
    ),
]
"""``(a wrong call, the error mypy reports for it)``."""

REPORT = re.compile(r"^snippet\.py:(\d+): (note|error): (.*)$")


def snippet() -> tuple[str, dict[int, tuple[str, str]]]:
    """The snippet, and per line number what mypy must report there, ``(kind, message)``."""
    lines = PRELUDE.splitlines()
    expected: dict[int, tuple[str, str]] = {}
    for expression, revealed in REVEALED:
        lines.append(f"reveal_type({expression})")
        expected[len(lines)] = ("note", f'Revealed type is "{revealed}"')
    for call, error in REFUSED:
        lines.append(call)
        expected[len(lines)] = ("error", error)
    return "\n".join(lines) + "\n", expected


@pytest.mark.slow  # a whole mypy run, over a second
def test_item_types_flow_through_the_api_and_wrong_calls_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, expected = snippet()
    (tmp_path / "snippet.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # the package as checked out, not an installed copy
    out, err, _ = mypy.api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", "snippet.py"]
    )
    assert err == ""
    reported: dict[int, tuple[str, str]] = {}
    for line in out.splitlines():
        match = REPORT.match(line)
        assert match, line
        number, kind, text = match.groups()
        if kind == "note" and not text.startswith("Revealed type"):
            continue  # mypy's hints under an error ("Possible overload variants: ...")
        assert int(number) not in reported, line
        reported[int(number)] = (kind, text)
    assert reported == expected
