"""The quality ladder (`--quality auto`): the smallest bundle that meets the drift budget.

The rungs (edgeqwen.rungs) that apply to the plan's engine and model family are ordered by the weight
bytes the fit model estimates for each (then by their build effort), and built one after another by
the pipeline's gated build: each goes through the drift gate, the first that passes becomes the
bundle, and the reference logits, the model hash and every conversion are shared between rungs (and
cached across runs). Every rung tried is a row of the quality table (edgeqwen.quality), shown in the
build summary and stored in drift.json and the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Optional

from edgeqwen import pipeline
from edgeqwen.cache import BuildCache
from edgeqwen.drift.gate import DriftBudgetExceeded
from edgeqwen.errors import FitError, PlanError
from edgeqwen.pipeline import BuildRequest, BuildResult, ResolvedBuild, SharedWork
from edgeqwen.quality import Row, SkippedRow, format_table
from edgeqwen.rungs import Rung, load_rung, rung_names, rungs_dir
from edgeqwen.schema import to_dict


@dataclass(frozen=True)
class Candidate:
    rung: Rung
    resolved: Optional[ResolvedBuild]  # None when the rung cannot apply
    reason: str = ""  # why not


def candidates(request: BuildRequest, shared: SharedWork) -> list[Candidate]:
    """The rungs that apply to this model and target, smallest estimated weights first (may be none)."""
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
        same = json.dumps([to_dict(plan.quantization), to_dict(plan.engine_options)], sort_keys=True)
        if same in seen:
            continue
        seen.add(same)
        kept.append(c)
    return kept


def build_auto(request: BuildRequest, cache: BuildCache | None, shared: SharedWork) -> BuildResult:
    """Build rung after rung until one meets the drift budget; raise with the whole table if none does."""
    ladder = candidates(request, shared)
    if not ladder:  # no rung for this engine and family (e.g. a recipes folder without rungs/): the recipe as is
        return pipeline.build(request, cache, shared)
    trail: list[Row] = [SkippedRow(c.rung.name, c.reason) for c in ladder if c.resolved is None]
    seconds: dict[str, float] = {}
    for candidate in (c for c in ladder if c.resolved is not None):
        name = candidate.rung.name
        started = time.monotonic()
        gated = pipeline.build_gated(dataclasses.replace(request, rung=name), cache, shared, mode="auto",
                                     earlier=tuple(trail))
        seconds[name] = time.monotonic() - started
        if gated.result is not None:
            gated.result.rung_seconds = seconds
            gated.result.stage_seconds["total"] = sum(seconds.values())  # the whole climb, not only the last rung
            return gated.result
        trail.append(gated.row)
    raise DriftBudgetExceeded(
        f"no rung of the quality ladder meets the drift budget of {request.target}; nothing was written.\n"
        + format_table([row.to_dict() for row in trail], seconds)
        + "\nLoosen the budget (--max-mean-kld, --max-ppl-ratio, --min-top1-agreement) or add a rung in "
        f"{rungs_dir()}"
    )
