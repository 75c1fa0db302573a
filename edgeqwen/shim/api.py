"""The OpenAI request bodies: every field is checked, and either honoured or refused with a 400 naming it.

No field is accepted and then ignored. The bundle's README has the table of what each endpoint honours;
it is generated from CHAT_FIELDS and COMPLETION_FIELDS here, so the two cannot disagree.
"""

import json
import re

from .errors import ApiError, ShimError
from .generation import LogprobRecorder
from .json_grammar import SchemaError, check_schema, closed
from .runtime import LOGITS, PENALIZE, Constraint, Sampling
from .tools import ToolRequest, history_tool_calls

MAX_STOPS = 4
# Objects and arrays inside one another: far more than any real request, and far less than Python's
# recursion limit, which every later step that walks a value (schema checks, templates, json.dumps) is under.
MAX_JSON_DEPTH = 64
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads makes one of "\\ud800"; UTF-8 cannot carry it
# Field -> what the server does with it. Extensions beyond OpenAI's API are marked so.
SAMPLING_FIELDS = {
    "model": "any name: the server runs one model, which answers to every name",
    "max_tokens": "clamped to what the context has room for",
    "temperature": "0-2; 0 (the default) is greedy",
    "top_p": "0-1",
    "top_k": "extension (llama-server, vLLM): 0-1000, default 50",
    "seed": "the same seed and request give the same answer",
    "stop": f"a string or up to {MAX_STOPS}; the answer ends before the first, which is not returned",
    "stream": "server-sent events, as OpenAI's",
    "stream_options": "include_usage",
    "n": "1 only",
    "presence_penalty": "-2..2, OpenVINO bundles; 400 on ONNX Runtime GenAI, whose sampler has none",
    "frequency_penalty": "-2..2, OpenVINO bundles; 400 on ONNX Runtime GenAI, whose sampler has none",
    "repetition_penalty": "extension (vLLM): 0.1-2, default 1 (off)",
    "user": "accepted for compatibility; not stored or logged",
}
CHAT_FIELDS = {
    "messages": "system, developer (as system), user, assistant (with tool_calls), tool (with tool_call_id); "
                "text content only",
    **SAMPLING_FIELDS,
    "max_completion_tokens": "as max_tokens",
    "logprobs": "the chosen token's log probability under the model (before any grammar or penalty)",
    "top_logprobs": "0-20 most likely tokens at each step",
    "response_format": "text, json_object, json_schema (strict or not: always enforced by the runtime's grammar)",
    "tools": "functions; the model's Qwen <tool_call> blocks come back as tool_calls",
    "tool_choice": "auto, none, required, or a named function (required and named are enforced by grammar)",
    "parallel_tool_calls": "false: at most one call",
    "chat_template_kwargs": "extension (vLLM): enable_thinking",
}
COMPLETION_FIELDS = {
    "prompt": "a string, a list of one string, or a list of token ids; continued as plain text (no template)",
    **SAMPLING_FIELDS,
    "logprobs": "0-5: the chosen token's log probability and that many alternatives",
    "echo": "false only",
}
REFUSED_EXAMPLES = ("logit_bias", "functions", "function_call", "audio", "modalities", "prediction", "suffix",
                    "best_of", "store", "metadata", "service_tier", "reasoning_effort", "web_search_options")


def refuse_unknown(body, known, endpoint):
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ApiError(400, f"{endpoint}: the field {unknown[0]!r} is not supported by this server (it honours: "
                            f"{', '.join(known)}; README.md lists what each does)", unknown[0], "unsupported_field")


def number(body, name, low, high, default, kind=float):
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}", name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' = {value} is outside [{low}, {high}]", name)
    return kind(value)


def flag(body, name, default=False):
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false", name)
    return value


def stop_sequences(body):
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "'stop' must be a non-empty string or a list of them", "stop")
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"'stop' has {len(stops)} sequences; at most {MAX_STOPS} are allowed", "stop")
    return stops


def text_content(content, where, allow_none=False):
    if content is None and allow_none:
        return ""
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise ApiError(400, f"{where}: only text parts are supported", where)
        return "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise ApiError(400, f"{where} must be a string or a list of text parts", where)
    return content


MESSAGE_FIELDS = {"system": {"content"}, "developer": {"content"}, "user": {"content"},
                  "assistant": {"content", "tool_calls", "reasoning_content"}, "tool": {"content", "tool_call_id"}}


