"""The timed generation loop, run as `python -m edgeqwen.bench.worker SPEC.json` in a child process.

One child per measurement, so the peak RSS it reports is that runtime's alone and no runtime's
threads or caches leak into the next one. SPEC names the folder, its kind, one prompt (token ids) per
run, the number of new tokens and the thread count (0: as the folder is run when nobody says: its own
setting, or the runtime's default); the first prompt is a warm-up run, not reported.
Every run has a different prompt of the same length, so no prefix cache (OpenVINO GenAI keeps one by
default) can serve a prompt it has seen. Every run generates exactly `new_tokens` tokens:
end-of-sequence is ignored, so runs are comparable.

Prints one JSON object: per run the time to first token (the whole prompt processed and one token
produced) and the decode time of the remaining tokens; the process's peak RSS; the load time.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def ort_genai_runs(folder: Path, prompts: list[list[int]], new_tokens: int, threads: int) -> list[dict]:
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.clear_providers()
    if not threads:  # 0: as the folder is run: an edgeqwen bundle as its shim runs it (the target's threads, at
        # most the CPUs here); a stock folder with onnxruntime-genai's own default (half the logical CPUs)
        configured = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"].get(
            "session_options", {}).get("intra_op_num_threads")
        if configured and (folder / "manifest.json").is_file():
            threads = min(configured, len(os.sched_getaffinity(0)))
    if threads:
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    model = og.Model(config)
    def once(prompt: list[int]) -> dict:
        total = len(prompt) + new_tokens
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=total, min_length=total, do_sample=False)
        generator = og.Generator(model, params)
        started = time.perf_counter()
        generator.append_tokens(prompt)  # the prompt in one forward pass
        generator.generate_next_token()
        first = time.perf_counter()
        produced = 1
        while produced < new_tokens and not generator.is_done():
            generator.generate_next_token()
            produced += 1
        return timing(started, first, time.perf_counter(), produced)

    return [once(prompt) for prompt in prompts][1:]


def openvino_runs(folder: Path, prompts: list[list[int]], new_tokens: int, threads: int) -> list[dict]:
    import numpy as np
    import openvino as ov
    import openvino_genai as ov_genai

    properties = {"INFERENCE_NUM_THREADS": threads} if threads else {}  # 0: OpenVINO's own default
    pipeline_config = folder / "pipeline_config.json"  # an edgeqwen bundle's own CPU settings
    if pipeline_config.is_file():
        properties.update(json.loads(pipeline_config.read_text())["properties"].get("CPU", {}))
    pipeline = ov_genai.LLMPipeline(str(folder), "CPU", **properties)
    def once(prompt: list[int]) -> dict:
        ids = ov.Tensor(np.array([prompt], dtype=np.int64))
        config = pipeline.get_generation_config()
        config.max_new_tokens = new_tokens
        config.min_new_tokens = new_tokens
        config.ignore_eos = True
        config.do_sample = False
        metrics = pipeline.generate(ids, config).perf_metrics
        ttft = metrics.get_ttft().mean / 1000
        produced = metrics.get_num_generated_tokens()
        decode = metrics.get_tpot().mean / 1000 * (produced - 1)
        return timing(0.0, ttft, ttft + decode, produced)

    return [once(prompt) for prompt in prompts][1:]


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
            return timing(started, first, time.perf_counter(), new_tokens)

    return [once(prompt) for prompt in prompts][1:]


def timing(started: float, first: float, done: float, produced: int) -> dict:
    return {"ttft_s": first - started, "decode_s": done - first, "decode_tokens": produced - 1}


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


RUNNERS = {"onnxruntime-genai": ort_genai_runs, "openvino": openvino_runs, "transformers": transformers_runs}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    runs = RUNNERS[spec["kind"]](Path(spec["folder"]), spec["prompts"], spec["new_tokens"], spec["threads"])
    result = {
        "runs": runs,
        "wall_s": time.perf_counter() - started,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
