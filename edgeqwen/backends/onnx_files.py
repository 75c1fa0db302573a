"""What an ONNX Runtime GenAI folder holds: its model files by role, and the weights a decoded token reads.

genai_config.json names the graphs: one decoder file, or a pipeline of stages (embeddings, context and
iterator decoders, lm_head) as multi-model bundles for NPUs have. Each graph may keep its weights in
external data files and, for an accelerator, point at compiled context binaries (EPContext nodes).
Works on any such folder: an edgeqwen bundle or the stock builder's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgeqwen.backends.base import CONTEXT_BINARY, DECODER, EMBEDDINGS, LM_HEAD

GENAI_CONFIG = "genai_config.json"
GATHER_OPS = {"Gather", "GatherBlockQuantized"}
ONNX_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 10: 2, 11: 8, 16: 2, 21: 1, 22: 1}  # TensorProto types


def read_genai_config(folder: Path) -> dict:
    return json.loads((folder / GENAI_CONFIG).read_text())


def names_qnn(folder: Path) -> bool:
    """Whether the folder's genai_config gives a graph to the QNN provider (a Qualcomm NPU bundle)."""
    return '"qnn"' in (folder / GENAI_CONFIG).read_text(errors="replace")


def stage_role(name: str) -> str:
    if "embed" in name:
        return EMBEDDINGS
    if "lm_head" in name:
        return LM_HEAD
    return DECODER


def graphs(folder: Path) -> dict[str, list[str]]:
    """The ONNX graphs genai_config.json names, by role."""
    decoder = read_genai_config(folder)["model"]["decoder"]
    if "pipeline" not in decoder:
        return {DECODER: [decoder["filename"]]}
    found: dict[str, list[str]] = {}
    for stage in decoder["pipeline"]:
        for name, entry in stage.items():
            found.setdefault(stage_role(name), []).append(entry["filename"])
    return found


def graph_files(folder: Path, graph: str) -> tuple[list[str], list[str]]:
    """(external data files, context binaries) a graph refers to, relative to the folder."""
    import onnx
    from onnx import helper

    model = onnx.load(folder / graph, load_external_data=False)
    data = sorted({entry.value for tensor in model.graph.initializer for entry in tensor.external_data
                   if entry.key == "location"})
    binaries = sorted({helper.get_attribute_value(a).decode() for node in model.graph.node
                       if node.op_type == "EPContext" for a in node.attribute
                       if a.name == "ep_cache_context" and
                       any(b.name == "embed_mode" and b.i == 0 for b in node.attribute)})
    return data, binaries


def model_files(folder: Path) -> dict[str, tuple[str, ...]]:
    roles: dict[str, list[str]] = {}
    for role, names in graphs(folder).items():
        for name in names:
            data, binaries = graph_files(folder, name)
            roles.setdefault(role, []).extend([name, *data])
            if binaries:
                roles.setdefault(CONTEXT_BINARY, []).extend(binaries)
    return {role: tuple(dict.fromkeys(names)) for role, names in roles.items()}


def bytes_per_token(folder: Path) -> int:
    """Every initializer of every graph, less the tables that are only gathered from (one row per token)."""
    import onnx

    total = 0
    for names in graphs(folder).values():
        for name in names:
            graph = onnx.load(folder / name, load_external_data=False).graph
            consumers: dict[str, set[str]] = {}
            for node in graph.node:
                for input_name in node.input:
                    consumers.setdefault(input_name, set()).add(node.op_type)
            for tensor in graph.initializer:
                if consumers.get(tensor.name) and consumers[tensor.name] <= GATHER_OPS:
                    continue  # only gathered from: one row per token
                total += tensor_bytes(tensor)
    return total


def tensor_bytes(tensor) -> int:
    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    if tensor.raw_data:
        return len(tensor.raw_data)
    count = math.prod(tensor.dims)
    if tensor.data_type in (22, 21):  # INT4 / UINT4: two per byte
        return (count + 1) // 2
    return count * ONNX_ITEM_BYTES.get(tensor.data_type, 4)
