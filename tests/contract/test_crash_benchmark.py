"""The crash benchmark keeps working: a small run end to end reports its sinks exact, and its
comparison counts rows as multisets (a row written twice is a duplicate, not a match)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.crash import Difference, Report, difference, table

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_small_run_with_two_kills_reports_nothing_lost_and_nothing_duplicated() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.crash", "--records", "20000", "--kills", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "20,000 records, 2 kills, 2 restarts"
    assert "| lost | 0 | 0 |" in lines
    assert "| duplicated | 0 | 0 |" in lines
    assert "| unexpected | 0 | 0 |" in lines
    assert "| killed run, first start to finish (3 processes) |" in done.stdout
    for line, label in zip(lines[-2:], ("restores (s): ", "restarts to running (s): "), strict=True):
        assert line.startswith(label)
        assert len(line.removeprefix(label).split(", ")) == 2


def test_rows_are_compared_as_multisets() -> None:
    found = difference(["a", "a", "b", "c"], ["a", "b", "b", "b", "d", "c"])
    assert found == Difference(expected=4, found=6, lost=1, duplicated=2, unexpected=1)
    assert difference([1, 2], [2, 1]) == Difference(expected=2, found=2, lost=0, duplicated=0, unexpected=0)


def test_a_report_is_exact_only_with_nothing_lost_duplicated_or_unexpected() -> None:
    exact = Difference(expected=3, found=3, lost=0, duplicated=0, unexpected=0)
    twice = Difference(expected=3, found=4, lost=0, duplicated=1, unexpected=0)
    report = Report(
        records=10,
        kills=1,
        restarts=1,
        sums=exact,
        joined=twice,
        clean_seconds=1.0,
        killed_seconds=2.5,
        restores=[0.25],
        starts=[0.5],
        clean_start=0.125,
        total_seconds=4.0,
    )
    assert not report.exact
    assert Report(**{**vars(report), "joined": exact}).exact
    printed = table(report).splitlines()
    assert printed[0] == "10 records, 1 kills, 1 restarts"
    assert "| duplicated | 0 | 1 |" in printed
    assert "| restore (reading the store), median of 1 | 0.2500 |" in printed
    assert "| restart to running, longest | 0.5000 |" in printed
    assert "| start to running of the uninterrupted run (nothing to restore) | 0.1250 |" in printed
    assert printed[-2:] == ["restores (s): 0.2500", "restarts to running (s): 0.5000"]
