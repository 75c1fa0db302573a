"""The catalogue of bad inputs (docs/robustness.md): each row is a parametrized case here.

Every case is refused while the build resolves, before any conversion: the error class and the words the
user sees are asserted, and that nothing was written. The catalogue's table names each case by its id.
"""

import json
import os
import shutil
import struct
import tempfile
import time

import pytest

from edgeqwen import pipeline
from edgeqwen.cli import make_parser
from edgeqwen.drift.evaldata import EvalDataError
from edgeqwen.errors import ModelError, PlanError, ProfileError, RecipeError
from edgeqwen.shim import cli as shim_cli

# ---------------------------------------------------------------------------------------------------------------
# Command-line options: every numeric option of every command refuses what it cannot take.

BAD_NUMBERS = ("abc", "", "nan", "inf", "-99999999999999999999999", "99999999999999999999999", "1.5e999")


def numeric_options(parser, prefix=()):
    """(command words, option, action) for every int/float option of `parser` and its subcommands."""
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):  # subcommands
            for name, sub in action.choices.items():
                yield from numeric_options(sub, (*prefix, name))
        elif action.option_strings and action.type is not None and action.type not in (str,) and \
                getattr(action.type, "__name__", "") not in ("Path", "PosixPath"):
            yield prefix, action.option_strings[0], action


def shim_parsers():
    for mode in ("ask", "chat", "serve", "worker"):
        argv = [mode] if mode != "ask" else ["hello"]
        parser = capture_parser(argv)
        yield mode, parser


def capture_parser(argv):
    """The argparse parser shim.py builds for `argv` (parse_args builds it per mode)."""
    import argparse

    built = {}
    original = argparse.ArgumentParser.parse_args

    def grab(self, args=None, namespace=None):
        built["parser"] = self
        return original(self, args, namespace)

    argparse.ArgumentParser.parse_args = grab
    try:
        shim_cli.parse_args(argv)
    finally:
        argparse.ArgumentParser.parse_args = original
    return built["parser"]


EDGEQWEN_OPTIONS = list(numeric_options(make_parser()))
SHIM_OPTIONS = [((mode,), option, action) for mode, parser in shim_parsers()
                for _, option, action in numeric_options(parser)]


def test_every_numeric_option_has_a_range():
    """A new option with a bare int/float type would take -5 or nan silently: this names it."""
    loose = [f"{' '.join(words)} {option}" for words, option, action in EDGEQWEN_OPTIONS + SHIM_OPTIONS
             if getattr(action.type, "__name__", "") not in ("whole number", "number")]
    assert not loose, f"numeric options without a range type (edgeqwen.shim.values): {loose}"
    assert len(EDGEQWEN_OPTIONS) >= 9 and len(SHIM_OPTIONS) >= 20


@pytest.mark.parametrize("words, option, action", EDGEQWEN_OPTIONS, ids=lambda v: v if isinstance(v, str) else None)
def test_edgeqwen_numeric_option_refuses_bad_values(cli, tmp_path, words, option, action):
    for value in BAD_NUMBERS:
        result = cli(*words, *required_arguments(words, tmp_path), f"{option}={value}")
        assert result.code == 2, (option, value, result.err)
        assert f"argument {option}" in result.err and "expected" in result.err, result.err
    assert list(tmp_path.iterdir()) == [], "a refused command writes nothing"


@pytest.mark.parametrize("words, option, action", SHIM_OPTIONS, ids=lambda v: v if isinstance(v, str) else None)
def test_shim_numeric_option_refuses_bad_values(capsys, words, option, action):
    argv = [*([] if words == ("ask",) else list(words)), *(["hello"] if words == ("ask",) else [])]
    for value in BAD_NUMBERS:
        with pytest.raises(SystemExit) as exit_info:
            shim_cli.parse_args([*argv, f"{option}={value}"])
        assert exit_info.value.code == 2
        assert f"argument {option}" in capsys.readouterr().err


def required_arguments(words, tmp_path):
    if words == ("build",):
        return ["--target", "raspberry-pi-5", "--dry-run", "--out", str(tmp_path / "b")]
    return [str(tmp_path / "no-bundle")]  # bench takes a bundle folder first


