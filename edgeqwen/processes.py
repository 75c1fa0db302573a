"""Child processes that do not outlive the build that started them.

A conversion engine or a bundle's shim worker runs as a child. If the build dies without unwinding
(SIGKILL, the OOM killer), Linux sends the child SIGKILL too (PR_SET_PDEATHSIG), so no orphan keeps
writing into a scratch folder or holding memory. Elsewhere this is a no-op. (The kernel's "parent" is
the thread that started the child: start children from a thread that outlives them.)
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A Popen preexec_fn: the child gets SIGKILL when its parent dies."""
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
