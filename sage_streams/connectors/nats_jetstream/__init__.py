"""NATS JetStream: a durable pull consumer as a replayable source, and a publisher sink whose
messages the server deduplicates by their ``Nats-Msg-Id``, so a replay publishes nothing twice.

:class:`JetStreamSource` reads one stream (optionally one subject filter of it) through a durable
pull consumer with ``AckPolicy.ALL``, created if missing. Its position is the stream sequence of
the last message it gave, and goes into the checkpoint. When a run starts, the consumer is reset
(``$JS.API.CONSUMER.RESET``: nats-server 2.14 or later) to the sequence after the checkpoint's,
so a restored run reads on from there, whatever the consumer had delivered before the crash; a
run without a position (a new job) resumes after the consumer's own ack floor (the stream's start
for a new consumer). A message is acknowledged only once the epoch that holds it has committed:
one ``+ACK`` of the epoch's last message acknowledges all before it, so the ack floor never passes
what a crash could lose. A message at or below the last sequence given (a redelivery after the
consumer's ack wait, or after a reconnection reset the consumer back to its ack floor) is skipped:
each message is given once per run, and a restore gives each once in all. ``follow=False`` reads
what the stream held when the run started and ends (a bounded job); ``follow=True`` waits for
more. Without checkpoints, each batch is acknowledged as it is handed on (at most once).

:class:`JetStreamSink` publishes each item with an id made of its prefix and the item's number
among everything the sink has written in the job (kept in the checkpoint). A restored run numbers
its replay from the committed count, so a message the crashed run published after the last commit
is published again under the same id, and the server drops it. Publishes are asynchronous, at
most ``in_flight`` awaiting their acks; ``pre_commit`` waits for every ack of the epoch.

Exactly once, with three conditions (see :class:`JetStreamSink`): the replay must give the sink
the same items in the same order (a deterministic job), the stream's duplicate window (two
minutes by default) must outlast the time from a crash to the end of its replay, and the prefix
must be the sink's own.

Failures: a server that refuses or drops the connection is retried with the connector's
:class:`~sage_streams.connectors.Backoff` (the source reconnects and resets its consumer to
what it has acknowledged, skipping what it gave; the sink reconnects and publishes the epoch's
messages again, deduplicated), then is a :class:`~sage_streams.errors.ConnectorError`; a wrong
URL or a missing stream is one at the start of the run. A message ``decode`` refuses is an error
of that message, through the stream's ``on_error``.

Example::

    env = LocalEnvironment("orders", checkpoints="orders.db", checkpoint_interval=1.0)
    orders = env.create_stream("orders", source=JetStreamSource("nats://127.0.0.1:4222", "ORDERS"))
    orders.map(price).sink(JetStreamSink("nats://127.0.0.1:4222", "priced.orders"))
"""

from sage_streams.connectors.nats_jetstream._sink import JetStreamSink
from sage_streams.connectors.nats_jetstream._source import JetStreamSource

__all__ = ["JetStreamSink", "JetStreamSource"]
