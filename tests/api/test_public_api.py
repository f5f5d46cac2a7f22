"""The front door: everything public is importable from ``sage_streams`` and ``__all__`` is honest."""

from __future__ import annotations

import sage_streams


def test_all_is_sorted_and_every_name_exists() -> None:
    assert sage_streams.__all__ == sorted(sage_streams.__all__)
    for name in sage_streams.__all__:
        assert hasattr(sage_streams, name), name


def test_contract_import_surface() -> None:
    from sage_streams import (  # noqa: F401
        BackpressureTimeout,
        DataStream,
        ErrorThresholdExceeded,
        LocalEnvironment,
        PipelineError,
        StreamError,
        get_function,
        register_function,
    )


def test_exception_tree() -> None:
    assert issubclass(sage_streams.PipelineError, sage_streams.StreamError)
    assert issubclass(sage_streams.ErrorThresholdExceeded, sage_streams.PipelineError)
    assert issubclass(sage_streams.BackpressureTimeout, sage_streams.StreamError)


def test_window_records_are_public() -> None:
    from sage_streams import WindowAggregate, WindowData, WindowedStream  # noqa: F401
