"""``python -m sage_streams``: ``graph TARGET`` prints the graph, ``run TARGET`` runs it.

Exit codes: 0 done, 1 the pipeline failed (its message on stderr), 2 bad usage or a target
that names no environment, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sage_streams import PipelineError
from sage_streams.cli.target import TargetError, load_environment

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sage_streams")
    commands = parser.add_subparsers(dest="command", required=True)
    graph = commands.add_parser("graph", help="print the graph as Mermaid text (or DOT)")
    graph.add_argument("target", help="pkg.module:env, pkg.module:factory or file.py:env")
    graph.add_argument("--dot", action="store_true", help="Graphviz DOT instead of Mermaid")
    run = commands.add_parser("run", help="run the graph to its end")
    run.add_argument("target", help="pkg.module:env, pkg.module:factory or file.py:env")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv``; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        env = load_environment(args.target)
    except TargetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "graph":
        sys.stdout.write(env.to_dot() if args.dot else env.to_mermaid())
        return 0
    try:
        env.run()
    except PipelineError as exc:
        print(f"error: the pipeline failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the run was cancelled", file=sys.stderr)
        return 130
    print(f"{env.name}: {env.lifecycle.value} in {env.metrics().elapsed:.2f} s")
    return 0
