"""The public API layer: the environment, streams, connected streams and the error API."""
