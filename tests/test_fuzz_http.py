"""Fuzzing the shim's HTTP request handling (Hypothesis): whatever a client sends, the answer is a well-formed
HTTP response with a success or a typed 4xx error in OpenAI's shape that names the field, never a 500, a
traceback in the server's log, a connection dropped without an answer, or a dead server.

In process, on the demo bundle's own runtime (opened through the shim's modules, as shim.py opens it):
random bytes through decode_body, and random JSON, mutated valid bodies, random conversations, tools and
schemas through ChatRequest and CompletionRequest. A request that parses gets its session started (the
prompt fed to the model, a grammar compiled), but no text is generated. Over a raw socket, against a
running server: random request lines, mutated header blocks and bodies, each answered before the next.

Example counts come from the Hypothesis profile (conftest.py: "default" in the quick run, "ci" in the
slow suite); the tests that cost seconds per example run a fixed fraction of it.
"""

import json
import re
import socket
import sys
import threading

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from edgeqwen.shim.api import CHAT_FIELDS, COMPLETION_FIELDS, ChatRequest, CompletionRequest, decode_body
from edgeqwen.shim.engines import open_bundle
from edgeqwen.shim.errors import ApiError
from edgeqwen.shim.security import MAX_HEAD_BYTES, MAX_HEAD_LINES
from tests.servers import RunningServer

pytestmark = pytest.mark.fuzz

EXAMPLES = settings().max_examples  # the profile's count


