"""Qualcomm NPU bundles end to end: Olive's real QNN passes, onnxruntime-qnn's Hexagon HTP simulator.

No Snapdragon NPU exists here. The bundle's compiled graphs run on the HTP simulator that the
onnxruntime-qnn wheel carries for x86-64 Linux (the drift gate and the device check), and its QDQ copy on
the CPU execution provider beside it.
"""

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import run_cli

TARGET = "snapdragon-x-elite-npu"
PROMPT = "What does os.path.join do?"
END_TOKEN = 151645  # <|im_end|>, which closes every chat turn


def dry_run(*extra):
    return run_cli("build", "--target", TARGET, "--dry-run", *extra)


def test_the_plan_drives_two_olive_runs_for_the_soc():
    result = dry_run()
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    plan = shown["plan"]
    assert plan["engine"] == "onnxruntime-qnn" and plan["device"] == "npu"
    assert plan["engine_options"] == {"soc_model": 60, "window": 64, "rotate": False}
    assert plan["calibration"] is not None  # GPTQ and the activation ranges are fitted on text
    workflows = shown["engine_config"]["olive_workflows"]
    assert [p["type"] for p in workflows["qdq"]["passes"].values()] == [
        "Gptq", "CaptureSplitInfo", "ModelBuilder", "MatMulNBitsToQDQ", "GraphSurgeries", "OnnxStaticQuantization",
        "SplitModel", "StaticLLM"]
    assert workflows["qdq"]["passes"]["static"]["context_length"] == 64
    compile_pass = workflows["compile"]["passes"]["compile"]
    assert compile_pass["type"] == "EPContextBinaryGenerator" and compile_pass["provider_options"]["soc_model"] == "60"
    assert compile_pass["weight_sharing"] is False


@pytest.mark.parametrize("args, words", [
    (("--context-length", "1000"), "windows of 64 tokens"),
    (("--precision", "fp16"), "choose int4 (W4A16)"),
    (("--precision", "int8"), "W8A16 is not built"),
])
def test_plans_the_npu_cannot_take_are_refused_before_any_work(args, words):
    result = dry_run(*args)
    assert result.code != 0
    assert words in result.err and "Traceback" not in result.err


def test_an_asymmetric_recipe_is_refused_by_name(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "asym.toml").write_text('name = "asym"\ndescription = ""\nmodel_types = ["qwen3"]\n'
                                      "[quantization]\nsymmetric = false\n")
    monkeypatch.setenv("EDGEQWEN_RECIPES_DIR", str(folder))
    result = dry_run("--recipe", "asym")
    assert result.code != 0 and "the HTP takes symmetric weights" in result.err


@pytest.fixture(scope="module")
def npu_bundle(tmp_path_factory):
    """The demo model built for the Snapdragon target, drift-gated and device-checked on the simulator."""
    out = tmp_path_factory.mktemp("qnn") / "npu"
    result = run_cli("build", "--target", TARGET, "--out", out, "--json", "--device-check")
    assert result.code == 0, result.err
    return out, json.loads(result.out)


