"""The newcomer's path: the demo model, built for a Raspberry Pi 5, answers in a virtualenv holding only the runtime."""

import ast
import json
import subprocess
import sys
import venv
from importlib.metadata import version

import pytest

from edgeqwen.pipeline import SHIM_SOURCE

STDLIB = set(sys.stdlib_module_names)
RUNTIME_MODULES = {"OrtGenaiRuntime": "onnxruntime_genai", "OpenVinoRuntime": "openvino_genai"}


def imported_modules(tree) -> set[str]:
    return {
        (alias.name if isinstance(node, ast.Import) else node.module).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }


def test_shim_imports_only_the_standard_library_and_each_runtime_only_where_it_is_used():
    tree = ast.parse(SHIM_SOURCE.read_text())
    top_level = imported_modules(ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                            type_ignores=[]))
    assert top_level <= STDLIB
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in RUNTIME_MODULES:
            assert imported_modules(node) - STDLIB == {RUNTIME_MODULES[node.name]}
    assert imported_modules(tree) - STDLIB == set(RUNTIME_MODULES.values())


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    from edgeqwen.cli import main

    out = tmp_path_factory.mktemp("demo") / "pi5"
    assert main(["build", "--target", "raspberry-pi-5", "--out", str(out)]) == 0
    return out


def test_demo_bundle_is_small_and_described(demo_bundle):
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    assert manifest["model"]["id"] == "edgeqwen/demo-qwen3-4l-h128" and manifest["model"]["origin"] == "demo"
    weights = sum(e["size"] for n, e in manifest["files"].items() if n.startswith("model.onnx"))
    assert weights < 0.4 * manifest["model"]["fp16_checkpoint_bytes"]
    assert "pip install onnxruntime-genai==" in (demo_bundle / "README.md").read_text()
    # Both of Qwen's end tokens stop generation (config.json names one, generation_config.json both).
    genai = json.loads((demo_bundle / "genai_config.json").read_text())
    assert genai["model"]["eos_token_id"] == [151645, 151643]


def test_demo_bundle_answers_in_a_fresh_virtualenv_with_only_the_runtime(demo_bundle, tmp_path):
    env_dir = tmp_path / "device-env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    requirement = f"onnxruntime-genai=={version('onnxruntime-genai')}"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", requirement], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr
    installed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert not names & {"torch", "transformers", "edgeqwen", "olive-ai"}

    answer = subprocess.run(
        [python, demo_bundle / "shim.py", "What is the pathlib module for?", "--max-new-tokens", "40"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert answer.returncode == 0, answer.stderr
    words = answer.stdout.split()
    assert len(words) >= 5, answer.stdout
    # A trained model answers in the documentation's English, not random vocabulary.
    assert sum(w.strip('.,:;"()').isalpha() for w in words) >= len(words) // 2, answer.stdout
