"""A bundle of every format version this edgeqwen reads keeps loading, verifying and running (tests/golden/).

bundle-v1 was written by edgeqwen 0.1.0 (format_version 1: plan_version 1, a shim without worker mode)
and is never rebuilt. Nothing here writes into it.
"""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from edgeqwen.backends.ort_genai import OrtGenaiOptions
from edgeqwen.bundle.manifest import FORMAT_VERSION, READABLE_FORMAT_VERSIONS, manifest_plan, read_manifest
from edgeqwen.bundle.verify import verify_bundle
from edgeqwen.plan import BuildPlan

GOLDEN = Path(__file__).parent / "golden"
V1 = GOLDEN / "bundle-v1"
SOURCE = GOLDEN / "golden-tiny-qwen3"


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def untouched():
    before = snapshot(V1)
    yield
    assert snapshot(V1) == before, "a test wrote into the golden bundle"


def test_every_older_readable_format_has_a_golden_bundle():
    """Today's format is what every other test builds; each older one this edgeqwen reads is kept here."""
    kept = {read_manifest(folder)["format_version"] for folder in GOLDEN.glob("bundle-v*")}
    assert kept == set(READABLE_FORMAT_VERSIONS) - {FORMAT_VERSION}


def test_v1_manifest_loads_verifies_and_its_plan_reads_into_today_s_type(untouched):
    manifest = read_manifest(V1)
    assert manifest["format_version"] == 1 and manifest["plan"]["plan_version"] == 1
    assert verify_bundle(V1) == []
    plan = manifest_plan(V1, manifest)
    assert isinstance(plan, BuildPlan) and plan.plan_version == 2
    assert plan.engine_options == OrtGenaiOptions(accuracy_level=4, algorithm="rtn")
    assert plan.quantization.block_size == 64 and plan.model.id == "golden-tiny-qwen3"
    assert BuildPlan.from_json(plan.to_json()) == plan  # and it round-trips in today's layout


def test_v1_bundle_runs_with_its_own_shim_on_the_device(untouched, device_python):
    answer = subprocess.run([device_python, V1 / "shim.py", "--max-new-tokens", "4", "hello"], capture_output=True,
                            text=True, timeout=300)
    assert answer.returncode == 0, answer.stderr


def test_v1_bundle_is_measured_through_today_s_worker_as_it_was_when_built(untouched, cli):
    """`eval` runs the v1 bundle through this edgeqwen's shim (its own has no worker mode): the drift it
    measures is the drift the v1 build measured in-process."""
    result = cli("eval", V1, "--model", SOURCE, "--json")
    assert result.code == 0, result.err
    again, built = json.loads(result.out), json.loads((V1 / "drift.json").read_text())
    for key, value in built["summary"].items():
        assert again["summary"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert [g["bundle"] for g in again["generation"]] == [g["bundle"] for g in built["generation"]]
    bench = cli("bench", V1, "--prompt-tokens", 8, "--new-tokens", 4, "--runs", 1, "--json")
    assert bench.code == 0, bench.err
    assert json.loads(bench.out)["bytes_per_token"] == read_manifest(V1)["speed"]["bytes_per_token"]


def test_a_damaged_plan_is_named_not_a_traceback(tmp_path):
    from edgeqwen.errors import BundleError

    plan = read_manifest(V1)["plan"]
    broken = {**plan, "quantization": {**plan["quantization"], "block_size": 48}}
    with pytest.raises(BundleError, match=r"quantization: block_size = 48: expected one of"):
        BuildPlan.from_dict(broken)
    with pytest.raises(BundleError, match=r"unknown engine 'tensorrt'"):
        BuildPlan.from_dict({**plan, "engine": "tensorrt"})
