"""The model artifact and the preprocessing, checked with onnxruntime (no server needed)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from triton_course import artifact
from triton_course.inference import top_k
from triton_course.photos import PHOTOS, batch, open_image, photo, preprocess


def test_onnx_export_has_the_promised_interface(reference_repo):
    model = onnx.load(str(artifact.onnx_path(reference_repo)))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == artifact.OPSET
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 224, 224]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 1000]


def test_photos_get_their_expected_classes(reference_repo):
    session = ort.InferenceSession(str(artifact.onnx_path(reference_repo)), providers=["CPUExecutionProvider"])
    names = list(PHOTOS)
    logits = session.run(["logits"], {"input": batch(photo(n) for n in names)})[0]
    top = {name: top_k(row, 3) for name, row in zip(names, logits)}
    assert top["coffee"][0][0] == "espresso" and top["coffee"][0][1] > 0.9
    assert top["flower"][0][0] == "daisy"
    assert top["china"][0][0] == "palace"
    assert top["rocket"][0][0] == "missile"
    assert top["chelsea"][0][0] in ("tiger cat", "Egyptian cat", "tabby, tabby cat")


def test_preprocess_shape_and_range():
    x = preprocess(photo("rocket"))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_labels_are_imagenet_in_order():
    labels = artifact.labels()
    assert len(labels) == 1000 and labels[0].startswith("tench") and labels[967] == "espresso"


def test_undecodable_bytes_are_a_clear_error():
    with pytest.raises(ValueError, match="not an image Pillow can decode"):
        open_image(b"\xff\xd8\xff\xe0 truncated")
