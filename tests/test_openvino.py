"""OpenVINO bundles end to end: real Optimum-Intel export, real NNCF compression, real OpenVINO GenAI.

No NPU exists here: the NPU bundle's IR runs on the CPU device, and what the NPU needs is checked in the
IR's structure (symmetric INT4 weights, no dynamic dimensions the NPU pipeline cannot fix, its config).
"""

import json
import subprocess
import sys
from importlib.metadata import version

import openvino as ov
import openvino_genai as ov_genai
import pytest

from edgeqwen.backends import ir_checks
from edgeqwen.hashing import sha256_file
from tests.test_shim import RunningServer, english

NPU = "intel-core-ultra-npu"
FAMILIES = ("qwen2", "qwen3")
CHAT_PROMPT = [{"role": "user", "content": "What does os.path.join do?"}]


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """Write one recipe for tiny Qwen2 models into a recipes folder of its own; return its name."""

    def write(body: str, name: str = "r") -> str:
        folder = tmp_path / "recipes"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.toml").write_text(
            f'name = "{name}"\ndescription = ""\nmodel_types = ["qwen2"]\n{body}\n'
        )
        monkeypatch.setenv("EDGEQWEN_RECIPES_DIR", str(folder))
        return name

    return write


@pytest.fixture(scope="module")
def npu_bundles(tiny_models, tmp_path_factory):
    from tests.conftest import run_cli

    bundles = {}
    for family in FAMILIES:
        out = tmp_path_factory.mktemp("ov") / f"{family}-npu"
        result = run_cli("build", "--model", tiny_models[family], "--target", NPU, "--out", out, "--json",
                         "--eval-tokens", "256")
        assert result.code == 0, result.err
        bundles[family] = (out, json.loads(result.out))
    return bundles


