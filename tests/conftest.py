"""Shared fixtures: the built reference repository and a repository of classic mistakes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import psutil
import pytest

from triton_course import artifact, models_dir
from triton_course.paths import MODEL_NAME
from triton_course.tools.prepare import prepare


@pytest.fixture
def wait_until_gone():
    """wait_until_gone(pids, seconds=20.0): waits until none of `pids` runs (zombies count as gone);
    returns the ones still running at the deadline, so `== set()` asserts that all ended."""
    def wait(pids: set[int], seconds: float = 20.0) -> set[int]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            alive = {p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
            if not alive:
                return set()
            time.sleep(0.2)
        return alive

    return wait


@pytest.fixture(scope="session")
def reference_repo() -> Path:
    """models/ with model.onnx built (exported once if missing)."""
    return prepare()


def _copy_model(repo: Path, name: str, *, edit=None, version: bool = True, config: bool = True) -> Path:
    source = models_dir() / MODEL_NAME
    target = repo / name
    target.mkdir(parents=True)
    shutil.copy(source / "labels.txt", target)
    if version:
        (target / "1").mkdir()
        os.symlink(artifact.onnx_path(), target / "1" / "model.onnx")
    if config:
        text = (source / "config.pbtxt").read_text().replace(MODEL_NAME, name)
        (target / "config.pbtxt").write_text(edit(text) if edit else text)
    return target


# name -> how its config is broken. Each is a mistake newcomers make.
BROKEN = {
    "batch_in_dims": dict(edit=lambda t: t.replace("dims: [3, 224, 224]", "dims: [-1, 3, 224, 224]")),
    "no_batching_short_dims": dict(edit=lambda t: t.replace("max_batch_size: 8", "max_batch_size: 0")),
    "unknown_datatype": dict(edit=lambda t: t.replace("TYPE_FP32", "TYPE_FLOAT32", 1)),
    "wrong_datatype": dict(edit=lambda t: t.replace("TYPE_FP32", "TYPE_FP16", 1)),
    "does_not_parse": dict(edit=lambda t: t.replace("max_batch_size: 8", "max_batch_size 8")),
    "wrong_tensor_name": dict(edit=lambda t: t.replace('name: "input"', 'name: "images"')),
    "no_version_folder": dict(version=False),
    "no_backend_no_file": dict(version=False, config=False),
}


@pytest.fixture(scope="session")
def broken_repo(reference_repo, tmp_path_factory) -> Path:
    """One good model and one model per classic mistake."""
    repo = tmp_path_factory.mktemp("broken") / "repo"
    repo.mkdir()
    _copy_model(repo, "good")
    for name, how in BROKEN.items():
        _copy_model(repo, name, **how)
    missing = _copy_model(repo, "model_file_missing")
    (missing / "1" / "model.onnx").unlink()
    unreadable = _copy_model(repo, "unreadable_file")
    (unreadable / "1" / "model.onnx").unlink()
    shutil.copy(artifact.onnx_path(), unreadable / "1" / "model.onnx")
    (unreadable / "1" / "model.onnx").chmod(0)
    return repo


@pytest.fixture
def copy_model():
    return _copy_model
