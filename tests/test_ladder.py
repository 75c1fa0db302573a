"""The quality ladder: rungs from recipes/rungs/, smallest first, the first within the drift budget wins."""

import json
import shutil
from pathlib import Path

import onnx
import pytest


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def quality_of(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["quality"] == json.loads((bundle / "drift.json").read_text())["quality"]
    return manifest["quality"]


def test_a_loose_budget_stops_at_the_smallest_rung(demo_bundle):
    """The demo bundle is built with the default (auto) quality and the target's budget."""
    quality = quality_of(demo_bundle)
    assert quality["mode"] == "auto" and quality["chosen"] == "int4-rtn"
    assert [(row["rung"], row["status"]) for row in quality["tried"]] == [("int4-rtn", "passed")]
    assert "Quality ladder: `int4-rtn` chosen" in (demo_bundle / "drift.md").read_text()


def test_rungs_are_read_from_recipes_and_ordered_by_estimated_size(cli, tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    shutil.copytree(PROJECT_ROOT / "recipes", recipes)
    (recipes / "rungs" / "int4-int8-head-b16.toml").write_text(
        'name = "int4-int8-head-b16"\ndescription = "INT4 in blocks of 16, INT8 tables"\n'
        'engines = ["onnxruntime-genai"]\nmodel_types = ["qwen3"]\n'
        '[quantization]\nblock_size = 16\nembeddings = "int8"\nlm_head = "int8"\n'
    )
    monkeypatch.setenv("EDGEQWEN_RECIPES_DIR", str(recipes))
    result = cli("build", "--target", "raspberry-pi-5", "--dry-run")
    assert result.code == 0, result.err
    ladder = json.loads(result.out)["quality_ladder"]
    names = [row["rung"] for row in ladder]
    assert "int4-int8-head-b16" in names and not any(n.startswith("nncf") for n in names)  # engine filter
    sizes = [row["estimated_weights_mb"] for row in ladder]
    assert sizes == sorted(sizes) and names[0] == "int4-rtn"
    assert names.index("int4-int8-head-b16") > names.index("int4-int8-tables")  # finer blocks cost scale bytes

    npu = json.loads(cli("build", "--target", "intel-core-ultra-npu", "--dry-run").out)["quality_ladder"]
    assert npu[0]["rung"] == "nncf-int4" and {"rung", "skipped"} <= set(npu[-1])  # INT8 is refused on the NPU
    assert "35641" in npu[-1]["skipped"]


@pytest.mark.slow  # builds three or four rungs, GPTQ among them
def test_a_tight_budget_climbs_past_plain_int4(cli, tmp_path):
    out = tmp_path / "tight"
    result = cli("build", "--target", "raspberry-pi-5", "--out", out, "--eval-tokens", "256", "--json",
                 "--max-mean-kld", "0.002")
    assert result.code == 0, result.err
    quality = quality_of(out)
    rows = quality["tried"]
    assert rows[0]["rung"] == "int4-rtn" and rows[0]["status"] == "failed" and rows[0]["misses"]
    assert quality["chosen"] == rows[-1]["rung"] != "int4-rtn" and rows[-1]["status"] == "passed"
    assert all(row["status"] == "failed" for row in rows[:-1])
    assert rows[-1]["mean_kld"] <= 0.002 < min(row["mean_kld"] for row in rows[:-1])
    sizes = [row["estimated_weights_bytes"] for row in rows]
    assert sizes == sorted(sizes)
    report = json.loads(result.out)
    assert set(report["quality"]["rung_seconds"]) == {row["rung"] for row in rows}  # build time per rung
    assert not (tmp_path / "tight.drift-rejected").exists()


@pytest.mark.slow
def test_an_impossible_budget_fails_with_the_whole_table(cli, tmp_path):
    out = tmp_path / "impossible"
    result = cli("build", "--target", "raspberry-pi-5", "--out", out, "--eval-tokens", "256",
                 "--max-mean-kld", "0.0000001")
    assert result.code == 1
    assert "no rung of the quality ladder meets the drift budget" in result.err
    for rung in ("int4-rtn", "int4-blocks-16", "int4-int8-tables", "int8"):
        assert rung in result.err
    assert result.err.count("failed") >= 4 and "missed: mean_kld" in result.err
    assert not out.exists()


@pytest.mark.slow  # over 40 s: a real conversion of its own
def test_a_rung_can_be_built_on_its_own_awq_end_to_end(cli, tiny_models, tmp_path):
    """NNCF's AWQ + scale estimation, fed from the shipped calibration text, on a tiny Qwen3."""
    out = tmp_path / "awq"
    result = cli("build", "--model", tiny_models["qwen3"], "--target", "intel-core-ultra-npu", "--out", out,
                 "--rung", "nncf-int4-awq", "--eval-tokens", "128", "--json")
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    nncf = manifest["engine"]["nncf_config"]
    assert nncf["quant_method"] == "awq" and nncf["scale_estimation"] is True and nncf["num_samples"] == 32
    assert manifest["engine"]["calibration"]["source"] == "edgeqwen corpus (train split)"
    assert manifest["plan"]["recipe"] == "qwen3+nncf-int4-awq" and manifest["quality"]["mode"] == "fixed"


@pytest.mark.slow  # over 40 s: a real conversion of its own
def test_gptq_rung_end_to_end_with_user_calibration_text(cli, tiny_models, tmp_path):
    """Olive's GPTQ pass before ModelBuilder, fitted on the user's --calib-data, on a tiny Qwen2."""
    from edgeqwen.drift.evaldata import load_eval_data

    calib = tmp_path / "my_domain.txt"
    calib.write_text("\n\n".join(r["text"] for r in load_eval_data().records if "text" in r))
    out = tmp_path / "gptq"
    result = cli("build", "--model", tiny_models["qwen2"], "--target", "x86-64-laptop", "--out", out,
                 "--rung", "int4-gptq", "--calib-data", calib, "--eval-tokens", "128", "--json")
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plan"]["engine_options"]["algorithm"] == "gptq"
    assert manifest["plan"]["calibration"] == {"source": "my_domain.txt", "sha256": load_eval_data(calib).sha256}
    assert [p["type"] for p in manifest["engine"]["olive_passes"]] == ["Gptq", "ModelBuilder"]
    assert manifest["engine"]["calibration"]["source"] == "my_domain.txt"
    assert manifest["engine"]["graph_repairs"]["shared_embedding"] is True
    graph = onnx.load(out / "model.onnx", load_external_data=False).graph
    quantized = [n.name for n in graph.node if n.op_type == "MatMulNBits"]
    # GPTQ's layers arrive already quantized (named by the builder's quantized-model path), the lm_head by RTN.
    assert any(name.startswith("/model/layers.") for name in quantized) and len(quantized) > 4
    assert manifest["drift"]["passed"] is True


def test_bad_calibration_file_is_refused_before_any_work(cli, tmp_path):
    missing = cli("build", "--target", "x86-64-laptop", "--rung", "int4-gptq", "--calib-data", tmp_path / "no.jsonl",
                  "--out", tmp_path / "b")
    assert missing.code == 2 and "--calib-data" in missing.err and "no.jsonl" in missing.err
    assert not (tmp_path / "b").exists()


def test_a_gated_build_hands_back_its_row_instead_of_raising(tmp_path):
    """What the ladder climbs with: a rung over budget comes back as a result (its row, the refusal), and
    nothing reaches the destination."""
    from edgeqwen.cache import BuildCache
    from edgeqwen.pipeline import BuildRequest, build_gated

    out = tmp_path / "tight"
    request = BuildRequest(target="raspberry-pi-5", out=out, eval_tokens=256, rung="int4-rtn",
                           drift_overrides={"max_mean_kld": 1e-7})
    gated = build_gated(request, BuildCache(), mode="auto")
    assert gated.result is None and not out.exists()
    assert (gated.row.rung, gated.row.status) == ("int4-rtn", "failed") and gated.row.misses
    assert gated.row.engine_options == {"accuracy_level": 4, "algorithm": "rtn"}
    assert "misses its drift budget" in gated.refusal and (tmp_path / "tight.drift-rejected" / "drift.json").is_file()
