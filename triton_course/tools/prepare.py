"""Build the course's reference repository (models/efficientnet_lite0/{config.pbtxt, labels.txt,
1/model.onnx, 1/model.pt}) and put perf_analyzer into the course's environment."""

from __future__ import annotations

from pathlib import Path

from ..artifact import ensure_onnx, ensure_torchscript, labels, reference_config
from ..paths import MODEL_NAME, models_dir
from ..repository import write_config, write_file


def prepare(repository: str | Path | None = None, force: bool = False) -> Path:
    """Export model.onnx and model.pt (TorchScript, which the embedded server runs on a GPU) if missing
    (or with force), and write labels and config (backing up edits)."""
    repository = Path(repository or models_dir())
    model_dir = repository / MODEL_NAME
    ensure_onnx(repository, force=force)
    ensure_torchscript(repository, force=force)
    if repository == models_dir():  # the uint8 variant (lessons 07 and 09), built into the course's cache
        ensure_onnx(force=force, pixels=True)
        ensure_torchscript(force=force, pixels=True)
    write_file(model_dir / "labels.txt", "\n".join(labels()) + "\n")
    write_config(model_dir, reference_config())
    return repository
