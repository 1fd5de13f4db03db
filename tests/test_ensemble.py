"""The JPEG-to-labels pipeline through a real Triton: preprocess, postprocess, the ensemble, BLS,
and every kind of bad input answered on its own while the server keeps serving."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from triton_course import InferenceError, artifact, ensemble, start_server
from triton_course.errors import suggest_fix
from triton_course.inference import infer_outputs, top_k
from triton_course.model_config import parse_config, to_text
from triton_course.photos import jpeg_bytes, photo, preprocess

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    ensemble.add_pipeline(repo, artifact.reference_config(), artifact.ensure_onnx(), top_k=3, max_pixels=10_000_000)
    with start_server(repo) as s:
        yield s


@pytest.fixture(scope="module")
def coffee_jpeg() -> bytes:
    return jpeg_bytes(photo("coffee"))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _huge_jpeg(width=4000, height=3000) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "gray").save(buffer, format="JPEG", quality=30)
    return buffer.getvalue()


BAD = {
    "empty": (lambda jpeg: b"", "the image is empty (0 bytes)"),
    "not an image": (lambda jpeg: b"GIF89 but not really", "not an image: 20 bytes in no format Pillow reads"),
    "truncated": (lambda jpeg: jpeg[: len(jpeg) // 2], "the JPEG image could not be decoded: image file is truncated"),
    "too many pixels": (lambda jpeg: _huge_jpeg(),
                        "the image is 4000x3000 (12 megapixels), more than the 10 megapixels"),
}


def test_configs_pass_the_schema():
    for config in (ensemble.preprocess_config(), ensemble.postprocess_config(), ensemble.ensemble_config(),
                   ensemble.bls_config()):
        assert parse_config(to_text(config)) == config
    steps = ensemble.ensemble_config().ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["preprocess", "efficientnet_lite0", "postprocess"]
    assert steps[0].output_map["input"] == steps[1].input_map["input"] == "pixels"
    assert steps[1].output_map["logits"] == steps[2].input_map["logits"] == "logits"


def test_preprocess_model_matches_the_course_preprocessing(srv, coffee_jpeg):
    served = infer_outputs(srv.http_url, {"image": ensemble.image_batch([coffee_jpeg, _png(photo("flower"))])},
                           ["input"], model=ensemble.PREPROCESS)["input"]
    np.testing.assert_allclose(served[0], preprocess(coffee_jpeg), atol=1e-6)
    np.testing.assert_allclose(served[1], preprocess(photo("flower")), atol=1e-6)


def test_postprocess_model_returns_sorted_top_k(srv):
    logits = np.random.default_rng(0).normal(size=(2, 1000)).astype(np.float32)
    out = infer_outputs(srv.http_url, {"logits": logits}, ["labels", "scores"], model=ensemble.POSTPROCESS)
    assert out["labels"].shape == out["scores"].shape == (2, 3)
    for row, labels, scores in zip(logits, out["labels"], out["scores"]):
        expected = top_k(row, 3)
        assert [label.decode() for label in labels] == [label for label, _ in expected]
        np.testing.assert_allclose(scores, [p for _, p in expected], rtol=1e-5)
        assert list(scores) == sorted(scores, reverse=True)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_jpeg_in_labels_out(srv, coffee_jpeg, protocol):
    url = srv.http_url if protocol == "http" else srv.grpc_address
    [coffee, flower] = ensemble.classify_bytes(url, [coffee_jpeg, _png(photo("flower"))], protocol=protocol)
    assert len(coffee) == 3 and coffee[0][0] == "espresso" and coffee[0][1] > 0.9
    assert flower[0][0] == "daisy"


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gets_its_own_clear_error(srv, coffee_jpeg, case):
    make, expected = BAD[case]
    with pytest.raises(InferenceError) as caught:
        ensemble.classify_bytes(srv.http_url, [make(coffee_jpeg)])
    assert "in ensemble 'classify_image', preprocess: " in caught.value.triton_said
    assert expected in caught.value.triton_said
    assert "refused on its own" in caught.value.fix
    # and the server goes on serving
    assert ensemble.classify_bytes(srv.http_url, [coffee_jpeg])[0][0][0] == "espresso"


def test_good_and_bad_requests_at_once(srv, coffee_jpeg):
    sent = {f"good{i}": coffee_jpeg for i in range(4)} | {name: make(coffee_jpeg) for name, (make, _) in BAD.items()}
    answers = {}

    def send(name, data):
        try:
            answers[name] = ensemble.classify_bytes(srv.http_url, [data])[0][0][0]
        except InferenceError as exc:
            answers[name] = exc.triton_said

    threads = [threading.Thread(target=send, args=item) for item in sent.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(answers[f"good{i}"] == "espresso" for i in range(4))
    assert all(BAD[name][1] in answers[name] for name in BAD)


def test_bls_calls_the_models_and_applies_its_threshold(srv, coffee_jpeg):
    def ask(data):
        out = infer_outputs(srv.http_url, {"image": ensemble.image_batch([data])}, ["label", "score"],
                            model=ensemble.BLS)
        return out["label"][0][0].decode(), float(out["score"][0][0])

    assert ask(coffee_jpeg)[0] == "espresso"
    label, score = ask(jpeg_bytes(photo("china")))
    assert label == "unsure" and score < 0.5
    with pytest.raises(InferenceError, match="the image is empty"):
        ask(b"")


def test_the_fix_for_bad_images():
    assert "JPEG or PNG" in suggest_fix("in ensemble 'classify_image', preprocess: the image is empty (0 bytes)")
