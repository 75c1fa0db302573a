"""The bundle's shim on the device: one-shot, chat and the OpenAI-compatible server.

Everything here runs the demo bundle's shim with a Python that has only the runtime installed (a fresh
virtualenv), and the server is answered by the official `openai` client.
"""

import http.client
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.servers import RunningServer

EMPTY_THINKING = "<think>\n\n</think>\n\n"


def shim(python, bundle, *args, **kwargs):
    kwargs.setdefault("timeout", 300)
    return subprocess.run([python, bundle / "shim.py", *args], capture_output=True, text=True, **kwargs)


def english(text):
    words = text.split()
    return len(words) >= 5 and sum(w.strip('.,:;"()').isalpha() for w in words) >= len(words) // 2


def test_one_shot_answers_in_english(device_python, demo_bundle):
    answer = shim(device_python, demo_bundle, "What is the pathlib module for?", "--max-new-tokens", "40")
    assert answer.returncode == 0, answer.stderr
    assert english(answer.stdout), answer.stdout


def test_thinking_mode_changes_the_prompt_as_the_template_says(device_python, demo_bundle):
    off = shim(device_python, demo_bundle, "--print-prompt", "hi")
    on = shim(device_python, demo_bundle, "--print-prompt", "--think", "hi")
    assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
    assert off.stdout.endswith("<|im_start|>assistant\n" + EMPTY_THINKING)
    assert on.stdout.endswith("<|im_start|>assistant\n") and "<think>" not in on.stdout
    system = shim(device_python, demo_bundle, "--print-prompt", "--system", "Be brief.", "hi")
    assert system.stdout.startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_chat_through_stdin_keeps_history_and_drops_the_oldest_turns(device_python, demo_bundle):
    turns = "What is a list?\nAnd a tuple?\n/exit\n"
    chat = shim(device_python, demo_bundle, "chat", "--max-new-tokens", "12", input=turns)
    assert chat.returncode == 0, chat.stderr
    assert len([line for line in chat.stdout.splitlines() if line.strip()]) >= 2

    long_turn = "word " * 1200 + "\n"  # four of these overflow the 4096-token context
    chat = shim(device_python, demo_bundle, "chat", "--max-new-tokens", "4", input=long_turn * 5)
    assert chat.returncode == 0, chat.stderr
    assert "dropped the oldest turn" in chat.stderr and "Traceback" not in chat.stderr


THREADS_STARTED = """
import importlib.util, json, os, sys
os.sched_setaffinity(0, {0})  # a machine (or container) with one CPU
spec = importlib.util.spec_from_file_location("shim", os.path.join(sys.argv[1], "shim.py"))
shim = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shim)
before = len(os.listdir("/proc/self/task"))
runtime = shim.OrtGenaiRuntime(sys.argv[1], "cpu")
print(len(os.listdir("/proc/self/task")) - before)
"""


