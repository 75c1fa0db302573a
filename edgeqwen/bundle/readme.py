"""README.md for the device: what this bundle is and the commands that run it there."""

from __future__ import annotations

from edgeqwen.backends import backend_for
from edgeqwen.bundle.readme_server import server_section
from edgeqwen.device.install import InstallPath, install_paths
from edgeqwen.fit import MemoryEstimate, device_ram_gb, ram_variant_fits
from edgeqwen.plan import BuildPlan
from edgeqwen.targets import TargetProfile

MB = 1024 * 1024

def precision_line(plan: BuildPlan) -> str:
    q = plan.quantization
    grouping = "channel-wise" if q.block_size == -1 else f"block size {q.block_size}"
    line = (f"{q.weights} weights ({grouping}, {'symmetric' if q.symmetric else 'asymmetric'}), "
            f"embeddings {q.embeddings}, lm_head {q.lm_head}")
    return line + backend_for(plan.engine).options_summary(plan)


def install_section(path: InstallPath) -> str:
    """One install path: the commands the device check ran (or, marked so, one it could not run)."""
    ran = ("*The device check installed this requirement for the device's platform and ran the bundle with it "
           "before the bundle shipped (device_check.json).*"
           if path.checked else "*Not run where this bundle was built.*")
    language = "kotlin" if path.name == "android-app" else ""
    note = f"{path.note}\n\n" if path.note else ""
    then = f"\nThen `{path.run_command}` in this folder.\n" if path.requirement else ""
    return f"### {path.title}\n\n{ran} {note}```{language}\n" + "\n".join(path.commands) + f"\n```\n{then}"


def fit_section(plan: BuildPlan, target: TargetProfile, memory: MemoryEstimate) -> str:
    """Which of the device's RAM sizes the bundle fits, at the profile's share of the RAM."""
    hardware = target.hardware
    ram_gb = device_ram_gb(plan, hardware)
    share = memory.budget_bytes / (ram_gb * 1024 * MB)
    rows = []
    for row in ram_variant_fits(memory, ram_gb, hardware.ram_variants_gb):
        if row["fits"]:
            verdict = "fits"
        elif row["max_context"] > 0:
            verdict = (f"too small at {plan.context_length} tokens; a {row['max_context']}-token context would fit "
                       f"(`--context-length {row['max_context']}`)")
        else:
            verdict = "too small: the weights and the runtime alone are over its budget"
        rows.append(f"| {row['ram_gb']:g} GB | {row['budget_mb']} MB | {verdict} |")
    table = "\n".join(rows)
    return f"""## Which devices it fits

On the device it needs about {memory.total_bytes / MB:.0f} MB at its {plan.context_length}-token context
({memory.weights_bytes / MB:.0f} MB of weights, {memory.kv_cache_bytes / MB:.0f} MB of KV cache,
{memory.runtime_bytes / MB:.0f} MB for the runtime). The profile gives it {memory.budget_bytes / MB:.0f} MB of the
{ram_gb:g} GB device ({share:.0%} of its RAM; the rest is the system's); at the same share:

| RAM | budget | |
|---|---|---|
{table}

"""


def device_readme(plan: BuildPlan, target: TargetProfile, requirement: str, bundle_bytes: int, files: list[str],
                  memory: MemoryEstimate) -> str:
    device_notes = backend_for(plan.engine).readme_notes(plan)  # the NPU's driver and what was verified for it
    listing = "\n".join(f"- `{name}`" for name in files)
    installs = "\n".join(install_section(path) for path in install_paths(plan, target))
    return f"""# {plan.model.id} for {target.name}

{target.description}.

Built by edgeqwen from `{plan.model.id}` with recipe `{plan.recipe}`: {precision_line(plan)};
context {plan.context_length} tokens, {plan.threads} threads; runtime {plan.engine} on {plan.device}.
Bundle size: {bundle_bytes / MB:.1f} MB.

{fit_section(plan, target, memory)}## Install the runtime (once)

The runtime is `pip install {requirement}`; these are the ways to get it onto the device.

{installs}{device_notes}
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

An OpenAI-compatible server on this machine only (to serve the network, see "Serving on a network"):

```
python shim.py serve --port 8000
curl http://127.0.0.1:8000/v1/chat/completions -H "Content-Type: application/json" \\
  -d '{{"model": "{plan.model.id}", "messages": [{{"role": "user", "content": "Hello"}}]}}'
```

Any OpenAI client works: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")`, with
`stream=True` too. One request runs at a time; `--max-queue` more wait, further ones get HTTP 429
with `Retry-After`. SIGTERM or Ctrl-C lets running requests finish (`--shutdown-grace` seconds) and exits.

Qwen3 thinking mode: `--think` (in the server: `"chat_template_kwargs": {{"enable_thinking": true}}`);
`--thinking show|hide|separate` shows the thinking, hides it or prints it to stderr; the server
returns it as `reasoning_content`. `python shim.py --help`, `chat --help` and `serve --help` list
every option.

{server_section(plan.model.id, plan.engine)}
## What is in this folder

{listing}
- `manifest.json`: format version, model identity and weights hash, target, recipe, the resolved
  build plan, tool versions, the device check's verdict, and the size and sha256 of every file above.

`device_check.json` says how this bundle ran on its target's instruction set before it was written:
where (an emulated core, or this architecture natively), the runtime packages actually installed,
the commands, the shim's answer and server, and the drift measured on the device's kernels; what
could not be run there (an NPU, a GPU) is listed as not run.
"""
