"""One answer streamed to the terminal, and a conversation through stdin."""

import json
import sys

from .engines import open_bundle
from .errors import ShimError
from .generation import ThinkingSplitter, check_prompt_length, fit_prompt, generate
from .json_grammar import check_schema, closed
from .runtime import Constraint, Sampling


def sampling_from(args, constraint=None):
    return Sampling(args.max_new_tokens, args.temperature, args.top_p, args.top_k, args.seed, constraint=constraint)


def schema_constraint(path):
    """--json-schema FILE as a Constraint."""
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except OSError as e:
        raise ShimError(f"--json-schema {path}: {e.strerror}") from None
    except ValueError as e:
        raise ShimError(f"--json-schema {path}: not JSON: {e}") from None
    check_schema(schema, path)
    return Constraint(schema=closed(schema))


def load(args):
    _, runtime = open_bundle(args.bundle, args.device, args.threads, verify=not args.no_verify)
    runtime.load()
    return runtime


def terminal_printer(mode):
    """on_text for the terminal: thinking shown inline, hidden, or sent to stderr ('separate')."""
    splitter = ThinkingSplitter()

    def on_text(piece):
        for kind, text in splitter.feed(piece):
            if kind == "answer" or mode == "show":
                print(text, end="", flush=True)
            elif mode == "separate":
                print(text, end="", flush=True, file=sys.stderr)
        return False

    return on_text


def run_once(args):
    runtime = load(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    constraint = schema_constraint(args.json_schema) if args.json_schema else None
    think = args.think and constraint is None  # a grammar constrains the answer from its first token
    if args.raw:
        text = prompt
        ids = runtime.encode(text)
        check_prompt_length(runtime, len(ids))
    else:
        text, ids = fit_prompt(runtime, args.system, [{"role": "user", "content": prompt}], think,
                               args.max_new_tokens)
    if args.print_prompt:
        print(text, end="")
        return
    generate(runtime, ids, sampling_from(args, constraint), terminal_printer(args.thinking), args.stop)
    print()


def run_chat(args):
    runtime = load(args)
    interactive = sys.stdin.isatty()
    turns = []
    if interactive:
        print("Chat with the model. /reset starts over, /exit (or Ctrl-D) quits.", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            break
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.strip() == "/reset":
            turns = []
            print("[conversation cleared]", file=sys.stderr)
            continue
        turns.append({"role": "user", "content": line})
        try:
            _, ids = fit_prompt(runtime, args.system, turns, args.think, args.max_new_tokens,
                                notice=lambda m: print(m, file=sys.stderr))
        except ShimError as e:
            turns.pop()
            print(f"shim.py: {e}", file=sys.stderr)
            continue
        pieces, show = [], terminal_printer(args.thinking)
        generate(runtime, ids, sampling_from(args), lambda piece: pieces.append(piece) or show(piece))
        print(flush=True)
        answer = "".join(kind == "answer" and t or "" for kind, t in ThinkingSplitter().feed("".join(pieces)))
        turns.append({"role": "assistant", "content": answer.strip()})
