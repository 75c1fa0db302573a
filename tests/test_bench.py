"""`edgeqwen bench`, the bytes-per-token model behind the roofline, the published shapes and --skip-drift."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeqwen.bench.measure import bench_folder
from edgeqwen.bench.traffic import bytes_per_token, checkpoint_bytes_per_token, plan_bytes_per_token
from edgeqwen.pipeline import BuildRequest, resolve
from edgeqwen.shapes import shape_names, shape_source


def test_bench_reports_speed_memory_and_roofline_for_a_bundle(cli, demo_bundle):
    result = cli("bench", demo_bundle, "--prompt-tokens", 32, "--new-tokens", 8, "--runs", 2, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["kind"] == "onnxruntime-genai" and report["runs"] == 2
    for figure in ("ttft_s", "prefill_tok_s", "decode_tok_s"):
        assert 0 < report[figure]["low"] <= report[figure]["median"] <= report[figure]["high"]
    assert report["peak_rss_bytes"] > 50 * 2**20  # the runtime and the model are really loaded
    assert report["host_bandwidth_gbps"] > 0.5
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    # The shared INT4 table is read by the lm_head every token: everything in the model files is read.
    assert report["bytes_per_token"] == manifest["speed"]["bytes_per_token"]
    assert 0.95 * report["model_bytes"] <= report["bytes_per_token"] <= report["model_bytes"]
    ceiling = report["host_bandwidth_gbps"] * 1e9 / report["bytes_per_token"]
    assert report["roofline_tok_s"] == pytest.approx(ceiling)
    assert report["roofline_fraction"] == pytest.approx(report["decode_tok_s"]["median"] / ceiling)
    target = report["target"]
    assert target["name"] == "raspberry-pi-5" and target["memory_bandwidth_gbps"] == 17.1
    assert target["predicted_decode_tok_s"] == pytest.approx(target["roofline_tok_s"] * report["roofline_fraction"])

    text = cli("bench", demo_bundle, "--prompt-tokens", 16, "--new-tokens", 4, "--runs", 1, "--threads", 0)
    assert text.code == 0, text.err
    assert "default threads" in text.out  # as the bundle is run: the target's threads, at most the CPUs here
    assert "decode" in text.out and "roofline" in text.out and "on raspberry-pi-5" in text.out


def test_bench_runs_a_hugging_face_checkpoint_in_pytorch(tiny_models):
    result = bench_folder(tiny_models["qwen3"], prompt_tokens=16, new_tokens=4, runs=1, threads=1)
    assert result.kind == "transformers" and result.threads == 1
    assert result.decode_tok_s.median > 0
    # Tied embeddings: the table is the lm_head's weight too, so all weights are read, at float32.
    assert result.bytes_per_token == checkpoint_bytes_per_token(tiny_models["qwen3"])


def test_bench_refuses_what_it_cannot_run(cli, tmp_path, demo_bundle):
    missing = cli("bench", tmp_path / "nothing")
    assert missing.code != 0 and "no such folder" in missing.err
    empty = cli("bench", tmp_path)
    assert empty.code != 0 and "genai_config.json" in empty.err and "manifest.json" in empty.err
    runs = cli("bench", demo_bundle, "--runs", 0)
    assert runs.code == 2 and "argument --runs: 0: expected a whole number from 1 to 1000" in runs.err
    threads = cli("bench", demo_bundle, "--threads", -1)
    assert threads.code == 2 and "argument --threads: -1: expected a whole number from 0 to 1024" in threads.err


def test_a_table_that_is_only_gathered_is_not_read_per_token(tmp_path):
    """The stock ORT builder's FP32 embedding: one row per token, not the table."""
    table = numpy_helper.from_array(np.zeros((1000, 16), np.float32), "embed")
    weight = numpy_helper.from_array(np.zeros((16, 1000), np.float32), "lm_head")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["embed", "ids"], ["hidden"]), helper.make_node("MatMul", ["hidden", "lm_head"], ["logits"])],
        "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], [table, weight])
    onnx.save(helper.make_model(graph), tmp_path / "model.onnx")
    (tmp_path / "genai_config.json").write_text(json.dumps({"model": {"decoder": {"filename": "model.onnx"}}}))
    assert bytes_per_token(tmp_path) == 16 * 1000 * 4  # the lm_head only


