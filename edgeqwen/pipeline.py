"""The build pipeline: a short list of named stages with plain contracts.

    resolve   model + target + recipe -> BuildPlan        (seconds; all input errors surface here)
    fit       BuildPlan -> MemoryEstimate, or FitError    (before any long work)
    convert   the target's backend writes the runtime's files, and the bundle's shim.py is added
    parity    the staged bundle's tokenizer and chat template, through its own shim, vs Hugging Face's on
              the shipped test set (edgeqwen.parity); any difference: refused
    drift     the staged bundle, through its own shim, vs the full-precision model; over budget: refused
    bundle    device README, manifest
    device    the bundle on its target's instruction set with its documented runtime (edgeqwen.device);
              failed: refused; then the atomic move into place

No stage reaches into another's internals: the backend only sees the plan and
folders, the parity and drift stages only the staged bundle's shim, the bundle stage only
files and the plan. `build_gated` is one build through the gate, returning
what it found either way (the quality ladder climbs with it); `build` is the
fixed build, which raises DriftBudgetExceeded for a bundle over budget.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from edgeqwen import parity
from edgeqwen.backends import backend_for
from edgeqwen.bench.bandwidth import decode_ceiling
from edgeqwen.bench.predict import prediction_line
from edgeqwen.bundle import manifest as manifest_format
from edgeqwen.bundle.readme import device_readme
from edgeqwen.bundle.shim_file import write_shim
from edgeqwen.build_memory import BuildMemory, build_memory_limit, check_build_memory, estimate_build_memory
from edgeqwen.bundle.writer import StagedBundle, remove_abandoned
from edgeqwen.stages import build_label, request_label, stage_boundary
from edgeqwen.cache import BuildCache, cache_key, copy_entry, source_sha256
from edgeqwen.device import check as device_check
from edgeqwen.drift.evaldata import MIN_EVAL_TOKENS, check_enough_tokens, load_eval_data
from edgeqwen.drift.evaluate import DEFAULT_EVAL_TOKENS, MAX_EVAL_TOKENS, WINDOW, measure_drift
from edgeqwen.drift.gate import DriftBudgetExceeded
from edgeqwen.drift.report import REPORT_FILES, write_report
from edgeqwen.errors import BuildError, DeviceCheckFailed, ParityError, PlanError, WorkerError
from edgeqwen.fit import MemoryEstimate, check_fit
from edgeqwen.models import ModelSource, resolve_model
from edgeqwen.plan import BuildPlan, resolve_plan
from edgeqwen.quality import QualityRecord, QualityRow, Row, format_table, with_times
from edgeqwen.recipes import Recipe, load_recipe, recipe_for_model_type
from edgeqwen.rungs import apply_rung, load_rung
from edgeqwen.schema import to_dict
from edgeqwen.targets import TargetProfile, load_target

WORK_PREFIX = "edgeqwen-work-"  # the engines' scratch folders, in the system's temporary folder
CACHE_NOTES = {"bundle": " (cached bundle)", "conversion": " (cached conversion)", "none": ""}
ENGINE_FACTS = "engine_facts.json"  # kept beside a cached conversion, not shipped in the bundle
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
    eval_data: Optional[Path] = None  # None: the shipped held-out corpus
    eval_tokens: int = DEFAULT_EVAL_TOKENS
    drift_overrides: Optional[dict] = None  # max_ppl_ratio / max_mean_kld / min_top1_agreement
    rung: Optional[str] = None  # a rung of recipes/rungs/ on top of the recipe
    skip_drift: bool = False  # random-weight benchmark models only: no drift measured, and the manifest says so
    calib_data: Optional[Path] = None  # None: the train split of the shipped corpus
    device_check: bool = True  # False: the bundle's device_check.json says "not run" and why
    max_build_memory_gb: Optional[float] = None  # None: what this host has available when the build starts
    device_ram_gb: Optional[float] = None  # None: the RAM size the target profile describes


@dataclass(frozen=True)
class ResolvedBuild:
    source: ModelSource
    target: TargetProfile
    recipe: Recipe
    plan: BuildPlan
    memory: MemoryEstimate
    destination: Path
    build_memory: BuildMemory  # what the build itself needs on this host, stage by stage


@dataclass
class BuildResult:
    resolved: ResolvedBuild
    manifest: dict
    drift: dict
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cache_hit: str = "none"  # "bundle", "conversion" or "none"
    rung_seconds: dict[str, float] = field(default_factory=dict)  # build time of each rung tried (auto mode)

    @property
    def bundle_dir(self) -> Path:
        return self.resolved.destination

    @cached_property
    def device_check(self) -> device_check.DeviceCheck:
        return device_check.DeviceCheck(json.loads((self.bundle_dir / device_check.REPORT_FILE).read_text()))

    @cached_property
    def model_file_bytes(self) -> int:
        """The model's graphs and weights (every role the backend names), without tokenizer, shim and docs."""
        return model_file_bytes(self.manifest, backend_for(self.resolved.plan.engine).model_files(self.bundle_dir))

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
            "model_file_bytes": self.model_file_bytes,
            "fp16_checkpoint_bytes": fp16_checkpoint_bytes(source),
            "size_ratio_vs_fp16": round(self.manifest["bundle_bytes"] / fp16_checkpoint_bytes(source), 4),
            "model_file_ratio_vs_fp16": round(self.model_file_bytes / fp16_checkpoint_bytes(source), 4),
            "memory_estimate": self.resolved.memory.to_dict(),
            "drift": ({"skipped": True} if self.drift.get("skipped")
                      else {"passed": self.drift["passed"], **self.drift["summary"]}),
            "quality": with_times(self.drift["quality"], self.rung_seconds),
            "parity": self.manifest.get("parity"),  # None for a bundle from before the check
            "device_check": {**self.device_check.summary(), "report": device_check.REPORT_FILE},
            "cache_hit": self.cache_hit,
            "seconds": {k: round(v, 2) for k, v in self.stage_seconds.items() if k != "device_parts"},
        }

    def summary(self) -> str:
        d = self.to_dict()
        run = f"python {self.bundle_dir / 'shim.py'} \"your prompt\""
        return (
            f"Built {d['model']} for {d['target']} (recipe {d['recipe']}) in {self.stage_seconds['total']:.0f} s"
            f"{CACHE_NOTES[self.cache_hit]}\n"
            f"  bundle   {self.bundle_dir}\n"
            f"  size     {d['bundle_bytes'] / MB:.1f} MB = {d['size_ratio_vs_fp16']:.0%} of the FP16 checkpoint "
            f"({d['fp16_checkpoint_bytes'] / MB:.1f} MB); model files {d['model_file_bytes'] / MB:.1f} MB = "
            f"{d['model_file_ratio_vs_fp16']:.0%}, the rest is the tokenizer\n"
            f"  parity   {parity.summary_line(self.manifest.get('parity'))}\n"
            f"  drift    {drift_line(self.drift)}\n"
            f"{quality_lines(self.drift['quality'], self.rung_seconds)}"
            f"{speed_line(self.manifest, self.resolved.plan.device)}"
            f"  device   {device_check.summary_line(self.device_check, self.stage_seconds.get('device_parts'))}\n"
            f"  memory   ~{d['memory_estimate']['total_mb']:.0f} MB at {d['memory_estimate']['context_length']} "
            f"tokens of the target's {d['memory_estimate']['budget_mb']:.0f} MB budget\n"
            f"  run it   {run}\n"
            f"           or: edgeqwen run {self.bundle_dir} \"your prompt\""
        )


