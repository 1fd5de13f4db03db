"""Triton python-backend model: encoded image bytes (JPEG, PNG, ...) in, the course model's input out.

The same preprocessing as triton_course.photos.preprocess: short side to 256 (bicubic), centre crop
224, (pixel - 127) / 128, channels first. Each request gets its own answer: a request that is not an
image, is empty, is truncated or is too large gets an error that says so, and the others in the same
batch are served. Self-contained on purpose: it runs inside Triton's python stub.
"""

import io
import json

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image, UnidentifiedImageError

CROP = 224
SHORT_SIDE = 256
DEFAULT_MAX_PIXELS = 40_000_000  # a 50-megapixel photo is refused before it is decoded


def decode(data, max_pixels):
    """RGB PIL image from encoded bytes; ValueError with a reason a client can act on."""
    if len(data) == 0:
        raise ValueError("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ValueError(f"not an image: {len(data)} bytes in no format Pillow reads (JPEG, PNG, ...)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged header can raise several types
        raise ValueError(f"not an image Pillow can decode ({len(data)} bytes: {exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ValueError(f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels), more than the "
                         f"{max_pixels / 1e6:.0f} megapixels this model accepts (parameter max_pixels)")
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"the {image.format} image could not be decoded: {exc}") from None
    return image.convert("RGB")


def preprocess(image):
    width, height = image.size
    scale = SHORT_SIDE / min(width, height)
    image = image.resize((max(CROP, round(width * scale)), max(CROP, round(height * scale))), Image.BICUBIC)
    width, height = image.size
    left, top = (width - CROP) // 2, (height - CROP) // 2
    image = image.crop((left, top, left + CROP, top + CROP))
    array = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        params = config.get("parameters") or {}
        self.max_pixels = int((params.get("max_pixels") or {}).get("string_value") or DEFAULT_MAX_PIXELS)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                items = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy().reshape(-1)
                batch = np.stack([preprocess(decode(bytes(item), self.max_pixels)) for item in items])
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, batch)]))
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.name}: {exc}")))
        return responses
