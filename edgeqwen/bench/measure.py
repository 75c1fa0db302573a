"""Benchmark one model folder: timed runs in a child process, summarised next to the roofline.

Any folder edgeqwen can run is accepted, so the side-by-side benchmark compares like with like: an
edgeqwen bundle runs through its own shim's worker mode (the code the device runs), another tool's ONNX
Runtime GenAI or OpenVINO export through this edgeqwen's shim, a Hugging Face checkpoint in PyTorch
(bench/pytorch_worker.py).
Every contender gets the same prompts: consecutive slices of real text from the shipped corpus in
Qwen's tokenizer (shared by Qwen2.5 and Qwen3), a different one per run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeqwen.backends import backend_for
from edgeqwen.bench.bandwidth import decode_ceiling
from edgeqwen.bench.traffic import TRANSFORMERS, bytes_per_token, folder_kind
from edgeqwen.bundle.worker import BundleWorker
from edgeqwen.demo.assets import tokenizer_source_dir
from edgeqwen.drift.evaldata import load_eval_data
from edgeqwen.errors import BenchError, WorkerError


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class BenchResult:
    folder: str
    kind: str
    prompt_tokens: int
    new_tokens: int
    threads: int
    runs: int
    ttft_s: Spread
    prefill_tok_s: Spread
    decode_tok_s: Spread
    peak_rss_bytes: int
    folder_bytes: int
    model_bytes: int
    bytes_per_token: int

    def roofline(self, bandwidth: float) -> float:
        return decode_ceiling(bandwidth, self.bytes_per_token)

    def to_dict(self) -> dict:
        return asdict(self)


def prompts(count: int, length: int) -> list[list[int]]:
    """`count` different prompts of `length` tokens each (the corpus repeats if it runs out)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_source_dir() / "tokenizer.json"))
    text = "\n\n".join(r.get("text", "") for r in load_eval_data().records)
    ids = tokenizer.encode(text).ids
    ids = ids * (count * length // len(ids) + 1)
    return [ids[i * length : (i + 1) * length] for i in range(count)]


def folder_sizes(folder: Path, kind: str) -> tuple[int, int]:
    """All files, and the model's own (its graphs and weights; a checkpoint's safetensors)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    if kind == TRANSFORMERS:
        model = [p for p in files if p.suffix == ".safetensors"]
    else:
        model = [folder / name for names in backend_for(kind).model_files(folder).values() for name in names]
    return sum(p.stat().st_size for p in files), sum(p.stat().st_size for p in model)


def bench_folder(folder: Path, prompt_tokens: int, new_tokens: int, runs: int, threads: int | None = None) -> BenchResult:
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchError(f"{folder}: no such folder; give a bundle folder, e.g. bundles/demo-qwen3-4l-h128-raspberry-pi-5")
    threads = (os.cpu_count() or 1) if threads is None else threads
    for name, value, low in (("--prompt-tokens", prompt_tokens, 1), ("--new-tokens", new_tokens, 2), ("--runs", runs, 1),
                             ("--threads", threads, 0)):
        if value < low:
            raise BenchError(f"{name} {value}: must be at least {low}")
    try:
        kind = folder_kind(folder)
    except ValueError as e:
        raise BenchError(str(e)) from None
    inputs = prompts(runs + 1, prompt_tokens)
    if kind == TRANSFORMERS:
        measured = run_pytorch_worker({"folder": str(folder.resolve()), "prompts": inputs, "new_tokens": new_tokens,
                                       "threads": threads})
    else:
        measured = run_shim_worker(folder, kind, inputs, new_tokens, threads)
    runs_ = measured["runs"]
    total_bytes, model_bytes = folder_sizes(folder, kind)
    return BenchResult(
        folder=str(folder),
        kind=kind,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        threads=threads,
        runs=runs,
        ttft_s=Spread.of([r["ttft_s"] for r in runs_]),
        prefill_tok_s=Spread.of([prompt_tokens / r["ttft_s"] for r in runs_]),
        decode_tok_s=Spread.of([r["decode_tokens"] / r["decode_s"] for r in runs_]),
        peak_rss_bytes=measured["peak_rss_bytes"],
        folder_bytes=total_bytes,
        model_bytes=model_bytes,
        bytes_per_token=bytes_per_token(folder),
    )


def run_shim_worker(folder: Path, kind: str, inputs: list[list[int]], new_tokens: int, threads: int) -> dict:
    """Timed runs through the shim's worker mode, one child per measurement (its peak RSS is the runtime's
    alone). Every run generates exactly `new_tokens` (end tokens ignored); the first is a warm-up.

    threads 0: as the folder is run when nobody says: an edgeqwen bundle at its target's threads (at most
    the CPUs here), another export at its runtime's own default."""
    try:
        with BundleWorker(folder, device="cpu", threads=threads or None, verify=False) as worker:
            runs = []
            for prompt in inputs:
                done = worker.generate(prompt, new_tokens, ignore_eos=True)
                runs.append({"ttft_s": done["ttft_s"], "decode_s": done["decode_s"],
                             "decode_tokens": len(done["tokens"]) - 1})
            return {"runs": runs[1:], "peak_rss_bytes": worker.stats()["peak_rss_bytes"]}
    except WorkerError as e:
        raise BenchError(f"benchmarking {folder} ({kind}) failed: {e}") from None


def run_pytorch_worker(spec: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgeqwen-bench-") as scratch:
        spec_path = Path(scratch) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        done = subprocess.run([sys.executable, "-m", "edgeqwen.bench.pytorch_worker", str(spec_path)], check=False,
                              capture_output=True, text=True)
    if done.returncode != 0:
        last = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise BenchError(f"benchmarking {spec['folder']} ({TRANSFORMERS}) failed:\n{last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed_report(result: BenchResult, host_bandwidth: float, target=None) -> dict:
    """The result with its roofline here and, for a bundle, the decode rate to expect on its target.

    The prediction scales the target's decode ceiling (its profile's memory bandwidth over the same
    bytes per token) by the fraction of the ceiling this host achieved: same runtime, same kernels'
    efficiency, different memory. It says nothing about a target whose compute, not memory, is the limit.
    """
    ceiling = result.roofline(host_bandwidth)
    achieved = result.decode_tok_s.median / ceiling if ceiling else 0.0
    report = {**result.to_dict(), "host_bandwidth_gbps": host_bandwidth / 1e9, "roofline_tok_s": ceiling,
              "roofline_fraction": achieved}
    if target is not None:
        target_ceiling = decode_ceiling(target.hardware.memory_bandwidth_gbps * 1e9, result.bytes_per_token)
        # This host's CPU efficiency transfers to a CPU target only; an NPU or GPU runs other kernels.
        predicted = target_ceiling * achieved if target.runtime.device == "cpu" else None
        report["target"] = {"name": target.name, "device": target.runtime.device,
                            "memory_bandwidth_gbps": target.hardware.memory_bandwidth_gbps,
                            "roofline_tok_s": target_ceiling, "predicted_decode_tok_s": predicted}
    return report
