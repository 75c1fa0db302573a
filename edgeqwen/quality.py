"""The quality table: one row per rung a build tried, and the record a bundle stores of it.

A fixed build has one row, its own; `--quality auto` (edgeqwen.ladder) has one per rung tried, smallest
first, the last being the bundle's. The record goes into drift.json and the manifest without build
times (they would make otherwise identical bundles differ); the build summary and `--json` add them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

MB = 1024 * 1024


@dataclass(frozen=True)
class QualityRow:
    """A rung that was built and measured."""

    rung: str
    status: Literal["passed", "failed"]
    quantization: dict
    engine_options: dict
    bundle_bytes: int
    estimated_weights_bytes: int
    mean_kld: float
    ppl_ratio: float
    top1_agreement: float
    misses: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return {"rung": self.rung, "status": self.status, "quantization": self.quantization,
                "engine_options": self.engine_options, "bundle_bytes": self.bundle_bytes,
                "estimated_weights_bytes": self.estimated_weights_bytes, "mean_kld": self.mean_kld,
                "ppl_ratio": self.ppl_ratio, "top1_agreement": self.top1_agreement, "misses": list(self.misses)}


@dataclass(frozen=True)
class SkippedRow:
    """A rung that could not apply to this model and target, and why."""

    rung: str
    reason: str
    status: Literal["skipped"] = "skipped"

    def to_dict(self) -> dict:
        return {"rung": self.rung, "status": self.status, "reason": self.reason}


Row = Union[QualityRow, SkippedRow]


@dataclass(frozen=True)
class QualityRecord:
    """What drift.json and the manifest say about how the bundle's quantization was chosen."""

    mode: Literal["fixed", "auto"]
    chosen: Optional[str]  # the rung applied to the recipe, or None: the recipe as it is
    tried: tuple[Row, ...]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "chosen": self.chosen, "tried": [row.to_dict() for row in self.tried]}


def with_times(quality: dict, seconds: dict[str, float]) -> dict:
    return {**quality, "rung_seconds": {name: round(s, 1) for name, s in seconds.items()}}


def format_table(rows: list[dict], seconds: dict[str, float] | None = None, indent: str = "  ") -> str:
    """The quality table for people: one line per rung, in the order tried (rows as stored in drift.json)."""
    seconds = seconds or {}
    lines = [f"{indent}{'rung':<20} {'result':<8} {'size MB':>8} {'mean KLD':>9} {'PPL x':>7} {'top-1':>6} {'time':>6}"]
    for row in rows:
        if row["status"] == "skipped":
            lines.append(f"{indent}{row['rung']:<20} skipped  {row['reason'][:90]}")
            continue
        took = f"{seconds[row['rung']]:.0f} s" if row["rung"] in seconds else ""
        lines.append(
            f"{indent}{row['rung']:<20} {row['status']:<8} {row['bundle_bytes'] / MB:>8.1f} {row['mean_kld']:>9.5f} "
            f"{row['ppl_ratio']:>7.3f} {row['top1_agreement']:>6.1%} {took:>6}"
            + (f"  missed: {'; '.join(row['misses'])}" if row["misses"] else "")
        )
    return "\n".join(lines)
