"""The token-level interface every engine adapter implements, and what is common to all of them.

A Runtime is one loaded bundle: it renders messages with the model's chat template, encodes and decodes
with the runtime's own tokenizer, and starts Sessions. A Session is one sequence in the runtime: the
tokens so far and the model's state after them. Everything else the shim does (one answer, chat, the
server, worker mode) is written on this interface, so it behaves the same on every engine, and what an
engine cannot do is a missing capability, refused by name, never a silent difference:

    generate   step() chooses the next token (greedy or sampled) and appends it     every runtime
    logits     logits() is the model's prediction for the token after the sequence
    append     append(ids) feeds more tokens into a running sequence (teacher forcing)
    rewind     rewind(length) goes back to an earlier length of the sequence
    constrain  step() only chooses tokens a grammar allows (a Constraint: JSON, tool calls)
    penalize   presence and frequency penalties in the runtime's own sampler

A runtime may have a capability on its own and not together with another (OpenVINO's logits come
from a different session than its constrained decoding); start() refuses such a combination by name.
"""

from .errors import ShimError

GENERATE, LOGITS, APPEND, REWIND = "generate", "logits", "append", "rewind"
CONSTRAIN, PENALIZE = "constrain", "penalize"
EMPTY_THINKING = "<think>\n\n</think>\n\n"  # what Qwen3's template emits when enable_thinking is false
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
# How Qwen's chat templates write JSON (Jinja's tojson is json.dumps): constrained output is written the
# same way, so the model continues text that looks like what it was trained on.
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "


class Constraint:
    """What constrained decoding allows: one JSON value valid against `schema`, or one or more Qwen tool
    calls (`<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`, separated by a newline) to
    the `functions` named, each a (name, JSON schema of its arguments) pair. Each adapter translates it
    into its runtime's grammar (llguidance for ONNX Runtime GenAI, xgrammar for OpenVINO)."""

    def __init__(self, schema=None, functions=None, parallel=True):
        self.schema, self.functions, self.parallel = schema, functions, parallel

    @property
    def tool_calls(self):
        return self.functions is not None

    def call_schema(self, name, parameters):
        """The JSON schema of one call's body, name first as Qwen writes it."""
        return {"type": "object", "properties": {"name": {"const": name}, "arguments": parameters},
                "required": ["name", "arguments"], "additionalProperties": False}


class Sampling:
    """How a session chooses tokens: greedy when temperature is 0."""

    def __init__(self, max_new_tokens, temperature=0.0, top_p=1.0, top_k=50, seed=None, ignore_eos=False,
                 constraint=None, repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0):
        self.max_new_tokens = max_new_tokens
        self.temperature, self.top_p, self.top_k, self.seed = temperature, top_p, top_k, seed
        self.ignore_eos = ignore_eos  # generate exactly max_new_tokens (benchmarks)
        self.constraint = constraint
        self.repetition_penalty = repetition_penalty
        self.presence_penalty, self.frequency_penalty = presence_penalty, frequency_penalty

    @property
    def greedy(self):
        return self.temperature <= 0

    def needs(self):
        """The capabilities these settings need beyond generating."""
        need = {CONSTRAIN} if self.constraint is not None else set()
        if self.presence_penalty or self.frequency_penalty:
            need.add(PENALIZE)
        return need


class Session:
    """One sequence in the runtime. `tokens` is the sequence so far; `max_length` the longest it may grow."""

    capabilities = frozenset({GENERATE})

    def __init__(self, max_length):
        self.tokens = []
        self.max_length = max_length

    def step(self):
        """Choose the next token, append it and return it; None when the runtime has ended the sequence."""
        raise NotImplementedError

    @property
    def at_length_limit(self):
        """Whether the sequence has used all the length it was given (so an ended sequence is "length")."""
        return len(self.tokens) >= self.max_length

    def logits(self):
        """The model's logits for the next token: a float32 vector over the vocabulary."""
        raise self.unsupported(LOGITS)

    def append(self, ids):
        raise self.unsupported(APPEND)

    def rewind(self, length):
        raise self.unsupported(REWIND)

    def close(self):
        """Free the sequence's state (and stop any work still running for it)."""

    def unsupported(self, capability):
        return ShimError(f"this runtime cannot {capability} here (it can: {', '.join(sorted(self.capabilities))})")


class Runtime:
    """One loaded bundle (or model folder) in its engine. Adapters set the attributes below."""

    engine = ""
    distributions = ()  # the runtime's package names, for the version it reports
    capabilities = frozenset({GENERATE})

    def __init__(self):
        self.device = ""
        self.threads = None  # the compute threads asked for, or None: the bundle's or runtime's default
        self.context_length = 0
        self.max_prompt_tokens = 0
        self.eos_token_ids = ()
        self.vocab_size = None  # the model's token ids are 0 to vocab_size - 1 (None: unknown)
        self.inference_precision = "float32"

    def load(self):
        """Load now what the adapter would load on first use, so a bundle that cannot run fails at start."""

    def render(self, messages, think, tools=None):
        """The conversation as the model's chat template writes it, ready for the assistant's turn.

        `messages` are in the template's own form (an assistant's tool_calls carry their arguments as an
        object); `tools` are OpenAI-style function definitions, or None.
        """
        raise NotImplementedError

    def encode(self, text):
        raise NotImplementedError

    def decode(self, ids):
        raise NotImplementedError

    def text_stream(self):
        """Token ids in, text out as soon as it is whole (a character may span several tokens)."""
        return TextStream(self.decode)

    def start(self, prompt_ids, sampling, need=frozenset()):
        """A session holding `prompt_ids`, able to generate with `sampling` and to do what `need` names."""
        raise NotImplementedError

    def teacher_forced(self, tokens):
        """The logits after each of tokens[:-1] (row i predicts tokens[i + 1]): the sequence fed one token at a
        time, as the runtime decodes. An adapter whose runtime takes tokens otherwise overrides this."""
        session = self.start([], Sampling(max_new_tokens=len(tokens)), need={LOGITS, APPEND})
        try:
            rows = []
            for token in tokens[:-1]:
                session.append([token])
                rows.append(session.logits())
        finally:
            session.close()
        return rows

    def check_capabilities(self, need):
        missing = set(need) - set(self.capabilities)
        if missing:
            raise ShimError(f"{self.engine} on {self.device} cannot {' or '.join(sorted(missing))} "
                            f"(it can: {', '.join(sorted(self.capabilities))})")

    def version(self):
        from importlib.metadata import PackageNotFoundError, version

        for name in self.distributions:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return "unknown"

    def describe(self):
        return {"engine": self.engine, "runtime_version": self.version(), "device": self.device,
                "threads": self.threads, "capabilities": sorted(self.capabilities),
                "context_length": self.context_length, "max_prompt_tokens": self.max_prompt_tokens,
                "eos_token_ids": list(self.eos_token_ids)}


class TextStream:
    """Incremental detokenization by decoding the whole answer so far and showing what is new.

    A multi-byte character split across tokens decodes to U+FFFD until its last byte arrives; it is
    held back until then. Byte-level BPE decoding is otherwise stable under appending tokens.
    """

    def __init__(self, decode):
        self.decode, self.ids, self.shown = decode, [], 0

    def feed(self, token):
        self.ids.append(token)
        text = self.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        piece, self.shown = text[self.shown:], len(text)
        return piece

