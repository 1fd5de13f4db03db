"""Model repositories: folders, version folders, config.pbtxt, labels.

A Triton model repository is a folder of models; each model is a folder holding config.pbtxt
and numbered version folders with the model file:

    models/
      efficientnet_lite0/
        config.pbtxt
        labels.txt
        1/model.onnx

Writing never destroys a file a learner edited: a file whose content would change is kept
as NAME.<time>.bak first. How the embedded server serves ONNX models without an onnxruntime backend
(a served copy of the repository) is in runtimes/stand_in.py.
"""

from __future__ import annotations

import shutil
import stat
import time
from pathlib import Path

from .gpu import torch_device_name
from .model_config import (
    ModelConfig,
    to_text,
    torch_runner_config,
)


def write_file(path: str | Path, content: str | bytes) -> Path | None:
    """Write `content` to `path`; if a different file is there, keep it as a backup and return its path."""
    path = Path(path)
    data = content.encode() if isinstance(content, str) else content
    backup = None
    if path.exists():
        if path.read_bytes() == data:
            return None
        backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        n = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}-{n}.bak")
            n += 1
        path.rename(backup)
        print(f"Kept your previous {path.name} as {backup.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return backup


def write_config(model_dir: str | Path, config: ModelConfig) -> Path:
    """Write config.pbtxt from a ModelConfig message (a changed existing file is backed up)."""
    path = Path(model_dir) / "config.pbtxt"
    write_file(path, to_text(config))
    return path


def add_model(
    repository: str | Path,
    config: ModelConfig,
    model_file: str | Path,
    *,
    version: int = 1,
    labels: list[str] | None = None,
    filename: str | None = None,
) -> Path:
    """Put a model into a repository: NAME/config.pbtxt, NAME/<version>/<file>, NAME/labels.txt."""
    model_dir = Path(repository) / config.name
    add_version(repository, config.name, version, model_file, filename=filename)
    if labels is not None:
        write_file(model_dir / "labels.txt", "\n".join(labels) + "\n")
    write_config(model_dir, config)
    return model_dir


def add_torch_model(repository: str | Path, config: ModelConfig, torchscript: str | Path, *,
                    version: int = 1, labels: list[str] | None = None) -> Path:
    """A TorchScript model served by the course's PyTorch runner: config (backend python),
    NAME/<version>/model.pt and the runner as model.py."""
    from .runtimes.stand_in import TORCH_GRAPHS_SOURCE, TORCH_RUNNER_SOURCE, runner_source

    config = torch_runner_config(config)
    model_dir = add_model(repository, config, torchscript, version=version, labels=labels, filename="model.pt")
    write_file(model_dir / str(version) / "model.py", runner_source(TORCH_RUNNER_SOURCE))
    write_file(model_dir / str(version) / TORCH_GRAPHS_SOURCE, runner_source(TORCH_GRAPHS_SOURCE))
    return model_dir


def add_version(repository: str | Path, name: str, version: int, model_file: str | Path,
                filename: str | None = None) -> Path:
    """Copy a model file into NAME/<version>/ (the folder's name is the version number)."""
    model_file = Path(model_file)
    target = Path(repository) / name / str(version) / (filename or model_file.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_bytes() != model_file.read_bytes():
        shutil.copyfile(model_file, target)
    return target


def listing(repository: str | Path) -> str:
    """An `ls -lR`-like view of a repository: permissions, size, path."""
    repository = Path(repository)
    rows = []
    for path in sorted(repository.rglob("*")):
        if path.name.endswith(".bak") or "__pycache__" in path.parts:
            continue
        st = path.lstat()
        size = "" if path.is_dir() else f"{st.st_size:>10,}"
        rows.append(f"{stat.filemode(st.st_mode)} {size:>10}  {path.relative_to(repository)}")
    return "\n".join(rows)


def cuda_device_name() -> str | None:
    """The GPU the course serves on, or None (also when TRITON_COURSE_DEVICE=cpu): gpu.torch_device_name,
    named here for lesson 07."""
    return torch_device_name()