@pytest.mark.parametrize("value, words", [
    ("-5", "argument --context-length: -5: expected a whole number from 256"),
    ("0", "argument --context-length: 0: expected a whole number from 256"),
    ("100000", "--context-length 100000: expected 256 to 4096 tokens"),
], ids=["context-negative", "context-zero", "context-above-model"])
def test_context_length(cli, tmp_path, value, words):
    result = cli("build", "--target", "raspberry-pi-5", "--out", tmp_path / "b", "--context-length", value)
    assert result.code == 2 and words in result.err
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------------------------
# Target profiles, recipes and rungs: wrong types and impossible values, named with the file and key.

TARGET_CASES = {
    "target-wrong-type": ("cores = 4", 'cores = "four"', "hardware.cores = 'four': expected int"),
    "target-nan": ("memory_bandwidth_gbps = 17.1", "memory_bandwidth_gbps = nan",
                   "hardware.memory_bandwidth_gbps = nan: expected a finite number"),
    "target-inf": ("max_mean_kld = 0.10", "max_mean_kld = inf", "drift.max_mean_kld = inf: expected a finite number"),
    "target-zero-threads": ("threads = 4 ", "threads = 0 ", "threads = 0: expected 1 to 1024"),
    "target-huge-threads": ("threads = 4 ", "threads = 99999999999 ", "threads = 99999999999: expected 1 to 1024"),
    "target-short-context": ("context_length = 4096", "context_length = -1", "context_length = -1: expected 256 to"),
    "target-negative-budget": ("memory_budget_mb = 4096", "memory_budget_mb = -4096", "memory_budget_mb = -4096: expected 64"),
    "target-impossible-drift": ("min_top1_agreement = 0.80", "min_top1_agreement = 1.5",
                                "min_top1_agreement = 1.5: expected 0 to 1"),
    "target-ppl-below-one": ("max_ppl_ratio = 1.15", "max_ppl_ratio = 0.5", "max_ppl_ratio = 0.5: expected 1.0 to 1000"),
    "target-unknown-key": ("cores = 4", "cores = 4\ncore = 4", "hardware.core: unknown key"),
    "target-missing-key": ("memory_budget_mb = 4096", "", "limits.memory_budget_mb: missing"),
    "target-not-toml": ("cores = 4", "cores = = 4", "not valid TOML"),
    "target-block-size": ("block_size = 64", "block_size = 48", "block_size = 48: expected one of"),
}


@pytest.mark.parametrize("case", TARGET_CASES)
def test_bad_target_profile(tmp_path, monkeypatch, case):
    old, new, words = TARGET_CASES[case]
    text = (pipeline.load_target("raspberry-pi-5").path).read_text()
    assert old in text
    monkeypatch.setenv("EDGEQWEN_TARGETS_DIR", str(tmp_path))
    (tmp_path / "raspberry-pi-5.toml").write_text(text.replace(old, new, 1))
    with pytest.raises(ProfileError, match="raspberry-pi-5.toml") as info:
        pipeline.resolve(pipeline.BuildRequest(target="raspberry-pi-5", out=tmp_path / "b"))
    assert words in str(info.value)


RECIPE_CASES = {
    "recipe-wrong-type": ('model_types = ["qwen3"]', 'model_types = "qwen3"', "model_types = 'qwen3': expected a list"),
    "recipe-impossible-drift": ("[drift]", "[drift]\nmax_mean_kld = -1.0", "max_mean_kld = -1.0: expected 0 to 1000"),
    "recipe-bad-ratio": ("[nncf]", "[nncf]\nratio = 2.0", "ratio = 2.0: expected a number in (0, 1]"),
    "recipe-accuracy-level": ("[quantization]", "[quantization]\naccuracy_level = 9",
                              "accuracy_level = 9: expected one of (0, 1, 2, 3, 4)"),
    "recipe-empty-file": (None, "", "description: missing"),
}


