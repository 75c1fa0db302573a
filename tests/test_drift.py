"""Drift: the metrics against a plain independent computation, and the gate on real demo-model bundles."""

import json
import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeqwen.drift.evaldata import EvalDataError, load_eval_data
from edgeqwen.drift.evaluate import first_divergence
from edgeqwen.drift.gate import check_decode
from edgeqwen.drift.metrics import summarize, token_metrics


def reference_metrics(ref, q, targets):
    """Straightforward loops, one row at a time, in Python floats: the independent check."""
    kld, agree, nll_r, nll_q = [], [], [], []
    for row in range(len(targets)):
        zr = math.log(sum(math.exp(v) for v in ref[row]))
        zq = math.log(sum(math.exp(v) for v in q[row]))
        p = [math.exp(v - zr) for v in ref[row]]
        kld.append(sum(p[i] * ((ref[row][i] - zr) - (q[row][i] - zq)) for i in range(len(p))))
        agree.append(int(np.argmax(ref[row]) == np.argmax(q[row])))
        nll_r.append(zr - ref[row][targets[row]])
        nll_q.append(zq - q[row][targets[row]])
    return kld, agree, nll_r, nll_q


def test_metrics_match_an_independent_computation():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 3, size=(7, 11)).astype(np.float32)
    q = (ref + rng.normal(0, 0.5, size=ref.shape)).astype(np.float32)
    targets = rng.integers(0, 11, size=7)
    m = token_metrics(ref, q, targets)
    kld, agree, nll_r, nll_q = reference_metrics(ref.tolist(), q.tolist(), targets.tolist())
    np.testing.assert_allclose(m.kld, kld, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(m.top1_agree, np.array(agree, dtype=bool))
    np.testing.assert_allclose(m.nll_reference, nll_r, rtol=1e-9)
    np.testing.assert_allclose(m.nll_bundle, nll_q, rtol=1e-9)
    s = summarize(m)
    assert s["ppl_ratio"] == pytest.approx(math.exp(np.mean(nll_q)) / math.exp(np.mean(nll_r)), rel=1e-12)
    assert s["p95_kld"] == pytest.approx(np.percentile(kld, 95))


def test_identical_logits_have_zero_drift_and_alignment_is_checked():
    logits = np.random.default_rng(1).normal(size=(5, 9))
    m = token_metrics(logits, logits.copy(), np.array([1, 2, 3, 4, 0]))
    assert m.kld.max() < 1e-12 and m.top1_agree.all()
    with pytest.raises(ValueError, match="misaligned"):
        token_metrics(logits, logits[:-1], np.array([1, 2, 3, 4, 0]))


def test_extreme_logits_stay_finite():
    ref = np.array([[1000.0, 0.0, -1000.0]])
    q = np.array([[0.0, 1000.0, -1000.0]])
    m = token_metrics(ref, q, np.array([0]))
    assert m.kld[0] == pytest.approx(1000.0) and np.isfinite(m.nll_bundle).all()


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2


def test_a_bundle_that_decodes_otherwise_than_it_was_measured_misses_the_gate():
    agreeing = [{"decode_checked": 24, "decode_disagreements": 0}] * 3
    assert check_decode(agreeing) == []
    misses = check_decode([*agreeing, {"decode_checked": 24, "decode_disagreements": 6}])
    assert [(m.metric, m.limit, m.kind) for m in misses] == [("decode_agreement", 1.0, "min")]
    assert misses[0].value == pytest.approx(90 / 96)
    assert "at 6 of 96 generated positions" in misses[0].describe()


def test_eval_data_formats(tmp_path):
    txt = tmp_path / "domain.txt"
    txt.write_text("Some domain text. " * 20)
    assert load_eval_data(txt).records[0]["text"].startswith("Some domain")
    jsonl = tmp_path / "chats.jsonl"
    jsonl.write_text('{"text": "a"}\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    assert len(load_eval_data(jsonl).records) == 2
    jsonl.write_text('{"text": "a"}\n{"prompt": "b"}\n')
    with pytest.raises(EvalDataError, match=r"chats.jsonl:2: expected an object"):
        load_eval_data(jsonl)
    with pytest.raises(EvalDataError, match=r"unknown format '.csv'"):
        (tmp_path / "x.csv").write_text("a,b")
        load_eval_data(tmp_path / "x.csv")


@pytest.fixture(scope="module")
def demo_bundles(tmp_path_factory):
    from edgeqwen.cli import main

    root = tmp_path_factory.mktemp("drift")
    bundles = {}
    for precision in ("int4", "int8"):
        bundles[precision] = root / precision
        assert main(["build", "--target", "raspberry-pi-5", "--precision", precision, "--out", str(bundles[precision])]) == 0
    return bundles


def drift_of(bundle):
    return json.loads((bundle / "drift.json").read_text())


def test_int8_drifts_much_less_than_int4_and_both_pass(demo_bundles):
    int4, int8 = drift_of(demo_bundles["int4"]), drift_of(demo_bundles["int8"])
    assert int4["passed"] and int8["passed"]
    assert int8["summary"]["mean_kld"] < int4["summary"]["mean_kld"] / 5
    assert int8["summary"]["top1_agreement"] > int4["summary"]["top1_agreement"]
    # The demo model is a real model: its perplexity means something.
    assert int4["summary"]["ppl_reference"] < 200


def test_report_files_exist_parse_and_are_in_the_manifest(demo_bundles):
    import matplotlib.image

    bundle = demo_bundles["int4"]
    report = drift_of(bundle)
    assert report["eval_data"]["tokens"] > 1000 and len(report["eval_data"]["sha256"]) == 64
    assert report["reference"]["dtype"] == "float32" and report["generation"]
    assert all(g["decode_checked"] > 0 and g["decode_disagreements"] == 0 for g in report["generation"])
    assert "# Accuracy drift: PASSED" in (bundle / "drift.md").read_text()
    image = matplotlib.image.imread(bundle / "drift.png")
    assert image.shape[0] > 100 and image.shape[1] > 300
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {"drift.json", "drift.md", "drift.png"} <= set(manifest["files"])
    assert manifest["drift"]["summary"] == report["summary"]


def test_eval_reproduces_the_builds_figures(demo_bundles, cli):
    result = cli("eval", demo_bundles["int4"], "--json")
    assert result.code == 0, result.err
    again = json.loads(result.out)["summary"]
    built = drift_of(demo_bundles["int4"])["summary"]
    for key, value in built.items():
        assert again[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_over_budget_build_fails_leaves_no_bundle_and_keeps_the_report(cli, tmp_path):
    out = tmp_path / "tight"
    result = cli("build", "--target", "raspberry-pi-5", "--out", out, "--eval-tokens", "256", "--quality", "fixed",
                 "--max-mean-kld", "0.000001", "--min-top1-agreement", "0.999")
    assert result.code == 1
    assert "misses its drift budget" in result.err and "mean_kld" in result.err and "top1_agreement" in result.err
    assert "lm_head" in result.err  # says what to try
    assert not out.exists()
    kept = tmp_path / "tight.drift-rejected"
    assert json.loads((kept / "drift.json").read_text())["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tight.drift-rejected"]


def test_a_damaged_bundle_fails_eval(demo_bundles, tmp_path, cli):
    """Scales corrupted by a factor of 3 in every quantized layer: eval must catch it."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(demo_bundles["int4"], damaged)
    corrupt_scales(damaged / "model.onnx")
    result = cli("eval", damaged)
    assert result.code == 1
    assert "FAILED" in result.out and "mean_kld" in result.out


def corrupt_scales(model_path, factor=3.0):
    model = onnx.load(model_path)
    for init in model.graph.initializer:
        if init.name.endswith(("_scale", "_scales")):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    data = model_path.parent / "model.onnx.data"
    data.unlink(missing_ok=True)
    onnx.save(model, model_path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=1024)


def test_a_damaged_conversion_is_caught_by_the_gate_and_leaves_no_bundle(cli, tmp_path, monkeypatch):
    """The engine's output is damaged (scales x3) inside a real build; the gate must refuse it."""
    from edgeqwen.backends import ort_genai

    real_finish = ort_genai.finish_model

    def finish_then_damage(plan, olive_output, out_dir):
        repairs = real_finish(plan, olive_output, out_dir)
        corrupt_scales(out_dir / "model.onnx")
        return repairs

    monkeypatch.setattr(ort_genai, "finish_model", finish_then_damage)
    out = tmp_path / "damaged"
    result = cli("build", "--target", "raspberry-pi-5", "--out", out, "--eval-tokens", "256", "--no-cache",
                 "--quality", "fixed")
    assert result.code == 1 and "misses its drift budget" in result.err
    assert not out.exists() and (tmp_path / "damaged.drift-rejected" / "drift.md").is_file()
