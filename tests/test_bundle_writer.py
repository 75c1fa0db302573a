"""Atomic bundle writing: nothing half-written reaches the destination, and nothing old is lost."""

import os

import pytest

from edgeqwen.bundle.writer import STAGING_PREFIX, StagedBundle, check_destination
from edgeqwen.errors import BundleError


def test_commit_moves_the_bundle_into_place(tmp_path):
    destination = tmp_path / "bundle"
    staged = StagedBundle(destination)
    with staged as staging:
        (staging / "model.onnx").write_text("new")
        assert not destination.exists()
        staged.commit()
    assert (destination / "model.onnx").read_text() == "new"
    assert oct(destination.stat().st_mode & 0o777) == "0o755"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_failure_leaves_nothing(tmp_path):
    destination = tmp_path / "bundle"
    with pytest.raises(RuntimeError):
        with StagedBundle(destination) as staging:
            (staging / "model.onnx").write_text("half")
            raise RuntimeError("conversion failed")
    assert list(tmp_path.iterdir()) == []


def test_existing_bundle_needs_force_and_survives_a_failed_rebuild(tmp_path):
    destination = tmp_path / "bundle"
    destination.mkdir()
    (destination / "model.onnx").write_text("old")
    (destination / "manifest.json").write_text("{}")  # --force replaces bundles only
    with pytest.raises(BundleError, match="already exists; pass --force"):
        check_destination(destination, force=False)
    with pytest.raises(RuntimeError):
        with StagedBundle(destination, force=True) as staging:
            (staging / "model.onnx").write_text("half")
            raise RuntimeError("conversion failed")
    assert (destination / "model.onnx").read_text() == "old"
    staged = StagedBundle(destination, force=True)
    with staged as staging:
        (staging / "model.onnx").write_text("new")
        staged.commit()
    assert (destination / "model.onnx").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_staging_of_a_dead_process_is_cleaned_up(tmp_path):
    destination = tmp_path / "bundle"
    abandoned = tmp_path / f"{STAGING_PREFIX}bundle-999999999-abc"
    abandoned.mkdir()
    alive = tmp_path / f"{STAGING_PREFIX}bundle-{os.getpid()}-xyz"
    alive.mkdir()
    staged = StagedBundle(destination)
    with staged:
        staged.commit()
    assert not abandoned.exists()
    assert alive.exists()  # a build still running in this process is left alone