@pytest.mark.parametrize("case", RECIPE_CASES)
def test_bad_recipe(tmp_path, monkeypatch, case):
    old, new, words = RECIPE_CASES[case]
    source = pipeline.load_recipe("qwen3").path
    shutil.copytree(source.parent, tmp_path / "recipes")
    path = tmp_path / "recipes" / "qwen3.toml"
    text = path.read_text()
    if old is None:
        text = new
    else:
        if old not in text:
            text += f"\n{old}\n"
        text = text.replace(old, new, 1)
    path.write_text(text)
    monkeypatch.setenv("EDGEQWEN_RECIPES_DIR", str(tmp_path / "recipes"))
    with pytest.raises(RecipeError, match="qwen3.toml") as info:
        pipeline.resolve(pipeline.BuildRequest(target="raspberry-pi-5", out=tmp_path / "b"))
    assert words in str(info.value)


def test_bad_rung(tmp_path, monkeypatch):
    shutil.copytree(pipeline.load_recipe("qwen3").path.parent, tmp_path / "recipes")
    rung = tmp_path / "recipes" / "rungs" / "int4-rtn.toml"
    rung.write_text(rung.read_text().replace('engines = ["onnxruntime-genai"]', 'engines = ["tensorrt"]'))
    monkeypatch.setenv("EDGEQWEN_RECIPES_DIR", str(tmp_path / "recipes"))
    with pytest.raises(RecipeError, match=r"(?s)int4-rtn.toml.*'tensorrt' not registered"):
        pipeline.resolve(pipeline.BuildRequest(target="raspberry-pi-5", rung="int4-rtn", out=tmp_path / "b"))


# ---------------------------------------------------------------------------------------------------------------
# Model folders: damaged, incomplete or inconsistent checkpoints.

def link_model(source, folder):
    """A copy of a model folder whose files are hard links (cheap); mutate a file by writing a new one."""
    folder.mkdir()
    for path in source.iterdir():
        os.link(path, folder / path.name)
    return folder


def rewrite(path, text):
    path.unlink()
    path.write_text(text)


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    rewrite(folder / "config.json", json.dumps(config))


def edit_header(folder, change):
    """Rewrite the safetensors file with a changed header (same tensor bytes)."""
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    change(header)
    blob = json.dumps(header).encode()
    path.unlink()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + length :])


def truncate(folder):
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    path.unlink()
    path.write_bytes(raw[: len(raw) * 2 // 3])


def shard_index_naming_a_missing_file(folder):
    header_names = ["model.embed_tokens.weight"]
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {header_names[0]: "model.safetensors",
                                        "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors"}}))


def wrong_embedding_shape(header):
    header["model.embed_tokens.weight"]["shape"] = [151936, 64]


def unknown_dtype(header):
    header["model.layers.0.mlp.up_proj.weight"]["dtype"] = "F8_E4M3"


def integer_weights(header):
    header["model.layers.0.mlp.up_proj.weight"]["dtype"] = "I16"


