"""The shim as a token-level runtime: its one-file assembly, its worker mode, and the same answers as the
runtime driven directly. Everything runs the real demo bundle in ONNX Runtime GenAI (OpenVINO's worker is
covered in tests/test_openvino.py and tests/test_backends.py)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime_genai as og
import pytest

from edgeqwen.bundle.shim_file import SHIM_PACKAGE, AssemblyError, assemble
from edgeqwen.bundle.worker import BundleWorker, ships_worker
from edgeqwen.errors import WorkerError
from edgeqwen.shim import MODULES

PROMPT = [151644, 872, 198, 3838, 374, 264, 1140, 30, 151645, 198, 151644, 77091, 198]


def test_the_assembly_is_deterministic_and_is_what_bundles_ship(demo_bundle):
    text = assemble()
    assert text == assemble() == (demo_bundle / "shim.py").read_text()
    assert "from ." not in text and text.startswith("#!/usr/bin/env python3\n\"\"\"Run this bundle")
    compile(text, "shim.py", "exec")
    for module in MODULES:  # every module is in the file, under its own banner
        assert f"# {'-' * 70} {module}\n" in text


@pytest.mark.parametrize("change, problem", [
    (lambda src: src.replace("import sys\n", "import sys\nimport numpy\n", 1), "errors.py:4: imports numpy at module level"),
    (lambda src: src + "\n\ndef read_json():\n    pass\n", "bundle_files.py defines read_json, as edgeqwen/shim/errors.py does"),
    (lambda src: src + "\nfrom .cli import main\n", "imports main from .cli, which does not define it before errors"),
])
def test_the_assembly_refuses_what_would_break_the_one_file(tmp_path, change, problem):
    package = tmp_path / "shim"
    shutil.copytree(SHIM_PACKAGE, package)
    errors = package / "errors.py"
    errors.write_text(change(errors.read_text()))
    with pytest.raises(AssemblyError, match="cannot be assembled") as info:
        assemble(package, MODULES)
    assert problem in str(info.value)


def direct_logits(bundle, tokens):
    """Teacher-forced logits from onnxruntime-genai in this process, the shim not involved."""
    model = og.Model(str(bundle))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(tokens))
    generator = og.Generator(model, params)
    rows = []
    for token in tokens[:-1]:
        generator.append_tokens([token])
        rows.append(np.asarray(generator.get_logits()).reshape(-1))
    return np.stack(rows)


def test_worker_logits_and_greedy_tokens_are_the_runtime_s_own(demo_bundle):
    with BundleWorker(demo_bundle, threads=2) as worker:
        hello = worker.info
        assert hello["engine"] == "onnxruntime-genai" and hello["protocol"] == 1 and hello["threads"] == 2
        assert {"generate", "logits", "append", "rewind"} <= set(hello["capabilities"])
        assert hello["eos_token_ids"] == [151645, 151643] and hello["context_length"] == 4096
        logits, facts = worker.logits(PROMPT)
        greedy = worker.generate(PROMPT, 12)
        assert worker.stats()["peak_rss_bytes"] > 50 * 2**20
    assert logits.shape == (len(PROMPT) - 1, 151936) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, direct_logits(demo_bundle, PROMPT), rtol=1e-5, atol=1e-5)
    assert facts["inference_precision"] == "float32"
    # Row i predicts token i + 1: greedy's first token is the argmax of the prompt's last row.
    model = og.Model(str(demo_bundle))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(PROMPT) + 12, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(PROMPT)
    first_row = np.asarray(generator.get_logits()).reshape(-1)
    expected = []
    while not generator.is_done():
        generator.generate_next_token()
        expected.append(int(generator.get_next_tokens()[0]))
    assert greedy["tokens"] == expected and greedy["tokens"][0] == int(first_row.argmax())
    assert greedy["finish_reason"] in ("stop", "length") and greedy["ttft_s"] > 0 and greedy["decode_s"] > 0


def test_worker_tokenizer_and_template_agree_with_hugging_face(demo_bundle):
    from transformers import AutoTokenizer

    from edgeqwen.demo.assets import demo_model_dir

    reference = AutoTokenizer.from_pretrained(demo_model_dir())
    texts = ["What does os.path.join do?", "  spaces\tand\nnewlines  ", "naïve café — ünïcode 😀", "x = [i*i for i in y]"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"}]
    with BundleWorker(demo_bundle) as worker:
        assert worker.encode(texts) == [reference(t)["input_ids"] for t in texts]
        for think in (False, True):
            text, ids = worker.render(messages, think=think)
            expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                     enable_thinking=think)
            assert text == expected and ids == reference(expected)["input_ids"]


def test_worker_errors_are_answers_and_the_worker_goes_on(demo_bundle):
    with BundleWorker(demo_bundle) as worker:
        with pytest.raises(WorkerError, match="unknown op 'train'"):
            worker.request("train")
        with pytest.raises(WorkerError, match="at least two tokens"):
            worker.logits([42])
        assert worker.encode(["still here"]) == [worker.encode(["still here"])[0]]


def test_worker_refuses_a_folder_it_cannot_run_by_name(tmp_path):
    with pytest.raises(WorkerError, match="no manifest.json, and not a folder one runtime reads"):
        BundleWorker(tmp_path)


def test_worker_stdout_carries_only_the_protocol(demo_bundle):
    """Whatever the runtime prints goes to stderr: every stdout line is a JSON answer."""
    requests = "".join(json.dumps(r) + "\n" for r in ({"op": "encode", "texts": ["hi"]}, {"op": "stats"},
                                                       {"op": "nope"}, {"op": "quit"}))
    done = subprocess.run([sys.executable, demo_bundle / "shim.py", "worker", "--device", "cpu"], input=requests,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a.get("op") for a in answers][:1] == ["hello"] and len(answers) == 4
    assert [a["ok"] for a in answers] == [True, True, True, False]


def test_a_plain_export_and_an_old_bundle_run_through_this_edgeqwen_s_shim(demo_bundle, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(demo_bundle, plain)
    (plain / "manifest.json").unlink()
    (plain / "shim.py").unlink()  # another tool's export: no manifest, no shim
    assert not ships_worker(plain)
    cpus = len(os.sched_getaffinity(0))
    with BundleWorker(plain) as worker:
        assert worker.info["engine"] == "onnxruntime-genai"
        assert worker.info["threads"] == (cpus if cpus < 4 else None)  # the Pi's 4 threads, at most the CPUs here
        assert len(worker.generate(PROMPT, 3, ignore_eos=True)["tokens"]) == 3
