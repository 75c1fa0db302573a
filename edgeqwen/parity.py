"""Tokenizer and chat-template parity: the bundle's runtime gives Hugging Face's token ids and prompts.

A bundle's runtime has a tokenizer and a template engine of its own (onnxruntime-genai's og.Tokenizer
and its Jinja subset, OpenVINO's tokenizer IRs and its template engine); the model was trained on what
transformers writes. Every build checks the staged bundle, through its own shim in worker mode, on
the shipped test set (assets/parity/testset.json):

    strings        runtime encode(s) == Hugging Face's ids for s, for every string of the set and for
                   every added token of the model's own tokenizer (alone, all together, between words)
    conversations  runtime render(messages, think, tools) == transformers' apply_chat_template(messages,
                   tools=tools, add_generation_prompt=True, tokenize=False, enable_thinking=think), think
                   off and on, and the runtime's ids for it == Hugging Face's ids for it

`compare` returns the record that goes into the manifest ({"strings", "conversations", "result",
"first_mismatch", ...}); `check_bundle` raises ParityError, naming the first mismatch, when it failed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgeqwen.bundle.worker import BundleWorker
from edgeqwen.demo.assets import ASSETS_DIR
from edgeqwen.errors import BundleError, ParityError, WorkerError

TESTSET = ASSETS_DIR / "parity" / "testset.json"
THINK = (False, True)
CONTEXT_CHARS = 40  # characters shown each side of a template's first difference
CONTEXT_IDS = 8  # ids shown each side of a rendered prompt's first differing token


@dataclass(frozen=True)
class Conversation:
    name: str
    messages: list
    tools: Optional[list]  # OpenAI function definitions, or None


@dataclass(frozen=True)
class TestSet:
    strings: tuple[str, ...]
    conversations: tuple[Conversation, ...]
    sha256: str


def load_testset(path: Path = TESTSET) -> TestSet:
    """The test set; a conversation's `tools` names tools of the set's `tools` list."""
    data = path.read_bytes()
    try:
        doc = json.loads(data)
        tools = {tool["function"]["name"]: tool for tool in doc.get("tools", [])}
        conversations = tuple(Conversation(c["name"], c["messages"], [tools[name] for name in c["tools"]]
                                           if c.get("tools") else None) for c in doc["conversations"])
        strings = tuple(doc["strings"])
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{path}: not a parity test set ({type(e).__name__}: {e})") from None
    return TestSet(strings, conversations, hashlib.sha256(data).hexdigest())


def added_token_strings(tokenizer) -> list[str]:
    """Every added token of the tokenizer (Qwen's specials, <think>, <tool_call>, ...): each alone, all of
    them run together, and all of them between words."""
    tokens = [added.content for _, added in sorted(tokenizer.added_tokens_decoder.items())]
    if not tokens:
        return []
    return tokens + ["".join(tokens), " ".join(f"w{i}{token}x" for i, token in enumerate(tokens))]


def hf_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def hf_render(tokenizer, conversation: Conversation, think: bool) -> str:
    return tokenizer.apply_chat_template(conversation.messages, tools=conversation.tools, add_generation_prompt=True,
                                         tokenize=False, enable_thinking=think)


def first_difference(a, b) -> Optional[int]:
    """The first index where two sequences differ (the shorter one's length if one is a prefix), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare(worker: BundleWorker, tokenizer, testset: TestSet | None = None) -> dict:
    """The runtime behind `worker` against the Hugging Face tokenizer on the test set: the manifest's record."""
    testset = testset or load_testset()
    strings = list(testset.strings) + added_token_strings(tokenizer)
    mismatches = []
    for index, (text, got) in enumerate(zip(strings, worker.encode(strings))):
        expected = hf_ids(tokenizer, text)
        if got != expected:
            mismatches.append({"kind": "string", "index": index, "string": text, "hugging_face": expected,
                               "runtime": got, "at": first_difference(expected, got)})
    conversations = testset.conversations if tokenizer.chat_template else ()  # a base model has no template
    for conversation in conversations:
        for think in THINK:
            mismatch = compare_rendering(worker, tokenizer, conversation, think)
            if mismatch:
                mismatches.append(mismatch)
    return {
        "strings": len(strings),
        "conversations": len(conversations),
        "think": list(THINK) if conversations else [],
        "result": "failed" if mismatches else "passed",
        "mismatches": len(mismatches),
        "first_mismatch": mismatches[0] if mismatches else None,
        "testset_sha256": testset.sha256,
    }


def compare_rendering(worker: BundleWorker, tokenizer, conversation: Conversation, think: bool) -> Optional[dict]:
    """The first difference of one conversation's prompt: its text, else its token ids; None when equal. A runtime
    that refuses to render what transformers renders differs too."""
    expected = hf_render(tokenizer, conversation, think)
    where = {"kind": "conversation", "conversation": conversation.name, "think": think}
    try:
        text, ids = worker.render(conversation.messages, think=think, tools=conversation.tools)
    except WorkerError as e:
        if worker.process.poll() is not None:  # the worker itself ended: not an answer about this conversation
            raise
        return {**where, "part": "refused", "error": str(e)}
    at = first_difference(expected, text)
    if at is not None:
        start = max(0, at - CONTEXT_CHARS)
        return {**where, "part": "text", "at": at, "hugging_face": expected[start:at + CONTEXT_CHARS],
                "runtime": text[start:at + CONTEXT_CHARS]}
    expected_ids = hf_ids(tokenizer, expected)
    at = first_difference(expected_ids, ids)
    if at is not None:
        start = max(0, at - CONTEXT_IDS)
        return {**where, "part": "ids", "at": at, "hugging_face": expected_ids[start:at + CONTEXT_IDS],
                "runtime": ids[start:at + CONTEXT_IDS], "from_token": start}
    return None


def describe(mismatch: dict) -> str:
    """A failed record's first mismatch, in words: what differed and both sides."""
    if mismatch["kind"] == "string":
        return (f"string {mismatch['index']} of the test set, {mismatch['string']!r}, encodes differently "
                f"(first at token {mismatch['at']}):\n"
                f"  Hugging Face: {mismatch['hugging_face']}\n"
                f"  runtime:      {mismatch['runtime']}")
    think = "on" if mismatch["think"] else "off"
    if mismatch["part"] == "refused":
        return (f"conversation {mismatch['conversation']!r} (thinking {think}) is rendered by Hugging Face, but the "
                f"runtime refused it: {mismatch['error']}")
    if mismatch["part"] == "text":
        return (f"conversation {mismatch['conversation']!r} (thinking {think}) renders differently from "
                f"character {mismatch['at']} on:\n"
                f"  Hugging Face: {mismatch['hugging_face']!r}\n"
                f"  runtime:      {mismatch['runtime']!r}")
    return (f"conversation {mismatch['conversation']!r} (thinking {think}) renders the same text but encodes it "
            f"differently from token {mismatch['at']} on (ids from token {mismatch['from_token']}):\n"
            f"  Hugging Face: {mismatch['hugging_face']}\n"
            f"  runtime:      {mismatch['runtime']}")


def summary_line(record: Optional[dict]) -> str:
    """The build summary's and `verify`'s line."""
    if record is None:
        return "not checked (a bundle from before the parity check)"
    if record["result"] == "passed":
        return (f"passed: {record.get('strings')} strings and {record.get('conversations')} conversations (thinking off and "
                "on) give Hugging Face's ids and prompts")
    try:
        first = f"; first: {describe(record['first_mismatch']).splitlines()[0]}"
    except (KeyError, TypeError, AttributeError):  # an edited manifest: say what can be said
        first = ""
    return f"FAILED on {record.get('mismatches')} of them{first}"


def check_bundle(bundle_dir: Path, model_dir: Path, testset: TestSet | None = None) -> dict:
    """Run the check on a bundle (or a staged one) through its own shim against the Hugging Face tokenizer in
    `model_dir`: the record, or ParityError (with the record) when anything differed."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with BundleWorker(bundle_dir, device="cpu", verify=False) as worker:
        record = compare(worker, tokenizer, testset)
    if record["result"] == "failed":
        raise ParityError(
            f"its runtime ({worker.info.get('engine')}) tokenizes or renders {record['mismatches']} item(s) of the "
            f"parity test set ({TESTSET.name}) differently from Hugging Face's tokenizer of {model_dir}; the first: "
            f"{describe(record['first_mismatch'])}", record)
    return record
