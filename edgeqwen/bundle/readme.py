"""README.md for the device: what this bundle is and the commands that run it there."""

from __future__ import annotations

from edgeqwen.plan import BuildPlan
from edgeqwen.targets import TargetProfile

MB = 1024 * 1024

INSTALL_NOTES = {
    "arm64": "On Raspberry Pi OS (64-bit) or another arm64 Linux, and on Android in Termux with Python, "
    "the runtime installs from PyPI:",
    "x86_64": "On a 64-bit Linux, Windows or macOS machine the runtime installs from PyPI:",
}


def device_readme(plan: BuildPlan, target: TargetProfile, requirement: str, bundle_bytes: int, files: list[str]) -> str:
    q = plan.quantization
    gpu_note = ""
    if plan.device == "cuda":
        gpu_note = (
            "\nOn a Jetson, install the CUDA build of the runtime that matches your JetPack "
            "(onnxruntime-genai-cuda; NVIDIA's Jetson wheels for JetPack 6). `--cpu` runs the same "
            "bundle on the CPU for a quick check.\n"
        )
    listing = "\n".join(f"- `{name}`" for name in files)
    return f"""# {plan.model.id} for {target.name}

{target.description}.

Built by edgeqwen from `{plan.model.id}` with recipe `{plan.recipe}`: {q.weights} weights
(block size {q.block_size}, {"symmetric" if q.symmetric else "asymmetric"}), embeddings {q.embeddings},
lm_head {q.lm_head}, context {plan.context_length} tokens, {plan.threads} threads.
Bundle size: {bundle_bytes / MB:.1f} MB.

## Install the runtime (once)

{INSTALL_NOTES.get(target.hardware.cpu_arch, INSTALL_NOTES["x86_64"])}

```
python3 -m venv ~/qwen-env && . ~/qwen-env/bin/activate
pip install {requirement}
```
{gpu_note}
## Run

```
python shim.py "What is the with statement?"
python shim.py --system "Answer in one sentence." --max-new-tokens 100 "What does pathlib do?"
echo "Explain list comprehensions" | python shim.py -
```

`python shim.py --help` lists the options (sampling, `--think` for Qwen3 thinking mode, `--raw`).
The shim needs nothing but the runtime: it reads `manifest.json`, applies the model's chat template
and streams the answer.

## What is in this folder

{listing}
- `manifest.json`: format version, model identity and weights hash, target, recipe, the resolved
  build plan, tool versions, and the size and sha256 of every file above.
"""
