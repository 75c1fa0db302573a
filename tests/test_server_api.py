"""The server's OpenAI API beyond plain chat, on both runtimes, answered by the official `openai` client:
structured output, Qwen tool calls, stop sequences, logprobs, seeds and the legacy completions endpoint.

The ONNX Runtime GenAI bundle runs in a virtualenv with only that runtime (as on a device); the OpenVINO
bundle (built for the Intel NPU) runs on this host's CPU.
"""

import json
import sys

import jsonschema
import pytest

from tests.servers import RunningServer

TRIP = {"type": "object", "additionalProperties": False, "required": ["city", "days", "tags"],
        "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer"},
                       "tags": {"type": "array", "items": {"enum": ["sea", "hills", "food"]}, "maxItems": 3},
                       "note": {"type": ["string", "null"], "maxLength": 8}}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city — 天气",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
CLOCK = {"type": "function", "function": {"name": "current_time", "description": "The time now",
                                          "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


# The OpenVINO half (a demo NPU build of its own, about 2 minutes in all) runs in the slow suite.
@pytest.fixture(scope="module", params=["onnxruntime-genai", pytest.param("openvino", marks=pytest.mark.slow)])
def server(request):
    if request.param == "onnxruntime-genai":
        python, bundle, extra = request.getfixturevalue("device_python"), request.getfixturevalue("demo_bundle"), []
    else:
        python, bundle, extra = sys.executable, request.getfixturevalue("demo_npu_bundle"), ["--device", "cpu"]
    running = RunningServer(python, bundle, *extra)
    running.engine = request.param
    yield running
    running.process.kill()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_json_schema_output_always_validates(client):
    for prompt in ("Plan a trip to the sea as JSON.", "Give me JSON about a city.", "hi"):
        answer = client.chat.completions.create(
            model="m", max_tokens=120, messages=[{"role": "user", "content": prompt}],
            response_format={"type": "json_schema", "json_schema": {"name": "trip", "schema": TRIP, "strict": True}})
        text = answer.choices[0].message.content
        assert answer.choices[0].finish_reason == "stop", text
        jsonschema.validate(json.loads(text), TRIP)
    anything = client.chat.completions.create(model="m", max_tokens=200, messages=ASK,
                                              response_format={"type": "json_object"})
    if anything.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(anything.choices[0].message.content), dict)


def test_required_tool_choice_returns_a_valid_call_plain_and_streamed(client):
    answer = client.chat.completions.create(model="m", max_tokens=200, messages=ASK, tools=[WEATHER, CLOCK],
                                            tool_choice="required")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls, choice.message
    for call in choice.message.tool_calls:
        schema = {"get_weather": WEATHER, "current_time": CLOCK}[call.function.name]["function"]["parameters"]
        jsonschema.validate(json.loads(call.function.arguments), schema)
        assert call.id.startswith("call_") and call.type == "function"

    calls, reasons = {}, []
    for chunk in client.chat.completions.create(model="m", max_tokens=200, messages=ASK, tools=[WEATHER, CLOCK],
                                                tool_choice="required", stream=True):
        delta = chunk.choices[0].delta
        reasons.append(chunk.choices[0].finish_reason)
        for piece in delta.tool_calls or ():
            entry = calls.setdefault(piece.index, {"id": piece.id, "name": piece.function.name, "arguments": ""})
            entry["arguments"] += piece.function.arguments or ""
    assert reasons[-1] == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())] == \
        [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert all(c["id"] for c in calls.values())


def test_a_named_function_is_the_one_called(client):
    answer = client.chat.completions.create(model="m", max_tokens=100, messages=ASK, tools=[WEATHER, CLOCK],
                                            tool_choice={"type": "function", "function": {"name": "current_time"}})
    calls = answer.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("current_time", {})]


def test_a_tool_result_round_trip_renders_and_continues(client):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "celsius"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"sky": "sunny", "celsius": 21})},
    ]
    answer = client.chat.completions.create(model="m", max_tokens=30, messages=history, tools=[WEATHER],
                                            tool_choice="none")
    without_result = client.chat.completions.create(model="m", max_tokens=1, messages=ASK, tool_choice="none",
                                                    tools=[WEATHER])
    assert answer.choices[0].message.content and answer.choices[0].message.tool_calls is None
    # The call and its result are in the prompt, as the template writes them (tool_choice none: no tool list).
    assert answer.usage.prompt_tokens > without_result.usage.prompt_tokens + 25


