#!/usr/bin/env python3
"""Run this bundle: the quantized Qwen model next to this file, three ways.

    python shim.py "What is the with statement?"            one answer, streamed
    python shim.py chat                                     a conversation (type /reset or /exit)
    python shim.py serve --port 8000                        an OpenAI-compatible HTTP server

Needs only the bundle's runtime (README.md in this folder names the package):
ONNX Runtime GenAI or OpenVINO GenAI, and the Python standard library. Only the
runtime this bundle was built for is imported. `python shim.py --help`,
`python shim.py chat --help` and `python shim.py serve --help` list the options.
Written by edgeqwen; one file on purpose.
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUNDLE_DIR = os.path.dirname(os.path.abspath(__file__))
SUPPORTED_FORMAT_VERSIONS = (1,)
EMPTY_THINKING = "<think>\n\n</think>\n\n"  # what Qwen3's template emits when enable_thinking is false
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class ShimError(Exception):
    """A problem the user can fix; printed as one line (or sent as an HTTP 4xx)."""


def fail(message):
    print(f"shim.py: error: {message}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- the bundle

def read_json(name):
    path = os.path.join(BUNDLE_DIR, name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ShimError(f"cannot read {path}: {e}") from None


def read_manifest():
    manifest = read_json("manifest.json")
    if manifest.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise ShimError(f"manifest.json: bundle format_version {manifest.get('format_version')!r} is not one this "
                        f"shim knows ({', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); use the shim that came "
                        "with the bundle")
    return manifest


def verify_files(manifest):
    """Every file the manifest lists, by size and sha256: a damaged or altered bundle is refused."""
    for name, entry in sorted(manifest["files"].items()):
        path = os.path.join(BUNDLE_DIR, name)
        if not os.path.isfile(path):
            raise ShimError(f"{name} is listed in manifest.json but missing")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if os.path.getsize(path) != entry["size"] or digest.hexdigest() != entry["sha256"]:
            raise ShimError(f"{name} does not match its sha256 in manifest.json: the bundle was changed or damaged "
                            "(copy it again; --no-verify skips this check)")


def usable_cpus():
    """The CPUs this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def chat_template():
    path = os.path.join(BUNDLE_DIR, "chat_template.jinja")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- the runtimes
# Each runtime renders messages with the bundle's chat template, counts tokens, and generates:
# generate(text, options, on_text) calls on_text(piece) per decoded piece (on_text returns True to stop)
# and returns (completion_tokens, finish_reason).

class OrtGenaiRuntime:
    """ONNX Runtime GenAI: model, tokenizer and search settings come from genai_config.json."""

    def __init__(self, manifest, device):
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(BUNDLE_DIR)
        if device == "cpu":
            config.clear_providers()
        threads = read_json("genai_config.json")["model"]["decoder"].get("session_options", {}).get(
            "intra_op_num_threads")
        if threads and threads > usable_cpus():
            # The target's thread count on a smaller machine: more threads than CPUs spin against each other.
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                "intra_op_num_threads": usable_cpus()}}}}))
        self.model = og.Model(config)
        self.tokenizer = og.Tokenizer(self.model)
        self.context_length = manifest["plan"]["context_length"]
        self.max_prompt_tokens = self.context_length - 1

    def render(self, messages, think):
        template = chat_template()
        text = self.tokenizer.apply_chat_template(json.dumps(messages), template_str=template,
                                                  add_generation_prompt=True)
        if template and "enable_thinking" in template and not think and not text.endswith(EMPTY_THINKING):
            text += EMPTY_THINKING
        return text

    def count_tokens(self, text):
        return len(self.tokenizer.encode(text))

    def generate(self, text, options, on_text):
        og = self.og
        tokens = self.tokenizer.encode(text)
        params = og.GeneratorParams(self.model)
        search = {"max_length": min(self.context_length, len(tokens) + options.max_new_tokens),
                  "do_sample": options.temperature > 0, "top_p": options.top_p, "top_k": options.top_k,
                  "temperature": options.temperature if options.temperature > 0 else 1.0}
        if options.seed is not None:
            search["random_seed"] = options.seed
        params.set_search_options(**search)
        generator = og.Generator(self.model, params)
        generator.append_tokens(tokens)
        stream = self.tokenizer.create_stream()
        count = 0
        while not generator.is_done():
            generator.generate_next_token()
            token = generator.get_next_tokens()[0]
            if token in self.tokenizer.eos_token_ids:
                return count, "stop"
            count += 1
            if on_text(stream.decode(token)):
                return count, "cancelled"
        return count, "length"


