"""Command-line values: a number out of range is refused by argparse, naming the option and what it takes.

shim.py's options and edgeqwen's own commands use the same two types, so `--threads 0` or
`--context-length -5` is a usage error the moment it is typed, never a traceback from deep inside a
runtime (or, worse, a value silently replaced by a default).
"""

import argparse
import math


def accepted_range(kind, minimum, maximum):
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} of at least {minimum}"
    if maximum is not None:
        return f"{kind} of at most {maximum}"
    return kind


def whole_number(minimum=None, maximum=None):
    """An argparse type: an int within [minimum, maximum] (either end may be open)."""
    accepted = accepted_range("a whole number", minimum, maximum)

    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {accepted}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{text}: expected {accepted}")
        return value

    parse.__name__ = "whole number"
    return parse


def real_number(minimum=None, maximum=None):
    """An argparse type: a finite float within [minimum, maximum] (nan and inf are refused)."""
    accepted = accepted_range("a number", minimum, maximum)

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {accepted}") from None
        if not math.isfinite(value) or (minimum is not None and value < minimum) or (
                maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{text}: expected {accepted}")
        return value

    parse.__name__ = "number"
    return parse
