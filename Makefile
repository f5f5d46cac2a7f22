# Every target sets up .venv itself, so each works on a fresh clone with only Python 3.11+.
# Two stamps: the demo needs only the package; tests, lint and benchmarks also need the extras.
# The full install includes the package, so it stamps both: either order of targets works.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGE := $(VENV)/.package
STAMP := $(VENV)/.installed

.PHONY: demo test lint servers bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(PACKAGE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(PACKAGE)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(PACKAGE) $(STAMP)

demo: $(PACKAGE)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check sage_streams tests examples benchmarks servers
	$(BIN)/ruff format --check sage_streams tests examples benchmarks servers
	$(BIN)/mypy sage_streams examples servers

# The connectors' tests run against real servers: install the missing ones (apt-get, as root).
servers: $(STAMP)
	$(BIN)/python -m servers install

# The suite runs twice: on the generated loops, then on their plain twins (the oracle).
test: lint servers
	$(BIN)/python -m pytest
	SAGE_STREAMS_CODEGEN=0 $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache benchmarks/results
