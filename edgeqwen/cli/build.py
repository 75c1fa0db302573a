"""`edgeqwen build`: model + target (+ recipe) -> a runnable bundle."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from edgeqwen import ladder, pipeline
from edgeqwen.backends import backend_for
from edgeqwen.cache import BuildCache
from edgeqwen.drift.evaldata import MIN_EVAL_TOKENS
from edgeqwen.drift.evaluate import DEFAULT_EVAL_TOKENS, MAX_EVAL_TOKENS
from edgeqwen.errors import EdgeqwenError, PlanError
from edgeqwen.quality import QualityRecord
from edgeqwen.shim.values import real_number, whole_number
from edgeqwen.targets import MAX_CONTEXT_LENGTH, MIN_CONTEXT_LENGTH, target_names

EXAMPLES = """Examples:
  edgeqwen build --target raspberry-pi-5                      # the shipped demo model
  edgeqwen build --target x86-64-laptop --precision int8
  edgeqwen build --model Qwen/Qwen2.5-0.5B-Instruct --target android-arm64
  edgeqwen build --model ./my-qwen3 --target jetson-orin-nano --out bundles/jetson
  edgeqwen build --target raspberry-pi-5 --dry-run            # print the plan, build nothing
  edgeqwen build --target android-arm64 --eval-data my_domain.jsonl --max-mean-kld 0.05
  edgeqwen build --target all --json                          # every target; exit 1 if any failed
  edgeqwen build --target raspberry-pi-5,android-arm64 --out dist/

Every build measures the bundle against the full-precision model (drift) and refuses to write a
bundle that misses the target's drift budget; the report is then kept in BUNDLE.drift-rejected/.
Then the device check runs the bundle on its target's instruction set (arm64 targets under QEMU
user-mode emulation of their core) with the runtime installed as its README says; a bundle that
fails there is not written either (BUNDLE.device-check-failed/).
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="build a bundle for a target device", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", required=True,
                        help="a profile in targets/ (see `edgeqwen targets`), several as a,b,c, or 'all'")
    parser.add_argument("--model", help="Hugging Face id or local folder (default: the shipped demo model)")
    parser.add_argument("--recipe", help="a recipe in recipes/ (default: chosen by the model's family)")
    parser.add_argument("--precision", choices=["int4", "int8", "fp16", "fp32"],
                        help="override the weight precision (implies --quality fixed)")
    parser.add_argument("--rung", help="build one rung of recipes/rungs/ on top of the recipe (implies --quality fixed)")
    parser.add_argument("--quality", choices=["auto", "fixed"], default="auto",
                        help="auto (default): try the rungs of recipes/rungs/, smallest first, and keep the first "
                             "within the drift budget; fixed: build the target + recipe as they are")
    parser.add_argument("--context-length", type=whole_number(MIN_CONTEXT_LENGTH, MAX_CONTEXT_LENGTH),
                        help="override the target's context length (tokens; at most the model's own)")
    parser.add_argument("--out", type=Path,
                        help="bundle folder (default: bundles/MODEL-TARGET); with several targets, the parent folder")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit")
    parser.add_argument("--no-cache", action="store_true", help="build everything afresh (the cache is not read or written)")
    parser.add_argument("--cache-key", action="store_true", help="print the bundle's cache key and exit (for CI caches)")
    add_drift_arguments(parser)
    parser.add_argument("--max-ppl-ratio", type=real_number(1.0, 1000.0), help="drift budget: bundle/reference perplexity at most this")
    parser.add_argument("--max-mean-kld", type=real_number(0.0, 1000.0), help="drift budget: mean KL divergence at most this (nats)")
    parser.add_argument("--min-top1-agreement", type=real_number(0.0, 1.0), help="drift budget: top-1 agreement at least this (0..1)")
    parser.add_argument("--calib-data", type=Path,
                        help="calibration text for the GPTQ / AWQ rungs: .txt, or .jsonl of {\"text\"} / {\"messages\"} "
                             "(default: the train split of the shipped corpus)")
    parser.add_argument("--skip-drift", action="store_true",
                        help="do not measure drift (implies --quality fixed): only for random-weight benchmark models, "
                             "whose accuracy means nothing; the manifest records that the gate was skipped")
    parser.add_argument("--device-check", action=argparse.BooleanOptionalAction, default=None,
                        help="run the finished bundle on its target's instruction set (arm64 under QEMU) with its "
                             "documented runtime before it ships (default: on; EDGEQWEN_DEVICE_CHECK=off turns the "
                             "default off); --no-device-check records the check as not run")
    parser.add_argument("--max-build-memory", type=real_number(0.5, 4096.0), metavar="GB",
                        help="the memory this build may use, in GB (default: what the host has available when it "
                             "starts); a build whose estimated peak stage is over it is refused before any conversion "
                             "(--dry-run prints the estimate per stage)")
    parser.add_argument("--device-ram", type=real_number(0.25, 65536.0), metavar="GB",
                        help="the device's RAM when the target ships in several sizes (its ram_variants_gb, e.g. 16 "
                             "for a 16 GB Raspberry Pi 5): the fit check gives the bundle the profile's share of it")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.set_defaults(handler=handle)


def add_drift_arguments(parser) -> None:
    """Evaluation text options, shared with `edgeqwen eval`."""
    parser.add_argument("--eval-data", type=Path, help="drift text: .txt, or .jsonl of {\"text\"} / {\"messages\"} "
                        "(default: the shipped held-out corpus)")
    parser.add_argument("--eval-tokens", type=whole_number(MIN_EVAL_TOKENS, MAX_EVAL_TOKENS),
                        default=DEFAULT_EVAL_TOKENS,
                        help=f"tokens of eval text to measure drift on (default {DEFAULT_EVAL_TOKENS})")


