"""`edgeqwen verify BUNDLE`: the bundle is exactly what its manifest lists."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeqwen.bundle.manifest import read_manifest
from edgeqwen.bundle.verify import device_check_note, parity_note, verify_bundle

EXAMPLES = """Examples:
  edgeqwen verify bundles/demo-qwen3-4l-h128-raspberry-pi-5

Checks format_version, that every listed file exists with its size and sha256, that nothing else is
there, and that device_check.json agrees with the manifest's device-check verdict. Exits 1 and names
each problem otherwise. Also says what the device check covered and what it could not run, and what
the build's tokenizer and chat-template parity check compared.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="check a bundle against its manifest", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    problems = verify_bundle(args.bundle)
    manifest = read_manifest(args.bundle)
    notes = [note for note in (parity_note(manifest), device_check_note(manifest)) if note]
    if problems:
        print(f"{args.bundle}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"{args.bundle}: ok, every file matches the manifest")
    for note in notes:
        print(f"  {note}")
    return 0
