"""The catalogue's faults (docs/robustness.md): the output folder, the cache, damaged bundles, and death at any
file operation. Each case says what the user sees and checks what is left on disk."""

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgeqwen import pipeline
from edgeqwen.bundle.manifest import read_manifest
from edgeqwen.bundle.verify import verify_bundle
from edgeqwen.bundle.writer import DestinationLock, StagedBundle
from edgeqwen.cache import BuildCache
from edgeqwen.errors import BundleError

from .faults import COUNT_MARK, bundle_state, write_bundle_files

FAULTS = Path(__file__).with_name("faults.py")
GOLDEN = Path(__file__).parent / "golden"
IS_ROOT = os.geteuid() == 0


# ---------------------------------------------------------------------------------------------------------------
# Death or a full disk at every file operation of the bundle writer.

def run_faulty(mode, n, root, *job, env=None, timeout=120):
    command = [sys.executable, str(FAULTS), mode, str(n), str(root), "--", *job]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).parents[1])
    count = [int(line.split()[-1]) for line in done.stderr.splitlines() if line.startswith(COUNT_MARK)]
    return done, (count[0] if count else None)


def old_bundle(root):
    destination = root / "bundle"
    destination.mkdir(parents=True)
    write_bundle_files(destination, "old")
    return destination


@pytest.mark.parametrize("commit", ["exchange", "two-renames"])
@pytest.mark.parametrize("mode", ["kill", "enospc"])
def test_the_writer_loses_nothing_at_any_file_operation(tmp_path, mode, commit):
    """SIGKILL (or ENOSPC) at each of the writer's file operations in turn: the destination is always the
    complete old bundle or the complete new one (with the atomic exchange; on a file system without it, the
    old bundle may be beside it until the next build puts it back), and the next build cleans up."""
    clean, total = run_faulty(mode, 0, old_bundle(tmp_path / "probe").parent, "writer", commit)
    assert clean.returncode == 0, clean.stderr
    assert total and total >= 15, total
    for n in range(1, total + 1):
        root = tmp_path / f"at-{n}"
        destination = old_bundle(root)
        done, _ = run_faulty(mode, n, root, "writer", commit)
        if mode == "kill":
            assert done.returncode == -9, (n, done.stderr)
        else:
            assert done.returncode in (0, 1), (n, done.stderr)
            assert "Traceback" not in done.stderr or "OSError" in done.stderr or "BundleError" in done.stderr
        state = bundle_state(destination)
        if commit == "two-renames" and state is None:
            # Killed between the fallback's two renames: the old bundle waits beside the destination...
            assert [p.name for p in root.glob(".replaced-bundle-*")], n
        else:
            assert state in ("old", "new"), (n, state)
        # The next build to the same place recovers (...and puts it back) and cleans up; then the folder holds
        # the bundle alone.
        with StagedBundle(destination, force=True):
            pass
        assert bundle_state(destination) == (state or "old")
        assert sorted(p.name for p in root.iterdir()) == ["bundle"], (n, sorted(p.name for p in root.iterdir()))


# ---------------------------------------------------------------------------------------------------------------
# The output folder: full, read-only, a file, taken by another build.

