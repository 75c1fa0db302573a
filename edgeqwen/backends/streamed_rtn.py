"""Olive's RTN, one tensor at a time: an Olive-quantized checkpoint whose memory is one layer, not the model.

Olive's Rtn pass loads the whole checkpoint in its dtype (2 bytes a parameter for Qwen's bf16), quantizes
it in place and saves it: 10 GB at its peak for Qwen2.5-1.5B, about 45 GB for 7B (benchmarks/RESULTS.md,
"Build memory"). RTN needs nothing but the weight it is rounding, so this writes the same checkpoint
reading one tensor at a time from the safetensors files and writing one shard per decoder layer.
Each weight goes through Olive's own quantizer (`QuantLinear.from_tensors`), in the checkpoint's dtype
as the pass loads it, so the tensors are the pass's bit for bit; the config carries the same
`quantization_config`, and the ONNX Runtime GenAI builder then reads it exactly as it reads the pass's
output (tests/test_streamed_rtn.py compares the two, and the bundles built from them).

What is quantized is what the pass quantizes with our settings: every nn.Linear of the model except the
lm_head, found on transformers' own model class built on the meta device, and with `embeds` the input
embedding too (a model with its own lm_head: the builder cannot quantize a Gather after RTN, so without
this the table would ship in float32). The lm_head, and a tied table, stay as they are, for the builder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from tqdm import tqdm

from edgeqwen.checkpoint import read_header, shard_files

INDEX_FILE = "model.safetensors.index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
LAYER = re.compile(r"^model\.layers\.(\d+)\.")
EMBEDDING = "model.embed_tokens.weight"
TABLE_ROWS_AT_ONCE = 16384  # the table is quantized this many rows at a time (each row's groups on their own)


def quantized_linears(config) -> set[str]:
    """The module names Olive's Rtn pass turns into QuantLinear: every nn.Linear but the lm_head."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name != "lm_head"}


def tensor_files(model_dir: Path) -> dict[str, Path]:
    """Each tensor's name and the shard that holds it."""
    return {name: path for path in shard_files(model_dir) for name in read_header(path) if name != "__metadata__"}


def read_tensor(path: Path, name: str):
    """One tensor, its file mapped only while it is read (a mapped shard would stay in this process's memory)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(name)


def shard_of(name: str) -> int:
    """Shard 0 holds what is outside the decoder layers (the table, the final norm); shard i + 1 layer i."""
    match = LAYER.match(name)
    return int(match.group(1)) + 1 if match else 0


def quantized_embedding(weight, bits: int, group_size: int, symmetric: bool) -> dict:
    """Olive's QuantEmbedding tensors for the table, a slice of rows at a time and joined: the same tensors."""
    import torch
    from olive.common.quant.nn import QuantEmbedding

    parts = [QuantEmbedding.from_tensors(num_embeddings=rows.shape[0], embedding_dim=rows.shape[1], weight=rows,
                                         bits=bits, symmetric=symmetric, group_size=group_size).state_dict()
             for rows in torch.split(weight, TABLE_ROWS_AT_ONCE)]
    return {key: torch.cat([part[key] for part in parts]).contiguous() for key in parts[0]}


def write_rtn_checkpoint(model_dir: Path, out_dir: Path, bits: int, group_size: int, symmetric: bool,
                         embeds: bool = False) -> dict:
    """Write `model_dir` RTN-quantized, as Olive's Rtn pass would (`embeds`: its `embeds: true`), into
    `out_dir` (made here, complete or absent); return facts for the manifest."""
    import torch
    from olive.common.quant.hf_utils import OliveHfQuantizationConfig
    from olive.common.quant.nn import QuantLinear
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    dtype = getattr(config, "dtype", None) or torch.float32  # the pass loads with dtype "auto": the config's
    linears = quantized_linears(config)
    files = tensor_files(model_dir)
    shards: dict[int, list[str]] = {}
    for name in files:
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # a tied copy: transformers' save (and so the pass) leaves it out
        shards.setdefault(shard_of(name), []).append(name)
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]

    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    weight_map, total = {}, 0
    with torch.no_grad():
        bar = tqdm(list(zip(names, sorted(shards))), desc="  rtn (streamed)", unit="shard", leave=False,
                   postfix="rtn")  # the postfix names the step for benchmarks/build_memory.py, as Olive's bar does
        for file, shard in bar:
            tensors = {}
            for name in shards[shard]:
                module = name.rsplit(".", 1)[0]
                if module in linears and name.endswith(".weight"):
                    weight = read_tensor(files[name], name).to(dtype)
                    quantized = QuantLinear.from_tensors(
                        in_features=weight.shape[1], out_features=weight.shape[0], weight=weight, bits=bits,
                        symmetric=symmetric, group_size=group_size, bias=False)
                    for key, value in quantized.state_dict().items():
                        tensors[f"{module}.{key}"] = value.contiguous()
                    del weight, quantized
                elif embeds and name == EMBEDDING:
                    weight = read_tensor(files[name], name).to(dtype)
                    for key, value in quantized_embedding(weight, bits, group_size, symmetric).items():
                        tensors[f"model.embed_tokens.{key}"] = value
                    del weight
                elif not name.endswith("inv_freq"):
                    tensors[name] = read_tensor(files[name], name).to(dtype).contiguous()
            save_file(tensors, str(staging / file), metadata={"format": "pt"})
            for key, value in tensors.items():
                weight_map[key] = file
                total += value.numel() * value.element_size()
            del tensors
    (staging / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total},
                                                  "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    config.quantization_config = OliveHfQuantizationConfig(
        bits=bits, symmetric=symmetric, group_size=group_size, lm_head=False, embeds=embeds, overrides={})
    config.save_pretrained(staging)
    for other in model_dir.iterdir():  # tokenizer, generation config, chat template: as they are
        if other.is_file() and other.name not in ("config.json", INDEX_FILE) and other.suffix not in WEIGHT_SUFFIXES:
            shutil.copyfile(other, staging / other.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)
    return {"quantizer": "olive Rtn, streamed tensor by tensor", "bits": bits, "group_size": group_size,
            "symmetric": symmetric, "embeddings": embeds,
            "quantized_linears": len([n for n in weight_map if n.endswith(".qweight") and "embed_tokens" not in n])}
