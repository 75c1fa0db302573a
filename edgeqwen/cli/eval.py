"""`edgeqwen eval BUNDLE`: measure an existing bundle's drift against its source model again."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeqwen.bundle.manifest import manifest_plan, read_manifest
from edgeqwen.cli.build import add_drift_arguments
from edgeqwen.drift.evaluate import DEFAULT_EVAL_TOKENS, measure_drift
from edgeqwen.drift.report import write_report
from edgeqwen.errors import ModelError
from edgeqwen.models import resolve_model
from edgeqwen.pipeline import drift_line

EXAMPLES = """Examples:
  edgeqwen eval bundles/demo-qwen3-4l-h128-raspberry-pi-5
  edgeqwen eval BUNDLE --eval-data support_tickets.jsonl --report-dir reports/tickets
  edgeqwen eval BUNDLE --model ./my-qwen3 --json      # a bundle built from a local folder

Exits 1 when the bundle misses the drift budget stored in its manifest.
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="re-measure a bundle's accuracy drift", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--model", help="the source model, if the bundle was built from a local folder")
    parser.add_argument("--report-dir", type=Path, help="write drift.json, drift.md and drift.png here")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_drift_arguments(parser)
    parser.set_defaults(handler=handle)


def source_model(manifest: dict, model_arg: str | None):
    model = manifest["model"]
    if model_arg:
        source = resolve_model(model_arg)
    elif model["origin"] == "demo":
        source = resolve_model(None)
    elif model["origin"] == "huggingface":
        source = resolve_model(model["id"])
    else:
        raise ModelError(f"the bundle was built from a local folder ({model['id']}); pass it with --model")
    if source.weights_sha256 != model["weights_sha256"]:
        raise ModelError(
            f"{source.path} is not the model this bundle was built from (weights sha256 "
            f"{source.weights_sha256[:12]}..., the manifest says {model['weights_sha256'][:12]}...)"
        )
    return source


def eval_tokens_of(args) -> int:
    """--eval-tokens, or, when neither text nor length is given, the build's own measurement's length."""
    built_report = args.bundle / "drift.json"
    if args.eval_data is None and args.eval_tokens == DEFAULT_EVAL_TOKENS and built_report.is_file():
        return json.loads(built_report.read_text())["eval_data"]["tokens"]
    return args.eval_tokens


def handle(args) -> int:
    manifest = read_manifest(args.bundle)
    source = source_model(manifest, args.model)
    eval_tokens = eval_tokens_of(args)
    plan = manifest_plan(args.bundle, manifest)
    report, per_token_kld = measure_drift(args.bundle, plan, source.path, args.eval_data, eval_tokens)
    if args.report_dir:
        write_report(args.report_dir, report, per_token_kld)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"{args.bundle}: {drift_line(report)}")
        for miss in report["miss_descriptions"]:
            print(f"  - {miss}")
    return 0 if report["passed"] else 1