def speed_line(manifest: dict, device: str) -> str:
    speed = manifest.get("speed")
    if speed is None:  # a bundle cached before speed facts were recorded
        return ""
    return f"  speed    {prediction_line(speed['bytes_per_token'], speed['target_bandwidth_gbps'], device)}\n"


def drift_line(report: dict) -> str:
    if report.get("skipped"):
        return f"SKIPPED ({report['reason']})"
    s = report["summary"]
    return (
        f"{'passed' if report['passed'] else 'FAILED'}: mean KLD {s['mean_kld']:.4f}, top-1 agreement "
        f"{s['top1_agreement']:.1%}, perplexity {s['ppl_reference']:.2f} -> {s['ppl_bundle']:.2f} "
        f"(x{s['ppl_ratio']:.3f}) over {s['tokens']} tokens"
    )


def quality_lines(quality: dict, seconds: dict[str, float]) -> str:
    if quality["mode"] != "auto" or quality["chosen"] is None:  # fixed, or no rung applied (the recipe as is)
        return ""
    tried = len([r for r in quality["tried"] if r["status"] != "skipped"])
    return (f"  quality  rung {quality['chosen']} chosen by --quality auto ({tried} tried, smallest first):\n"
            + format_table(quality["tried"], seconds, indent=" " * 11) + "\n")


