"""Peak memory of a build, stage by stage, against edgeqwen's own estimate (`--dry-run`'s build_memory).

    .venv/bin/python benchmarks/build_memory.py --shape Qwen2.5-0.5B --shape Qwen2.5-1.5B [--target raspberry-pi-5]
    .venv/bin/python benchmarks/build_memory.py --demo

For each shape: a random-weight BF16 checkpoint of the published dimensions (written shard by shard,
benchmarks/random_checkpoint.py), then `edgeqwen build --quality fixed --no-cache` with the drift
gate measured (budgets opened wide: random weights have no accuracy to keep; --skip-drift leaves the
gate out). While it runs, the resident memory of the build's whole process tree (the edgeqwen
process, Olive's child, the bundle's worker, the emulator) is summed every 0.1 s from /proc, and
each sample is put to the stage the build's progress line names at that moment (the pipeline's
stage, and within the conversion the engine's pass). Also reported: the largest single process's
peak (ru_maxrss, what `/usr/bin/time -v` prints). Prints a JSON line per build and a markdown table
for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from side_by_side import BIN, random_checkpoint

GB = 1 << 30
PAGE = os.sysconf("SC_PAGE_SIZE")
STAGE = re.compile(r"edgeqwen build: \d+/\d+ , ([a-z][a-z ]*?)(?: \(|$)")  # the pipeline's stage bar
INNER = re.compile(r"^ {2}\w[\w ()]*:.*, ([A-Za-z_]\w*)\]")  # an engine's own bar (olive passes, openvino): its postfix
WIDE_OPEN = ["--max-ppl-ratio", "1000", "--max-mean-kld", "1000", "--min-top1-agreement", "0"]


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and every process below it (children found through /proc)."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    pending.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended between the listing and the read
    return total


class StageTracker:
    """The stage the build's stderr progress last named: 'convert', 'convert / rtn', 'drift', ..."""

    def __init__(self) -> None:
        self.stage, self.inner = "resolve", ""

    def feed(self, line: str) -> None:
        outer = STAGE.search(line)
        if outer:
            self.stage, self.inner = outer.group(1).strip(), ""
            return
        inner = INNER.search(line)
        if inner and self.stage == "convert":
            self.inner = inner.group(1)

    @property
    def name(self) -> str:
        return f"{self.stage} / {self.inner}" if self.inner else self.stage


def run_sampled(command: list[str]) -> dict:
    """Run a build; its wall time, peak tree RSS per stage and overall, and the largest process's ru_maxrss."""
    tracker, peaks, tail = StageTracker(), {}, []
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def read() -> None:
        buffer = b""
        while chunk := process.stderr.read1(4096):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                text = line.decode(errors="replace")
                tracker.feed(text)
                tail.append(text)
                del tail[:-40]
            # tqdm starts each redraw with \r, so the bar drawn last has no end yet: read it now, not at the
            # next redraw (a pass that draws once at its start would be put to the stage before it)
            tracker.feed(buffer.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # its own usage, and its waited children's
        if pid:
            break
        rss = tree_rss(process.pid)
        peaks[tracker.name] = max(peaks.get(tracker.name, 0), rss)
        time.sleep(0.1)
    reader.join(timeout=5)
    seconds = time.monotonic() - started
    returncode = process.returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        raise SystemExit(f"build failed (exit {returncode}):\n" + "\n".join(tail))
    largest = usage.ru_maxrss * 1024
    return {"seconds": round(seconds, 1), "peak_tree_gb": round(max(peaks.values()) / GB, 2),
            "largest_process_gb": round(largest / GB, 2),
            "stages_gb": {stage: round(rss / GB, 2) for stage, rss in peaks.items()}}


def dry_run_estimate(build_args: list[str]) -> dict | None:
    done = subprocess.run([str(BIN / "edgeqwen"), "build", *build_args, "--dry-run"], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout).get("build_memory")


def measure(label: str, model: str | None, args) -> dict:
    out = args.work / f"{label}-{args.target}"
    build_args = ["--target", args.target, "--quality", "fixed", "--out", str(out), "--force"]
    if model:
        build_args += ["--model", model]
    build_args.append("--device-check" if args.device_check else "--no-device-check")
    if args.device_ram:
        build_args += ["--device-ram", f"{args.device_ram:g}"]
    if args.skip_drift:
        build_args.append("--skip-drift")
    elif model:
        build_args += WIDE_OPEN
    estimate = dry_run_estimate(build_args)
    measured = run_sampled([str(BIN / "edgeqwen"), "build", *build_args, "--no-cache"])
    target = f"{args.target} ({args.device_ram:g} GB)" if args.device_ram else args.target
    row = {"model": label, "target": target, "drift_gate": not args.skip_drift,
           "device_check": args.device_check and not args.skip_drift, **measured,
           "estimate": estimate}
    if estimate:
        row["estimate_vs_measured"] = round(estimate["peak_gb"] / measured["peak_tree_gb"], 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", default=[], help="a shipped shape (edgeqwen/assets/shapes)")
    parser.add_argument("--demo", action="store_true", help="also the shipped demo model")
    parser.add_argument("--target", default="raspberry-pi-5")
    parser.add_argument("--skip-drift", action="store_true")
    parser.add_argument("--device-ram", type=float, help="build for this RAM size of the target (e.g. 16: a 16 GB Pi 5)")
    parser.add_argument("--device-check", action=argparse.BooleanOptionalAction, default=True,
                        help="run the device check (default on; an arm64 target's is QEMU and slow for big shapes)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/build-memory"))
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.demo:
        rows.append(measure("demo", None, args))
        print(json.dumps(rows[-1]), flush=True)
    for shape in args.shape:
        checkpoint = random_checkpoint(shape, args.work / f"{shape}-checkpoint")
        rows.append(measure(shape, str(checkpoint), args))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| model | target | drift gate | device check | wall s | peak RSS GB (tree) | largest process GB | "
          "estimate GB | peak stage |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        stage = max(r["stages_gb"], key=r["stages_gb"].get)
        estimate = f"{r['estimate']['peak_gb']:.2f}" if r["estimate"] else "-"
        print(f"| {r['model']} | {r['target']} | {'on' if r['drift_gate'] else 'off'} | "
              f"{'on' if r['device_check'] else 'off'} | {r['seconds']:.0f} | "
              f"{r['peak_tree_gb']:.2f} | {r['largest_process_gb']:.2f} | {estimate} | {stage} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
