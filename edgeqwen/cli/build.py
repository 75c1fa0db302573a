"""`edgeqwen build`: model + target (+ recipe) -> a runnable bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeqwen import pipeline
from edgeqwen.backends import backend_for

EXAMPLES = """Examples:
  edgeqwen build --target raspberry-pi-5                      # the shipped demo model
  edgeqwen build --target x86-64-laptop --precision int8
  edgeqwen build --model Qwen/Qwen2.5-0.5B-Instruct --target android-arm64
  edgeqwen build --model ./my-qwen3 --target jetson-orin-nano --out bundles/jetson
  edgeqwen build --target raspberry-pi-5 --dry-run            # print the plan, build nothing
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="build a bundle for a target device", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", required=True, help="a profile in targets/ (see `edgeqwen targets`)")
    parser.add_argument("--model", help="Hugging Face id or local folder (default: the shipped demo model)")
    parser.add_argument("--recipe", help="a recipe in recipes/ (default: chosen by the model's family)")
    parser.add_argument("--precision", choices=["int4", "int8", "fp16", "fp32"], help="override the weight precision")
    parser.add_argument("--context-length", type=int, help="override the target's context length (tokens)")
    parser.add_argument("--out", type=Path, help="bundle folder (default: bundles/MODEL-TARGET)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    request = pipeline.BuildRequest(
        target=args.target,
        model=args.model,
        recipe=args.recipe,
        precision=args.precision,
        context_length=args.context_length,
        out=args.out,
        force=args.force,
    )
    if args.dry_run:
        resolved = pipeline.resolve(request)
        backend = backend_for(resolved.plan.engine)
        report = {
            "plan": resolved.plan.to_dict(),
            "plan_hash": resolved.plan.hash(),
            "memory_estimate": resolved.memory.to_dict(),
            "destination": str(resolved.destination),
            "olive_workflow": backend.olive_workflow(resolved.plan, Path("<model>"), Path("<work>")),
        }
        print(json.dumps(report, indent=2))
        return 0
    result = pipeline.build(request)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0
