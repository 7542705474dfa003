"""The command line: ``python -m kaleyra_async <command>``. The only module that prints."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kaleyra_async",
        description="Asyncio bulk SMS dispatcher for the Kaleyra SMS API.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from .sandbox._command import configure_parser as configure_sandbox

    configure_sandbox(
        commands.add_parser(
            "sandbox",
            help="run the local Kaleyra-compatible sandbox server",
            description="Run a local Kaleyra-compatible SMS server (never contacts Kaleyra).",
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
