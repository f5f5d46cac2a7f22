"""The command line (layer 9): ``python -m sage_streams graph|run pkg.module:env``."""
