"""A model folder checked for completeness and consistency before any conversion starts.

Every engine edgeqwen drives reads a checkpoint its own way, and each fails on a damaged one in its own
way, late and deep (Olive: "No output model produced"; transformers: a validation traceback). Here the
folder is read the cheap way, config.json and the safetensors headers, never the tensors, and every
problem is reported with the file and field it is in:

    config.json      JSON text, the fields a Qwen decoder needs, positive whole numbers that agree
                     with each other (heads and KV heads, layer_types and the layer count)
    shards           every file the shard index names exists; every header parses; no tensor's bytes
                     reach past the end of its file (a truncated download); every dtype is one
                     edgeqwen's engines convert
    shapes           the tables and each layer's projections have the shapes config.json implies, and
                     there are as many layers as it says
    tokenizer        tokenizer.json and tokenizer_config.json are UTF-8 JSON, and no token id is beyond
                     the embedding table
"""

from __future__ import annotations

import functools
import json
import re
import struct
from pathlib import Path

from edgeqwen.errors import ModelError

# safetensors dtype names -> bytes per element
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = ("F32", "F16", "BF16")  # what the engines quantize from; integer weights are a quantized checkpoint
CONFIG_DTYPES = ("float32", "float16", "bfloat16")
LAYER_TYPES = ("full_attention", "sliding_attention")
REQUIRED_DIMENSIONS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
OPTIONAL_DIMENSIONS = ("num_key_value_heads", "head_dim", "max_position_embeddings")
LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.")
TOKENIZER_FILES_REQUIRED = ("tokenizer.json", "tokenizer_config.json")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


def read_json_file(path: Path, what: str) -> dict:
    """A JSON object from `path`, or a ModelError saying what is wrong with the file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror})") from None
    if not raw.strip():
        raise ModelError(f"{path}: is empty; expected {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelError(f"{path}: not UTF-8 text (byte {e.start}); expected {what}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not valid JSON ({e}); expected {what}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: a JSON {type(value).__name__}; expected {what} (an object)")
    return value


def config_problems(config: dict) -> list[str]:
    """What in config.json no Qwen decoder can be built from, each naming the field."""
    problems = []

    def whole(key: str) -> bool:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{key} = {value!r}: expected a positive whole number")
            return False
        return True

    present = {key: whole(key) for key in REQUIRED_DIMENSIONS}
    present.update({key: whole(key) for key in OPTIONAL_DIMENSIONS if config.get(key) is not None})
    if problems:
        return problems
    heads, layers = config["num_attention_heads"], config["num_hidden_layers"]
    kv_heads = config.get("num_key_value_heads") or heads
    if heads % kv_heads:
        problems.append(f"num_attention_heads = {heads} is not a multiple of num_key_value_heads = {kv_heads}")
    if not config.get("head_dim") and config["hidden_size"] % heads:
        problems.append(f"hidden_size = {config['hidden_size']} is not a multiple of num_attention_heads = {heads} "
                        "(and there is no head_dim)")
    layer_types = config.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or any(t not in LAYER_TYPES for t in layer_types):
            problems.append(f"layer_types = {layer_types!r}: expected a list of {' / '.join(LAYER_TYPES)}")
        elif len(layer_types) != layers:
            problems.append(f"layer_types has {len(layer_types)} entries but num_hidden_layers = {layers}")
    dtype = config.get("dtype", config.get("torch_dtype"))
    if dtype is not None and dtype not in CONFIG_DTYPES:
        problems.append(f"dtype = {dtype!r}: expected one of {', '.join(CONFIG_DTYPES)}")
    if not isinstance(config.get("tie_word_embeddings", False), bool):
        problems.append(f"tie_word_embeddings = {config['tie_word_embeddings']!r}: expected true or false")
    return problems


def shard_files(folder: Path) -> tuple[Path, ...]:
    """The weight files: those the shard index names (each must exist), or every *.safetensors file."""
    index_path = folder / "model.safetensors.index.json"
    if not index_path.exists():
        return tuple(sorted(p for p in folder.iterdir() if p.suffix == ".safetensors"))
    index = read_json_file(index_path, "a safetensors shard index ({\"weight_map\": {tensor: file}})")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise ModelError(f"{index_path}: no weight_map naming each tensor's file")
    names = sorted(set(weight_map.values()))
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise ModelError(f"{index_path}: names {len(missing)} missing shard(s): {', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}; the download is incomplete")
    return tuple(folder / name for name in names)


def read_header(path: Path) -> dict:
    """A safetensors header, checked against the file's size: a truncated file names itself here."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"its header claims {length} bytes, more than the file holds")
            header = json.loads(f.read(length).decode("utf-8"))
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not a readable safetensors file ({e}); re-download it") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (its header is not an object)")
    data_bytes = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        problem = tensor_problem(info, data_bytes)
        if problem:
            raise ModelError(f"{path}: tensor {name}: {problem}")
    return header


def tensor_problem(info, data_bytes: int) -> str | None:
    if not isinstance(info, dict):
        return "not a tensor entry"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        return f"dtype {dtype!r} is not one edgeqwen converts (expected one of {', '.join(FLOAT_DTYPES)})"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        return f"shape {shape!r} is not a list of sizes"
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        return f"data_offsets {offsets!r} are not a byte range"
    if offsets[1] > data_bytes:
        return (f"its bytes end at {offsets[1]} but the file holds {data_bytes} bytes of tensor data: "
                "the file is truncated (an interrupted download?); re-download it")
    return None