def bundle_bytes_needed(resolved: ResolvedBuild) -> int:
    """Room the staged bundle needs beside its destination: the weights the plan estimates, the tokenizer and
    the small files, with a margin (checked before any conversion)."""
    tokenizer = sum(p.stat().st_size for p in resolved.source.path.glob("tokenizer*") if p.is_file())
    return int(resolved.memory.weights_bytes * 1.1) + tokenizer + 4 * MB


def rejected_report_dir(destination: Path) -> Path:
    return destination.parent / f"{destination.name}.drift-rejected"


def model_file_bytes(manifest: dict, roles: dict[str, tuple[str, ...]]) -> int:
    names = {name for files in roles.values() for name in files}
    return sum(entry["size"] for name, entry in manifest["files"].items() if name in names)


def fp16_checkpoint_bytes(source: ModelSource) -> int:
    """The size of the model as a 16-bit checkpoint: the usual reference for 'how much smaller'."""
    return 2 * source.num_parameters


def default_destination(source: ModelSource, target: TargetProfile) -> Path:
    return Path("bundles") / f"{source.short_name}-{target.name}"


def resolve(request: BuildRequest, shared: "SharedWork | None" = None) -> ResolvedBuild:
    """Every check that needs no conversion: inputs, plan, fit and destination."""
    target = load_target(request.target)
    source = shared.model(request.model) if shared else resolve_model(request.model)
    recipe = load_recipe(request.recipe) if request.recipe else recipe_for_model_type(source.model_type)
    if request.rung:
        recipe = apply_rung(recipe, load_rung(request.rung))
    plan = resolve_plan(source, target, recipe, request.precision, request.context_length, request.drift_overrides,
                        request.calib_data, request.device_ram_gb)
    memory = check_fit(plan, target.hardware)
    if not request.skip_drift:
        check_eval_request(request, source)
    destination = request.out or default_destination(source, target)
    return ResolvedBuild(source, target, recipe, plan, memory, destination, estimate_for(request, plan, memory))


def estimate_for(request: BuildRequest, plan: BuildPlan, memory: MemoryEstimate) -> BuildMemory:
    """The build's own memory, stage by stage, against --max-build-memory or this host's available memory."""
    gate = not request.skip_drift
    return estimate_build_memory(plan, memory.weights_bytes, drift_gate=gate, device_check=gate and request.device_check,
                                 eval_tokens=request.eval_tokens, window=min(WINDOW, plan.context_length),
                                 limit=build_memory_limit(request.max_build_memory_gb))