def parse_messages(body):
    """The conversation in the chat template's own form."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' is required: a non-empty list of {role, content}", "messages")
    parsed = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in MESSAGE_FIELDS:
            raise ApiError(400, f"{where}.role must be one of {', '.join(MESSAGE_FIELDS)}", f"{where}.role")
        unknown = sorted(set(message) - MESSAGE_FIELDS[role] - {"role"})
        if unknown:
            raise ApiError(400, f"{where}: the field {unknown[0]!r} is not supported in a {role} message",
                           f"{where}.{unknown[0]}")
        calls = message.get("tool_calls")
        turn = {"role": "system" if role == "developer" else role,
                "content": text_content(message.get("content"), f"{where}.content", allow_none=bool(calls))}
        if calls is not None:
            turn["tool_calls"] = history_tool_calls(calls, f"{where}.tool_calls")
            check_json(turn["tool_calls"], f"{where}.tool_calls")  # arguments parsed from their JSON text
        if role == "tool":
            if not isinstance(message.get("tool_call_id"), str) or not message["tool_call_id"]:
                raise ApiError(400, f"{where}: a tool message needs the tool_call_id it answers", f"{where}.tool_call_id")
            turn["tool_call_id"] = message["tool_call_id"]
        if isinstance(message.get("reasoning_content"), str):
            turn["reasoning_content"] = message["reasoning_content"]
        parsed.append(turn)
    return parsed


def response_constraint(body):
    """The Constraint response_format asks for, or None."""
    spec = body.get("response_format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return Constraint(schema={"type": "object"})
    if kind == "json_schema":
        definition = spec.get("json_schema")
        if not isinstance(definition, dict) or "schema" not in definition:
            raise ApiError(400, "response_format.json_schema must be {name, schema, strict}", "response_format")
        try:
            check_schema(definition["schema"], "response_format.json_schema.schema")
        except SchemaError as e:
            raise ApiError(400, str(e), "response_format") from None
        return Constraint(schema=closed(definition["schema"]))
    raise ApiError(400, "response_format.type must be text, json_object or json_schema", "response_format")


class GenerationRequest:
    """A validated request for either endpoint, encoded by the runtime and ready to run."""

    prompt_field = "messages"

    def __init__(self, runtime, stream, include_usage, stops, logprobs_top, constraint, prompt_ids, body,
                 max_default=None):
        self.runtime = runtime
        self.stream, self.include_usage, self.stops = stream, include_usage, stops
        self.logprobs_top = logprobs_top  # None: no logprobs; else how many alternatives per token
        self.prompt_ids, self.prompt_tokens = prompt_ids, len(prompt_ids)
        if self.prompt_tokens > runtime.max_prompt_tokens:
            raise ApiError(400, f"the prompt is {self.prompt_tokens} tokens; this model takes at most "
                                f"{runtime.max_prompt_tokens} (context {runtime.context_length})", self.prompt_field,
                           "context_length_exceeded")
        if not prompt_ids:
            raise ApiError(400, "the prompt is empty", self.prompt_field)
        if number(body, "n", 1, 1, 1, int) != 1:
            raise ApiError(400, "only n = 1 is supported", "n")
        limit = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        requested = number(body, limit, 1, 10**9, max_default, int)
        room = runtime.context_length - self.prompt_tokens
        penalties = {name: number(body, name, -2.0, 2.0, 0.0) for name in ("presence_penalty", "frequency_penalty")}
        for name, value in penalties.items():
            if value and PENALIZE not in runtime.capabilities:
                raise ApiError(400, f"'{name}': {runtime.engine}'s sampler has no {name.replace('_', ' ')} "
                                    "(repetition_penalty works on every runtime)", name)
        if logprobs_top is not None and LOGITS not in runtime.capabilities:
            raise ApiError(400, f"'logprobs': {runtime.engine} on {runtime.device} gives no logits", "logprobs")
        self.sampling = Sampling(
            min(requested or room, room), number(body, "temperature", 0.0, 2.0, 0.0),
            number(body, "top_p", 0.0, 1.0, 1.0), number(body, "top_k", 0, 1000, 50, int),
            number(body, "seed", -2**63, 2**63 - 1, None, int), constraint=constraint,
            repetition_penalty=number(body, "repetition_penalty", 0.1, 2.0, 1.0), **penalties)

    def recorder(self):
        return LogprobRecorder(self.runtime, self.logprobs_top) if self.logprobs_top is not None else None

    def start(self):
        """The runtime's session for this request; what the runtime refuses (a grammar, a combination of
        options) is a 400 here, before any answer is sent."""
        try:
            return self.runtime.start(self.prompt_ids, self.sampling, {LOGITS} if self.logprobs_top is not None
                                      else frozenset())
        except ShimError as e:
            constraint = self.sampling.constraint
            grammar = "tools" if constraint is not None and constraint.tool_calls else "response_format"
            raise ApiError(400, str(e), grammar if isinstance(e, SchemaError) else None) from None


def common_stream_fields(body):
    stream = flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise ApiError(400, "'stream_options' may only hold include_usage", "stream_options")
    return stream, bool(options.get("include_usage"))


class ChatRequest(GenerationRequest):
    def __init__(self, body, runtime, default_think):
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        refuse_unknown(body, CHAT_FIELDS, "/v1/chat/completions")
        self.messages = parse_messages(body)
        self.tools = ToolRequest(body)
        constraint = response_constraint(body)
        if constraint is not None and self.tools.offered:
            raise ApiError(400, "response_format json and tools cannot be combined: use tool_choice \"none\" or "
                                "drop response_format", "response_format")
        constraint = constraint or self.tools.constraint()
        kwargs = body.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, dict) or set(kwargs) - {"enable_thinking"}:
            raise ApiError(400, "'chat_template_kwargs' may only hold enable_thinking", "chat_template_kwargs")
        # A grammar constrains the whole answer from its first token, so a constrained answer has no thinking.
        self.think = bool(kwargs.get("enable_thinking", default_think)) and constraint is None
        logprobs = flag(body, "logprobs")
        top = number(body, "top_logprobs", 0, 20, None, int)
        if top is not None and not logprobs:
            raise ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs")
        stream, include_usage = common_stream_fields(body)
        text = runtime.render(self.messages, self.think, self.tools.definitions if self.tools.offered else None)
        super().__init__(runtime, stream, include_usage, stop_sequences(body), (top or 0) if logprobs else None,
                         constraint, runtime.encode(text), body)


class CompletionRequest(GenerationRequest):
    prompt_field = "prompt"

    def __init__(self, body, runtime):
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        refuse_unknown(body, COMPLETION_FIELDS, "/v1/completions")
        if flag(body, "echo"):
            raise ApiError(400, "'echo' is not supported", "echo")
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = runtime.encode(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                         for t in prompt):
            ids = list(prompt)
            if runtime.vocab_size is not None and max(ids) >= runtime.vocab_size:
                raise ApiError(400, f"'prompt' holds the token id {max(ids)}; this model's ids are 0 to "
                                    f"{runtime.vocab_size - 1}", "prompt")
        else:
            raise ApiError(400, "'prompt' must be a string, a list of one string, or a list of token ids", "prompt")
        top = number(body, "logprobs", 0, 5, None, int)
        stream, include_usage = common_stream_fields(body)
        super().__init__(runtime, stream, include_usage, stop_sequences(body), top, None, ids, body, max_default=16)


def decode_body(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the request body is not UTF-8 (byte {e.start})") from None
    try:
        body = json.loads(text)
    except ValueError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, f"the request body is nested more than {MAX_JSON_DEPTH} deep") from None
    check_json(body)
    return body


def check_json(value, where=""):
    """Refuse what json.loads takes but no later step should get, naming the place: objects and arrays nested
    past MAX_JSON_DEPTH, and text holding a lone UTF-16 surrogate ("\\ud800" in the JSON), which no
    tokenizer can encode."""
    stack = [(value, where, 0)]
    while stack:
        here, place, depth = stack.pop()
        if isinstance(here, str):
            found = LONE_SURROGATE.search(here)
            if found:
                raise ApiError(400, f"{place or 'the request body'}: a lone UTF-16 surrogate "
                                    f"(\\u{ord(found.group()):04x}) is not text", place or None)
        elif isinstance(here, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise ApiError(400, f"{place or 'the request body'}: nested more than {MAX_JSON_DEPTH} deep",
                               place or None)
            for key, item in here.items() if isinstance(here, dict) else enumerate(here):
                inner = f"{place}[{key}]" if isinstance(here, list) else f"{place}.{key}" if place else key
                if isinstance(here, dict) and LONE_SURROGATE.search(key):
                    raise ApiError(400, f"{inner!r}: a key with a lone UTF-16 surrogate is not text", inner)
                stack.append((item, inner, depth + 1))
