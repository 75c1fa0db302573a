"""The drift gate: figures against the plan's budget, and what to try when they miss."""

from __future__ import annotations

from dataclasses import dataclass

from edgeqwen.backends import backend_for
from edgeqwen.errors import EdgeqwenError
from edgeqwen.plan import BuildPlan
from edgeqwen.targets import DriftBudget


class DriftBudgetExceeded(EdgeqwenError):
    """The bundle is measurably worse than its budget allows; it was not written."""

    exit_code = 1


@dataclass(frozen=True)
class Miss:
    metric: str
    value: float
    limit: float
    kind: str  # "max" or "min"
    reason: str = ""  # what the figure means, where its name does not say

    def describe(self) -> str:
        relation = "above the maximum" if self.kind == "max" else "below the minimum"
        text = f"{self.metric} {self.value:.4g} is {relation} {self.limit:.4g} (by {abs(self.value - self.limit):.3g})"
        return f"{text}: {self.reason}" if self.reason else text

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


def check_decode(generation: list[dict]) -> list[Miss]:
    """The decode path against the measured path: the runtime's greedy tokens must be the argmax of its own
    teacher-forced logits. A runtime that decodes through other graphs than it teacher-forces (a Qualcomm
    NPU bundle's one-token model) is measured by the figures above only if they agree."""
    checked = sum(g["decode_checked"] for g in generation)
    disagreements = sum(g["decode_disagreements"] for g in generation)
    if not disagreements:
        return []
    return [Miss("decode_agreement", (checked - disagreements) / checked, 1.0, "min",
                 f"at {disagreements} of {checked} generated positions the runtime's greedy token is not the argmax "
                 "of its own teacher-forced logits, so the drift figures do not describe how this bundle decodes")]


def suggestions(plan: BuildPlan) -> list[str]:
    """What usually recovers accuracy, most size-efficient first, given what the plan already does."""
    tips = backend_for(plan.engine).accuracy_suggestions(plan)
    tips.append("or loosen the budget if this drift is acceptable for your use (--max-mean-kld, --max-ppl-ratio, "
                "--min-top1-agreement)")
    return tips