def check_eval_request(request: BuildRequest, source: ModelSource) -> None:
    """The drift gate's inputs, read now: a bad --eval-data or --eval-tokens costs seconds, not a conversion."""
    if not MIN_EVAL_TOKENS <= request.eval_tokens <= MAX_EVAL_TOKENS:
        raise PlanError(f"--eval-tokens {request.eval_tokens}: expected {MIN_EVAL_TOKENS} to {MAX_EVAL_TOKENS}")
    check_enough_tokens(load_eval_data(request.eval_data), source.path / "tokenizer.json")


@dataclass
class SharedWork:
    """Work reused by every build of one run (`--target all`): the reference model's logits per eval text."""

    reference_memo: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    def model(self, spec: str | None) -> ModelSource:
        """The model, resolved (and its weights hashed) once per run."""
        if spec not in self.sources:
            self.sources[spec] = resolve_model(spec)
        return self.sources[spec]


def bundle_cache_key(resolved: ResolvedBuild, request: BuildRequest, quality: QualityRecord) -> str:
    """Everything a finished bundle's bytes depend on."""
    return cache_key(
        kind="bundle",
        plan=resolved.plan.hash(),
        target=to_dict(resolved.target),  # the device README quotes the profile beyond what the plan holds
        tools=manifest_format.tool_versions(),
        format_version=manifest_format.FORMAT_VERSION,
        code=source_sha256(Path(__file__).parent),  # the shim, README, report and manifest writers
        eval_data=load_eval_data(request.eval_data).sha256,
        eval_tokens=request.eval_tokens,
        quality=quality.to_dict(),  # the rungs tried before this one land in drift.json
        parity_testset=parity.load_testset().sha256,  # its record lands in the manifest
        skip_drift=request.skip_drift,
        device_check=request.device_check,
    )


def conversion_cache_key(resolved: ResolvedBuild) -> str:
    backend = backend_for(resolved.plan.engine)
    return cache_key(kind="conversion", **backend.conversion_key_parts(resolved.plan),
                     tools=manifest_format.tool_versions())


@dataclass
class GatedBuild:
    """One build through the drift gate: the bundle, moved into place, when it passed; what it measured either way."""

    row: Optional[QualityRow]  # None when the gate was skipped
    result: Optional[BuildResult]  # None when the bundle missed its budget (nothing was written)
    refusal: str = ""  # why it missed, with the report kept aside and what to try


def build(request: BuildRequest, cache: BuildCache | None = None, shared: SharedWork | None = None) -> BuildResult:
    """Build one bundle of the target's recipe (and --rung); DriftBudgetExceeded if it misses its budget."""
    gated = build_gated(request, cache, shared)
    if gated.result is None:
        raise DriftBudgetExceeded(gated.refusal)
    return gated.result


def build_gated(request: BuildRequest, cache: BuildCache | None = None, shared: SharedWork | None = None, *,
                mode: str = "fixed", earlier: tuple[Row, ...] = ()) -> GatedBuild:
    """Build one bundle through the drift gate. `mode` and the rows of the rungs tried `earlier` go into the
    bundle's quality record. `cache=None` builds everything afresh; `shared` carries work between builds."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    with stage_boundary("resolve", request_label(request)):
        resolved = resolve(request, shared)  # input errors surface here, before any progress output
    timings["resolve"] = time.monotonic() - started
    before = QualityRecord(mode, request.rung, earlier)

    staged = StagedBundle(resolved.destination, request.force, bundle_bytes_needed(resolved))
    with staged as staging:  # refuses an existing destination without --force, before any long work
        bundle_key = bundle_cache_key(resolved, request, before)
        cached = cache.lookup("bundle", bundle_key) if cache else None
        if cached:
            copy_entry(cached, staging)
            drift = json.loads((staging / "drift.json").read_text())
            manifest = manifest_format.read_manifest(staging)
            cache_status = "bundle"
            row = last_row(drift)
        else:
            cache_status, gate = fresh_build(resolved, request, before, staging, cache, shared, timings)
            if gate.refusal:  # the staged bundle is discarded when the `with` block ends
                return GatedBuild(gate.row, None, gate.refusal)
            manifest, drift, row = gate.manifest, gate.report, gate.row
            if cache:
                cache.store("bundle", bundle_key, staging)
        staged.commit()  # the only move into place: nothing reaches the destination before this
    timings["total"] = time.monotonic() - started
    return GatedBuild(row, BuildResult(resolved, manifest, drift, timings, cache_status))


def last_row(drift: dict) -> Optional[QualityRow]:
    """A cached bundle's own quality row, read back from its drift.json."""
    tried = drift["quality"]["tried"]
    return QualityRow(**{**tried[-1], "misses": tuple(tried[-1]["misses"])}) if tried else None