def shim(bundle, *args, timeout=300):
    return subprocess.run([sys.executable, str(bundle / "shim.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_drift_is_measured_and_gated_on_the_htp_simulator(npu_bundle):
    bundle, _ = npu_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    drift = json.loads((bundle / "drift.json").read_text())
    assert drift["runtime"]["device"] == "npu" and "onnxruntime-qnn" in drift["runtime"]["version"]
    assert drift["passed"] and manifest["drift"]["passed"]
    cpu = drift["also_measured"]["cpu"]["summary"]  # the QDQ models on the CPU provider, beside the gated figures
    assert cpu["top1_agreement"] > 0.5 and cpu["mean_kld"] < 1.0
    assert cpu != drift["summary"]  # two runtimes, not one measured twice
    # Generation runs the one-token model, teacher forcing the window model: the gate checked they agree.
    assert all(g["decode_checked"] > 0 and g["decode_disagreements"] == 0 for g in drift["generation"])
    qnn = manifest["engine"]["qnn"]
    assert qnn["npu_graphs"] == ["context_ctx.onnx", "iterator_ctx.onnx"]
    assert set(qnn["off_npu_nodes"]) == {"GroupQueryAttention"}  # the KV cache's attention, by the recipe's design
    assert {"context_ctx_qnn.bin", "iterator_ctx_qnn.bin", "cpu/context.onnx"} <= set(manifest["files"])
    device = json.loads((bundle / "device_check.json").read_text())
    assert device["status"] == "partial"  # the simulator ran; a real NPU did not
    assert device["parts"]["drift"]["runtime"]["device"] == "npu"
    assert any(item["what"] == "the NPU" for item in device["not_run"])


@pytest.mark.slow
def test_a_tighter_budget_on_the_simulator_refuses_the_bundle(npu_bundle, tmp_path):
    _, report = npu_bundle
    measured = report["drift"]["mean_kld"] if "mean_kld" in report.get("drift", {}) else None
    out = tmp_path / "strict"
    result = run_cli("build", "--target", TARGET, "--out", out, "--max-mean-kld", "0.0001", "--quality", "fixed",
                     "--eval-tokens", "256")
    assert result.code != 0
    assert "misses its drift budget" in result.err and not out.exists()
    assert measured is None or measured > 0.0001


@pytest.mark.slow
def test_the_shim_answers_on_the_simulator_and_on_the_cpu(npu_bundle):
    bundle, _ = npu_bundle
    for device in ("npu", "cpu"):
        answer = shim(bundle, "--device", device, "--max-new-tokens", "16", PROMPT)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip()


@pytest.mark.slow
def test_short_and_overlong_prompts_get_answers_or_named_errors_not_aborts(npu_bundle):
    bundle, _ = npu_bundle
    short = shim(bundle, "--max-new-tokens", "4", "Hi")  # far shorter than the 64-token window
    assert short.returncode == 0, short.stderr
    long_prompt = "os.path.join joins path components. " * 800  # over the 4096-token context
    refused = shim(bundle, "--max-new-tokens", "4", long_prompt)
    assert refused.returncode == 2, refused.stderr  # the shim's usage error, not SIGABRT (-6)
    assert "this bundle takes at most 4032" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_the_pad_token_is_one_no_prompt_holds(npu_bundle, tmp_path):
    bundle, _ = npu_bundle
    genai = json.loads((bundle / "genai_config.json").read_text())
    assert genai["model"]["pad_token_id"] == genai["model"]["vocab_size"] - 1  # a row Qwen's tokenizer never writes
    # Padded with the end token, as the builder writes it, the runtime would drop every chat turn's <|im_end|>
    # from the one-token model's positions: the shim refuses such a prompt instead of answering from them.
    old = tmp_path / "end-token-padded"
    shutil.copytree(bundle, old)
    genai["model"]["pad_token_id"] = END_TOKEN
    (old / "genai_config.json").write_text(json.dumps(genai))
    answer = shim(old, "--no-verify", "--device", "cpu", "--max-new-tokens", "4", PROMPT)
    assert answer.returncode == 2, answer.stderr
    assert f"holds token {END_TOKEN}" in answer.stderr and "Traceback" not in answer.stderr


@pytest.mark.slow
def test_a_tiny_qwen2_builds_for_the_npu(tiny_models, tmp_path):
    out = tmp_path / "qwen2-npu"
    result = run_cli("build", "--model", tiny_models["qwen2"], "--target", TARGET, "--out", out,
                     "--eval-tokens", "256")
    assert result.code == 0, result.err
    answer = shim(out, "--max-new-tokens", "4", PROMPT)
    assert answer.returncode == 0, answer.stderr


def test_a_missing_onnxruntime_qnn_is_named_before_any_conversion(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime_qnn", None)  # `import onnxruntime_qnn` raises ImportError
    out = tmp_path / "npu"
    result = run_cli("build", "--target", TARGET, "--out", out, "--no-cache", "--quality", "fixed")
    assert result.code != 0 and "pip install onnxruntime-qnn==2.7.0" in result.err
    assert "Traceback" not in result.err and not out.exists()


def test_a_qnn_package_without_the_htp_library_is_named(monkeypatch, tmp_path):
    import onnxruntime_qnn

    elsewhere = tmp_path / "lib"
    elsewhere.mkdir()
    monkeypatch.setattr(onnxruntime_qnn, "get_library_path", lambda: str(elsewhere / "libonnxruntime_providers_qnn.so"))
    out = tmp_path / "npu"
    result = run_cli("build", "--target", TARGET, "--out", out, "--no-cache", "--quality", "fixed")
    assert result.code != 0 and "has no libQnnHtp.so" in result.err and not out.exists()


def test_a_failed_olive_run_names_the_pass_it_was_in(tmp_path):
    from edgeqwen.backends.ort_genai import failed_pass

    log = tmp_path / "olive-qdq.log"
    log.write_text("[INFO] Running pass gptq:gptq\n[INFO] Pass gptq:gptq finished in 3.1 seconds\n"
                   "[INFO] Running pass activations:onnxstaticquantization\nTraceback ...\n")
    assert failed_pass(log, ["gptq", "activations"]) == " in pass activations (onnxstaticquantization)"
    log.write_text("Traceback: before any pass\n")
    assert failed_pass(log, ["gptq"]) == ""