def fraction(divisor, least=3):
    """Settings for a test whose examples cost seconds: the profile's count divided, never raised."""
    return settings(max_examples=min(EXAMPLES, max(least, EXAMPLES // divisor)))


# --- valid bodies, the seeds of the mutations

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
TRIP = {"type": "object", "required": ["city", "days"],
        "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer"},
                       "tags": {"type": "array", "items": {"enum": ["sea", "hills"]}, "maxItems": 3}}}
ROUND_TRIP = ASK + [
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
PLAIN_CHAT = [  # no grammar: cheap to start, fine to send to the server
    {"messages": ASK, "max_tokens": 1},
    {"model": "m", "messages": [{"role": "developer", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
     "max_completion_tokens": 2, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "seed": 7, "stop": ["\n\n"],
     "stream": True, "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2, "n": 1,
     "user": "u-1", "repetition_penalty": 1.1, "chat_template_kwargs": {"enable_thinking": False}},
    {"messages": ROUND_TRIP, "tools": [WEATHER], "tool_choice": "auto", "parallel_tool_calls": False,
     "max_tokens": 1},
]
CONSTRAINED_CHAT = [  # a grammar each: seconds to compile
    {"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
     "max_tokens": 1},
    {"messages": ASK, "response_format": {"type": "json_schema", "json_schema": {
        "name": "trip", "strict": True, "schema": TRIP}}, "max_tokens": 1},
]
COMPLETIONS = [
    {"prompt": "The os module", "max_tokens": 1},
    {"model": "m", "prompt": ["def f():"], "max_tokens": 2, "temperature": 1.0, "top_p": 0.5, "top_k": 5,
     "seed": 1, "stop": "\n", "stream": True, "stream_options": {"include_usage": True}, "logprobs": 2,
     "echo": False, "n": 1, "user": "u", "repetition_penalty": 1.2},
    {"prompt": [785, 2643, 4688], "max_tokens": 1},
]

# --- strategies

NAMES = sorted(set(CHAT_FIELDS) | set(COMPLETION_FIELDS) | {
    "role", "content", "tool_calls", "tool_call_id", "reasoning_content", "type", "function", "name", "arguments",
    "parameters", "description", "strict", "json_schema", "schema", "include_usage", "enable_thinking", "text",
    "id", "logit_bias", "functions"})
ROLES = ("system", "developer", "user", "assistant", "tool")
texts = st.text(st.characters(exclude_categories=()), max_size=12)  # lone surrogates included
keys = st.sampled_from(NAMES) | texts
scalars = (st.none() | st.booleans() | st.integers(-3, 3) | st.integers(-2**70, 2**70) | texts
           | st.floats(allow_nan=True, allow_infinity=True))  # json.loads takes NaN and Infinity too
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(keys, inner, max_size=4), max_leaves=12)


@st.composite
def mostly(draw, good, wild):
    """`good` four times in five, else `wild`: most examples get past the first check, some do not.
    (st.one_of(good, good, good, good, wild) would not do: it merges the repeated branches.)"""
    return draw(wild if draw(st.integers(0, 4)) == 4 else good)


words = st.text(max_size=12)  # no lone surrogates: what most clients send
JSON_TYPES = ("string", "integer", "number", "boolean", "null", "object", "array")
counts = mostly(st.integers(0, 4), st.integers(-2, 10**12))


def objects(properties):
    """Object schemas with up to three properties drawn from `properties`, some of them required."""
    return st.builds(lambda props, required: {"type": "object", "properties": props,
                                              "required": [k for k in props if k in required]},
                     st.dictionaries(st.sampled_from("abc"), properties, max_size=3), st.sets(st.sampled_from("abc")))


good_schemas = st.recursive(  # what JSON Schema allows, and llguidance mostly compiles
    st.builds(lambda t: {"type": t}, st.sampled_from(JSON_TYPES[:5])) | st.just({})
    | st.builds(lambda values: {"enum": values}, st.lists(st.integers(-3, 3) | words, min_size=1, max_size=3)),
    lambda inner: objects(inner)
    | st.builds(lambda item, low, high: {"type": "array", "items": item, "minItems": low, "maxItems": low + high},
                inner, counts, counts)
    | st.builds(lambda alternatives: {"anyOf": alternatives}, st.lists(inner, min_size=1, max_size=3))
    | st.builds(lambda low, high: {"type": "string", "minLength": low, "maxLength": low + high}, counts, counts),
    max_leaves=6)
wild_schemas = st.recursive(  # the keywords with any value, and some keywords no runtime enforces
    st.booleans() | st.just({}) | st.builds(lambda t: {"type": t}, st.sampled_from(JSON_TYPES)),
    lambda inner: st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(JSON_TYPES) | st.lists(st.sampled_from(JSON_TYPES + ("date",)), max_size=3),
        "properties": st.dictionaries(st.sampled_from("abc") | texts, inner, max_size=3),
        "required": st.lists(st.sampled_from("abcd"), max_size=3), "additionalProperties": inner,
        "items": inner, "prefixItems": st.lists(inner, max_size=2), "minItems": counts, "maxItems": counts,
        "minLength": counts, "maxLength": counts, "anyOf": st.lists(inner, max_size=3),
        "oneOf": st.lists(inner, min_size=1, max_size=2), "enum": st.lists(scalars, max_size=3), "const": json_values,
        "$ref": st.sampled_from(["#/$defs/a", "#/definitions/b", "#/nowhere", "http://x/s.json"]) | json_values,
        "$defs": st.dictionaries(st.sampled_from("ab"), inner, max_size=2),
        "pattern": st.sampled_from(["^[a-z]+$", "(", "a{2,3}"]), "minimum": st.integers(-5, 5),
        "format": st.sampled_from(["date", "email", "nonsense"]), "x-guidance": json_values,
        "description": texts}) | json_values,
    max_leaves=8)
schemas = mostly(good_schemas, wild_schemas)
object_schemas = objects(schemas)
function_names = mostly(st.from_regex(r"\A[A-Za-z0-9_-]{1,8}\Z", fullmatch=True) | st.sampled_from(["get_weather"]),
                        texts | json_values)
functions = st.fixed_dictionaries({"name": function_names}, optional={
    "description": mostly(words, json_values),
    "parameters": mostly(object_schemas, schemas),
    "strict": mostly(st.booleans(), json_values)})
tools = mostly(st.builds(lambda function: {"type": "function", "function": function}, functions),
               st.fixed_dictionaries({"type": json_values, "function": functions | json_values}))
tool_choices = mostly(st.sampled_from(["required", "auto", "none"])
                      | st.builds(lambda name: {"type": "function", "function": {"name": name}}, function_names),
                      json_values)
response_formats = mostly(st.sampled_from([{"type": "text"}, {"type": "json_object"}])
                          | st.builds(lambda schema, strict: {"type": "json_schema", "json_schema": {
                              "name": "x", "schema": schema, "strict": strict}}, schemas, st.booleans()),
                          json_values)
contents = mostly(words | st.lists(st.builds(lambda t: {"type": "text", "text": t}, words), max_size=3),
                  texts | st.none() | json_values
                  | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": texts}),
                             max_size=3))
