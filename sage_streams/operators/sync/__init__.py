"""Synchronizing several streams by timestamp or by marker events (config, state, operator)."""
