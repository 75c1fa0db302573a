"""CI use: every target at once, the build cache, reproducible bundles, verify, pack and the GitHub matrix."""

import hashlib
import json
import shlex
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from edgeqwen.backends import engines
from edgeqwen.cli import make_parser
from edgeqwen.targets import load_all_targets

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUILDABLE = sorted(t.name for t in load_all_targets() if t.runtime.engine in engines())
PLANNING_ONLY = sorted(t.name for t in load_all_targets() if t.runtime.engine not in engines())


@pytest.fixture(scope="module")
def targets_with_a_broken_one(tmp_path_factory):
    folder = tmp_path_factory.mktemp("targets")
    for path in (PROJECT_ROOT / "targets").glob("*.toml"):
        shutil.copy(path, folder / path.name)
    broken = (folder / "raspberry-pi-5.toml").read_text()
    broken = broken.replace('name = "raspberry-pi-5"', 'name = "tiny-board"').replace(
        "memory_budget_mb = 4096", "memory_budget_mb = 64"
    )
    (folder / "tiny-board.toml").write_text(broken)
    return folder


@pytest.fixture(scope="module")
def all_targets_run(tmp_path_factory, targets_with_a_broken_one):
    """`edgeqwen build --target all` twice on the demo model: cold, then warm."""
    from tests.conftest import run_cli

    patch = pytest.MonkeyPatch()
    patch.setenv("EDGEQWEN_TARGETS_DIR", str(targets_with_a_broken_one))
    patch.setenv("EDGEQWEN_BUILD_CACHE", str(tmp_path_factory.mktemp("build-cache")))
    out = tmp_path_factory.mktemp("all")
    args = ("build", "--target", "all", "--out", out, "--eval-tokens", "256", "--json")
    cold = run_cli(*args)
    cold_hashes = {p.name: hashlib.sha256((p / "manifest.json").read_bytes()).hexdigest() for p in out.iterdir()}
    warm = run_cli(*args, "--force")
    patch.undo()
    return out, cold, warm, cold_hashes


@pytest.mark.slow  # the all-targets run: about 3 minutes of builds
def test_all_targets_build_and_a_failure_loses_nothing(all_targets_run):
    out, cold, _, _ = all_targets_run
    assert cold.code == 1, "a failed target makes the run fail"
    rows = {row["target"]: row for row in json.loads(cold.out)}
    assert rows["tiny-board"]["status"] == "failed" and "does not fit" in rows["tiny-board"]["reason"]
    for name in PLANNING_ONLY:
        assert rows[name]["status"] == "skipped"
    for name in BUILDABLE:
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["drift"]["passed"]
        bundle = out / f"demo-qwen3-4l-h128-{name}"
        assert (bundle / "manifest.json").is_file()
    assert not (out / "demo-qwen3-4l-h128-tiny-board").exists()
    # Targets with the same conversion share it: raspberry-pi-5 and android-arm64 (INT4, blocks of 64, CPU).
    conversions = [rows[name]["cache_hit"] for name in BUILDABLE]
    assert conversions.count("conversion") >= 1


@pytest.mark.slow  # the all-targets run: about 3 minutes of builds
def test_second_run_is_a_cache_hit_with_identical_files(all_targets_run):
    out, _, warm, cold_hashes = all_targets_run
    rows = {row["target"]: row for row in json.loads(warm.out)}
    for name in BUILDABLE:
        assert rows[name]["cache_hit"] == "bundle"
        bundle = out / f"demo-qwen3-4l-h128-{name}"
        assert hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest() == cold_hashes[bundle.name]


@pytest.mark.slow  # over 40 s: a real conversion of its own
def test_corrupt_cache_entry_is_rebuilt_not_used(cli, tiny_models, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGEQWEN_BUILD_CACHE", str(cache))
    args = ("build", "--model", tiny_models["qwen2"], "--target", "x86-64-laptop", "--eval-tokens", "256", "--json")
    first = cli(*args, "--out", tmp_path / "a")
    assert first.code == 0, first.err
    entry = next((cache / "bundle").iterdir())
    data = entry / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:-1] + b"\x00")
    second = cli(*args, "--out", tmp_path / "b")
    assert second.code == 0, second.err
    assert json.loads(second.out)["cache_hit"] == "conversion"  # the bundle entry was refused, rebuilt
    assert cli("verify", tmp_path / "b").code == 0
    assert (tmp_path / "a" / "model.onnx.data").read_bytes() == (tmp_path / "b" / "model.onnx.data").read_bytes()


