"""Generation on the token-level interface: the loop, stop sequences, log probabilities, fitting a
conversation into the context, and Qwen3's <think>...</think> split. The same on every engine."""

import math

from .errors import ShimError
from .runtime import LOGITS

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def produce(runtime, prompt_ids, sampling, session=None):
    """Yield each token the model produces after `prompt_ids`, an end token included (which ends it).

    The generator's return value (StopIteration.value) is the finish reason: "stop" at an end token,
    "length" at max_new_tokens or the end of the context. `session`, if given, is one already started
    on `prompt_ids` (the server starts it first, so a grammar the runtime refuses is a 400); it is closed
    here either way.
    """
    session = session or runtime.start(prompt_ids, sampling)
    try:
        produced = 0
        while produced < sampling.max_new_tokens:
            token = session.step()
            if token is None:  # the runtime ended the sequence: at its length limit, or at an end token it kept
                return "length" if session.at_length_limit else "stop"
            yield token
            if is_end(runtime, token, sampling):
                return "stop"
            produced += 1
        return "length"
    finally:
        session.close()


def is_end(runtime, token, sampling):
    return token in runtime.eos_token_ids and not sampling.ignore_eos


def generate(runtime, prompt_ids, sampling, on_text, stops=(), logprobs=None, session=None):
    """Generate after `prompt_ids`, calling on_text(piece) per decoded piece (on_text returns True to stop).

    Returns (completion_tokens, finish_reason); an end token is neither counted nor shown, and
    "cancelled" means on_text asked to stop. Text ending in one of `stops` ends the answer there ("stop"),
    the stop text not shown. `logprobs`, a LogprobRecorder, gets an entry for every token counted, before
    the text that token completes is passed to on_text.
    """
    stream, count, matcher = runtime.text_stream(), 0, StopMatcher(stops)
    if session is None:
        session = runtime.start(prompt_ids, sampling, {LOGITS} if logprobs else frozenset())
    if logprobs:
        session = LoggedSession(session, logprobs)
    tokens = produce(runtime, prompt_ids, sampling, session)
    try:
        while True:
            try:
                token = next(tokens)
            except StopIteration as done:
                held = matcher.flush()
                if held and on_text(held):
                    return count, "cancelled"
                return count, done.value
            if is_end(runtime, token, sampling):
                continue  # not shown; the generator stops after it
            count += 1
            if logprobs:
                logprobs.record(token)
            piece, stopped = matcher.feed(stream.feed(token))
            if (piece and on_text(piece)) or (not piece and not stopped and on_text("")):
                return count, "cancelled"
            if stopped:
                return count, "stop"
    finally:
        tokens.close()


def partial_tag_length(text, tags):
    """How much of the end of `text` could be the start of one of `tags`: held back until the next piece
    says whether the tag follows (a tag or stop sequence may arrive over several tokens)."""
    return max((n for tag in tags for n in range(min(len(tag) - 1, len(text)), 0, -1) if text.endswith(tag[:n])),
               default=0)


class StopMatcher:
    """Cuts the text at the first stop sequence. Text that could be the start of one is held back until it
    is known not to be, so a stop sequence is never shown in part, even when it arrives over several tokens."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.held = ""

    def feed(self, piece):
        """(text to show now, whether a stop sequence ended the answer)."""
        if not self.stops:
            return piece, False
        text = self.held + piece
        found = [(text.find(s), s) for s in self.stops if s in text]
        if found:
            self.held = ""
            return text[:min(found)[0]], True
        keep = partial_tag_length(text, self.stops)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False

    def flush(self):
        held, self.held = self.held, ""
        return held


class LogprobRecorder:
    """Each generated token's log probability under the model, and the `top` most likely tokens there
    (from the raw logits, before any grammar or penalty)."""

    def __init__(self, runtime, top):
        self.runtime, self.top = runtime, top
        self.entries = []
        self.pending = None

    def before_step(self, logits):
        self.pending = logits

    def record(self, token):
        import numpy as np

        logits = self.pending.astype(np.float64)
        peak = logits.max()
        log_total = peak + math.log(np.exp(logits - peak).sum())
        entry = {"id": token, "token": self.runtime.decode([token]), "logprob": float(logits[token] - log_total),
                 "top": []}
        if self.top:
            best = np.argpartition(-logits, self.top)[:self.top]
            for other in sorted(best, key=lambda t: -logits[t]):
                entry["top"].append({"id": int(other), "token": self.runtime.decode([int(other)]),
                                     "logprob": float(logits[other] - log_total)})
        self.entries.append(entry)


class LoggedSession:
    """A session whose logits are read before every step, for a LogprobRecorder."""

    def __init__(self, session, recorder):
        self.session, self.recorder = session, recorder

    def __getattr__(self, name):
        return getattr(self.session, name)

    def step(self):
        if len(self.session.tokens) < self.session.max_length:
            self.recorder.before_step(self.session.logits())
        return self.session.step()


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
            keep = partial_tag_length(text, [tag])  # a split tag
            out.append(("thinking" if self.inside else "answer", text[:len(text) - keep]))
            self.pending, text = text[len(text) - keep:], ""
        return [(kind, t) for kind, t in out if t]
