"""Recipes: per-model-family adjustments to a target's defaults (recipes/*.toml).

A recipe holds only what differs for a family of models, for example a block
size that small Qwen3 models need. Every field is optional; an empty section
means "the target's defaults are right for this family". The recipe for a
model is chosen by its `model_type` unless `--recipe` names one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from edgeqwen.errors import RecipeError
from edgeqwen.schema import load_named
from edgeqwen.targets import (
    ACCURACY_LEVELS, BLOCK_SIZES, CHANNEL_WISE, PROJECT_ROOT, TablePrecision, WeightPrecision, drift_budget_problems,
)

BackupPrecision = Literal["int8_asym", "int8_sym", "none"]


@dataclass(frozen=True)
class QuantizationOverrides:
    weights: Optional[WeightPrecision] = None
    block_size: Optional[int] = None
    symmetric: Optional[bool] = None
    accuracy_level: Optional[int] = None
    embeddings: Optional[TablePrecision] = None
    lm_head: Optional[TablePrecision] = None
    algorithm: Optional[Literal["rtn", "k_quant", "gptq"]] = None
    # An upper bound rather than a value: a family that needs fine blocks keeps a target's finer choice.
    max_block_size: Optional[int] = None

    def __post_init__(self):
        if self.block_size is not None and self.block_size not in BLOCK_SIZES + (CHANNEL_WISE,):
            raise ValueError(f"block_size = {self.block_size}: expected one of {BLOCK_SIZES} or {CHANNEL_WISE}")
        if self.max_block_size is not None and self.max_block_size not in BLOCK_SIZES:
            raise ValueError(f"max_block_size = {self.max_block_size}: expected one of {BLOCK_SIZES}")
        if self.accuracy_level is not None and self.accuracy_level not in ACCURACY_LEVELS:
            raise ValueError(f"accuracy_level = {self.accuracy_level}: expected one of {ACCURACY_LEVELS}")


@dataclass(frozen=True)
class NncfOverrides:
    """Options only NNCF (OpenVINO targets) has; ONNX Runtime targets ignore this section."""

    ratio: Optional[float] = None  # share of the ratio-defining layers in INT4; the rest in backup_precision
    backup_precision: Optional[BackupPrecision] = None  # embeddings, lm_head and the (1 - ratio) share
    awq: Optional[bool] = None  # activation-aware scaling, fitted on the calibration text
    scale_estimation: Optional[bool] = None  # scales fitted to minimise each layer's output error
    gptq: Optional[bool] = None  # GPTQ: each layer's rounding error compensated on the calibration text
    calibration_samples: Optional[int] = None

    def __post_init__(self):
        if self.ratio is not None and not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"ratio = {self.ratio}: expected a number in (0, 1]")
        if self.calibration_samples is not None and not 1 <= self.calibration_samples <= 1024:
            raise ValueError(f"calibration_samples = {self.calibration_samples}: expected 1 to 1024")


@dataclass(frozen=True)
class QnnOverrides:
    """Options only the Qualcomm NPU backend (onnxruntime-qnn targets) has; other targets ignore them."""

    rotate: Optional[bool] = None  # QuaRot: Hadamard rotations of the weights before GPTQ


@dataclass(frozen=True)
class DriftOverrides:
    max_ppl_ratio: Optional[float] = None
    max_mean_kld: Optional[float] = None
    min_top1_agreement: Optional[float] = None

    def __post_init__(self):
        for problem in drift_budget_problems(self.max_ppl_ratio, self.max_mean_kld, self.min_top1_agreement):
            raise ValueError(problem)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    model_types: tuple[str, ...]
    quantization: QuantizationOverrides = QuantizationOverrides()
    nncf: NncfOverrides = NncfOverrides()
    qnn: QnnOverrides = QnnOverrides()
    drift: DriftOverrides = DriftOverrides()
    path: Path = field(default=Path(), compare=False, metadata={"internal": True})


def recipes_dir() -> Path:
    return Path(os.environ.get("EDGEQWEN_RECIPES_DIR", PROJECT_ROOT / "recipes"))


def recipe_names(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or recipes_dir()).glob("*.toml"))


def load_recipe(name: str, directory: Path | None = None) -> Recipe:
    return load_named(Recipe, directory or recipes_dir(), name, "recipe", RecipeError)


def recipe_for_model_type(model_type: str, directory: Path | None = None) -> Recipe:
    directory = directory or recipes_dir()
    matches = [r for r in (load_recipe(n, directory) for n in recipe_names(directory)) if model_type in r.model_types]
    if not matches:
        raise RecipeError(f"no recipe in {directory} lists model_type {model_type!r}; pass --recipe NAME")
    if len(matches) > 1:
        names = ", ".join(r.name for r in matches)
        raise RecipeError(f"several recipes list model_type {model_type!r} ({names}); pass --recipe NAME")
    return matches[0]
