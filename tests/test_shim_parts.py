"""The shim's request-side parts on their own: stop sequences, Qwen tool-call parsing, JSON Schema checks and
the EBNF grammar OpenVINO is given. No model: the end-to-end tests in test_server_api.py run them on one."""

import json

import pytest

from edgeqwen.shim.api import ChatRequest
from edgeqwen.shim.errors import ApiError
from edgeqwen.shim.generation import StopMatcher
from edgeqwen.shim.json_grammar import SchemaError, check_schema, schema_grammar, tool_call_grammar
from edgeqwen.shim.runtime import Constraint
from edgeqwen.shim.tools import ToolCallParser, ToolRequest


def feed_all(matcher, pieces):
    shown = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        shown.append(text)
        if stopped:
            return "".join(shown), True
    return "".join(shown) + matcher.flush(), False


@pytest.mark.parametrize("pieces, stops, shown, stopped", [
    (["Hello wor", "ld, and more"], ["world"], "Hello ", True),
    (["abc", "</st", "op>", "tail"], ["</stop>"], "abc", True),
    (["no stop ", "here <", "/st"], ["</stop>"], "no stop here </st", False),  # held text comes out at the end
    (["a", "b", "c"], ["x", "bc"], "a", True),
    (["one two"], [], "one two", False),
])
def test_stop_sequences_cut_the_text_and_are_never_shown_in_part(pieces, stops, shown, stopped):
    assert feed_all(StopMatcher(stops), pieces) == (shown, stopped)


def test_a_held_back_prefix_is_not_shown_until_it_is_known_not_to_be_a_stop():
    matcher = StopMatcher(["END"])
    assert matcher.feed("text E") == ("text ", False)
    assert matcher.feed("N") == ("", False)
    assert matcher.feed("x") == ("ENx", False)


def parse(pieces, names=("get_weather",), parallel=True):
    parser = ToolCallParser(set(names), parallel)
    events = [e for piece in pieces for e in parser.feed(piece)] + parser.finish()
    content = "".join(v for kind, v in events if kind == "content")
    calls = [v for kind, v in events if kind == "call"]
    return content, calls, parser


def test_qwen_tool_calls_are_parsed_even_when_the_tags_arrive_in_pieces():
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
    content, calls, _ = parse(pieces)
    assert content == "Let me check.\n"
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert "".join(calls[0].pieces) == calls[0].arguments and len(calls[0].pieces) > 1


def test_parallel_calls_and_the_one_call_limit():
    block = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}\n</tool_call>'
    text = block % "Paris" + "\n" + block % "Rome"
    _, calls, _ = parse([text])
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    _, calls, parser = parse([text], parallel=False)
    assert len(calls) == 1 and parser.done


@pytest.mark.parametrize("block", [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>',  # not JSON
    '<tool_call>\n{"name": "launch_rocket", "arguments": {}}\n</tool_call>',  # not a tool of the request
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',  # never closed
])
def test_a_malformed_call_stays_plain_text(block):
    content, calls, _ = parse(["Sure. ", block])
    assert calls == [] and content == "Sure. " + block


def test_tool_requests_are_checked_field_by_field():
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    request = ToolRequest({"tools": [tool], "tool_choice": "required"})
    assert request.constraint().functions[0][0] == "get_weather"
    assert ToolRequest({"tools": [tool]}).constraint() is None  # auto: free text, parsed afterwards
    named = ToolRequest({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert not named.constraint().parallel
    for body, param in [
        ({"tools": {"name": "x"}}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "strnig"}}}]},
         "tools[0].function.parameters"),
        ({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [tool], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ]:
        with pytest.raises(ApiError) as refused:
            ToolRequest(body)
        assert refused.value.status == 400 and refused.value.param == param, refused.value.message


def test_what_is_not_json_schema_is_refused_by_place():
    for schema, where in [({"type": "text"}, "s.type"), ({"properties": []}, "s.properties"),
                          ({"properties": {"a": {"required": "a"}}}, "s.properties.a.required"), ("x", "s")]:
        with pytest.raises(SchemaError, match=f"^{where.replace('.', '[.]')}"):
            check_schema(schema, "s")


def test_the_ebnf_grammar_refuses_what_it_cannot_enforce_by_name():
    with pytest.raises(SchemaError, match="minimum"):
        schema_grammar({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}})
    with pytest.raises(SchemaError, match="only references into"):
        schema_grammar({"$ref": "http://example.com/schema"})
    grammar = schema_grammar({"type": "object", "properties": {"a": {"type": "string", "maxLength": 4},
                                                               "b": {"type": "integer"}}, "required": ["b"]})
    assert grammar.startswith("root ::= ") and '"\\"a\\": "' in grammar
    calls = tool_call_grammar(Constraint(functions=[("f", {"type": "object", "properties": {},
                                                           "additionalProperties": False})], parallel=False))
    assert '"{\\"name\\": \\"f\\", \\"arguments\\": "' in calls and '"{}"' in calls


class FakeTemplateRuntime:
    """Only what ChatRequest asks of a runtime before generating: render and encode (no model needed to
    check a request's fields)."""

    engine, device, capabilities = "onnxruntime-genai", "cpu", frozenset({"generate", "logits", "constrain"})
    max_prompt_tokens, context_length = 100, 128

    def render(self, messages, think, tools=None):
        return json.dumps([messages, tools])

    def encode(self, text):
        return list(range(min(len(text), 50)))


@pytest.mark.parametrize("extra, param", [
    ({"logit_bias": {"1": 3}}, "logit_bias"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"n": 2}, "n"),
    ({"messages": [{"role": "tool", "content": "sunny"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "hi", "name": "bob"}]}, "messages[0].name"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
        "name": "f", "arguments": "{oops"}}]}]}, "messages[0].tool_calls[0].function.arguments"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}}},
     "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format"),
])
def test_every_bad_field_is_a_400_that_names_it(extra, param):
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(ApiError) as refused:
        ChatRequest(body, FakeTemplateRuntime(), False)
    assert refused.value.status == 400 and refused.value.param == param, refused.value.message
