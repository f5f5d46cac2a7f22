"""``python -m sage_streams graph|run``, run as a subprocess on small modules in tmp_path, and
its bad input: each a one-line message on stderr and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODULE = """\
from sage_streams import LocalEnvironment

env = LocalEnvironment("tiny")
env.from_collection([1, 2, 3], name="numbers").sink(lambda _: None, name="out")
not_env = 3

def factory():
    return env

def broken():
    raise ValueError("no database")

failing = LocalEnvironment("failing")
failing.from_collection([0], name="zero").map(lambda x: 1 // x, name="divide")
"""


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tiny_pipeline.py").write_text(MODULE)
    command = [sys.executable, "-m", "sage_streams", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)


@pytest.mark.parametrize("target", ["tiny_pipeline:env", "tiny_pipeline:factory", "tiny_pipeline.py:env"])
def test_graph_prints_the_mermaid_text(tmp_path: Path, target: str) -> None:
    done = cli(tmp_path, "graph", target)
    assert (done.returncode, done.stderr) == (0, "")
    assert (
        done.stdout == 'flowchart LR\n    n0(["numbers<br/>pull"])\n    n1[["out<br/>sink"]]\n    n0 --> n1\n'
    )


def test_graph_dot(tmp_path: Path) -> None:
    done = cli(tmp_path, "graph", "tiny_pipeline:env", "--dot")
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == 'digraph "tiny" {'


def test_run_runs_the_graph_to_its_end(tmp_path: Path) -> None:
    done = cli(tmp_path, "run", "tiny_pipeline:env")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("tiny: finished in ")


def test_a_failed_pipeline_exits_1_with_its_message(tmp_path: Path) -> None:
    done = cli(tmp_path, "run", "tiny_pipeline:failing")
    assert done.returncode == 1
    assert done.stderr.startswith("error: the pipeline failed: ")
    assert "divide" in done.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_pkg.mod:env", "error: cannot import 'no_such_pkg.mod': no module named 'no_such_pkg'\n"),
        ("tiny_pipeline:missing", "error: module 'tiny_pipeline' has no attribute 'missing'\n"),
        ("tiny_pipeline:not_env", "error: 'tiny_pipeline:not_env' is a int, not a LocalEnvironment\n"),
        ("tiny_pipeline:broken", "error: factory 'tiny_pipeline:broken' raised ValueError: no database\n"),
        (
            "tiny_pipeline",
            "error: target 'tiny_pipeline' must be MODULE:ATTRIBUTE (pkg.module:env or file.py:env)\n",
        ),
    ],
)
def test_bad_targets_say_why_and_exit_2(tmp_path: Path, target: str, message: str) -> None:
    done = cli(tmp_path, "graph", target)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)
