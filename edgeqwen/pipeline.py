"""The build pipeline: a short list of named stages with plain contracts.

    resolve   model + target + recipe -> BuildPlan        (seconds; all input errors surface here)
    fit       BuildPlan -> MemoryEstimate, or FitError    (before any long work)
    convert   backend writes the runtime's files          (Olive / ONNX Runtime GenAI builder)
    bundle    shim, device README, manifest; atomic move into place

No stage reaches into another's internals: the backend only sees the plan and
folders, the bundle stage only sees files and the plan.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from edgeqwen.backends import backend_for, runtime_requirement
from edgeqwen.bundle import manifest as manifest_format
from edgeqwen.bundle.readme import device_readme
from edgeqwen.bundle.writer import StagedBundle, check_destination
from edgeqwen.errors import BuildError
from edgeqwen.fit import MemoryEstimate, check_fit
from edgeqwen.models import ModelSource, resolve_model
from edgeqwen.plan import BuildPlan, resolve_plan
from edgeqwen.recipes import Recipe, load_recipe, recipe_for_model_type
from edgeqwen.targets import TargetProfile, load_target

SHIM_SOURCES = {"onnxruntime-genai": Path(__file__).parent / "bundle" / "shim_ort_genai.py"}
MB = 1024 * 1024


@dataclass(frozen=True)
class BuildRequest:
    target: str
    model: Optional[str] = None  # None: the shipped demo model
    recipe: Optional[str] = None  # None: chosen by the model's model_type
    precision: Optional[str] = None
    context_length: Optional[int] = None
    out: Optional[Path] = None
    force: bool = False


@dataclass(frozen=True)
class ResolvedBuild:
    source: ModelSource
    target: TargetProfile
    recipe: Recipe
    plan: BuildPlan
    memory: MemoryEstimate
    destination: Path


@dataclass
class BuildResult:
    resolved: ResolvedBuild
    manifest: dict
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def bundle_dir(self) -> Path:
        return self.resolved.destination

    def to_dict(self) -> dict:
        plan, source = self.resolved.plan, self.resolved.source
        return {
            "status": "ok",
            "bundle": str(self.bundle_dir),
            "model": plan.model.id,
            "target": plan.target,
            "recipe": plan.recipe,
            "plan_hash": plan.hash(),
            "bundle_bytes": self.manifest["bundle_bytes"],
            "model_file_bytes": model_file_bytes(self.manifest),
            "fp16_checkpoint_bytes": fp16_checkpoint_bytes(source),
            "size_ratio_vs_fp16": round(self.manifest["bundle_bytes"] / fp16_checkpoint_bytes(source), 4),
            "model_file_ratio_vs_fp16": round(model_file_bytes(self.manifest) / fp16_checkpoint_bytes(source), 4),
            "memory_estimate": self.resolved.memory.to_dict(),
            "seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
        }

    def summary(self) -> str:
        d = self.to_dict()
        run = f"python {self.bundle_dir / 'shim.py'} \"your prompt\""
        return (
            f"Built {d['model']} for {d['target']} (recipe {d['recipe']}) in {sum(self.stage_seconds.values()):.0f} s\n"
            f"  bundle   {self.bundle_dir}\n"
            f"  size     {d['bundle_bytes'] / MB:.1f} MB = {d['size_ratio_vs_fp16']:.0%} of the FP16 checkpoint "
            f"({d['fp16_checkpoint_bytes'] / MB:.1f} MB); model files {d['model_file_bytes'] / MB:.1f} MB = "
            f"{d['model_file_ratio_vs_fp16']:.0%}, the rest is the tokenizer\n"
            f"  memory   ~{d['memory_estimate']['total_mb']:.0f} MB at {d['memory_estimate']['context_length']} "
            f"tokens of the target's {d['memory_estimate']['budget_mb']:.0f} MB budget\n"
            f"  run it   {run}\n"
            f"           or: edgeqwen run {self.bundle_dir} \"your prompt\""
        )


def model_file_bytes(manifest: dict) -> int:
    """The ONNX graph and its weights, without tokenizer, shim and docs."""
    return sum(entry["size"] for name, entry in manifest["files"].items() if name.startswith("model.onnx"))


def fp16_checkpoint_bytes(source: ModelSource) -> int:
    """The size of the model as a 16-bit checkpoint: the usual reference for 'how much smaller'."""
    return 2 * source.num_parameters


def default_destination(source: ModelSource, target: TargetProfile) -> Path:
    return Path("bundles") / f"{source.short_name}-{target.name}"


def resolve(request: BuildRequest) -> ResolvedBuild:
    """Every check that needs no conversion: inputs, plan, fit and destination."""
    target = load_target(request.target)
    source = resolve_model(request.model)
    recipe = load_recipe(request.recipe) if request.recipe else recipe_for_model_type(source.model_type)
    plan = resolve_plan(source, target, recipe, request.precision, request.context_length)
    backend_for(plan.engine)  # refuses engines this version cannot build, before the fit check's numbers
    memory = check_fit(plan)
    destination = request.out or default_destination(source, target)
    return ResolvedBuild(source, target, recipe, plan, memory, destination)


def build(request: BuildRequest) -> BuildResult:
    timings: dict[str, float] = {}
    started = time.monotonic()
    resolved = resolve(request)  # input errors surface here, before any progress output
    check_destination(resolved.destination, request.force)
    timings["resolve"] = time.monotonic() - started

    backend = backend_for(resolved.plan.engine)
    stages = tqdm(total=2, desc="edgeqwen build", unit="stage", bar_format="{desc}: {n}/{total} {postfix}")
    staged = StagedBundle(resolved.destination, request.force)
    with stages, staged as staging:
        work_dir = Path(tempfile.mkdtemp(prefix="edgeqwen-work-"))
        try:
            started = time.monotonic()
            stages.set_postfix_str(f"convert ({resolved.plan.engine})")
            engine_facts = backend.build(resolved.plan, resolved.source.path, work_dir, staging)
            timings["convert"] = time.monotonic() - started
        except BuildError as e:
            raise BuildError(f"{e}\n(work folder kept for inspection: {work_dir})") from None
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        shutil.rmtree(work_dir, ignore_errors=True)
        stages.update(1)

        started = time.monotonic()
        stages.set_postfix_str("bundle")
        manifest = write_bundle(resolved, staging, engine_facts)
        staged.commit()  # the only move into place: nothing reaches the destination before this
        timings["bundle"] = time.monotonic() - started
        stages.update(1)
    return BuildResult(resolved, manifest, timings)


def write_bundle(resolved: ResolvedBuild, staging: Path, engine_facts: dict) -> dict:
    plan, target = resolved.plan, resolved.target
    shutil.copyfile(SHIM_SOURCES[plan.engine], staging / "shim.py")
    requirement = runtime_requirement(plan.engine, plan.device)
    files = sorted(p.name for p in staging.iterdir() if p.is_file()) + ["README.md"]
    model_bytes = sum(p.stat().st_size for p in staging.iterdir() if p.is_file())
    (staging / "README.md").write_text(device_readme(plan, target, requirement, model_bytes, sorted(files)))
    source = resolved.source
    body = {
        "model": {
            "id": source.id,
            "origin": source.origin,
            "architecture": source.architecture,
            "weights_sha256": source.weights_sha256,
            "num_parameters": source.num_parameters,
            "fp16_checkpoint_bytes": fp16_checkpoint_bytes(source),
        },
        "target": target.name,
        "recipe": resolved.recipe.name,
        "plan": plan.to_dict(),
        "plan_hash": plan.hash(),
        "runtime": {"engine": plan.engine, "device": plan.device, "requirement": requirement},
        "memory_estimate": resolved.memory.to_dict(),
        "engine": engine_facts,
        "tools": manifest_format.tool_versions(),
    }
    return manifest_format.write_manifest(staging, body)
