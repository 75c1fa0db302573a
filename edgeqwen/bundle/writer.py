"""Atomic bundle writing: build in a staging folder beside the destination, then swap it into place.

A failed, interrupted or killed build leaves nothing at the destination, and an existing bundle is
replaced only after the new one is complete (and only with --force): the destination is at every
instant either the complete old bundle or the complete new one.

- Staging folders are siblings of the destination, so the final step is a rename on one file system.
  Replacing a bundle is one atomic exchange of the two folders (Linux renameat2 RENAME_EXCHANGE); where
  the file system cannot exchange, the old bundle is renamed aside first, and a build killed between
  the two renames has it put back by the next build to the same place.
- One build at a time writes a destination: a second one is refused at once, naming the first's pid
  (an advisory lock the kernel releases when the holder dies, even by SIGKILL).
- Before any long work the destination is checked: not a file, its folder writable, and room on the
  file system for the bundle the plan estimates.
- What a killed build left (staging folders, a renamed-aside bundle, the lock file) is cleaned up by
  the next build to the same destination.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edgeqwen.errors import BundleError

STAGING_PREFIX = ".partial-"
RETIRED_PREFIX = ".replaced-"
LOCK_PREFIX = ".lock-"
MB = 1024 * 1024
RENAME_EXCHANGE = 2  # linux/fs.h


def check_destination(destination: Path, force: bool) -> None:
    """Refuse early, before any long work, when the destination cannot be written."""
    if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
        raise BundleError(f"--out {destination}: exists and is not a folder; it will not be replaced (choose "
                          "another --out)")
    if destination.exists() and not force:
        raise BundleError(f"{destination} already exists; pass --force to replace it, or choose another --out")
    if destination.is_dir() and any(destination.iterdir()) and not (destination / "manifest.json").is_file():
        raise BundleError(f"--out {destination}: a folder that is not an edgeqwen bundle (no manifest.json); "
                          "--force replaces only bundles, so it is left alone. Choose another --out")
    for parent in destination.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BundleError(f"--out {destination}: {parent} is a file, so no folder can be made inside it")
            break


def check_free_space(parent: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(parent).free
    if free < needed_bytes:
        raise BundleError(f"--out {parent}: {free / MB:.1f} MB free on its file system; the bundle needs about "
                          f"{needed_bytes / MB:.1f} MB. Free some space or choose another --out")


class DestinationLock:
    """An exclusive, non-blocking flock on `.lock-NAME` beside the destination; the file goes when released."""

    def __init__(self, destination: Path):
        self.destination = destination
        self.path = destination.parent / f"{LOCK_PREFIX}{destination.name}"
        self.fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise BundleError(f"another edgeqwen build (pid {holder}) is writing {self.destination}; wait for "
                                  "it to finish, or choose another --out") from None
            # The holder before us may have removed the file after we opened it: lock the file on disk.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # while still holding the lock, so no one else is using this file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


class StagedBundle:
    """Context manager: `with StagedBundle(dest, force, needed_bytes) as staging:` ... then `.commit()`."""

    def __init__(self, destination: Path, force: bool = False, needed_bytes: int = 0):
        self.destination = destination
        self.force = force
        self.needed_bytes = needed_bytes
        self.staging: Path | None = None
        self.committed = False
        self.lock = DestinationLock(destination)

    def __enter__(self) -> Path:
        check_destination(self.destination, self.force)
        parent = self.destination.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except OSError as e:
            raise BundleError(f"--out {self.destination}: cannot write in {parent} ({e.strerror})") from None
        try:
            recover_and_clean(self.destination)
            check_destination(self.destination, self.force)  # a recovered bundle counts as existing
            check_free_space(parent, self.needed_bytes)
            prefix = f"{STAGING_PREFIX}{self.destination.name}-{os.getpid()}-"
            self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except OSError as e:
            self.lock.release()
            raise BundleError(f"--out {self.destination}: cannot write in {parent} ({e.strerror})") from None
        except BaseException:
            self.lock.release()
            raise
        return self.staging

    def commit(self) -> None:
        """Swap the finished bundle into place; an old one is replaced only now that the new one is complete."""
        if self.staging is None:
            raise RuntimeError("commit() called outside the `with` block")
        make_world_readable(self.staging)
        if not self.destination.exists():
            os.rename(self.staging, self.destination)
            self.committed = True
            return
        check_destination(self.destination, self.force)
        if exchange(self.staging, self.destination):
            self.committed = True
            shutil.rmtree(self.staging, ignore_errors=True)  # now the old bundle
            return
        retired = Path(tempfile.mkdtemp(prefix=f"{RETIRED_PREFIX}{self.destination.name}-", dir=self.destination.parent))
        retired.rmdir()
        os.rename(self.destination, retired)  # killed after this: the next build puts it back
        os.rename(self.staging, self.destination)
        self.committed = True
        shutil.rmtree(retired, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self.committed and self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self.lock.release()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders (renameat2 RENAME_EXCHANGE); False where the system or file system cannot."""
    sys.audit("edgeqwen.exchange", str(a), str(b))  # a file operation, visible to audit hooks like os.rename
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def make_world_readable(folder: Path) -> None:
    """mkdtemp and some writers create owner-only files; a bundle is meant to be copied and shared."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def recover_and_clean(destination: Path) -> None:
    """With the destination's lock held: put back a bundle a killed build had renamed aside, then remove what
    killed builds left (any other renamed-aside copy; staging folders whose process is gone)."""
    retired = sorted(destination.parent.glob(f"{RETIRED_PREFIX}{destination.name}-*"))
    if retired and not destination.exists():
        os.rename(retired.pop(), destination)
    for leftover in retired:
        shutil.rmtree(leftover, ignore_errors=True)
    remove_abandoned(destination.parent, f"{STAGING_PREFIX}{destination.name}-")


def remove_abandoned(folder: Path, prefix: str) -> None:
    """Delete `folder/PREFIX<pid>-*` entries whose process no longer exists (scratch folders of killed builds)."""
    for leftover in folder.glob(f"{prefix}*"):
        pid_text = leftover.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and not process_alive(int(pid_text)):
            shutil.rmtree(leftover, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
