"""Published Qwen model shapes (config.json without weights), for planning and benchmarks.

`edgeqwen targets show` estimates what each shape would read per token on a target, and
benchmarks/ writes random-weight checkpoints of exactly these dimensions, so speed can be measured
without downloading anything. Parameter counts are computed from the dimensions the way the
checkpoints lay their tensors out (Qwen2: q/k/v biases; Qwen3: q/k norms).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeqwen.models import ModelSource, TensorGroups

SHAPES_DIR = Path(__file__).resolve().parent / "assets" / "shapes"


def shape_names() -> list[str]:
    return sorted(p.stem for p in SHAPES_DIR.glob("*.json"))


def shape_config(name: str) -> dict:
    path = SHAPES_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown model shape {name!r}; shipped shapes: {', '.join(shape_names())}")
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def tensor_groups(config: dict) -> TensorGroups:
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    table = config["vocab_size"] * hidden
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim  # q, o; k, v
    per_layer_other = 2 * hidden  # the two RMS norms
    if config["model_type"] == "qwen2":
        per_layer_other += (heads + 2 * kv_heads) * head_dim  # q/k/v biases
    else:
        per_layer_other += 2 * head_dim  # q/k norms
    return TensorGroups(
        embedding=table,
        lm_head=0 if config.get("tie_word_embeddings") else table,
        linear=layers * (attention + 3 * hidden * inner),
        other=layers * per_layer_other + hidden,
    )


def shape_source(name: str) -> ModelSource:
    """A ModelSource for planning only: it has dimensions and parameter counts but no weight files."""
    config = shape_config(name)
    groups = tensor_groups(config)
    org = "Qwen/"
    return ModelSource(
        spec=name,
        id=org + name,
        path=SHAPES_DIR,
        origin="shape",
        architecture=config["architectures"][0],
        model_type=config["model_type"],
        config=config,
        weight_files=(),
        weights_sha256="",
        checkpoint_bytes=2 * (groups.embedding + groups.lm_head + groups.linear + groups.other),
        tensors=groups,
    )
