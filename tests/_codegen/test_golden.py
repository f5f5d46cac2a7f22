"""Golden renderings: the code each template of :mod:`sage_streams._codegen` generates, diffed
against the copy committed in ``tests/_codegen/golden/``, so that a change to generated code
shows up in review as a diff of that code.

Each *shape* below builds one template case (a chain's step kinds and points, resumable or not,
pasted or called; a join probe's side, buffering and key; a window loop) from the user
functions of this module, at fixed names, and renders the source it compiled. Renderings are
deterministic: the only run-dependent text, the path of this file in an inlined function's
error note, is replaced by ``test_golden.py:<line>``.

To update after an intended change, run this module with ``SAGE_STREAMS_GOLDEN_UPDATE=1``: each
golden that differs (or is missing) is rewritten and its test *fails*, naming the file, so that
an update run never passes; review the files' ``git diff``, then run again without the variable.
A golden no shape renders fails :func:`test_every_golden_is_rendered_by_a_shape`.
"""

from __future__ import annotations

import difflib
import linecache
import os
import re
import textwrap
from collections.abc import AsyncIterator, Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from sage_streams._codegen import chain as chain_module
from sage_streams._codegen.chain import _MAX_NESTED, FusedChain
from sage_streams._codegen.inline import Inline
from sage_streams._codegen.join_probe import generate_probe
from sage_streams._codegen.steps import Lookup, Step, StepKind
from sage_streams._codegen.window_loops import key_reader_source, run_loop

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SAGE_STREAMS_GOLDEN_UPDATE") == "1"

# -- the user functions: fixed names, so that the renderings are stable ---------------------------

PASTED: dict[str, Callable[..., Any]] = {
    "double": lambda x: x * 2,
    "odd": lambda x: x % 2 == 1,
    "key": lambda event: event["user"],
    "add": lambda total, event: total + event["value"],
}
"""One-expression lambdas, pasted with ``inline=True``."""


def scaled(x: int) -> int:
    """A statement body: pasted only with ``inline="all"``."""
    y = x * 3
    return y + 1


def enrich(pair: tuple[int, str]) -> str:
    """A step after a lookup that unpacks the pair: given ``(v0, p0)``, no tuple is built."""
    event, profile = pair
    return f"{profile}:{event}"


def tally_into(seen: list[int]) -> Callable[[int], None]:
    """A sink that tallies into a closure's list: a body of one expression statement."""

    def tally(x: int) -> None:
        seen.append(x)

    return tally


def called(x: Any) -> Any:
    """A function each called step calls (``inline=False``: its code is never pasted)."""
    return x


async def fetch(x: int) -> int:
    """An async map."""
    return x


async def explode(x: int) -> AsyncIterator[int]:
    """An async generator flat_map."""
    yield x
    yield -x


TABLE: dict[Hashable, str] = {1: "a", 2: "b"}
"""The finished table of the lookups."""


def step(kind: StepKind, fn: Callable[..., Any] = called, *, item_first: bool = True) -> Step:
    """A step of ``kind`` named after it (the operator name only labels the compiled file)."""
    lookup = Lookup(TABLE, item_first) if kind == "lookup" else None
    return Step(kind, fn, kind, lookup)


# -- the shapes --------------------------------------------------------------------------------------

Rendered = list[tuple[str, Callable[..., Any] | None]]
"""A shape's loops: each one's source and, where it can be reached, the function compiled from it."""


def chain(
    steps: list[Step], points: list[int], *, resumable: bool = False, inline: Inline = False
) -> Rendered:
    """A fused chain's loop, or each of its loops when it is split into parts."""
    fused = FusedChain(steps, points, resumable=resumable, inline=inline)
    loops = [part for _, part in fused.parts] or [fused]
    return [(loop.source, loop.function) for loop in loops]


def probe(side: int, *, buffering: bool, unique: bool = False, inline: bool = False) -> Rendered:
    """A join's probe on the key ``PASTED["key"]``, pasted when ``inline``."""
    function, source = generate_probe(
        side, PASTED["key"], {}, buffering=buffering, unique=unique, inline=inline
    )
    return [(source, function)]


def keys() -> Rendered:
    """The window's key reader, with ``PASTED["key"]`` pasted in."""
    source = key_reader_source(PASTED["key"])
    assert source is not None, "the key function was not pasted"
    return [(source, None)]


def run(add: Callable[[Any, Any], Any] | None, *, inline: bool = False) -> Rendered:
    """A window's run loop: appending, or folding with ``add``, pasted when ``inline``."""
    loop = run_loop(add, inline=inline)
    return [(loop.source, loop.function)]


