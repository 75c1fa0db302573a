"""Run this bundle: the quantized Qwen model next to this file, three ways.

    python shim.py "What is the with statement?"            one answer, streamed
    python shim.py chat                                     a conversation (type /reset or /exit)
    python shim.py serve --port 8000                        an OpenAI-compatible HTTP server
    python shim.py --json-schema trip.json "Plan a trip"    an answer that is JSON valid against a schema

Needs only the bundle's runtime (README.md in this folder names the package):
ONNX Runtime GenAI or OpenVINO GenAI, and the Python standard library. Only the
runtime this bundle was built for is imported. `python shim.py --help`,
`python shim.py chat --help` and `python shim.py serve --help` list the options;
`python shim.py worker` is the machine interface edgeqwen drives it through.
Written by edgeqwen, assembled into one file from the modules of edgeqwen/shim/.
"""

import argparse
import os
import sys

from .errors import ShimError, fail
from .server import run_server
from .terminal import run_chat, run_once
from .values import real_number, whole_number
from .worker import run_worker

# The folder this file is in: the bundle, when the shim is the bundle's own shim.py.
HOME_DIR = os.path.dirname(os.path.abspath(__file__))
MODES = ("chat", "serve", "worker")


def add_common(parser, generation=True):
    parser.add_argument("--bundle", default=HOME_DIR, help="the bundle folder (default: the folder of this file)")
    parser.add_argument("--device", help="run on another device than the bundle's own: cpu (any bundle), "
                                         "npu or gpu (OpenVINO bundles)")
    parser.add_argument("--cpu", action="store_const", const="cpu", dest="device", help="same as --device cpu")
    parser.add_argument("--threads", type=whole_number(1, 1024), help="compute threads (default: the target's, at most the "
                                                         "CPUs this process may use)")
    parser.add_argument("--no-verify", action="store_true", help="skip checking every file's sha256 at start")
    if generation:
        parser.add_argument("--think", action="store_true", help="let a Qwen3 model think before answering")
        parser.add_argument("--system", help="a system prompt")
        parser.add_argument("--thinking", choices=("show", "hide", "separate"), default="show",
                            help="with --think: show the thinking, hide it, or print it to stderr")
        parser.add_argument("--max-new-tokens", type=whole_number(1, 1 << 20), default=256)
        parser.add_argument("--temperature", type=real_number(0, 2), default=0.0, help="0 = greedy (default); at most 2")
        parser.add_argument("--top-p", type=real_number(0, 1), default=1.0)
        parser.add_argument("--top-k", type=whole_number(0, 1000), default=50)
        parser.add_argument("--seed", type=whole_number(-2**63, 2**63 - 1), help="sampling seed")


def parse_args(argv):
    mode = argv[0] if argv and argv[0] in MODES else "ask"
    if mode == "chat":
        parser = argparse.ArgumentParser(prog="shim.py chat", description="Chat with the model through stdin. "
                                         "Turns that no longer fit the context are dropped, oldest first.")
        add_common(parser)
    elif mode == "serve":
        parser = argparse.ArgumentParser(
            prog="shim.py serve", formatter_class=argparse.RawDescriptionHelpFormatter,
            description="An OpenAI-compatible server: GET /v1/models, POST /v1/chat/completions and /v1/completions "
                        "(stream or not), GET /health.",
            epilog="examples:\n  python shim.py serve                                   this machine only\n"
                   "  python shim.py serve --host 0.0.0.0 --api-key-file key.txt   the network, with a key\n"
                   "  python shim.py serve --cors-origin https://app.example --api-key-file key.txt\n"
                   "README.md (\"Serving on a network\") has the threat model, a TLS proxy and a systemd unit.")
        add_common(parser, generation=False)
        parser.add_argument("--think", action="store_true", help="let a Qwen3 model think before answering")
        parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only; "
                                                                 "any other needs an API key or --no-auth)")
        parser.add_argument("--port", type=whole_number(0, 65535), default=8000, help="0: any free port")
        parser.add_argument("--api-key", help="require this key (Authorization: Bearer KEY or X-Api-Key); visible "
                                              "in `ps`: prefer --api-key-file or $EDGEQWEN_API_KEY")
        parser.add_argument("--api-key-file", help="read the key from this file")
        parser.add_argument("--no-auth", action="store_true",
                            help="serve beyond loopback without a key (anyone who can reach the port can use it)")
        parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                            help="a web origin whose pages may call the server (repeatable; '*' only with a key)")
        parser.add_argument("--max-queue", type=whole_number(0, 1 << 16), default=4, help="requests that may wait; more get 429")
        parser.add_argument("--max-body-bytes", type=whole_number(2, 1 << 30), default=1 << 20)
        parser.add_argument("--request-timeout", type=real_number(0.01, 7 * 86400), default=300.0,
                            help="seconds a request may wait and generate in all; then it ends as at max_tokens")
        parser.add_argument("--client-timeout", type=real_number(0.01, 86400), default=30.0,
                            help="seconds a client has to send its whole request, and for each write it must read")
        parser.add_argument("--backlog", type=whole_number(1, 1 << 16), default=1024,
                            help="connections the kernel holds before the server accepts them")
        parser.add_argument("--max-connections", type=whole_number(1, 1 << 16), default=512, help="open connections in all")
        parser.add_argument("--max-client-connections", type=whole_number(0, 1 << 16), default=16,
                            help="open connections from one client address (0: no limit)")
        parser.add_argument("--shutdown-grace", type=real_number(0, 3600), default=10.0,
                            help="seconds in-flight requests get to finish after SIGTERM before they are cut short")
        parser.add_argument("--log-prompts", action="store_true", help="log each request's messages (off: the "
                                                                       "log has no prompt text)")
        parser.add_argument("--quiet", action="store_true", help="no request log")
    elif mode == "worker":
        parser = argparse.ArgumentParser(prog="shim.py worker", description="JSON requests on stdin, one per "
                                         "line; answers (and arrays) on stdout. See the worker section of this file.")
        add_common(parser, generation=False)
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("prompt", help="the user message; '-' reads it from standard input")
        add_common(parser)
        parser.add_argument("--raw", action="store_true", help="continue the prompt as plain text, no chat template")
        parser.add_argument("--print-prompt", action="store_true", help="print the rendered prompt and stop")
        parser.add_argument("--json-schema", metavar="FILE", help="answer with JSON valid against this JSON Schema "
                                                                  "(enforced by the runtime's constrained decoding)")
        parser.add_argument("--stop", action="append", default=[], help="end the answer before this text (repeatable)")
    args = parser.parse_args(argv[1:] if mode != "ask" else argv)
    args.mode = mode
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        {"ask": run_once, "chat": run_chat, "serve": run_server, "worker": run_worker}[args.mode](args)
    except ShimError as e:
        fail(str(e))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
