"""Try target-profile variants for speed: build each (random-weight shape), bench them interleaved.

    .venv/bin/python benchmarks/sweep.py --target x86-64-laptop --shape Qwen2.5-0.5B \\
        --variant b32:block_size=32 --variant b64:block_size=64 --variant b128:block_size=128

Each variant is the target profile with [quantization] / [runtime] keys replaced (KEY=VALUE, comma
separated; the section is found by key). Every variant is also built from the shipped demo model
with the drift gate, so its speed comes with the accuracy it costs on a trained model. Prints a
table; the figures of record go into benchmarks/RESULTS.md by hand, with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from side_by_side import random_checkpoint

from edgeqwen.bench.measure import Spread, bench_folder
from edgeqwen.targets import targets_dir

BIN = Path(sys.executable).parent


def toml_value(text: str):
    """128 -> 128, false -> False, float -> "float": numbers and booleans as such, anything else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def variant_profile(base: dict, name: str, changes: str) -> str:
    profile = json.loads(json.dumps(base))
    profile["name"] = name
    for change in filter(None, changes.split(",")):
        key, value = change.split("=", 1)
        section = next(s for s in ("quantization", "runtime", "limits") if key in profile[s])
        profile[section][key] = toml_value(value)
    lines = [f'name = "{name}"', f'description = "{profile["description"]} ({changes})"']
    for section in ("hardware", "runtime", "quantization", "limits", "drift"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in profile[section].items()]
    return "\n".join(lines) + "\n"


def build(model: str, target: str, out: Path, env: dict, skip_drift: bool) -> dict:
    command = [str(BIN / "edgeqwen"), "build", "--model", model, "--target", target, "--out", str(out), "--force",
               "--quality", "fixed", "--json"] + (["--skip-drift"] if skip_drift else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{target}: build failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--shape", default="Qwen2.5-0.5B")
    parser.add_argument("--variant", action="append", required=True, help="NAME:KEY=VALUE[,KEY=VALUE]")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    base = tomllib.loads((targets_dir() / f"{args.target}.toml").read_text())
    profiles = Path(tempfile.mkdtemp(prefix="edgeqwen-sweep-targets-"))
    for path in targets_dir().glob("*.toml"):
        shutil.copy(path, profiles)
    variants = dict(v.split(":", 1) for v in args.variant)
    for name, changes in variants.items():
        (profiles / f"{args.target}~{name}.toml").write_text(variant_profile(base, f"{args.target}~{name}", changes))
    env = {**os.environ, "EDGEQWEN_TARGETS_DIR": str(profiles)}
    checkpoint = random_checkpoint(args.shape, args.out / args.shape / "checkpoint")

    folders, drift = {}, {}
    for name in variants:
        target = f"{args.target}~{name}"
        print(f"-- {name}: build {args.shape} and the demo model", flush=True)
        folders[name] = args.out / args.shape / f"sweep-{target}"
        build(str(checkpoint), target, folders[name], env, skip_drift=True)
        drift[name] = build("demo", target, args.out / "demo" / f"sweep-{target}", env, skip_drift=False)["drift"]
    decode: dict[str, list] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, folder in folders.items():
            decode[name].append(bench_folder(folder, 128, 128, 1, args.threads))
    print(f"\n{args.target} variants, {args.shape} random weights, {args.threads} threads, {args.rounds} rounds")
    print("variant  changes  decode tok/s (range)  prefill tok/s  model MB  demo mean KLD  demo top-1")
    for name, results in decode.items():
        d = Spread.of([r.decode_tok_s.median for r in results])
        p = Spread.of([r.prefill_tok_s.median for r in results])
        print(f"{name}  {variants[name]}  {d.median:.1f} ({d.low:.1f}-{d.high:.1f})  {p.median:.0f}  "
              f"{results[0].model_bytes / 2**20:.0f}  {drift[name]['mean_kld']:.4f}  {drift[name]['top1_agreement']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
