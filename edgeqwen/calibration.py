"""Calibration text for data-aware quantization (NNCF's AWQ, scale estimation and GPTQ; Olive's GPTQ).

It comes from the corpus the project ships (the train split, never the
held-out split the drift gate measures on) or from a user's file; never from a
model hub. The text's sha256 joins the conversion's cache key, because
different calibration text gives different weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeqwen.demo.assets import CORPUS_DIR
from edgeqwen.drift.evaldata import load_eval_data

DEFAULT_CALIBRATION_FILE = CORPUS_DIR / "train.jsonl"
MIN_CHARACTERS = 200  # headings and one-liners calibrate nothing


@dataclass(frozen=True)
class CalibrationText:
    source: str
    sha256: str
    samples: tuple[str, ...]


def calibration_text(samples: int, path: Path | str | None = None) -> CalibrationText:
    data = load_eval_data(path, option="--calib-data", default=DEFAULT_CALIBRATION_FILE)
    texts = []
    for record in data.records:
        if "messages" in record:
            text = "\n".join(str(m.get("content", "")) for m in record["messages"])
        else:
            text = record["text"]
        if len(text.strip()) >= MIN_CHARACTERS:
            texts.append(text)
        if len(texts) == samples:
            break
    if not texts:  # a short user file: use what there is
        texts = [r.get("text", "") for r in data.records if r.get("text", "").strip()][:samples]
    return CalibrationText(source=data.source, sha256=data.sha256, samples=tuple(texts))
