"""`edgeqwen check BUNDLE`: run a bundle on its target's instruction set, as the build's device stage does."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeqwen.bundle.manifest import manifest_plan, read_manifest
from edgeqwen.cli.build import add_drift_arguments
from edgeqwen.cli.eval import eval_tokens_of, source_model
from edgeqwen.device.check import run_check, summary_line, write_report
from edgeqwen.targets import load_target

EXAMPLES = """Examples:
  edgeqwen check bundles/demo-qwen3-4l-h128-raspberry-pi-5
  edgeqwen check BUNDLE --model ./my-qwen3 --report-dir reports/pi5 --json

Installs the bundle's runtime as its README's checked install path says, in an environment of the
target's architecture (arm64 targets: a Debian arm64 userland under QEMU's model of the target's core;
x86-64 targets: a fresh virtualenv here), then runs the shim's answer and server and measures the
drift on the device's kernels (against the full-precision model, gated by the bundle's budget) and
against this host's run of the same bundle. Prepared environments are cached (~/.cache/edgeqwen/
device-envs). Exits 1 when the bundle fails there; a part that cannot run here is listed as not run.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="run a bundle on its target's instruction set (the device check)", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--model", help="the source model, if the bundle was built from a local folder")
    parser.add_argument("--report-dir", type=Path, help="write device_check.json here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_drift_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    manifest = read_manifest(args.bundle)
    plan = manifest_plan(args.bundle, manifest)
    source = source_model(manifest, args.model)
    check = run_check(args.bundle, plan, load_target(manifest["target"]), source.path, args.eval_data,
                      eval_tokens_of(args))
    if args.report_dir:
        write_report(args.report_dir, check)
    print(json.dumps(check.report, indent=2, sort_keys=True) if args.json else f"{args.bundle}: {summary_line(check)}")
    return 1 if check.status == "failed" else 0
