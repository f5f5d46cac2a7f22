"""The dataflow graph as data: nodes that say what to run, and the error-policy configuration."""