def expected_shapes(config: dict) -> dict[str, list[int]]:
    """The shape config.json implies for each 2-D weight of one decoder layer (by the name's ending)."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    return {
        "self_attn.q_proj.weight": [heads * head_dim, hidden],
        "self_attn.k_proj.weight": [kv_heads * head_dim, hidden],
        "self_attn.v_proj.weight": [kv_heads * head_dim, hidden],
        "self_attn.o_proj.weight": [hidden, heads * head_dim],
        "mlp.gate_proj.weight": [inter, hidden],
        "mlp.up_proj.weight": [inter, hidden],
        "mlp.down_proj.weight": [hidden, inter],
    }


def shape_problems(config: dict, tensors: dict[str, dict], config_path: Path) -> list[str]:
    """Weights that disagree with config.json, each naming the tensor and both shapes."""
    problems = []
    table = [config["vocab_size"], config["hidden_size"]]
    embedding = tensors.get("model.embed_tokens.weight")
    if embedding is None:
        problems.append("no model.embed_tokens.weight in the weights")
    elif embedding["shape"] != table:
        problems.append(f"model.embed_tokens.weight has shape {embedding['shape']}, but {config_path.name} says "
                        f"vocab_size x hidden_size = {table}")
    lm_head = tensors.get("lm_head.weight")
    if lm_head is not None and lm_head["shape"] != table:
        problems.append(f"lm_head.weight has shape {lm_head['shape']}, expected {table}")
    if lm_head is None and not config.get("tie_word_embeddings", False):
        problems.append("tie_word_embeddings is false but the weights have no lm_head.weight")
    layers = sorted({int(m.group(1)) for name in tensors if (m := LAYER_NAME.match(name))})
    declared = config["num_hidden_layers"]
    if layers != list(range(declared)):
        problems.append(f"the weights hold {len(layers)} decoder layer(s) (indices {shorten(layers)}), but "
                        f"{config_path.name} says num_hidden_layers = {declared}")
    for ending, shape in expected_shapes(config).items():
        for layer in range(min(declared, len(layers))):
            name = f"model.layers.{layer}.{ending}"
            info = tensors.get(name)
            if info is None:
                problems.append(f"{name} is missing")
            elif info["shape"] != shape:
                problems.append(f"{name} has shape {info['shape']}, but {config_path.name} implies {shape}")
            elif info["dtype"] not in FLOAT_DTYPES:
                problems.append(f"{name} is stored as {info['dtype']}: a quantized checkpoint; edgeqwen converts "
                                f"full-precision ones ({', '.join(FLOAT_DTYPES)})")
            if len(problems) >= 8:
                return problems
    return problems


def shorten(values: list[int]) -> str:
    if not values:
        return "none"
    return ", ".join(map(str, values)) if len(values) <= 6 else f"{values[0]}..{values[-1]}"


def tokenizer_problems(folder: Path, vocab_size: int) -> list[str]:
    missing = [name for name in TOKENIZER_FILES_REQUIRED if not (folder / name).is_file()]
    if missing:
        raise ModelError(f"{folder}: missing tokenizer file(s) {', '.join(missing)}; the bundle needs Qwen's "
                         "tokenizer")
    read_json_file(folder / "tokenizer_config.json", "a Hugging Face tokenizer_config.json")
    path = folder / "tokenizer.json"
    stat = path.stat()
    largest = largest_token_id(str(path), stat.st_size, stat.st_mtime_ns)
    if largest is None:
        return [f"{path}: no vocabulary in it"]
    if largest >= vocab_size:
        return [f"{path}: token id {largest} is beyond the model's embedding table (vocab_size = {vocab_size}); "
                "the tokenizer belongs to another model"]
    return []


@functools.lru_cache(maxsize=16)
def largest_token_id(path: str, size: int, mtime_ns: int) -> int | None:
    """The largest id in a tokenizer.json (None: no vocabulary). Memoized by the file's path, size and mtime:
    parsing Qwen's 7 MB file takes a few tenths of a second, and the quality ladder resolves a build once per
    rung."""
    tokenizer = read_json_file(Path(path), "a Hugging Face tokenizer.json")
    vocab = (tokenizer.get("model") or {}).get("vocab")
    ids = list(vocab.values()) if isinstance(vocab, dict) else []
    ids += [t.get("id") for t in tokenizer.get("added_tokens") or [] if isinstance(t, dict)]
    ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    return max(ids) if ids else None


def check_checkpoint(folder: Path, config: dict) -> tuple[tuple[Path, ...], dict[str, dict]]:
    """The weight files and every tensor's header entry, or a ModelError listing what is wrong."""
    config_path = folder / "config.json"
    problems = config_problems(config)
    if problems:
        raise ModelError(listing(config_path, problems))
    files = shard_files(folder)
    if not files:
        raise ModelError(f"{folder}: no *.safetensors weights found (PyTorch .bin checkpoints are not supported)")
    tensors: dict[str, dict] = {}
    for path in files:
        for name, info in read_header(path).items():
            if name != "__metadata__":
                tensors[name] = info
    problems = tokenizer_problems(folder, config["vocab_size"]) + shape_problems(config, tensors, config_path)
    if problems:
        raise ModelError(listing(folder, problems))
    return files, tensors


def listing(where: Path, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{where}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
