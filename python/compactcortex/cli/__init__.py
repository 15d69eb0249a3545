"""The ``compactcortex`` command: one module per subcommand, each with its parser beside its
handler (``register(sub)`` and ``run(args)``)."""
from __future__ import annotations

import argparse
import sys

from . import bench, compress, consolidation, data, demo, evaluate, loop_bench, predict, preferred, trunk

__all__ = ["main", "build_parser"]

#: In the order of ``compactcortex --help``.
COMMANDS = (predict, bench, evaluate, demo, compress, trunk, loop_bench, preferred, consolidation, data)

#: A user error is one line of at most this many characters (a message may quote a huge argument).
_MAX_ERROR_CHARS = 300


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compactcortex", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; a user error (bad value, unreadable or unwritable file) prints one line
    and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, OSError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(text) > _MAX_ERROR_CHARS:
            text = text[:_MAX_ERROR_CHARS - 3] + "..."
        print(f"compactcortex {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"compactcortex {args.command}: interrupted", file=sys.stderr)
        return 130
