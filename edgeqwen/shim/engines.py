"""Which adapter runs a folder: the device side's one decision on the engine.

An edgeqwen bundle names its engine in manifest.json (read and, unless --no-verify, checked file by
file first). Worker mode also runs a folder without a manifest, a bundle being built or another tool's
export for a benchmark, recognised by the files its runtime reads.
"""

import os

from .bundle_files import has_manifest, read_manifest, verify_files
from .errors import ShimError
from .openvino import IR_MODEL, OpenVinoRuntime
from .ort_genai import OrtGenaiRuntime
from .ort_qnn import OrtQnnRuntime

RUNTIMES = {runtime.engine: runtime for runtime in (OrtGenaiRuntime, OrtQnnRuntime, OpenVinoRuntime)}
MARKER_FILES = {"onnxruntime-genai": "genai_config.json", "openvino": IR_MODEL}


def folder_engine(bundle_dir):
    found = [engine for engine, marker in MARKER_FILES.items() if os.path.exists(os.path.join(bundle_dir, marker))]
    if len(found) != 1:
        raise ShimError(f"{bundle_dir}: no manifest.json, and not a folder one runtime reads (expected one of "
                        f"{', '.join(MARKER_FILES.values())})")
    if found[0] == "onnxruntime-genai" and names_qnn(os.path.join(bundle_dir, "genai_config.json")):
        return OrtQnnRuntime.engine
    return found[0]


def names_qnn(genai_config):
    """Whether an ONNX Runtime GenAI folder's graphs run on the QNN provider (a Qualcomm NPU pipeline)."""
    with open(genai_config, encoding="utf-8", errors="replace") as config:
        return '"qnn"' in config.read()


def open_bundle(bundle_dir, device=None, threads=None, verify=True, allow_plain=False):
    """(manifest or None, runtime): the bundle checked and loaded in the runtime it was built for."""
    if has_manifest(bundle_dir):
        manifest = read_manifest(bundle_dir)
        if verify:
            verify_files(bundle_dir, manifest)
        engine = manifest["runtime"]["engine"]
    elif allow_plain:
        manifest, engine = None, folder_engine(bundle_dir)
    else:
        raise ShimError(f"{bundle_dir}: no manifest.json; not an edgeqwen bundle")
    if engine not in RUNTIMES:
        raise ShimError(f"manifest.json: runtime engine {engine!r} is not one this shim runs ({', '.join(RUNTIMES)})")
    return manifest, RUNTIMES[engine](bundle_dir, device, threads)
