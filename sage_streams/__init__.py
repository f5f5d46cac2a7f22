"""sage_streams: asyncio-native connected streams.

Everything a user needs is importable from here; the modules behind it are an implementation
detail.
"""

from sage_streams.channel import ChannelStatistics
from sage_streams.environment import LocalEnvironment
from sage_streams.errors import (
    BackpressureTimeout,
    ErrorThresholdExceeded,
    PipelineError,
    StreamError,
)
from sage_streams.functions import get_function, register_function
from sage_streams.metrics import MetricsSnapshot, OperatorMetrics
from sage_streams.stream import DataStream

__all__ = [
    "BackpressureTimeout",
    "ChannelStatistics",
    "DataStream",
    "ErrorThresholdExceeded",
    "LocalEnvironment",
    "MetricsSnapshot",
    "OperatorMetrics",
    "PipelineError",
    "StreamError",
    "get_function",
    "register_function",
]
