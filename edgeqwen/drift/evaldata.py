"""Evaluation text: the shipped held-out corpus by default, or a user's own file (plain text or JSONL).

Text is tokenized with the model's own tokenizer into one stream (records
separated by <|endoftext|>; chat records rendered with the model's chat
template), then cut into fixed windows. The file's sha256 goes into the
report so a figure can be traced to the exact text it was measured on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgeqwen.demo.assets import CORPUS_DIR
from edgeqwen.errors import EdgeqwenError

DEFAULT_EVAL_FILE = CORPUS_DIR / "heldout.jsonl"
DOCUMENT_SEPARATOR = "<|endoftext|>"  # how Qwen2 and Qwen3 were pretrained to separate documents
ACCEPTED = "a .txt file (plain text) or a .jsonl file with one {\"text\": ...} or {\"messages\": [...]} per line"


class EvalDataError(EdgeqwenError):
    """The evaluation text cannot be read."""


@dataclass(frozen=True)
class EvalData:
    source: str
    sha256: str
    records: tuple[dict, ...]  # {"text": ...} or {"messages": [...]}


def load_eval_data(
    path: Path | None = None, option: str = "--eval-data", default: Path = DEFAULT_EVAL_FILE
) -> EvalData:
    """Read a text file for measurement (or calibration: `option` names the flag in error messages)."""
    path = Path(path) if path else default
    if not path.is_file():
        raise EvalDataError(f"{option} {path}: file not found; expected {ACCEPTED}")
    raw = path.read_bytes()
    source = f"edgeqwen corpus ({path.stem} split)" if path.parent == CORPUS_DIR else path.name
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".txt":
        records = ({"text": text},)
    elif path.suffix == ".jsonl":
        records = tuple(parse_jsonl(path, text))
    else:
        raise EvalDataError(f"{option} {path}: unknown format {path.suffix!r}; expected {ACCEPTED}")
    if not records or not any(r.get("text", "").strip() or r.get("messages") for r in records):
        raise EvalDataError(f"{option} {path}: no text in it")
    return EvalData(source=source, sha256=hashlib.sha256(raw).hexdigest(), records=records)


def parse_jsonl(path: Path, text: str):
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{path}:{number}: not valid JSON ({e})") from None
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            yield {"text": record["text"]}
        elif isinstance(record, dict) and isinstance(record.get("messages"), list):
            yield {"messages": record["messages"]}
        else:
            raise EvalDataError(f"{path}:{number}: expected an object with \"text\" or \"messages\"")


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
    if len(stream) < 16:
        raise EvalDataError(f"{data.source}: only {len(stream)} tokens; need at least 16 to measure drift")
    return [stream[i : i + window] for i in range(0, len(stream), window) if len(stream[i : i + window]) >= 2]