class OpenVinoRuntime:
    """OpenVINO GenAI: the IR model and tokenizer; device properties from pipeline_config.json."""

    def __init__(self, manifest, device):
        import openvino_genai as ov_genai

        self.ov_genai = ov_genai
        config = read_json("pipeline_config.json")
        device = (device or config["device"]).upper()
        properties = config["properties"].get(device, {})  # the NPU's static lengths mean nothing to the CPU
        try:
            self.pipeline = ov_genai.LLMPipeline(BUNDLE_DIR, device, **properties)
        except RuntimeError as e:
            reason = " ".join([line for line in str(e).splitlines() if line.strip()][-1:])
            hint = " Is an Intel NPU and its driver present?" if device == "NPU" else ""
            raise ShimError(f"OpenVINO could not load this bundle on {device}: {reason}.{hint} "
                            "`--device cpu` runs it on the CPU") from None
        self.tokenizer = self.pipeline.get_tokenizer()
        self.context_length = config["context_length"]
        self.max_prompt_tokens = config["max_prompt_tokens"]

    def render(self, messages, think):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  chat_template=chat_template() or "",
                                                  extra_context={"enable_thinking": think})

    def count_tokens(self, text):
        return int(self.tokenizer.encode(text).input_ids.get_shape()[-1])

    def generate(self, text, options, on_text):
        status = self.ov_genai.StreamingStatus
        config = self.pipeline.get_generation_config()
        config.apply_chat_template = False  # `text` is already rendered
        config.max_new_tokens = options.max_new_tokens
        config.do_sample = options.temperature > 0
        if config.do_sample:
            config.temperature, config.top_p, config.top_k = options.temperature, options.top_p, options.top_k
        if options.seed is not None:
            config.rng_seed = options.seed
        cancelled = []

        def streamer(piece):
            if on_text(piece):
                cancelled.append(True)
                return status.CANCEL
            return status.RUNNING

        result = self.pipeline.generate([text], config, streamer)
        count = result.perf_metrics.get_num_generated_tokens()
        if cancelled:
            return count, "cancelled"
        return count, "length" if count >= options.max_new_tokens else "stop"


RUNTIMES = {"onnxruntime-genai": OrtGenaiRuntime, "openvino": OpenVinoRuntime}


def load_runtime(args):
    manifest = read_manifest()
    if not args.no_verify:
        verify_files(manifest)
    engine = manifest["runtime"]["engine"]
    if engine not in RUNTIMES:
        raise ShimError(f"manifest.json: runtime engine {engine!r} is not one this shim runs ({', '.join(RUNTIMES)})")
    return manifest, RUNTIMES[engine](manifest, args.device)


# ---------------------------------------------------------------- thinking

class ThinkingSplitter:
    """Splits streamed text into ("thinking", text) and ("answer", text) around <think>...</think>."""

    def __init__(self):
        self.inside, self.pending = False, ""

    def feed(self, piece):
        text, out = self.pending + piece, []
        self.pending = ""
        while text:
            tag = THINK_CLOSE if self.inside else THINK_OPEN
            at = text.find(tag)
            if at >= 0:
                out.append(("thinking" if self.inside else "answer", text[:at]))
                self.inside, text = not self.inside, text[at + len(tag):]
                continue
            keep = next((n for n in range(len(tag) - 1, 0, -1) if text.endswith(tag[:n])), 0)  # a split tag
            out.append(("thinking" if self.inside else "answer", text[:len(text) - keep]))
            self.pending, text = text[len(text) - keep:], ""
        return [(kind, t) for kind, t in out if t]


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


# ---------------------------------------------------------------- one-shot and chat

