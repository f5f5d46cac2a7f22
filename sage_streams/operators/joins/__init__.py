"""Joins of two streams: keyed, windowed and interval joins (config, state, operator)."""
