"""The Backend interface: everything edgeqwen does differently for one runtime engine.

A backend is registered under its engine name (a target's `runtime.engine`) in edgeqwen/backends/__init__.py.
It is asked, never switched on: the plan, the fit check, the drift gate's advice, the device README,
the bundle's files and the benchmark's bytes-per-token all go through these methods. Its options are a
typed section of the plan (`options_type`, stored as the plan's `engine_options`), so the plan carries
only the settings that mean something to its engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from edgeqwen.build_memory import StageMemory
    from edgeqwen.fit import MemoryEstimate
    from edgeqwen.plan import BuildPlan
    from edgeqwen.recipes import Recipe
    from edgeqwen.targets import TargetProfile

# Roles of a bundle's model files (what `model_files` returns; other files are tokenizer, config and docs).
DECODER = "decoder"  # the transformer graph and its weights (one file each, or a pipeline of several)
EMBEDDINGS = "embeddings"  # an embedding model of its own (multi-model pipelines)
LM_HEAD = "lm_head"  # an lm_head model of its own
CONTEXT_BINARY = "context_binary"  # a compiled accelerator binary (EPContext)

# Advice every engine gives first when a quantized vocabulary table costs too much accuracy.
INT8_TABLES_TIP = ("keep the lm_head and embedding at INT8 (recipe [quantization] lm_head = \"int8\", "
                   "embeddings = \"int8\")")


class Backend(ABC):
    engine: ClassVar[str]  # the registry key, as targets name it
    devices: ClassVar[tuple[str, ...]]  # the devices a target may name with this engine
    options_type: ClassVar[type]  # the dataclass of the plan's engine_options
    folder_description: ClassVar[str]  # what a folder this engine's runtime loads looks like, for error messages
    tool_distributions: ClassVar[tuple[str, ...]]  # the packages whose versions change what this engine builds
    code_files: ClassVar[tuple[str, ...]]  # its modules in edgeqwen/backends/: what makes its converted bytes

    # ------------------------------------------------------------------ planning

    @abstractmethod
    def resolve_options(self, target: TargetProfile, recipe: Recipe) -> object:
        """This engine's options from the target and recipe; PlanError for settings it cannot honour."""

    def upgrade_v1_options(self, plan: dict) -> dict:
        """engine_options for a plan_version 1 plan (stored in format_version 1 manifests)."""
        raise NotImplementedError

    def block_size_cap(self, device: str, cap: int | None) -> int | None:
        """The recipe's max_block_size as it applies on `device` (None: not at all)."""
        return cap

    @abstractmethod
    def check_supported(self, plan: BuildPlan) -> None:
        """Refuse, with the reason and what would work, what the engine or device cannot run; before any work."""

    @abstractmethod
    def estimate_memory(self, plan: BuildPlan) -> MemoryEstimate:
        """Weights, KV cache and runtime memory of the planned bundle on its device."""

    # The conversion's peak memory (every process alive in it) as a fixed part plus bytes per parameter of the
    # checkpoint. An engine fitted to benchmarks/build_memory.py overrides conversion_memory; the others keep
    # these cautious defaults, and say so.
    conversion_base_bytes: ClassVar[int] = 2 << 30
    conversion_bytes_per_parameter: ClassVar[float] = 8.0

    def conversion_memory(self, plan: BuildPlan) -> tuple[StageMemory, ...]:
        """What the conversion stage holds at its peak, for the build-memory check (edgeqwen.build_memory)."""
        from edgeqwen.build_memory import StageMemory

        peak = self.conversion_base_bytes + self.conversion_bytes_per_parameter * plan.model.num_parameters
        return (StageMemory("convert", int(peak), f"{self.engine}'s conversion (not yet measured: a cautious guess)"),)

    @abstractmethod
    def runtime_requirement(self, plan: BuildPlan, device: str | None = None) -> str:
        """The one pip requirement a device installs to run the bundle (what its shim imports), for the
        plan's device or another one the bundle also runs on (`device="cpu"`)."""

    @abstractmethod
    def accuracy_suggestions(self, plan: BuildPlan) -> list[str]:
        """What would recover accuracy when the drift gate refuses, most size-efficient first."""

    def drift_devices(self, plan: BuildPlan) -> tuple[str, ...]:
        """Where the drift gate runs the bundle on this host: the first device's figures are gated, the
        others' reported beside them. A CPU for every engine whose accelerator is not here."""
        return ("cpu",)

    def options_summary(self, plan: BuildPlan) -> str:
        """The engine options worth telling a person, as a clause for the README's precision line."""
        return ""

    def readme_notes(self, plan: BuildPlan) -> str:
        """Device notes for the bundle's README (a markdown section, or nothing)."""
        return ""

    # ------------------------------------------------------------------ building

    def conversion_key_parts(self, plan: BuildPlan) -> dict:
        """Everything that changes the converted files, and nothing else (the conversion cache key): targets
        that agree on all of it share one conversion. Editing the backend's code invalidates what it made."""
        from edgeqwen.cache import source_sha256
        from edgeqwen.schema import to_dict

        m = plan.model
        return {
            "engine": self.engine,
            "code_sha256": source_sha256(*(Path(__file__).with_name(name) for name in self.code_files)),
            "device": plan.device,
            "quantization": to_dict(plan.quantization),
            "engine_options": to_dict(plan.engine_options),
            "calibration_sha256": plan.calibration.sha256 if plan.calibration else None,
            "model": {"weights_sha256": m.weights_sha256, "model_type": m.model_type, "tied": m.tied_embeddings},
        }

    @abstractmethod
    def engine_config(self, plan: BuildPlan, model_dir: Path, work_dir: Path) -> dict:
        """The engine's own configuration for this plan, as `--dry-run` shows it."""

    @abstractmethod
    def convert(self, plan: BuildPlan, model_dir: Path, work_dir: Path, out_dir: Path) -> dict:
        """Write the runtime's files into `out_dir`; return facts for the manifest. BuildError on failure."""

    @abstractmethod
    def finalize(self, plan: BuildPlan, bundle_dir: Path) -> None:
        """Target settings that do not change the conversion (context, threads, device properties)."""

    # ------------------------------------------------------------------ a bundle's (or another export's) files

    @abstractmethod
    def recognizes(self, folder: Path) -> bool:
        """Whether `folder` is a model folder this engine's runtime loads (a bundle, or another tool's export)."""

    @abstractmethod
    def model_files(self, folder: Path) -> dict[str, tuple[str, ...]]:
        """The model's files by role (DECODER, EMBEDDINGS, LM_HEAD, CONTEXT_BINARY), relative to `folder`."""

    @abstractmethod
    def bytes_per_token(self, folder: Path) -> int:
        """Bytes of weights read per decoded token (tables that are only gathered from count one row)."""
