"""Build the course's reference repository: models/efficientnet_lite0/{config.pbtxt, labels.txt, 1/model.onnx}."""

from __future__ import annotations

from pathlib import Path

from .artifact import ensure_onnx, labels, reference_config
from .paths import MODEL_NAME, models_dir
from .repository import write_config, write_file


def prepare(repository: str | Path | None = None, force: bool = False) -> Path:
    """Export model.onnx if missing (or with force), and write labels and config (backing up edits)."""
    repository = Path(repository or models_dir())
    model_dir = repository / MODEL_NAME
    ensure_onnx(repository, force=force)
    write_file(model_dir / "labels.txt", "\n".join(labels()) + "\n")
    write_config(model_dir, reference_config())
    return repository
