"""The device check: bundles run on their target's instruction set (arm64 under QEMU's model of the target's
core) with the runtime installed as their README says, before they ship. Real QEMU, real aarch64 wheels
from PyPI, a real Debian arm64 userland; the emulated runs take minutes, so most of this is slow."""

import json
import shutil
import subprocess
import sys

import pytest

from edgeqwen.bundle.manifest import read_manifest
from tests.test_drift import corrupt_scales

EMULATION = shutil.which("qemu-aarch64-static") and shutil.which("mmdebstrap")
needs_emulation = pytest.mark.skipif(not EMULATION, reason="not run: qemu-user-static and mmdebstrap are not "
                                                           "installed (.ci/run installs them)")


def report_of(bundle):
    report = json.loads((bundle / "device_check.json").read_text())
    assert read_manifest(bundle)["device_check"]["status"] == report["status"]
    return report


@pytest.fixture(scope="module")
def checked_demo_bundles(tmp_path_factory):
    """The demo model for both ARM targets, device check on, as `make demo` builds the Pi's."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("checked")
    result = run_cli("build", "--target", "raspberry-pi-5,android-arm64", "--out", out, "--device-check", "--json")
    assert result.code == 0, result.err
    return out, {row["target"]: row for row in json.loads(result.out)}


@pytest.mark.slow
@needs_emulation
@pytest.mark.parametrize("target, qemu_cpu", [("raspberry-pi-5", "cortex-a76"),
                                              ("android-arm64", "max,sme=off,sve-default-vector-length=16")])
def test_arm_bundles_pass_on_their_emulated_core_with_the_readme_s_runtime(checked_demo_bundles, cli, target,
                                                                          qemu_cpu):
    out, rows = checked_demo_bundles
    bundle = out / f"demo-qwen3-4l-h128-{target}"
    report = report_of(bundle)
    assert report["status"] == "passed" and report["failed"] == [] and report["not_run"] == []
    environment = report["environment"]
    assert (environment["kind"], environment["qemu_cpu"], report["architecture"]) == ("emulated", qemu_cpu, "arm64")
    assert report["runtime"]["installed"]["onnxruntime-genai"] == read_manifest(bundle)["runtime"]["requirement"].split("==")[1]
    parts = report["parts"]
    assert parts["answer"]["status"] == "passed" and parts["answer"]["answer"]
    assert parts["server"]["models_status"] == 200 and parts["server"]["completion_status"] == 200
    # The device's drift is gated like the host's, on the same tokens, and lands close to it.
    device, host = parts["drift"]["summary"], json.loads((bundle / "drift.json").read_text())["summary"]
    assert device["tokens"] == host["tokens"] and device["mean_kld"] <= parts["drift"]["budget"]["max_mean_kld"]
    assert abs(device["mean_kld"] - host["mean_kld"]) < 0.25 * host["mean_kld"]
    agreement = parts["host"]["figures"]
    assert agreement["top1_agreement"] > 0.9 and agreement["mean_kld"] < 0.01
    # One source of truth: the README shows the commands the check's install path is made of.
    readme = (bundle / "README.md").read_text()
    assert all(command in readme for command in report["runtime"]["readme_commands"])
    assert "pkg install python`), the runtime installs from PyPI" not in readme  # Termux's libc is not glibc
    assert rows[target]["device_check"]["status"] == "passed"
    verified = cli("verify", bundle)
    assert verified.code == 0 and "device check passed on emulated" in verified.out


@pytest.mark.slow
@needs_emulation
def test_weights_changed_after_the_host_gate_fail_on_the_device(cli, tiny_models, tmp_path, monkeypatch):
    """Only the device run sees the damage: the bundle is refused there, nothing is written, the report is kept."""
    from edgeqwen import pipeline

    real_write_bundle = pipeline.write_bundle

    def damage_then_write(resolved, staging, *rest):
        corrupt_scales(staging / "model.onnx")
        return real_write_bundle(resolved, staging, *rest)

    monkeypatch.setattr(pipeline, "write_bundle", damage_then_write)
    out = tmp_path / "pi"
    result = cli("build", "--model", tiny_models["qwen3"], "--target", "raspberry-pi-5", "--out", out,
                 "--eval-tokens", "256", "--quality", "fixed", "--no-cache", "--device-check",
                 "--max-mean-kld", "0.02")
    assert result.code == 1 and "failed its device check" in result.err and "drift" in result.err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["pi.device-check-failed"]
    kept = json.loads((tmp_path / "pi.device-check-failed" / "device_check.json").read_text())
    assert kept["status"] == "failed" and "drift" in kept["failed"] and kept["parts"]["drift"]["misses"]


def test_a_skipped_check_says_not_run_and_never_passed(cli, tiny_models, tmp_path):
    out = tmp_path / "laptop"
    result = cli("build", "--model", tiny_models["qwen2"], "--target", "x86-64-laptop", "--out", out,
                 "--eval-tokens", "256", "--no-device-check")
    assert result.code == 0, result.err
    report = report_of(out)
    assert report["status"] == "not run" and "--no-device-check" in report["reason"] and "parts" not in report
    assert "device   NOT RUN (--no-device-check" in result.out
    verified = cli("verify", out)
    assert verified.code == 0 and "device check not run" in verified.out
    assert "device check passed" not in verified.out
    # A report edited to claim a pass no longer matches the manifest's verdict (nor its hash).
    (out / "device_check.json").write_text(json.dumps({**report, "status": "passed"}))
    tampered = cli("verify", out)
    assert tampered.code == 1 and "the manifest says 'not run'" in tampered.out


def test_a_cuda_bundle_without_the_cuda_runtime_says_what_to_install_in_one_line(cli, tiny_models, tmp_path):
    out = tmp_path / "jetson"
    assert cli("build", "--model", tiny_models["qwen3"], "--target", "jetson-orin-nano", "--out", out,
               "--eval-tokens", "256").code == 0
    refused = subprocess.run([sys.executable, out / "shim.py", "hello"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "install onnxruntime-genai-cuda" in refused.stderr and "--cpu" in refused.stderr
    readme = (out / "README.md").read_text()
    assert "pypi.jetson-ai-lab.io/jp6/cu126" in readme and "--use_cuda" in readme and "--device cpu" in readme


def test_without_qemu_the_check_names_the_packages_to_install(cli, demo_bundle, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu-aarch64-static, no mmdebstrap
    result = cli("check", demo_bundle)
    assert result.code == 1 and "apt-get install qemu-user-static mmdebstrap" in result.err
    assert "--no-device-check" in result.err and "Traceback" not in result.err
