"""Worker mode: the bundle's runtime driven by another program (edgeqwen's drift gate, bench, device checks).

    python shim.py worker [--bundle DIR] [--device cpu] [--threads N] [--no-verify]

Protocol version 1. Requests arrive on stdin, one JSON object per line: {"op": NAME, ...}. Each gets one
JSON line on stdout: {"ok": true, ...} or {"ok": false, "error": MESSAGE}. An answer that carries arrays
lists them in its line ("arrays": [{"name", "dtype", "shape"}]) and their raw bytes follow the line, in
that order (little-endian, row-major). The first line, unasked, is the hello: {"op": "hello",
"protocol": 1, ...} with the runtime's description (engine, runtime_version, device, threads,
capabilities, context_length, max_prompt_tokens, eos_token_ids). What the runtime itself prints goes to
stderr, so nothing but the protocol is ever on stdout.

    encode    {"texts": [str, ...]}                  -> {"ids": [[int, ...], ...]}  the runtime's tokenizer
    decode    {"ids": [[int, ...], ...]}             -> {"texts": [str, ...]}
    render    {"messages": [...], "think": bool, "tools": [...] or null}
                                                     -> {"text": str, "ids": [int, ...]}  the chat template
    logits    {"tokens": [int, ...]}                 -> array "logits" float32 [len(tokens) - 1, vocab]: row i
              is the prediction for tokens[i + 1], teacher-forced one token at a time, as the device decodes
              (also "inference_precision")
    generate  {"prompt_ids": [...], "max_new_tokens": N, "temperature": 0.0, "top_p": 1.0, "top_k": 50,
               "seed": null, "ignore_eos": false}    -> {"tokens": [...] (an end token included), "finish_reason",
              "ttft_s" (prompt in, first token out), "decode_s" (the rest)}
    stats     {}                                     -> {"peak_rss_bytes": N}
    quit      {}                                     ends the worker (so does the end of stdin)
"""

import json
import os
import sys
import time

from .engines import open_bundle
from .errors import ShimError
from .generation import produce
from .runtime import Sampling

PROTOCOL_VERSION = 1


class Protocol:
    """stdout kept for the protocol alone: the process's own fd 1 is pointed at stderr."""

    def __init__(self):
        self.out = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, answer, arrays=()):
        if arrays:
            answer["arrays"] = [{"name": name, "dtype": "float32", "shape": list(shape)} for name, shape, _ in arrays]
        self.out.write(json.dumps(answer).encode() + b"\n")
        for _, _, chunks in arrays:
            for chunk in chunks:
                self.out.write(chunk.astype("<f4", copy=False).tobytes())
        self.out.flush()


def timed_generation(runtime, request):
    sampling = Sampling(int(request["max_new_tokens"]), float(request.get("temperature", 0.0)),
                        float(request.get("top_p", 1.0)), int(request.get("top_k", 50)), request.get("seed"),
                        bool(request.get("ignore_eos", False)))
    tokens, produced, first = produce(runtime, list(request["prompt_ids"]), sampling), [], None
    started = time.perf_counter()
    try:
        while True:
            try:
                produced.append(next(tokens))
            except StopIteration as done:
                reason = done.value
                break
            first = first or time.perf_counter()
    finally:
        tokens.close()
    done = time.perf_counter()
    first = first or done
    return {"tokens": produced, "finish_reason": reason, "ttft_s": first - started, "decode_s": done - first}


def peak_rss_bytes():
    """This process's own peak RSS (VmHWM; getrusage would include what a parent had at fork)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def answer(runtime, request, protocol):
    op = request.get("op")
    if op == "encode":
        protocol.send({"ok": True, "ids": [runtime.encode(t) for t in request["texts"]]})
    elif op == "decode":
        protocol.send({"ok": True, "texts": [runtime.decode(ids) for ids in request["ids"]]})
    elif op == "render":
        text = runtime.render(request["messages"], bool(request.get("think", False)), request.get("tools"))
        protocol.send({"ok": True, "text": text, "ids": runtime.encode(text)})
    elif op == "logits":
        tokens = [int(t) for t in request["tokens"]]
        if len(tokens) < 2:
            raise ShimError("logits: give at least two tokens (row i predicts token i + 1)")
        rows = runtime.teacher_forced(tokens)
        protocol.send({"ok": True, "inference_precision": runtime.inference_precision},
                      [("logits", (len(rows), len(rows[0])), rows)])
    elif op == "generate":
        protocol.send({"ok": True, **timed_generation(runtime, request)})
    elif op == "stats":
        protocol.send({"ok": True, "peak_rss_bytes": peak_rss_bytes()})
    else:
        raise ShimError(f"unknown op {op!r} (known: encode, decode, render, logits, generate, stats, quit)")


def run_worker(args):
    protocol = Protocol()
    try:
        _, runtime = open_bundle(args.bundle, args.device, args.threads, verify=not args.no_verify,
                                 allow_plain=True)
    except ShimError as e:
        protocol.send({"ok": False, "op": "hello", "error": str(e)})
        return
    protocol.send({"ok": True, "op": "hello", "protocol": PROTOCOL_VERSION, **runtime.describe()})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("op") == "quit":
                break
            answer(runtime, request, protocol)
        except (ShimError, ValueError, KeyError, TypeError) as e:
            protocol.send({"ok": False, "error": f"{type(e).__name__}: {e}" if not isinstance(e, ShimError)
                           else str(e)})
