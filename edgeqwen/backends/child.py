"""Conversion engines run in a child process: their log goes to a file, their module patches stay out
of this process, and an interrupted build kills them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from edgeqwen.processes import die_with_parent


def run_logged(command: list[str], log_path: Path, env: dict, on_line: Callable[[str], None]) -> int:
    """Run `command` in the log's folder, copy its output to `log_path`, hand each line to `on_line`; return the
    exit status. (The folder matters: Olive resolves bare config values that name a folder in its working
    directory as paths, so a user's folder called `int4` would otherwise change the workflow.)"""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                   cwd=log_path.parent, preexec_fn=die_with_parent)
        try:
            for line in process.stdout:
                log.write(line)
                on_line(line)
            return process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
