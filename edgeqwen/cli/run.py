"""`edgeqwen run BUNDLE PROMPT`: run a bundle from the host through the bundle's own shim.

There is one implementation of generation: the shim inside the bundle. This
verb runs it with this Python, so what works here works on the device.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from edgeqwen.bundle.manifest import read_manifest
from edgeqwen.errors import BundleError

EXAMPLES = """Examples:
  edgeqwen run bundles/demo-qwen3-4l-h128-raspberry-pi-5 "What is the with statement?"
  edgeqwen run BUNDLE --max-new-tokens 64 --temperature 0.7 "Explain decorators"
  edgeqwen run BUNDLE --cpu "hello"     # a GPU bundle, checked on this CPU
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="generate text with a bundle (runs the bundle's shim.py)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("shim_args", nargs=argparse.REMAINDER, help="prompt and options, passed to shim.py")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    read_manifest(args.bundle)  # a clear error for a folder that is not a bundle
    shim = args.bundle / "shim.py"
    if not shim.is_file():
        raise BundleError(f"{args.bundle}: no shim.py")
    return subprocess.call([sys.executable, str(shim), *args.shim_args])
