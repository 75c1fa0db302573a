"""End to end on tiny Qwen2 and Qwen3 checkpoints: real Olive, real ONNX Runtime GenAI builder, real runtime.

The target matrix is read from targets/: a new ONNX Runtime GenAI profile is built and run here without
any change to this file.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime_genai as og
import pytest
from onnx import helper

from edgeqwen.bundle.manifest import FORMAT_VERSION
from edgeqwen.hashing import sha256_file
from edgeqwen.targets import load_all_targets

ORT_TARGETS = [t for t in load_all_targets() if t.runtime.engine == "onnxruntime-genai"]
FAMILIES = ("qwen2", "qwen3")


def generate(bundle, prompt_ids, new_tokens=6, on_cpu=True):
    config = og.Config(str(bundle))
    if on_cpu:
        config.clear_providers()  # GPU bundles are checked on this machine's CPU
    model = og.Model(config)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt_ids) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt_ids)
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


def graph_summary(bundle):
    model = onnx.load(bundle / "model.onnx", load_external_data=False)
    summary = {}
    for node in model.graph.node:
        if node.op_type in ("MatMulNBits", "GatherBlockQuantized", "Gather"):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            summary.setdefault(node.op_type, []).append((node.name, attrs.get("bits"), attrs.get("block_size")))
    return summary, [o.name for o in model.graph.output]


def check_manifest(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    on_disk = sorted(p.name for p in bundle.iterdir() if p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    assert manifest["drift"]["passed"] and {"drift.json", "drift.md", "drift.png"} <= set(on_disk)
    for name, entry in manifest["files"].items():
        assert entry["size"] == (bundle / name).stat().st_size
        assert entry["sha256"] == sha256_file(bundle / name)
    for tool in ("olive-ai", "onnxruntime-genai", "transformers", "torch", "edgeqwen"):
        assert manifest["tools"][tool] not in ("", "not installed")
    assert {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json", "shim.py", "README.md"} <= set(
        on_disk
    )
    return manifest


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", ORT_TARGETS, ids=lambda t: t.name)
def test_build_and_generate(cli, tiny_models, tmp_path, target, family):
    bundle = tmp_path / "bundle"
    result = cli("build", "--model", tiny_models[family], "--target", target.name, "--out", bundle, "--json",
                 "--eval-tokens", "256")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    manifest = check_manifest(bundle)
    assert manifest["plan"]["target"] == target.name and manifest["plan_hash"] == report["plan_hash"]
    assert manifest["model"]["weights_sha256"] == manifest["plan"]["model"]["weights_sha256"]

    # The decoder layers were quantized on the checkpoint, tensor by tensor (Olive's RTN, streamed), not by the
    # builder over an FP32 graph; the builder quantized only the lm_head.
    assert manifest["engine"]["streamed_rtn"]["quantized_linears"] == 7 * 2  # q k v o gate up down, 2 layers
    assert [p["type"] for p in manifest["engine"]["olive_passes"]] == ["ModelBuilder"]
    # The graph holds what the plan asked for: INT4 blocks of the planned size, one shared INT4 table.
    plan_q = manifest["plan"]["quantization"]
    ops, outputs = graph_summary(bundle)
    assert "logits" in outputs
    assert {(bits, block) for _, bits, block in ops["MatMulNBits"]} == {(4, plan_q["block_size"])}
    assert [(bits, block) for _, bits, block in ops["GatherBlockQuantized"]] == [(4, plan_q["block_size"])]
    assert "Gather" not in ops or all("embed" not in name for name, _, _ in ops["Gather"])
    # A float embedding alone would be 151,936 x 128 x 4 bytes = 78 MB; the shared INT4 table is ~12 MB.
    assert (bundle / "model.onnx.data").stat().st_size < 16e6

    genai = json.loads((bundle / "genai_config.json").read_text())
    assert genai["model"]["context_length"] == manifest["plan"]["context_length"]
    providers = genai["model"]["decoder"]["session_options"]["provider_options"]
    assert ("cuda" in json.dumps(providers)) == (target.runtime.device == "cuda")

    tokens = generate(bundle, [151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198])
    assert len(tokens) == 6 and all(0 <= t < 151936 for t in tokens)


def test_int8_bundle(cli, tiny_models, tmp_path):
    bundle = tmp_path / "int8"
    result = cli("build", "--model", tiny_models["qwen3"], "--target", "x86-64-laptop", "--precision", "int8",
                 "--out", bundle, "--eval-tokens", "256")
    assert result.code == 0, result.err
    check_manifest(bundle)
    ops, outputs = graph_summary(bundle)
    assert "logits" in outputs  # Olive's RTN pass renames it; the backend restores it
    assert {bits for _, bits, _ in ops["MatMulNBits"]} == {8}
    assert [bits for _, bits, _ in ops["GatherBlockQuantized"]] == [8]
    assert len(generate(bundle, [9707, 1879])) == 6


def test_fp32_bundle_matches_pytorch(cli, tiny_models, tmp_path):
    """The export path itself is exact: an fp32 bundle reproduces transformers' logits."""
    import torch
    from transformers import AutoModelForCausalLM

    bundle = tmp_path / "fp32"
    result = cli("build", "--model", tiny_models["qwen2"], "--target", "x86-64-laptop", "--precision", "fp32",
                 "--out", bundle, "--eval-tokens", "256")
    assert result.code == 0, result.err
    prompt = [9707, 11, 1879, 0, 576, 374]
    model = og.Model(str(bundle))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=16)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    ort_logits = np.asarray(generator.get_logits()).reshape(-1)[-151936:]
    reference = AutoModelForCausalLM.from_pretrained(tiny_models["qwen2"], dtype=torch.float32)
    with torch.no_grad():
        torch_logits = reference(torch.tensor([prompt])).logits[0, -1].numpy()
    assert np.abs(ort_logits - torch_logits).max() < 1e-3


