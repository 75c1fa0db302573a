"""The bundle's side of a drift measurement (the reference's is edgeqwen.drift.reference):
    window_logits(tokens) -> [len(tokens) - 1, vocab] float32, row i predicting tokens[i + 1]
    greedy(prompt_ids, new_tokens) -> generated token ids (stopping at the model's end token)

The bundle runs through its own shim in worker mode (edgeqwen/bundle/worker.py), in its
own runtime, teacher-forced one token at a time: that is how the runtime
decodes on the device, and an ONNX bundle's lm_head is pruned to the last
position, so one step gives exactly one row of logits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeqwen.bundle.worker import BundleWorker


class BundleRunner:
    """The bundle through its own shim in worker mode, in a child process: the code and runtime that ship.

    It runs on this machine's CPU (a CUDA or NPU bundle too; a Qualcomm NPU bundle also on the HTP simulator,
    `device="npu"`: the backend's drift_devices say which), at this host's core count: the bundle's
    thread count is the device's (4 threads on a 2-core host measured 2.5x slower). It measures the
    files as they are (a bundle being built has no manifest yet; `edgeqwen verify` checks hashes).
    """

    def __init__(self, bundle_dir: Path, device: str = "cpu"):
        self.worker = BundleWorker(bundle_dir, device=device, threads=os.cpu_count() or 1, verify=False)
        self.info = self.worker.info
        self.inference_precision = "unknown"

    def __enter__(self) -> "BundleRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.worker.close()

    def window_logits(self, tokens: list[int]) -> np.ndarray:
        logits, facts = self.worker.logits(tokens)
        self.inference_precision = facts["inference_precision"]
        return logits

    def greedy(self, prompt_ids: list[int], new_tokens: int) -> list[int]:
        return self.worker.generate(prompt_ids, new_tokens)["tokens"]

    def render(self, messages: list[dict]) -> list[int]:
        """The runtime's own rendering and tokenization of a conversation (thinking off, as the reference's)."""
        return self.worker.render(messages, think=False)[1]
