"""Generation on the token-level interface: the loop, fitting a conversation into the context, and
Qwen3's <think>...</think> split. The same on every engine."""

from .errors import ShimError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def produce(runtime, prompt_ids, sampling):
    """Yield each token the model produces after `prompt_ids`, an end token included (which ends it).

    The generator's return value (StopIteration.value) is the finish reason: "stop" at an end token,
    "length" at max_new_tokens or the end of the context.
    """
    session = runtime.start(prompt_ids, sampling)
    try:
        produced = 0
        while produced < sampling.max_new_tokens:
            token = session.step()
            if token is None:  # the runtime ended the sequence: at its length limit, or at an end token it kept
                return "length" if len(session.tokens) >= session.max_length else "stop"
            yield token
            if is_end(runtime, token, sampling):
                return "stop"
            produced += 1
        return "length"
    finally:
        session.close()


def is_end(runtime, token, sampling):
    return token in runtime.eos_token_ids and not sampling.ignore_eos


def generate(runtime, prompt_ids, sampling, on_text):
    """Generate after `prompt_ids`, calling on_text(piece) per decoded piece (on_text returns True to stop).

    Returns (completion_tokens, finish_reason); an end token is neither counted nor shown, and
    "cancelled" means on_text asked to stop.
    """
    stream, count = runtime.text_stream(), 0
    tokens = produce(runtime, prompt_ids, sampling)
    try:
        while True:
            try:
                token = next(tokens)
            except StopIteration as done:
                return count, done.value
            if is_end(runtime, token, sampling):
                continue  # not shown; the generator stops after it
            count += 1
            if on_text(stream.feed(token)):
                return count, "cancelled"
    finally:
        tokens.close()


def messages_for(system, turns):
    return ([{"role": "system", "content": system}] if system else []) + turns


def fit_prompt(runtime, system, turns, think, max_new_tokens, notice=None):
    """Render and encode the conversation, dropping the oldest turns until it leaves room for the answer."""
    while True:
        text = runtime.render(messages_for(system, turns), think)
        ids = runtime.encode(text)
        room = min(runtime.max_prompt_tokens, runtime.context_length - min(max_new_tokens, 64))
        if len(ids) <= room or len(turns) <= 1:
            break
        dropped = 2 if len(turns) > 2 and turns[0]["role"] == "user" else 1
        turns[:] = turns[dropped:]
        if notice:
            notice(f"[dropped the oldest turn to stay within the {runtime.context_length}-token context]")
    check_prompt_length(runtime, len(ids))
    return text, ids


def check_prompt_length(runtime, used):
    if used > runtime.max_prompt_tokens:
        raise ShimError(f"the prompt is {used} tokens; this bundle takes at most {runtime.max_prompt_tokens} "
                        f"(context {runtime.context_length} tokens)")


class ThinkingSplitter:
    """Splits streamed text into ("thinking", text) and ("answer", text) around <think>...</think>."""

    def __init__(self):
        self.inside, self.pending = False, ""

    def feed(self, piece):
        text, out = self.pending + piece, []
        self.pending = ""
        while text:
            tag = THINK_CLOSE if self.inside else THINK_OPEN
            at = text.find(tag)
            if at >= 0:
                out.append(("thinking" if self.inside else "answer", text[:at]))
                self.inside, text = not self.inside, text[at + len(tag):]
                continue
            keep = next((n for n in range(len(tag) - 1, 0, -1) if text.endswith(tag[:n])), 0)  # a split tag
            out.append(("thinking" if self.inside else "answer", text[:len(text) - keep]))
            self.pending, text = text[len(text) - keep:], ""
        return [(kind, t) for kind, t in out if t]
