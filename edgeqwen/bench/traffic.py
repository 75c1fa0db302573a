"""Bytes of weights read per decoded token: what the memory-bandwidth roofline divides by.

Decoding one token reads every weight once, except tables that are only gathered from: an embedding
table stored apart from the lm_head gives one row per token, not the whole table. That distinction
is most of the difference between formats here: the stock ONNX Runtime GenAI CPU build keeps a 544 MB
FP32 embedding table for Qwen2.5-0.5B that decoding barely touches, while a shared INT4 table is
read in full by the lm_head.

Read from the files of any model folder by the backend whose runtime loads it (an edgeqwen bundle, or
another tool's ONNX Runtime GenAI or OpenVINO export), or from a Hugging Face checkpoint run in PyTorch
at float32; or estimated from a build plan before anything is built.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgeqwen.backends import backend_for, folder_engine, registry
from edgeqwen.plan import BuildPlan

TRANSFORMERS = "transformers"  # a Hugging Face checkpoint, benchmarked in PyTorch as the reference


def folder_kind(folder: Path) -> str:
    """The engine whose runtime loads `folder`, or 'transformers' for a Hugging Face checkpoint."""
    engine = folder_engine(folder)
    if engine is not None:
        return engine
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return TRANSFORMERS
    exports = ", ".join(backend.folder_description for backend in registry().values())
    raise ValueError(
        f"{folder}: not a model folder edgeqwen can run: expected an edgeqwen bundle (manifest.json), {exports} "
        "or a Hugging Face checkpoint (config.json + *.safetensors)"
    )


def bytes_per_token(folder: Path) -> int:
    kind = folder_kind(folder)
    if kind == TRANSFORMERS:
        return checkpoint_bytes_per_token(folder)
    return backend_for(kind).bytes_per_token(folder)


def checkpoint_bytes_per_token(folder: Path) -> int:
    """A Hugging Face checkpoint as PyTorch runs it here: float32, an untied embedding only gathered."""
    from edgeqwen.checkpoint import read_header

    gathered_only = has_lm_head(folder)  # an untied embedding table is only gathered from
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        for name, info in read_header(path).items():
            if name == "__metadata__" or (gathered_only and name.endswith("embed_tokens.weight")):
                continue
            total += 4 * math.prod(info["shape"])
    return total


def has_lm_head(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return not config.get("tie_word_embeddings", False)


def plan_bytes_per_token(plan: BuildPlan) -> int:
    """The same figure estimated from a plan: its weights, less an embedding table stored on its own."""
    return backend_for(plan.engine).estimate_memory(plan).read_per_token_bytes