MODEL_CASES = {
    "model-truncated-shard": (truncate, "model.safetensors: tensor", "the file is truncated"),
    "model-shard-index-names-missing-file": (shard_index_naming_a_missing_file, "model.safetensors.index.json",
                                             "names 1 missing shard(s): model-00002-of-00002.safetensors"),
    "model-index-not-json": (lambda f: (f / "model.safetensors.index.json").write_text("{"), "index.json",
                             "not valid JSON"),
    "model-shape-disagrees": (lambda f: edit_header(f, wrong_embedding_shape), "model.embed_tokens.weight",
                              "has shape [151936, 64], but config.json says vocab_size x hidden_size = [151936, 128]"),
    "model-layer-count-disagrees": (lambda f: edit_config(f, num_hidden_layers=3, layer_types=None), "model",
                                    "the weights hold 2 decoder layer(s) (indices 0, 1), but config.json says num_hidden_layers = 3"),
    "model-layer-types-disagree": (lambda f: edit_config(f, layer_types=["full_attention"] * 3), "config.json",
                                   "layer_types has 3 entries but num_hidden_layers = 2"),
    "model-heads-not-multiple": (lambda f: edit_config(f, num_key_value_heads=3), "config.json",
                                 "num_attention_heads = 4 is not a multiple of num_key_value_heads = 3"),
    "model-dimension-wrong-type": (lambda f: edit_config(f, hidden_size="128"), "config.json",
                                   "hidden_size = '128': expected a positive whole number"),
    "model-dimension-zero": (lambda f: edit_config(f, intermediate_size=0), "config.json",
                             "intermediate_size = 0: expected a positive whole number"),
    "model-unknown-config-dtype": (lambda f: edit_config(f, dtype="float8"), "config.json",
                                   "dtype = 'float8': expected one of float32, float16, bfloat16"),
    "model-unknown-tensor-dtype": (lambda f: edit_header(f, unknown_dtype), "model.layers.0.mlp.up_proj.weight",
                                   "dtype 'F8_E4M3' is not one edgeqwen converts"),
    "model-quantized-weights": (lambda f: edit_header(f, integer_weights), "model.layers.0.mlp.up_proj.weight",
                                "is stored as I16: a quantized checkpoint"),
    "model-tokenizer-beyond-embedding": (
        lambda f: (edit_config(f, vocab_size=1000), edit_header(f, lambda h: h["model.embed_tokens.weight"].update(
            shape=[1000, 128]))), "tokenizer.json", "beyond the model's embedding table (vocab_size = 1000)"),
    "model-config-empty": (lambda f: rewrite(f / "config.json", ""), "config.json", "is empty"),
    "model-config-not-utf8": (lambda f: ((f / "config.json").unlink(), (f / "config.json").write_bytes(
        b'{"model_type": "qwen2\xff"}')), "config.json", "not UTF-8 text"),
    "model-config-not-object": (lambda f: rewrite(f / "config.json", "[1, 2]"), "config.json",
                                "a JSON list; expected a Hugging Face config.json"),
    "model-tokenizer-not-json": (lambda f: rewrite(f / "tokenizer.json", "{broken"), "tokenizer.json",
                                 "not valid JSON"),
    "model-no-weights": (lambda f: (f / "model.safetensors").unlink(), "", "no *.safetensors weights found"),
    "model-no-tokenizer": (lambda f: (f / "tokenizer.json").unlink(), "", "missing tokenizer file(s) tokenizer.json"),
    "model-not-qwen": (lambda f: edit_config(f, model_type="llama", architectures=["LlamaForCausalLM"]),
                       "config.json", "architecture LlamaForCausalLM (model_type 'llama') is not supported"),
    "model-moe": (lambda f: edit_config(f, model_type="qwen3_moe"), "config.json", "is a mixture-of-experts model"),
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model_folder(tiny_models, tmp_path, case):
    damage, where, words = MODEL_CASES[case]
    folder = link_model(tiny_models["qwen2"], tmp_path / "model")
    damage(folder)
    with pytest.raises(ModelError) as info:
        pipeline.resolve(pipeline.BuildRequest(target="x86-64-laptop", model=str(folder), out=tmp_path / "b"))
    assert where in str(info.value) and words in str(info.value), str(info.value)
    assert not (tmp_path / "b").exists()


def test_model_path_is_a_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file; expected a model folder or a Hugging Face id"):
        pipeline.resolve(pipeline.BuildRequest(target="x86-64-laptop", model=str(tmp_path / "model.safetensors")))


# ---------------------------------------------------------------------------------------------------------------
# Evaluation and calibration text.

EVAL_CASES = {
    "eval-empty": ("e.jsonl", b"", "no text in it"),
    "eval-whitespace": ("e.txt", b"  \n\n ", "no text in it"),
    "eval-binary": ("e.txt", bytes(range(256)) * 4, "not UTF-8 text"),
    "eval-nul-bytes": ("e.txt", b"some text\0\0\0 more text", "holds NUL characters"),
    "eval-latin-1": ("e.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"), "e.txt:1: not UTF-8 text (byte 3)"),
    "eval-too-short": ("e.txt", b"Two words", "only 3 tokens of text; the drift gate needs at least 16"),
    "eval-jsonl-broken-line": ("e.jsonl", b'{"text": "fine"}\n{"text": "broken\n', "e.jsonl:2: not valid JSON"),
    "eval-jsonl-wrong-shape": ("e.jsonl", b'{"text": "fine"}\n[1, 2]\n', 'e.jsonl:2: expected an object with "text"'),
    "eval-jsonl-bad-role": ("e.jsonl", b'{"messages": [{"role": "robot", "content": "hi"}]}\n',
                            "e.jsonl:1: messages[0].role = 'robot': expected one of system, user, assistant, tool"),
    "eval-jsonl-content-not-text": ("e.jsonl", b'{"messages": [{"role": "user", "content": 5}]}\n',
                                    "messages[0].content is not a string"),
    "eval-unknown-format": ("e.csv", b"a,b\n", "unknown format '.csv'"),
    "eval-missing": (None, None, "file not found"),
}


