"""`edgeqwen` command line: one small module per verb, each with examples in its help."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback

from edgeqwen import __version__
from edgeqwen.cli import bench, build, check, eval, matrix, pack, run, targets, verify
from edgeqwen.errors import EdgeqwenError, Terminated
from edgeqwen.stages import describe_os_error, write_traceback

VERBS = (targets, build, check, eval, run, bench, verify, pack, matrix)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeqwen",
        description="Build quantized Qwen bundles for edge devices, and run them.",
        epilog="Examples:\n  edgeqwen targets\n  edgeqwen build --target raspberry-pi-5\n"
        '  edgeqwen run bundles/demo-qwen3-4l-h128-raspberry-pi-5 "What is a generator?"\n'
        "  edgeqwen --debug build --target raspberry-pi-5     # a failure shows its full traceback",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeqwen {__version__}")
    parser.add_argument("--debug", action="store_true", help="on failure, print the full traceback too")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(subparsers)
    return parser


def stop_on(signum, frame):
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    # SIGTERM (a CI runner's cancel, `kill`) and SIGHUP (a closed terminal) unwind like Ctrl-C: staging folders
    # and child processes are cleaned up on the way out. Only the main thread may set handlers (tests call
    # main() from others).
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop_on) for s in (signal.SIGTERM, signal.SIGHUP)} if on_main_thread else {}
    try:
        return args.handler(args) or 0
    except EdgeqwenError as e:
        if args.debug:
            traceback.print_exception(e)
        print(f"edgeqwen: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # disk full, permissions, a path that vanished: the user's to fix, not a bug
        if args.debug:
            traceback.print_exception(e)
        print(f"edgeqwen: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except Terminated as e:
        print(f"edgeqwen: stopped by {signal.Signals(e.signum).name}; nothing was written to the destination",
              file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("edgeqwen: interrupted; nothing was written to the destination", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in edgeqwen: still one line, with where the traceback went
        if args.debug:
            raise
        log = write_traceback(args.verb, e)
        print(f"edgeqwen: internal error in `{args.verb}`: {type(e).__name__}: {e}\n(full traceback: {log}; "
              "rerun with `edgeqwen --debug` to see it here; please report it)", file=sys.stderr)
        return 3
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
