"""Random-weight BF16 checkpoints at the published Qwen shapes, written shard by shard.

    .venv/bin/python benchmarks/random_checkpoint.py Qwen2.5-7B /tmp/qwen7b

The tensor names and shapes come from transformers' own model class, built on the meta device (no
memory); each tensor is then drawn on its own (normal with the config's initializer_range for
matrices, ones for norms, zeros for biases: transformers' initialisation) and written into
safetensors shards of at most SHARD_BYTES with the usual model.safetensors.index.json. So a 7B
checkpoint (15 GB in BF16) is made with one shard in memory at a time, never the whole model.
The folder appears complete or not at all (written beside it, then renamed).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from edgeqwen.demo.assets import TOKENIZER_FILES, tokenizer_source_dir
from edgeqwen.shapes import shape_config

SHARD_BYTES = 2 * 1024**3


def tensor_layout(config) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor the checkpoint holds, in transformers' order, tied copies left out."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items() if name not in tied]


def random_tensor(name: str, shape: tuple[int, ...], std: float, generator):
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    if name.endswith(".bias"):
        return torch.zeros(shape, dtype=torch.bfloat16)
    return torch.normal(0.0, std, shape, generator=generator).to(torch.bfloat16)


def write_random_checkpoint(shape: str, folder: Path, shard_bytes: int = SHARD_BYTES) -> None:
    """The checkpoint of `shape` in `folder`, its config, and the shipped Qwen tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config = AutoConfig.for_model(**shape_config(shape))
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    layout = tensor_layout(config)
    shards: list[dict] = [{}]
    sizes = [0]
    for name, dims in layout:  # group the names into shards first, so the file names can say "of N"
        nbytes = 2 * int(torch.Size(dims).numel())
        if sizes[-1] and sizes[-1] + nbytes > shard_bytes:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = dims
        sizes[-1] += nbytes
    weight_map = {}
    for index, names in enumerate(shards, 1):
        file = "model.safetensors" if len(shards) == 1 else f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: random_tensor(name, dims, config.initializer_range, generator) for name, dims in names.items()}
        save_file(tensors, str(staging / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
        del tensors
    if len(shards) > 1:
        index_file = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
        (staging / "model.safetensors.index.json").write_text(json.dumps(index_file, indent=2))
    config.save_pretrained(staging)
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_source_dir() / name, staging / name)
    staging.rename(folder)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    write_random_checkpoint(sys.argv[1], Path(sys.argv[2]))