def test_plan_estimate_matches_the_built_bundle(demo_bundle):
    resolved = resolve(BuildRequest(target="raspberry-pi-5"))
    built = json.loads((demo_bundle / "manifest.json").read_text())["speed"]["bytes_per_token"]
    assert plan_bytes_per_token(resolved.plan) == pytest.approx(built, rel=0.05)


def test_shipped_shapes_have_the_published_parameter_counts():
    published = {"Qwen2.5-0.5B": 494_032_768, "Qwen2.5-1.5B": 1_543_714_304, "Qwen2.5-3B": 3_085_938_688,
                 "Qwen2.5-7B": 7_615_616_512, "Qwen3-0.6B": 596_049_920, "Qwen3-1.7B": 1_720_574_976}
    assert {name: shape_source(name).num_parameters for name in shape_names()} == published


def test_targets_show_predicts_decode_speed(cli):
    pi = json.loads(cli("targets", "show", "raspberry-pi-5", "--json").out)["decode_predictions"]
    rows = {row["model"]: row for row in pi}
    assert {"Qwen/Qwen2.5-0.5B", "Qwen/Qwen3-0.6B", "edgeqwen/demo-qwen3-4l-h128"} <= set(rows)
    small, large = rows["Qwen/Qwen2.5-0.5B"], rows["Qwen/Qwen3-1.7B"]
    assert small["ceiling_tok_s"] == pytest.approx(17.1e9 / (small["mb_per_token"] * 2**20), rel=0.01)
    assert large["ceiling_tok_s"] < small["ceiling_tok_s"] and 0 < small["predicted_tok_s"] < small["ceiling_tok_s"]
    npu = json.loads(cli("targets", "show", "intel-core-ultra-npu", "--json").out)["decode_predictions"]
    assert all(row["predicted_tok_s"] is None for row in npu)  # a CPU-measured fraction says nothing of an NPU
    assert "predicted ~" in cli("targets", "show", "raspberry-pi-5").out


@pytest.mark.slow  # over 40 s: a real conversion of its own
def test_skip_drift_is_recorded_and_never_served_for_a_gated_build(cli, tiny_models, tmp_path):
    out = tmp_path / "skipped"
    result = cli("build", "--model", tiny_models["qwen2"], "--target", "x86-64-laptop", "--out", out, "--skip-drift")
    assert result.code == 0, result.err
    assert "drift    SKIPPED (--skip-drift" in result.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["drift"]["skipped"] is True and "random-weight" in manifest["drift"]["reason"]
    assert not (out / "drift.json").exists() and manifest["quality"]["mode"] == "fixed"
    gated = cli("build", "--model", tiny_models["qwen2"], "--target", "x86-64-laptop", "--out", out, "--force",
                "--quality", "fixed", "--json")
    assert gated.code == 0, gated.err
    assert json.loads(gated.out)["cache_hit"] != "bundle"
    assert json.loads((out / "manifest.json").read_text())["drift"]["passed"] is True


def test_peak_rss_is_the_worker_s_own_not_its_parent_s(demo_bundle):
    """Linux's ru_maxrss keeps the parent's RSS at fork across exec; the worker reads its own high-water mark."""
    ballast = np.ones(1024**3, dtype=np.uint8)  # this process now holds over 1 GB
    result = bench_folder(demo_bundle, prompt_tokens=16, new_tokens=4, runs=1)
    assert ballast[-1] == 1
    assert 50 * 2**20 < result.peak_rss_bytes < 700 * 2**20
