"""Redis Streams: a source over stream keys that a restored run reads again from its entry IDs,
and sinks that write exactly once (a stream, or a hash for serving results).

:class:`RedisStreamSource` reads one or more stream keys, one split each (see
:class:`~sage_streams.connectors.SplitSource`), with ``XRANGE``/``XREAD``, or with
``XREADGROUP`` as a consumer of a group. Its position is a dict from each key to the ID of the
last entry read from it (``{"clicks": "1700000000000-3"}``), so a checkpoint records where each
stream stands and a restored run reads on from there. In group mode the entries a run was given
stay pending until the epoch holding them has committed, then they are acknowledged
(``XACK``): a run killed before that reads them again, from this consumer's pending entries
after the checkpoint's IDs, so none is lost, and none is processed twice in the output. The
source is ``exactly_once`` with checkpoints; without them a group's entries are acknowledged as
each batch is handed on (at most once), and a run without a group starts from the first entry.

Each entry reaches the pipeline as ``(id, fields)`` (bytes, and a dict of bytes) and is decoded
by the stream's first operator, ``NAME.decode`` (by default into a dict of str): an entry that
cannot be decoded is an error of that entry, through the stream's ``on_error`` policy, and the
source reads on past it.

The sinks: :class:`RedisStreamSink` (``XADD``) and :class:`RedisHashSink` (``HSET``). Both stage an
epoch's output in Redis and move it into place in one script once the epoch has committed, so a
reader sees only committed epochs, each once.

Faults: a connection refused or dropped, or a timeout, is retried with the connector's
:class:`~sage_streams.connectors.Backoff`; a server still away after it, a wrong URL, refused
credentials, or a stream key that does not exist (or holds another type) fail the run with a
:class:`~sage_streams.errors.ConnectorError` naming the connector and the command, at the
first read for what is wrong from the start.

Example::

    from sage_streams.connectors.redis_streams import RedisStreamSink, RedisStreamSource

    clicks = env.create_stream("clicks", source=RedisStreamSource(url, "clicks", group="stats"))
    clicks.map(enrich).sink(RedisStreamSink(url, "enriched"))
"""

from sage_streams.connectors.redis_streams._sinks import RedisHashSink, RedisStreamSink
from sage_streams.connectors.redis_streams._source import Entry, RedisStreamSource, decode_fields

__all__ = ["Entry", "RedisHashSink", "RedisStreamSink", "RedisStreamSource", "decode_fields"]