@pytest.mark.parametrize("case", EVAL_CASES)
def test_bad_eval_data(tmp_path, case):
    name, content, words = EVAL_CASES[case]
    path = tmp_path / (name or "missing.txt")
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EvalDataError) as info:
        pipeline.resolve(pipeline.BuildRequest(target="raspberry-pi-5", eval_data=path, out=tmp_path / "b"))
    assert "--eval-data" in str(info.value) or str(path.name) in str(info.value)
    assert words in str(info.value), str(info.value)


@pytest.mark.parametrize("case", ["eval-binary", "eval-jsonl-broken-line"])
def test_bad_calibration_data(tmp_path, case):
    name, content, words = EVAL_CASES[case]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(EvalDataError, match="--calib-data") as info:
        pipeline.resolve(pipeline.BuildRequest(target="raspberry-pi-5", rung="int4-gptq", calib_data=path,
                                               out=tmp_path / "b"))
    assert words in str(info.value)


def test_eval_tokens_out_of_range_through_the_api(tmp_path):
    with pytest.raises(PlanError, match="--eval-tokens 0: expected 16 to"):
        pipeline.resolve(pipeline.BuildRequest(target="raspberry-pi-5", eval_tokens=0))


# ---------------------------------------------------------------------------------------------------------------
# The four escapes this catalogue was started from: a real `build` (not a dry run) refuses them in seconds,
# before any conversion starts (no engine scratch folder is made) and with nothing at --out.

ESCAPES = {
    "escape-context-negative": (lambda models, tmp: ["--context-length", "-5"], 2, "argument --context-length"),
    "escape-context-zero": (lambda models, tmp: ["--context-length", "0"], 2, "argument --context-length"),
    "escape-truncated-safetensors": (
        lambda models, tmp: ["--model", damaged(models, tmp, truncate)], 2, "the file is truncated"),
    "escape-layer-types": (
        lambda models, tmp: ["--model", damaged(models, tmp, lambda f: edit_config(
            f, layer_types=["full_attention"] * 3))], 2, "layer_types has 3 entries but num_hidden_layers = 2"),
}


def damaged(models, tmp_path, damage):
    folder = link_model(models["qwen2"], tmp_path / "model")
    damage(folder)
    return str(folder)


@pytest.mark.parametrize("case", ESCAPES)
def test_escapes_are_refused_before_conversion(cli, tiny_models, tmp_path, case):
    arguments, code, words = ESCAPES[case]
    scratch_before = set(os.listdir(tempfile.gettempdir()))
    started = time.monotonic()
    result = cli("build", "--target", "x86-64-laptop", "--out", tmp_path / "b", "--no-cache",
                 *arguments(tiny_models, tmp_path))
    assert result.code == code and words in result.err, result.err
    assert "Traceback" not in result.err
    assert time.monotonic() - started < 120  # seconds, not a conversion (a loaded 2-core machine is slow)
    assert not (tmp_path / "b").exists()
    ours = f"edgeqwen-work-{os.getpid()}-"  # the build ran in this process (other processes may be converting)
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - scratch_before if n.startswith(ours)}


# ---------------------------------------------------------------------------------------------------------------
# The catalogue's table (docs/robustness.md) names only tests that exist.

def test_every_row_of_the_catalogue_names_a_real_test():
    import re
    from pathlib import Path

    root = Path(__file__).parents[1]
    text = (root / "docs" / "robustness.md").read_text()
    references = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+)(?:\[([\w-]+)\])?)?`", text)
    assert len(references) >= 60, len(references)
    for path, function, case in references:
        source = (root / path).read_text()
        assert not function or re.search(rf"^def {function}\(", source, re.M), f"{path}::{function} does not exist"
        assert not case or f'"{case}"' in source, f"{path}::{function}[{case}]: no such case"
