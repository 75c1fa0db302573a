"""The OpenAI-compatible HTTP server: GET /v1/models and /health, POST /v1/chat/completions and
/v1/completions (streamed or not), OPTIONS for browsers' CORS preflight.

One model, one generation at a time, a bounded queue of waiting requests: a request that finds the queue
full is answered 429 with Retry-After at once. The listen backlog is sized so that a burst of clients is
accepted and answered (200 or 429), never reset by the kernel. A request has a deadline (--request-timeout)
for waiting and generating together; a client that goes away mid-answer stops its generation.
"""

import json
import select
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .api import ChatRequest, CompletionRequest, decode_body
from .engines import open_bundle
from .errors import ApiError
from .generation import ThinkingSplitter, generate
from .security import Guard, HeadReader, HeadTooLarge, check_exposure, load_api_key

CHECK_CLIENT_EVERY = 8  # tokens between checks that a non-streaming client is still connected
# What a log line shows escaped: control characters from a request line (a path can carry terminal escapes).
LOG_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}


class Server:
    """The model and the admission of requests to it."""

    def __init__(self, runtime, manifest, args, guard):
        self.runtime, self.args, self.guard = runtime, args, guard
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

    def turn(self, request, deadline):
        """Wait for the model (until the deadline) and start the request's session; the caller must end()."""
        if not self.generation_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self.slots.release()
            raise ApiError(503, f"waited {self.args.request_timeout:g} s for the model; retry later",
                           kind="server_error", code="timeout")
        try:
            if self.cancel.is_set():
                raise ApiError(503, "the server is shutting down", kind="server_error", code="shutting_down")
            return request.start()
        except BaseException:
            self.end()
            raise

    def end(self):
        self.generation_lock.release()
        self.slots.release()

    def run(self, request, session, on_text, deadline, recorder=None):
        """Generate (the turn already held); returns (completion_tokens, finish_reason)."""
        def step(piece):
            return on_text(piece) or self.cancel.is_set() or time.monotonic() > deadline

        try:
            count, reason = generate(self.runtime, request.prompt_ids, request.sampling, step, request.stops,
                                     recorder, session)
        finally:
            self.end()
        if reason == "cancelled" and time.monotonic() > deadline:
            reason = "length"  # out of time: cut short, as at max_tokens
        return count, reason


