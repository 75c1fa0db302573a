"""Shared test fixtures: tiny random Qwen2 and Qwen3 checkpoints built at test time, and an in-process CLI.

The tiny models are real transformers checkpoints (Qwen2ForCausalLM,
Qwen3ForCausalLM) with Qwen's full tokenizer, so every engine treats them
exactly like a downloaded Qwen; only the sizes are small (hidden 128, 2 layers).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import venv
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import os

import pytest
from hypothesis import HealthCheck, settings

from edgeqwen.demo.assets import TOKENIZER_FILES, tokenizer_source_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
QWEN_VOCAB = 151936

# Fuzzing (tests/test_fuzz_*.py): a small example count in the default run, a larger one in CI's slow suite
# (`make test-slow` sets HYPOTHESIS_PROFILE=ci). No deadline: a 2-core machine under load is not a bug.
settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=150)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True, scope="session")
def _hermetic_environment(tmp_path_factory):
    """No network, and the demo model's cache folder inside the test session."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("EDGEQWEN_CACHE", str(tmp_path_factory.mktemp("edgeqwen-cache")))
    patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    # Builds here skip the device check (minutes of emulation each) unless a test asks for it with
    # --device-check; tests/test_device_check.py does, and checks that a skipped check says "not run".
    patch.setenv("EDGEQWEN_DEVICE_CHECK", "off")
    yield
    patch.undo()


def copy_tokenizer(folder: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_source_dir() / name, folder / name)


def make_tiny_qwen(folder: Path, family: str, seed: int = 0, tied: bool = True) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=QWEN_VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=tied,
        bos_token_id=151643,
        eos_token_id=151645,
    )
    if family == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=32, **common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    folder.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: make_tiny_qwen(root / f"tiny-{family}", family) for family in ("qwen2", "qwen3")}


def write_header_only_checkpoint(folder: Path, config: dict, tensors: dict[str, list[int]]) -> Path:
    """A model folder whose safetensors header declares `tensors` but holds no data.

    Enough for every check that runs before conversion (support, plan, fit), which read headers only.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    header = {name: {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]} for name, shape in tensors.items()}
    blob = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob)
    copy_tokenizer(folder)
    return folder


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*argv) -> CliResult:
    """Run `edgeqwen ...` in process, as a user would from the shell."""
    from edgeqwen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse usage errors
            code = e.code if isinstance(e.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory):
    """The shipped demo model built for a Raspberry Pi 5, the way `make demo` builds it."""
    from edgeqwen.cli import main

    out = tmp_path_factory.mktemp("demo") / "pi5"
    assert main(["build", "--target", "raspberry-pi-5", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def demo_npu_bundle(tmp_path_factory):
    """The shipped demo model built for the Intel NPU target (OpenVINO); the tests run it on the CPU."""
    from edgeqwen.cli import main

    out = tmp_path_factory.mktemp("demo") / "npu"
    assert main(["build", "--target", "intel-core-ultra-npu", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def device_python(tmp_path_factory):
    """A virtualenv with only the ONNX Runtime GenAI runtime, as on the device (needs PyPI)."""
    env_dir = tmp_path_factory.mktemp("device") / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "-q", f"onnxruntime-genai=={version('onnxruntime-genai')}"],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    names = {p["name"].lower() for p in json.loads(subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True).stdout)}
    assert not names & {"torch", "transformers", "edgeqwen", "olive-ai", "openai"}
    return python
