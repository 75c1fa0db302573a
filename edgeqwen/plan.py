"""The build plan: model + target + recipe (+ command-line overrides) resolved into one object.

The plan is everything a backend needs to know and nothing it has to look up:
printed by `--dry-run`, hashed as the identity of a build, and stored in the
bundle's manifest so a bundle says exactly how it was made.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from edgeqwen.errors import PlanError
from edgeqwen.models import ModelSource
from edgeqwen.recipes import BackupPrecision, Recipe
from edgeqwen.schema import to_dict
from edgeqwen.targets import BLOCK_SIZES, CHANNEL_WISE, DriftBudget, Quantization, TargetProfile

PLAN_VERSION = 1


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
class NncfOptions:
    """NNCF weight-compression options beyond the precision itself (OpenVINO targets only)."""

    ratio: float = 1.0
    backup_precision: BackupPrecision = "int8_asym"  # NNCF's own default
    awq: bool = False
    scale_estimation: bool = False
    gptq: bool = False
    calibration_samples: int = 64

    @property
    def data_aware(self) -> bool:
        return self.awq or self.scale_estimation or self.gptq or self.ratio < 1.0


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
    quantization: Quantization
    context_length: int
    memory_budget_mb: int
    drift: DriftBudget
    nncf: Optional[NncfOptions] = None  # set for OpenVINO targets
    calibration: Optional[CalibrationRef] = None  # set when the quantization is fitted on text
    plan_version: int = PLAN_VERSION

    def to_dict(self) -> dict:
        return to_dict(self)

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


def resolve_quantization(target: TargetProfile, recipe: Recipe, precision: Optional[str]) -> Quantization:
    base = target.quantization
    overrides = {
        k: v
        for k, v in dataclasses.asdict(recipe.quantization).items()
        if v is not None and k != "max_block_size"
    }
    values = {**dataclasses.asdict(base), **overrides}
    cap = recipe.quantization.max_block_size
    # The NPU compiles only the documented groupings (128 or channel-wise); there the recipe's accuracy
    # help comes from its [nncf] calibration options instead of finer groups.
    if target.runtime.device == "npu":
        cap = None
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
    return Quantization(**values)


def resolve_plan(
    source: ModelSource,
    target: TargetProfile,
    recipe: Recipe,
    precision: Optional[str] = None,
    context_length: Optional[int] = None,
    drift_overrides: Optional[dict] = None,
    calib_data: Optional[Path] = None,
) -> BuildPlan:
    """Precedence, lowest first: target profile, recipe, command line."""
    model = model_ref(source)
    quantization = resolve_quantization(target, recipe, precision)
    check_precision_for_device(quantization, target)
    check_block_size(quantization, model, target.runtime.engine)
    if context_length is not None and context_length > model.max_position_embeddings:
        raise PlanError(
            f"--context-length {context_length}: {model.id} supports at most {model.max_position_embeddings} tokens"
        )
    context = context_length or min(target.limits.context_length, model.max_position_embeddings)
    drift_values = dataclasses.asdict(target.drift)
    drift_values.update({k: v for k, v in dataclasses.asdict(recipe.drift).items() if v is not None})
    drift_values.update({k: v for k, v in (drift_overrides or {}).items() if v is not None})
    nncf = resolve_nncf(recipe) if target.runtime.engine == "openvino" else None
    fitted = quantization.algorithm == "gptq" or (nncf is not None and nncf.data_aware)
    return BuildPlan(
        model=model,
        target=target.name,
        recipe=recipe.name,
        engine=target.runtime.engine,
        device=target.runtime.device,
        threads=target.runtime.threads,
        quantization=quantization,
        context_length=context,
        memory_budget_mb=target.limits.memory_budget_mb,
        drift=DriftBudget(**drift_values),
        nncf=nncf,
        calibration=calibration_ref(calib_data) if fitted else None,
    )


def calibration_ref(path: Optional[Path]) -> CalibrationRef:
    """Read (and so validate) the calibration file now, so a bad --calib-data fails before any work."""
    from edgeqwen.calibration import DEFAULT_CALIBRATION_FILE
    from edgeqwen.drift.evaldata import load_eval_data

    data = load_eval_data(path, option="--calib-data", default=DEFAULT_CALIBRATION_FILE)
    return CalibrationRef(source=data.source, sha256=data.sha256, path=str(path) if path else None)


def resolve_nncf(recipe: Recipe) -> NncfOptions:
    chosen = {k: v for k, v in dataclasses.asdict(recipe.nncf).items() if v is not None}
    return NncfOptions(**chosen)


def check_precision_for_device(q: Quantization, target: TargetProfile) -> None:
    device = target.runtime.device
    if q.weights == "fp16" and device == "cpu":
        raise PlanError(
            f"--precision fp16 on target {target.name!r}: ONNX Runtime's CPU provider computes in fp32; "
            "choose int4, int8 or fp32 for CPU targets (fp16 is for GPU targets such as jetson-orin-nano)"
        )
    if q.weights == "fp32" and device != "cpu":
        raise PlanError(f"--precision fp32 on target {target.name!r} ({device}): choose int4, int8 or fp16")


def check_block_size(q: Quantization, model: ModelRef, engine: str) -> None:
    """Block-wise INT4/INT8 needs every quantized input dimension to be a whole number of blocks."""
    if q.weights not in ("int4", "int8"):
        return
    if q.block_size == CHANNEL_WISE:
        if engine != "openvino":
            raise PlanError(
                f"block_size = {CHANNEL_WISE} (channel-wise) is an OpenVINO (NNCF) option; ONNX Runtime "
                f"quantizes in blocks of {', '.join(map(str, BLOCK_SIZES))}"
            )
        return  # one scale per output channel fits any shape
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
