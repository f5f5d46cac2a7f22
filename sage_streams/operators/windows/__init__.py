"""Event-time and processing-time windows: assignment, contents, firing (config, state, operator)."""
