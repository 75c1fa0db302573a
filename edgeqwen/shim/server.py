"""The OpenAI-compatible HTTP server: GET /v1/models, POST /v1/chat/completions (streamed or not)."""

import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .engines import open_bundle
from .generation import ThinkingSplitter, generate
from .runtime import Sampling


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
    """A validated /v1/chat/completions request, rendered and encoded by the runtime."""

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
        temperature = number(body, "temperature", 0.0, 2.0, 0.0)
        top_p = number(body, "top_p", 0.0, 1.0, 1.0)
        top_k = number(body, "top_k", 0, 1000, 50, int)
        seed = number(body, "seed", -2**63, 2**63 - 1, None, int)
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        requested = number({"max_tokens": requested}, "max_tokens", 1, 10**9, None, int)
        kwargs = body.get("chat_template_kwargs") or {}
        self.think = bool(kwargs.get("enable_thinking", default_think))
        self.prompt_ids = runtime.encode(runtime.render(self.messages, self.think))
        self.prompt_tokens = len(self.prompt_ids)
        if self.prompt_tokens > runtime.max_prompt_tokens:
            raise ApiError(400, f"the prompt is {self.prompt_tokens} tokens; this model takes at most "
                                f"{runtime.max_prompt_tokens} (context {runtime.context_length})", "messages",
                           "context_length_exceeded")
        room = runtime.context_length - self.prompt_tokens
        max_new_tokens = min(requested or room, room)  # clamped to what the context can hold
        self.sampling = Sampling(max_new_tokens, temperature, top_p, top_k, seed)


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
                return generate(self.runtime, request.prompt_ids, request.sampling,
                                lambda piece: on_text(piece) or self.cancel.is_set())
        finally:
            self.slots.release()


class Handler(BaseHTTPRequestHandler):
    """One HTTP request; `self.server.app` is the Server."""

    # HTTP/1.0: one request per connection, so no idle keep-alive connection holds up a shutdown.
    timeout = 30  # seconds a client may stall while sending

    @property
    def app(self):
        return self.server.app

    def log_message(self, fmt, *values):
        if not self.app.args.quiet:
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
            return self.send_json(200, self.app.models())
        if self.path.rstrip("/") == "/health":
            return self.send_json(200, {"status": "ok"})
        self.send_error_body(ApiError(404, f"no route {self.path}", code="not_found"))

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise ApiError(411, "a Content-Length header is required")
        if int(length) > self.app.args.max_body_bytes:
            raise ApiError(413, f"the request body is {length} bytes; the limit is {self.app.args.max_body_bytes}")
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
            request = GenerationRequest(body, self.app.runtime, self.app.args.think)
            self.app.admit()
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

        count, reason = self.app.complete(request, collect)
        message = {"role": "assistant", "content": "".join(parts["answer"]).strip()}
        if parts["thinking"]:
            message["reasoning_content"] = "".join(parts["thinking"]).strip()
        self.send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": self.app.model_id,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reason)}],
            "usage": usage(request.prompt_tokens, count),
        })

    def stream(self, request):
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()

        def chunk(choices, **extra):
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": self.app.model_id,
                    "choices": choices, **extra}

        def event(delta, reason=None):
            self.wfile.write(f"data: {json.dumps(chunk([{'index': 0, 'delta': delta, 'finish_reason': reason}]))}\n\n"
                             .encode())
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
            self.app.slots.release()
            return
        count, reason = self.app.complete(request, send)
        if gone:
            return
        try:
            event({}, finish_reason(reason))
            if request.include_usage:
                self.wfile.write(f"data: {json.dumps(chunk([], usage=usage(request.prompt_tokens, count)))}\n\n"
                                 .encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except OSError:
            pass


def finish_reason(reason):
    return "stop" if reason == "cancelled" else reason


def usage(prompt_tokens, completion_tokens):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def run_server(args):
    manifest, runtime = open_bundle(args.bundle, args.device, args.threads, verify=not args.no_verify)
    runtime.load()
    app = Server(runtime, manifest, args)
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.app = app
    httpd.daemon_threads = False  # server_close() waits for in-flight requests
    host, port = httpd.server_address[:2]

    def shut_down(signum, frame):
        if app.stopping.is_set():
            return
        app.stopping.set()
        print(f"shim.py: shutting down; in-flight requests get {args.shutdown_grace:g} s to finish",
              file=sys.stderr, flush=True)
        grace = threading.Timer(args.shutdown_grace, app.cancel.set)
        grace.daemon = True
        grace.start()
        threading.Thread(target=httpd.shutdown).start()  # shutdown() waits for serve_forever(): not this thread

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    print(f"shim.py: serving {app.model_id} at http://{host}:{port}/v1 (OpenAI-compatible)",
          file=sys.stderr, flush=True)
    httpd.serve_forever()
    httpd.server_close()
    app.cancel.set()
    print("shim.py: stopped", file=sys.stderr, flush=True)
