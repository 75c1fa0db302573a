"""`verify`: a bundle is exactly what its manifest says, no more and no less."""

from __future__ import annotations

from pathlib import Path

from edgeqwen.bundle.manifest import MANIFEST_NAME, read_manifest, sha256_file


def verify_bundle(bundle_dir: Path) -> list[str]:
    """Every problem found, as a sentence naming the file; an empty list means the bundle is intact."""
    manifest = read_manifest(bundle_dir)  # raises on a missing manifest or an unknown format_version
    problems = []
    listed = manifest.get("files", {})
    present = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()} - {MANIFEST_NAME}
    for name in sorted(set(listed) - present):
        problems.append(f"{name}: listed in the manifest but missing")
    for name in sorted(present - set(listed)):
        problems.append(f"{name}: present but not in the manifest")
    for name in sorted(set(listed) & present):
        path, entry = bundle_dir / name, listed[name]
        if path.stat().st_size != entry["size"]:
            problems.append(f"{name}: size {path.stat().st_size} bytes, the manifest says {entry['size']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (the file was changed)")
    return problems
