"""The quality ladder (`--quality auto`): the smallest bundle that meets the drift budget.

A rung (recipes/rungs/*.toml) is a named set of quantization choices layered
on top of the target and the model's recipe: k-quant scales, INT8 vocabulary
tables, AWQ and scale estimation, a mixed INT4/INT8 ratio. The rungs that
apply to the plan's engine and model family are ordered by the weight bytes
the fit model estimates for each (then by their build effort), and built one
after another through the normal pipeline: each goes through the drift gate,
the first that passes becomes the bundle, and the reference logits, the model
hash and every conversion are shared between rungs (and cached across runs).

Every rung tried is a row of the quality table, shown in the build summary and
stored in drift.json and the manifest (without build times, which would make
otherwise identical bundles differ).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edgeqwen.errors import FitError, PlanError, RecipeError
from edgeqwen.recipes import NncfOverrides, QuantizationOverrides, Recipe, recipes_dir
from edgeqwen.schema import load_named, to_dict
from edgeqwen.targets import Engine

MB = 1024 * 1024


@dataclass(frozen=True)
class Rung:
    name: str
    description: str
    engines: tuple[Engine, ...]
    model_types: tuple[str, ...]
    quantization: QuantizationOverrides = QuantizationOverrides()
    nncf: NncfOverrides = NncfOverrides()
    effort: int = 0  # among rungs of the same estimated size, the cheaper build is tried first
    path: Path = field(default=Path(), compare=False, metadata={"internal": True})


def rungs_dir() -> Path:
    return recipes_dir() / "rungs"


def rung_names() -> list[str]:
    return sorted(p.stem for p in rungs_dir().glob("*.toml"))


def load_rung(name: str) -> Rung:
    return load_named(Rung, rungs_dir(), name, "rung", RecipeError)


def apply_rung(recipe: Recipe, rung: Rung) -> Recipe:
    """The recipe with the rung's choices on top (a rung's value wins where it sets one)."""

    def overlay(base, top):
        chosen = {k: v for k, v in dataclasses.asdict(top).items() if v is not None}
        return dataclasses.replace(base, **chosen)

    return dataclasses.replace(
        recipe,
        name=f"{recipe.name}+{rung.name}",
        quantization=overlay(recipe.quantization, rung.quantization),
        nncf=overlay(recipe.nncf, rung.nncf),
    )


@dataclass(frozen=True)
class Candidate:
    rung: Rung
    resolved: Optional[object]  # pipeline.ResolvedBuild, or None when the rung cannot apply
    reason: str = ""  # why not


def candidates(request, shared) -> list[Candidate]:
    """The rungs that apply to this model and target, smallest estimated weights first (may be none)."""
    from edgeqwen import pipeline

    base = pipeline.resolve(request, shared)  # input errors surface for the plain plan first
    engine, model_type = base.plan.engine, base.plan.model.model_type
    found = []
    for name in rung_names():
        rung = load_rung(name)
        if engine not in rung.engines or model_type not in rung.model_types:
            continue
        try:
            found.append(Candidate(rung, pipeline.resolve(dataclasses.replace(request, rung=name), shared)))
        except (PlanError, FitError) as e:
            found.append(Candidate(rung, None, str(e)))
    if found and not any(c.resolved for c in found):
        raise PlanError(f"no rung in {rungs_dir()} applies to engine {engine!r} and model_type {model_type!r}"
                        + "".join(f"\n  - {c.rung.name}: {c.reason}" for c in found)
                        + "\nuse --quality fixed to build the target's own recipe")
    ordered = sorted(found, key=lambda c: (c.resolved is None,
                                           c.resolved.memory.weights_bytes if c.resolved else 0,
                                           c.rung.effort, c.rung.name))
    return without_repeats(ordered)


def without_repeats(ordered: list[Candidate]) -> list[Candidate]:
    """A rung that asks for what the target already has (blocks of 32 on a block-32 target) is the same build
    as an earlier rung: it is left out rather than built and measured twice."""
    seen: set[str] = set()
    kept = []
    for c in ordered:
        if c.resolved is None:
            kept.append(c)
            continue
        plan = c.resolved.plan
        same = json.dumps([to_dict(plan.quantization), to_dict(plan.nncf)], sort_keys=True)
        if same in seen:
            continue
        seen.add(same)
        kept.append(c)
    return kept


def skipped_row(candidate: Candidate) -> dict:
    return {"rung": candidate.rung.name, "status": "skipped", "reason": candidate.reason}


def build_auto(request, cache, shared):
    """Build rung after rung until one meets the drift budget; raise with the whole table if none does."""
    from edgeqwen import pipeline
    from edgeqwen.drift.gate import DriftBudgetExceeded

    ladder = candidates(request, shared)
    if not ladder:  # no rung for this engine and family (e.g. a recipes folder without rungs/): the recipe as is
        return pipeline.build(request, cache, shared)
    trail = [skipped_row(c) for c in ladder if c.resolved is None]
    seconds: dict[str, float] = {}
    for candidate in (c for c in ladder if c.resolved is not None):
        name = candidate.rung.name
        started = time.monotonic()
        attempt = dataclasses.replace(request, rung=name, quality="auto", quality_trail=tuple(trail))
        try:
            result = pipeline.build(attempt, cache, shared)
        except DriftBudgetExceeded as e:
            seconds[name] = time.monotonic() - started
            trail.append(e.quality_row)
            continue
        seconds[name] = time.monotonic() - started
        result.rung_seconds = seconds
        result.stage_seconds["total"] = sum(seconds.values())  # the whole climb, not only the last rung
        return result
    raise DriftBudgetExceeded(
        f"no rung of the quality ladder meets the drift budget of {request.target}; nothing was written.\n"
        + format_table(trail, seconds)
        + "\nLoosen the budget (--max-mean-kld, --max-ppl-ratio, --min-top1-agreement) or add a rung in "
        f"{rungs_dir()}"
    )


def format_table(rows: list[dict], seconds: dict[str, float] | None = None, indent: str = "  ") -> str:
    """The quality table for people: one line per rung, in the order tried."""
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