def test_stop_cuts_the_answer_before_the_stop_text(client):
    free = client.chat.completions.create(model="m", max_tokens=40, messages=[{"role": "user", "content":
                                                                               "What is a list?"}])
    text = free.choices[0].message.content
    word = next(w for w in text.split()[2:] if w.isalpha() and len(w) > 3)
    cut = client.chat.completions.create(model="m", max_tokens=40, stop=[word, "zzz"],
                                         messages=[{"role": "user", "content": "What is a list?"}])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[:text.index(word)].strip()
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="m", max_tokens=40, stop=word, stream=True, messages=[{"role": "user", "content": "What is a list?"}]))
    assert word not in streamed and streamed.strip() == cut.choices[0].message.content


def test_logprobs_come_back_and_their_top_entry_is_the_greedy_token(client):
    answer = client.chat.completions.create(model="m", max_tokens=12, logprobs=True, top_logprobs=3,
                                            messages=[{"role": "user", "content": "What is a tuple?"}])
    entries = answer.choices[0].logprobs.content
    assert len(entries) == answer.usage.completion_tokens
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token and entry.top_logprobs[0].logprob == entry.logprob
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
    assert "".join(e.token for e in entries).strip() == answer.choices[0].message.content


def test_a_seed_reproduces_a_sampled_answer(client):
    def sampled(seed):
        return client.chat.completions.create(model="m", max_tokens=20, temperature=1.0, seed=seed,
                                              messages=[{"role": "user", "content": "Tell me about sets."}]
                                              ).choices[0].message.content

    first = sampled(7)
    assert sampled(7) == first
    assert any(sampled(seed) != first for seed in (8, 9, 10))


def test_the_legacy_completions_endpoint(client):
    answer = client.completions.create(model="m", prompt="The os module", max_tokens=10, logprobs=2)
    choice = answer.choices[0]
    assert choice.text and choice.finish_reason in ("stop", "length")
    assert "".join(choice.logprobs.tokens) == choice.text and len(choice.logprobs.top_logprobs[0]) == 2
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="m", prompt="The os module",
                                                                           max_tokens=10, stream=True))
    assert streamed == choice.text


def test_what_a_runtime_cannot_do_is_refused_by_name(server, client):
    from openai import BadRequestError

    if server.engine == "onnxruntime-genai":
        with pytest.raises(BadRequestError, match="presence penalty"):
            client.chat.completions.create(model="m", max_tokens=4, messages=ASK, presence_penalty=0.5)
        with pytest.raises(BadRequestError, match="constrained decoding cannot use this schema"):
            client.chat.completions.create(model="m", max_tokens=4, messages=ASK, response_format={
                "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
                    "a": {"$ref": "#/$defs/missing"}}}}})
    else:
        penalized = client.chat.completions.create(model="m", max_tokens=4, messages=ASK, presence_penalty=0.5)
        assert penalized.choices[0].message.content
        with pytest.raises(BadRequestError, match="minimum"):
            client.chat.completions.create(model="m", max_tokens=4, messages=ASK, response_format={
                "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
                    "n": {"type": "integer", "minimum": 1}}}}})
        with pytest.raises(BadRequestError, match="in one generation"):
            client.chat.completions.create(model="m", max_tokens=4, messages=ASK, logprobs=True,
                                           response_format={"type": "json_object"})


@pytest.mark.parametrize("body, param", [
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', None),  # Latin-1, not UTF-8
    (json.dumps({"messages": ASK, "tools": [{"type": "function", "function": {"name": 3}}]}).encode(),
     "tools[0].function.name"),
    (json.dumps({"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {
        "name": "nope"}}}).encode(), "tool_choice"),
    (json.dumps({"messages": ASK, "stop": ["a", "b", "c", "d", "e"]}).encode(), "stop"),
    (json.dumps({"messages": ASK, "frobnicate": True}).encode(), "frobnicate"),
])
def test_malformed_requests_get_a_400_naming_the_field(server, body, param):
    status, raw = server.request("POST", "/v1/chat/completions", body)
    error = json.loads(raw)["error"]
    assert status == 400 and error["param"] == param and error["message"], error


def test_the_one_shot_cli_answers_with_json_valid_against_a_schema(device_python, demo_bundle, tmp_path):
    import subprocess

    schema = tmp_path / "trip.json"
    schema.write_text(json.dumps(TRIP))
    answer = subprocess.run([device_python, demo_bundle / "shim.py", "--json-schema", schema, "Plan a trip",
                             "--max-new-tokens", "120"], capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stderr
    jsonschema.validate(json.loads(answer.stdout), TRIP)
    schema.write_text('{"type": "objet"}')
    refused = subprocess.run([device_python, demo_bundle / "shim.py", "--json-schema", schema, "hi"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "trip.json.type: 'objet' is not a JSON Schema type" in refused.stderr
