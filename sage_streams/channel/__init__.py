"""Bounded channels that carry batches of items and in-order control messages.

A channel is two ends around one ``asyncio.Queue``. The :class:`Sender` puts batches (lists of
items) or single items; the :class:`Receiver` gets messages: a batch, or a :class:`Control`
message such as :data:`END`. Control messages travel in the same queue as the data, so a
receiver sees them exactly where the sender put them.

The close protocol has two ends, as in trio's memory channels:

* closing the last sender (fan-in clones each count) puts :data:`END` after everything already
  sent, so the receiver drains what is queued and then ends;
* closing the receiver discards what is queued and breaks the senders: a sender that is blocked,
  or sends later, gets :class:`~sage_streams.errors.BrokenChannelError`.

The bound is counted in items, not messages, and holds to within one batch under ``"block"``: a
batch is admitted whenever the channel holds fewer items than its capacity. The other strategies
keep it exactly. What happens when a producer meets a full channel is the channel's strategy:

* ``"block"`` waits for room, at most ``timeout`` seconds, then raises ``BackpressureTimeout``;
* ``"drop"`` discards the items that do not fit;
* ``"drop_oldest"`` evicts the oldest queued items to make room;
* ``"buffer"`` never waits and never drops: what does not fit is spilled to an on-disk
  :class:`~sage_streams.channel.overflow.OverflowStore`, and everything sent after it, control messages
  included, queues up behind it there. As the receiver makes room, the oldest spilled messages
  move back into memory, so the receiver sees exactly the order that was sent. Spilled items
  are serialized by the channel's ``codec`` (pickle unless told otherwise): they must be
  serializable, and they come back as copies rather than the objects sent, checked as they
  spill to load back as the same items (else the send raises ``SpillError`` for that item).
  One that still cannot be read back later comes as an :class:`Unreadable` message in its
  place. The store's temporary file lives only until the stream ends or the receiver closes.

Control messages are never dropped and never wait: they carry no items.

Example::

    sender, receiver = create_channel("numbers", capacity=1000)
    await sender.send([1, 2, 3])
    sender.close()
    async for batch in receiver:
        print(batch)            # [1, 2, 3], then the loop ends
"""

from sage_streams.channel.config import (
    STRATEGIES,
    ChannelConfig,
    ChannelStatistics,
    Strategy,
    validate_strategy,
)
from sage_streams.channel.ends import Receiver, Sender, create_channel
from sage_streams.channel.messages import (
    ABORTED,
    END,
    Aborted,
    Barrier,
    Control,
    EndOfStream,
    Message,
    Unreadable,
    Watermark,
)

__all__ = [
    "ABORTED",
    "END",
    "STRATEGIES",
    "Aborted",
    "Barrier",
    "ChannelConfig",
    "ChannelStatistics",
    "Control",
    "EndOfStream",
    "Message",
    "Receiver",
    "Sender",
    "Strategy",
    "Unreadable",
    "Watermark",
    "create_channel",
    "validate_strategy",
]
