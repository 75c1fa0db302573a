"""Typed errors. Every failure a user can cause is one of these, raised with a
message that names the file, field or value and what would be accepted; the
CLI prints the message and exits non-zero instead of showing a traceback."""


class EdgeqwenError(Exception):
    """Base class: a problem the user can fix, explained in the message."""

    exit_code = 2


class ProfileError(EdgeqwenError):
    """A target profile (targets/*.toml) is missing, malformed or invalid."""


class RecipeError(EdgeqwenError):
    """A recipe (recipes/*.toml) is missing, malformed or invalid."""


class PlanError(EdgeqwenError):
    """Model, target and recipe do not combine into a buildable plan."""


class ModelError(EdgeqwenError):
    """The model cannot be found, read, or is not a supported Qwen model."""


class FitError(EdgeqwenError):
    """The model does not fit the target's memory budget."""


class BundleError(EdgeqwenError):
    """A bundle destination or an existing bundle is not usable."""


class BuildError(EdgeqwenError):
    """A conversion engine failed; the message says which stage and why."""

    exit_code = 1


class WorkerError(EdgeqwenError):
    """A bundle's shim, driven in worker mode, could not start or answer; the message carries its stderr."""

    exit_code = 1


class DeviceCheckError(EdgeqwenError):
    """The device check could not be set up or run (emulator, runtime wheels); the message says what to do."""

    exit_code = 1


class DeviceCheckFailed(EdgeqwenError):
    """The bundle ran on its target's instruction set and failed there; it was not written."""

    exit_code = 1


class BenchError(EdgeqwenError):
    """A benchmark could not run: the folder, the options or the runtime failed."""

    exit_code = 1


class ParityError(EdgeqwenError):
    """The bundle's runtime tokenizes or renders the chat template differently from Hugging Face; `record` holds
    the check's result (edgeqwen/parity.py)."""

    exit_code = 1

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every staging folder and child process is cleaned up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