arguments = mostly(st.dictionaries(st.sampled_from("abc"), scalars, max_size=3).map(json.dumps),
                   json_values.map(json.dumps) | texts | json_values)
tool_calls = mostly(
    st.builds(lambda call_id, name, args: {"id": call_id, "type": "function", "function": {
        "name": name, "arguments": args}}, words, function_names, arguments),
    st.fixed_dictionaries({"function": st.fixed_dictionaries({"name": function_names | json_values},
                                                             optional={"arguments": arguments})},
                          optional={"id": texts, "type": json_values}))
message = mostly(
    st.one_of(
        st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user"]), "content": contents}),
        st.fixed_dictionaries({"role": st.just("assistant")}, optional={
            "content": contents, "tool_calls": mostly(st.lists(tool_calls, min_size=1, max_size=2), json_values),
            "reasoning_content": mostly(words, json_values)}),
        st.fixed_dictionaries({"role": st.just("tool"), "content": contents,
                               "tool_call_id": mostly(words, json_values)})),
    st.fixed_dictionaries({"role": st.sampled_from(ROLES) | texts | json_values}, optional={
        "content": contents, "tool_calls": json_values, "tool_call_id": json_values, "name": texts}) | json_values)
messages = mostly(st.lists(message, min_size=1, max_size=4), json_values)


def places(value):
    """Every object and array in `value`, itself included."""
    found, stack = [], [value]
    while stack:
        here = stack.pop()
        if isinstance(here, (dict, list)):
            found.append(here)
            stack.extend(here.values() if isinstance(here, dict) else here)
    return found


@st.composite
def mutations(draw, bases):
    """A valid body with one to three places changed: a value replaced, deleted, or a key or item added."""
    body = json.loads(json.dumps(draw(st.sampled_from(bases))))
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(places(body)))
        where = list(target) if isinstance(target, dict) else list(range(len(target)))
        action = draw(st.sampled_from(("replace", "delete", "add") if where else ("add",)))
        if action == "add" and isinstance(target, dict):
            target[draw(keys)] = draw(json_values)
        elif action == "add":
            target.insert(draw(st.integers(0, len(target))), draw(json_values))
        elif action == "delete":
            del target[draw(st.sampled_from(where))]
        else:
            target[draw(st.sampled_from(where))] = draw(json_values)
    return body


chat_bodies = mostly(st.one_of(
    mutations(PLAIN_CHAT),
    st.fixed_dictionaries({"messages": messages}, optional={
        "tools": mostly(st.lists(tools, max_size=2), json_values),
        "tool_choice": mostly(st.sampled_from(["auto", "none"]), json_values),
        "parallel_tool_calls": mostly(st.booleans(), json_values), "max_tokens": mostly(st.integers(1, 2), json_values),
        "stop": mostly(words | st.lists(words, max_size=5), texts | json_values),
        "chat_template_kwargs": mostly(st.builds(lambda think: {"enable_thinking": think}, st.booleans()), json_values),
        "logprobs": st.booleans(), "top_logprobs": mostly(st.integers(0, 20), st.integers(-1, 21)),
        "n": mostly(st.just(1), scalars)})), json_values)
