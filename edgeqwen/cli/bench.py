"""`edgeqwen bench BUNDLE`: how fast a bundle runs here, against this host's roofline and its target's."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from edgeqwen.bench.bandwidth import measure_read_bandwidth
from edgeqwen.bench.measure import bench_folder, speed_report
from edgeqwen.errors import ProfileError
from edgeqwen.shim.values import whole_number
from edgeqwen.targets import load_target

MB = 1024 * 1024
EXAMPLES = """Examples:
  edgeqwen bench bundles/demo-qwen3-4l-h128-raspberry-pi-5
  edgeqwen bench bundles/demo-qwen3-4l-h128-x86-64-laptop --prompt-tokens 512 --new-tokens 64 --runs 5 --json

Runs the bundle in its own runtime on this machine's CPU, in a child process: one warm-up run, then
--runs timed runs of a --prompt-tokens prompt followed by exactly --new-tokens generated tokens.
Reports time to first token, prefill and decode tokens/s (median and range), peak RSS and size; this
host's memory bandwidth (measured) and the decode ceiling it sets for the bundle (every weight read
once per token); and, for an edgeqwen bundle, the decode rate predicted on its target from the
target profile's memory bandwidth. Also accepts a stock ONNX Runtime GenAI or OpenVINO export, or a
Hugging Face checkpoint (run by PyTorch at float32).
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure a bundle's speed and memory here", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--prompt-tokens", type=whole_number(1, 1 << 20), default=128, help="prompt length (default 128)")
    parser.add_argument("--new-tokens", type=whole_number(2, 1 << 20), default=128, help="tokens generated per run (default 128)")
    parser.add_argument("--runs", type=whole_number(1, 1000), default=3,
                        help="timed runs after one warm-up (default 3)")
    parser.add_argument("--threads", type=whole_number(0, 1024), default=None,
                        help=f"compute threads (default: this machine's {os.cpu_count()} cores; 0: as the bundle "
                             "sets them, or the runtime's own default where it sets none)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    result = bench_folder(args.bundle, args.prompt_tokens, args.new_tokens, args.runs, args.threads)
    report = speed_report(result, measure_read_bandwidth(), bundle_target(args.bundle))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def bundle_target(folder: Path):
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        return load_target(json.loads(manifest.read_text())["target"])
    except ProfileError:  # built from a profile this checkout does not have: no prediction
        return None


def format_report(r: dict) -> str:
    def spread(s, fmt):
        return f"{fmt.format(s['median'])} (range {fmt.format(s['low'])} - {fmt.format(s['high'])})"

    lines = [
        f"{r['folder']} ({r['kind']}), {r['threads'] or 'default'} threads, {r['prompt_tokens']}-token prompt + "
        f"{r['new_tokens']} new tokens, median of {r['runs']} runs",
        f"  first token  {spread({k: v * 1000 for k, v in r['ttft_s'].items()}, '{:.0f} ms')}",
        f"  prefill      {spread(r['prefill_tok_s'], '{:.0f} tok/s')}",
        f"  decode       {spread(r['decode_tok_s'], '{:.1f} tok/s')}",
        f"  peak RSS     {r['peak_rss_bytes'] / MB:.0f} MB",
        f"  size         {r['folder_bytes'] / MB:.1f} MB ({r['model_bytes'] / MB:.1f} MB model files)",
        f"  roofline     {r['roofline_tok_s']:.1f} tok/s here ({r['host_bandwidth_gbps']:.1f} GB/s measured / "
        f"{r['bytes_per_token'] / MB:.1f} MB of weights read per token): {r['roofline_fraction']:.0%} achieved",
    ]
    if "target" in r:
        t = r["target"]
        if t["predicted_decode_tok_s"] is None:
            lines.append(f"  on {t['name']}  decode ceiling {t['roofline_tok_s']:.1f} tok/s ({t['memory_bandwidth_gbps']:g} GB/s; "
                         f"no prediction for its {t['device'].upper()}: measured here on the CPU)")
            return "\n".join(lines)
        lines.append(
            f"  on {t['name']}  ~{t['predicted_decode_tok_s']:.1f} tok/s decode predicted ({t['memory_bandwidth_gbps']:g} "
            f"GB/s: ceiling {t['roofline_tok_s']:.1f} tok/s x the {r['roofline_fraction']:.0%} achieved here)"
        )
    return "\n".join(lines)
