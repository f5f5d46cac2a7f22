"""Connectors: sources a run can read again from a position, and sinks that write exactly once.

:mod:`.base` holds the protocols the runtime drives at checkpoints (``ReplayableSource``,
``TransactionalSink``, ``AcknowledgingSource``, ``DecodingSource``) and the guarantee each part
declares; :mod:`.splits` a source made of partitions read side by side; :mod:`.retry` the
backoff every networked connector retries with; :mod:`.files` the JSON Lines and
CSV sources and the JSON Lines sink; :mod:`.sqlite` the SQLite sink.

The connectors to servers import their client library, an extra, so they are imported from
their own modules, never from here: :mod:`.redis_streams` (``sage-streams[redis]``),
:mod:`.nats_jetstream` (``[nats]``), :mod:`.postgres` (``[postgres]``) and :mod:`.web`
(``[http]``: WebSocket and server-sent events). ``docs/connectors.md`` describes each, and how
to write one.
"""

from sage_streams.connectors.base import (
    GUARANTEES,
    AcknowledgingSource,
    DecodingSource,
    Guarantee,
    ReplayableSource,
    StoreSharing,
    TransactionalSink,
    weakest,
)
from sage_streams.connectors.files import CsvSource, JsonLinesSink, JsonLinesSource
from sage_streams.connectors.retry import Backoff
from sage_streams.connectors.splits import SplitSource
from sage_streams.connectors.sqlite import SqliteSink

__all__ = [
    "GUARANTEES",
    "AcknowledgingSource",
    "Backoff",
    "CsvSource",
    "DecodingSource",
    "Guarantee",
    "JsonLinesSink",
    "JsonLinesSource",
    "ReplayableSource",
    "SplitSource",
    "SqliteSink",
    "StoreSharing",
    "TransactionalSink",
    "weakest",
]
