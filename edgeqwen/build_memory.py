"""Will the build fit this host? Peak memory of each build stage, estimated from the model's shape and the plan.

The device fit check (edgeqwen.fit) asks whether the bundle runs on the target; this asks whether the
build runs here, before any conversion, so a 7B model on a 16 GB laptop is refused in a second with
the figures per stage and what would fit, not killed by the kernel twenty minutes in.

Stages run one after another, so the build's peak is the largest stage. Each stage's figure is the
memory of every process alive in it (the edgeqwen process, the engine's child, the bundle's worker,
the emulator), as benchmarks/build_memory.py measures it; the constants below are fitted to those
measurements (benchmarks/RESULTS.md, "Build memory"), and the benchmark prints the estimate beside
the measured peak so they stay honest. What each engine's conversion holds is the backend's
(`Backend.conversion_memory`); the stages after it are the same for every engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeqwen.errors import PlanError

GB = 1 << 30
MB = 1 << 20
# The edgeqwen process with torch, transformers and the tokenizer imported, before any model.
PROCESS_BASE_BYTES = 900 * MB
# A bundle's worker process (its shim, the runtime, the tokenizer) on top of its weights.
WORKER_BASE_BYTES = 400 * MB
# PyTorch's float32 forward of one decoder layer over one drift window: its attention and MLP activations.
REFERENCE_WORK_FACTOR = 6


@dataclass(frozen=True)
class StageMemory:
    stage: str
    bytes: int
    holds: str  # what takes the memory, in words, for the refusal message and --dry-run

    def to_dict(self) -> dict:
        return {"stage": self.stage, "gb": round(self.bytes / GB, 2), "holds": self.holds}


@dataclass(frozen=True)
class BuildMemory:
    stages: tuple[StageMemory, ...]
    limit_bytes: int | None  # None: the host does not say what it has, and no --max-build-memory was given
    limit_source: str  # "--max-build-memory" or "this host's available memory"

    @property
    def peak(self) -> StageMemory:
        return max(self.stages, key=lambda s: s.bytes)

    @property
    def fits(self) -> bool:
        return self.limit_bytes is None or self.peak.bytes <= self.limit_bytes

    def to_dict(self) -> dict:
        return {"stages": [s.to_dict() for s in self.stages], "peak_gb": round(self.peak.bytes / GB, 2),
                "peak_stage": self.peak.stage,
                "limit_gb": None if self.limit_bytes is None else round(self.limit_bytes / GB, 2),
                "limit_source": self.limit_source, "fits": self.fits}


def reference_bytes(model, eval_tokens: int, window: int) -> int:
    """The drift gate's full-precision reference in the edgeqwen process (edgeqwen.drift.reference): one decoder
    layer in float32, the lm_head's matrix in float32, every eval window's hidden states and KV cache (the
    windows go through each layer together), one window's forward, and the logits of every window, which are
    kept for the generation and device checks."""
    from edgeqwen.fit import table_and_layer_weights

    table, layers = table_and_layer_weights(model)
    tokens = -(-eval_tokens // window) * window
    per_token_state = model.hidden_size + 2 * model.num_layers * model.num_kv_heads * model.head_dim
    work = window * REFERENCE_WORK_FACTOR * max(model.hidden_size, model.intermediate_size)
    return 4 * (layers // model.num_layers + table + tokens * per_token_state + work) \
        + kept_logits_bytes(model, eval_tokens, window)


def kept_logits_bytes(model, eval_tokens: int, window: int) -> int:
    windows = -(-eval_tokens // window)
    return windows * window * model.vocab_size * 4


def estimate_build_memory(plan, bundle_weights_bytes: int, *, drift_gate: bool, device_check: bool,
                          eval_tokens: int, window: int, limit: tuple[int | None, str]) -> BuildMemory:
    """Every stage's peak for this plan; `limit` is (bytes or None, where that figure comes from)."""
    from edgeqwen.backends import backend_for

    stages = list(backend_for(plan.engine).conversion_memory(plan))
    worker = WORKER_BASE_BYTES + bundle_weights_bytes
    if drift_gate:
        kept = kept_logits_bytes(plan.model, eval_tokens, window)
        # The reference runs first and is gone before the bundle's worker starts: the larger of the two.
        stages.append(StageMemory("drift", PROCESS_BASE_BYTES + max(reference_bytes(plan.model, eval_tokens, window),
                                                                    kept + worker),
                                  "the full-precision reference, one decoder layer at a time in float32, then the "
                                  "bundle's runtime beside the reference logits"))
        if device_check:  # the reference model is gone by now; its logits are kept to compare against
            stages.append(StageMemory("device check", PROCESS_BASE_BYTES + worker + kept,
                                      "the bundle in its runtime on the target's instruction set"))
    return BuildMemory(tuple(stages), *limit)


def build_memory_limit(max_build_memory_gb: float | None, meminfo: Path = Path("/proc/meminfo")
                       ) -> tuple[int | None, str]:
    """The memory a build may use: --max-build-memory when given, else what this host has available now."""
    if max_build_memory_gb is not None:
        return int(max_build_memory_gb * GB), "--max-build-memory"
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "this host's available memory"
    except OSError:
        pass
    return None, "no limit (the host does not report its available memory)"


def check_build_memory(estimate: BuildMemory, plan) -> None:
    """Refuse, before any conversion, a build whose largest stage is over the limit: the figures per stage and
    what would fit."""
    if estimate.fits:
        return
    peak = estimate.peak
    per_stage = "\n".join(f"  {s.stage:<13} {s.bytes / GB:6.1f} GB  {s.holds}" for s in estimate.stages)
    tips = [f"a host with {peak.bytes / GB:.1f} GB free (or --max-build-memory {peak.bytes / GB:.1f} where the "
            "runner has it)"]
    if peak.stage in ("drift", "device check"):
        per_1024 = kept_logits_bytes(plan.model, 1024, 1024) / GB
        tips.append(f"fewer --eval-tokens (the kept reference logits take {per_1024:.2f} GB per 1024 tokens)")
    raise PlanError(
        f"the {plan.target} build of {plan.model.id} needs about {peak.bytes / GB:.1f} GB at its {peak.stage} "
        f"stage, more than {estimate.limit_source} ({estimate.limit_bytes / GB:.1f} GB). Estimated per stage:\n"
        f"{per_stage}\nNothing was converted. What would fit: " + "; ".join(tips))