@dataclass
class Gate:
    """What the drift stage decided about a staged bundle."""

    report: dict  # drift.json (or the stand-in when the gate was skipped)
    row: Optional[QualityRow]  # None when skipped
    refusal: str = ""  # set when the bundle missed its budget
    manifest: Optional[dict] = None  # written once the bundle passed


def fresh_build(resolved, request, before: QualityRecord, staging, cache, shared, timings) -> tuple[str, Gate]:
    """convert (or reuse a cached conversion) -> parity check -> drift gate -> bundle files, all inside `staging`.

    Returns the cache status and the gate's decision (with the manifest, when the bundle passed).
    """
    backend = backend_for(resolved.plan.engine)
    check_build_memory(resolved.build_memory, resolved.plan)  # before any conversion (a cached bundle needs none)
    memo = shared.reference_memo if shared else {}  # the reference's logits, for the drift and device stages
    stages = tqdm(total=5, desc="edgeqwen build", unit="stage", bar_format="{desc}: {n}/{total} {postfix}")
    with stages:
        label = build_label(resolved)
        started = time.monotonic()
        stages.set_postfix_str(f"convert ({resolved.plan.engine})")
        with stage_boundary("convert", label):
            conversion_key = conversion_cache_key(resolved)
            converted = cache.lookup("conversion", conversion_key) if cache else None
            cache_status = "conversion" if converted else "none"
            work_dir = None
            if converted is None:
                work_dir, converted = convert_in_work_folder(resolved, backend, cache, conversion_key)
            try:
                copy_entry(converted, staging)
            finally:
                if work_dir:
                    shutil.rmtree(work_dir, ignore_errors=True)
            engine_facts = json.loads((staging / ENGINE_FACTS).read_text())
            (staging / ENGINE_FACTS).unlink()
            backend.finalize(resolved.plan, staging)
            write_shim(staging / "shim.py")  # before the parity and drift stages, which run the bundle through it
        timings["convert"] = time.monotonic() - started
        stages.update(1)

        started = time.monotonic()
        stages.set_postfix_str("parity")
        with stage_boundary("parity", label):
            parity_record = check_parity(resolved, staging)  # ParityError: the staged bundle is discarded
        timings["parity"] = time.monotonic() - started
        stages.update(1)

        started = time.monotonic()
        stages.set_postfix_str("drift")
        with stage_boundary("drift", label):
            gate = Gate(skipped_drift(before), None) if request.skip_drift else gate_drift(resolved, staging, request,
                                                                                          before, memo)
        if gate.refusal:
            return cache_status, gate
        timings["drift"] = time.monotonic() - started
        stages.update(1)

        started = time.monotonic()
        stages.set_postfix_str("bundle")
        with stage_boundary("bundle", label):
            body = write_bundle(resolved, staging, engine_facts, gate.report, parity_record)
        timings["bundle"] = time.monotonic() - started
        stages.update(1)

        started = time.monotonic()
        stages.set_postfix_str(f"device check ({resolved.target.hardware.cpu_arch})")
        with stage_boundary("device check", label):
            check = run_device_stage(resolved, staging, request, memo)
            gate.manifest = manifest_format.write_manifest(staging, {**body, "device_check": check.summary()})
        timings["device"] = time.monotonic() - started
        timings["device_parts"] = check.seconds
        stages.update(1)
    return cache_status, gate


