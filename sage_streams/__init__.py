"""sage_streams: asyncio-native connected streams.

Everything a user needs is importable from here; the modules behind it are an implementation
detail.
"""

from sage_streams.channel import ChannelStatistics
from sage_streams.connected import ConnectedStreams, JoinedStream, StreamReader, SynchronizedStream
from sage_streams.environment import LocalEnvironment
from sage_streams.errors import (
    BackpressureTimeout,
    ErrorThresholdExceeded,
    NoDataError,
    PipelineError,
    StreamError,
)
from sage_streams.functions import get_function, register_function
from sage_streams.metrics import MetricsSnapshot, OperatorMetrics
from sage_streams.overflow import SpillError
from sage_streams.policy import DeadLetter, ErrorContext
from sage_streams.state import StreamState
from sage_streams.stream import DataStream
from sage_streams.windowing import WindowAggregate, WindowData, WindowedStream

__all__ = [
    "BackpressureTimeout",
    "ChannelStatistics",
    "ConnectedStreams",
    "DataStream",
    "DeadLetter",
    "ErrorContext",
    "ErrorThresholdExceeded",
    "JoinedStream",
    "LocalEnvironment",
    "MetricsSnapshot",
    "NoDataError",
    "OperatorMetrics",
    "PipelineError",
    "SpillError",
    "StreamError",
    "StreamReader",
    "StreamState",
    "SynchronizedStream",
    "WindowAggregate",
    "WindowData",
    "WindowedStream",
    "get_function",
    "register_function",
]
