"""A real build killed, terminated or interrupted at points spread over its file operations (docs/robustness.md).

The build is the tiny Qwen3 model for x86-64-laptop with its conversion cached, so each run spends its time in the
parity, drift and bundle stages and the move into place, where an interruption is most likely to leave a half
bundle. After each run the destination holds the complete old bundle or the complete new one (`verify` passes and
the manifest is one of the two), no child process of the build is left, and the next build to the same place
leaves only the bundle.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeqwen.bundle.verify import verify_bundle
from edgeqwen.bundle.writer import StagedBundle

from .faults import COUNT_MARK, EXCHANGE_MARK

FAULTS = Path(__file__).with_name("faults.py")
PROJECT = Path(__file__).parents[1]


def faulty_build(mode, n, root, model, destination, eval_tokens):
    env = {**os.environ, "EDGEQWEN_BUILD_CACHE": str(root / "cache"), "TMPDIR": str(root / "tmp")}
    command = [sys.executable, str(FAULTS), mode, str(n), str(root), "--", "build", "--model", str(model),
               "--target", "x86-64-laptop", "--out", str(destination), "--force", "--eval-tokens", str(eval_tokens)]
    # A new --eval-tokens per run: a bundle-cache miss each time, over the same cached conversion.
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=PROJECT)
    marks = {line.split(":")[0]: int(line.split()[-1]) for line in done.stderr.splitlines()
             if line.startswith((COUNT_MARK, EXCHANGE_MARK))}
    return done, marks.get(COUNT_MARK.rstrip(":")), marks.get(EXCHANGE_MARK.rstrip(":"))


def manifest_of(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def processes_under(root):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(root) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.slow  # about 3 minutes: a build, a probe, then four builds stopped midway
def test_a_build_stopped_at_any_point_loses_nothing(cli, tiny_models, tmp_path):
    (tmp_path / "tmp").mkdir()
    old = tmp_path / "old"
    env_cache = {"EDGEQWEN_BUILD_CACHE": str(tmp_path / "cache")}
    os.environ.update(env_cache)
    try:
        assert cli("build", "--model", tiny_models["qwen3"], "--target", "x86-64-laptop", "--out", old,
                   "--eval-tokens", "64").code == 0  # the old bundle, and its conversion cached
    finally:
        for key in env_cache:
            os.environ.pop(key)
    probe_dest = tmp_path / "probe" / "bundle"
    probe_dest.parent.mkdir()
    shutil.copytree(old, probe_dest)
    done, total, exchange_at = faulty_build("kill", 0, tmp_path, tiny_models["qwen3"], probe_dest, 32)
    assert done.returncode == 0, done.stderr
    assert total > 50 and exchange_at, (total, exchange_at)
    old_manifest = manifest_of(old)
    assert manifest_of(probe_dest) != old_manifest
    # In the parity/drift stages and at the swap into place; SIGTERM and Ctrl-C in the drift and bundle stages.
    # (Every operation of the writer itself, the swap's aftermath included, is tried in tests/test_faults.py.)
    points = [("kill", total // 3), ("kill", exchange_at), ("sigterm", total // 2), ("sigint", total * 5 // 6)]
    for i, (mode, n) in enumerate(points):
        destination = tmp_path / f"run-{i}" / "bundle"
        destination.parent.mkdir()
        shutil.copytree(old, destination)
        done, _, _ = faulty_build(mode, n, tmp_path, tiny_models["qwen3"], destination, 33 + i)
        expected_code = {"kill": -signal.SIGKILL, "sigterm": 128 + signal.SIGTERM, "sigint": 130}[mode]
        assert done.returncode in (expected_code, 0), (mode, n, done.returncode, done.stderr[-2000:])
        if mode != "kill" and done.returncode:
            assert "nothing was written to the destination" in done.stderr and "Traceback" not in done.stderr
        assert verify_bundle(destination) == [], (mode, n)
        manifest = manifest_of(destination)  # the complete old bundle, or a complete new one (measured on fewer tokens)
        assert manifest == old_manifest or manifest["drift"]["summary"]["tokens"] < 64, (mode, n)
        deadline = time.monotonic() + 10
        while processes_under(destination.parent) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_under(destination.parent), f"a child of the build outlived it ({mode} at {n})"
        with StagedBundle(destination, force=True):  # the next build to the same place cleans up
            pass
        assert sorted(p.name for p in destination.parent.iterdir()) == ["bundle"], (mode, n)
