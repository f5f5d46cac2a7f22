"""The benchmark harness: the same workloads through sage_streams and through baselines.

Run ``python -m benchmarks`` (or ``make bench``); see ``benchmarks/README.md`` for the method.
"""
