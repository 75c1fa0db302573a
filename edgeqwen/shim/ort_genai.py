"""ONNX Runtime GenAI: genai_config.json names the model files, the tokenizer and the search defaults.

Every capability of the interface but `penalize` is native here: og.Generator appends tokens, exposes
the logits for the next token, chooses it (greedy or sampled, in the runtime), rewinds (`rewind_to`),
and constrains the choice with a grammar (llguidance, `GeneratorParams.set_guidance`). Its search options
have a repetition penalty but no presence or frequency penalty.
"""

import json

from .bundle_files import chat_template, read_json, thread_count
from .errors import ShimError
from .json_grammar import SchemaError
from .runtime import (APPEND, CONSTRAIN, EMPTY_THINKING, GENERATE, ITEM_SEPARATOR, KEY_SEPARATOR, LOGITS, REWIND,
                      TOOL_CALL_CLOSE, TOOL_CALL_OPEN, Runtime, Session)


TOOL_PLACEHOLDER = "EDGEQWEN_TOOL_"


class OrtGenaiRuntime(Runtime):
    engine = "onnxruntime-genai"
    distributions = ("onnxruntime-genai", "onnxruntime-genai-cuda", "onnxruntime-genai-directml")
    capabilities = frozenset({GENERATE, LOGITS, APPEND, REWIND, CONSTRAIN})

    def __init__(self, bundle_dir, device=None, threads=None):
        super().__init__()
        import onnxruntime_genai as og

        self.og = og
        genai = self.genai = read_json(bundle_dir, "genai_config.json")
        decoder = genai["model"]["decoder"]
        session_options = decoder.get("session_options", {})
        self.device = device or self.bundle_device(session_options)
        config = self.open_config(bundle_dir, genai)
        self.threads = thread_count(session_options.get("intra_op_num_threads"), threads)
        if self.threads:
            config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                "intra_op_num_threads": self.threads}}}}))
        try:
            self.model = og.Model(config)
        except RuntimeError as e:
            raise ShimError(load_failure(str(e), self.device)) from None
        self._tokenizer = None
        self.template = chat_template(bundle_dir)
        self.context_length = genai["model"]["context_length"]
        self.max_prompt_tokens = self.context_length - 1
        eos = genai["model"]["eos_token_id"]  # what the runtime's tokenizer and search stop on
        self.eos_token_ids = tuple([eos] if isinstance(eos, int) else eos)
        self.vocab_size = genai["model"].get("vocab_size")

    def bundle_device(self, session_options):
        """The device the bundle was built for (what runs when no --device is given)."""
        return "cuda" if "cuda" in json.dumps(session_options.get("provider_options", [])) else "cpu"

    def open_config(self, bundle_dir, genai):
        """The og.Config that loads the bundle on self.device."""
        config = self.og.Config(bundle_dir)
        if self.device == "cpu":
            config.clear_providers()  # a CUDA bundle checked on a CPU
        return config

    def search_length(self, prompt_length, max_length):
        """The max_length the runtime's search is given for a sequence that may grow to `max_length`."""
        return max_length

    def new_session(self, generator, max_length):
        return OrtSession(generator, max_length)

    @property
    def tokenizer(self):
        """Loaded on first use: Qwen's 151,646-token vocabulary takes about a second to load, which teacher
        forcing and benchmarks (token ids in, no text) do not need."""
        if self._tokenizer is None:
            self._tokenizer = self.og.Tokenizer(self.model)
        return self._tokenizer

    def render(self, messages, think, tools=None):
        # onnxruntime-genai 0.14.1 rewrites `tools` into its own shape before the template sees them (each
        # becomes {"name", "description", "parameters"} with every type turned into "str"), which is not the
        # prompt the model was trained on. So the template is given one placeholder per tool, and the line
        # each placeholder lands on is replaced by the tool as Hugging Face's `tojson` writes it (Qwen's
        # templates put every tool on a line of its own). The build's parity check compares the result
        # with transformers' apply_chat_template.
        if self.template and "reasoning_content" in self.template:
            messages = [split_thinking(m) for m in messages]
        placeholders = [{"type": "function", "function": {"name": f"{TOOL_PLACEHOLDER}{i}"}}
                        for i in range(len(tools or ()))]
        text = self.tokenizer.apply_chat_template(json.dumps(messages), template_str=self.template,
                                                  tools=json.dumps(placeholders) if placeholders else None,
                                                  add_generation_prompt=True)
        for i, tool in enumerate(tools or ()):
            text = replace_line(text, f"{TOOL_PLACEHOLDER}{i}\"", json.dumps(tool, ensure_ascii=False))
        # onnxruntime-genai 0.14.1's template engine has no `is false` test, so Qwen3's template cannot be
        # given enable_thinking=false ("Unknown type for 'is' operator: false"). It is rendered without it,
        # and the block the template writes in that case is added here.
        if self.template and "enable_thinking" in self.template and not think and not text.endswith(EMPTY_THINKING):
            text += EMPTY_THINKING
        return text

    def encode(self, text):
        return [int(t) for t in self.tokenizer.encode(text)]

    def decode(self, ids):
        return self.tokenizer.decode(ids)

    def text_stream(self):
        return OrtTextStream(self.tokenizer.create_stream())

    def start(self, prompt_ids, sampling, need=frozenset()):
        self.check_capabilities(set(need) | sampling.needs())
        max_length = min(self.context_length, len(prompt_ids) + sampling.max_new_tokens)
        search = {"max_length": self.search_length(len(prompt_ids), max_length), "do_sample": not sampling.greedy, "top_p": sampling.top_p,
                  "top_k": sampling.top_k, "temperature": sampling.temperature if not sampling.greedy else 1.0}
        if sampling.ignore_eos:
            search["min_length"] = max_length
        if sampling.seed is not None:
            search["random_seed"] = sampling.seed
        if sampling.repetition_penalty != 1.0:
            search["repetition_penalty"] = sampling.repetition_penalty
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(**search)
        try:
            if sampling.constraint is not None:
                params.set_guidance(*guidance(sampling.constraint))
            generator = self.og.Generator(self.model, params)  # where llguidance compiles the grammar
        except RuntimeError as e:
            if sampling.constraint is None:
                raise
            reason = " ".join(line.strip() for line in str(e).splitlines() if line.strip())[:400]
            raise SchemaError(f"onnxruntime-genai's constrained decoding cannot use this schema: {reason}") from None
        session = self.new_session(generator, max_length)
        if prompt_ids:
            session.append(prompt_ids)
        return session