@pytest.fixture
def small_bundle(cli, tiny_models, tmp_path):
    bundle = tmp_path / "bundle"
    assert cli("build", "--model", tiny_models["qwen3"], "--target", "raspberry-pi-5", "--out", bundle,
               "--eval-tokens", "256").code == 0
    return bundle


def test_verify_catches_a_changed_byte_a_missing_file_and_an_extra_file(cli, small_bundle):
    assert cli("verify", small_bundle).code == 0
    config = small_bundle / "genai_config.json"
    original = config.read_bytes()
    config.write_bytes(original.replace(b'"top_k": 50', b'"top_k": 51'))
    changed = cli("verify", small_bundle)
    assert changed.code == 1 and "genai_config.json: sha256 differs" in changed.out
    config.write_bytes(original)
    (small_bundle / "shim.py").rename(small_bundle.parent / "shim.py")
    missing = cli("verify", small_bundle)
    assert missing.code == 1 and "shim.py: listed in the manifest but missing" in missing.out
    (small_bundle.parent / "shim.py").rename(small_bundle / "shim.py")
    (small_bundle / "notes.txt").write_text("extra")
    extra = cli("verify", small_bundle)
    assert extra.code == 1 and "notes.txt: present but not in the manifest" in extra.out


def test_pack_is_deterministic_and_round_trips(cli, small_bundle, tmp_path):
    first = cli("pack", small_bundle, "--out", tmp_path / "one.tar.gz")
    second = cli("pack", small_bundle, "--out", tmp_path / "dist" / "two.tar.gz")  # a folder pack creates
    assert first.code == 0 and second.code == 0
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "dist" / "two.tar.gz").read_bytes()
    digest = hashlib.sha256((tmp_path / "one.tar.gz").read_bytes()).hexdigest()
    assert first.out.strip() == f"{digest}  one.tar.gz"
    assert (tmp_path / "one.tar.gz.sha256").read_text() == f"{digest}  one.tar.gz\n"
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        members = tar.getmembers()
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        tar.extractall(unpacked, filter="data")
    assert cli("verify", unpacked / "bundle").code == 0


def test_pack_refuses_a_bundle_that_does_not_match_its_manifest(cli, small_bundle):
    (small_bundle / "extra.bin").write_bytes(b"x")
    result = cli("pack", small_bundle)
    assert result.code == 2 and "does not match its manifest" in result.err


def test_matrix(cli):
    result = cli("matrix")
    assert result.code == 0
    cells = json.loads(result.out)["include"]
    assert sorted(c["target"] for c in cells) == BUILDABLE
    assert all(c["model"] == "demo" and c["name"] == f"demo-{c['target']}" for c in cells)
    two = json.loads(cli("matrix", "--models", "Qwen/Qwen3-0.6B,demo", "--targets", "raspberry-pi-5,android-arm64").out)
    assert len(two["include"]) == 4 and {"model": "Qwen/Qwen3-0.6B", "target": "android-arm64",
                                          "name": "Qwen3-0.6B-android-arm64"} in two["include"]
    unknown = cli("matrix", "--targets", "toaster")
    assert unknown.code == 2 and "unknown target 'toaster'" in unknown.err


def test_workflow_parses_and_uses_only_real_commands():
    workflow = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "bundles.yml").read_text())
    assert set(workflow["jobs"]) == {"plan", "build"}
    uses = [step["uses"].split("@")[0] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert "actions/upload-artifact" in uses and "actions/cache" in uses
    commands = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").splitlines():
                for part in line.split("$("):
                    part = part.strip()
                    if part.startswith(("edgeqwen ", 'echo "key=$(edgeqwen', 'echo "matrix=$(edgeqwen')):
                        commands.append(part)
    assert len(commands) >= 5
    parser = make_parser()
    for command in commands:
        text = command.split(")")[0]
        for expression in ("${{ matrix.model }}", "${{ matrix.target }}", "${{ matrix.name }}",
                           "${{ inputs.models || 'demo' }}", "${{ inputs.targets || 'all' }}"):
            text = text.replace(expression, "demo" if "model" in expression else "raspberry-pi-5")
        parser.parse_args(shlex.split(text)[1:])  # raises SystemExit on an unknown verb or flag
