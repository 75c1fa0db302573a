"""Target profiles: one TOML file per device in targets/, loaded into frozen typed objects.

A profile holds what is true of a device (hardware facts, with their source in
a comment in the file), how to run on it (runtime, device, threads) and what a
bundle for it must respect (precision defaults, context, memory and drift
budgets). The list of targets is the list of files: adding a device is adding
a file, and the tests pick it up from the directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgeqwen.errors import ProfileError
from edgeqwen.schema import load_file, load_named

PROJECT_ROOT = Path(__file__).resolve().parents[1]

Device = Literal["cpu", "cuda", "gpu", "npu"]
WeightPrecision = Literal["int4", "int8", "fp16", "fp32"]
TablePrecision = Literal["int4", "int8", "float"]

BLOCK_SIZES = (16, 32, 64, 128, 256)
# -1: one scale per output channel (NNCF's group_size = -1). OpenVINO only; ONNX Runtime needs blocks.
CHANNEL_WISE = -1
MIN_CONTEXT_LENGTH = 256  # the drift gate's window; shorter contexts hold no useful conversation either
MAX_CONTEXT_LENGTH = 1 << 20  # beyond every Qwen's max_position_embeddings
MAX_THREADS = 1024
# MatMulNBits accuracy_level: 0 = unset, 1 = fp32, 2 = fp16, 3 = bf16, 4 = int8 activations.
ACCURACY_LEVELS = (0, 1, 2, 3, 4)
# Prompt windows a static NPU pipeline takes (Olive's StaticLLM context_length; olive-recipes use 64).
NPU_WINDOWS = (32, 64, 128, 256)


@dataclass(frozen=True)
class Hardware:
    cpu_arch: Literal["arm64", "x86_64"]
    cpu: str
    cores: int
    ram_gb: float
    memory_bandwidth_gbps: float
    accelerator: str = "none"
    os: Literal["linux", "android", "windows"] = "linux"  # the device's own system (its README's install paths)
    # The RAM sizes the device ships in (ram_gb among them): the bundle's README says which of them it fits.
    ram_variants_gb: tuple[float, ...] = ()

    def __post_init__(self):
        if not 1 <= self.cores <= MAX_THREADS:
            raise ValueError(f"cores = {self.cores}: expected 1 to {MAX_THREADS}")
        if not 0 < self.ram_gb <= 65536:
            raise ValueError(f"ram_gb = {self.ram_gb}: expected a number above 0 and at most 65536")
        if self.ram_variants_gb and (self.ram_gb not in self.ram_variants_gb
                                     or any(not 0 < v <= 65536 for v in self.ram_variants_gb)
                                     or list(self.ram_variants_gb) != sorted(set(self.ram_variants_gb))):
            raise ValueError(f"ram_variants_gb = {list(self.ram_variants_gb)}: expected RAM sizes in GB, ascending, "
                             f"each above 0 and at most 65536, ram_gb ({self.ram_gb:g}) among them")
        if not 0 < self.memory_bandwidth_gbps <= 100000:
            raise ValueError(f"memory_bandwidth_gbps = {self.memory_bandwidth_gbps}: expected a number above 0 and "
                             "at most 100000")


@dataclass(frozen=True)
class Runtime:
    engine: str  # a registered backend (edgeqwen/backends): its name, and the devices it can target
    device: Device
    threads: int

    def __post_init__(self):
        from edgeqwen.backends import registry

        if self.engine not in registry():
            raise ValueError(f"engine = {self.engine!r}: expected one of {', '.join(map(repr, registry()))}")
        devices = registry()[self.engine].devices
        if self.device not in devices:
            raise ValueError(
                f"device {self.device!r} is not available with engine {self.engine!r} "
                f"(choose one of {', '.join(devices)})"
            )
        if not 1 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads = {self.threads}: expected 1 to {MAX_THREADS}")


@dataclass(frozen=True)
class WeightQuantization:
    """How weights are stored, in terms every engine shares (the plan's `quantization`).

    `embeddings` and `lm_head` are the two vocabulary-sized tables.
    """

    weights: WeightPrecision
    block_size: int
    symmetric: bool
    embeddings: TablePrecision
    lm_head: TablePrecision

    def __post_init__(self):
        if self.block_size not in BLOCK_SIZES + (CHANNEL_WISE,):
            raise ValueError(
                f"block_size = {self.block_size}: expected one of {BLOCK_SIZES}, or {CHANNEL_WISE} for channel-wise"
            )


@dataclass(frozen=True)
class Quantization(WeightQuantization):
    """A target's [quantization] table: the shared settings, plus two the ONNX Runtime GenAI backend reads
    into its own plan options (other engines refuse values that would not apply to them)."""

    accuracy_level: int
    # rtn / k_quant: the ONNX Runtime GenAI builder's own; gptq: Olive's GPTQ pass on the checkpoint first,
    # fitted on calibration text (ONNX Runtime targets; OpenVINO's GPTQ is the [nncf] gptq option).
    algorithm: Literal["rtn", "k_quant", "gptq"] = "rtn"

    def __post_init__(self):
        super().__post_init__()
        if self.accuracy_level not in ACCURACY_LEVELS:
            raise ValueError(f"accuracy_level = {self.accuracy_level}: expected one of {ACCURACY_LEVELS}")


@dataclass(frozen=True)
class Limits:
    context_length: int
    memory_budget_mb: int

    def __post_init__(self):
        if not MIN_CONTEXT_LENGTH <= self.context_length <= MAX_CONTEXT_LENGTH:
            raise ValueError(f"context_length = {self.context_length}: expected {MIN_CONTEXT_LENGTH} to "
                             f"{MAX_CONTEXT_LENGTH}")
        if not 64 <= self.memory_budget_mb <= 1 << 26:
            raise ValueError(f"memory_budget_mb = {self.memory_budget_mb}: expected 64 to {1 << 26}")


@dataclass(frozen=True)
class DriftBudget:
    """Accuracy a bundle must keep against the full-precision model (enforced by the drift gate)."""

    max_ppl_ratio: float
    max_mean_kld: float
    min_top1_agreement: float

    def __post_init__(self):
        for problem in drift_budget_problems(self.max_ppl_ratio, self.max_mean_kld, self.min_top1_agreement):
            raise ValueError(problem)


def drift_budget_problems(max_ppl_ratio, max_mean_kld, min_top1_agreement) -> list[str]:
    """What is impossible in a drift budget (None: not set here). The command line's types say the same."""
    problems = []
    if max_ppl_ratio is not None and not 1.0 <= max_ppl_ratio <= 1000.0:
        problems.append(f"max_ppl_ratio = {max_ppl_ratio}: expected 1.0 to 1000 (the bundle's perplexity over the "
                        "reference's)")
    if max_mean_kld is not None and not 0.0 <= max_mean_kld <= 1000.0:
        problems.append(f"max_mean_kld = {max_mean_kld}: expected 0 to 1000 (nats)")
    if min_top1_agreement is not None and not 0.0 <= min_top1_agreement <= 1.0:
        problems.append(f"min_top1_agreement = {min_top1_agreement}: expected 0 to 1 (a share of tokens)")
    return problems


@dataclass(frozen=True)
class DeviceCheck:
    """How the device check runs a bundle on this target's instruction set (edgeqwen/device).

    An arm64 target runs under QEMU user-mode emulation of its core: `qemu_cpu` is QEMU's CPU model (with
    properties), so the runtime sees the core's instruction-set extensions and picks the kernels the
    device would; `cpu_part` and `cpu_features` are what the device's /proc/cpuinfo says of the core
    (MIDR part number, Features line), shown to the runtime in place of the host's.
    """

    qemu_cpu: str = ""
    cpu_part: str = ""
    cpu_features: str = ""
    # A vendor simulator of the device's accelerator, run on this host instead of QEMU (the accelerator is
    # what the bundle runs on; an emulated CPU would not run it): "qnn-htp", the Hexagon HTP simulator.
    simulator: Literal["", "qnn-htp"] = ""

    def __post_init__(self):
        if self.qemu_cpu and self.simulator:
            raise ValueError("qemu_cpu and simulator are both set: the device check runs one of them")
        if self.qemu_cpu and not (self.cpu_part and self.cpu_features):
            raise ValueError("qemu_cpu is set: cpu_part and cpu_features (the core's /proc/cpuinfo) are needed too")


@dataclass(frozen=True)
class Npu:
    """A Qualcomm NPU's build facts (the [npu] table; onnxruntime-qnn targets only).

    `soc_model` is QNN's number for the chip, which its context binaries are compiled for; `window` is
    how many prompt tokens the HTP takes per run (the static model's sequence length).
    """

    soc_model: int = 0
    window: int = 0

    def __post_init__(self):
        if self.soc_model and not 1 <= self.soc_model <= 1000:
            raise ValueError(f"soc_model = {self.soc_model}: expected QNN's SoC number (60: Snapdragon X Elite)")
        if self.window and self.window not in NPU_WINDOWS:
            raise ValueError(f"window = {self.window}: expected one of {NPU_WINDOWS} tokens")


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    hardware: Hardware
    runtime: Runtime
    quantization: Quantization
    limits: Limits
    drift: DriftBudget
    device_check: DeviceCheck = DeviceCheck()
    npu: Npu = Npu()
    path: Path = field(default=Path(), compare=False, metadata={"internal": True})

    def __post_init__(self):
        if self.hardware.cpu_arch == "arm64" and not (self.device_check.qemu_cpu or self.device_check.simulator):
            raise ValueError("cpu_arch = 'arm64': the device check needs [device_check] qemu_cpu, cpu_part and "
                             "cpu_features (the core QEMU emulates and what its /proc/cpuinfo says)")


def targets_dir() -> Path:
    return Path(os.environ.get("EDGEQWEN_TARGETS_DIR", PROJECT_ROOT / "targets"))


def target_names(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or targets_dir()).glob("*.toml"))


def load_target_file(path: Path) -> TargetProfile:
    return load_file(TargetProfile, path, ProfileError)


def load_target(name: str, directory: Path | None = None) -> TargetProfile:
    return load_named(TargetProfile, directory or targets_dir(), name, "target", ProfileError)


def load_all_targets(directory: Path | None = None) -> list[TargetProfile]:
    directory = directory or targets_dir()
    return [load_target(name, directory) for name in target_names(directory)]
