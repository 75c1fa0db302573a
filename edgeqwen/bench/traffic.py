"""Bytes of weights read per decoded token: what the memory-bandwidth roofline divides by.

Decoding one token reads every weight once, except tables that are only gathered from: an embedding
table stored apart from the lm_head gives one row per token, not the whole table. That distinction
is most of the difference between formats here: the stock ONNX Runtime GenAI CPU build keeps a 544 MB
FP32 embedding table for Qwen2.5-0.5B that decoding barely touches, while a shared INT4 table is
read in full by the lm_head.

Read from the files of any model folder (ONNX Runtime GenAI, OpenVINO IR, or a Hugging Face
checkpoint run in PyTorch at float32), or estimated from a build plan before anything is built.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgeqwen.fit import bits_per_weight, estimate_memory
from edgeqwen.plan import BuildPlan

GATHER_OPS = {"Gather", "GatherBlockQuantized"}
# OpenVINO weight decompression (and layout) ops between a stored constant and the op that uses it.
OV_PASS_THROUGH = {"Convert", "Subtract", "Multiply", "Reshape", "Unsqueeze", "Squeeze", "Transpose"}
ONNX_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 10: 2, 11: 8, 16: 2, 21: 1, 22: 1}  # TensorProto types


def folder_kind(folder: Path) -> str:
    """'onnxruntime-genai', 'openvino' or 'transformers': which runtime a model folder is for."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["runtime"]["engine"]
    if (folder / "genai_config.json").is_file():
        return "onnxruntime-genai"
    if (folder / "openvino_model.xml").is_file():
        return "openvino"
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return "transformers"
    raise ValueError(
        f"{folder}: not a model folder edgeqwen can run: expected an edgeqwen bundle (manifest.json), an ONNX "
        "Runtime GenAI folder (genai_config.json), an OpenVINO IR folder (openvino_model.xml) or a Hugging Face "
        "checkpoint (config.json + *.safetensors)"
    )


def bytes_per_token(folder: Path) -> int:
    kind = folder_kind(folder)
    if kind == "onnxruntime-genai":
        return onnx_bytes_per_token(folder)
    if kind == "openvino":
        return openvino_bytes_per_token(folder / "openvino_model.xml")
    return checkpoint_bytes_per_token(folder)


def onnx_bytes_per_token(folder: Path) -> int:
    import onnx

    config = json.loads((folder / "genai_config.json").read_text())
    graph = onnx.load(folder / config["model"]["decoder"]["filename"], load_external_data=False).graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    total = 0
    for tensor in graph.initializer:
        if consumers.get(tensor.name) and consumers[tensor.name] <= GATHER_OPS:
            continue  # only gathered from: one row per token
        total += onnx_tensor_bytes(tensor)
    return total


def onnx_tensor_bytes(tensor) -> int:
    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    if tensor.raw_data:
        return len(tensor.raw_data)
    count = math.prod(tensor.dims)
    if tensor.data_type in (22, 21):  # INT4 / UINT4: two per byte
        return (count + 1) // 2
    return count * ONNX_ITEM_BYTES.get(tensor.data_type, 4)


def openvino_bytes_per_token(xml: Path) -> int:
    import openvino as ov

    model = ov.Core().read_model(xml)
    total = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        users = final_consumers(op)
        if users and set(users) <= {"Gather"}:
            continue  # only gathered from: one row per token
        total += op.get_byte_size()
    return total


def final_consumers(op) -> list[str]:
    """The op types that finally use a constant, looking through weight decompression."""
    found, pending, seen = [], [op], set()
    while pending:
        node = pending.pop()
        for target in node.output(0).get_target_inputs():
            user = target.get_node()
            if user.get_friendly_name() in seen:
                continue
            seen.add(user.get_friendly_name())
            if user.get_type_name() in OV_PASS_THROUGH:
                pending.append(user)
            else:
                found.append(user.get_type_name())
    return found


def checkpoint_bytes_per_token(folder: Path) -> int:
    """A Hugging Face checkpoint as PyTorch runs it here: float32, an untied embedding only gathered."""
    from edgeqwen.models import read_safetensors_header

    gathered_only = has_lm_head(folder)  # an untied embedding table is only gathered from
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        for name, info in read_safetensors_header(path).items():
            if name == "__metadata__" or (gathered_only and name.endswith("embed_tokens.weight")):
                continue
            total += 4 * math.prod(info["shape"])
    return total


def has_lm_head(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return not config.get("tie_word_embeddings", False)


def plan_bytes_per_token(plan: BuildPlan) -> int:
    """The same figure estimated from a plan: its weights, less an embedding table stored on its own."""
    m, q = plan.model, plan.quantization
    weights = estimate_memory(plan).weights_bytes
    if m.tied_embeddings and q.embeddings == q.lm_head:
        return weights  # one table, read in full by the lm_head
    return weights - int(m.vocab_size * m.hidden_size * bits_per_weight(q.embeddings, plan) / 8)
