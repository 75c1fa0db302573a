"""manifest.json: what a bundle is, how it was made, and the size and hash of every file in it.

The manifest is a file format: `format_version` changes whenever a reader
written for an older version could misread it. Shims refuse versions they do
not know. The manifest holds no timestamps or machine paths, so the same
inputs give the same manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgeqwen.errors import BundleError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Every tool whose version can change a bundle's bytes or behaviour.
TOOL_DISTRIBUTIONS = (
    "edgeqwen",
    "olive-ai",
    "onnxruntime-genai",
    "onnxruntime",
    "onnx",
    "onnx-ir",
    "transformers",
    "torch",
    "optimum-intel",
    "nncf",
    "openvino",
    "openvino-genai",
    "openvino-tokenizers",
    "tokenizers",
)


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOL_DISTRIBUTIONS:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(bundle_dir: Path) -> dict[str, dict]:
    """Size and sha256 of every file except the manifest itself, by relative path, sorted."""
    entries = {}
    for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(bundle_dir).as_posix()
        if relative != MANIFEST_NAME:
            entries[relative] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return entries


def write_manifest(bundle_dir: Path, body: dict) -> dict:
    manifest = {"format_version": FORMAT_VERSION, **body, "files": file_entries(bundle_dir)}
    manifest["bundle_bytes"] = sum(f["size"] for f in manifest["files"].values())
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(bundle_dir: Path) -> dict:
    path = bundle_dir / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: no {MANIFEST_NAME}; not an edgeqwen bundle")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON: {e}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path}: format_version {manifest.get('format_version')!r}; this edgeqwen reads {FORMAT_VERSION}"
        )
    return manifest
