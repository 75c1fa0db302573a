"""`pack`: a deterministic .tar.gz of a bundle, and its SHA256SUMS line.

Deterministic means the same bundle always packs to the same bytes: entries
sorted, under one top-level folder named after the bundle, with fixed mtimes,
owners and modes, and a gzip header without a timestamp or file name.
"""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

from edgeqwen.hashing import sha256_file
from edgeqwen.bundle.verify import verify_bundle
from edgeqwen.errors import BundleError

FIXED_MTIME = 0


def _tar_info(name: str, size: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def pack_bundle(bundle_dir: Path, archive: Path | None = None) -> tuple[Path, str]:
    """Write `archive` (default: BUNDLE.tar.gz beside the bundle) and return it with its SHA256SUMS line."""
    problems = verify_bundle(bundle_dir)
    if problems:
        raise BundleError(f"{bundle_dir} does not match its manifest; not packing:\n  " + "\n  ".join(problems))
    archive = archive or bundle_dir.parent / f"{bundle_dir.name}.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    top = bundle_dir.name
    files = sorted(p for p in bundle_dir.rglob("*") if p.is_file())
    folders = sorted({p.parent for p in files if p.parent != bundle_dir})
    partial = archive.parent / f".{archive.name}.partial"
    try:
        with open(partial, "wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=FIXED_MTIME) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_tar_info(top, None))
                for folder in folders:
                    tar.addfile(_tar_info(f"{top}/{folder.relative_to(bundle_dir).as_posix()}", None))
                for path in files:
                    relative = path.relative_to(bundle_dir).as_posix()
                    with open(path, "rb") as f:
                        tar.addfile(_tar_info(f"{top}/{relative}", path.stat().st_size), f)
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
    line = f"{sha256_file(archive)}  {archive.name}"
    (archive.parent / f"{archive.name}.sha256").write_text(line + "\n")
    return archive, line