prompts = mostly(words | st.lists(words, min_size=1, max_size=1)
                 | st.lists(st.integers(0, 151_935), min_size=1, max_size=6),
                 texts | st.lists(texts, max_size=2) | st.lists(st.integers(-2, 160_000), max_size=6)
                 | st.integers(4090, 4200).map(lambda n: [9707] * n) | st.integers(-2**40, 2**40).map(lambda t: [t])
                 | json_values)
completion_bodies = mostly(st.one_of(
    mutations(COMPLETIONS),
    st.fixed_dictionaries({"prompt": prompts}, optional={
        "max_tokens": mostly(st.integers(1, 2), json_values), "logprobs": mostly(st.integers(0, 5), json_values),
        "echo": mostly(st.just(False), json_values), "stream": mostly(st.booleans(), json_values),
        "stream_options": mostly(st.builds(lambda usage: {"include_usage": usage}, st.booleans()),
                                 json_values)})), json_values)
good_tools = st.lists(st.builds(lambda name, parameters: {"type": "function", "function": {
    "name": name, "parameters": parameters}}, st.from_regex(r"\A[a-z_]{1,8}\Z", fullmatch=True), object_schemas),
    min_size=1, max_size=2, unique_by=lambda tool: tool["function"]["name"])
constrained_bodies = mostly(  # what compiles a grammar: response_format, or tools under "required" or a name
    st.one_of(
        st.builds(lambda schema: {"messages": ASK, "max_tokens": 1, "response_format": {
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}, schemas),
        st.builds(lambda ts, named, parallel: {
            "messages": ASK, "max_tokens": 1, "tools": ts, "parallel_tool_calls": parallel, "tool_choice": {
                "type": "function", "function": {"name": ts[-1]["function"]["name"]}} if named else "required"},
            good_tools, st.booleans(), st.booleans())),
    st.one_of(
        mutations(CONSTRAINED_CHAT),
        st.builds(lambda f: {"messages": ASK, "max_tokens": 1, "response_format": f}, response_formats),
        st.builds(lambda ts, choice, parallel: {"messages": ASK, "max_tokens": 1, "tools": ts, "tool_choice": choice,
                                                "parallel_tool_calls": parallel},
                  st.lists(tools, min_size=1, max_size=2), tool_choices, st.booleans())))

# --- what every refusal must be


def names_a_field(param, body, required):
    """Whether an error's `param` names a field of `body` (or a place inside one), or the `required` one."""
    param = param or ""
    return param in body or re.match(r"[^.\[]*", param).group(0) in {*body, required}


def check_refusal(error, body, required=None):
    """A 4xx in OpenAI's error shape; when the body is an object, `param` names a field of it (or the
    endpoint's `required` field, when that is missing)."""
    assert 400 <= error.status < 500, (error.status, error.message)
    shape = json.loads(json.dumps(error.body()))["error"]
    assert set(shape) == {"message", "type", "param", "code"}, shape
    assert isinstance(shape["message"], str) and shape["message"] and isinstance(shape["type"], str), shape
    assert shape["param"] is None or isinstance(shape["param"], str), shape
    if isinstance(body, dict):
        assert names_a_field(shape["param"], body, required), (shape, sorted(body))


def parsed(kind, runtime, body, grammar=False):
    """The `kind` of request `body` builds, its session started and closed (the prompt fed to the model, no
    token generated; a request with a grammar only if `grammar`, as compiling one takes seconds), or None
    if either step refused it."""
    required = "messages" if kind is ChatRequest else "prompt"
    try:
        request = ChatRequest(body, runtime, False) if kind is ChatRequest else CompletionRequest(body, runtime)
    except ApiError as error:
        check_refusal(error, body, required)
        event(f"refused as it was read: {re.sub(r'[0-9]+', 'i', error.param or 'the body')[:40]!a}")
        return None
    assert 1 <= request.sampling.max_new_tokens <= runtime.context_length - request.prompt_tokens
    constrained = request.sampling.constraint is not None
    if grammar or not constrained:
        try:
            request.start().close()
        except ApiError as error:
            check_refusal(error, body, required)
            event("refused by the runtime")
            return None
    event("started, with a grammar" if constrained and grammar else "read (its grammar not compiled)" if constrained
          else "started")
    return request


def through_the_wire(body):
    """`body` as the server receives it: serialised by a client, decoded by decode_body (or refused)."""
    try:
        return decode_body(json.dumps(body).encode())
    except ApiError as error:
        check_refusal(error, body)
        event("refused as JSON")
        return None


@pytest.fixture(scope="module")
def runtime(demo_bundle):
    _, loaded = open_bundle(str(demo_bundle))
    loaded.load()
    loaded.encode("warm up")  # the tokenizer loads on first use
    return loaded


# --- bodies, in process


@st.composite
def mutated_bytes(draw):
    data = bytearray(json.dumps(draw(st.sampled_from(PLAIN_CHAT + COMPLETIONS))).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(("flip", "insert", "delete", "cut")))
        if action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4)
                               | st.sampled_from([b"\\ud800", b"[[[", b"\xed\xa0\x80"]))
        elif action == "cut":
            del data[at:]
        elif at < len(data):
            if action == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                del data[at]
    return bytes(data)


