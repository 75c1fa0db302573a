"""What decode rate a target can reach for a model, before anything is built.

The ceiling is the target profile's memory bandwidth over the bytes of weights the planned bundle
reads per token (`traffic.plan_bytes_per_token`); the prediction applies the fraction of the ceiling
that edgeqwen bundles reached on the benchmark host (benchmarks/RESULTS.md). `edgeqwen bench` on a
built bundle replaces that fraction with its own measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeqwen.bench.bandwidth import decode_ceiling
from edgeqwen.bench.traffic import plan_bytes_per_token
from edgeqwen.errors import EdgeqwenError
from edgeqwen.models import ModelSource
from edgeqwen.plan import resolve_plan
from edgeqwen.recipes import recipe_for_model_type
from edgeqwen.targets import TargetProfile

# Decode rate / roofline of the edgeqwen ONNX Runtime INT4 bundles of the 0.5B-0.6B shapes in
# benchmarks/RESULTS.md: 44-58 % on the 2-core AVX2 build host. Other CPUs' kernels differ; a planning figure.
BENCHMARKED_ROOFLINE_FRACTION = 0.5


@dataclass(frozen=True)
class DecodePrediction:
    model_id: str
    parameters: int
    bytes_per_token: int
    ceiling_tok_s: float
    predicted_tok_s: float | None  # None off the CPU: the benchmarked fraction says nothing about NPUs or GPUs


def expected_fraction(device: str) -> float | None:
    return BENCHMARKED_ROOFLINE_FRACTION if device == "cpu" else None


def predict_decode(source: ModelSource, target: TargetProfile) -> DecodePrediction | None:
    """The prediction for `source` built for `target` with its default recipe; None if it cannot be planned."""
    try:
        plan = resolve_plan(source, target, recipe_for_model_type(source.model_type))
    except EdgeqwenError:
        return None
    per_token = plan_bytes_per_token(plan)
    ceiling = decode_ceiling(target.hardware.memory_bandwidth_gbps * 1e9, per_token)
    fraction = expected_fraction(target.runtime.device)
    predicted = ceiling * fraction if fraction else None
    return DecodePrediction(source.id, source.num_parameters, per_token, ceiling, predicted)


def prediction_line(bytes_per_token: int, bandwidth_gbps: float, device: str) -> str:
    """One line for the build summary: the decode rate to expect on the target, and where it comes from."""
    ceiling = decode_ceiling(bandwidth_gbps * 1e9, bytes_per_token)
    basis = f"{bandwidth_gbps:g} GB/s / {bytes_per_token / 2**20:.1f} MB read per token"
    fraction = expected_fraction(device)
    if fraction is None:
        return f"decode ceiling {ceiling:.0f} tok/s on the {device.upper()} ({basis}; no measured efficiency for it)"
    return (f"~{ceiling * fraction:.0f} tok/s decode predicted ({basis} = ceiling {ceiling:.0f} tok/s, "
            f"x {fraction:.0%} as benchmarked)")
