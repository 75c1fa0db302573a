"""The newcomer's path: the demo model built for a Raspberry Pi 5 (tests/test_shim.py runs it as on the device)."""

import ast
import json
import sys


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


def test_demo_bundle_is_small_and_described(demo_bundle):
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    assert manifest["model"]["id"] == "edgeqwen/demo-qwen3-4l-h128" and manifest["model"]["origin"] == "demo"
    weights = sum(e["size"] for n, e in manifest["files"].items() if n.startswith("model.onnx"))
    assert weights < 0.4 * manifest["model"]["fp16_checkpoint_bytes"]
    assert "pip install onnxruntime-genai==" in (demo_bundle / "README.md").read_text()
    # Both of Qwen's end tokens stop generation (config.json names one, generation_config.json both).
    genai = json.loads((demo_bundle / "genai_config.json").read_text())
    assert genai["model"]["eos_token_id"] == [151645, 151643]
