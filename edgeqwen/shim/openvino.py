"""OpenVINO GenAI: the IR model and tokenizer; device properties from pipeline_config.json.

Generation runs in OpenVINO GenAI's LLMPipeline on every device (the NPU needs it: it compiles the
model into static prefill and decode stages). The pipeline has no per-token API, so a PipelineSession
runs `generate` in a thread and takes each token from its streamer, one at a time. Logits, appending
and rewinding come from the IR's stateful model driven by OpenVINO's own inference request, which the
CPU and GPU devices can run (a StatefulSession; not the NPU).

Constrained decoding and the presence, frequency and repetition penalties belong to LLMPipeline (its
xgrammar and sampler), so they cannot be combined with logits in one session: start() says so.
"""

import os
import queue
import random
import threading

from .bundle_files import chat_template, read_json, thread_count
from .errors import ShimError
from .json_grammar import schema_grammar, tool_call_grammar
from .runtime import APPEND, CONSTRAIN, GENERATE, LOGITS, PENALIZE, REWIND, Runtime, Session

OPENVINO_DEVICES = ("CPU", "GPU", "NPU")
IR_MODEL = "openvino_model.xml"


class OpenVinoRuntime(Runtime):
    engine = "openvino"
    distributions = ("openvino",)

    def __init__(self, bundle_dir, device=None, threads=None):
        super().__init__()
        import openvino_genai as ov_genai

        self.ov_genai = ov_genai
        self.bundle_dir = bundle_dir
        config = pipeline_config(bundle_dir)
        self.device = (device or config["device"]).upper()
        if self.device not in OPENVINO_DEVICES:
            raise ShimError(f"--device {device}: OpenVINO bundles run on {', '.join(d.lower() for d in OPENVINO_DEVICES)}")
        # The NPU's static lengths mean nothing to the CPU: each device gets its own properties.
        self.properties = dict(config["properties"].get(self.device, {}))
        if self.device == "CPU":
            self.threads = thread_count(self.properties.get("INFERENCE_NUM_THREADS"), threads)
            if self.threads:
                self.properties["INFERENCE_NUM_THREADS"] = self.threads
        self.capabilities = frozenset({GENERATE, CONSTRAIN, PENALIZE} |
                                      ({LOGITS, APPEND, REWIND} if self.device != "NPU" else set()))
        self.tokenizer = ov_genai.Tokenizer(bundle_dir)
        self.template = chat_template(bundle_dir) or ""
        self.context_length = config["context_length"]
        self.max_prompt_tokens = config["max_prompt_tokens"]
        self.eos_token_ids = end_tokens(bundle_dir, self.tokenizer)
        if os.path.exists(os.path.join(bundle_dir, "config.json")):  # Optimum writes it next to the IR
            self.vocab_size = read_json(bundle_dir, "config.json").get("vocab_size")
        self._pipeline = None
        self._request = None

    @property
    def pipeline(self):
        """The LLMPipeline, loaded (and compiled for the device) on first use; `load()` does it at start."""
        if self._pipeline is None:
            try:
                self._pipeline = self.ov_genai.LLMPipeline(self.bundle_dir, self.device, **self.properties)
            except RuntimeError as e:
                reason = " ".join([line for line in str(e).splitlines() if line.strip()][-1:])
                hint = " Is an Intel NPU and its driver present?" if self.device == "NPU" else ""
                raise ShimError(f"OpenVINO could not load this bundle on {self.device}: {reason}.{hint} "
                                "`--device cpu` runs it on the CPU") from None
        return self._pipeline

    def load(self):
        self.pipeline

    def stateful_request(self):
        """The IR's stateful model compiled for the device, for logits (compiled once, on first use)."""
        if self._request is None:
            import openvino as ov

            core = ov.Core()
            properties = {"INFERENCE_NUM_THREADS": self.threads} if self.threads else {}
            compiled = core.compile_model(core.read_model(os.path.join(self.bundle_dir, IR_MODEL)), self.device,
                                          properties)
            self.inference_precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            self._request = compiled.create_infer_request()
        return self._request

    def render(self, messages, think, tools=None):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, chat_template=self.template,
                                                  tools=tools or None, extra_context={"enable_thinking": think})

    def encode(self, text):
        return [int(t) for t in self.tokenizer.encode(text).input_ids.data[0]]

    def decode(self, ids):
        return self.tokenizer.decode(list(ids))

    def start(self, prompt_ids, sampling, need=frozenset()):
        self.check_capabilities(set(need) | sampling.needs())
        max_length = min(self.context_length, len(prompt_ids) + sampling.max_new_tokens)
        if set(need) - {GENERATE}:
            pipeline_only = sorted(sampling.needs()) + (["repetition penalty"] if sampling.repetition_penalty != 1
                                                        else [])
            if pipeline_only:
                raise ShimError(f"OpenVINO cannot give {', '.join(sorted(set(need) - {GENERATE}))} and "
                                f"{' or '.join(pipeline_only)} in one generation (its logits and its grammar and "
                                "penalties are in different sessions)")
            return StatefulSession(self.stateful_request(), prompt_ids, sampling, max_length)
        return PipelineSession(self, prompt_ids, sampling, max_length)


