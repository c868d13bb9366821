"""The ``tinyvgg`` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tinyvgg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="gradient-check every op in float64 and train a small "
                                      "VGG-style network for a few steps")
    args = parser.parse_args(argv)
    if args.command == "check":
        from .selfcheck import run
        return 0 if run() else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
