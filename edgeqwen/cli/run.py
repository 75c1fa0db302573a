"""`edgeqwen run BUNDLE PROMPT` and `edgeqwen serve BUNDLE`: a bundle, from the host, through its own shim.

There is one implementation of generation, chat and serving: the shim inside
the bundle. These verbs run it with this Python, so what works here works on
the device.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from edgeqwen.bundle.manifest import read_manifest
from edgeqwen.errors import BundleError

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RUN_EXAMPLES = """Examples:
  edgeqwen run bundles/demo-qwen3-4l-h128-raspberry-pi-5 "What is the with statement?"
  edgeqwen run BUNDLE --max-new-tokens 64 --temperature 0.7 "Explain decorators"
  edgeqwen run BUNDLE chat                # a conversation through stdin
  edgeqwen run BUNDLE --device cpu "hello"  # a GPU or NPU bundle, checked on this CPU
"""
SERVE_EXAMPLES = """Examples:
  edgeqwen serve bundles/demo-qwen3-4l-h128-raspberry-pi-5 --port 8000
  edgeqwen serve BUNDLE --host 0.0.0.0 --api-key-file key.txt --max-queue 8 --device cpu
"""


def add_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="generate text with a bundle (runs the bundle's shim.py: one prompt, or `chat`)",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("bundle", type=Path)
    run.add_argument("shim_args", nargs=argparse.REMAINDER, help="prompt and options, passed to shim.py")
    run.set_defaults(handler=lambda args: call_shim(args.bundle, args.shim_args))

    serve = subparsers.add_parser(
        "serve",
        help="serve a bundle over an OpenAI-compatible HTTP API (runs `shim.py serve`)",
        epilog=SERVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("bundle", type=Path)
    serve.add_argument("shim_args", nargs=argparse.REMAINDER, help="options passed to `shim.py serve`")
    serve.set_defaults(handler=lambda args: call_shim(args.bundle, ["serve", *args.shim_args]))


def call_shim(bundle: Path, shim_args: list[str]) -> int:
    read_manifest(bundle)  # a clear error for a folder that is not a bundle
    shim = bundle / "shim.py"
    if not shim.is_file():
        raise BundleError(f"{bundle}: no shim.py")
    child = subprocess.Popen([sys.executable, str(shim), *shim_args])
    # SIGTERM/Ctrl-C meant for `edgeqwen serve` go to the shim, which shuts down gracefully itself.
    previous = {s: signal.signal(s, lambda signum, _: child.send_signal(signum)) for s in FORWARDED_SIGNALS}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
