"""The Makefile: ``make demo`` installs the package alone, ``make test`` everything, in either order.

Each case runs ``make -n`` (print the commands, run none) against a virtual environment in a
temporary folder, with the stamps of what an earlier target would have installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ONLY = "-m pip install --quiet -e ."
EVERYTHING = "-m pip install --quiet -e '.[test,bench]'"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def planned(target: str, venv: Path, stamps: tuple[str, ...] = ()) -> list[str]:
    """The commands ``make target`` would run, given a venv holding ``stamps``; the venv's
    folder is written out of them (its ``bin/python`` exists once any stamp does)."""
    if stamps:
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").touch()
        for stamp in stamps:
            (venv / stamp).touch()  # newer than pyproject.toml
    # Not the settings of a make this test may run under (``make test``).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON")}
    run = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return [line.replace(str(venv), "VENV") for line in run.stdout.splitlines()]


def test_demo_on_a_fresh_clone_installs_the_package_alone(tmp_path: Path) -> None:
    assert planned("demo", tmp_path / ".venv") == [
        "python3 -m venv VENV",
        f"VENV/bin/python {PACKAGE_ONLY}",
        "touch VENV/.package",
        "VENV/bin/python examples/quickstart.py",
    ]


def test_test_on_a_fresh_clone_installs_the_extras(tmp_path: Path) -> None:
    commands = planned("test", tmp_path / ".venv")
    assert commands[:4] == [
        "python3 -m venv VENV",
        "VENV/bin/python -m pip install --quiet --upgrade pip",
        f"VENV/bin/python {EVERYTHING}",
        "touch VENV/.package VENV/.installed",
    ]
    # The whole suite on the generated loops, then on their plain twins.
    assert commands[-2:] == ["VENV/bin/python -m pytest", "SAGE_STREAMS_CODEGEN=0 VENV/bin/python -m pytest"]


def test_test_after_demo_installs_the_extras(tmp_path: Path) -> None:
    commands = planned("test", tmp_path / ".venv", (".package",))
    assert f"VENV/bin/python {EVERYTHING}" in commands
    assert "python3 -m venv VENV" not in commands


def test_demo_after_test_installs_nothing(tmp_path: Path) -> None:
    assert planned("demo", tmp_path / ".venv", (".package", ".installed")) == [
        "VENV/bin/python examples/quickstart.py"
    ]


def test_demo_after_demo_installs_nothing(tmp_path: Path) -> None:
    assert planned("demo", tmp_path / ".venv", (".package",)) == ["VENV/bin/python examples/quickstart.py"]
