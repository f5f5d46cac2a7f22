"""The design notes cannot rot silently: every path they name exists.

``docs/architecture.md`` and the README name modules and folders (``sage_streams/_runtime/plan.py``,
``tests/conftest.py``, ...). When code moves, the notes must move with it, so a path that no longer
exists fails here. The README's "Changes" section is history and names paths as they were then;
it is left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CONNECTORS = ROOT / "docs" / "connectors.md"
README = ROOT / "README.md"

# A path into the repository: a top-level folder, then name characters and slashes; a sentence's
# full stop after it is not part of it.
PATH = re.compile(r"\b(?:sage_streams|tests|examples|benchmarks|docs)/[\w./-]*[\w/]")


def paths_named(text: str) -> list[str]:
    """The repository paths named in ``text``, in order, each once."""
    return list(dict.fromkeys(PATH.findall(text)))


def without_changes(readme: str) -> str:
    """The README up to its "Changes" section (history, which names paths as they were)."""
    return readme.split("\n## Changes\n", 1)[0]


def test_paths_are_read_as_written() -> None:
    text = (
        "`sage_streams/channel/` holds queues (`sage_streams/channel/queues.py`). See "
        "tests/conftest.py. Not sage_streams.testing, nor xsage_streams/a.py; "
        "[notes](docs/architecture.md), `tests/operators/<family>/`."
    )
    assert paths_named(text) == [
        "sage_streams/channel/",
        "sage_streams/channel/queues.py",
        "tests/conftest.py",
        "docs/architecture.md",
        "tests/operators/",
    ]


def test_the_changes_section_is_left_out() -> None:
    readme = "# x\nsee `sage_streams/api/`\n\n## Changes\n\n- moved `sage_streams/_old.py`\n"
    assert paths_named(without_changes(readme)) == ["sage_streams/api/"]


@pytest.mark.parametrize(
    "document", [ARCHITECTURE, CONNECTORS, README], ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_every_path_named_exists(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    named = paths_named(without_changes(text) if document == README else text)
    assert sum(path.startswith("sage_streams/") for path in named) >= 5  # the notes name real code
    assert [path for path in named if not (ROOT / path).exists()] == []


def test_the_architecture_notes_name_every_layer_of_the_package() -> None:
    named = set(paths_named(ARCHITECTURE.read_text(encoding="utf-8")))
    layers = {
        "sage_streams/errors.py",
        "sage_streams/_typing.py",
        "sage_streams/functions.py",
        "sage_streams/time.py",
        "sage_streams/channel/",
        "sage_streams/state.py",
        "sage_streams/metrics.py",
        "sage_streams/_codegen/",
        "sage_streams/operators/",
        "sage_streams/_graph/",
        "sage_streams/_runtime/",
        "sage_streams/api/",
        "sage_streams/__init__.py",
    }
    assert sorted(layers - named) == []


def test_the_readme_links_the_notes_from_how_it_is_built() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n## How it is built\n", 1)[1].split("\n## ", 1)[0]
    assert "](docs/architecture.md)" in section
    assert len([path for path in paths_named(section) if path.startswith("sage_streams/")]) >= 5
