"""Conversion backends, one module per runtime engine. Each exposes
    conversion_key_parts(plan) -> dict       what changes the converted files (the cache key)
    convert(plan, model_dir, work_dir, out_dir) -> dict   the runtime's files, and facts for the manifest
    finalize(plan, bundle_dir)               target settings that do not change the conversion
    check_supported(plan)                    refuses what the engine or device cannot run, before any work
    engine_config(plan, model_dir, work_dir) -> dict      the engine's own configuration, shown by `--dry-run`
"""

from __future__ import annotations

from types import ModuleType

from edgeqwen.errors import PlanError


def buildable_engines() -> tuple[str, ...]:
    """Engines this version can build; profiles for other engines exist for planning only."""
    return ("onnxruntime-genai", "openvino")


def backend_for(engine: str) -> ModuleType:
    if engine == "onnxruntime-genai":
        from edgeqwen.backends import ort_genai

        return ort_genai
    if engine == "openvino":
        from edgeqwen.backends import openvino

        return openvino
    raise PlanError(f"unknown engine {engine!r}")


def runtime_requirement(engine: str, device: str) -> str:
    """The one pip requirement a device needs to run a bundle (what the shim imports)."""
    if engine == "onnxruntime-genai":
        package = "onnxruntime-genai-cuda" if device == "cuda" else "onnxruntime-genai"
        return f"{package}=={runtime_version('onnxruntime-genai')}"
    # openvino-genai brings the matching openvino and openvino-tokenizers (the IR tokenizer's operations).
    return f"openvino-genai=={runtime_version('openvino-genai')}"


def runtime_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
