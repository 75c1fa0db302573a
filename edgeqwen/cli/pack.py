"""`edgeqwen pack BUNDLE`: a deterministic .tar.gz and its SHA256SUMS line."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeqwen.bundle.pack import pack_bundle

EXAMPLES = """Examples:
  edgeqwen pack bundles/demo-qwen3-4l-h128-raspberry-pi-5
  edgeqwen pack BUNDLE --out dist/pi5.tar.gz

The same bundle always packs to the same bytes (sorted entries, fixed mtimes and owners). Writes
ARCHIVE.sha256 beside the archive, in `sha256sum -c` format. On the device:
  sha256sum -c pi5.tar.gz.sha256 && tar xzf pi5.tar.gz
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "pack", help="pack a bundle into a reproducible .tar.gz", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--out", type=Path, help="archive path (default: BUNDLE.tar.gz)")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    archive, line = pack_bundle(args.bundle, args.out)
    print(line)
    return 0
