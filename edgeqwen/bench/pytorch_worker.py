"""The timed generation loop for a Hugging Face checkpoint in PyTorch (the float32 reference of a benchmark),
run as `python -m edgeqwen.bench.pytorch_worker SPEC.json` in a child process.

Bundles and other runtimes' exports are timed by the shim's own worker mode (edgeqwen/bundle/worker.py),
the same code the device runs; this is the one contender that has no runtime of its own.

One child per measurement, so the peak RSS it reports is PyTorch's alone. SPEC names the folder, one
prompt (token ids) per run, the number of new tokens and the thread count (0: PyTorch's own default);
the first prompt is a warm-up run, not reported. Every run generates exactly `new_tokens` tokens.
Prints one JSON object: per run the time to first token and the decode time of the remaining tokens,
and the process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def transformers_runs(folder: Path, prompts: list[list[int]], new_tokens: int, threads: int) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM

    if threads:  # 0: PyTorch's own default (the physical cores)
        torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()

    def once(prompt: list[int]) -> dict:
        with torch.inference_mode():
            started = time.perf_counter()
            out = model(torch.tensor([prompt]), use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            first = time.perf_counter()
            for _ in range(new_tokens - 1):
                out = model(token, past_key_values=out.past_key_values, use_cache=True)
                token = out.logits[:, -1:].argmax(-1)
            return {"ttft_s": first - started, "decode_s": time.perf_counter() - first, "decode_tokens": new_tokens - 1}

    return [once(prompt) for prompt in prompts][1:]


def peak_rss_bytes() -> int:
    """This process's own peak RSS. Not getrusage's ru_maxrss: on Linux that keeps the parent's RSS at
    fork across exec, so a worker started by a 2 GB process would report at least 2 GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux; other systems: a bound


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    runs = transformers_runs(Path(spec["folder"]), spec["prompts"], spec["new_tokens"], spec["threads"])
    print(json.dumps({"runs": runs, "peak_rss_bytes": peak_rss_bytes()}))


if __name__ == "__main__":
    main(sys.argv[1])