def pipeline_config(bundle_dir):
    """pipeline_config.json, or for a plain export (a benchmark's stock folder) what its config.json implies."""
    if os.path.exists(os.path.join(bundle_dir, "pipeline_config.json")):
        return read_json(bundle_dir, "pipeline_config.json")
    context = read_json(bundle_dir, "config.json").get("max_position_embeddings", 4096)
    return {"device": "CPU", "context_length": context, "max_prompt_tokens": context - 1, "properties": {}}


def constraint_grammar(constraint):
    """The constraint as xgrammar EBNF (see json_grammar for why not OpenVINO's own JSON schema mode)."""
    return tool_call_grammar(constraint) if constraint.tool_calls else schema_grammar(constraint.schema)


def end_tokens(bundle_dir, tokenizer):
    """Every end token the model's generation_config names (what LLMPipeline stops on), else the tokenizer's."""
    if os.path.exists(os.path.join(bundle_dir, "generation_config.json")):
        eos = read_json(bundle_dir, "generation_config.json").get("eos_token_id")
        if eos is not None:
            return tuple([eos] if isinstance(eos, int) else eos)
    return (int(tokenizer.get_eos_token_id()),)


class PipelineSession(Session):
    """LLMPipeline.generate in a thread, one token per step. The streamer hands over a token and waits
    until it is taken, so the pipeline is at most one token ahead and stopping early wastes nothing."""

    capabilities = frozenset({GENERATE})
    POLL_S = 0.05

    def __init__(self, runtime, prompt_ids, sampling, max_length):
        super().__init__(max_length)
        self.runtime, self.sampling = runtime, sampling
        self.tokens = list(prompt_ids)
        # Written here, in the caller's thread, so a schema the grammar cannot express is refused at start.
        self.grammar = constraint_grammar(sampling.constraint) if sampling.constraint is not None else None
        # Under a grammar, OpenVINO GenAI 2026.4 lets <|endoftext|> (an end token of generation_config, not the
        # tokenizer's) through xgrammar's mask anywhere, even inside a JSON string (measured on the demo model).
        # So only the tokenizer's end token ends a constrained answer, and the others are dropped unseen.
        self.stop_token = int(runtime.tokenizer.get_eos_token_id())
        self.dropped = set(runtime.eos_token_ids) - {self.stop_token} if self.grammar is not None else set()
        self.skipped = 0
        self.handed = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.error = None
        self.thread = None

    def step(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, daemon=True)
            self.thread.start()
        while True:
            try:
                token = self.handed.get(timeout=self.POLL_S)
                self.tokens.append(token)
                return token
            except queue.Empty:
                if self.finished.is_set() and self.handed.empty():
                    if self.error is not None:
                        raise ShimError(f"OpenVINO GenAI failed while generating: {self.error}")
                    return None

    def run(self):
        import numpy as np
        import openvino as ov

        ov_genai = self.runtime.ov_genai
        session = self

        class HandOver(ov_genai.StreamerBase):
            def write(self, token):
                for t in ([token] if isinstance(token, int) else token):
                    if int(t) in session.dropped:
                        session.skipped += 1
                        continue
                    while True:
                        if session.stopping.is_set():
                            return ov_genai.StreamingStatus.CANCEL
                        try:
                            session.handed.put(int(t), timeout=session.POLL_S)
                            break
                        except queue.Full:
                            continue
                return ov_genai.StreamingStatus.RUNNING

            def end(self):
                pass

        try:
            pipeline = self.runtime.pipeline
            config = pipeline.get_generation_config()
            config.max_new_tokens = self.max_length - len(self.tokens)
            config.do_sample = not self.sampling.greedy
            if config.do_sample:
                config.temperature, config.top_p = self.sampling.temperature, self.sampling.top_p
                config.top_k = self.sampling.top_k
            if self.sampling.seed is not None:
                config.rng_seed = self.sampling.seed
            config.repetition_penalty = self.sampling.repetition_penalty
            config.presence_penalty = self.sampling.presence_penalty
            config.frequency_penalty = self.sampling.frequency_penalty
            if self.grammar is not None:
                config.structured_output_config = ov_genai.StructuredOutputConfig(grammar=self.grammar)
                config.stop_token_ids = {self.stop_token}
            if self.sampling.ignore_eos:
                config.ignore_eos, config.min_new_tokens = True, config.max_new_tokens
            ids = ov.Tensor(np.array([self.tokens], dtype=np.int64))
            pipeline.generate(ids, config, HandOver())
        except Exception as e:  # reported by the next step(), in the caller's thread
            self.error = e
        finally:
            self.finished.set()

    @property
    def at_length_limit(self):
        return len(self.tokens) + self.skipped >= self.max_length

    def close(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()


class StatefulSession(Session):
    """The IR's stateful model (the KV cache lives inside it), one token per inference: the logits of every
    step are read, as the model decodes on the device. Rewinding resets the state and replays the prefix."""

    capabilities = frozenset({GENERATE, LOGITS, APPEND, REWIND})

    def __init__(self, request, prompt_ids, sampling, max_length):
        super().__init__(max_length)
        self.request, self.sampling = request, sampling
        self.random = random.Random(sampling.seed)
        self.last = None
        request.reset_state()
        self.append(prompt_ids)

    def append(self, ids):
        import numpy as np

        for token in ids:
            position = len(self.tokens)
            self.request.infer({
                "input_ids": np.array([[token]], dtype=np.int64),
                "attention_mask": np.ones((1, position + 1), dtype=np.int64),
                "position_ids": np.array([[position]], dtype=np.int64),
                "beam_idx": np.zeros(1, dtype=np.int32),
            })
            self.last = np.array(self.request.get_tensor("logits").data[0, -1], dtype=np.float32)
            self.tokens.append(int(token))

    def logits(self):
        if self.last is None:
            raise ShimError("no logits yet: append at least one token first")
        return self.last

    def step(self):
        if len(self.tokens) >= self.max_length:
            return None
        token = choose(self.logits(), self.sampling, self.random)
        self.append([token])
        return token

    def rewind(self, length):
        kept = self.tokens[:length]
        self.tokens, self.last = [], None
        self.request.reset_state()
        self.append(kept)


def choose(logits, sampling, rng):
    """Greedy, or a sample at the temperature from the top-k tokens within top-p of the probability."""
    import numpy as np

    if sampling.greedy:
        return int(logits.argmax())
    scaled = logits.astype(np.float64) / sampling.temperature
    order = np.argsort(-scaled)[: max(1, sampling.top_k)]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    keep = max(1, int(np.searchsorted(np.cumsum(probs), sampling.top_p) + 1))
    order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[min(len(order) - 1, int(np.searchsorted(np.cumsum(probs), rng.random())))])