@given(raw=st.binary(max_size=64) | mutated_bytes() | json_values.map(lambda v: json.dumps(v).encode()))
@example(raw=b"[" * 100_000)  # nested past the recursion limit
@example(raw=b'{"messages": [{"role": "user", "content": "\\ud800"}]}')  # a lone surrogate: not text
@example(raw=b'{"messages": [{"role": "user", "content": "caf\xe9"}]}')  # Latin-1
def test_any_bytes_are_json_or_a_400(raw):
    try:
        decode_body(raw)
    except ApiError as error:
        check_refusal(error, None)


@given(body=chat_bodies)
@example(body={"messages": [{"role": "user", "content": "\ud800"}]})
@example(body={"messages": ASK + [{"role": "assistant", "tool_calls": [
    {"function": {"name": "f", "arguments": "[" * 50_000}}]}]})
@example(body={"messages": ASK, "max_completion_tokens": "many"})
@example(body={"messages": [{"role": ["user"], "content": "hi"}]})  # a role that cannot be looked up
def test_chat_bodies_start_or_are_refused_by_name(runtime, body):
    body = through_the_wire(body)
    if body is not None:
        parsed(ChatRequest, runtime, body)


@given(body=completion_bodies)
@example(body={"prompt": [151_936], "max_tokens": 1})  # past the vocabulary
@example(body={"prompt": [2**31], "max_tokens": 1})  # past int32
@example(body={"prompt": "\udc00", "max_tokens": 1})
@example(body={"prompt": [9707] * 4100})  # longer than the context
def test_completion_bodies_start_or_are_refused_by_name(runtime, body):
    body = through_the_wire(body)
    if body is not None:
        parsed(CompletionRequest, runtime, body)


@fraction(10)
@given(body=constrained_bodies)
@example(body={"messages": ASK, "max_tokens": 1, "response_format": {"type": "json_schema", "json_schema": {
    "name": "x", "schema": {"type": "array", "minItems": 10**9}}}})  # llguidance once tried to allocate them all
@example(body={"messages": ASK, "max_tokens": 1, "response_format": {"type": "json_schema", "json_schema": {
    "name": "x", "schema": {"type": "object", "x-guidance": 5}}}})
@example(body={"messages": ASK, "max_tokens": 1, "response_format": {"type": "json_schema", "json_schema": {
    "name": "x", "schema": {"$ref": "#/$defs/a", "$defs": {"a": {"type": "array", "maxItems": 10**9}}}}}})
