"""What the user can fix: printed as one line (or sent as an HTTP 4xx), never a traceback."""

import sys


class ShimError(Exception):
    """A problem the user can fix; printed as one line (or sent as an HTTP 4xx)."""


def fail(message):
    print(f"shim.py: error: {message}", file=sys.stderr)
    sys.exit(2)


class ApiError(Exception):
    """A request the server answers with an HTTP error, in OpenAI's error shape, naming the field."""

    def __init__(self, status, message, param=None, code=None, kind="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self):
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
