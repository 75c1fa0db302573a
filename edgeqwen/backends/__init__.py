"""Conversion backends: one module per runtime engine, behind one interface (base.Backend) and one registry.

Every place that depends on the engine asks the registry for the target's backend. Adding an engine is
adding a module with a Backend subclass and naming it in BACKENDS below; its targets, rungs and tests then
follow from the files on disk (tests/test_backends.py fails for a registered engine without a target).
The device side has its own one decision, in the shim (edgeqwen/shim/engines.py).
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from edgeqwen.backends.base import CONTEXT_BINARY, DECODER, EMBEDDINGS, LM_HEAD, Backend
from edgeqwen.errors import PlanError

__all__ = ["Backend", "BACKENDS", "CONTEXT_BINARY", "DECODER", "EMBEDDINGS", "LM_HEAD", "backend_for", "engines",
           "folder_engine", "registry", "runtime_version"]

# module:class of every backend, in the order `edgeqwen targets` and error messages list them.
BACKENDS = (
    "edgeqwen.backends.ort_genai:OrtGenaiBackend",
    "edgeqwen.backends.openvino:OpenVinoBackend",
    "edgeqwen.backends.qnn:QnnBackend",
)


@functools.cache
def registry() -> Mapping[str, Backend]:
    """engine name -> backend, built once (the modules import their engines' heavy packages only when used)."""
    backends = {}
    for spec in BACKENDS:
        module, name = spec.split(":")
        backend = getattr(importlib.import_module(module), name)()
        backends[backend.engine] = backend
    return MappingProxyType(backends)


def engines() -> tuple[str, ...]:
    return tuple(registry())


def backend_for(engine: str) -> Backend:
    try:
        return registry()[engine]
    except KeyError:
        raise PlanError(f"unknown engine {engine!r}; edgeqwen builds for {', '.join(engines())}") from None


def folder_engine(folder: Path) -> str | None:
    """The engine whose runtime loads `folder` (a bundle names it in its manifest), or None."""
    import json

    manifest = folder / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["runtime"]["engine"]
    found = [engine for engine, backend in registry().items() if backend.recognizes(folder)]
    return found[0] if len(found) == 1 else None


def runtime_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
