"""Where the course lives on disk: the checkout, the reference repository, scratch space."""

from __future__ import annotations

import os
from pathlib import Path

MODEL_NAME = "efficientnet_lite0"


def course_root() -> Path:
    """The course checkout: $TRITON_COURSE_ROOT, else the folder holding this package
    (an editable install), else the nearest parent of the working directory with a models/ folder."""
    env = os.environ.get("TRITON_COURSE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "models").is_dir() and (here / "pyproject.toml").is_file():
        return here
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "models").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return cwd


def models_dir() -> Path:
    """The course's reference model repository (configs and labels committed, weights built)."""
    return course_root() / "models"


def workspace_dir() -> Path:
    """Where lessons write the repositories a learner may edit (ignored by git)."""
    path = course_root() / "workspace"
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir() -> Path:
    """Models the course downloads and converts once (lessons 15 and 16), git-ignored. Kept in the checkout, not
    in the cache: a pod's volume holds the checkout, while its home folder is new at every pod start."""
    path = course_root() / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Server logs, backend folders and served copies of repositories (safe to delete)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "triton-course"
    path.mkdir(parents=True, exist_ok=True)
    return path