def test_shim_runs_in_a_subprocess_and_refuses_overlong_prompts(cli, tiny_models, tmp_path):
    bundle = tmp_path / "pi"
    result = cli("build", "--model", tiny_models["qwen3"], "--target", "raspberry-pi-5", "--context-length", "256",
                 "--out", bundle, "--eval-tokens", "256")
    assert result.code == 0, result.err
    shim = [sys.executable, str(bundle / "shim.py")]
    ok = subprocess.run([*shim, "Hello", "--max-new-tokens", "4"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    too_long = subprocess.run([*shim, "word " * 400], capture_output=True, text=True, timeout=120)
    assert too_long.returncode == 2
    assert "takes at most 255 (context 256 tokens)" in too_long.stderr and "Traceback" not in too_long.stderr
    via_cli = cli("run", bundle, "Hello", "--max-new-tokens", "2")
    assert via_cli.code == 0


def test_existing_destination_needs_force(cli, tiny_models, tmp_path):
    bundle = tmp_path / "b"
    args = ("build", "--model", tiny_models["qwen2"], "--target", "x86-64-laptop", "--out", bundle,
            "--eval-tokens", "256")
    assert cli(*args).code == 0
    first = (bundle / "manifest.json").read_text()
    again = cli(*args)
    assert again.code == 2 and "already exists; pass --force" in again.err
    assert (bundle / "manifest.json").read_text() == first
    assert cli(*args, "--force", "--precision", "int8").code == 0
    assert json.loads((bundle / "manifest.json").read_text())["plan"]["quantization"]["weights"] == "int8"


def start_build(tiny_model, out):
    command = [sys.executable, "-m", "edgeqwen", "build", "--model", str(tiny_model), "--target", "x86-64-laptop",
               "--out", str(out), "--eval-tokens", "256", "--no-cache"]  # a real conversion, to stop midway
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=take_sigint)


def take_sigint():
    """The build takes Ctrl-C as a terminal user's would, even when the tests themselves run as a
    background job: a shell without job control starts those with SIGINT ignored, children inherit
    that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_staging(parent, name, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(parent.glob(f".partial-{name}-*")) and process.poll() is None:
            return
        time.sleep(0.2)
    pytest.fail("the build never started writing")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["killed", "interrupted", "terminated"])
def test_a_build_stopped_midway_leaves_no_bundle(tiny_models, tmp_path, sig):
    """Stopped while Olive converts: nothing at --out; Ctrl-C and SIGTERM clean up at once, and after SIGKILL (of
    the build alone: its Olive child dies with it) the next build to the same place does."""
    out = tmp_path / "bundle"
    process = start_build(tiny_models["qwen3"], out)
    wait_for_staging(tmp_path, "bundle", process)
    deadline = time.monotonic() + 120  # the streamed RTN runs in the build's own process before Olive starts
    while not (children := child_pids(process.pid)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert children, "Olive runs in a child process"
    time.sleep(3)  # well into the Olive run
    os.kill(process.pid, sig)
    process.wait(timeout=60)
    assert not out.exists()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")], "the engine outlived the build"
    if sig != signal.SIGKILL:
        assert process.returncode == (130 if sig == signal.SIGINT else 128 + signal.SIGTERM)
        assert "nothing was written to the destination" in process.stderr.read().decode()
        assert list(tmp_path.iterdir()) == [], "an interrupted build cleans up after itself"
        return
    # The next build to the same place succeeds and removes what a killed one left behind.
    rebuild = start_build(tiny_models["qwen3"], out)
    assert rebuild.wait(timeout=300) == 0, rebuild.stderr.read().decode()
    assert (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def child_pids(pid):
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found