def make_request(args, target: str, out: Path | None) -> pipeline.BuildRequest:
    return pipeline.BuildRequest(
        target=target,
        model=args.model,
        recipe=args.recipe,
        precision=args.precision,
        context_length=args.context_length,
        out=out,
        force=args.force,
        eval_data=args.eval_data,
        eval_tokens=args.eval_tokens,
        rung=args.rung,
        skip_drift=args.skip_drift,
        calib_data=args.calib_data,
        device_check=device_check_wanted(args),
        max_build_memory_gb=args.max_build_memory,
        device_ram_gb=args.device_ram,
        drift_overrides={
            "max_ppl_ratio": args.max_ppl_ratio,
            "max_mean_kld": args.max_mean_kld,
            "min_top1_agreement": args.min_top1_agreement,
        },
    )


def device_check_wanted(args) -> bool:
    if args.device_check is not None:
        return args.device_check
    return os.environ.get("EDGEQWEN_DEVICE_CHECK", "on").lower() not in ("off", "0", "no", "false")


def quality_mode(args) -> str:
    return "fixed" if args.precision or args.rung or args.skip_drift else args.quality


def run_build(args, request, cache, shared=None) -> pipeline.BuildResult:
    if quality_mode(args) == "auto":
        return ladder.build_auto(request, cache, shared or pipeline.SharedWork())
    return pipeline.build(request, cache=cache, shared=shared)


def handle(args) -> int:
    if args.target == "all" or "," in args.target:
        return build_many(args)
    request = make_request(args, args.target, args.out)
    if args.dry_run:
        print(json.dumps(dry_run_report(request, quality_mode(args)), indent=2))
        return 0
    if args.cache_key:
        quality = QualityRecord(quality_mode(args), request.rung, ())
        print(pipeline.bundle_cache_key(pipeline.resolve(request), request, quality))
        return 0
    result = run_build(args, request, None if args.no_cache else BuildCache())
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


def dry_run_report(request: pipeline.BuildRequest, mode: str) -> dict:
    resolved = pipeline.resolve(request)
    backend = backend_for(resolved.plan.engine)
    rungs = [
        {"rung": c.rung.name, "estimated_weights_mb": round(c.resolved.memory.weights_bytes / 2**20, 2)}
        if c.resolved else {"rung": c.rung.name, "skipped": c.reason}
        for c in (ladder.candidates(request, pipeline.SharedWork()) if mode == "auto" else [])
    ]
    return {
        "quality_ladder": rungs,
        "plan": resolved.plan.to_dict(),
        "plan_hash": resolved.plan.hash(),
        "memory_estimate": resolved.memory.to_dict(),
        "build_memory": resolved.build_memory.to_dict(),
        "destination": str(resolved.destination),
        "engine_config": backend.engine_config(resolved.plan, Path("<model>"), Path("<work>")),
    }


def target_list(spec: str) -> list[str]:
    """The targets named by 'all' (every profile in targets/) or a comma-separated list."""
    if spec == "all":
        return target_names()
    return [name.strip() for name in spec.split(",") if name.strip()]


def build_many(args) -> int:
    """One bundle per target, sharing the reference logits and identical conversions; one failure stops nothing."""
    if args.dry_run or args.cache_key:
        raise PlanError("--dry-run and --cache-key take a single --target")
    cache = None if args.no_cache else BuildCache()
    shared = pipeline.SharedWork()
    parent = args.out or Path("bundles")
    source_name = shared.model(args.model).short_name  # a bad --model fails the whole run, here
    rows = []
    for target in target_list(args.target):
        started = time.monotonic()
        try:
            request = make_request(args, target, parent / f"{source_name}-{target}")
            result = run_build(args, request, cache, shared)
            rows.append({**result.to_dict(), "status": "ok"})
        except EdgeqwenError as e:
            rows.append({"target": target, "status": "failed", "reason": str(e),
                         "seconds": {"total": round(time.monotonic() - started, 2)}})
    failed = [r for r in rows if r["status"] == "failed"]
    print(json.dumps(rows, indent=2) if args.json else summary_table(rows))
    return 1 if failed else 0


def summary_table(rows: list[dict]) -> str:
    header = ("target", "status", "size MB", "drift", "mean KLD", "top-1", "device check", "cache", "seconds")
    lines = [header]
    for r in rows:
        if r["status"] == "ok" and r["drift"].get("skipped"):
            lines.append((r["target"], "ok", f"{r['bundle_bytes'] / 2**20:.1f}", "skipped", "-", "-",
                          r["device_check"]["status"], r["cache_hit"], f"{r['seconds']['total']:.0f}"))
        elif r["status"] == "ok":
            drift = r["drift"]
            lines.append((r["target"], "ok", f"{r['bundle_bytes'] / 2**20:.1f}",
                          "passed" if drift["passed"] else "FAILED", f"{drift['mean_kld']:.4f}",
                          f"{drift['top1_agreement']:.1%}", r["device_check"]["status"], r["cache_hit"],
                          f"{r['seconds']['total']:.0f}"))
        else:
            lines.append((r["target"], r["status"], "-", "-", "-", "-", "-", "-",
                          f"{r.get('seconds', {}).get('total', 0):.0f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    table = "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
    notes = [f"  {r['target']}: {r['reason'].splitlines()[0]}" for r in rows if r["status"] != "ok"]
    return table + ("\n\n" + "\n".join(notes) if notes else "")
