"""Connectors: sources a run can read again from a position, and sinks that write exactly once.

:mod:`.base` holds the protocols the runtime drives at checkpoints (``ReplayableSource``,
``TransactionalSink``) and the guarantee each part declares; :mod:`.files` the JSON Lines and
CSV sources and the JSON Lines sink; :mod:`.sqlite` the SQLite sink.
"""

from sage_streams.connectors.base import (
    GUARANTEES,
    Guarantee,
    ReplayableSource,
    StoreSharing,
    TransactionalSink,
    weakest,
)
from sage_streams.connectors.files import CsvSource, JsonLinesSink, JsonLinesSource
from sage_streams.connectors.sqlite import SqliteSink

__all__ = [
    "GUARANTEES",
    "CsvSource",
    "Guarantee",
    "JsonLinesSink",
    "JsonLinesSource",
    "ReplayableSource",
    "SqliteSink",
    "StoreSharing",
    "TransactionalSink",
    "weakest",
]
