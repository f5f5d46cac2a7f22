"""Every script in examples/ runs and prints exactly what it is documented to print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"

EXPECTED = {
    "quickstart.py": """\
review order 102: 110.40 EUR from bo
review order 104: 260.00 EUR from chen
revenue: ana=60.13, bo=117.76, chen=260.00
to_eur saw 5 orders; review passed 2
history: 70 of 1000 orders were 90 EUR or more
""",
}


def test_every_example_has_an_expected_output() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_prints_what_it_should(script: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout == EXPECTED[script]
