"""The two sides of a drift measurement: the full-precision reference and the bundle's own runtime.

Both expose the same two calls:
    window_logits(tokens) -> [len(tokens) - 1, vocab] float32, row i predicting tokens[i + 1]
    greedy(prompt_ids, new_tokens) -> generated token ids (stopping at the model's end token)

The reference is the source checkpoint in transformers at float32. The bundle
runs in its own runtime (ONNX Runtime GenAI, or OpenVINO for IR bundles),
teacher-forced one token at a time: that is how the runtime decodes on the
device, and an ONNX bundle's lm_head is pruned to the last position, so one
step gives exactly one row of logits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


class ReferenceRunner:
    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def window_logits(self, tokens: list[int]) -> np.ndarray:
        with self.torch.no_grad():
            logits = self.model(self.torch.tensor([tokens])).logits[0, :-1]
        return logits.float().numpy()

    def greedy(self, prompt_ids: list[int], new_tokens: int) -> list[int]:
        ids = self.torch.tensor([prompt_ids])
        eos = self.model.generation_config.eos_token_id
        pad = eos[0] if isinstance(eos, list) else eos
        with self.torch.no_grad():
            output = self.model.generate(
                ids,
                attention_mask=self.torch.ones_like(ids),
                pad_token_id=pad,
                max_new_tokens=new_tokens,
                do_sample=False,
                top_k=None,
                top_p=None,
            )
        return output[0, len(prompt_ids) :].tolist()


class OrtGenaiRunner:
    """Runs a bundle on this machine's CPU (a CUDA bundle too, with its providers cleared)."""

    def __init__(self, bundle_dir: Path):
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(str(bundle_dir))
        config.clear_providers()
        # The bundle's thread count is the device's; here the measurement runs on this host's cores
        # (4 threads on a 2-core host measured 2.5x slower).
        host_threads = {"session_options": {"intra_op_num_threads": os.cpu_count() or 1}}
        config.overlay(json.dumps({"model": {"decoder": host_threads}}))
        self.model = og.Model(config)

    def _generator(self, max_length: int):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length, do_sample=False)
        return self.og.Generator(self.model, params)

    def window_logits(self, tokens: list[int]) -> np.ndarray:
        generator = self._generator(len(tokens))  # appends all but the last token
        rows = []
        for token in tokens[:-1]:
            generator.append_tokens([token])
            rows.append(np.asarray(generator.get_logits(), dtype=np.float32).reshape(-1))
        return np.stack(rows)

    def greedy(self, prompt_ids: list[int], new_tokens: int) -> list[int]:
        generator = self._generator(len(prompt_ids) + new_tokens)
        generator.append_tokens(prompt_ids)
        out = []
        while not generator.is_done():
            generator.generate_next_token()
            out.append(int(generator.get_next_tokens()[0]))
        return out


class OpenVinoRunner:
    """Runs an IR bundle's stateful model on this machine's CPU device (an NPU bundle too: no NPU here).

    The IR is what OpenVINO GenAI loads; it is driven here through OpenVINO's own inference request so
    each step's logits can be read. The CPU device computes at its default inference precision.
    """

    MODEL_FILE = "openvino_model.xml"

    def __init__(self, bundle_dir: Path):
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(bundle_dir / self.MODEL_FILE), "CPU")
        self.inference_precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.request = compiled.create_infer_request()
        generation = json.loads((bundle_dir / "generation_config.json").read_text())
        eos = generation.get("eos_token_id")
        self.end_tokens = set([eos] if isinstance(eos, int) else eos or [])

    def _step(self, token: int, position: int) -> np.ndarray:
        ids = np.array([[token]], dtype=np.int64)
        self.request.infer(
            {
                "input_ids": ids,
                "attention_mask": np.ones((1, position + 1), dtype=np.int64),
                "position_ids": np.array([[position]], dtype=np.int64),
                "beam_idx": np.zeros(1, dtype=np.int32),
            }
        )
        return np.array(self.request.get_tensor("logits").data[0, -1], dtype=np.float32)

    def window_logits(self, tokens: list[int]) -> np.ndarray:
        self.request.reset_state()
        return np.stack([self._step(token, i) for i, token in enumerate(tokens[:-1])])

    def greedy(self, prompt_ids: list[int], new_tokens: int) -> list[int]:
        self.request.reset_state()
        for i, token in enumerate(prompt_ids):
            logits = self._step(token, i)
        out: list[int] = []
        while len(out) < new_tokens:
            token = int(logits.argmax())
            out.append(token)
            if token in self.end_tokens:
                break
            logits = self._step(token, len(prompt_ids) + len(out) - 1)
        return out


def bundle_runner(engine: str, bundle_dir: Path):
    if engine == "onnxruntime-genai":
        return OrtGenaiRunner(bundle_dir)
    if engine == "openvino":
        return OpenVinoRunner(bundle_dir)
    raise ValueError(f"no drift runner for engine {engine!r}")
