"""Tokenizer and chat-template parity (edgeqwen/parity.py): each runtime against Hugging Face, in every build.

The ONNX Runtime GenAI side is the demo bundle (tests/conftest.py); the OpenVINO side a tiny Qwen3 built
for the NPU target (run on the CPU). A changed tokenizer.json in a bundle, a changed chat template and a
changed Hugging Face tokenizer each fail the check with the first difference named; a build whose
runtime tokenizer disagrees fails and leaves nothing behind.
"""

import json
import shutil

import pytest

from edgeqwen import parity
from edgeqwen.backends.ort_genai import OrtGenaiBackend
from edgeqwen.cache import BuildCache
from edgeqwen.demo.assets import TOKENIZER_FILES, demo_model_dir
from edgeqwen.errors import ParityError

NPU = "intel-core-ultra-npu"
SWAPPED = ("Hello", "Ġworld")  # two vocabulary entries of the test set's first string, "Hello, world!"


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_dir())


@pytest.fixture(scope="module")
def ov_bundle(tiny_models, tmp_path_factory):
    """A tiny Qwen3 (Qwen's full tokenizer and Qwen3 template) built for the NPU target: the same request as
    tests/test_openvino.py and tests/test_backends.py make, so in a whole run it comes from the build cache."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("parity-ov") / "npu"
    result = run_cli("build", "--model", tiny_models["qwen3"], "--target", NPU, "--out", out, "--json",
                     "--eval-tokens", "256")
    assert result.code == 0, result.err
    return out, json.loads(result.out)


def swap_vocabulary(tokenizer_json, a=SWAPPED[0], b=SWAPPED[1]):
    """Give two tokens each other's ids; merges name tokens, not ids, so the file stays a valid tokenizer."""
    doc = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab = doc["model"]["vocab"]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tokenizer_json.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return vocab[b], vocab[a]  # the ids Hugging Face's own file gives a and b


def swapped(ids, pair):
    x, y = pair
    return [y if i == x else x if i == y else i for i in ids]


def test_the_test_set_covers_what_it_promises(hf_tokenizer):
    testset = parity.load_testset()
    text = "".join(testset.strings)
    for wanted in ("你好", "東京", "👨‍👩‍👧‍👦", "🇯🇵", "\r\n", "\t\t", "   \n", "12345678901234567890", "<think>",
                   "</tool_call>", "<|im_start|>"):
        assert wanted in text, wanted
    generated = parity.added_token_strings(hf_tokenizer)
    added = [t.content for t in hf_tokenizer.added_tokens_decoder.values()]
    assert set(added) <= set(generated) and {"<think>", "</think>", "<tool_call>", "<|im_end|>"} <= set(added)
    with_tools = [c for c in testset.conversations if c.tools]
    assert len({t["function"]["name"] for c in with_tools for t in c.tools}) == 2
    assert any(len(m.get("tool_calls", [])) > 1 for c in with_tools for m in c.messages)  # parallel calls
    assert any(not c.tools for c in testset.conversations)
    roles = {m["role"] for c in testset.conversations for m in c.messages}
    assert roles == {"system", "user", "assistant", "tool"}


def test_an_ort_bundle_matches_hugging_face_and_its_manifest_says_so(demo_bundle, cli):
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    record = manifest["parity"]
    assert record["result"] == "passed" and record["first_mismatch"] is None and record["think"] == [False, True]
    assert record["testset_sha256"] == parity.load_testset().sha256
    again = parity.check_bundle(demo_bundle, demo_model_dir())
    assert again == record and again["strings"] > 50 and again["conversations"] >= 6
    verified = cli("verify", demo_bundle)
    assert verified.code == 0 and "tokenizer parity passed" in verified.out


def test_an_openvino_bundle_matches_hugging_face(ov_bundle, tiny_models):
    bundle, report = ov_bundle
    assert report["parity"]["result"] == "passed"
    assert json.loads((bundle / "manifest.json").read_text())["parity"] == report["parity"]
    assert parity.check_bundle(bundle, tiny_models["qwen3"])["result"] == "passed"


