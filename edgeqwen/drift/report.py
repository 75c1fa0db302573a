"""The drift report: drift.json for machines, drift.md for people, drift.png for a glance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPORT_FILES = ("drift.json", "drift.md", "drift.png")


def write_report(folder: Path, report: dict, per_token_kld: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drift.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (folder / "drift.md").write_text(markdown(report))
    plot(folder / "drift.png", report, per_token_kld)


def quality_section(report: dict) -> str:
    quality = report.get("quality")
    if not quality or quality["mode"] != "auto" or quality["chosen"] is None:
        return ""
    lines = ["| rung | result | size MB | mean KLD | PPL ratio | top-1 |", "|---|---|---|---|---|---|"]
    for row in quality["tried"]:
        if row["status"] == "skipped":
            lines.append(f"| {row['rung']} | skipped: {row['reason'].splitlines()[0]} | | | | |")
        else:
            lines.append(f"| {row['rung']} | {row['status']} | {row['bundle_bytes'] / 2**20:.1f} | "
                         f"{row['mean_kld']:.5f} | {row['ppl_ratio']:.4f} | {row['top1_agreement']:.1%} |")
    return (f"\n## Quality ladder: `{quality['chosen']}` chosen\n\nRungs tried smallest first; the first within "
            "the budget is this bundle.\n\n" + "\n".join(lines) + "\n")


def markdown(report: dict) -> str:
    s, budget = report["summary"], report["budget"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    rows = [
        ("perplexity ratio (bundle / reference)", f"{s['ppl_ratio']:.4f}", f"<= {budget['max_ppl_ratio']}"),
        ("mean KL divergence (nats/token)", f"{s['mean_kld']:.5f}", f"<= {budget['max_mean_kld']}"),
        ("top-1 agreement", f"{s['top1_agreement']:.2%}", f">= {budget['min_top1_agreement']:.0%}"),
        ("median / p95 / p99 KLD", f"{s['median_kld']:.5f} / {s['p95_kld']:.5f} / {s['p99_kld']:.5f}", ""),
        ("perplexity: reference / bundle", f"{s['ppl_reference']:.3f} / {s['ppl_bundle']:.3f}", ""),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    generations = "\n".join(
        f"- \"{g['prompt']}\": "
        + (
            f"first divergent token at position {g['first_divergence']} of {g['compared_tokens']}"
            if g["first_divergence"] is not None
            else f"identical for all {g['compared_tokens']} tokens"
        )
        + decode_note(g)
        for g in report["generation"]
    )
    misses = "".join(f"\n- {m}" for m in report.get("miss_descriptions", []))
    data, ref = report["eval_data"], report["reference"]
    return f"""# Accuracy drift: {verdict}

Bundle for `{report['target']}` measured against `{ref['model_id']}` ({ref['framework']}, {ref['dtype']}),
teacher-forced over {s['tokens']} held-out tokens ({data['windows']} windows of up to {data['window']} tokens)
from {data['source']} (sha256 {data['sha256'][:16]}...), on {report['runtime']['engine']}
{report['runtime']['version']} ({report['runtime']['device']}).

| metric | value | budget |
|---|---|---|
{table}
{misses}

Greedy generation, {len(report['generation'])} prompts:
{generations}

![per-token KLD](drift.png)
{quality_section(report)}"""


def decode_note(generation: dict) -> str:
    """Whether the bundle's greedy tokens are its own teacher-forced argmax."""
    if generation["decode_disagreements"]:
        return f"; the bundle's own logits disagree with its decoding at {generation['decode_disagreements']} positions"
    return "; the bundle decodes as it was measured"


def plot(path: Path, report: dict, per_token_kld: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    values = np.maximum(per_token_kld, 1e-8)
    left.hist(np.log10(values), bins=50, color="#4477aa")
    left.set_xlabel("log10 KL(reference || bundle) per token")
    left.set_ylabel("tokens")
    left.set_title(f"mean {report['summary']['mean_kld']:.4g} nats")
    positions = report["per_position_mean_kld"]
    right.plot(range(len(positions)), positions, color="#cc6677")
    right.set_xlabel("position in window")
    right.set_ylabel("mean KLD")
    right.set_title("KLD by position")
    fig.suptitle(f"{report['reference']['model_id']} on {report['target']}: "
                 f"{'passed' if report['passed'] else 'FAILED'}")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})  # no version string: same figures, same bytes
    plt.close(fig)
