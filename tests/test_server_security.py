"""The server on a network is secure by default: API keys, CORS, and limits on hostile clients (loopback
only: other clients are told apart by their loopback source address, 127.0.x.y)."""

import http.client
import json
import os
import socket
import subprocess
import time

import pytest

from tests.servers import RunningServer

KEY = "test-key-0123456789"
ORIGIN = "https://app.example"
ASK = json.dumps({"messages": [{"role": "user", "content": "zebra-penguin-42 what is a list?"}],
                  "max_tokens": 3}).encode()


@pytest.fixture(scope="module")
def keyed(device_python, demo_bundle, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("key") / "key.txt"
    key_file.write_text(KEY + "\n")
    server = RunningServer(device_python, demo_bundle, "--api-key-file", key_file, "--cors-origin", ORIGIN,
                           "--client-timeout", "2", "--max-client-connections", "3", quiet=False)
    yield server
    server.process.kill()


def call(server, method, path, body=None, headers=(), source="127.0.0.1"):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60, source_address=(source, 0))
    connection.request(method, path, body=body, headers={"Content-Type": "application/json", **dict(headers)})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data


def test_the_key_is_required_and_checked(keyed):
    assert call(keyed, "GET", "/health")[0] == 200
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-Api-Key": KEY}):
        assert call(keyed, "GET", "/v1/models", headers=headers)[0] == 200
        assert call(keyed, "POST", "/v1/chat/completions", ASK, headers)[0] == 200
    for headers in ({}, {"Authorization": "Bearer wrong-key-000000"}, {"X-Api-Key": KEY[:-1]},
                    {"Authorization": KEY}):
        status, got, data = call(keyed, "POST", "/v1/chat/completions", ASK, headers)
        assert status == 401 and json.loads(data)["error"]["type"] == "authentication_error"
        assert got.get("WWW-Authenticate") == "Bearer"

    from openai import AuthenticationError, OpenAI

    assert OpenAI(base_url=keyed.base_url, api_key=KEY).chat.completions.create(
        model="m", max_tokens=3, messages=[{"role": "user", "content": "hi"}]).choices[0].message.content is not None
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=keyed.base_url, api_key="nope-nope-nope", max_retries=0).models.list()


def test_cors_headers_only_for_allowed_origins(keyed):
    status, headers, _ = call(keyed, "OPTIONS", "/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = call(keyed, "OPTIONS", "/v1/chat/completions", headers={"Origin": "https://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = call(keyed, "POST", "/v1/chat/completions", ASK,
                              {"Origin": "https://evil.example", "Authorization": f"Bearer {KEY}"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers

    streamed = json.dumps({**json.loads(ASK), "stream": True}).encode()
    status, headers, data = call(keyed, "POST", "/v1/chat/completions", streamed,
                                 {"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN and data.endswith(b"data: [DONE]\n\n")
    status, headers, _ = call(keyed, "POST", "/v1/chat/completions", ASK, {"Authorization": f"Bearer {KEY}"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers  # not a browser: no CORS headers


def answered_meanwhile(server, source="127.0.0.9"):
    return call(server, "POST", "/v1/chat/completions", ASK, {"Authorization": f"Bearer {KEY}"}, source)[0] == 200


def test_a_slowloris_client_is_cut_off_while_others_are_answered(keyed):
    slow = socket.create_connection((keyed.host, keyed.port), source_address=("127.0.0.21", 0))
    slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    started, cut = time.monotonic(), False
    try:
        assert answered_meanwhile(keyed)
        while time.monotonic() - started < 10:
            slow.sendall(b"X-Slow: 1\r\n")  # a header line every half second: each read is quick, the whole is not
            time.sleep(0.5)
    except OSError:
        cut = True
    finally:
        slow.close()
    assert cut and time.monotonic() - started < 6


def test_an_oversized_head_is_refused(keyed):
    status, _, data = call(keyed, "GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}",
                                                                "X-Big": "x" * 20000})
    assert status == 431 and json.loads(data)["error"]["code"] == "headers_too_large"
    many = {f"X-H{i}": "1" for i in range(80)}
    assert call(keyed, "GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}", **many})[0] == 431


def test_a_flood_of_connections_from_one_address_is_cut_off(keyed):
    flood = [socket.create_connection((keyed.host, keyed.port), source_address=("127.0.0.33", 0)) for _ in range(3)]
    try:
        time.sleep(0.3)  # the three idle connections are the address's whole allowance
        status, _, data = call(keyed, "POST", "/v1/chat/completions", ASK, {"Authorization": f"Bearer {KEY}"},
                               "127.0.0.33")
        assert status == 429 and json.loads(data)["error"]["code"] == "too_many_connections"
        assert answered_meanwhile(keyed, "127.0.0.34")
    finally:
        for connection in flood:
            connection.close()


def test_the_log_has_neither_the_key_nor_the_prompt(keyed):
    assert answered_meanwhile(keyed)
    keyed.process.terminate()
    log = keyed.process.communicate(timeout=60)[1]
    assert '"POST /v1/chat/completions" 200' in log and "cut off" in log and "refused" in log
    assert KEY not in log and "zebra-penguin" not in log


def start(python, bundle, *args, env=None):
    return subprocess.run([python, bundle / "shim.py", "serve", "--port", "0", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_no_key_means_loopback_only(device_python, demo_bundle):
    refused = start(device_python, demo_bundle, "--host", "0.0.0.0")
    assert refused.returncode == 2 and "--api-key-file" in refused.stderr and "--no-auth" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert start(device_python, demo_bundle, "--cors-origin", "*").returncode == 2  # '*' only with a key
    assert start(device_python, demo_bundle, "--api-key", "short").returncode == 2
    open_door = RunningServer(device_python, demo_bundle, "--host", "0.0.0.0", "--no-auth")
    try:
        assert any("--no-auth" in warning for warning in open_door.warnings)
    finally:
        open_door.stop()
    environment = {**os.environ, "EDGEQWEN_API_KEY": KEY}
    keyed = RunningServer(device_python, demo_bundle, "--host", "0.0.0.0", env=environment)
    try:
        assert call(keyed, "GET", "/v1/models")[0] == 401
        assert call(keyed, "GET", "/v1/models", headers={"X-Api-Key": KEY})[0] == 200
    finally:
        keyed.stop()
