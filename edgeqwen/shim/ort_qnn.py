"""ONNX Runtime GenAI on a Qualcomm NPU: the QNN execution provider's plugin library (onnxruntime-qnn).

The bundle is a decoder pipeline: embeddings and lm_head models on the CPU, and a prompt model and a
one-token model compiled for the HTP (EPContext binaries). The prompt model takes a fixed window of
tokens, so the runtime pads a prompt up to whole windows, and onnxruntime-genai 0.14 aborts the process
(an assertion, not an exception) when the search's max_length is shorter than the padded prompt, or when
tokens are appended to a running sequence one at a time. This adapter keeps to what works: the search
length is at least the padded prompt, a sequence takes its prompt once (no append, no rewind), and
teacher forcing feeds whole windows and reads every window position's logits from the lm_head's output.

`--device cpu` runs the same QDQ models, uncompiled, from the bundle's cpu/ folder on plain ONNX Runtime
GenAI: the graph names there are the compiled ones' without `_ctx`, and a small genai_config in a
temporary folder points at them (og.Config reads one folder, and its overlay cannot clear a provider).
"""

import atexit
import json
import os
import shutil
import tempfile

from .errors import ShimError
from .ort_genai import OrtGenaiRuntime, OrtSession
from .runtime import APPEND, CONSTRAIN, GENERATE, LOGITS, REWIND

CPU_FOLDER = "cpu"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


class OrtQnnRuntime(OrtGenaiRuntime):
    engine = "onnxruntime-qnn"
    capabilities = frozenset({GENERATE, LOGITS, CONSTRAIN})

    def __init__(self, bundle_dir, device=None, threads=None):
        super().__init__(bundle_dir, device, threads)
        self.window = self.genai["model"]["decoder"]["sliding_window"]["window_size"]
        # A prompt is padded to whole windows, and the padded prompt and one new token must fit the context.
        self.max_prompt_tokens = (self.context_length - 1) // self.window * self.window
        # onnxruntime-genai's windowed pipeline takes a prompt token equal to the pad id for padding; the build
        # picks an id the tokenizer never writes (edgeqwen/backends/qnn.py, padding_token), where it can.
        self.pad_token_id = self.genai["model"].get("pad_token_id")

    def version(self):
        genai = super().version()
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"{genai} (onnxruntime-qnn {version('onnxruntime-qnn')})"
        except PackageNotFoundError:
            return genai

    def bundle_device(self, session_options):
        return "npu"

    def open_config(self, bundle_dir, genai):
        if self.device == "npu":
            register_qnn(self.og)
            return self.og.Config(bundle_dir)
        if self.device == "cpu":
            return self.og.Config(cpu_config_folder(bundle_dir, genai))
        raise ShimError(f"--device {self.device}: this bundle runs on the NPU (npu) or its QDQ copy on the CPU (cpu)")

    def search_length(self, prompt_length, max_length):
        padded = -(-max(prompt_length, 1) // self.window) * self.window
        if padded > self.context_length:
            raise ShimError(f"the prompt is {prompt_length} tokens; this NPU bundle takes at most "
                            f"{self.max_prompt_tokens} (prompts are padded to windows of {self.window} tokens, "
                            f"context {self.context_length})")
        # onnxruntime-genai counts the padded prompt in the sequence's length: the new tokens come after it.
        return min(self.context_length, padded + max(max_length - prompt_length, 1))

    def new_session(self, generator, max_length):
        return WindowSession(generator, max_length)

    def start(self, prompt_ids, sampling, need=frozenset()):
        self.check_no_padding(prompt_ids)
        return super().start(prompt_ids, sampling, need)

    def check_no_padding(self, ids):
        if self.pad_token_id in ids:
            raise ShimError(f"the prompt holds token {self.pad_token_id} ({self.decode([self.pad_token_id])!r}), "
                            "which this NPU bundle's runtime takes for padding and would drop: rebuild the bundle "
                            "with a current edgeqwen (it pads with a token no prompt holds, where the vocabulary "
                            "has one spare), or leave that token out of the prompt")

    def teacher_forced(self, tokens):
        """Whole windows through the prompt model, every position's logits from the lm_head's output."""
        self.check_no_padding(tokens)
        sampling_length = -(-len(tokens) // self.window) * self.window + 1
        if sampling_length > self.context_length:
            raise ShimError(f"logits: {len(tokens)} tokens do not fit this bundle's context of {self.context_length}")
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=sampling_length)
        generator = self.og.Generator(self.model, params)
        rows, inputs = [], tokens[:-1]
        for start in range(0, len(inputs), self.window):
            chunk = inputs[start:start + self.window]
            generator.append_tokens(chunk)
            logits = generator.get_output("logits")  # [1, window, vocab], the chunk's rows first
            rows.extend(logits[0, i].astype("float32") for i in range(len(chunk)))
        return rows


class WindowSession(OrtSession):
    """A sequence that takes its prompt once (see the module's docstring)."""

    capabilities = OrtQnnRuntime.capabilities

    def append(self, ids):
        if self.tokens:
            raise self.unsupported(APPEND)
        super().append(ids)

    def rewind(self, length):
        raise self.unsupported(REWIND)


def register_qnn(og):
    """onnxruntime-qnn's provider library, registered with onnxruntime-genai (once per process)."""
    try:
        import onnxruntime_qnn
    except ImportError:
        raise ShimError("this bundle runs on the Qualcomm NPU through the QNN execution provider, and onnxruntime-qnn "
                        "is not installed: pip install onnxruntime-qnn (or run its QDQ copy on the CPU with "
                        "--device cpu)") from None
    try:
        og.register_execution_provider_library(onnxruntime_qnn.get_ep_name(), onnxruntime_qnn.get_library_path())
    except RuntimeError as e:
        if "already" not in str(e).lower():
            raise ShimError(f"onnxruntime-qnn's provider library did not load: {str(e).splitlines()[0]}") from None


def cpu_config_folder(bundle_dir, genai):
    """A temporary folder whose genai_config runs the bundle's cpu/ models (and its own tables) on the CPU."""
    folder = tempfile.mkdtemp(prefix="edgeqwen-qnn-cpu-")
    atexit.register(shutil.rmtree, folder, True)
    bundle_dir = os.path.abspath(bundle_dir)
    config = json.loads(json.dumps(genai))
    for stage in config["model"]["decoder"]["pipeline"]:
        for entry in stage.values():
            name = entry["filename"]
            if entry.pop("session_options", None) is not None:  # a compiled graph: its QDQ copy
                name = os.path.join(CPU_FOLDER, name.replace("_ctx.onnx", ".onnx"))
            path = os.path.join(bundle_dir, name)
            if not os.path.isfile(path):
                raise ShimError(f"{bundle_dir}: --device cpu needs {name}, which this bundle does not have")
            entry["filename"] = os.path.relpath(path, folder)
    with open(os.path.join(folder, "genai_config.json"), "w", encoding="utf-8") as out:
        json.dump(config, out)
    for name in TOKENIZER_FILES:
        if os.path.isfile(os.path.join(bundle_dir, name)):
            shutil.copyfile(os.path.join(bundle_dir, name), os.path.join(folder, name))
    return folder