@example(body={"messages": ASK, "max_tokens": 1, "tool_choice": "required", "tools": [{  # refused by llguidance
    "type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/missing"}}}}}]})
def test_grammars_compile_or_are_refused_by_name(runtime, body):
    body = through_the_wire(body)
    if body is not None:
        parsed(ChatRequest, runtime, body, grammar=True)


# --- raw HTTP, against a running server

KEY = "fuzz-key-0123456789"
ORIGIN = "https://app.example"
IMPLEMENTED = (b"GET", b"POST", b"OPTIONS")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what a log line must not carry raw (terminal escapes)


class ServerLog:
    """The server's stderr, read as it is written (a full pipe would stop the server)."""

    def __init__(self, stream):
        self.lines, self.seen = [], 0
        threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True).start()

    def check_new(self):
        lines, self.seen = self.lines[self.seen:], len(self.lines)
        text = "".join(lines)
        assert "Traceback" not in text and "Exception occurred" not in text, text
        assert not [line for line in lines if CONTROL.search(line.rstrip("\n"))], text


@pytest.fixture(scope="module")
def server(demo_bundle):
    running = RunningServer(sys.executable, demo_bundle, "--api-key", KEY, "--cors-origin", ORIGIN,
                            "--client-timeout", "5", "--request-timeout", "30", quiet=False)
    running.log = ServerLog(running.process.stderr)
    yield running
    running.process.kill()


def small(body):
    """`body` limited to one or two tokens if it may generate (a max_tokens the fuzzer broke stays broken)."""
    if isinstance(body, dict) and ("messages" in body or "prompt" in body):
        body.pop("max_completion_tokens", None)
        limit = body.get("max_tokens")
        if limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit > 2):
            body["max_tokens"] = 2
    return body


plain_bodies = st.one_of(mutations(PLAIN_CHAT), mutations(COMPLETIONS), st.sampled_from(PLAIN_CHAT + COMPLETIONS),
                         chat_bodies, completion_bodies).map(small).map(lambda b: json.dumps(b).encode())
bodies = plain_bodies | st.binary(max_size=64) | mutated_bytes() | st.just(b"")
header_names = st.sampled_from([b"Content-Length", b"content-length", b"Transfer-Encoding", b"Authorization",
                                b"X-Api-Key", b"Origin", b"Content-Type", b"Expect", b"Connection", b"Host"]) | \
    st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\n", b"").replace(b":", b"") or b"X")
lengths = st.sampled_from([b"-1", b"+3", b"0x10", b"1e3", b" 5 ", b"abc", b"", b"99999999999999999999",
                           b"\xb2", b"\xd9\xa3", b"0" * 5000, b"1" * 30, b"2147483648"])


def header_value(name, body):
    """Values that mean something for `name`, or anything."""
    meaningful = {
        b"Content-Length": lengths | st.integers(0, len(body) + 3).map(lambda n: str(n).encode()),
        b"Transfer-Encoding": st.sampled_from([b"chunked", b"gzip, chunked", b"identity", b"\xffchunked", b"chunked "]),
        b"Authorization": st.sampled_from([b"Bearer " + KEY.encode(), b"bearer " + KEY.encode(), b"Bearer",
                                           b"Bearer \xff\xfe", KEY.encode(), b"Basic Zm9vOmJhcg=="]),
        b"X-Api-Key": st.sampled_from([KEY.encode(), KEY.encode()[:-1], b"\xe9" * 20]),
        b"Origin": st.sampled_from([ORIGIN.encode(), b"https://evil.example", b"null", b"\x00"]),
        b"Expect": st.just(b"100-continue"), b"Connection": st.sampled_from([b"keep-alive", b"close", b"upgrade"]),
    }.get(name, st.nothing())
    anything = st.binary(max_size=20).map(lambda b: b.replace(b"\n", b" ")) | \
        st.integers(1, 20_000).map(lambda n: b"v" * n)
    return meaningful | anything


