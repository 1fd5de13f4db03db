"""The uint8 variant of the course model: the image as decoded (uint8 [224, 224, 3]), normalised inside the
network. Served beside the FP32 model by a real Triton, it answers the same for every course photo with a
quarter of the bytes per request."""

import numpy as np
import pytest

from triton_course import artifact, gpu, repository, start_server
from triton_course.errors import InferenceError
from triton_course.inference import infer, request_bytes
from triton_course.photos import PHOTOS, photo, pixels, preprocess
from triton_course.runtimes import stand_in


@pytest.fixture(scope="module")
def both_models(reference_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("pixels") / "repo"
    repository.add_model(repo, artifact.reference_config(), artifact.onnx_path(reference_repo),
                         labels=artifact.labels())
    repository.add_model(repo, artifact.reference_config(pixels=True), artifact.ensure_onnx(pixels=True),
                         labels=artifact.labels())
    with start_server(repo) as server:
        yield server


def test_the_pixels_model_answers_as_the_fp32_model_for_every_photo(both_models):
    floats = np.stack([preprocess(photo(name)) for name in PHOTOS])
    raw = np.stack([pixels(photo(name)) for name in PHOTOS])
    assert raw.dtype == np.uint8 and raw.shape == (len(PHOTOS), 224, 224, 3)
    expected = infer(both_models.http_url, floats)
    got = infer(both_models.http_url, raw, model=artifact.PIXELS_MODEL_NAME, input_name=artifact.PIXELS_INPUT_NAME)
    assert np.abs(got - expected).max() < 1e-3
    assert [list(np.argsort(-row)[:5]) for row in got] == [list(np.argsort(-row)[:5]) for row in expected]


def test_a_request_carries_a_quarter_of_the_bytes(both_models):
    one_float = request_bytes(preprocess(photo("coffee"))[None])
    one_pixels = request_bytes(pixels(photo("coffee"))[None], input_name=artifact.PIXELS_INPUT_NAME)
    assert one_float > 3 * 224 * 224 * 4 and one_pixels > 3 * 224 * 224
    assert 3.9 < one_float / one_pixels < 4.0  # the JSON header is the same few hundred bytes in both


def test_floats_sent_to_the_pixels_model_are_refused_by_triton_with_the_type_it_expects(both_models):
    with pytest.raises(InferenceError) as caught:
        infer(both_models.http_url, np.zeros((1, 224, 224, 3), np.float32), model=artifact.PIXELS_MODEL_NAME,
              input_name=artifact.PIXELS_INPUT_NAME)
    message = str(caught.value)
    assert "UINT8" in message and "FP32" in message, message


def test_the_served_copy_finds_the_pixels_models_torchscript_for_the_gpu(tmp_path, reference_repo, monkeypatch):
    monkeypatch.setattr(gpu, "torch_device_name", lambda: "Test GPU")
    artifact.ensure_torchscript(pixels=True)
    config = artifact.reference_config(pixels=True)
    repository.add_model(tmp_path / "repo", config, artifact.ensure_onnx(pixels=True))
    served, notes = stand_in.served_copy(tmp_path / "repo", ["python"], tmp_path / "served")
    model_pt = served / artifact.PIXELS_MODEL_NAME / "1" / "model.pt"
    assert model_pt.resolve() == artifact.torchscript_path(pixels=True).resolve(), notes
