"""The boundary around each build stage: whatever escapes a stage reaches the user as an edgeqwen error.

Olive, the model builders, NNCF, transformers and the file system raise their own exceptions. Inside a
stage they are caught and re-raised as a BuildError that says which stage, which build, and what went
wrong, with the full traceback written to a log file (`edgeqwen --debug` prints it instead). Errors
edgeqwen raised itself pass through unchanged; so do Ctrl-C and SIGTERM, which the command line turns
into a clean stop.
"""

from __future__ import annotations

import errno
import os
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from edgeqwen.demo.assets import cache_root
from edgeqwen.errors import BuildError, EdgeqwenError

OS_ERROR_WORDS = {
    errno.ENOSPC: "no space left on the file system",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "a file vanished or was never there",
}


def log_dir() -> Path:
    return cache_root() / "logs"


def build_label(resolved) -> str:
    return f"the {resolved.plan.target} build of {resolved.plan.model.id}"


def request_label(request) -> str:
    return f"the {request.target} build of {request.model or 'the demo model'}"


def describe_os_error(e: OSError) -> str:
    words = OS_ERROR_WORDS.get(e.errno, e.strerror or str(e))
    where = f" (writing {e.filename})" if e.filename else ""
    return f"{words}{where}"


def write_traceback(stage: str, e: BaseException) -> Path | None:
    """The full traceback in a log file the error message names; None if even that cannot be written."""
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{stage.replace(' ', '-')}.log"
        path.write_text("".join(traceback.format_exception(e)))
        return path
    except OSError:
        return None


@contextmanager
def stage_boundary(stage: str, label: str):
    """Run a stage; anything but an edgeqwen error (or an interrupt) comes out as a BuildError naming it."""
    try:
        yield
    except EdgeqwenError:
        raise
    except OSError as e:
        raise BuildError(f"the {stage} stage of {label} failed: {describe_os_error(e)}. Nothing was written to the "
                         "destination.") from e
    except Exception as e:
        log = write_traceback(stage, e)
        where = f"full traceback: {log}" if log else "the traceback could not be written to a log"
        raise BuildError(f"the {stage} stage of {label} failed: {type(e).__name__}: {e}\n({where}; "
                         "`edgeqwen --debug ...` shows it here). Nothing was written to the destination.") from e