@st.composite
def raw_requests(draw):
    """(bytes to send, method): a request line, a header block and a body, each possibly broken."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=200)), b""
    method = draw(st.sampled_from([b"POST", b"GET", b"OPTIONS", b"HEAD", b"PUT", b"DELETE", b"get", b"PRI", b""])
                  | st.binary(max_size=8).map(lambda b: b.replace(b" ", b"").replace(b"\n", b"")))
    path = draw(st.sampled_from([b"/v1/chat/completions", b"/v1/completions", b"/v1/models", b"/health",
                                 b"/v1/chat/completions/", b"/v1/completions?x=1", b"//v1/models", b"*", b"",
                                 b"/\x1b[31mred", b"/\xff\xfe", b"/v1/\x00"])
                | st.binary(max_size=20).map(lambda b: b"/" + b.replace(b"\n", b"").replace(b" ", b""))
                | st.integers(2000, 20_000).map(lambda n: b"/" + b"a" * n))
    version = draw(st.sampled_from([b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.1", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.x",
                                    b"http/1.1", b"HTTP/1.1 extra", b"HTTP/01.1", b""]))
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    body = draw(bodies)
    headers = [(b"Host", b"fuzz"), (b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(body))]
    if draw(st.integers(0, 4)):
        headers.append((b"Authorization", b"Bearer " + KEY.encode()))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(("set", "add", "drop", "many", "broken")))
        if action == "drop" and headers:
            headers.pop(draw(st.integers(0, len(headers) - 1)))
        elif action == "many":
            headers += [(b"X-Many-%d" % i, b"1") for i in range(draw(st.integers(1, 80)))]
        elif action == "broken":
            headers.append((draw(st.sampled_from([b"no colon here", b" folded continuation", b"\tx", b":empty",
                                                  b"Bad Name"])), None))
        else:
            name = draw(header_names)
            value = draw(header_value(name, body))
            if action == "set":
                headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
            headers.append((name, value))
    line = b" ".join(part for part in (method, path, version) if part or draw(st.booleans()))
    head = eol.join([line] + [name if value is None else name + b": " + value for name, value in headers])
    return head + eol + eol + body, method


def exchange(server, data, timeout=30):
    """Send `data` on a connection of its own, close the sending side, and read until the server closes:
    (what came back, the OSError that ended the exchange or None)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as connection:
        problem = None
        try:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
        except OSError as e:  # the server answered and closed before reading it all (a head over the limit)
            problem = e
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            raise AssertionError(f"neither an answer nor a close in {timeout} s; got {received[:200]!r}") from None
        except OSError as e:
            problem = problem or e
    return received, problem


def head_over_the_limit(data):
    """Whether the server's documented head limits (16 KiB in 64 lines, security.py) apply to `data`."""
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    return len(head) > MAX_HEAD_BYTES - 4 or head.count(b"\n") >= MAX_HEAD_LINES - 1