class Listener(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for in-flight requests

    def __init__(self, address, app):
        self.request_queue_size = app.args.backlog  # the kernel caps it at net.core.somaxconn
        self.app = app
        self.verdicts = {}  # id(connection) -> Guard.connect's verdict, for its handler
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        verdict = self.app.guard.connect(client_address[0])
        if verdict == "server":  # every thread is taken: no answer is cheaper than one more thread
            log(self.app, f"{client_address[0]} refused: {self.app.args.max_connections} connections are open")
            self.shutdown_request(request)
            return
        self.verdicts[id(request)] = verdict
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.verdicts.pop(id(request), None)
            self.app.guard.disconnect(client_address[0])

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away or timed out: nothing to report but a line
            log(self.app, f"{client_address[0]} connection closed: {type(error).__name__}")
            return
        super().handle_error(request, client_address)


def log(app, line):
    if not app.args.quiet:
        sys.stderr.write(line.translate(LOG_ESCAPES) + "\n")


def content_length(headers):
    """The request's Content-Length in bytes, or None when it is missing or not a whole number (int() alone
    takes "²" and refuses a 5000-digit number with ValueError). Past 18 digits it is over any limit."""
    digits = (headers.get("Content-Length") or "").strip()
    if not (digits.isascii() and digits.isdigit()):
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18


class Handler(BaseHTTPRequestHandler):
    """One HTTP request (HTTP/1.0: one request per connection, so no idle keep-alive connection holds up a
    shutdown or a connection slot)."""

    server_version = "edgeqwen-shim"
    default_request_version = "HTTP/1.0"  # so an answer to a broken request line has a status line too

    @property
    def app(self):
        return self.server.app

    def setup(self):
        self.timeout = self.server.app.args.client_timeout  # each read and write of the socket
        # What an answer needs if the request is refused before http.server has parsed it.
        self.request_version, self.command, self.path, self.requestline, self.headers = "HTTP/1.0", "", "", "", {}
        super().setup()
        self.rfile = HeadReader(self.rfile)
        # The whole head and body within the timeout, not just each byte of it (slowloris).
        self.cut_off = threading.Timer(self.timeout, self.too_slow)
        self.cut_off.daemon = True
        self.cut_off.start()

    def finish(self):
        self.cut_off.cancel()
        super().finish()

    def too_slow(self):
        log(self.app, f"{self.client_address[0]} cut off: the request did not arrive within "
                      f"{self.timeout:g} s")
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except HeadTooLarge:
            log(self.app, f"{self.client_address[0]} refused: request head over the limit")
            self.close_connection = True
            self.send_error_body(ApiError(431, "the request line and headers are too large (at most 16 KiB "
                                               "in 64 lines)", code="headers_too_large"))

    def parse_request(self):
        # HTTP/0.9 (a request line without a version, or one that says so) is answered with no status line
        # and no headers: it is refused in HTTP/1.0 instead.
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if len(line.split()) == 2:
            self.requestline = line
            self.send_error(400, "the request line has no HTTP version (HTTP/0.9 is not supported)")
            return False
        if not super().parse_request():
            return False
        if int(self.request_version[5:].split(".")[0]) < 1:  # http.server checked it is HTTP/digits.digits
            self.send_error(505, f"{line.split()[-1]} is not supported: send HTTP/1.0 or HTTP/1.1")
            return False
        return True

    def log_message(self, fmt, *values):
        log(self.app, f"{self.client_address[0]} {fmt % values}")

    def log_request(self, code="-", size="-"):
        # The request line holds no prompt (it is in the body); headers, which can hold the key, are never logged.
        self.log_message('"%s %s" %s', self.command, self.path, code)

    # --- responses

    def origin(self):
        return self.headers.get("Origin")

    def send_json(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in [*self.app.guard.cors_headers(self.origin()), *headers]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_error_body(self, error):
        if self.request_version == "HTTP/0.9":  # a request line said so: http.server would send no status line
            self.request_version = self.default_request_version
        headers = [("Retry-After", "1")] if error.status in (429, 503) else []
        if error.status == 401:
            headers.append(("WWW-Authenticate", "Bearer"))
        self.send_json(error.status, error.body(), headers)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a malformed request line, an unknown method) in OpenAI's shape."""
        self.close_connection = True
        self.send_error_body(ApiError(code, message or "bad request"))

    # --- routes

    def check_access(self):
        """Refuse other origins' browsers and callers without the key (health needs neither)."""
        self.rfile.limited = False
        origin = self.origin()
        if origin and not self.app.guard.origin_allowed(origin):
            raise ApiError(403, f"the origin {origin} may not call this server (serve --cors-origin allows one)",
                           code="origin_not_allowed")
        if not self.app.guard.authorized(self.headers):
            raise ApiError(401, "a valid API key is required: Authorization: Bearer KEY (or X-Api-Key: KEY)",
                           kind="authentication_error", code="invalid_api_key")
        if self.server.verdicts.get(id(self.request)) == "client":
            log(self.app, f"{self.client_address[0]} refused: over {self.app.args.max_client_connections} "
                          "connections from one address")
            raise ApiError(429, f"this address already has {self.app.args.max_client_connections} connections "
                                "open; retry later", kind="rate_limit_error", code="too_many_connections")

    def do_OPTIONS(self):
        self.rfile.limited = False
        origin = self.origin()
        if not origin or not self.app.guard.origin_allowed(origin):
            return self.send_error_body(ApiError(403, f"the origin {origin} may not call this server",
                                                 code="origin_not_allowed"))
        self.send_response(204)
        for name, value in self.app.guard.preflight_headers(origin):
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        route = self.path.split("?")[0].rstrip("/")
        try:
            if route == "/health":
                self.rfile.limited = False
                return self.send_json(200, {"status": "ok"})
            self.check_access()
            if route == "/v1/models":
                return self.send_json(200, self.app.models())
            raise ApiError(404, f"no route GET {self.path}", code="not_found")
        except ApiError as e:
            self.send_error_body(e)

    def do_POST(self):
        route = self.path.split("?")[0].rstrip("/")
        try:
            self.check_access()
            if route not in ("/v1/chat/completions", "/v1/completions"):
                raise ApiError(404, f"no route POST {self.path}", code="not_found")
            body = self.read_body()
            self.cut_off.cancel()  # the request is in: from here the deadline is --request-timeout
            deadline = time.monotonic() + self.app.args.request_timeout
            self.app.admit()  # first, so a full queue is answered at once, before any tokenizing
            try:
                if route == "/v1/chat/completions":
                    request = ChatRequest(body, self.app.runtime, self.app.args.think)
                else:
                    request = CompletionRequest(body, self.app.runtime)
            except BaseException:
                self.app.slots.release()
                raise
            if self.app.args.log_prompts:
                log(self.app, f"{self.client_address[0]} prompt: {json.dumps(body.get('messages', body.get('prompt')))}")
            session = self.app.turn(request, deadline)
        except ApiError as e:
            self.drain()
            return self.send_error_body(e)
        answer = ChatAnswer(self, request) if isinstance(request, ChatRequest) else TextAnswer(self, request)
        try:
            answer.run(session, deadline)
        except Exception as e:  # a fault in the runtime: the client gets a 500 if nothing was sent yet
            log(self.app, f"{self.client_address[0]} failed: {type(e).__name__}: {e}")
            if not answer.started:
                self.send_error_body(ApiError(500, f"the runtime failed: {e}", kind="server_error"))

    def drain(self):
        """Read a refused request's body, if it was not read: closing a socket with unread input resets the
        connection, and the client would see a network error instead of the answer."""
        length = content_length(self.headers)
        if not getattr(self, "body_read", False) and length and length <= self.app.args.max_body_bytes:
            try:
                self.rfile.read(length)
            except OSError:
                pass

    def read_body(self):
        self.body_read = True
        length = content_length(self.headers)
        if length is None and self.headers.get("Content-Length") is None:
            raise ApiError(411, "a Content-Length header is required")
        if length is None:
            raise ApiError(400, "Content-Length must be a whole number of bytes", code="invalid_content_length")
        if length > self.app.args.max_body_bytes:
            size = f"{length} bytes" if length < 10**18 else "over 10^18 bytes"
            raise ApiError(413, f"the request body is {size}; the limit is {self.app.args.max_body_bytes}")
        raw = self.rfile.read(length)
        if len(raw) < length:
            raise ApiError(400, "the request body ended before its Content-Length")
        return decode_body(raw)

    def client_gone(self):
        """Whether the client has closed its end (it sends nothing more once its request is in)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True


class Answer:
    """One request's answer, whole or streamed as server-sent events."""

    prefix, obj = "", ""

    def __init__(self, handler, request):
        self.handler, self.request = handler, request
        self.ident, self.created = f"{self.prefix}-{uuid.uuid4().hex}", int(time.time())
        self.recorder = request.recorder()
        self.logged = 0  # logprob entries already sent
        self.gone = False
        self.tokens = 0
        self.started = False  # whether the response's status line has gone out

    def run(self, session, deadline):
        app = self.handler.app
        if self.request.stream:
            try:
                self.start_stream()
            except OSError:
                session.close()
                app.end()
                return
        count, reason = app.run(self.request, session, self.on_piece, deadline, self.recorder)
        if self.gone:
            return
        try:
            self.finish(count, reason)
        except OSError:
            pass

    def on_piece(self, piece):
        """Called per decoded piece; True stops the generation."""
        self.tokens += 1
        try:
            self.take(piece)
        except OSError:  # the client went away mid-stream
            self.gone = True
        if not self.request.stream and self.tokens % CHECK_CLIENT_EVERY == 0 and self.handler.client_gone():
            self.gone = True
        return self.gone or self.done()

    def done(self):
        return False

    def new_logprobs(self):
        if self.recorder is None:
            return None
        entries, self.logged = self.recorder.entries[self.logged:], len(self.recorder.entries)
        return entries

    def start_stream(self):
        self.started = True
        self.handler.send_response(200)
        self.handler.send_header("Content-Type", "text/event-stream")
        self.handler.send_header("Cache-Control", "no-cache")
        for name, value in self.handler.app.guard.cors_headers(self.handler.origin()):
            self.handler.send_header(name, value)
        self.handler.end_headers()

    def event(self, payload):
        self.handler.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.handler.wfile.flush()

    def end_stream(self, count):
        if self.request.include_usage:
            self.event(self.chunk([], usage=usage(self.request.prompt_tokens, count)))
        self.handler.wfile.write(b"data: [DONE]\n\n")
        self.handler.wfile.flush()

    def chunk(self, choices, **extra):
        return {"id": self.ident, "object": self.obj, "created": self.created,
                "model": self.handler.app.model_id, "choices": choices, **extra}


class ChatAnswer(Answer):
    prefix, obj = "chatcmpl", "chat.completion.chunk"

    def __init__(self, handler, request):
        super().__init__(handler, request)
        self.splitter = ThinkingSplitter()
        self.parser = request.tools.parser()
        self.parts = {"answer": [], "thinking": []}
        self.calls = []

    def take(self, piece):
        for kind, text in self.splitter.feed(piece):
            if kind == "thinking":
                self.out({"reasoning_content": text}, "thinking", text)
            elif self.parser is None:
                self.out({"content": text}, "answer", text)
            else:
                self.parsed(self.parser.feed(text))
        if self.request.stream and self.recorder is not None and not piece and self.recorder.entries[self.logged:]:
            self.out({}, None, "")  # a token whose text is held back still gets its logprobs sent

    def parsed(self, events):
        for kind, value in events:
            if kind == "content":
                self.out({"content": value}, "answer", value)
            else:
                self.call(value)

    def call(self, call):
        index = len(self.calls)
        self.calls.append(call)
        if self.request.stream:
            pieces = call.pieces or [call.arguments]
            self.out({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                      "function": {"name": call.name, "arguments": ""}}]}, None, "")
            for piece in pieces:
                self.out({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None, "")

    def done(self):
        return self.parser is not None and self.parser.done

    def out(self, delta, kind, text):
        if kind:
            self.parts[kind].append(text)
        if self.request.stream:
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            logprobs = self.new_logprobs()
            if logprobs is not None:
                choice["logprobs"] = {"content": chat_logprobs(logprobs)}
            self.event(self.chunk([choice]))

    def start_stream(self):
        super().start_stream()
        self.event(self.chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))

    def reason(self, reason):
        return "tool_calls" if self.calls else finish_reason(reason)

    def finish(self, count, reason):
        if self.parser is not None:
            self.parsed(self.parser.finish())
        if self.request.stream:
            self.event(self.chunk([{"index": 0, "delta": {}, "finish_reason": self.reason(reason)}]))
            return self.end_stream(count)
        content = "".join(self.parts["answer"]).strip()
        message = {"role": "assistant", "content": content or (None if self.calls else "")}
        if self.parts["thinking"]:
            message["reasoning_content"] = "".join(self.parts["thinking"]).strip()
        if self.calls:
            message["tool_calls"] = [call.message() for call in self.calls]
        choice = {"index": 0, "message": message, "finish_reason": self.reason(reason)}
        if self.recorder is not None:
            choice["logprobs"] = {"content": chat_logprobs(self.recorder.entries)}
        self.handler.send_json(200, {"id": self.ident, "object": "chat.completion", "created": self.created,
                                     "model": self.handler.app.model_id, "choices": [choice],
                                     "usage": usage(self.request.prompt_tokens, count)})


