"""`edgeqwen` command line: one small module per verb, each with examples in its help."""

from __future__ import annotations

import argparse
import sys

from edgeqwen import __version__
from edgeqwen.cli import bench, build, check, eval, matrix, pack, run, targets, verify
from edgeqwen.errors import EdgeqwenError

VERBS = (targets, build, check, eval, run, bench, verify, pack, matrix)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeqwen",
        description="Build quantized Qwen bundles for edge devices, and run them.",
        epilog="Examples:\n  edgeqwen targets\n  edgeqwen build --target raspberry-pi-5\n"
        '  edgeqwen run bundles/demo-qwen3-4l-h128-raspberry-pi-5 "What is a generator?"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeqwen {__version__}")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except EdgeqwenError as e:
        print(f"edgeqwen: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # disk full, permissions, a path that vanished: the user's to fix, not a bug
        print(f"edgeqwen: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgeqwen: interrupted; nothing was written to the destination", file=sys.stderr)
        return 130
