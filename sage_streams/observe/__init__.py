"""Observing a running graph from outside: Prometheus, OpenTelemetry.

- :mod:`sage_streams.observe.prometheus`: a collector read at scrape time, ``serve_metrics`` for
  scripts and ``metrics_app`` (ASGI) for services; the ``prometheus`` extra.
- :mod:`sage_streams.observe.otel`: the same metrics as OpenTelemetry observable instruments,
  and sampled spans around process functions and async calls; the ``otel`` extra (the API
  only: the application picks the SDK).
- :mod:`sage_streams.observe.catalog`: the one list of metrics both publish.

Importing this package imports neither client library; each module imports its own.
"""