@pytest.mark.parametrize("family", FAMILIES)
def test_npu_bundle_files_manifest_and_ir_match_the_plan(npu_bundles, family):
    bundle, report = npu_bundles[family]
    manifest = json.loads((bundle / "manifest.json").read_text())
    on_disk = sorted(p.name for p in bundle.iterdir() if p.name != "manifest.json")
    assert sorted(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(bundle / name)
    assert {"openvino_model.xml", "openvino_model.bin", "openvino_tokenizer.xml", "openvino_detokenizer.xml",
            "pipeline_config.json", "shim.py", "README.md", "drift.json"} <= set(on_disk)
    assert not {"model.onnx", "tokenizer.json", "genai_config.json"} & set(on_disk)  # only what OpenVINO needs
    assert manifest["runtime"]["requirement"] == f"openvino-genai=={version('openvino-genai')}"
    for tool in ("optimum-intel", "nncf", "openvino", "openvino-genai"):
        assert manifest["tools"][tool] not in ("", "not installed")
    assert manifest["drift"]["passed"] and report["drift"]["passed"]

    # The IR itself, read independently of the build: symmetric INT4 layers in groups of the planned size,
    # the tied embedding/lm_head matrix once at INT8 (the plan's embeddings/lm_head), nothing left in float.
    plan_q = manifest["plan"]["quantization"]
    assert (plan_q["weights"], plan_q["symmetric"], plan_q["embeddings"]) == ("int4", True, "int8")
    model = ov.Core().read_model(bundle / "openvino_model.xml")
    precisions = ir_checks.weight_precisions(model)
    config = json.loads((bundle / "pipeline_config.json").read_text())
    layers = 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    assert precisions["int4_sym"]["tensors"] == layers
    assert precisions["int8_asym"] == {"tensors": 1, "parameters": 151936 * 128}
    assert not [k for k in precisions if k.startswith("float") or k.endswith("int4_asym")]
    assert manifest["engine"]["ir_weight_precisions"] == precisions
    group_sizes = {op.get_output_shape(0)[-1] for op in model.get_ops()
                   if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i4"}
    assert group_sizes == {plan_q["block_size"]}

    # Static shapes on the NPU: only batch and token axes are dynamic, and the lengths that fix them are shipped.
    assert ir_checks.unbounded_dimensions(model) == []
    assert config["device"] == "NPU"
    npu = config["properties"]["NPU"]
    assert npu["MAX_PROMPT_LEN"] + npu["MIN_RESPONSE_LEN"] == manifest["plan"]["context_length"]
    assert config["max_prompt_tokens"] == npu["MAX_PROMPT_LEN"]
    readme = (bundle / "README.md").read_text()
    assert "pip install openvino-genai==" in readme and "Not verified" in readme


@pytest.mark.parametrize("family", FAMILIES)
def test_npu_bundle_generates_with_openvino_genai_on_cpu(npu_bundles, family):
    bundle, _ = npu_bundles[family]
    pipe = ov_genai.LLMPipeline(str(bundle), "CPU")
    text = pipe.get_tokenizer().apply_chat_template(CHAT_PROMPT, add_generation_prompt=True)
    config = pipe.get_generation_config()
    config.max_new_tokens, config.apply_chat_template = 8, False
    result = pipe.generate([text], config)
    assert len(result.texts) == 1
    eos = json.loads((bundle / "generation_config.json").read_text())["eos_token_id"]
    assert set([eos] if isinstance(eos, int) else eos) <= set(config.stop_token_ids)  # every end token stops it


def test_shim_runs_the_npu_bundle_on_cpu_and_refuses_overlong_prompts(npu_bundles, tmp_path):
    bundle, _ = npu_bundles["qwen3"]
    shim = [sys.executable, str(bundle / "shim.py")]
    ok = subprocess.run(shim + ["--device", "cpu", "--max-new-tokens", "5", "hello"],
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    limit = json.loads((bundle / "pipeline_config.json").read_text())["max_prompt_tokens"]
    long_prompt = tmp_path / "long.txt"
    long_prompt.write_text("word " * (limit + 50))
    with open(long_prompt) as stdin:
        refused = subprocess.run(shim + ["--device", "cpu", "-"], stdin=stdin, capture_output=True, text=True,
                                 timeout=300)
    assert refused.returncode == 2
    assert f"takes at most {limit}" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.slow  # over 40 s: a real conversion of its own
def test_all_layers_int4_recipe_and_channel_wise_groups(cli, tiny_models, tmp_path, recipe):
    """A recipe asking for INT4 everywhere and channel-wise groups gets exactly that in the IR (on CPU device)."""
    recipe('[quantization]\nembeddings = "int4"\nlm_head = "int4"\nblock_size = -1', name="all4")
    bundle = tmp_path / "b"
    result = cli("build", "--model", tiny_models["qwen2"], "--target", NPU, "--out", bundle, "--json",
                 "--eval-tokens", "128", "--max-mean-kld", "5", "--max-ppl-ratio", "5", "--min-top1-agreement", "0")
    assert result.code == 0, result.err
    precisions = ir_checks.weight_precisions(ov.Core().read_model(bundle / "openvino_model.xml"))
    assert set(precisions) == {"int4_sym"}
    assert precisions["int4_sym"]["tensors"] == 2 * 7 + 1  # the layers and the one tied table
    model = ov.Core().read_model(bundle / "openvino_model.xml")
    weight_shapes = [list(op.get_output_shape(0)) for op in model.get_ops()
                     if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "i4"]
    assert all(len(shape) == 2 for shape in weight_shapes)  # [out, in]: one scale per output channel


@pytest.mark.parametrize(
    "recipe_quantization, message",
    [
        ("symmetric = false", "asymmetric INT4 does not compile for the NPU"),
        ("block_size = 32", "groups of 128 or channel-wise"),
        ('embeddings = "int4"', "ties them to one matrix"),
    ],
)
def test_npu_refuses_what_it_cannot_run(cli, tiny_models, tmp_path, recipe, recipe_quantization, message):
    recipe(f"[quantization]\n{recipe_quantization}")
    result = cli("build", "--model", tiny_models["qwen2"], "--target", NPU, "--out", tmp_path / "b")
    assert result.code == 2 and message in result.err and "Traceback" not in result.err
    assert not (tmp_path / "b").exists()


def test_channel_wise_is_refused_for_onnx_runtime_targets(cli, tiny_models, tmp_path, recipe):
    recipe("[quantization]\nblock_size = -1")
    result = cli("build", "--model", tiny_models["qwen2"], "--target", "raspberry-pi-5", "--out", tmp_path / "b")
    assert result.code == 2 and "channel-wise) is an OpenVINO (NNCF) option" in result.err


def test_bad_nncf_recipe_values_are_named(cli, tiny_models, tmp_path, recipe):
    recipe('[nncf]\nratio = 1.5\nbackup_precision = "int3"')
    result = cli("build", "--model", tiny_models["qwen2"], "--target", NPU, "--out", tmp_path / "b")
    assert result.code == 2 and "r.toml" in result.err
    assert "nncf.backup_precision = 'int3': expected one of 'int8_asym' | 'int8_sym' | 'none'" in result.err


@pytest.mark.slow
def test_demo_npu_bundle_answers_in_a_fresh_virtualenv_with_only_openvino(tmp_path):
    """The device check's own environment: a fresh virtualenv with only the README's requirement."""
    from edgeqwen.cli import main
    from edgeqwen.device.environments import prepare
    from edgeqwen.targets import load_target

    bundle = tmp_path / "npu"
    assert main(["build", "--target", NPU, "--out", str(bundle), "--device-check"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    model_bytes = sum(e["size"] for n, e in manifest["files"].items() if n.startswith("openvino_model."))
    assert model_bytes < 0.55 * manifest["model"]["fp16_checkpoint_bytes"]  # INT4 layers + one INT8 table
    check = json.loads((bundle / "device_check.json").read_text())
    assert check["status"] == "partial" and check["environment"]["kind"] == "native"  # the NPU itself: not run
    assert [item["what"] for item in check["not_run"]] == ["the NPU"]
    assert {part["status"] for part in check["parts"].values()} == {"passed"}
    assert check["runtime"]["installed"]["openvino-genai"] == manifest["runtime"]["requirement"].split("==")[1]

    environment = prepare(load_target(NPU), manifest["runtime"]["requirement"])  # cached by the build's check
    python = environment.command[0]
    installed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert {"openvino", "openvino-genai", "openvino-tokenizers"} <= names
    assert not names & {"torch", "transformers", "edgeqwen", "optimum-intel", "nncf", "onnxruntime-genai"}

    answer = subprocess.run([python, bundle / "shim.py", "--device", "cpu", "--max-new-tokens", "40",
                             "What is the pathlib module for?"], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    assert english(answer.stdout), answer.stdout

    # The same shim's chat and server, on OpenVINO.
    chat = subprocess.run([python, bundle / "shim.py", "chat", "--device", "cpu", "--max-new-tokens", "8"],
                          input="What is a list?\nAnd a tuple?\n", capture_output=True, text=True, timeout=300)
    assert chat.returncode == 0 and len([x for x in chat.stdout.splitlines() if x.strip()]) >= 2, chat.stderr
    server = RunningServer(python, bundle, "--device", "cpu")
    try:
        from openai import OpenAI

        client = OpenAI(base_url=server.base_url, api_key="unused")
        completion = client.chat.completions.create(model="m", max_tokens=30,
                                                    messages=[{"role": "user", "content": "What is pathlib?"}])
        assert english(completion.choices[0].message.content) and completion.usage.completion_tokens > 0
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="m", max_tokens=30, stream=True, messages=[{"role": "user", "content": "What is pathlib?"}]))
        assert streamed.strip() == completion.choices[0].message.content
    finally:
        code, _ = server.stop()
    assert code == 0
