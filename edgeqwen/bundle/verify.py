"""`verify`: a bundle is exactly what its manifest says, no more and no less."""

from __future__ import annotations

from pathlib import Path

from edgeqwen.bundle.manifest import MANIFEST_NAME, read_manifest
from edgeqwen.hashing import file_problems


def verify_bundle(bundle_dir: Path) -> list[str]:
    """Every problem found, as a sentence naming the file; an empty list means the bundle is intact."""
    manifest = read_manifest(bundle_dir)  # raises on a missing manifest or an unknown format_version
    return file_problems(bundle_dir, manifest.get("files", {}), frozenset({MANIFEST_NAME}))
