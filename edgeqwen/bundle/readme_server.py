"""The server part of the device README: what each request field does (from the shim's own tables, so the
two cannot disagree), structured output and tool calls, and how to serve on a network safely."""

from __future__ import annotations

from edgeqwen.shim.api import CHAT_FIELDS, COMPLETION_FIELDS, REFUSED_EXAMPLES
from edgeqwen.shim.security import KEY_ENVIRONMENT, MAX_HEAD_BYTES, MAX_HEAD_LINES


def field_table(fields: dict[str, str]) -> str:
    return "| field | what the server does |\n|---|---|\n" + "\n".join(
        f"| `{name}` | {what} |" for name, what in fields.items())


def server_section(model_id: str, engine: str) -> str:
    logprobs_note = ("" if engine == "onnxruntime-genai" else
                     "\nOn OpenVINO, logprobs come from a different session than constrained decoding and the "
                     "penalties, so `logprobs` together with `response_format`, `tools` under `required` or a "
                     "named function, or a penalty is a 400 that says so; on the NPU there are no logprobs.\n")
    return f"""## The server's API

`POST /v1/chat/completions`, `POST /v1/completions` (the prompt continued as plain text), `GET /v1/models`,
`GET /health`. Every field below is honoured; any other field is refused with HTTP 400 naming it (for
example {", ".join(f"`{name}`" for name in REFUSED_EXAMPLES[:6])}): nothing is accepted and ignored.

**/v1/chat/completions**

{field_table(CHAT_FIELDS)}

**/v1/completions**

{field_table(COMPLETION_FIELDS)}
{logprobs_note}
Structured output: `response_format` `json_schema` (or `python shim.py --json-schema FILE "..."`) is
enforced by the runtime's constrained decoding, so a finished answer (`finish_reason` `stop`) always
parses and validates; objects get no keys beyond those their schema lists. Give strings a `maxLength`:
a small model may otherwise write until `max_tokens` (`finish_reason` `length`, cut JSON).

```python
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
trip = {{"type": "object", "properties": {{"city": {{"type": "string", "maxLength": 20}}, "days": {{"type": "integer"}}}},
        "required": ["city", "days"]}}
answer = client.chat.completions.create(model="{model_id}", messages=[{{"role": "user", "content": "Plan a trip"}}],
    response_format={{"type": "json_schema", "json_schema": {{"name": "trip", "schema": trip, "strict": True}}}})
```

Tool calls, Qwen's way: the chat template lists `tools` in the system turn, the model answers
`<tool_call>{{"name": ..., "arguments": ...}}</tool_call>`, and the server returns them as `tool_calls`
with `finish_reason` `tool_calls` (streamed: an id and name first, then the arguments in pieces, once
each call is complete). `tool_choice` `required` or a named function is enforced by grammar: the call
always parses and its arguments validate against the function's `parameters`. Under `auto`, a call the
model garbles stays in `content` as text. Send the result back as a `tool` message with its
`tool_call_id`. A constrained answer starts at its first token, so it has no thinking.

## Serving on a network

By default the server listens on this machine only. To serve other machines, set an API key; the
server refuses to listen beyond loopback without one (`--no-auth` overrides that, with a warning at
every start):

```
python -c "import secrets; print(secrets.token_urlsafe(32))" > key.txt && chmod 600 key.txt
python shim.py serve --host 0.0.0.0 --port 8000 --api-key-file key.txt
```

Clients send `Authorization: Bearer KEY` (the OpenAI client's `api_key=`) or `X-Api-Key: KEY`; every
endpoint but `/health` needs it. The key can also come from `${KEY_ENVIRONMENT}` or `--api-key` (which
other users can see in `ps`). Web pages: `--cors-origin https://your.app` (repeatable; `*` only with a key)
answers browsers' preflight and adds the CORS headers; a browser request from any other origin gets 403.

What the server defends against:
- callers on the network without the key (401; keys compared in constant time, never logged);
- web pages from other origins (403, no CORS headers);
- slow or oversized requests: the request line and headers are at most {MAX_HEAD_BYTES // 1024} KiB in
  {MAX_HEAD_LINES} lines (431), the whole request must arrive within `--client-timeout` seconds (30),
  and a client that stops reading a stream is dropped after as long;
- floods: `--max-client-connections` (16) per client address (429), `--max-connections` (512) in all,
  `--max-queue` waiting requests (429 with `Retry-After`), `--request-timeout` (300 s) per request;
- the log holds addresses, paths and status codes, never prompt text (unless `--log-prompts`).

What it does not do: TLS. Anyone on the path can read a plain-HTTP key and the answers. Put the server
behind a reverse proxy that terminates TLS, with the server on loopback, for example Caddy:

```
# /etc/caddy/Caddyfile
qwen.example.lan {{
    reverse_proxy 127.0.0.1:8000 {{
        flush_interval -1    # stream tokens as they come
    }}
}}
```

Run it as an unprivileged user, for example with systemd (`/etc/systemd/system/qwen.service`):

```
[Unit]
Description=Qwen on this device (edgeqwen bundle)
After=network-online.target

[Service]
User=qwen
WorkingDirectory=/opt/qwen-bundle
ExecStart=/opt/qwen-venv/bin/python shim.py serve --port 8000 --api-key-file /etc/qwen/key.txt
Restart=on-failure
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
```

(`useradd --system qwen`, the key file owned by `qwen` with mode 600; add `--host 0.0.0.0` only if there
is no proxy in front.) Behind a proxy every client arrives from the proxy's address, so the
per-address limit is the proxy's: raise `--max-client-connections` (or 0 for none) and let the proxy
limit its clients.
"""