def check_answer(data, method, received, problem):
    """The server answered with a well-formed response, or closed where it documents closing."""
    first_line = data.split(b"\n", 1)[0]
    if not received:
        assert not first_line.strip() or head_over_the_limit(data), f"no answer ({problem!r}) to {data[:300]!r}"
        return None, None
    head, separator, payload = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    match = re.fullmatch(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*", status_line)
    assert match and separator, received[:300]
    status = int(match.group(1))
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.decode("latin-1").partition(":") for h in header_lines)}
    # The answers HTTP itself gives to what it refuses: an unknown method (501), and a version other than
    # HTTP/1.x (505). Any other 5xx is the server failing.
    # Split as http.server does: the line decoded as Latin-1 and split on str whitespace, which takes
    # \x1c-\x1f too (bytes.split does not).
    words = first_line.decode("latin-1").split()
    justified = {501: method not in IMPLEMENTED,
                 505: len(words) >= 3 and re.fullmatch(r"HTTP/\d+\.\d+", words[-1]) is not None
                 and int(words[-1][5:].split(".")[0]) != 1}
    assert status < 500 or justified.get(status), (status, received[:400], data[:300])
    if status == 204:
        assert method == b"OPTIONS" and not payload
        return status, None
    if headers.get("content-type") == "text/event-stream":
        assert status == 200 and payload.endswith(b"data: [DONE]\n\n"), payload[-300:]
        events = [e for e in payload.split(b"\n\n") if e]
        assert all(e.startswith(b"data: ") for e in events)
        [json.loads(e[6:]) for e in events[:-1]]
        return status, None
    assert headers.get("content-type") == "application/json" and int(headers["content-length"]) == len(payload), \
        received[:400]
    answer = json.loads(payload)
    if status >= 400:
        error = answer["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], answer
    return status, answer


@given(request=raw_requests())
@example(request=(b"POST /v1/completions HTTP/1.0\r\nContent-Length: \xb2\r\n\r\n{}", b"POST"))
@example(request=(b"POST /v1/completions HTTP/1.0\r\nContent-Length: " + b"0" * 5000 + b"\r\n\r\n{}", b"POST"))
@example(request=(b"GET /health\r\n\r\n", b"GET"))  # HTTP/0.9: a bare body, no status line
@example(request=(b"GET /health HTTP/0.9\r\n\r\n", b"GET"))
@example(request=(b"\x00", b""))
@example(request=(b"POST /\t\x00 HTTP/0.9\r\n\r\n", b"POST"))  # four words, the last HTTP/0.9
@example(request=(b"GET /health HTTP/0.9\r\nX-Big: " + b"v" * 17_000 + b"\r\n\r\n", b"GET"))  # 431 for it
@example(request=(b"GET /health HTTP/2.0\r\n\r\n", b"GET"))
@example(request=(b"GET /\x1b[2J HTTP/1.0\r\n\r\n", b"GET"))  # a terminal escape for the log
def test_any_request_gets_a_well_formed_answer(server, request):
    data, method = request
    check_answer(data, method, *exchange(server, data))
    assert server.process.poll() is None, "the server died"
    server.log.check_new()


def post(path, body):
    return (b"POST %s HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path, KEY.encode(), len(body), body))


@given(path=st.sampled_from([b"/v1/chat/completions", b"/v1/completions"]), body=bodies)
@example(path=b"/v1/chat/completions", body=b"[" * 100_000)
@example(path=b"/v1/completions", body=b'{"prompt": [151936], "max_tokens": 1}')
@example(path=b"/v1/completions", body=b'{"prompt": "\\ud800", "max_tokens": 1}')
def test_any_body_gets_an_answer_or_a_400_naming_the_field(server, path, body):
    status, answer = check_answer(post(path, body), b"POST", *exchange(server, post(path, body)))
    assert status in (200, 400), (status, answer)
    try:
        sent = json.loads(body.decode("utf-8"))  # strictly, as the server decodes it
    except (ValueError, RecursionError):
        sent = None
    if status == 400 and isinstance(sent, dict):
        required = "messages" if path == b"/v1/chat/completions" else "prompt"
        assert names_a_field(answer["error"]["param"], sent, required), (answer, sorted(sent))
    assert server.process.poll() is None, "the server died"
    server.log.check_new()


def test_the_server_still_answers_after_the_fuzzing(server):
    health = b"GET /health HTTP/1.1\r\nHost: fuzz\r\n\r\n"
    assert check_answer(health, b"GET", *exchange(server, health)) == (200, {"status": "ok"})
    chat = post(b"/v1/chat/completions", json.dumps(PLAIN_CHAT[0]).encode())
    status, answer = check_answer(chat, b"POST", *exchange(server, chat))
    assert status == 200 and answer["choices"][0]["message"]["role"] == "assistant"
    server.log.check_new()
    assert any('"POST /v1/chat/completions" 200' in line for line in server.log.lines)
