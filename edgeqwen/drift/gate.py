"""The drift gate: figures against the plan's budget, and what to try when they miss."""

from __future__ import annotations

from dataclasses import dataclass

from edgeqwen.errors import EdgeqwenError
from edgeqwen.targets import DriftBudget


class DriftBudgetExceeded(EdgeqwenError):
    """The bundle is measurably worse than its budget allows; it was not written."""

    exit_code = 1
    quality_row: dict | None = None  # this build's line of the quality table (read by the ladder)


@dataclass(frozen=True)
class Miss:
    metric: str
    value: float
    limit: float
    kind: str  # "max" or "min"

    def describe(self) -> str:
        relation = "above the maximum" if self.kind == "max" else "below the minimum"
        return f"{self.metric} {self.value:.4g} is {relation} {self.limit:.4g} (by {abs(self.value - self.limit):.3g})"

    def to_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "limit": self.limit, "kind": self.kind}


def check_budget(summary: dict, budget: DriftBudget) -> list[Miss]:
    misses = []
    if summary["ppl_ratio"] > budget.max_ppl_ratio:
        misses.append(Miss("ppl_ratio", summary["ppl_ratio"], budget.max_ppl_ratio, "max"))
    if summary["mean_kld"] > budget.max_mean_kld:
        misses.append(Miss("mean_kld", summary["mean_kld"], budget.max_mean_kld, "max"))
    if summary["top1_agreement"] < budget.min_top1_agreement:
        misses.append(Miss("top1_agreement", summary["top1_agreement"], budget.min_top1_agreement, "min"))
    return misses


def suggestions(plan: dict) -> list[str]:
    """What usually recovers accuracy, most size-efficient first, given what the plan already does."""
    quantization, nncf = plan["quantization"], plan.get("nncf")
    int4 = quantization.get("weights") == "int4"
    tips = []
    if quantization.get("lm_head") == "int4":
        tips.append("keep the lm_head and embedding at INT8 (recipe [quantization] lm_head = \"int8\", "
                    "embeddings = \"int8\")")
    if int4 and nncf is not None and not (nncf["awq"] and nncf["scale_estimation"]):
        tips.append("fit the INT4 scales on calibration text (recipe [nncf] awq = true, scale_estimation = true)")
    if int4 and not 0 < quantization.get("block_size", 32) <= 32:
        tips.append("use smaller quantization groups (block_size = 32)")
    if int4 and quantization.get("algorithm") == "rtn" and nncf is None and quantization.get("embeddings") == "float":
        tips.append("try the k-quant algorithm (algorithm = \"k_quant\")")
    if int4 and nncf is not None and nncf["ratio"] == 1.0:
        tips.append("keep the most sensitive fifth of the layers at INT8 (recipe [nncf] ratio = 0.8)")
    if int4 and plan.get("device") != "npu":  # an INT8 weight-only IR crashes the NPU pipeline
        tips.append("build INT8 weights (--precision int8)")
    tips.append("or loosen the budget if this drift is acceptable for your use (--max-mean-kld, --max-ppl-ratio, "
                "--min-top1-agreement)")
    return tips
