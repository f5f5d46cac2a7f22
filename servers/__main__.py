"""``python -m servers install`` installs the missing servers; ``python -m servers run KIND``
runs one in the foreground (Ctrl-C stops it) and prints its URL, for the examples."""

from __future__ import annotations

import argparse
import sys
import time

from servers import KINDS, ServerMissing, binary, install, start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install the servers that are missing (apt-get, as root)")
    run = commands.add_parser("run", help="run a server on 127.0.0.1 until Ctrl-C")
    run.add_argument("kind", choices=KINDS)
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            installed = install()
            for kind in KINDS:
                print(f"{kind}: {binary(kind)}")
            if installed:
                print(f"installed: {' '.join(installed)}")
            return 0
        with start(args.kind, durable=True) as server:
            print(server.url, flush=True)
            try:
                while server.process.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        return 0
    except ServerMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