def messages_for(system, turns):
    return ([{"role": "system", "content": system}] if system else []) + turns


def fit_prompt(runtime, system, turns, think, max_new_tokens, notice=None):
    """Render the conversation, dropping the oldest turns until it leaves room for the answer."""
    while True:
        text = runtime.render(messages_for(system, turns), think)
        used = runtime.count_tokens(text)
        room = min(runtime.max_prompt_tokens, runtime.context_length - min(max_new_tokens, 64))
        if used <= room or len(turns) <= 1:
            break
        dropped = 2 if len(turns) > 2 and turns[0]["role"] == "user" else 1
        turns[:] = turns[dropped:]
        if notice:
            notice(f"[dropped the oldest turn to stay within the {runtime.context_length}-token context]")
    check_prompt_length(runtime, used)
    return text, used


def check_prompt_length(runtime, used):
    if used > runtime.max_prompt_tokens:
        raise ShimError(f"the prompt is {used} tokens; this bundle takes at most {runtime.max_prompt_tokens} "
                        f"(context {runtime.context_length} tokens)")


def run_once(args):
    _, runtime = load_runtime(args)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if args.raw:
        text = prompt
        check_prompt_length(runtime, runtime.count_tokens(text))
    else:
        text, _ = fit_prompt(runtime, args.system, [{"role": "user", "content": prompt}], args.think,
                             args.max_new_tokens)
    if args.print_prompt:
        print(text, end="")
        return
    runtime.generate(text, args, terminal_printer(args.thinking))
    print()


def run_chat(args):
    _, runtime = load_runtime(args)
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
            text, _ = fit_prompt(runtime, args.system, turns, args.think, args.max_new_tokens,
                                 notice=lambda m: print(m, file=sys.stderr))
        except ShimError as e:
            turns.pop()
            print(f"shim.py: {e}", file=sys.stderr)
            continue
        pieces, show = [], terminal_printer(args.thinking)
        runtime.generate(text, args, lambda piece: pieces.append(piece) or show(piece))
        print(flush=True)
        answer = "".join(kind == "answer" and t or "" for kind, t in ThinkingSplitter().feed("".join(pieces)))
        turns.append({"role": "assistant", "content": answer.strip()})


# ---------------------------------------------------------------- the OpenAI-compatible server

class ApiError(Exception):
    def __init__(self, status, message, param=None, code=None, kind="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self):
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def number(body, name, low, high, default, kind=float):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}", name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' = {value} is outside [{low}, {high}]", name)
    return kind(value)


def parse_messages(body):
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' is required: a non-empty list of {role, content}", "messages")
    parsed = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ApiError(400, f"messages[{i}].content: only text parts are supported", f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise ApiError(400, f"messages[{i}] needs a role of system, user or assistant and a string content",
                           f"messages[{i}]")
        parsed.append({"role": role, "content": content})
    return parsed


class GenerationRequest:
    """A validated /v1/chat/completions request."""

    def __init__(self, body, runtime, default_think):
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        self.messages = parse_messages(body)
        self.stream = body.get("stream", False)
        if not isinstance(self.stream, bool):
            raise ApiError(400, "'stream' must be true or false", "stream")
        if body.get("n", 1) != 1:
            raise ApiError(400, "only n = 1 is supported", "n")
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.temperature = number(body, "temperature", 0.0, 2.0, 0.0)
        self.top_p = number(body, "top_p", 0.0, 1.0, 1.0)
        self.top_k = number(body, "top_k", 0, 1000, 50, int)
        self.seed = number(body, "seed", -2**63, 2**63 - 1, None, int)
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        requested = number({"max_tokens": requested}, "max_tokens", 1, 10**9, None, int)
        kwargs = body.get("chat_template_kwargs") or {}
        self.think = bool(kwargs.get("enable_thinking", default_think))
        self.text = runtime.render(self.messages, self.think)
        self.prompt_tokens = runtime.count_tokens(self.text)
        if self.prompt_tokens > runtime.max_prompt_tokens:
            raise ApiError(400, f"the prompt is {self.prompt_tokens} tokens; this model takes at most "
                                f"{runtime.max_prompt_tokens} (context {runtime.context_length})", "messages",
                           "context_length_exceeded")
        room = runtime.context_length - self.prompt_tokens
        self.max_new_tokens = min(requested or room, room)  # clamped to what the context can hold


class Server:
    """One model, one generation at a time, a bounded queue of waiting requests."""

    def __init__(self, runtime, manifest, args):
        self.runtime, self.args = runtime, args
        self.model_id = manifest["model"]["id"]
        self.created = int(time.time())
        self.generation_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(1 + args.max_queue)  # running + waiting
        self.stopping = threading.Event()  # no new requests
        self.cancel = threading.Event()  # in-flight generations stop at the next token

    def models(self):
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": self.created,
                                            "owned_by": "edgeqwen"}]}

    def admit(self):
        if self.stopping.is_set():
            raise ApiError(503, "the server is shutting down", kind="server_error", code="shutting_down")
        if not self.slots.acquire(blocking=False):
            raise ApiError(429, f"busy: one request is running and {self.args.max_queue} are waiting; retry later",
                           kind="rate_limit_error", code="queue_full")

    def complete(self, request, on_text):
        """Run one generation (waiting for the model); returns (completion_tokens, finish_reason)."""
        try:
            with self.generation_lock:
                if self.cancel.is_set():
                    return 0, "cancelled"
                return self.runtime.generate(request.text, request,
                                             lambda piece: on_text(piece) or self.cancel.is_set())
        finally:
            self.slots.release()


