"""README.md for the device: what this bundle is and the commands that run it there."""

from __future__ import annotations

from edgeqwen.backends import backend_for
from edgeqwen.plan import BuildPlan
from edgeqwen.targets import TargetProfile

MB = 1024 * 1024

INSTALL_NOTES = {
    "arm64": "On Raspberry Pi OS (64-bit) or another arm64 Linux, and on Android in Termux with Python "
    "(`pkg install python`), the runtime installs from PyPI:",
    "x86_64": "On a 64-bit Linux or macOS machine the runtime installs from PyPI:",
}
WINDOWS_NOTE = """On Windows (PowerShell), the same with Windows paths:

```
py -m venv $HOME\\qwen-env; & $HOME\\qwen-env\\Scripts\\Activate.ps1
pip install {requirement}
```
"""


def precision_line(plan: BuildPlan) -> str:
    q = plan.quantization
    grouping = "channel-wise" if q.block_size == -1 else f"block size {q.block_size}"
    line = (f"{q.weights} weights ({grouping}, {'symmetric' if q.symmetric else 'asymmetric'}), "
            f"embeddings {q.embeddings}, lm_head {q.lm_head}")
    return line + backend_for(plan.engine).options_summary(plan)


def device_readme(plan: BuildPlan, target: TargetProfile, requirement: str, bundle_bytes: int, files: list[str]) -> str:
    device_notes = backend_for(plan.engine).readme_notes(plan)  # the CUDA runtime on a Jetson, the NPU's driver
    listing = "\n".join(f"- `{name}`" for name in files)
    windows = WINDOWS_NOTE.format(requirement=requirement) if target.hardware.cpu_arch == "x86_64" else ""
    return f"""# {plan.model.id} for {target.name}

{target.description}.

Built by edgeqwen from `{plan.model.id}` with recipe `{plan.recipe}`: {precision_line(plan)};
context {plan.context_length} tokens, {plan.threads} threads; runtime {plan.engine} on {plan.device}.
Bundle size: {bundle_bytes / MB:.1f} MB.

## Install the runtime (once)

{INSTALL_NOTES.get(target.hardware.cpu_arch, INSTALL_NOTES["x86_64"])}

```
python3 -m venv ~/qwen-env && . ~/qwen-env/bin/activate
pip install {requirement}
```
{windows}{device_notes}
## Run it three ways

The shim needs nothing but the runtime. At every start it checks each file against the sha256 in
`manifest.json` and refuses a changed bundle (`--no-verify` skips that for a faster start).

One answer, streamed:

```
python shim.py "What is the with statement?"
python shim.py --system "Answer in one sentence." --max-new-tokens 100 --temperature 0.7 "What does pathlib do?"
echo "Explain list comprehensions" | python shim.py -
```

A conversation (type `/reset` to start over, `/exit` or Ctrl-D to quit; the oldest turns are
dropped, with a notice, when the conversation outgrows the {plan.context_length}-token context):

```
python shim.py chat --system "You are a helpful assistant."
```

An OpenAI-compatible server on this machine only (`--host 0.0.0.0` to serve the network):

```
python shim.py serve --port 8000
curl http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" \\
  -d '{{"model": "{plan.model.id}", "messages": [{{"role": "user", "content": "Hello"}}]}}'
```

Any OpenAI client works: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")`, with
`stream=True` too. One request runs at a time; `--max-queue` more wait, further ones get HTTP 429.
SIGTERM or Ctrl-C lets running requests finish (`--shutdown-grace` seconds) and exits.

Qwen3 thinking mode: `--think` (in the server: `"chat_template_kwargs": {{"enable_thinking": true}}`);
`--thinking show|hide|separate` shows the thinking, hides it or prints it to stderr; the server
returns it as `reasoning_content`. `python shim.py --help`, `chat --help` and `serve --help` list
every option.

## What is in this folder

{listing}
- `manifest.json`: format version, model identity and weights hash, target, recipe, the resolved
  build plan, tool versions, and the size and sha256 of every file above.
"""