# llguidance's JSON options: no whitespace but the separators Qwen's templates write.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ITEM_SEPARATOR, "key_separator": KEY_SEPARATOR}


def guidance(constraint):
    """(kind, grammar) for GeneratorParams.set_guidance."""
    if not constraint.tool_calls:
        schema = constraint.schema if isinstance(constraint.schema, dict) else {}
        options = schema.get("x-guidance", {})
        if not isinstance(options, dict):
            raise SchemaError("response_format.json_schema.schema.x-guidance: llguidance's options are an object")
        return "json_schema", json.dumps({**schema, "x-guidance": {**options, **JSON_OPTIONS}})
    bodies = [{**constraint.call_schema(name, parameters), "x-guidance": JSON_OPTIONS}
              for name, parameters in constraint.functions]
    rules = [f"body{i}: %json {json.dumps(body)}" for i, body in enumerate(bodies)]
    call = f'call: "{TOOL_CALL_OPEN}\\n" ({" | ".join(f"body{i}" for i in range(len(bodies)))}) "\\n{TOOL_CALL_CLOSE}"'
    start = 'start: call ("\\n" call)*' if constraint.parallel else "start: call"
    return "lark_grammar", "\n".join([start, call, *rules])


def split_thinking(message):
    """An assistant turn whose content holds its thinking, split the way Qwen3's template splits it.

    The template does `'</think>' in content` and moves the thinking into reasoning_content (which it drops
    from earlier turns); onnxruntime-genai 0.14.1's template engine answers false to every substring test,
    so it would keep the thinking in the prompt. Given reasoning_content, the template takes the branch
    that needs no such test and writes what transformers writes.
    """
    content = message.get("content")
    if message.get("role") != "assistant" or not isinstance(content, str) or "</think>" not in content or \
            isinstance(message.get("reasoning_content"), str):
        return message
    reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
    return {**message, "content": content.split("</think>")[-1].lstrip("\n"), "reasoning_content": reasoning}


def replace_line(text, marker, replacement):
    """`text` with the line holding `marker` replaced by `replacement`."""
    at = text.find(marker)
    if at < 0:
        raise ShimError("the chat template did not write the tools where this shim expects them (one per line)")
    start, end = text.rfind("\n", 0, at) + 1, text.find("\n", at)
    return text[:start] + replacement + (text[end:] if end >= 0 else "")


def load_failure(message, device):
    """One line for a bundle the runtime cannot load: for a CUDA bundle on the CPU build, which package is
    missing and how to get it."""
    if device == "cuda" and ("Cuda interface not available" in message or "onnxruntime-genai-cuda" in message):
        return ("this bundle runs on CUDA, and the installed onnxruntime-genai is the CPU build (it has no "
                "libonnxruntime-genai-cuda.so): install onnxruntime-genai-cuda (from PyPI on x86-64; on a Jetson, "
                "build it on the device as README.md shows), or run the bundle on the CPU with --cpu")
    reason = " ".join([line for line in message.splitlines() if line.strip()][:1])
    hint = "; `--device cpu` runs it on the CPU" if device != "cpu" else ""
    return f"ONNX Runtime GenAI could not load this bundle on {device.upper()}: {reason}{hint}"


class OrtTextStream:
    def __init__(self, stream):
        self.stream = stream

    def feed(self, token):
        return self.stream.decode(token)


class OrtSession(Session):
    capabilities = OrtGenaiRuntime.capabilities

    def __init__(self, generator, max_length):
        super().__init__(max_length)
        self.generator = generator

    def append(self, ids):
        self.generator.append_tokens(list(ids))
        self.tokens.extend(ids)

    def logits(self):
        return self.generator.get_logits().reshape(-1).astype("float32", copy=False)

    def step(self):
        if self.generator.is_done():
            return None
        self.generator.generate_next_token()
        token = int(self.generator.get_next_tokens()[0])
        self.tokens.append(token)
        return token

    def rewind(self, length):
        self.generator.rewind_to(length)
        del self.tokens[length:]

    def close(self):
        self.generator = None
