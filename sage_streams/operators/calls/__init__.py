"""Concurrent calls of a user function: how many at once, in what order results leave (config, order)."""