SHAPES: dict[str, Callable[[], Rendered]] = {
    # chains: the first one is the example of chain.py's docstring
    "chain_map_filter": lambda: chain([step("map"), step("filter")], [2]),
    "chain_points": lambda: chain([step("map"), step("filter"), step("map")], [0, 1, 3]),
    "chain_no_steps": lambda: chain([], [0]),
    "chain_drained_source": lambda: chain([], []),
    "chain_map": lambda: chain([step("map")], [1]),
    "chain_filter": lambda: chain([step("filter")], [1]),
    "chain_flat_map": lambda: chain([step("flat_map")], [1]),
    "chain_key_by": lambda: chain([step("key_by")], [1]),
    "chain_sink": lambda: chain([step("map"), step("sink")], []),
    "chain_lookup_item_first": lambda: chain([step("lookup")], [1]),
    "chain_lookup_partner_first": lambda: chain([step("lookup", item_first=False)], [1]),
    "chain_async_map": lambda: chain([step("map", fetch), step("filter")], [2]),
    "chain_async_generator_flat_map": lambda: chain([step("flat_map", explode)], [1]),
    "chain_every_kind": lambda: chain(
        [step("map"), step("filter"), step("flat_map"), step("key_by"), step("lookup"), step("sink")], [0, 3]
    ),
    "chain_every_kind_resumable": lambda: chain(
        [step("map"), step("filter"), step("flat_map"), step("key_by"), step("lookup"), step("sink")],
        [0, 3],
        resumable=True,
    ),
    "chain_async_generator_flat_map_resumable": lambda: chain(
        [step("flat_map", explode)], [1], resumable=True
    ),
    "chain_inline_lambda": lambda: chain(
        [step("map", PASTED["double"]), step("filter", PASTED["odd"])], [2], inline=True
    ),
    "chain_inline_statements": lambda: chain(
        [step("map", scaled), step("sink", tally_into([]))], [1], inline="all"
    ),
    "chain_statements_not_pasted_by_default": lambda: chain([step("map", scaled)], [1], inline=True),
    "chain_lookup_then_unpack": lambda: chain(
        [step("lookup", PASTED["key"]), step("map", enrich)], [2], inline="all"
    ),
    "chain_split_into_parts": lambda: chain(
        [step("flat_map") for _ in range(_MAX_NESTED + 1)] + [step("map")], [0, _MAX_NESTED, _MAX_NESTED + 2]
    ),
    # join probes
    "probe_side0_buffering": lambda: probe(0, buffering=True),
    "probe_side1_buffering": lambda: probe(1, buffering=True),
    "probe_side0_ended": lambda: probe(0, buffering=False),
    "probe_side1_unique": lambda: probe(1, buffering=False, unique=True),
    "probe_side0_buffering_key_pasted": lambda: probe(0, buffering=True, inline=True),
    "probe_side1_unique_key_pasted": lambda: probe(1, buffering=False, unique=True, inline=True),
    # window loops
    "window_keys_pasted": keys,
    "window_run_appending": lambda: run(None),
    "window_run_folding_add_pasted": lambda: run(PASTED["add"], inline=True),
    "window_run_folding_add_called": lambda: run(PASTED["add"], inline=False),
}
"""Every template shape, by the name of its golden file (``golden/<name>.py.txt``)."""


def rendering(name: str) -> str:
    """The text of shape ``name``: its loops' sources (headed by their part when split), with
    this file's path normalised."""
    loops = SHAPES[name]()
    if len(loops) == 1:
        text = loops[0][0]
    else:
        text = "".join(f"# loop {i} of {len(loops)}\n{source}" for i, (source, _) in enumerate(loops, 1))
    return re.sub(re.escape(__file__) + r":\d+", "test_golden.py:<line>", text)


# -- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHAPES)
def test_the_generated_code_is_the_golden_rendering(name: str) -> None:
    path = GOLDEN / f"{name}.py.txt"
    rendered = rendering(name)
    golden = path.read_text() if path.exists() else None
    if golden == rendered:
        return
    if UPDATE:
        path.write_text(rendered)
        pytest.fail(f"rewrote {path}: review its git diff, then run again without SAGE_STREAMS_GOLDEN_UPDATE")
    diff = "".join(
        difflib.unified_diff(
            (golden or "").splitlines(keepends=True),
            rendered.splitlines(keepends=True),
            fromfile=f"golden/{path.name}" if golden is not None else "(missing)",
            tofile="rendered",
        )
    )
    pytest.fail(
        f"the code generated for {name} is not {path}:\n{diff}\n"
        "if the change is intended, rewrite the goldens with SAGE_STREAMS_GOLDEN_UPDATE=1 and review them",
        pytrace=False,
    )


def test_every_golden_is_rendered_by_a_shape() -> None:
    files = {path.name for path in GOLDEN.iterdir()}
    assert files - {"README.md"} == {f"{name}.py.txt" for name in SHAPES}


@pytest.mark.parametrize("name", SHAPES)
def test_a_rendering_is_the_code_that_runs(name: str) -> None:
    """The source a shape renders is the text compiled into its function (registered with
    ``linecache`` for tracebacks), not a second rendering beside it."""
    for source, function in SHAPES[name]():
        if function is not None:
            assert "".join(linecache.getlines(function.__code__.co_filename)) == source


def test_no_rendering_holds_this_files_path() -> None:
    """The path of this file (in a pasted key's error note) is normalised away."""
    renderings = [rendering(name) for name in SHAPES]
    assert not [text for text in renderings if __file__ in text]
    assert "(test_golden.py:<line>)" in rendering("probe_side0_buffering_key_pasted")


def test_pasted_shapes_paste_and_called_shapes_call() -> None:
    """The shapes are what their names say: the pasted code is there, the calls are not."""
    assert "(v0 * 2)" in rendering("chain_inline_lambda")
    assert "s0(v0)" not in rendering("chain_inline_lambda")
    assert "u0_y = v0 * 3" in rendering("chain_inline_statements")
    assert "u1_event, u1_profile = (v0, p0)" in rendering("chain_lookup_then_unpack")
    assert "s0(v0)" in rendering("chain_statements_not_pasted_by_default")
    assert "k = (v['user'])" in rendering("probe_side0_buffering_key_pasted")
    assert "k = key(v)" in rendering("probe_side0_buffering")
    assert "_add(acc, item)" in rendering("window_run_folding_add_called")
    assert "_add(acc, item)" not in rendering("window_run_folding_add_pasted")
    assert rendering("chain_split_into_parts").count("# loop ") == 2


def test_the_chain_modules_example_is_the_golden_map_filter() -> None:
    """The loop :mod:`sage_streams._codegen.chain`'s docstring shows is the one it generates."""
    doc = chain_module.__doc__ or ""
    example = doc.split("reads::\n\n", 1)[1].split("\n\n", 1)[0]
    assert textwrap.dedent(example) + "\n" == rendering("chain_map_filter")
