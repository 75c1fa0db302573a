"""The build's own memory: estimated per stage before any work, and a build over the limit refused then."""

import json
import tempfile
from pathlib import Path

import pytest

from edgeqwen.build_memory import GB, build_memory_limit
from edgeqwen.pipeline import WORK_PREFIX

from .conftest import write_header_only_checkpoint
from .test_plan import QWEN25_7B, qwen25_7b_tensors


def work_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*")}


def dry_run(cli, *argv) -> dict:
    result = cli("build", *argv, "--dry-run")
    assert result.code == 0, result.err
    return json.loads(result.out)["build_memory"]


def test_dry_run_prints_every_stage_and_the_peak(cli):
    estimate = dry_run(cli, "--target", "raspberry-pi-5", "--device-check")
    stages = {s["stage"]: s["gb"] for s in estimate["stages"]}
    # raspberry-pi-5 is INT4 by Olive's Rtn pass, then ModelBuilder: one stage each, in the Olive process
    assert list(stages) == ["convert / rtn", "convert / builder", "drift", "device check"]
    assert estimate["peak_gb"] == max(stages.values()) and stages[estimate["peak_stage"]] == estimate["peak_gb"]
    assert estimate["limit_source"] == "this host's available memory" and estimate["fits"]
    # without the gate there is no reference to hold, and no device check (a random-weight benchmark build)
    assert [s["stage"] for s in dry_run(cli, "--target", "raspberry-pi-5", "--skip-drift")["stages"]] == [
        "convert / rtn", "convert / builder"]
    smaller = dry_run(cli, "--target", "raspberry-pi-5", "--eval-tokens", "256")
    assert {s["stage"]: s["gb"] for s in smaller["stages"]}["drift"] < stages["drift"]  # fewer kept logits


def test_the_estimate_grows_with_the_model(cli, tmp_path):
    big = write_header_only_checkpoint(tmp_path / "qwen25-7b", QWEN25_7B, qwen25_7b_tensors())
    demo = dry_run(cli, "--target", "x86-64-laptop", "--max-build-memory", "4096")
    seven = dry_run(cli, "--target", "x86-64-laptop", "--model", big, "--max-build-memory", "4096")
    assert seven["peak_gb"] > 8 > demo["peak_gb"]
    # The reference streams: one decoder layer in float32 (7B: 0.93 GB) and the float32 lm_head (2.2 GB), not the
    # whole model's 4 bytes a parameter (28 GB).
    drift = next(s["gb"] for s in seven["stages"] if s["stage"] == "drift")
    assert 4 * (233e6 + 545e6) / GB < drift < 16
    assert seven["limit_gb"] == 4096 and seven["limit_source"] == "--max-build-memory"


def test_a_build_over_max_build_memory_is_refused_before_any_conversion(cli, tmp_path):
    before = work_folders()
    result = cli("build", "--target", "raspberry-pi-5", "--out", tmp_path / "b", "--no-cache",
                 "--max-build-memory", "0.5")
    assert result.code == 2
    first = result.err.splitlines()[0]
    assert "needs about" in first and "--max-build-memory (0.5 GB)" in first
    for stage in ("convert", "drift"):
        assert f"  {stage} " in result.err
    assert "Nothing was converted" in result.err and "Traceback" not in result.err
    assert not (tmp_path / "b").exists() and work_folders() == before  # no engine ran, nothing was staged


@pytest.mark.parametrize("meminfo, expected", [
    ("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n", (12000000 * 1024, "this host's available memory")),
    ("MemTotal:       24000000 kB\n", (None, "no limit (the host does not report its available memory)")),
])
def test_the_limit_is_the_hosts_available_memory_unless_given(tmp_path, meminfo, expected):
    path = tmp_path / "meminfo"
    path.write_text(meminfo)
    assert build_memory_limit(None, path) == expected
    assert build_memory_limit(6.5, path) == (int(6.5 * GB), "--max-build-memory")
    assert build_memory_limit(None, tmp_path / "absent")[0] is None


def test_device_ram_picks_a_larger_size_of_the_device_and_the_fit_check_names_it(cli, tmp_path):
    big = write_header_only_checkpoint(tmp_path / "qwen25-7b", QWEN25_7B, qwen25_7b_tensors())
    refused = cli("build", "--target", "raspberry-pi-5", "--model", big, "--dry-run")
    assert refused.code == 2 and "over the memory budget of 4096.0 MB" in refused.err
    assert "--device-ram 16" in refused.err  # 4.1 GB of INT4 weights: the 16 GB Pi 5, at the same half of its RAM
    result = cli("build", "--target", "raspberry-pi-5", "--model", big, "--dry-run", "--device-ram", "16")
    assert result.code == 0, result.err
    plan = json.loads(result.out)["plan"]
    assert plan["memory_budget_mb"] == 8192 and plan["device_ram_gb"] == 16
    wrong = cli("build", "--target", "raspberry-pi-5", "--dry-run", "--device-ram", "3")
    assert wrong.code == 2 and "--device-ram 3: raspberry-pi-5 ships with 2, 4, 8, 16 GB" in wrong.err


def test_the_bundle_readme_counts_the_share_from_the_ram_size_built_for(tmp_path):
    from edgeqwen.bundle.readme import fit_section
    from edgeqwen.fit import check_fit
    from edgeqwen.models import resolve_model
    from edgeqwen.plan import resolve_plan
    from edgeqwen.recipes import recipe_for_model_type
    from edgeqwen.targets import load_target

    source = resolve_model(str(write_header_only_checkpoint(tmp_path / "qwen25-7b", QWEN25_7B, qwen25_7b_tensors())))
    target = load_target("raspberry-pi-5")
    plan = resolve_plan(source, target, recipe_for_model_type(source.model_type), device_ram_gb=16)
    text = fit_section(plan, target, check_fit(plan, target.hardware))
    assert "8192 MB of the\n16 GB device (50% of its RAM" in text
    assert "| 16 GB | 8192 MB | fits |" in text and "| 8 GB | 4096 MB | too small" in text
