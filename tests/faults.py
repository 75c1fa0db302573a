"""Fault injection for tests: a child Python process that dies (SIGKILL) or fails (ENOSPC) at its Nth file operation, or gets SIGTERM or SIGINT there.

`python tests/faults.py MODE N ROOT -- ARGS...` installs an audit hook (PEP 578: CPython raises an audit
event before every open, rename, remove, mkdir...), counts the operations that change files under ROOT,
and at the Nth one either kills its own process with SIGKILL (MODE=kill: a power cut, the OOM killer)
or makes that operation fail with ENOSPC (MODE=enospc: a full disk), or sends itself SIGTERM or SIGINT
(MODE=sigterm, sigint), whose handler then raises inside that operation. The operation does not happen.
Then it runs ARGS as `python -m edgeqwen ARGS` or, for ARGS[0] == "writer", the bundle writer alone.
With N = 0 nothing is injected, and the count is printed to stderr at exit (so a test learns how many
operations a run makes and can try each).
"""

from __future__ import annotations

import atexit
import errno
import os
import signal
import sys
from pathlib import Path

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
MUTATING_EVENTS = {"os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.chmod",
                   "os.link", "os.symlink", "shutil.copyfile", "shutil.rmtree", "edgeqwen.exchange"}
COUNT_MARK = "fault-injection operations:"
EXCHANGE_MARK = "fault-injection exchange at:"  # the commit's atomic swap, when there was one


def is_mutation(event: str, args: tuple) -> str | None:
    """The path a file-changing event is about, or None."""
    if event == "open":
        path, mode, flags = args
        writes = (mode and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE_FLAGS)
        return path if writes else None
    if event in MUTATING_EVENTS:
        return args[0]
    return None


SIGNALS = {"kill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigint": signal.SIGINT}


def install(mode: str, n: int, root: str) -> None:
    state = {"count": 0, "armed": n > 0, "exchange": None}

    def hook(event, args):
        path = is_mutation(event, args)
        if path is None or not isinstance(path, (str, bytes, os.PathLike)) or not os.fsdecode(path).startswith(root):
            return
        state["count"] += 1
        if event == "edgeqwen.exchange":
            state["exchange"] = state["count"]
        if state["armed"] and state["count"] == n:
            state["armed"] = False
            if mode in SIGNALS:  # SIGTERM and SIGINT: the handler raises here, before the operation
                os.kill(os.getpid(), SIGNALS[mode])
                return
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(path))

    def report():
        print(f"{COUNT_MARK} {state['count']}", file=sys.stderr)
        if state["exchange"]:
            print(f"{EXCHANGE_MARK} {state['exchange']}", file=sys.stderr)

    sys.addaudithook(hook)
    atexit.register(report)


def writer_job(root: Path, exchange: bool) -> None:
    """What a build's last steps do with the writer: stage a complete bundle beside the destination, commit."""
    from edgeqwen.bundle import writer

    if not exchange:  # a file system without RENAME_EXCHANGE: the two-rename fallback
        writer.exchange = lambda a, b: False
    staged = writer.StagedBundle(root / "bundle", force=True)
    with staged as staging:
        write_bundle_files(staging, "new")
        staged.commit()


def write_bundle_files(folder: Path, version: str) -> None:
    (folder / "sub").mkdir(exist_ok=True)
    for name in ("model.onnx", "model.onnx.data", "tokenizer.json", "sub/extra.bin", "manifest.json"):
        (folder / name).write_text(f"{version} {name}\n" * 50)


def bundle_state(folder: Path) -> str | None:
    """'old' or 'new' for a complete bundle written by write_bundle_files, None when absent; raises if mixed."""
    if not folder.exists():
        return None
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["manifest.json", "model.onnx", "model.onnx.data", "sub/extra.bin", "tokenizer.json"], files
    versions = {p.read_text().split()[0] for p in folder.rglob("*") if p.is_file()}
    assert len(versions) == 1, f"a mixed bundle: {versions}"
    return versions.pop()


def main(argv: list[str]) -> None:
    mode, n, root = argv[0], int(argv[1]), argv[2]
    job = argv[argv.index("--") + 1:]
    install(mode, n, root)
    # Ctrl-C raises KeyboardInterrupt here even when the tests run as a background job (which starts children
    # with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if job[0] == "writer":
        writer_job(Path(root), exchange=job[1] == "exchange")
        return
    from edgeqwen.cli import main as edgeqwen_main

    sys.exit(edgeqwen_main(job))


if __name__ == "__main__":
    main(sys.argv[1:])