def check_parity(resolved: ResolvedBuild, staging: Path) -> dict:
    """The staged bundle's runtime tokenizer and chat template against Hugging Face's: the manifest's record, or
    ParityError (raised inside the staging block, so nothing is written) naming the first difference."""
    plan = resolved.plan
    try:
        return parity.check_bundle(staging, resolved.source.path)
    except ParityError as e:
        raise ParityError(f"the {plan.target} bundle of {plan.model.id} was not written to {resolved.destination}: "
                          f"{e}", e.record) from None
    except WorkerError as e:
        raise BuildError(f"the staged bundle did not run through its own shim: {e}") from None


DEVICE_CHECK_OFF = "--no-device-check"


def run_device_stage(resolved: ResolvedBuild, staging: Path, request: BuildRequest, memo: dict):
    """The finished bundle on its target's instruction set; its report goes into the bundle, or aside and the
    build fails when the bundle failed there."""
    plan, target = resolved.plan, resolved.target
    if not request.device_check:
        check = device_check.not_run(target.name, f"{DEVICE_CHECK_OFF}: the bundle was not run on its target's "
                                                  "instruction set")
    elif request.skip_drift:
        check = device_check.not_run(target.name, "--skip-drift: a random-weight benchmark model is not checked")
    else:
        check = device_check.run_check(staging, plan, target, resolved.source.path, request.eval_data,
                                       request.eval_tokens, memo)
    if check.status == "failed":
        kept = resolved.destination.parent / f"{resolved.destination.name}.device-check-failed"
        device_check.write_report(kept, check)
        raise DeviceCheckFailed(
            f"the {target.name} bundle of {plan.model.id} failed its device check, so it was not written to "
            f"{resolved.destination}:\n  {device_check.summary_line(check)}\nReport: {kept}/{device_check.REPORT_FILE}")
    device_check.write_report(staging, check)
    return check


def convert_in_work_folder(resolved, backend, cache: BuildCache | None, key: str) -> tuple[Path, Path]:
    """Run the engine in a scratch folder; return it and the converted files (a cache entry when caching).

    The caller removes the scratch folder once it has copied the converted files.
    """
    scratch = Path(tempfile.gettempdir())
    remove_abandoned(scratch, WORK_PREFIX)  # what builds killed mid-conversion left
    work_dir = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=scratch))
    converted = work_dir / "converted"
    converted.mkdir()
    try:
        facts = backend.convert(resolved.plan, resolved.source.path, work_dir, converted)
    except BuildError as e:
        raise BuildError(f"{e}\n(work folder kept for inspection: {work_dir})") from None
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    (converted / ENGINE_FACTS).write_text(json.dumps(facts, indent=2, sort_keys=True))
    if cache is None:
        return work_dir, converted
    return work_dir, cache.store("conversion", key, converted)


def gate_drift(resolved: ResolvedBuild, staging: Path, request: BuildRequest, before: QualityRecord,
               memo: dict) -> Gate:
    """Measure the staged bundle; write the report into it, or aside (with the refusal) if over budget."""
    try:
        report, per_token_kld = measure_drift(
            staging,
            resolved.plan,
            resolved.source.path,
            request.eval_data,
            request.eval_tokens,
            reference_memo=memo,
        )
    except WorkerError as e:
        raise BuildError(f"the staged bundle did not run through its own shim: {e}") from None
    row = quality_row(resolved, request, report, staging)
    if report["passed"]:
        report["quality"] = QualityRecord(before.mode, before.chosen, (*before.tried, row)).to_dict()
        write_report(staging, report, per_token_kld)
        shutil.rmtree(rejected_report_dir(resolved.destination), ignore_errors=True)  # an earlier failure's report
        return Gate(report, row)
    kept = rejected_report_dir(resolved.destination)
    shutil.rmtree(kept, ignore_errors=True)
    write_report(kept, report, per_token_kld)
    misses = "\n".join(f"  - {m}" for m in report["miss_descriptions"])
    tips = "\n".join(f"  - {t}" for t in report["suggestions"])
    refusal = (f"the {resolved.plan.target} bundle of {resolved.plan.model.id} misses its drift budget, so it was not "
               f"written to {resolved.destination}:\n{misses}\nReport: {kept}/drift.md\nTry:\n{tips}")
    return Gate(report, row, refusal)


