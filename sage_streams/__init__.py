"""sage_streams: asyncio-native connected streams.

Everything a user needs is importable from here; the modules behind it are an implementation
detail.
"""

from sage_streams._graph.policy import DeadLetter, ErrorContext
from sage_streams.api.connected import ConnectedStreams, JoinedStream, SynchronizedStream
from sage_streams.api.environment import LocalEnvironment
from sage_streams.api.stream import DataStream
from sage_streams.api.windowed import WindowedStream
from sage_streams.channel import ChannelStatistics
from sage_streams.errors import (
    BackpressureTimeout,
    ErrorThresholdExceeded,
    NoDataError,
    PipelineError,
    SpillError,
    StreamError,
    UnknownNameError,
)
from sage_streams.functions import get_function, register_function
from sage_streams.metrics import MetricsSnapshot, OperatorMetrics
from sage_streams.operators.process import StreamReader
from sage_streams.operators.windows.operator import WindowAggregate, WindowData
from sage_streams.state import StreamState

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
    "UnknownNameError",
    "WindowAggregate",
    "WindowData",
    "WindowedStream",
    "get_function",
    "register_function",
]
