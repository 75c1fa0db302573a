"""`edgeqwen targets [show NAME]`: the device profiles in targets/."""

from __future__ import annotations

import argparse
import json

from edgeqwen.schema import to_dict
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
        print(json.dumps(to_dict(profile), indent=2) if args.json else format_profile(profile))
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
    return "\n".join(lines)
