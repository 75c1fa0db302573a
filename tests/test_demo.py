"""The newcomer's path: the demo model built for a Raspberry Pi 5 (tests/test_shim.py runs it as on the device)."""

import ast
import json
import sys

from edgeqwen.bundle.shim_file import SHIM_PACKAGE, assemble
from edgeqwen.shim import MODULES

STDLIB = set(sys.stdlib_module_names)
# The runtime each adapter module imports (inside its functions); every other shim module needs the stdlib only.
# numpy comes with both runtimes: the logprobs' softmax (generation) uses it wherever it runs.
RUNTIME_MODULES = {"ort_genai": {"onnxruntime_genai"}, "ort_qnn": {"onnxruntime_qnn"}, "openvino": {"openvino_genai", "openvino", "numpy"},
                   "generation": {"numpy"}}


def imported_modules(tree) -> set[str]:
    """Absolute imports anywhere in `tree` (a shim module's relative imports are the package itself)."""
    return {
        (alias.name if isinstance(node, ast.Import) else node.module).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)
        for alias in node.names
    }


def module_level(tree) -> ast.Module:
    return ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])


def test_shim_imports_only_the_standard_library_and_each_runtime_only_where_it_is_used():
    for module in MODULES:
        tree = ast.parse((SHIM_PACKAGE / f"{module}.py").read_text())
        assert imported_modules(module_level(tree)) <= STDLIB, module
        assert imported_modules(tree) - STDLIB == RUNTIME_MODULES.get(module, set()), module
    shipped = ast.parse(assemble())  # the one file a bundle ships
    assert imported_modules(module_level(shipped)) <= STDLIB
    assert imported_modules(shipped) - STDLIB == set().union(*RUNTIME_MODULES.values())


def test_demo_bundle_is_small_and_described(demo_bundle):
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    assert manifest["model"]["id"] == "edgeqwen/demo-qwen3-4l-h128" and manifest["model"]["origin"] == "demo"
    weights = sum(e["size"] for n, e in manifest["files"].items() if n.startswith("model.onnx"))
    assert weights < 0.4 * manifest["model"]["fp16_checkpoint_bytes"]
    assert "pip install onnxruntime-genai==" in (demo_bundle / "README.md").read_text()
    # Both of Qwen's end tokens stop generation (config.json names one, generation_config.json both).
    genai = json.loads((demo_bundle / "genai_config.json").read_text())
    assert genai["model"]["eos_token_id"] == [151645, 151643]
