"""`edgeqwen build`: model + target (+ recipe) -> a runnable bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeqwen import pipeline
from edgeqwen.backends import backend_for
from edgeqwen.drift.evaluate import DEFAULT_EVAL_TOKENS

EXAMPLES = """Examples:
  edgeqwen build --target raspberry-pi-5                      # the shipped demo model
  edgeqwen build --target x86-64-laptop --precision int8
  edgeqwen build --model Qwen/Qwen2.5-0.5B-Instruct --target android-arm64
  edgeqwen build --model ./my-qwen3 --target jetson-orin-nano --out bundles/jetson
  edgeqwen build --target raspberry-pi-5 --dry-run            # print the plan, build nothing
  edgeqwen build --target android-arm64 --eval-data my_domain.jsonl --max-mean-kld 0.05

Every build measures the bundle against the full-precision model (drift) and refuses to write a
bundle that misses the target's drift budget; the report is then kept in BUNDLE.drift-rejected/.
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
    add_drift_arguments(parser)
    parser.add_argument("--max-ppl-ratio", type=float, help="drift budget: bundle/reference perplexity at most this")
    parser.add_argument("--max-mean-kld", type=float, help="drift budget: mean KL divergence at most this (nats)")
    parser.add_argument("--min-top1-agreement", type=float, help="drift budget: top-1 agreement at least this (0..1)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.set_defaults(handler=handle)


def add_drift_arguments(parser) -> None:
    """Evaluation text options, shared with `edgeqwen eval`."""
    parser.add_argument("--eval-data", type=Path, help="drift text: .txt, or .jsonl of {\"text\"} / {\"messages\"} "
                        "(default: the shipped held-out corpus)")
    parser.add_argument("--eval-tokens", type=int, default=DEFAULT_EVAL_TOKENS,
                        help=f"tokens of eval text to measure drift on (default {DEFAULT_EVAL_TOKENS})")


def handle(args) -> int:
    request = pipeline.BuildRequest(
        target=args.target,
        model=args.model,
        recipe=args.recipe,
        precision=args.precision,
        context_length=args.context_length,
        out=args.out,
        force=args.force,
        eval_data=args.eval_data,
        eval_tokens=args.eval_tokens,
        drift_overrides={
            "max_ppl_ratio": args.max_ppl_ratio,
            "max_mean_kld": args.max_mean_kld,
            "min_top1_agreement": args.min_top1_agreement,
        },
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
