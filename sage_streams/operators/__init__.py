"""The stateful operators: process functions, joins, windows, synchronization.

Each family keeps its frozen, validated configuration in ``config.py``, whose ``build()`` makes
the family's pure, synchronous logic in ``state.py`` (testable without an event loop), and what
the runtime feeds in ``operator.py``. ``base.py`` holds the protocols the runtime checks and
``OperatorBase``, which writes their no-op defaults once for every operator.
"""
