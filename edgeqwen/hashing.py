"""File hashes on the edgeqwen side: one helper for the bundle manifest, `verify` and the build cache.

(The shim keeps its own copy in edgeqwen/shim/bundle_files.py: on the device it has only the standard
library.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(folder: Path, exclude: frozenset[str] = frozenset()) -> dict[str, dict]:
    """Size and sha256 of every file under `folder` but `exclude`, by relative path, sorted."""
    entries = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative not in exclude:
            entries[relative] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return entries


def file_problems(folder: Path, entries: dict[str, dict], exclude: frozenset[str] = frozenset()) -> list[str]:
    """Every way `folder` differs from `entries` (as file_entries writes them), one sentence per file."""
    if not isinstance(entries, dict):
        return [f"the file table is a {type(entries).__name__}, not a table of files: the manifest is damaged"]
    problems = []
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - set(exclude)
    for name in sorted(set(entries) - present):
        problems.append(f"{name}: listed in the manifest but missing")
    for name in sorted(present - set(entries)):
        problems.append(f"{name}: present but not in the manifest")
    for name in sorted(set(entries) & present):
        path, entry = folder / name, entries[name]
        if not (isinstance(entry, dict) and type(entry.get("size")) is int and isinstance(entry.get("sha256"), str)):
            problems.append(f"{name}: its manifest entry is not a size and a sha256 (the manifest is damaged)")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{name}: size {path.stat().st_size} bytes, the manifest says {entry['size']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (the file was changed)")
    return problems
