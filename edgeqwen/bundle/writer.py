"""Atomic bundle writing: build in a staging folder beside the destination, then rename into place.

A failed or interrupted build leaves nothing at the destination, and an
existing bundle is replaced only after the new one is complete (and only with
--force). Staging folders are siblings of the destination, so the final step
is a rename on one filesystem. Staging folders left by a killed process are
removed by the next build to the same destination.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgeqwen.errors import BundleError

STAGING_PREFIX = ".partial-"
RETIRED_PREFIX = ".replaced-"


def check_destination(destination: Path, force: bool) -> None:
    """Refuse early, before any long work, when the destination cannot be written."""
    if destination.exists() and not force:
        raise BundleError(f"{destination} already exists; pass --force to replace it, or choose another --out")
    if destination.exists() and not destination.is_dir():
        raise BundleError(f"{destination} exists and is not a folder; it will not be replaced")


class StagedBundle:
    """Context manager: `with StagedBundle(dest, force) as staging:` ... then `.commit()`."""

    def __init__(self, destination: Path, force: bool = False):
        self.destination = destination
        self.force = force
        self.staging: Path | None = None
        self.committed = False

    def __enter__(self) -> Path:
        check_destination(self.destination, self.force)
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_staging(self.destination)
        prefix = f"{STAGING_PREFIX}{self.destination.name}-{os.getpid()}-"
        self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.destination.parent))
        return self.staging

    def commit(self) -> None:
        """Move the finished bundle into place, replacing an old one only now that the new one is complete."""
        if self.staging is None:
            raise RuntimeError("commit() called outside the `with` block")
        make_world_readable(self.staging)
        retired = None
        if self.destination.exists():
            check_destination(self.destination, self.force)
            retired = Path(tempfile.mkdtemp(prefix=f"{RETIRED_PREFIX}{self.destination.name}-", dir=self.destination.parent))
            retired.rmdir()
            self.destination.rename(retired)
        self.staging.rename(self.destination)
        self.committed = True
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed and self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def make_world_readable(folder: Path) -> None:
    """mkdtemp and some writers create owner-only files; a bundle is meant to be copied and shared."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def remove_abandoned_staging(destination: Path) -> None:
    """Delete staging folders for this destination whose process no longer exists."""
    for prefix in (STAGING_PREFIX, RETIRED_PREFIX):
        for leftover in destination.parent.glob(f"{prefix}{destination.name}-*"):
            pid_text = leftover.name[len(prefix) + len(destination.name) + 1 :].split("-", 1)[0]
            if prefix == STAGING_PREFIX and pid_text.isdigit() and process_alive(int(pid_text)):
                continue
            shutil.rmtree(leftover, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
