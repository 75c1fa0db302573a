"""What the user can fix: printed as one line (or sent as an HTTP 4xx), never a traceback."""

import sys


class ShimError(Exception):
    """A problem the user can fix; printed as one line (or sent as an HTTP 4xx)."""


def fail(message):
    print(f"shim.py: error: {message}", file=sys.stderr)
    sys.exit(2)
