# The layers, lowest first. A module imports only from its own layer and the layers below it;
# the one exception is api/, whose fluent methods import a higher type inside the method.
#
#   L0  errors, _typing, functions, time   exceptions, type aliases and checks, the function
#                                          registry, clocks and event time
#   L1  channel/                           bounded asyncio.Queue channels, batches and control
#                                          messages, backpressure strategies, the overflow store
#   L2  state, metrics                     StreamState, the metrics records
#   L3  _codegen/                          the only place that compiles code; a plain twin each
#   L4  operators/                         process, joins/, windows/, sync/: config, pure state,
#                                          the operator the runtime feeds
#   L5  _graph/                            the graph as data: nodes, edges, error-policy config
#   L6  _runtime/                          planning, chains, heads, outlets, per-run state
#   L7  api/                               LocalEnvironment, DataStream, ConnectedStreams, ...
#
# This module is the front door only: it re-exports the public names, and gives each the
# module users import it from.

"""sage_streams: asyncio-native connected streams.

Everything a user needs is importable from here; the modules behind it are an implementation
detail. The public test kit is :mod:`sage_streams.testing`; the seed page's path
``sage_streams.connected_streams`` also works.

Example::

    from sage_streams import LocalEnvironment

    env = LocalEnvironment()
    doubled = env.from_collection(range(5)).map(lambda x: 2 * x)
    print(await doubled.collect())  # [0, 2, 4, 6, 8]
"""

from sage_streams._graph.policy import DeadLetter, ErrorContext
from sage_streams.api.connected import ConnectedStreams, JoinedStream, SynchronizedStream
from sage_streams.api.environment import Lifecycle, LocalEnvironment
from sage_streams.api.lifecycle import RestartPolicy, Status
from sage_streams.api.stream import DataStream
from sage_streams.api.views import LatestView
from sage_streams.api.windowed import WindowedStream
from sage_streams.channel import ChannelStatistics
from sage_streams.errors import (
    BackpressureTimeout,
    CheckpointError,
    ConnectorError,
    DrainTimeout,
    ErrorThresholdExceeded,
    NoDataError,
    PipelineError,
    SpillError,
    StreamError,
    UnknownNameError,
    UnwritableValueError,
)
from sage_streams.functions import get_function, register_function
from sage_streams.metrics import MetricsSnapshot, OperatorMetrics
from sage_streams.operators.process import StreamReader
from sage_streams.operators.windows.operator import WindowAggregate, WindowData
from sage_streams.state import StreamState

__all__ = [
    "BackpressureTimeout",
    "ChannelStatistics",
    "CheckpointError",
    "ConnectedStreams",
    "ConnectorError",
    "DataStream",
    "DeadLetter",
    "DrainTimeout",
    "ErrorContext",
    "ErrorThresholdExceeded",
    "JoinedStream",
    "LatestView",
    "Lifecycle",
    "LocalEnvironment",
    "MetricsSnapshot",
    "NoDataError",
    "OperatorMetrics",
    "PipelineError",
    "RestartPolicy",
    "SpillError",
    "Status",
    "StreamError",
    "StreamReader",
    "StreamState",
    "SynchronizedStream",
    "UnknownNameError",
    "UnwritableValueError",
    "WindowAggregate",
    "WindowData",
    "WindowedStream",
    "get_function",
    "register_function",
]

# Every public object says it lives here, where users import it from (as httpx does): in reprs,
# tracebacks, pickles and the docs. Pickle finds a class by module and name, and here it is.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
