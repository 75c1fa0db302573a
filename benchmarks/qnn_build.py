"""Build time, peak memory and bundle size of Snapdragon NPU bundles, on random-weight Qwen shapes.

    .venv/bin/python benchmarks/qnn_build.py [--shape Qwen2.5-0.5B --shape Qwen3-0.6B] [--eval-tokens 256]

For each shape: a random-weight BF16 checkpoint of the published dimensions (no download), then
`edgeqwen build --target snapdragon-x-elite-npu --quality fixed --no-cache --no-device-check`, with the
drift gate measured on the HTP simulator and the CPU provider (budgets opened wide: random weights have
no accuracy to keep). Also the shipped demo model, gated for real. Wall time and peak RSS of the build
and its children (wait4). Prints one JSON line per build and a table; the figures of record go into
benchmarks/RESULTS.md by hand, with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from side_by_side import BIN, random_checkpoint, run_timed

TARGET = "snapdragon-x-elite-npu"
MB = 1 << 20


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def build(model: str | None, out: Path, eval_tokens: int, gate_wide: bool) -> dict:
    command = [str(BIN / "edgeqwen"), "build", "--target", TARGET, "--out", str(out), "--force", "--no-cache",
               "--quality", "fixed", "--no-device-check", "--eval-tokens", str(eval_tokens)]
    if model:
        command += ["--model", model]
    if gate_wide:
        command += ["--max-ppl-ratio", "1000", "--max-mean-kld", "1000", "--min-top1-agreement", "0"]
    timed = run_timed(command, out, f"edgeqwen build {TARGET} ({model or 'demo'})")
    drift = json.loads((out / "drift.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "model": model or "demo",
        "seconds": timed["seconds"],
        "peak_rss_mb": round(timed["peak_rss_bytes"] / MB),
        "bundle_mb": round(folder_bytes(out) / MB, 1),
        "npu_bundle_mb": round((folder_bytes(out) - folder_bytes(out / "cpu")) / MB, 1),
        "fp16_checkpoint_mb": round(manifest["model"]["fp16_checkpoint_bytes"] / MB, 1),
        "drift_npu": {k: drift["summary"][k] for k in ("mean_kld", "top1_agreement", "ppl_ratio")},
        "drift_cpu": {k: drift["also_measured"]["cpu"]["summary"][k] for k in ("mean_kld", "top1_agreement",
                                                                              "ppl_ratio")},
        "off_npu_nodes": manifest["engine"]["qnn"]["off_npu_nodes"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", help="a shipped shape (edgeqwen/assets/shapes); repeatable")
    parser.add_argument("--eval-tokens", type=int, default=256)
    parser.add_argument("--work", type=Path, default=None,
                        help="where checkpoints and bundles go (default: a temp dir)")
    parser.add_argument("--no-demo", action="store_true", help="leave out the demo model's build")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgeqwen-qnn-bench-"))
    rows = []
    if not args.no_demo:
        rows.append(build(None, work / "demo", 1024, gate_wide=False))
        print(json.dumps(rows[-1]), flush=True)
    for shape in args.shape or ["Qwen2.5-0.5B", "Qwen3-0.6B"]:
        checkpoint = random_checkpoint(shape, work / f"{shape}-checkpoint")
        rows.append({"shape": shape, **build(str(checkpoint), work / shape, args.eval_tokens, gate_wide=True)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| model | build s | peak RSS MB | bundle MB (NPU part) | FP16 MB | drift NPU KLD / top-1 "
          "| CPU KLD / top-1 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        npu, cpu = r["drift_npu"], r["drift_cpu"]
        print(f"| {r.get('shape', 'demo')} | {r['seconds']:.0f} | {r['peak_rss_mb']:,} | {r['bundle_mb']} "
              f"({r['npu_bundle_mb']}) | {r['fp16_checkpoint_mb']} | {npu['mean_kld']:.4f} / "
              f"{npu['top1_agreement']:.1%} | {cpu['mean_kld']:.4f} / {cpu['top1_agreement']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
