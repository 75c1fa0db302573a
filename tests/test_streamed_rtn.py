"""The streamed RTN (one tensor in memory at a time) makes what Olive's Rtn pass makes, and so the same bundle.

The in-memory side is Olive itself, run as a user would run it (`python -m olive run` with its Rtn pass),
so a change in Olive's quantizer or in its checkpoint format shows up here as a difference.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeqwen.backends import backend_for
from edgeqwen.backends.ort_genai import finish_model, olive_workflow, run_olive
from edgeqwen.backends.streamed_rtn import write_rtn_checkpoint
from edgeqwen.models import resolve_model
from edgeqwen.plan import resolve_plan
from edgeqwen.recipes import recipe_for_model_type
from edgeqwen.targets import load_target


def olive_rtn(model_dir: Path, work: Path, group_size: int, symmetric: bool, embeds: bool = False) -> Path:
    """Olive's Rtn pass on the whole checkpoint; the folder it writes."""
    work.mkdir(parents=True)
    config = {"input_model": {"type": "HfModel", "model_path": str(model_dir)},
              "passes": {"rtn": {"type": "Rtn", "bits": 4, "group_size": group_size, "sym": symmetric,
                                 "embeds": embeds}},
              "cache_dir": str(work / "cache"), "output_dir": str(work / "out"), "log_severity_level": 3}
    (work / "config.json").write_text(json.dumps(config))
    subprocess.run([sys.executable, "-m", "olive", "run", "--config", "config.json", "--disable_telemetry"],
                   cwd=work, check=True, capture_output=True, env={**os.environ, "OLIVE_DISABLE_TELEMETRY": "1"})
    return work / "out" / "model"


def all_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


@pytest.fixture(scope="module")
def untied_qwen2(tmp_path_factory) -> Path:
    from tests.conftest import make_tiny_qwen

    return make_tiny_qwen(tmp_path_factory.mktemp("untied") / "tiny-qwen2-untied", "qwen2", tied=False)


@pytest.mark.parametrize(("family", "group_size", "symmetric", "embeds"),
                         [("qwen2", 32, False, False), ("qwen3", 64, True, False), ("untied", 64, True, True)])
def test_the_streamed_checkpoint_is_olive_rtn_bit_for_bit(tiny_models, untied_qwen2, tmp_path, family, group_size,
                                                          symmetric, embeds):
    # qwen2 has q/k/v biases and, asymmetric, zero points; qwen3 has q/k norms; the untied qwen2 its own lm_head,
    # and its embedding quantized too (in slices of rows, joined)
    model_dir = untied_qwen2 if family == "untied" else tiny_models[family]
    olive = olive_rtn(model_dir, tmp_path / "olive", group_size, symmetric, embeds)
    streamed = tmp_path / "streamed"
    facts = write_rtn_checkpoint(model_dir, streamed, bits=4, group_size=group_size, symmetric=symmetric,
                                 embeds=embeds)
    expected, got = all_tensors(olive), all_tensors(streamed)
    assert sorted(got) == sorted(expected)
    different = [name for name in expected
                 if got[name].dtype != expected[name].dtype or not got[name].equal(expected[name])]
    assert not different
    assert facts["quantized_linears"] == 7 * 2 and any(name.endswith(".qzeros") for name in got) == (not symmetric)
    assert ("model.embed_tokens.qweight" in got) == embeds
    assert json.loads((streamed / "config.json").read_text()) == json.loads((olive / "config.json").read_text())
    # written one decoder layer per shard (plus the table's), beside a shard index, and nothing left half-made
    assert len(list(streamed.glob("*.safetensors"))) == 1 + 2 and (streamed / "model.safetensors.index.json").is_file()
    assert not streamed.with_name("streamed.partial").exists()


@pytest.mark.slow  # two Olive builds of the same model: about a minute each
@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_the_bundle_is_the_same_as_the_in_memory_paths(tiny_models, tmp_path, family):
    # streamed: the streamed RTN, then the builder with its INT4 step per MatMul (the lm_head in two slices of
    # columns here); in memory: stock Olive, its Rtn pass and its ModelBuilder pass. Same bytes, so same drift.
    model_dir = tiny_models[family]
    plan = resolve_plan(resolve_model(str(model_dir)), load_target("raspberry-pi-5"), recipe_for_model_type(family))
    assert plan.engine_options.algorithm == "rtn" and plan.quantization.weights == "int4"

    streamed_work, streamed_out = tmp_path / "streamed-work", tmp_path / "streamed"
    for folder in (streamed_work, streamed_out):
        folder.mkdir()
    facts = backend_for(plan.engine).convert(plan, model_dir, streamed_work, streamed_out)
    assert "streamed_rtn" in facts

    # the in-memory path: Olive's Rtn pass over the whole model, then the same builder pass, in one workflow
    memory_work, memory_out = tmp_path / "memory-work", tmp_path / "memory"
    for folder in (memory_work, memory_out):
        folder.mkdir()
    config = olive_workflow(plan, model_dir, memory_work)
    config["input_model"]["model_path"] = str(model_dir)
    config["passes"] = {"rtn": {"type": "Rtn", "bits": 4, "group_size": plan.quantization.block_size,
                                "sym": plan.quantization.symmetric}, **config["passes"]}
    finish_model(plan, run_olive(config, memory_work, per_matmul_int4=False), memory_out)

    for name in ("model.onnx", "model.onnx.data"):
        assert (streamed_out / name).read_bytes() == (memory_out / name).read_bytes(), name


@pytest.mark.parametrize("algorithm", ["rtn", pytest.param("gptq", marks=pytest.mark.slow)])
def test_an_untied_int4_embedding_ships_quantized(untied_qwen2, tmp_path, algorithm):
    # after RTN or GPTQ the builder quantizes MatMuls only: the embedding of a model with its own lm_head is
    # quantized on the checkpoint, or the planned INT4 table would ship in float32 (4 bytes a weight the fit
    # check never counted)
    import onnx

    from edgeqwen.rungs import apply_rung, load_rung

    recipe = recipe_for_model_type("qwen2")
    recipe = apply_rung(recipe, load_rung("int4-gptq")) if algorithm == "gptq" else recipe
    plan = resolve_plan(resolve_model(str(untied_qwen2)), load_target("raspberry-pi-5"), recipe)
    assert plan.engine_options.algorithm == algorithm
    assert plan.quantization.embeddings == "int4" and not plan.model.tied_embeddings
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    facts = backend_for(plan.engine).convert(plan, untied_qwen2, work, out)
    if algorithm == "rtn":
        assert facts["streamed_rtn"]["embeddings"]
    else:
        assert [p["type"] for p in facts["olive_passes"]] == ["Gptq", "Rtn", "ModelBuilder"]
    model = onnx.load(out / "model.onnx", load_external_data=False)
    embedding = [n for n in model.graph.node if n.name.startswith("/model/embed_tokens/")]
    assert [n.op_type for n in embedding] == ["GatherBlockQuantized"]
    floats = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT
              and len(i.dims) == 2 and i.dims[0] * i.dims[1] >= 151936 * 128]
    assert not floats
