"""The build plan: model + target + recipe (+ command-line overrides) resolved into one object.

The plan is everything a backend needs to know and nothing it has to look up:
printed by `--dry-run`, hashed as the identity of a build, and stored in the
bundle's manifest so a bundle says exactly how it was made. It reads back from
that JSON into the same typed object (`BuildPlan.from_dict`), plans of every
plan_version included.

Its `quantization` holds what every engine means the same way; `engine_options`
is the engine's own typed section (the backend's `options_type`): ONNX Runtime
GenAI's accuracy level and algorithm, OpenVINO's NNCF options.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeqwen.backends import backend_for
from edgeqwen.errors import PlanError
from edgeqwen.models import ModelSource
from edgeqwen.recipes import Recipe
from edgeqwen.schema import from_dict, to_dict
from edgeqwen.targets import (
    CHANNEL_WISE, MIN_CONTEXT_LENGTH, DriftBudget, TargetProfile, WeightQuantization, drift_budget_problems,
)

# 1: the ONNX Runtime options inside `quantization` and NNCF's as `nncf`, for every engine;
# 2: each engine's options in `engine_options` (format_version 2 manifests).
PLAN_VERSION = 2


@dataclass(frozen=True)
class ModelRef:
    """The model as the plan sees it: identity and the dimensions the backends and fit check use."""

    id: str
    origin: str
    architecture: str
    model_type: str
    weights_sha256: str
    num_parameters: int
    checkpoint_bytes: int
    tied_embeddings: bool
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int


@dataclass(frozen=True)
class CalibrationRef:
    """The calibration text a data-aware plan is fitted on: named and hashed in the plan, read at conversion."""

    source: str  # "edgeqwen corpus (train split)" or the user's file name: no machine paths in a plan
    sha256: str
    path: Optional[str] = field(default=None, compare=False, metadata={"internal": True})  # None: the shipped corpus


@dataclass(frozen=True)
class BuildPlan:
    model: ModelRef
    target: str
    recipe: str
    engine: str
    device: str
    threads: int
    quantization: WeightQuantization
    engine_options: Any  # the backend's options_type for `engine`
    context_length: int
    memory_budget_mb: int
    drift: DriftBudget
    calibration: Optional[CalibrationRef] = None  # set when the quantization is fitted on text
    device_ram_gb: Optional[float] = None  # --device-ram: one of the target's RAM sizes; None: its ram_gb
    plan_version: int = PLAN_VERSION

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "plan") -> "BuildPlan":
        """The typed plan from its JSON form (any plan_version this edgeqwen knows), every problem named."""
        from edgeqwen.errors import BundleError

        if not isinstance(data, dict) or not isinstance(data.get("engine"), str):
            raise BundleError(f"{where}: not a build plan (expected an object with an 'engine')")
        try:
            backend = backend_for(data["engine"])
        except PlanError as e:
            raise BundleError(f"{where}: {e}") from None
        version = data.get("plan_version", 1)
        if version == 1:
            try:
                data = upgrade_v1(data, backend)
            except (KeyError, TypeError, AttributeError) as e:  # a damaged or hand-edited old plan
                raise BundleError(f"{where}: a plan_version 1 plan without the fields it had "
                                  f"({type(e).__name__}: {e}); the bundle's manifest is damaged") from None
        elif version != PLAN_VERSION:
            raise BundleError(f"{where}: plan_version {version!r}; this edgeqwen reads 1 and {PLAN_VERSION}")
        plan = from_dict(cls, data, path=Path(where), error_cls=BundleError)
        options = from_dict(backend.options_type, plan.engine_options, path=Path(f"{where}.engine_options"),
                            error_cls=BundleError)
        return dataclasses.replace(plan, engine_options=options)

    @classmethod
    def from_json(cls, text: str, where: str = "plan") -> "BuildPlan":
        return cls.from_dict(json.loads(text), where)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def model_ref(source: ModelSource) -> ModelRef:
    return ModelRef(
        id=source.id,
        origin=source.origin,
        architecture=source.architecture,
        model_type=source.model_type,
        weights_sha256=source.weights_sha256,
        num_parameters=source.num_parameters,
        checkpoint_bytes=source.checkpoint_bytes,
        tied_embeddings=source.tied_embeddings,
        hidden_size=source.dim("hidden_size"),
        intermediate_size=source.dim("intermediate_size"),
        num_layers=source.dim("num_hidden_layers"),
        num_attention_heads=source.dim("num_attention_heads"),
        num_kv_heads=source.config.get("num_key_value_heads") or source.dim("num_attention_heads"),
        head_dim=source.dim("head_dim"),
        vocab_size=source.dim("vocab_size"),
        max_position_embeddings=source.config.get("max_position_embeddings", 32768),
    )


def upgrade_v1(data: dict, backend) -> dict:
    """A plan_version 1 plan in today's layout: the engine's options moved into engine_options."""
    quantization = {k: v for k, v in data["quantization"].items() if k not in ("accuracy_level", "algorithm")}
    rest = {k: v for k, v in data.items() if k != "nncf"}
    return {**rest, "quantization": quantization, "engine_options": backend.upgrade_v1_options(data),
            "plan_version": PLAN_VERSION}


def resolve_quantization(target: TargetProfile, recipe: Recipe, precision: Optional[str]) -> WeightQuantization:
    """The shared weight settings: the target's, the recipe's on top, then --precision."""
    shared = {f.name for f in dataclasses.fields(WeightQuantization)}
    overrides = {
        k: v
        for k, v in dataclasses.asdict(recipe.quantization).items()
        if v is not None and k in shared
    }
    values = {**{k: v for k, v in dataclasses.asdict(target.quantization).items() if k in shared}, **overrides}
    cap = backend_for(target.runtime.engine).block_size_cap(target.runtime.device, recipe.quantization.max_block_size)
    if cap is not None and (values["block_size"] == CHANNEL_WISE or values["block_size"] > cap):
        values["block_size"] = cap  # channel-wise is the coarsest grouping of all
    if precision is not None:
        values["weights"] = precision
    # The vocabulary tables are never stored more coarsely than the other weights.
    if values["weights"] in ("fp16", "fp32"):
        values["embeddings"] = values["lm_head"] = "float"
    elif values["weights"] == "int8":
        values["embeddings"] = "int8" if values["embeddings"] == "int4" else values["embeddings"]
        values["lm_head"] = "int8" if values["lm_head"] == "int4" else values["lm_head"]
    return WeightQuantization(**values)


def resolve_plan(
    source: ModelSource,
    target: TargetProfile,
    recipe: Recipe,
    precision: Optional[str] = None,
    context_length: Optional[int] = None,
    drift_overrides: Optional[dict] = None,
    calib_data: Optional[Path] = None,
    device_ram_gb: Optional[float] = None,
) -> BuildPlan:
    """Precedence, lowest first: target profile, recipe, command line. Every input error surfaces here."""
    model = model_ref(source)
    quantization = resolve_quantization(target, recipe, precision)
    check_precision_for_device(quantization, target)
    check_block_size(quantization, model)
    context = resolve_context_length(context_length, target, model)
    drift_values = dataclasses.asdict(target.drift)
    drift_values.update({k: v for k, v in dataclasses.asdict(recipe.drift).items() if v is not None})
    drift_values.update({k: v for k, v in (drift_overrides or {}).items() if v is not None})
    problems = drift_budget_problems(**drift_values)
    if problems:
        raise PlanError(f"drift budget for {target.name} (profile, recipe {recipe.name} and command line): "
                        + "; ".join(problems))
    backend = backend_for(target.runtime.engine)
    options = backend.resolve_options(target, recipe)
    plan = BuildPlan(
        model=model,
        target=target.name,
        recipe=recipe.name,
        engine=target.runtime.engine,
        device=target.runtime.device,
        threads=target.runtime.threads,
        quantization=quantization,
        engine_options=options,
        context_length=context,
        memory_budget_mb=resolve_memory_budget(target, device_ram_gb),
        drift=DriftBudget(**drift_values),
        calibration=calibration_ref(calib_data) if options.needs_calibration else None,
        device_ram_gb=device_ram_gb,
    )
    backend.check_supported(plan)  # what the engine or device cannot run, before the fit check
    return plan


def resolve_memory_budget(target: TargetProfile, device_ram_gb: Optional[float]) -> int:
    """The profile's budget, or with --device-ram the same share of another RAM size the device ships in
    (a 16 GB Raspberry Pi 5 gives a model twice the 8 GB board's budget)."""
    hardware, budget = target.hardware, target.limits.memory_budget_mb
    if device_ram_gb is None:
        return budget
    sizes = hardware.ram_variants_gb or (hardware.ram_gb,)
    if device_ram_gb not in sizes:
        raise PlanError(f"--device-ram {device_ram_gb:g}: {target.name} ships with "
                        + ", ".join(f"{s:g}" for s in sizes) + " GB (its profile's ram_variants_gb)")
    return round(budget * device_ram_gb / hardware.ram_gb)


def resolve_context_length(requested: Optional[int], target: TargetProfile, model: ModelRef) -> int:
    """--context-length if given (within what the model and the drift window take), else the target's, capped by
    the model's own limit."""
    if requested is None:
        return min(target.limits.context_length, model.max_position_embeddings)
    if not MIN_CONTEXT_LENGTH <= requested <= model.max_position_embeddings:
        raise PlanError(f"--context-length {requested}: expected {MIN_CONTEXT_LENGTH} to "
                        f"{model.max_position_embeddings} tokens ({model.id} supports at most "
                        f"{model.max_position_embeddings})")
    return requested


def calibration_ref(path: Optional[Path]) -> CalibrationRef:
    """Read (and so validate) the calibration file now, so a bad --calib-data fails before any work."""
    from edgeqwen.calibration import DEFAULT_CALIBRATION_FILE
    from edgeqwen.drift.evaldata import load_eval_data

    data = load_eval_data(path, option="--calib-data", default=DEFAULT_CALIBRATION_FILE)
    return CalibrationRef(source=data.source, sha256=data.sha256, path=str(path) if path else None)


def check_precision_for_device(q: WeightQuantization, target: TargetProfile) -> None:
    device = target.runtime.device
    if q.weights == "fp16" and device == "cpu":
        raise PlanError(
            f"--precision fp16 on target {target.name!r}: ONNX Runtime's CPU provider computes in fp32; "
            "choose int4, int8 or fp32 for CPU targets (fp16 is for GPU targets such as jetson-orin-nano)"
        )
    if q.weights == "fp32" and device != "cpu":
        raise PlanError(f"--precision fp32 on target {target.name!r} ({device}): choose int4, int8 or fp16")


def check_block_size(q: WeightQuantization, model: ModelRef) -> None:
    """Block-wise INT4/INT8 needs every quantized input dimension to be a whole number of blocks."""
    if q.weights not in ("int4", "int8"):
        return
    if q.block_size == CHANNEL_WISE:
        return  # one scale per output channel fits any shape (engines without it refuse it themselves)
    dims = {
        "hidden_size": model.hidden_size,
        "intermediate_size": model.intermediate_size,
        "attention output (heads x head_dim)": model.num_attention_heads * model.head_dim,
    }
    for name, size in dims.items():
        if size % q.block_size:
            fitting = [b for b in (16, 32, 64, 128, 256) if size % b == 0 and all(d % b == 0 for d in dims.values())]
            raise PlanError(
                f"block_size {q.block_size} does not divide the model's {name} ({size}); "
                f"block sizes that fit this model: {', '.join(map(str, fitting)) or 'none'}"
            )
