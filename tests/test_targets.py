"""Target profiles: every file in targets/ loads, and every kind of bad profile is refused by file and key."""

from pathlib import Path

import pytest

from edgeqwen.errors import ProfileError
from edgeqwen.targets import load_target, load_target_file, target_names

TARGET_NAMES = target_names()
REQUIRED_TARGETS = {"raspberry-pi-5", "android-arm64", "jetson-orin-nano", "intel-core-ultra-npu", "x86-64-laptop"}
GOOD = (Path(__file__).resolve().parents[1] / "targets" / "raspberry-pi-5.toml").read_text()


def test_required_targets_exist():
    assert REQUIRED_TARGETS <= set(TARGET_NAMES)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_every_profile_loads_with_sourced_hardware_facts(name):
    profile = load_target(name)
    assert profile.name == name
    assert profile.hardware.memory_bandwidth_gbps > 0 and profile.hardware.cores >= 1
    text = profile.path.read_text()
    assert "Source:" in text, f"{profile.path}: hardware facts need a '# Source:' comment"
    assert f"--target {name}" in text or f"targets show {name}" in text, "a profile starts with its command"


def write(tmp_path, text, name="raspberry-pi-5"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_unknown_target_lists_known_ones():
    with pytest.raises(ProfileError, match=r"unknown target 'pi-6'.*raspberry-pi-5"):
        load_target("pi-6")


def test_malformed_toml_names_the_file(tmp_path):
    path = write(tmp_path, GOOD + "\n[runtime\n")
    with pytest.raises(ProfileError, match=rf"{path}: not valid TOML"):
        load_target_file(path)


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, GOOD.replace("threads = 4", "threads = 4\nthreadz = 2"))
    with pytest.raises(ProfileError) as info:
        load_target_file(path)
    assert str(path) in str(info.value) and "runtime.threadz: unknown key" in str(info.value)


def test_all_problems_reported_at_once(tmp_path):
    text = GOOD.replace('weights = "int4"', 'weights = "int3"').replace("cores = 4", 'cores = "four"')
    with pytest.raises(ProfileError) as info:
        load_target_file(write(tmp_path, text))
    message = str(info.value)
    assert "2 problem(s)" in message
    assert "quantization.weights = 'int3': expected one of 'int4' | 'int8' | 'fp16' | 'fp32'" in message
    assert "hardware.cores = 'four': expected int" in message


def test_missing_key(tmp_path):
    text = GOOD.replace("memory_budget_mb = 4096", "")
    with pytest.raises(ProfileError, match="limits.memory_budget_mb: missing"):
        load_target_file(write(tmp_path, text))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("block_size = 64", "block_size = 48", r"block_size = 48: expected one of \(16, 32, 64, 128, 256\)"),
        ('device = "cpu"', 'device = "npu"', "device 'npu' is not available with engine 'onnxruntime-genai'"),
        ("context_length = 4096", "context_length = 10", "context_length = 10: expected 256 to 1048576"),
        ("threads = 4 ", "threads = 0 ", "threads = 0: expected 1 to 1024"),
        ("ram_variants_gb = [2, 4, 8, 16]", "ram_variants_gb = [2, 4]",
         r"ram_variants_gb = \[2.0, 4.0\]: .*ram_gb \(8\) among them"),
    ],
)
def test_invalid_values(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ProfileError, match=message):
        load_target_file(write(tmp_path, GOOD.replace(old, new)))


def test_name_must_match_file(tmp_path):
    with pytest.raises(ProfileError, match="must match the file name 'other'"):
        load_target_file(write(tmp_path, GOOD, name="other"))


def test_profiles_are_frozen():
    profile = load_target("raspberry-pi-5")
    with pytest.raises(AttributeError):
        profile.runtime.threads = 8


def test_targets_table_lists_every_file(cli):
    result = cli("targets")
    assert result.code == 0
    for name in TARGET_NAMES:
        assert name in result.out


def test_targets_show(cli):
    result = cli("targets", "show", "jetson-orin-nano")
    assert result.code == 0
    assert "device = cuda" in result.out and "memory_bandwidth_gbps = 68" in result.out


def test_targets_show_unknown(cli):
    result = cli("targets", "show", "toaster")
    assert result.code == 2 and "unknown target 'toaster'" in result.err


def test_new_profile_directory_is_picked_up(tmp_path, monkeypatch, cli):
    write(tmp_path, GOOD.replace('name = "raspberry-pi-5"', 'name = "my-board"'), name="my-board")
    monkeypatch.setenv("EDGEQWEN_TARGETS_DIR", str(tmp_path))
    assert "my-board" in cli("targets").out


def test_the_bundle_readme_says_which_ram_sizes_of_the_device_it_fits(tiny_models, tmp_path):
    # a Qwen2.5-3B-shaped plan (headers only) for the Pi 5: 1.7 GB of INT4 weights, which the 2 and 4 GB boards
    # cannot hold at the profile's share of their RAM (half); the 8 and 16 GB boards can
    from edgeqwen.backends import backend_for
    from edgeqwen.bundle.readme import fit_section
    from edgeqwen.models import resolve_model
    from edgeqwen.plan import resolve_plan
    from edgeqwen.recipes import recipe_for_model_type
    from tests.conftest import write_header_only_checkpoint

    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
              "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
              "num_key_value_heads": 2, "max_position_embeddings": 32768, "tie_word_embeddings": True,
              "torch_dtype": "bfloat16", "rms_norm_eps": 1e-6, "rope_theta": 1e6}
    kv = 2 * 2048 // 16
    tensors = {"model.embed_tokens.weight": [151936, 2048], "model.norm.weight": [2048]}
    for i in range(36):
        p = f"model.layers.{i}."
        tensors.update({p + "self_attn.q_proj.weight": [2048, 2048], p + "self_attn.q_proj.bias": [2048],
                        p + "self_attn.k_proj.weight": [kv, 2048], p + "self_attn.k_proj.bias": [kv],
                        p + "self_attn.v_proj.weight": [kv, 2048], p + "self_attn.v_proj.bias": [kv],
                        p + "self_attn.o_proj.weight": [2048, 2048], p + "mlp.gate_proj.weight": [11008, 2048],
                        p + "mlp.up_proj.weight": [11008, 2048], p + "mlp.down_proj.weight": [2048, 11008],
                        p + "input_layernorm.weight": [2048], p + "post_attention_layernorm.weight": [2048]})
    folder = write_header_only_checkpoint(tmp_path / "qwen25-3b", config, tensors)
    target = load_target("raspberry-pi-5")
    plan = resolve_plan(resolve_model(str(folder)), target, recipe_for_model_type("qwen2"))
    memory = backend_for(plan.engine).estimate_memory(plan)
    section = fit_section(plan, target, memory)
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in section.splitlines()
            if line.startswith("| ") and "GB" in line}
    assert list(rows) == ["2 GB", "4 GB", "8 GB", "16 GB"]
    assert rows["8 GB"] == rows["16 GB"] == "fits"
    assert rows["2 GB"].startswith("too small") and rows["4 GB"].startswith("too small")
    assert f"{memory.total_bytes / 2**20:.0f} MB" in section and "50% of its RAM" in section

