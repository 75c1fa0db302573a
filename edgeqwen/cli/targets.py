"""`edgeqwen targets [show NAME]`: the device profiles in targets/."""

from __future__ import annotations

import argparse
import json

from edgeqwen.bench.predict import predict_decode
from edgeqwen.models import resolve_model
from edgeqwen.schema import to_dict
from edgeqwen.shapes import shape_names, shape_source
from edgeqwen.targets import load_all_targets, load_target

EXAMPLES = """Examples:
  edgeqwen targets
  edgeqwen targets show raspberry-pi-5
  edgeqwen targets show jetson-orin-nano --json
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "targets", help="list target device profiles", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    parser.add_argument("name", nargs="?", help="target name (with `show`)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    if args.action == "show":
        if not args.name:
            raise SystemExit("edgeqwen targets show: name a target, e.g. `edgeqwen targets show raspberry-pi-5`")
        profile = load_target(args.name)
        if args.json:
            print(json.dumps({**to_dict(profile), "decode_predictions": decode_predictions(profile)}, indent=2))
        else:
            print(format_profile(profile))
        return 0
    profiles = load_all_targets()
    if args.json:
        print(json.dumps([to_dict(p) for p in profiles], indent=2))
    else:
        print(format_table(profiles))
    return 0


def format_table(profiles) -> str:
    header = ("target", "runtime", "device", "weights", "arch", "RAM", "GB/s", "context", "budget")
    rows = [header] + [
        (
            p.name,
            p.runtime.engine,
            p.runtime.device,
            f"{p.quantization.weights}/b{p.quantization.block_size}",
            p.hardware.cpu_arch,
            f"{p.hardware.ram_gb:g} GB",
            f"{p.hardware.memory_bandwidth_gbps:g}",
            str(p.limits.context_length),
            f"{p.limits.memory_budget_mb} MB",
        )
        for p in profiles
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def format_profile(p) -> str:
    data = to_dict(p)
    lines = [f"{p.name}: {p.description}", f"  file: {p.path}"]
    for section in ("hardware", "runtime", "quantization", "limits", "drift"):
        lines.append(f"  [{section}]")
        lines.extend(f"    {key} = {value}" for key, value in data[section].items())
    lines.append("  decode speed (memory-bandwidth bound; `edgeqwen bench BUNDLE` measures a built one):")
    for row in decode_predictions(p):
        lines.append(
            f"    {row['model']:<32} {row['parameters'] / 1e6:>6.0f}M params  {row['mb_per_token']:>7.1f} MB/token  "
            f"ceiling {row['ceiling_tok_s']:>6.1f} tok/s" + predicted_text(row)
        )
    return "\n".join(lines)


def predicted_text(row: dict) -> str:
    return f"  predicted ~{row['predicted_tok_s']:.1f} tok/s" if row["predicted_tok_s"] else ""


def decode_predictions(profile) -> list[dict]:
    """The shipped demo model and the published Qwen shapes, planned for this target."""
    sources = [resolve_model(None)] + [shape_source(name) for name in shape_names()]
    rows = []
    for source in sources:
        prediction = predict_decode(source, profile)
        if prediction is not None:
            rows.append({
                "model": prediction.model_id,
                "parameters": prediction.parameters,
                "mb_per_token": round(prediction.bytes_per_token / 2**20, 1),
                "ceiling_tok_s": round(prediction.ceiling_tok_s, 1),
                "predicted_tok_s": round(prediction.predicted_tok_s, 1) if prediction.predicted_tok_s else None,
            })
    return rows
