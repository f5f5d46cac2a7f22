"""Connectors: sources a run can read again from a position, and sinks that write exactly once.

:mod:`.base` holds the protocols the runtime drives at checkpoints (``ReplayableSource``,
``TransactionalSink``) and the guarantee each part declares.
"""

from sage_streams.connectors.base import GUARANTEES, Guarantee, ReplayableSource, TransactionalSink, weakest

__all__ = ["GUARANTEES", "Guarantee", "ReplayableSource", "TransactionalSink", "weakest"]
