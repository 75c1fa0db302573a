"""Side-by-side speed benchmark: edgeqwen bundles against the stock toolchain defaults, on this host.

    .venv/bin/python benchmarks/side_by_side.py            # both shapes, ~25 minutes on 2 cores
    .venv/bin/python benchmarks/side_by_side.py --shapes Qwen2.5-0.5B --rounds 2

For each model shape in edgeqwen/assets/shapes (the published dimensions of Qwen2.5-0.5B and
Qwen3-0.6B) it writes a random-weight BF16 checkpoint (no download), then builds:
  edgeqwen x86-64-laptop    edgeqwen build --target x86-64-laptop --skip-drift
  edgeqwen raspberry-pi-5   edgeqwen build --target raspberry-pi-5 --skip-drift (runs here too: a CPU bundle)
  stock ORT GenAI builder   python -m onnxruntime_genai.models.builder -i CKPT -p int4 -e cpu
  stock optimum-cli OV      optimum-cli export openvino -m CKPT --weight-format int4
  PyTorch FP32              the checkpoint itself, in transformers
and times one more x86-64-laptop build with the drift gate measured (budgets opened wide: random
weights carry no accuracy meaning, only the gate's cost matters here).

Measurement is interleaved: each round runs every contender once (a fresh process each: one warm-up,
one timed run of a new prompt), so drift in the host's load spreads over all of them; medians over
rounds are reported. The edgeqwen bundles run with --threads (default: this host's CPUs), which is
what their shim runs where the target's thread count is more than the host has; the stock folders
run twice: with the same thread count ("equal threads": what the model files alone are worth) and as
shipped (no thread setting: the runtime's own default, which is what a user of the stock tool gets).
Both ratios are reported. Output: a table on stdout, RESULTS.json and RESULTS.png in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from edgeqwen.bench.measure import Spread, bench_folder
from edgeqwen.shapes import shape_names

BIN = Path(sys.executable).parent
EDGEQWEN = ["edgeqwen x86-64-laptop", "edgeqwen raspberry-pi-5"]
STOCK = ["stock ORT GenAI builder", "stock optimum-cli OV", "PyTorch FP32"]  # at --threads, as edgeqwen
AS_SHIPPED = {"stock ORT GenAI builder, as shipped": "stock ORT GenAI builder",  # the runtime's default threads
              "stock optimum-cli OV, as shipped": "stock optimum-cli OV"}
MB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(shape for shape in ("Qwen2.5-0.5B", "Qwen3-0.6B")))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds (default 3)")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-gated-build", action="store_true", help="skip timing a build with the drift gate")
    parser.add_argument("--reuse-builds", action="store_true",
                        help="measure the builds an earlier run left in --out instead of building again")
    args = parser.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = sorted(set(shapes) - set(shape_names()))
    if unknown:
        parser.error(f"--shapes: unknown {', '.join(unknown)}; shipped shapes: {', '.join(shape_names())}")
    args.out.mkdir(parents=True, exist_ok=True)

    # In a child: this process starts every build and worker, and Linux's ru_maxrss of a child counts
    # this process's own RSS at fork, so it stays small (no 512 MB buffer, no model in it).
    bandwidth = float(in_child("from edgeqwen.bench.bandwidth import measure_read_bandwidth as m; "
                               f"print(m({args.threads}))"))
    results = {"host": host_facts(bandwidth, args), "shapes": {}}
    for shape in shapes:
        results["shapes"][shape] = bench_shape(shape, args, bandwidth)
        (args.out / "RESULTS.json").write_text(json.dumps(results, indent=2))  # partial results survive a crash
    print(format_tables(results))
    draw_chart(results, args.out / "RESULTS.png")
    print(f"\nwrote {args.out / 'RESULTS.json'} and {args.out / 'RESULTS.png'}")
    return 0


def host_facts(bandwidth: float, args) -> dict:
    from edgeqwen.bundle.manifest import tool_versions

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": args.threads, "read_bandwidth_gbps": round(bandwidth / 1e9, 1),
            "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "rounds": args.rounds,
            "tools": tool_versions()}


def bench_shape(shape: str, args, bandwidth: float) -> dict:
    work = args.out / shape
    checkpoint = random_checkpoint(shape, work / "checkpoint")
    records = work / "builds.json"  # how long each build took, for --reuse-builds
    reused = json.loads(records.read_text()) if args.reuse_builds and records.is_file() else {}

    def timed(command: list[str], folder: Path, what: str) -> dict:
        if what in reused and Path(reused[what]["folder"]).is_dir():
            return reused[what]
        reused[what] = run_timed(command, folder, what)
        records.write_text(json.dumps(reused, indent=2))
        return reused[what]

    def edgeqwen_build(target: str, out: Path, gate: bool = False) -> dict:
        return timed(*edgeqwen_build_command(checkpoint, target, out, gate))

    builds = {
        "edgeqwen x86-64-laptop": edgeqwen_build("x86-64-laptop", work / "edgeqwen-x86-64-laptop"),
        "edgeqwen raspberry-pi-5": edgeqwen_build("raspberry-pi-5", work / "edgeqwen-raspberry-pi-5"),
        "stock ORT GenAI builder": timed([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoint),
                                          "-o", str(work / "stock-ort"), "-p", "int4", "-e", "cpu",
                                          "-c", str(work / "stock-ort-cache")], work / "stock-ort", "stock ORT build"),
        "stock optimum-cli OV": timed([str(BIN / "optimum-cli"), "export", "openvino", "-m", str(checkpoint),
                                       "--task", "text-generation-with-past", "--weight-format", "int4", str(work / "stock-ov")], work / "stock-ov",
                                      "optimum-cli export"),
        "PyTorch FP32": {"folder": str(checkpoint), "seconds": 0.0, "peak_rss_bytes": 0},
    }
    builds.update({shipped: builds[stock] for shipped, stock in AS_SHIPPED.items()})
    shutil.rmtree(work / "stock-ort-cache", ignore_errors=True)
    gated = None
    if not args.no_gated_build:
        gated = edgeqwen_build("x86-64-laptop", work / "edgeqwen-x86-64-laptop-gated", gate=True)
    rounds: dict[str, list] = {name: [] for name in builds}
    progress = tqdm(total=args.rounds * len(builds), desc=f"{shape}: measuring", unit="run")
    for _ in range(args.rounds):
        for name, build in builds.items():
            progress.set_postfix_str(name)
            threads = 0 if name in AS_SHIPPED else args.threads  # 0: no thread setting of our own
            rounds[name].append(bench_folder(Path(build["folder"]), args.prompt_tokens, args.new_tokens, 1, threads))
            progress.update(1)
    progress.close()
    bf16_bytes = sum(p.stat().st_size for p in checkpoint.glob("*.safetensors"))
    rows = {name: summarise(rounds[name], builds[name], bandwidth, bf16_bytes) for name in builds}
    best_stock = max(rows[name]["decode_tok_s"]["median"] for name in STOCK)
    best_shipped = max(rows[name]["decode_tok_s"]["median"] for name in AS_SHIPPED)
    for name in EDGEQWEN:
        rows[name]["decode_vs_best_stock"] = rows[name]["decode_tok_s"]["median"] / best_stock
        rows[name]["decode_vs_best_stock_as_shipped"] = rows[name]["decode_tok_s"]["median"] / best_shipped
    return {"bf16_checkpoint_bytes": bf16_bytes, "contenders": rows, "gated_build": gated}


def summarise(results, build: dict, bandwidth: float, bf16_bytes: int) -> dict:
    first = results[0]
    decode = Spread.of([r.decode_tok_s.median for r in results])
    ceiling = first.roofline(bandwidth)
    return {
        "folder": build["folder"],
        "decode_tok_s": decode.__dict__,
        "prefill_tok_s": Spread.of([r.prefill_tok_s.median for r in results]).__dict__,
        "ttft_s": Spread.of([r.ttft_s.median for r in results]).__dict__,
        "peak_rss_bytes": max(r.peak_rss_bytes for r in results),
        "model_bytes": first.model_bytes,
        "size_vs_bf16": first.model_bytes / bf16_bytes,
        "bytes_per_token": first.bytes_per_token,
        "roofline_tok_s": ceiling,
        "roofline_fraction": decode.median / ceiling,
        "build_seconds": build["seconds"],
        "build_peak_rss_bytes": build["peak_rss_bytes"],
    }


def in_child(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          cwd=Path(__file__).parent)  # so `import side_by_side` works
    return done.stdout.strip()


def random_checkpoint(shape: str, folder: Path) -> Path:
    if not folder.is_dir():  # written beside it and renamed: a folder that is there is complete
        in_child(f"from random_checkpoint import write_random_checkpoint as w; from pathlib import Path; "
                 f"w({shape!r}, Path({str(folder.resolve())!r}))")
    return folder


def edgeqwen_build_command(checkpoint: Path, target: str, out: Path, gate: bool) -> tuple[list[str], Path, str]:
    command = [str(BIN / "edgeqwen"), "build", "--model", str(checkpoint), "--target", target, "--out", str(out),
               "--force", "--no-cache", "--quality", "fixed"]
    if gate:  # measured, but random weights cannot meet a real budget
        command += ["--max-ppl-ratio", "1000", "--max-mean-kld", "1000", "--min-top1-agreement", "0"]
    else:
        command.append("--skip-drift")
    return command, out, f"edgeqwen build {target}{' (drift gate)' if gate else ''}"


def run_timed(command: list[str], folder: Path, what: str) -> dict:
    """Run a build to completion; its wall time and peak RSS (its own and its children's)."""
    print(f"-- {what}", flush=True)
    if folder.exists() and "edgeqwen" not in command[0]:
        shutil.rmtree(folder)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr))
    reader.start()
    # wait4, not wait: the resource usage of this child (and the children it waited for) alone.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{what} failed:\n{''.join(stderr)[-3000:]}")
    return {"folder": str(folder), "seconds": round(seconds, 1), "peak_rss_bytes": usage.ru_maxrss * 1024}


