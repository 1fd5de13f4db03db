"""Lab 01's checks: the interface read from ONNX files, and hand-written preprocessing judged by the real model."""

import numpy as np
import onnx
import pytest
from PIL import Image

import triton_course
from triton_course import artifact, photos
from triton_course.checks import lab01


def interface(path, symbolic=True, type_names=True, outputs=True):
    model = onnx.load(str(path))
    result = {}
    for value in [*model.graph.input, *(model.graph.output if outputs else [])]:
        t = value.type.tensor_type
        dims = [d.dim_param if symbolic and d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
        result[value.name] = (onnx.TensorProto.DataType.Name(t.elem_type) if type_names else t.elem_type, dims)
    return result


def test_right_interface_passes():
    verdict = lab01.check_interface(interface)
    assert verdict.ok, verdict
    assert "input FLOAT ['batch', 3, 224, 224]" in repr(verdict)


@pytest.mark.parametrize("answer, expected", [
    (lambda p: interface(p, symbolic=False), ["'input' has dims [0, 3, 224, 224]; the model says ['batch', 3, 224",
                                              "use d.dim_param"]),
    (lambda p: interface(p, type_names=False), ["'input' has element type 1; ONNX calls it 'FLOAT'",
                                                "onnx.TensorProto.DataType.Name"]),
    (lambda p: interface(p, outputs=False), ["the tensors ['logits'] are missing", "model.graph.output"]),
    (lambda p: {"input": ("FLOAT", ["batch", 3, 224, 224]), "logits": ("FLOAT", ["batch", 1000])},
     ["on a second model (uint8 pixels -> scores) the tensors ['pixels', 'scores'] are missing",
      "['input', 'logits'] are not tensors of the model"]),
    (lambda p: [("input", "FLOAT")], ["returned list, not a dict"]),
    (lambda p: onnx.load(p).graph.input, ["returned RepeatedCompositeContainer, not a dict"]),
], ids=["symbolic_as_zero", "type_numbers", "inputs_only", "typed_in", "list", "raw_proto"])
def test_interface_mistakes_get_their_message(answer, expected):
    verdict = lab01.check_interface(answer)
    assert not verdict.ok
    for part in expected:
        assert part in repr(verdict)


@pytest.fixture(scope="module")
def server(reference_repo):
    with triton_course.server(reference_repo) as running:
        yield running


def handmade(image, *, resample=Image.BICUBIC, squash=False, divide=False, transpose=True, dtype=np.float32,
             bgr=False, corner=False):
    image = image.convert("RGB")
    if squash:
        image = image.resize((224, 224), resample)
    else:
        width, height = image.size
        scale = 256 / min(width, height)
        image = image.resize((round(width * scale), round(height * scale)), resample)
        width, height = image.size
        left, top = (0, 0) if corner else ((width - 224) // 2, (height - 224) // 2)
        image = image.crop((left, top, left + 224, top + 224))
    array = np.asarray(image, dtype=np.float64)
    array = array / 255 if divide else (array - 127) / 128
    array = array.transpose(2, 0, 1) if transpose else array
    array = array[::-1] if bgr else array
    return np.ascontiguousarray(array).astype(dtype)


@pytest.mark.server
def test_right_preprocess_passes(server):
    verdict = lab01.check_preprocess(handmade, server)
    assert verdict.ok, verdict
    assert "coffee: espresso" in repr(verdict)


@pytest.mark.server
@pytest.mark.parametrize("answer, expected", [
    (lambda im: handmade(im, divide=True), ["values lie between 0 and 1", "(x - 127) / 128"]),
    (lambda im: handmade(im, transpose=False), ["the shape is (224, 224, 3)", "x.transpose(2, 0, 1)"]),
    (lambda im: handmade(im, dtype=np.float64), ["the dtype is float64", ".astype(np.float32)"]),
    (lambda im: handmade(im)[None], ["the shape is (1, 3, 224, 224)"]),
    (lambda im: np.asarray(im.convert("RGB").resize((224, 224))).transpose(2, 0, 1).astype(np.float32),
     ["the values go up to 255: the pixels are not scaled"]),
    (lambda im: handmade(im, squash=True),
     ["it looks like the photo squashed straight to 224x224", "the model's top-1"]),
    (lambda im: handmade(im, corner=True), ["it looks like a crop from the top-left corner"]),
    (lambda im: handmade(im, resample=Image.BILINEAR), ["it looks like bilinear resizing instead of bicubic"]),
    (lambda im: handmade(im, bgr=True), ["it looks like the colour channels in BGR order",
                                         "the model's top-1 changed for"]),
    (lambda im: np.ascontiguousarray(handmade(im).transpose(1, 2, 0)).reshape(3, 224, 224),
     ["it looks like the photo reshaped to 3x224x224 without moving the colour axis first",
      "the model's top-1 changed for coffee: window screen (should be espresso)"]),
    (lambda im: photos.preprocess(im).tolist(), ["returned list, not a NumPy array"]),
], ids=["divided_by_255", "channels_last", "float64", "batch_axis", "not_scaled", "squashed", "corner_crop",
        "bilinear", "bgr", "reshaped_not_transposed", "list"])
def test_preprocess_mistakes_get_their_message(server, answer, expected):
    verdict = lab01.check_preprocess(answer, server)
    assert not verdict.ok
    for part in expected:
        assert part in repr(verdict)


def test_second_model_is_a_real_model(tmp_path):
    import onnxruntime as ort

    path = lab01._second_model(tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"pixels": np.zeros((2, 224, 224, 3), dtype=np.uint8)})[0]
    assert scores.shape == (2, 10)
    assert artifact.ensure_onnx().exists()
