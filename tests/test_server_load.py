"""The server under load and over time, on loopback: every request gets an HTTP answer, a request that runs
out of time ends like one that ran out of tokens."""

import json

from edgeqwen.bench.server_load import run_round, summary
from tests.servers import RunningServer


def test_a_burst_of_clients_gets_200_or_429_and_never_a_reset(device_python, demo_bundle):
    server = RunningServer(device_python, demo_bundle, "--max-queue", "4")
    try:
        rounds = [run_round(server.host, server.port, clients=60, max_tokens=4, server_pid=server.process.pid)
                  for _ in range(2)]
    finally:
        server.stop()
    result = summary(rounds)
    assert result["network_failures"] == 0, result
    assert result["other_status"] == [] and result["429_without_retry_after"] == 0, result
    assert result["answered_200"] >= 2 * 5 and result["refused_429"] > 0, result
    assert result["requests"] == 120


def test_a_request_past_its_deadline_ends_as_at_max_tokens(device_python, demo_bundle):
    server = RunningServer(device_python, demo_bundle, "--request-timeout", "1")
    try:
        status, raw = server.request("POST", "/v1/chat/completions", json.dumps(
            {"messages": [{"role": "user", "content": "What is a list?"}], "max_tokens": 3000}).encode())
    finally:
        server.stop()
    answer = json.loads(raw)
    assert status == 200 and answer["choices"][0]["finish_reason"] == "length"
    assert 0 < answer["usage"]["completion_tokens"] < 3000
