"""manifest.json: what a bundle is, how it was made, and the size and hash of every file in it.

The manifest is a file format: `format_version` changes whenever a reader
written for an older version could misread it. This edgeqwen reads every
version in READABLE_FORMAT_VERSIONS (tests/golden/ keeps a bundle of each);
shims refuse versions they do not know. The manifest holds no timestamps or
machine paths, so the same inputs give the same manifest.

    1  the first bundles: plan_version 1, a shim without worker mode
    2  plan_version 2 (each engine's options in the plan's engine_options), a shim with worker mode
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgeqwen.errors import BundleError
from edgeqwen.hashing import file_entries

FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
DEVICE_CHECK_FILE = "device_check.json"  # the device check's report (edgeqwen/device/check.py)
# The tools every build uses; each backend names its engine's own (Backend.tool_distributions).
COMMON_TOOLS = ("edgeqwen", "transformers", "torch", "tokenizers")


def tool_distributions() -> tuple[str, ...]:
    """Every tool whose version can change a bundle's bytes or behaviour."""
    from edgeqwen.backends import registry

    return COMMON_TOOLS + tuple(name for backend in registry().values() for name in backend.tool_distributions)


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in tool_distributions():
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_manifest(bundle_dir: Path, body: dict) -> dict:
    manifest = {"format_version": FORMAT_VERSION, **body, "files": file_entries(bundle_dir, frozenset({MANIFEST_NAME}))}
    manifest["bundle_bytes"] = sum(f["size"] for f in manifest["files"].values())
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(bundle_dir: Path) -> dict:
    path = bundle_dir / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: no {MANIFEST_NAME}; not an edgeqwen bundle")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BundleError(f"{path}: not UTF-8 text (byte {e.start}); the bundle is damaged") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: a JSON {type(manifest).__name__}, not an edgeqwen manifest (an object)")
    version = manifest.get("format_version")
    if type(version) is int and version > max(READABLE_FORMAT_VERSIONS):
        raise BundleError(f"{path}: format_version {version} is newer than this edgeqwen reads "
                          f"({', '.join(map(str, READABLE_FORMAT_VERSIONS))}); upgrade edgeqwen to use this bundle")
    if type(version) is not int or version not in READABLE_FORMAT_VERSIONS:
        raise BundleError(
            f"{path}: format_version {manifest.get('format_version')!r}; this edgeqwen reads "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}"
        )
    return manifest


def manifest_plan(bundle_dir: Path, manifest: dict):
    """The bundle's build plan as the typed BuildPlan, whatever plan_version its manifest stores."""
    from edgeqwen.plan import BuildPlan

    return BuildPlan.from_dict(manifest.get("plan"), where=f"{bundle_dir / MANIFEST_NAME} (plan)")