SKIP_DRIFT_REASON = "--skip-drift: accuracy not measured; for random-weight benchmark models only"


def skipped_drift(before: QualityRecord) -> dict:
    """The stand-in for a drift report when the gate was skipped: it says so, and nothing else."""
    return {"skipped": True, "reason": SKIP_DRIFT_REASON, "passed": None,
            "quality": QualityRecord(before.mode, before.chosen, ()).to_dict()}


def quality_row(resolved: ResolvedBuild, request: BuildRequest, report: dict, staging: Path) -> QualityRow:
    """This build's line of the quality table: what it is, its size and drift (no times: bundles stay reproducible)."""
    s, plan = report["summary"], resolved.plan
    return QualityRow(
        rung=request.rung or resolved.recipe.name,
        status="passed" if report["passed"] else "failed",
        quantization=to_dict(plan.quantization),
        engine_options=to_dict(plan.engine_options),
        bundle_bytes=sum(p.stat().st_size for p in staging.iterdir() if p.is_file()),
        estimated_weights_bytes=resolved.memory.weights_bytes,
        mean_kld=s["mean_kld"],
        ppl_ratio=s["ppl_ratio"],
        top1_agreement=s["top1_agreement"],
        misses=tuple(report["miss_descriptions"]),
    )


def speed_facts(staging: Path, plan: BuildPlan, target: TargetProfile) -> dict:
    """Weights read per decoded token, and the decode ceiling that sets on the target's memory bandwidth."""
    per_token = backend_for(plan.engine).bytes_per_token(staging)
    bandwidth = target.hardware.memory_bandwidth_gbps
    return {"bytes_per_token": per_token, "target_bandwidth_gbps": bandwidth,
            "decode_ceiling_tok_s": round(decode_ceiling(bandwidth * 1e9, per_token), 1)}


def drift_facts(drift: dict) -> dict:
    if drift.get("skipped"):
        return {"skipped": True, "reason": drift["reason"]}
    return {
        "passed": drift["passed"],
        "summary": drift["summary"],
        "budget": drift["budget"],
        "eval_data_sha256": drift["eval_data"]["sha256"],
        "report": list(REPORT_FILES),
    }


def write_bundle(resolved: ResolvedBuild, staging: Path, engine_facts: dict, drift: dict, parity_record: dict
                 ) -> dict:
    """The README and a manifest; returns the manifest's body, which the device stage completes."""
    plan, target = resolved.plan, resolved.target
    requirement = backend_for(plan.engine).runtime_requirement(plan)
    staged_files = [p for p in staging.iterdir() if p.is_file()]
    files = sorted([p.name for p in staged_files] + ["README.md", device_check.REPORT_FILE])
    bundle_bytes = sum(p.stat().st_size for p in staged_files)  # all but the README being written
    (staging / "README.md").write_text(device_readme(plan, target, requirement, bundle_bytes, files,
                                                            resolved.memory))
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
        "quality": drift["quality"],
        "drift": drift_facts(drift),
        "parity": parity_record,
        "speed": speed_facts(staging, plan, target),
        "engine": engine_facts,
        "tools": manifest_format.tool_versions(),
    }
    manifest_format.write_manifest(staging, body)  # the device check runs the bundle as it ships: with its manifest
    return body