def test_a_changed_tokenizer_json_in_a_bundle_fails_naming_the_string_and_both_id_lists(demo_bundle, tmp_path,
                                                                                         hf_tokenizer):
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_bundle, bundle)
    pair = swap_vocabulary(bundle / "tokenizer.json")
    expected = hf_tokenizer("Hello, world!")["input_ids"]
    with pytest.raises(ParityError) as failure:
        parity.check_bundle(bundle, demo_model_dir())
    message, record = str(failure.value), failure.value.record
    assert "string 0 of the test set, 'Hello, world!', encodes differently (first at token 0)" in message
    assert f"Hugging Face: {expected}" in message and f"runtime:      {swapped(expected, pair)}" in message
    assert record["result"] == "failed" and record["first_mismatch"]["runtime"] == swapped(expected, pair)


def test_a_changed_hugging_face_tokenizer_fails_against_an_openvino_bundle(ov_bundle, tiny_models, tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in TOKENIZER_FILES:
        shutil.copy(tiny_models["qwen3"] / name, reference / name)
    swap_vocabulary(reference / "tokenizer.json")
    with pytest.raises(ParityError, match="string 0 of the test set, 'Hello, world!'") as failure:
        parity.check_bundle(ov_bundle[0], reference)
    assert "(openvino)" in str(failure.value)


def test_a_changed_chat_template_fails_naming_the_conversation_and_both_texts(ov_bundle, tiny_models, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(ov_bundle[0], bundle)
    template = bundle / "chat_template.jinja"
    template.write_text(template.read_text().replace("# Tools", "# Tool list"))
    with pytest.raises(ParityError) as failure:
        parity.check_bundle(bundle, tiny_models["qwen3"])
    first = next(c.name for c in parity.load_testset().conversations if c.tools)
    message = str(failure.value)
    assert f"conversation {first!r} (thinking off) renders differently from character" in message
    assert "\\n\\n# Tools\\n\\nYou may" in message and "\\n\\n# Tool list\\n\\nYou" in message


def test_a_runtime_that_refuses_a_conversation_fails_naming_it(demo_bundle, tmp_path):
    """A template that never writes the tools: the ONNX Runtime shim refuses to render them, and that is a
    difference too (transformers renders them from the model's own template)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(demo_bundle, bundle)
    template = bundle / "chat_template.jinja"
    template.write_text(template.read_text().replace("{%- if tools %}", "{%- if false %}", 1))
    with pytest.raises(ParityError) as failure:
        parity.check_bundle(bundle, demo_model_dir())
    first = next(c.name for c in parity.load_testset().conversations if c.tools)
    assert f"conversation {first!r} (thinking off) is rendered by Hugging Face, but the runtime refused it" in str(
        failure.value)


def test_a_build_whose_runtime_tokenizer_disagrees_fails_and_leaves_nothing(cli, demo_bundle, tmp_path,
                                                                             monkeypatch):
    """The bundle's tokenizer.json is changed where the pipeline has the backend write the bundle's runtime
    files; the real check in the real pipeline refuses it. The demo bundle's own rung again, with its
    conversion from the session's build cache (a few seconds) and never a cached bundle."""
    real_finalize, real_lookup = OrtGenaiBackend.finalize, BuildCache.lookup

    def finalize_then_change_the_tokenizer(self, plan, bundle_dir):
        real_finalize(self, plan, bundle_dir)
        swap_vocabulary(bundle_dir / "tokenizer.json")

    monkeypatch.setattr(OrtGenaiBackend, "finalize", finalize_then_change_the_tokenizer)
    monkeypatch.setattr(BuildCache, "lookup", lambda cache, kind, key: None if kind == "bundle"
                        else real_lookup(cache, kind, key))
    rung = json.loads((demo_bundle / "manifest.json").read_text())["quality"]["chosen"]
    out = tmp_path / "bundles" / "pi5"
    chosen = ["--rung", rung] if rung else ["--quality", "fixed"]
    result = cli("build", "--target", "raspberry-pi-5", *chosen, "--out", out)
    assert result.code == 1, result.err
    assert f"was not written to {out}" in result.err and "'Hello, world!'" in result.err
    assert "Hugging Face: [9707, 11, 1879, 0]" in result.err and "runtime:      [1879, 11, 9707, 0]" in result.err
    assert "Traceback" not in result.err
    assert list((tmp_path / "bundles").iterdir()) == []  # no bundle, no staging folder, no report
