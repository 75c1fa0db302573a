"""Will it fit? Weights plus KV cache at the planned context, against the target's memory budget.

Checked before any long work, so a model that cannot run on the device is
refused in a second with the numbers, not after a twenty-minute export.
The arithmetic is shared; each backend supplies what differs on its engine
(`Backend.estimate_memory`): the float width of its scales, activations and KV
cache on the device, and the bits of its decoder layers. The KV cache is one
buffer for the full context (ONNX Runtime GenAI's past_present_share_buffer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgeqwen.errors import FitError
from edgeqwen.plan import BuildPlan

MB = 1024 * 1024
# Session, allocator arenas and the tokenizer: measured as roughly this much on top of weights and cache.
RUNTIME_OVERHEAD_BYTES = 96 * MB


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    kv_cache_bytes: int
    runtime_bytes: int
    budget_bytes: int
    context_length: int
    kv_bytes_per_token: int
    gathered_only_bytes: int = 0  # an embedding table stored apart from the lm_head: one row read per token

    @property
    def read_per_token_bytes(self) -> int:
        """The weights decoding reads per token: all of them, less a table that is only gathered from."""
        return self.weights_bytes - self.gathered_only_bytes

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.runtime_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.budget_bytes

    @property
    def max_context_that_fits(self) -> int:
        spare = self.budget_bytes - self.weights_bytes - self.runtime_bytes
        return max(0, spare // self.kv_bytes_per_token)

    def to_dict(self) -> dict:
        return {
            "weights_mb": round(self.weights_bytes / MB, 1),
            "kv_cache_mb": round(self.kv_cache_bytes / MB, 1),
            "runtime_mb": round(self.runtime_bytes / MB, 1),
            "total_mb": round(self.total_bytes / MB, 1),
            "budget_mb": round(self.budget_bytes / MB, 1),
            "context_length": self.context_length,
            "fits": self.fits,
        }


def ram_variant_fits(estimate: MemoryEstimate, ram_gb: float, variants: tuple[float, ...]) -> list[dict]:
    """Each RAM size the device ships in (`variants`, or only `ram_gb`): the budget at the profile's share of
    its RAM (the rest is the system's), whether the bundle fits it, and the longest context that would."""
    share = estimate.budget_bytes / (ram_gb * 1024 * MB)
    rows = []
    for ram in variants or (ram_gb,):
        at = dataclasses.replace(estimate, budget_bytes=int(ram * 1024 * MB * share))
        rows.append({"ram_gb": ram, "budget_mb": round(at.budget_bytes / MB), "fits": at.fits,
                     "max_context": min(at.max_context_that_fits, estimate.context_length)})
    return rows


def bits_per_weight(precision: str, plan: BuildPlan, float_bytes: int) -> float:
    """Storage per weight including block scales (and zero points when asymmetric)."""
    q = plan.quantization
    if precision in ("float", "fp32", "fp16"):
        return 8.0 * float_bytes
    bits = 4 if precision == "int4" else 8
    group = q.block_size if q.block_size > 0 else plan.model.hidden_size  # channel-wise: one scale per row
    scale_bits = 8 * float_bytes / group
    zero_point_bits = 0 if q.symmetric else bits / group
    return bits + scale_bits + zero_point_bits


def table_and_layer_weights(m) -> tuple[int, int]:
    """Entries of one vocabulary table, and the weights of everything else (the decoder layers)."""
    table = m.vocab_size * m.hidden_size
    return table, m.num_parameters - table * (1 if m.tied_embeddings else 2)


def estimate_memory(plan: BuildPlan, float_bytes: int, layer_bits: float | None = None) -> MemoryEstimate:
    """`float_bytes`: the engine's float width on the device; `layer_bits`: bits per decoder-layer weight
    (default: all at the plan's weight precision)."""
    m, q = plan.model, plan.quantization
    table, layers = table_and_layer_weights(m)
    if layer_bits is None:
        layer_bits = bits_per_weight({"int4": "int4", "int8": "int8"}.get(q.weights, "float"), plan, float_bytes)
    weight_bits = layers * layer_bits + table * bits_per_weight(q.lm_head, plan, float_bytes)
    gathered_only = 0
    if not (m.tied_embeddings and q.embeddings == q.lm_head):  # a tied pair at one precision is stored once
        weight_bits += table * bits_per_weight(q.embeddings, plan, float_bytes)
        gathered_only = int(table * bits_per_weight(q.embeddings, plan, float_bytes) / 8)
    kv_per_token = 2 * m.num_layers * m.num_kv_heads * m.head_dim * float_bytes
    # Prefill activations: one row of logits (the lm_head is pruned to the last token) and the widest
    # layer activation for a full-context prompt.
    activations = m.vocab_size * 4 + plan.context_length * max(m.intermediate_size, m.hidden_size) * 4 * 2
    return MemoryEstimate(
        weights_bytes=int(weight_bits / 8),
        kv_cache_bytes=kv_per_token * plan.context_length,
        runtime_bytes=RUNTIME_OVERHEAD_BYTES + activations,
        budget_bytes=plan.memory_budget_mb * MB,
        context_length=plan.context_length,
        kv_bytes_per_token=kv_per_token,
        gathered_only_bytes=gathered_only,
    )


def device_ram_gb(plan: BuildPlan, hardware) -> float:
    """The RAM of the device the plan is built for: --device-ram, or the size the target profile describes."""
    return plan.device_ram_gb or hardware.ram_gb


def check_fit(plan: BuildPlan, hardware=None) -> MemoryEstimate:
    """The bundle's memory on the device, or FitError; `hardware` (the target's) names the device's larger RAM
    sizes that would fit."""
    from edgeqwen.backends import backend_for

    estimate = backend_for(plan.engine).estimate_memory(plan)
    if not estimate.fits:
        e = estimate.to_dict()
        hints = []
        if estimate.max_context_that_fits >= 256:
            hints.append(f"a context of at most {estimate.max_context_that_fits} tokens would fit (--context-length)")
        if hardware is not None:
            ram = device_ram_gb(plan, hardware)
            larger = [row for row in ram_variant_fits(estimate, ram, hardware.ram_variants_gb)
                      if row["fits"] and row["ram_gb"] > ram]
            if larger:
                hints.append(f"it fits the {larger[0]['ram_gb']:g} GB {plan.target} at the same share of its RAM "
                             f"({larger[0]['budget_mb']} MB): --device-ram {larger[0]['ram_gb']:g}")
        if not hints:
            hints.append("the weights alone exceed the budget: choose a smaller model or a target with more memory")
        hint = "; or ".join(hints)
        raise FitError(
            f"{plan.model.id} does not fit target {plan.target!r}: weights {e['weights_mb']} MB + KV cache "
            f"{e['kv_cache_mb']} MB at {plan.context_length} tokens + runtime {e['runtime_mb']} MB = "
            f"{e['total_mb']} MB, over the memory budget of {e['budget_mb']} MB; {hint}"
        )
    return estimate
