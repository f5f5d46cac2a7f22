"""Checkpoints: the codecs that write operator state, and the stores that keep it (layer 2).

A checkpoint is one epoch's state of a whole graph: every operator's entries, every source's
position and every sink's pre-commit record, all as bytes. :mod:`.codec` turns state values
into bytes with a declared, versioned codec; :mod:`.store` keeps the last committed epoch, one
transaction per epoch, in a SQLite file (:class:`SqliteStore`) or in any other
:class:`CheckpointStore`. Nothing here knows the runtime: it takes and gives bytes by name.
"""

from sage_streams.checkpoint.codec import (
    SAGE_CODEC,
    PickleCodec,
    SageCodec,
    StateCodec,
    StateCodecName,
    codec_label,
    resolve_state_codec,
)
from sage_streams.checkpoint.store import FORMAT_VERSION, Checkpoint, CheckpointStore, SqliteStore

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointStore",
    "PickleCodec",
    "SAGE_CODEC",
    "SageCodec",
    "SqliteStore",
    "StateCodec",
    "StateCodecName",
    "codec_label",
    "resolve_state_codec",
]
