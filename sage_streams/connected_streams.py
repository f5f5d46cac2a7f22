"""The seed page's module path: ``from sage_streams.connected_streams import ConnectedStreams``."""

from sage_streams.api.connected import ConnectedStreams
from sage_streams.state import StreamState

__all__ = ["ConnectedStreams", "StreamState"]
