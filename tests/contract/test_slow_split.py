"""The quick run exists: ``pytest -m "not slow"`` leaves out every long test, and none loses its mark.

The long tests are the Hypothesis properties, the benchmark harness run, the soak test and the mypy
run of the typing test. They are found by reading the test files (``ast``), not by running them,
so this check is itself quick and sees every file whatever ``-m`` selects.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# Long tests that are not Hypothesis properties, by file and name.
LONG = {
    ("contract/test_benchmarks.py", "test_tiny_harness_run_produces_a_checked_table"),
    ("runtime/test_soak.py", "test_a_million_items_with_one_percent_failures_are_all_accounted_for"),
    ("api/test_typing.py", "test_item_types_flow_through_the_api_and_wrong_calls_are_reported"),
}


def _names(decorators: list[ast.expr]) -> set[str]:
    """The dotted names of some decorators, called or not: ``{"pytest.mark.slow", "given"}``."""
    return {ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in decorators}


def _module_is_slow(tree: ast.Module) -> bool:
    """Whether a module-level ``pytestmark`` (one mark or a list) holds ``pytest.mark.slow``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytestmark" for target in node.targets
        ):
            marks = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            if "pytest.mark.slow" in _names(marks):
                return True
    return False


def marks_of(source: str) -> dict[str, tuple[bool, bool]]:
    """Each test function of a module: whether it is a Hypothesis test, and whether it is slow."""
    tree = ast.parse(source)
    module_slow = _module_is_slow(tree)
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            names = _names(node.decorator_list)
            hypothesis = bool(names & {"given", "hypothesis.given"})
            found[node.name] = (hypothesis, module_slow or "pytest.mark.slow" in names)
    return found


def suite() -> dict[tuple[str, str], tuple[bool, bool]]:
    """Every test function of the suite, keyed by (file relative to tests/, name)."""
    return {
        (path.relative_to(TESTS).as_posix(), name): marks
        for path in sorted(TESTS.rglob("test_*.py"))
        for name, marks in marks_of(path.read_text(encoding="utf-8")).items()
    }


def test_the_slow_marker_is_registered(pytestconfig: pytest.Config) -> None:
    assert any(line.split(":")[0].strip() == "slow" for line in pytestconfig.getini("markers"))


def test_every_hypothesis_test_is_marked_slow() -> None:
    tests = suite()
    hypothesis = {key for key, (is_hypothesis, _) in tests.items() if is_hypothesis}
    assert len(hypothesis) >= 30  # the reading finds them: a broken scan would find none
    assert sorted(key for key in hypothesis if not tests[key][1]) == []


def test_the_long_tests_that_are_not_properties_are_marked_slow() -> None:
    tests = suite()
    assert {key: tests[key][1] for key in LONG} == dict.fromkeys(LONG, True)


def test_the_quick_run_keeps_most_tests() -> None:
    marks = suite().values()
    assert sum(not slow for _, slow in marks) > 2 * sum(slow for _, slow in marks)


def test_the_reading_tells_a_marked_property_from_an_unmarked_one() -> None:
    source = """
import pytest
from hypothesis import given, settings, strategies as st

@pytest.mark.slow
@settings(max_examples=5)
@given(st.integers())
def test_marked(n): ...

@settings(max_examples=5)
@given(st.integers())
async def test_lost_its_mark(n): ...

@pytest.mark.slow
def test_long(): ...

def test_plain(): ...

def helper(): ...
"""
    assert marks_of(source) == {
        "test_marked": (True, True),
        "test_lost_its_mark": (True, False),
        "test_long": (False, True),
        "test_plain": (False, False),
    }
    marked_module = "import pytest\npytestmark = [pytest.mark.slow]\n" + source
    assert marks_of(marked_module)["test_lost_its_mark"] == (True, True)