@contextmanager
def small_file_system(path, size):
    """A tmpfs of `size` mounted at `path` (root only): writes beyond it really fail with ENOSPC."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


needs_root = pytest.mark.skipif(not IS_ROOT, reason="not run: mounting a small or read-only file system needs root "
                                                    "(CI runs as root)")


@needs_root
def test_a_full_disk_is_refused_before_conversion(cli, tmp_path):
    with small_file_system(tmp_path / "disk", "2m") as disk:
        started = time.monotonic()
        result = cli("build", "--target", "raspberry-pi-5", "--out", disk / "b", "--no-cache")
        assert result.code == 2, result.err
        assert "MB free on its file system; the bundle needs about" in result.err
        assert time.monotonic() - started < 60
        assert list(disk.iterdir()) == []


@needs_root
def test_a_disk_that_fills_while_writing_loses_nothing(tmp_path):
    """ENOSPC for real, in the middle of staging (the estimate said it fits, the disk filled up meanwhile)."""
    with small_file_system(tmp_path / "disk", "1m") as disk:
        destination = old_bundle(disk)
        with pytest.raises(OSError) as info:
            with StagedBundle(destination, force=True) as staging:
                (staging / "model.onnx.data").write_bytes(b"\0" * (2 << 20))
        assert info.value.errno == 28
        assert bundle_state(destination) == "old"
        assert sorted(p.name for p in disk.iterdir()) == ["bundle"]


@needs_root
def test_a_read_only_destination_is_refused_before_conversion(cli, tmp_path):
    with small_file_system(tmp_path / "disk", "4m") as disk:
        destination = old_bundle(disk)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = cli("build", "--target", "raspberry-pi-5", "--out", destination, "--force", "--no-cache")
        assert result.code == 2 and "cannot write in" in result.err and "Read-only file system" in result.err, \
            result.err
        assert bundle_state(destination) == "old"


def test_out_is_a_file(cli, tmp_path):
    (tmp_path / "b").write_text("not a bundle")
    for force in ((), ("--force",)):
        result = cli("build", "--target", "raspberry-pi-5", "--out", tmp_path / "b", *force)
        assert result.code == 2 and "exists and is not a folder; it will not be replaced" in result.err
    assert (tmp_path / "b").read_text() == "not a bundle"


def test_out_inside_a_file(cli, tmp_path):
    (tmp_path / "f").write_text("a file")
    result = cli("build", "--target", "raspberry-pi-5", "--out", tmp_path / "f" / "b")
    assert result.code == 2 and f"{tmp_path / 'f'} is a file, so no folder can be made inside it" in result.err


def test_a_second_build_to_the_same_out_is_refused_while_the_first_runs(cli, tmp_path):
    destination = old_bundle(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from edgeqwen.bundle.writer import StagedBundle\n"
        "with StagedBundle(Path(sys.argv[1]), force=True):\n    print('writing', flush=True); time.sleep(60)"),
        str(destination)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert holder.stdout.readline().strip() == "writing"
        result = cli("build", "--target", "raspberry-pi-5", "--out", destination, "--force")
        assert result.code == 2
        assert f"another edgeqwen build (pid {holder.pid}) is writing {destination}" in result.err
        assert bundle_state(destination) == "old"
    finally:
        holder.kill()
        holder.wait()
    # The holder died without unwinding: its lock went with it, and the next writer cleans up after it.
    with StagedBundle(destination, force=True):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_the_lock_is_exclusive_and_released(tmp_path):
    first = DestinationLock(tmp_path / "b")
    first.acquire()
    with pytest.raises(BundleError, match=f"pid {os.getpid()}"):
        DestinationLock(tmp_path / "b").acquire()
    first.release()
    second = DestinationLock(tmp_path / "b")
    second.acquire()
    second.release()
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_only_bundles(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for out in (tmp_path, "."):
        result = cli("build", "--target", "raspberry-pi-5", "--out", out, "--force")
        assert result.code == 2 and "a folder that is not an edgeqwen bundle (no manifest.json)" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_existing_bundle_without_force(cli, tmp_path):
    destination = old_bundle(tmp_path)
    result = cli("build", "--target", "raspberry-pi-5", "--out", destination)
    assert result.code == 2 and "already exists; pass --force to replace it" in result.err
    assert bundle_state(destination) == "old"


# ---------------------------------------------------------------------------------------------------------------
# The build cache: a damaged entry is never used.

CACHE_DAMAGE = {
    "cache-truncated-file": lambda entry: (entry / "model.onnx.data").write_bytes(b"short"),
    "cache-changed-byte": lambda entry: (entry / "model.onnx.data").write_bytes(
        b"\x01" + (entry / "model.onnx.data").read_bytes()[1:]),
    "cache-missing-file": lambda entry: (entry / "model.onnx").unlink(),
    "cache-entry-record-missing": lambda entry: (entry / "ENTRY.json").unlink(),
    "cache-entry-record-not-json": lambda entry: (entry / "ENTRY.json").write_text("{"),
    "cache-entry-record-wrong-shape": lambda entry: (entry / "ENTRY.json").write_text('{"files": [1]}'),
}


@pytest.mark.parametrize("case", CACHE_DAMAGE)
def test_a_damaged_cache_entry_is_removed_not_used(tmp_path, case):
    source = tmp_path / "converted"
    source.mkdir()
    (source / "model.onnx").write_text("graph")
    (source / "model.onnx.data").write_bytes(os.urandom(4096))
    cache = BuildCache(tmp_path / "cache")
    entry = cache.store("conversion", "k" * 64, source)
    assert cache.lookup("conversion", "k" * 64) == entry
    CACHE_DAMAGE[case](entry)
    assert cache.lookup("conversion", "k" * 64) is None
    assert not entry.exists()


# ---------------------------------------------------------------------------------------------------------------
# Damaged bundles: verify names the damage; the shim refuses to run it.

@pytest.fixture
def bundle_copy(tmp_path):
    golden = next(p for p in GOLDEN.iterdir() if p.is_dir())
    copy = tmp_path / "bundle"
    shutil.copytree(golden, copy)
    assert verify_bundle(copy) == []
    return copy


BUNDLE_DAMAGE = {
    "bundle-missing-file": (lambda b: (b / "tokenizer_config.json").unlink(),
                            "tokenizer_config.json: listed in the manifest but missing"),
    "bundle-extra-file": (lambda b: (b / "notes.txt").write_text("x"), "notes.txt: present but not in the manifest"),
    "bundle-changed-byte": (lambda b: (b / "genai_config.json").write_text(
        (b / "genai_config.json").read_text().replace('"', "'", 1)), "genai_config.json: sha256 differs"),
    "bundle-manifest-not-json": (lambda b: (b / "manifest.json").write_text("{"), "manifest.json: not valid JSON"),
    "bundle-manifest-not-utf8": (lambda b: (b / "manifest.json").write_bytes(b"\xff\xfe"), "not UTF-8 text"),
    "bundle-manifest-not-object": (lambda b: (b / "manifest.json").write_text("[]"),
                                   "a JSON list, not an edgeqwen manifest"),
    "bundle-files-table-damaged": (lambda b: edit_manifest(b, files=[1, 2]), "the file table is a list"),
    "bundle-future-format": (lambda b: edit_manifest(b, format_version=99),
                             "format_version 99 is newer than this edgeqwen reads"),
    "bundle-format-wrong-type": (lambda b: edit_manifest(b, format_version="2"), "format_version '2'"),
}


def edit_manifest(bundle, **changes):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("case", BUNDLE_DAMAGE)
def test_a_damaged_bundle_is_named(cli, bundle_copy, case):
    damage, words = BUNDLE_DAMAGE[case]
    damage(bundle_copy)
    result = cli("verify", bundle_copy)
    assert result.code != 0 and words in result.out + result.err, result.out + result.err
    assert "Traceback" not in result.err


def test_the_shim_refuses_a_bundle_from_the_future(bundle_copy):
    edit_manifest(bundle_copy, format_version=99)
    done = subprocess.run([sys.executable, bundle_copy / "shim.py", "--print-prompt", "hello"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "format_version" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_read_manifest_names_a_missing_manifest(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json; not an edgeqwen bundle"):
        read_manifest(tmp_path)


def test_an_engine_failure_inside_a_stage_is_a_named_build_error(tmp_path, monkeypatch):
    """What Olive or a builder raises inside a stage reaches the user as a BuildError naming the stage."""
    from edgeqwen.errors import BuildError
    from edgeqwen.stages import stage_boundary

    monkeypatch.setenv("EDGEQWEN_CACHE", str(tmp_path))
    with pytest.raises(BuildError, match=r"the drift stage of the x build failed: KeyError: 'logits'") as info:
        with stage_boundary("drift", "the x build"):
            {}["logits"]
    log = Path(str(info.value).split("full traceback: ")[1].split(";")[0])
    assert log.is_file() and "KeyError" in log.read_text()
    with pytest.raises(BuildError, match="no space left on the file system"):
        with stage_boundary("convert", "the x build"):
            raise OSError(28, "No space left on device", "/x/model.onnx.data")


def test_debug_shows_the_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgeqwen", "--debug", "verify", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" in done.stderr and "no manifest.json" in done.stderr
    plain = subprocess.run([sys.executable, "-m", "edgeqwen", "verify", str(tmp_path)], capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr


def test_pipeline_resolve_is_untouched_by_a_refused_build(tmp_path):
    """A refusal in resolve leaves no lock file, staging folder or scratch folder behind."""
    with pytest.raises(Exception):
        pipeline.build(pipeline.BuildRequest(target="raspberry-pi-5", out=tmp_path / "b", eval_tokens=3))
    assert list(tmp_path.iterdir()) == []