class TextAnswer(Answer):
    """/v1/completions: the prompt continued as plain text."""

    prefix, obj = "cmpl", "text_completion"

    def __init__(self, handler, request):
        super().__init__(handler, request)
        self.text = []

    def take(self, piece):
        self.text.append(piece)
        if self.request.stream and (piece or self.recorder is not None):
            self.event(self.chunk([{"index": 0, "text": piece, "logprobs": completion_logprobs(self.new_logprobs()),
                                    "finish_reason": None}]))

    def finish(self, count, reason):
        if self.request.stream:
            self.event(self.chunk([{"index": 0, "text": "", "logprobs": None, "finish_reason": finish_reason(reason)}]))
            return self.end_stream(count)
        logprobs = completion_logprobs(self.recorder.entries) if self.recorder is not None else None
        self.handler.send_json(200, {
            "id": self.ident, "object": "text_completion", "created": self.created, "model": self.handler.app.model_id,
            "choices": [{"index": 0, "text": "".join(self.text), "logprobs": logprobs,
                         "finish_reason": finish_reason(reason)}],
            "usage": usage(self.request.prompt_tokens, count)})


def token_bytes(text):
    return list(text.encode("utf-8", "surrogatepass"))


def chat_logprobs(entries):
    return [{"token": e["token"], "logprob": e["logprob"], "bytes": token_bytes(e["token"]),
             "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": token_bytes(t["token"])}
                              for t in e["top"]]} for e in entries]


def completion_logprobs(entries):
    if entries is None:
        return None
    offsets, at = [], 0
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top"]} for e in entries], "text_offset": offsets}


def finish_reason(reason):
    return "stop" if reason == "cancelled" else reason


def usage(prompt_tokens, completion_tokens):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def run_server(args):
    key = load_api_key(args)
    warnings = check_exposure(args, key)
    manifest, runtime = open_bundle(args.bundle, args.device, args.threads, verify=not args.no_verify)
    runtime.load()
    guard = Guard(key, args.cors_origin, args.max_connections, args.max_client_connections)
    app = Server(runtime, manifest, args, guard)
    httpd = Listener((args.host, args.port), app)
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
    for warning in warnings:
        print(f"shim.py: {warning}", file=sys.stderr, flush=True)
    access = "API key required" if key else "no API key"
    print(f"shim.py: serving {app.model_id} at http://{host}:{port}/v1 (OpenAI-compatible; {access})",
          file=sys.stderr, flush=True)
    httpd.serve_forever()
    httpd.server_close()
    app.cancel.set()
    print("shim.py: stopped", file=sys.stderr, flush=True)
