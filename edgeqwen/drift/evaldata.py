"""Evaluation text: the shipped held-out corpus by default, or a user's own file (plain text or JSONL).

Text is tokenized with the model's own tokenizer into one stream (records
separated by <|endoftext|>; chat records rendered with the model's chat
template), then cut into fixed windows. The file's sha256 goes into the
report so a figure can be traced to the exact text it was measured on.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgeqwen.demo.assets import CORPUS_DIR
from edgeqwen.errors import EdgeqwenError

DEFAULT_EVAL_FILE = CORPUS_DIR / "heldout.jsonl"
DOCUMENT_SEPARATOR = "<|endoftext|>"  # how Qwen2 and Qwen3 were pretrained to separate documents
MIN_EVAL_TOKENS = 16  # fewer measure nothing: one window's KL divergence is noise
ACCEPTED = "a .txt file (plain text) or a .jsonl file with one {\"text\": ...} or {\"messages\": [...]} per line"


class EvalDataError(EdgeqwenError):
    """The evaluation text cannot be read."""


@dataclass(frozen=True, eq=False)
class EvalData:
    source: str
    sha256: str
    records: tuple[dict, ...]  # {"text": ...} or {"messages": [...]}

    # The records are read from the file's bytes (its sha256) as its name says (.txt or .jsonl): those two
    # identify them, and make an EvalData usable as a memo key.
    def __eq__(self, other):
        return isinstance(other, EvalData) and (self.source, self.sha256) == (other.source, other.sha256)

    def __hash__(self):
        return hash((self.source, self.sha256))


def load_eval_data(
    path: Path | None = None, option: str = "--eval-data", default: Path = DEFAULT_EVAL_FILE
) -> EvalData:
    """Read a text file for measurement (or calibration: `option` names the flag in error messages)."""
    path = Path(path) if path else default
    if not path.is_file():
        raise EvalDataError(f"{option} {path}: file not found; expected {ACCEPTED}")
    raw = path.read_bytes()
    source = f"edgeqwen corpus ({path.stem} split)" if path.parent == CORPUS_DIR else path.name
    text = utf8_text(raw, path, option)
    if path.suffix == ".txt":
        records = ({"text": text},)
    elif path.suffix == ".jsonl":
        records = tuple(parse_jsonl(path, text, option))
    else:
        raise EvalDataError(f"{option} {path}: unknown format {path.suffix!r}; expected {ACCEPTED}")
    if not records or not any(r.get("text", "").strip() or r.get("messages") for r in records):
        raise EvalDataError(f"{option} {path}: no text in it")
    return EvalData(source=source, sha256=hashlib.sha256(raw).hexdigest(), records=records)


def utf8_text(raw: bytes, path: Path, option: str) -> str:
    """The file as text: UTF-8 (a binary file, or text in another encoding, is named, not read as garbage)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise EvalDataError(f"{option} {path}:{line}: not UTF-8 text (byte {e.start}); expected {ACCEPTED}") from None
    if "\0" in text:
        raise EvalDataError(f"{option} {path}: holds NUL characters, so it is not a text file; expected {ACCEPTED}")
    return text


ROLES = ("system", "user", "assistant", "tool")


def message_problem(messages: list) -> str | None:
    """What makes a {"messages": [...]} record unrenderable by a chat template, or None."""
    if not messages:
        return "\"messages\" is empty"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] is not an object"
        if message.get("role") not in ROLES:
            return f"messages[{i}].role = {message.get('role')!r}: expected one of {', '.join(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"messages[{i}].content is not a string"
    return None


def parse_jsonl(path: Path, text: str, option: str = "--eval-data"):
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{option} {path}:{number}: not valid JSON ({e})") from None
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            yield {"text": record["text"]}
        elif isinstance(record, dict) and isinstance(record.get("messages"), list):
            problem = message_problem(record["messages"])
            if problem:
                raise EvalDataError(f"{option} {path}:{number}: {problem}")
            yield {"messages": record["messages"]}
        else:
            raise EvalDataError(f"{option} {path}:{number}: expected an object with \"text\" or \"messages\"")


def token_windows(tokenizer, data: EvalData, max_tokens: int, window: int) -> list[list[int]]:
    """Fixed windows of `window` tokens from the start of the stream, `max_tokens` in all (at least one window)."""
    stream: list[int] = []
    for record in data.records:
        if "messages" in record:
            rendered = tokenizer.apply_chat_template(record["messages"], tokenize=False, enable_thinking=False)
        else:
            rendered = record["text"] + DOCUMENT_SEPARATOR
        stream.extend(tokenizer(rendered)["input_ids"])
        if len(stream) >= max_tokens:
            break
    stream = stream[:max_tokens]
    if len(stream) < MIN_EVAL_TOKENS:
        raise EvalDataError(f"{data.source}: only {len(stream)} tokens; need at least {MIN_EVAL_TOKENS} to measure drift")
    return [stream[i : i + window] for i in range(0, len(stream), window) if len(stream[i : i + window]) >= 2]


@functools.lru_cache(maxsize=16)
def counted_tokens(data: EvalData, tokenizer_file: str, size: int, mtime_ns: int) -> int:
    """Tokens of `data` up to MIN_EVAL_TOKENS. Memoized by the text's sha256 and the tokenizer file's path, size and
    mtime: loading Qwen's tokenizer takes a few tenths of a second, and the quality ladder resolves once per rung."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    count = 0
    for record in data.records:
        texts = [m["content"] for m in record["messages"]] if "messages" in record else [record["text"]]
        count += sum(len(tokenizer.encode(text).ids) for text in texts) + (1 if "text" in record else 0)
        if count >= MIN_EVAL_TOKENS:
            break
    return count


def check_enough_tokens(data: EvalData, tokenizer_file: Path, option: str = "--eval-data") -> None:
    """Refuse, before any conversion, text too short to measure drift on (the model's own tokenizer counts it;
    chat records count their contents only, a lower bound of what their template renders)."""
    stat = tokenizer_file.stat()
    count = counted_tokens(data, str(tokenizer_file), stat.st_size, stat.st_mtime_ns)
    if count >= MIN_EVAL_TOKENS:
        return
    raise EvalDataError(f"{option} {data.source}: only {count} tokens of text; the drift gate needs at least "
                        f"{MIN_EVAL_TOKENS}")
