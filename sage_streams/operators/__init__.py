"""The stateful operators: process functions, joins, windows, synchronization.

Each family keeps its validated configuration in ``config.py``, its pure, synchronous logic in
``state.py`` (testable without an event loop) and what the runtime feeds in ``operator.py``;
``base.py`` holds the protocols every operator implements.
"""