def test_the_targets_thread_count_is_capped_at_the_cpus_the_shim_may_use(demo_bundle):
    """A bundle for the Pi's 4 cores on fewer CPUs: 4 spinning threads on 2 CPUs decode ~2.5x slower here."""
    genai = json.loads((demo_bundle / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["session_options"]["intra_op_num_threads"] == 4
    started = subprocess.run([sys.executable, "-c", THREADS_STARTED, demo_bundle], capture_output=True, text=True,
                             timeout=300)
    assert started.returncode == 0, started.stderr
    assert int(started.stdout.strip()) < 3, "4 intra-op threads would start 3 pool workers"


def test_a_tampered_bundle_is_refused_by_hash(device_python, demo_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(demo_bundle, copy)
    with open(copy / "tokenizer_config.json", "a") as f:
        f.write(" ")
    refused = shim(device_python, copy, "hi", "--max-new-tokens", "2")
    assert refused.returncode == 2
    assert "tokenizer_config.json does not match its sha256" in refused.stderr and "Traceback" not in refused.stderr
    assert shim(device_python, copy, "--no-verify", "hi", "--max-new-tokens", "2").returncode == 0


@pytest.fixture(scope="module")
def server(device_python, demo_bundle):
    running = RunningServer(device_python, demo_bundle, "--max-queue", "0", "--max-body-bytes", "4096")
    yield running
    if running.process.poll() is None:
        running.process.kill()


def test_openai_client_lists_models_completes_and_streams(server):
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key="unused")
    assert [m.id for m in client.models.list()] == ["edgeqwen/demo-qwen3-4l-h128"]

    completion = client.chat.completions.create(
        model="edgeqwen/demo-qwen3-4l-h128", max_tokens=30,
        messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is pathlib?"}],
    )
    choice = completion.choices[0]
    assert english(choice.message.content), choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 10 and 0 < completion.usage.completion_tokens <= 30
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens

    chunks = list(client.chat.completions.create(
        model="edgeqwen/demo-qwen3-4l-h128", max_tokens=20, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "What is pathlib?"}],
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert english(text), text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and 0 < chunks[-1].usage.completion_tokens <= 20
    # Greedy decoding streams exactly what the whole answer would be.
    whole = client.chat.completions.create(model="x", max_tokens=20,
                                           messages=[{"role": "user", "content": "What is pathlib?"}])
    assert whole.choices[0].message.content == text.strip()


@pytest.mark.parametrize(
    "body, status, expected",
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({"model": "x"}).encode(), 400, "'messages' is required"),
        (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}).encode(), 400, "messages[0].role must be one of"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}], "temperature": 7}).encode(), 400,
         "'temperature' = 7 is outside"),
        (json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode(), 413, "the limit is 4096"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(server, body, status, expected):
    got, raw = server.request("POST", "/v1/chat/completions", body)
    error = json.loads(raw)["error"]
    assert got == status and expected in error["message"] and error["type"]


def test_a_full_queue_answers_429(server):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
    body = {"messages": [{"role": "user", "content": "What is pathlib?"}], "max_tokens": 1500, "stream": True}
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
    streaming = connection.getresponse()
    assert streaming.status == 200 and streaming.readline().startswith(b"data: ")  # it is running now
    status, raw = server.request("POST", "/v1/chat/completions",
                                 json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode())
    assert status == 429 and json.loads(raw)["error"]["code"] == "queue_full"
    connection.close()  # the server notices, stops that generation and frees the slot
    for _ in range(100):
        status, _ = server.request("POST", "/v1/chat/completions",
                                   json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode())
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200


def test_overlong_prompt_and_clamped_max_tokens(device_python, demo_bundle):
    server = RunningServer(device_python, demo_bundle)
    try:
        long = {"messages": [{"role": "user", "content": "word " * 5000}]}
        status, raw = server.request("POST", "/v1/chat/completions", json.dumps(long).encode())
        error = json.loads(raw)["error"]
        assert status == 400 and error["code"] == "context_length_exceeded" and "at most 4095" in error["message"]
        status, raw = server.request("POST", "/v1/models/none", None)
        assert status == 404
    finally:
        code, err = server.stop()
    assert code == 0 and "stopped" in err


def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(device_python, demo_bundle):
    server = RunningServer(device_python, demo_bundle, "--shutdown-grace", "1")
    connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
    body = {"messages": [{"role": "user", "content": "What is pathlib?"}], "max_tokens": 3000, "stream": True}
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body),
                       headers={"Content-Type": "application/json"})
    streaming = connection.getresponse()
    assert streaming.readline().startswith(b"data: ")
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    rest = streaming.read().decode()
    assert rest.rstrip().endswith("data: [DONE]")  # cut short after the grace period, but properly ended
    code = server.process.wait(timeout=60)
    assert code == 0 and time.monotonic() - started < 30
    assert "stopped" in server.process.stderr.read()


def test_thinking_is_split_from_the_answer_even_when_a_tag_arrives_in_pieces():
    from edgeqwen.shim.generation import ThinkingSplitter

    splitter = ThinkingSplitter()
    pieces = ["<th", "ink>", "Let me see", "</thi", "nk>\n\n", "It is ", "42."]
    parts = [part for piece in pieces for part in splitter.feed(piece)]
    thinking = "".join(text for kind, text in parts if kind == "thinking")
    answer = "".join(text for kind, text in parts if kind == "answer")
    assert thinking == "Let me see" and answer == "\n\nIt is 42."
    assert ThinkingSplitter().feed("no tags < here") == [("answer", "no tags < here")]


def test_edgeqwen_serve_runs_the_same_shim(demo_bundle):
    server = RunningServer(sys.executable, demo_bundle, via_cli=True)
    try:
        status, raw = server.request("GET", "/v1/models")
        assert status == 200 and json.loads(raw)["data"][0]["id"] == "edgeqwen/demo-qwen3-4l-h128"
    finally:
        code, err = server.stop()
    assert code == 0 and "stopped" in err


@pytest.mark.parametrize("mode, shown, to_stderr", [("show", "Hmm.42", ""), ("hide", "42", ""), ("separate", "42", "Hmm.")])
def test_thinking_is_shown_hidden_or_separated_on_the_terminal(capsys, mode, shown, to_stderr):
    from edgeqwen.shim.terminal import terminal_printer

    on_text = terminal_printer(mode)
    for piece in ["<think>", "Hmm.", "</think>", "42"]:
        assert on_text(piece) is False  # never asks to stop
    out, err = capsys.readouterr()
    assert (out, err) == (shown, to_stderr)


def test_an_unknown_bundle_format_is_refused(device_python, demo_bundle, tmp_path):
    copy = tmp_path / "future"
    shutil.copytree(demo_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    refused = shim(device_python, copy, "hi")
    assert refused.returncode == 2 and "format_version 99 is not one this shim knows" in refused.stderr
