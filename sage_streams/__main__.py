"""``python -m sage_streams``: the command line (see :mod:`sage_streams.cli.main`)."""

from sage_streams.cli.main import main

raise SystemExit(main())