def make_handler(server):
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so no idle keep-alive connection holds up a shutdown.
        timeout = 30  # seconds a client may stall while sending

        def log_message(self, fmt, *values):
            if not server.args.quiet:
                sys.stderr.write(f"{self.address_string()} {fmt % values}\n")

        def send_json(self, status, body, headers=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def send_error_body(self, error):
            headers = [("Retry-After", "1")] if error.status in (429, 503) else []
            self.send_json(error.status, error.body(), headers)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                return self.send_json(200, server.models())
            if self.path.rstrip("/") == "/health":
                return self.send_json(200, {"status": "ok"})
            self.send_error_body(ApiError(404, f"no route {self.path}", code="not_found"))

        def read_body(self):
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise ApiError(411, "a Content-Length header is required")
            if int(length) > server.args.max_body_bytes:
                raise ApiError(413, f"the request body is {length} bytes; the limit is {server.args.max_body_bytes}")
            raw = self.rfile.read(int(length))
            try:
                return json.loads(raw)
            except ValueError as e:
                raise ApiError(400, f"the request body is not valid JSON: {e}") from None

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self.send_error_body(ApiError(404, f"no route {self.path}", code="not_found"))
            try:
                body = self.read_body()
                request = GenerationRequest(body, server.runtime, server.args.think)
                server.admit()
            except ApiError as e:
                return self.send_error_body(e)
            if request.stream:
                self.stream(request)
            else:
                self.whole(request)

        def whole(self, request):
            splitter, parts = ThinkingSplitter(), {"answer": [], "thinking": []}

            def collect(piece):
                for kind, text in splitter.feed(piece):
                    parts[kind].append(text)

            count, reason = server.complete(request, collect)
            message = {"role": "assistant", "content": "".join(parts["answer"]).strip()}
            if parts["thinking"]:
                message["reasoning_content"] = "".join(parts["thinking"]).strip()
            self.send_json(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": server.model_id,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reason)}],
                "usage": usage(request.prompt_tokens, count),
            })

        def stream(self, request):
            ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()

            def event(delta, reason=None, **extra):
                chunk = {"id": ident, "object": "chat.completion.chunk", "created": created,
                         "model": server.model_id, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
                chunk.update(extra)
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            splitter, gone = ThinkingSplitter(), []

            def send(piece):
                try:
                    for kind, text in splitter.feed(piece):
                        event({"content": text} if kind == "answer" else {"reasoning_content": text})
                except OSError:  # the client went away: stop generating for it
                    gone.append(True)
                return bool(gone)

            try:
                event({"role": "assistant", "content": ""})
            except OSError:
                server.slots.release()
                return
            count, reason = server.complete(request, send)
            if gone:
                return
            try:
                event({}, finish_reason(reason))
                if request.include_usage:
                    chunk = {"id": ident, "object": "chat.completion.chunk", "created": created,
                             "model": server.model_id, "choices": [], "usage": usage(request.prompt_tokens, count)}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except OSError:
                pass

    return Handler


def finish_reason(reason):
    return "stop" if reason == "cancelled" else reason


def usage(prompt_tokens, completion_tokens):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def run_server(args):
    manifest, runtime = load_runtime(args)
    server = Server(runtime, manifest, args)
    httpd = ThreadingHTTPServer((args.host, args.port), make_handler(server))
    httpd.daemon_threads = False  # server_close() waits for in-flight requests
    host, port = httpd.server_address[:2]

    def shut_down(signum, frame):
        if server.stopping.is_set():
            return
        server.stopping.set()
        print(f"shim.py: shutting down; in-flight requests get {args.shutdown_grace:g} s to finish",
              file=sys.stderr, flush=True)
        grace = threading.Timer(args.shutdown_grace, server.cancel.set)
        grace.daemon = True
        grace.start()
        threading.Thread(target=httpd.shutdown).start()  # shutdown() waits for serve_forever(): not this thread

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    print(f"shim.py: serving {server.model_id} at http://{host}:{port}/v1 (OpenAI-compatible)",
          file=sys.stderr, flush=True)
    httpd.serve_forever()
    httpd.server_close()
    server.cancel.set()
    print("shim.py: stopped", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- command line

def add_common(parser, generation=True):
    parser.add_argument("--device", help="run on another device than the bundle's own: cpu (any bundle), "
                                         "npu or gpu (OpenVINO bundles)")
    parser.add_argument("--cpu", action="store_const", const="cpu", dest="device", help="same as --device cpu")
    parser.add_argument("--no-verify", action="store_true", help="skip checking every file's sha256 at start")
    parser.add_argument("--think", action="store_true", help="let a Qwen3 model think before answering")
    if generation:
        parser.add_argument("--system", help="a system prompt")
        parser.add_argument("--thinking", choices=("show", "hide", "separate"), default="show",
                            help="with --think: show the thinking, hide it, or print it to stderr")
        parser.add_argument("--max-new-tokens", type=int, default=256)
        parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
        parser.add_argument("--top-p", type=float, default=1.0)
        parser.add_argument("--top-k", type=int, default=50)
        parser.add_argument("--seed", type=int, help="sampling seed")


def parse_args(argv):
    mode = argv[0] if argv and argv[0] in ("chat", "serve") else "ask"
    if mode == "chat":
        parser = argparse.ArgumentParser(prog="shim.py chat", description="Chat with the model through stdin. "
                                         "Turns that no longer fit the context are dropped, oldest first.")
        add_common(parser)
        argv = argv[1:]
    elif mode == "serve":
        parser = argparse.ArgumentParser(prog="shim.py serve", description="An OpenAI-compatible server: "
                                         "GET /v1/models, POST /v1/chat/completions (stream or not).")
        add_common(parser, generation=False)
        parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--max-queue", type=int, default=4, help="requests that may wait; more get 429")
        parser.add_argument("--max-body-bytes", type=int, default=1 << 20)
        parser.add_argument("--shutdown-grace", type=float, default=10.0,
                            help="seconds in-flight requests get to finish after SIGTERM before they are cut short")
        parser.add_argument("--quiet", action="store_true", help="no request log")
        argv = argv[1:]
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("prompt", help="the user message; '-' reads it from standard input")
        add_common(parser)
        parser.add_argument("--raw", action="store_true", help="continue the prompt as plain text, no chat template")
        parser.add_argument("--print-prompt", action="store_true", help="print the rendered prompt and stop")
    args = parser.parse_args(argv)
    args.mode = mode
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        {"ask": run_once, "chat": run_chat, "serve": run_server}[args.mode](args)
    except ShimError as e:
        fail(str(e))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