def format_tables(results: dict) -> str:
    host = results["host"]
    out = [f"Host: {host['cpu']}, {host['cores']} cores, {host['threads']} threads, read bandwidth "
           f"{host['read_bandwidth_gbps']} GB/s (measured); {host['prompt_tokens']}-token prompt, "
           f"{host['new_tokens']} new tokens, median of {host['rounds']} interleaved rounds"]
    header = ("", "decode tok/s", "vs stock, equal threads", "vs stock as shipped", "prefill tok/s", "TTFT ms",
              "peak RSS MB", "model MB", "x BF16", "roofline", "build s")
    for shape, data in results["shapes"].items():
        rows = [header]
        for name, r in data["contenders"].items():
            rows.append((
                name, f"{r['decode_tok_s']['median']:.1f} ({r['decode_tok_s']['low']:.1f}-{r['decode_tok_s']['high']:.1f})",
                f"{r['decode_vs_best_stock']:.2f}x" if "decode_vs_best_stock" in r else "",
                f"{r['decode_vs_best_stock_as_shipped']:.2f}x" if "decode_vs_best_stock_as_shipped" in r else "",
                f"{r['prefill_tok_s']['median']:.0f}", f"{r['ttft_s']['median'] * 1000:.0f}",
                f"{r['peak_rss_bytes'] / MB:.0f}", f"{r['model_bytes'] / MB:.0f}", f"{r['size_vs_bf16']:.2f}",
                f"{r['roofline_fraction']:.0%} of {r['roofline_tok_s']:.0f}", f"{r['build_seconds']:.0f}",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        out.append(f"\n{shape} (random weights, BF16 checkpoint {data['bf16_checkpoint_bytes'] / MB:.0f} MB)")
        out.extend("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
        if data["gated_build"]:
            g = data["gated_build"]
            out.append(f"  edgeqwen x86-64-laptop build with the drift gate: {g['seconds']:.0f} s, "
                       f"peak RSS {g['peak_rss_bytes'] / MB:.0f} MB")
    return "\n".join(out)


def draw_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(results["shapes"])
    figure, axes = plt.subplots(1, len(shapes), figsize=(6 * len(shapes), 4), squeeze=False)
    for axis, shape in zip(axes[0], shapes):
        contenders = results["shapes"][shape]["contenders"]
        names = list(contenders)
        values = [contenders[n]["decode_tok_s"]["median"] for n in names]
        colors = ["tab:green" if n.startswith("edgeqwen") else "tab:gray" for n in names]
        axis.barh(names, values, color=colors)
        axis.invert_yaxis()
        axis.set_xlabel("decode tokens/s (median)")
        axis.set_title(f"{shape}, {results['host']['threads']} threads unless as shipped")
        for y, v in enumerate(values):
            axis.text(v, y, f" {v:.1f}", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
