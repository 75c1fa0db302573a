"""A content-addressed cache of build outputs, shared by every build on the machine (or CI runner).

An entry is a folder named by the sha256 of its key: everything that can
change its bytes (model weights hash, the parts of the plan that matter, tool
versions). Entries are written to a temporary sibling and renamed into place,
and each carries ENTRY.json with the size and sha256 of every file, checked
on every read: a damaged entry is deleted and rebuilt, never used.

Two kinds of entries are kept:
  conversion  the engine's output (ONNX graph, weights, tokenizer), shared by
              targets whose conversion is identical (a Pi and an Android phone that
              both want INT4 blocks of 64 for the CPU provider)
  bundle      a whole finished bundle, so an unchanged rebuild takes seconds
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgeqwen.demo.assets import cache_root
from edgeqwen.hashing import file_entries, file_problems

ENTRY_FILE = "ENTRY.json"


def cache_key(**parts) -> str:
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def source_sha256(*paths: Path) -> str:
    """A digest of code files (folders are walked for *.py), so editing the code invalidates what it made."""
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEQWEN_BUILD_CACHE", cache_root() / "builds"))


class BuildCache:
    def __init__(self, root: Path | None = None):
        self.root = root or default_cache_dir()

    def entry_path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def lookup(self, kind: str, key: str) -> Path | None:
        """The entry's folder if it exists and is intact; a damaged entry is removed."""
        entry = self.entry_path(kind, key)
        if not entry.is_dir():
            return None
        if not self._intact(entry):
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return entry

    def store(self, kind: str, key: str, source: Path) -> Path:
        """Copy `source` (a folder) in as the entry for `key`; atomic, and a no-op if it exists."""
        entry = self.entry_path(kind, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=entry.parent))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            files = file_entries(staging)
            (staging / ENTRY_FILE).write_text(json.dumps({"key": key, "files": files}, indent=1, sort_keys=True))
            if entry.exists():
                shutil.rmtree(entry)  # damaged or stale: lookup would have returned it otherwise
            staging.rename(entry)
        except OSError:
            if self.lookup(kind, key) is None:  # another process may have stored the same key first
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return entry

    @staticmethod
    def _intact(entry: Path) -> bool:
        try:
            recorded = json.loads((entry / ENTRY_FILE).read_text())["files"]
        except (OSError, ValueError, KeyError):
            return False
        return not file_problems(entry, recorded, frozenset({ENTRY_FILE}))


def copy_entry(entry: Path, destination: Path) -> None:
    """Copy an entry's files (not its ENTRY.json) into `destination`."""
    for path in sorted(entry.rglob("*")):
        if path.is_file() and path.name != ENTRY_FILE:
            target = destination / path.relative_to(entry)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
