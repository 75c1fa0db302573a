"""The source model: where it comes from, what it is, and whether edgeqwen supports it.

A model is named by a local folder, a Hugging Face id, or nothing (the shipped
demo model). A Hugging Face id is downloaded by huggingface_hub into its usual
cache and from then on is a local folder like any other, so every later stage
has one code path. Support is decided from config.json alone, before any
weights are read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from edgeqwen.checkpoint import check_checkpoint, read_json_file
from edgeqwen.errors import ModelError

# The architectures the ONNX Runtime GenAI builder and Optimum-Intel both export as dense Qwen decoders.
SUPPORTED_ARCHITECTURES = {"Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
SUPPORTED_TEXT = "dense Qwen2 / Qwen2.5 (base, Instruct, Coder, Math) and Qwen3 causal language models"

# Qwen relatives people try first, with the reason each is refused.
REFUSED_MODEL_TYPES = {
    "qwen2_moe": "a mixture-of-experts model",
    "qwen3_moe": "a mixture-of-experts model",
    "qwen3_next": "a hybrid-attention mixture-of-experts model",
    "qwen2_vl": "a vision-language model",
    "qwen2_5_vl": "a vision-language model",
    "qwen3_vl": "a vision-language model",
    "qwen3_vl_moe": "a vision-language model",
    "qwen2_audio": "an audio-language model",
    "qwen2_5_omni": "a multimodal model",
    "qwen3_omni_moe": "a multimodal model",
}

HF_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class TensorGroups:
    """Parameter counts by role, read from safetensors headers without loading tensors."""

    embedding: int
    lm_head: int  # 0 when tied to the embedding
    linear: int  # 2-D projection weights inside the decoder layers
    other: int  # norms and biases


@dataclass(frozen=True)
class ModelSource:
    spec: str  # what the user asked for: a folder, a Hugging Face id, or "demo"
    id: str  # a stable, machine-independent name: the Hugging Face id, demo id, or folder name
    path: Path
    origin: str  # "demo", "huggingface" or "local"
    architecture: str
    model_type: str
    config: dict
    weight_files: tuple[Path, ...]
    weights_sha256: str
    checkpoint_bytes: int
    tensors: TensorGroups

    @property
    def num_parameters(self) -> int:
        t = self.tensors
        return t.embedding + t.lm_head + t.linear + t.other

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    @property
    def short_name(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    def dim(self, key: str) -> int:
        if key == "head_dim" and not self.config.get("head_dim"):
            return self.config["hidden_size"] // self.config["num_attention_heads"]
        return self.config[key]


def resolve_model(spec: str | None) -> ModelSource:
    """Find the model named by `spec`, check it is supported, and describe it."""
    if spec is None or spec == "demo":
        from edgeqwen.demo.assets import DEMO_MODEL_ID, demo_model_dir

        return describe_model("demo", DEMO_MODEL_ID, demo_model_dir(), origin="demo")
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"--model {spec}: is a file; expected a model folder or a Hugging Face id")
        return describe_model(spec, path.resolve().name, path.resolve(), origin="local")
    if HF_ID_PATTERN.match(spec):
        return describe_model(spec, spec, download_from_hub(spec), origin="huggingface")
    raise ModelError(
        f"--model {spec}: no such folder, and not a Hugging Face id (expected ORG/NAME, e.g. Qwen/Qwen3-0.6B)"
    )


def download_from_hub(repo_id: str) -> Path:
    """Fetch a checkpoint with huggingface_hub (honours HF_HOME, HF_TOKEN and HF_HUB_OFFLINE)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    patterns = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except HfHubHTTPError as e:
        raise ModelError(f"--model {repo_id}: the Hugging Face Hub refused it: {e}") from None
    except Exception as e:  # offline, DNS, missing cache: all surface as different exception types
        raise ModelError(
            f"--model {repo_id}: could not download from the Hugging Face Hub and it is not in the local cache "
            f"({type(e).__name__}: {e}). Download it once on a connected machine, or pass a local folder."
        ) from None


def read_config(path: Path) -> dict:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelError(f"{path}: no config.json; expected a Hugging Face model folder ({SUPPORTED_TEXT})")
    return read_json_file(config_path, "a Hugging Face config.json")


def check_supported(config: dict, where: Path) -> tuple[str, str]:
    model_type = config.get("model_type", "")
    architectures = config.get("architectures") or []
    if model_type in REFUSED_MODEL_TYPES:
        raise ModelError(
            f"{where}: model_type {model_type!r} is {REFUSED_MODEL_TYPES[model_type]}; "
            f"edgeqwen supports {SUPPORTED_TEXT}"
        )
    supported = [a for a in architectures if a in SUPPORTED_ARCHITECTURES]
    if not supported or SUPPORTED_ARCHITECTURES[supported[0]] != model_type:
        shown = ", ".join(architectures) or "none"
        raise ModelError(
            f"{where}: architecture {shown} (model_type {model_type!r}) is not supported; "
            f"edgeqwen supports {SUPPORTED_TEXT}"
        )
    return supported[0], model_type


def describe_model(spec: str, model_id: str, path: Path, origin: str) -> ModelSource:
    """The model folder described, after every check that needs no tensor data (edgeqwen.checkpoint)."""
    config = read_config(path)
    architecture, model_type = check_supported(config, path / "config.json")
    weight_files, tensors = check_checkpoint(path, config)
    return ModelSource(
        spec=spec,
        id=model_id,
        path=path,
        origin=origin,
        architecture=architecture,
        model_type=model_type,
        config=config,
        weight_files=weight_files,
        weights_sha256=hash_files(weight_files),
        checkpoint_bytes=sum(p.stat().st_size for p in weight_files),
        tensors=count_tensors(tensors),
    )


def hash_files(paths: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def count_tensors(tensors: dict[str, dict]) -> TensorGroups:
    """Parameter counts by role, from the checked safetensors header entries."""
    counts = {"embedding": 0, "lm_head": 0, "linear": 0, "other": 0}
    for name, info in tensors.items():
        numel = 1
        for d in info["shape"]:
            numel *= d
        if "embed_tokens" in name:
            counts["embedding"] += numel
        elif name.startswith("lm_head"):
            counts["lm_head"] += numel
        elif len(info["shape"]) == 2:
            counts["linear"] += numel
        else:
            counts["other"] += numel
    return TensorGroups(**counts)
