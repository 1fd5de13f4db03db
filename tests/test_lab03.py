"""Lab 03's checks: a config loaded on a real server, a client compared with the model's answers."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import triton_course
from triton_course import artifact, inference, photos, repository
from triton_course.checks import lab03

pytestmark = pytest.mark.server

RIGHT_CONFIG = """
name: "lab03_classifier"
platform: "onnxruntime_onnx"
max_batch_size: 4
input { name: "input" data_type: TYPE_FP32 dims: [3, 224, 224] }
output { name: "logits" data_type: TYPE_FP32 dims: [1000] label_filename: "labels.txt" }
"""


@pytest.fixture(scope="module")
def server(reference_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab03") / "model_repository"
    repository.add_model(repo, artifact.reference_config(), artifact.ensure_onnx(), labels=artifact.labels())
    with triton_course.server(repo, model_control_mode="explicit", load_models=["efficientnet_lite0"]) as running:
        yield running


def test_right_config_passes(server):
    verdict = lab03.check_config(RIGHT_CONFIG, server)
    assert verdict.ok, verdict
    assert "espresso" in repr(verdict)


# On the embedded server the course's runner, standing in for the onnxruntime backend, refuses these: the check
# says so rather than "Triton said:".
RUNNER_SAID = "The course's ONNX runner (standing in for the onnxruntime backend) said:"


@pytest.mark.parametrize("old, new, expected", [
    ("dims: [3, 224, 224]", "dims: [-1, 3, 224, 224]",
     ["input 'input' has dims [-1, 3, 224, 224]: with max_batch_size > 0 Triton adds the batch dimension",
      RUNNER_SAID, "expects 4 dimensions"]),
    ('name: "input"', 'name: "image"',
     ["input 'image' is not a tensor of the model: its input is called 'input'", RUNNER_SAID, "image"]),
    ("TYPE_FP32 dims: [3", "TYPE_FLOAT32 dims: [3",
     ["does not parse", "has no value named TYPE_FLOAT32", "TYPE_FP32 for float32 tensors"]),
    ("TYPE_FP32 dims: [3", "TYPE_FP16 dims: [3",
     ["data_type TYPE_FP16; the model's tensor is float32, which Triton calls TYPE_FP32", RUNNER_SAID]),
    ("max_batch_size: 4", "max_batch_size: 8",
     ["max_batch_size is 8; the exercise asks for batches of up to 4",
      "Triton loaded it, but it is not the config the exercise asks for"]),
    ("max_batch_size: 4", "max_batch_size: 0", ["max_batch_size is 0", RUNNER_SAID]),
    ("max_batch_size: 4", "max_batch_size 4", ["does not parse", "Expected \":\""]),
    ('name: "lab03_classifier"', 'name: "classifier"',
     ["name is 'classifier', but the model's folder (and so its name) is 'lab03_classifier'",
      "directory name must equal model name"]),
    (' label_filename: "labels.txt"', "", ["output 'logits' has label_filename ''"]),
    ('platform: "onnxruntime_onnx"', 'platform: "onnx"', ["platform 'onnx': the ONNX file is served by platform"]),
], ids=["batch_in_dims", "wrong_input_name", "numpy_datatype_name", "wrong_datatype", "wrong_batch_size",
        "no_batching", "missing_colon", "name_not_folder", "no_labels", "wrong_platform"])
def test_config_mistakes_get_their_message(server, old, new, expected):
    assert old in RIGHT_CONFIG
    verdict = lab03.check_config(RIGHT_CONFIG.replace(old, new), server)
    assert not verdict.ok
    text = repr(verdict)
    for part in expected:
        assert part in text


def _http_request(x, name="input", datatype="FP32"):
    request = httpclient.InferInput(name, list(x.shape), datatype)
    request.set_data_from_numpy(x)
    return request


def make_top5(prepare=lambda image: photos.preprocess(image)[np.newaxis], name="input", datatype="FP32",
              finish=lambda logits: inference.top_k(logits[0], k=5)):
    def top5(address, image):
        client = httpclient.InferenceServerClient(address)
        try:
            result = client.infer("efficientnet_lite0", [_http_request(prepare(image), name, datatype)])
        finally:
            client.close()
        return finish(result.as_numpy("logits"))
    return top5


def test_right_client_passes(server):
    verdict = lab03.check_top5(make_top5(), server)
    assert verdict.ok, verdict


def _logits_top5(logits):
    order = np.argsort(-logits[0])[:5]
    labels = artifact.labels()
    return [(labels[i], float(logits[0][i])) for i in order]


def _softmax_over_five(logits):
    best = inference.top_k(logits[0], k=5)
    five = np.exp(np.sort(logits[0])[::-1][:5] - logits[0].max())
    return [(label, float(p)) for (label, _), p in zip(best, five / five.sum())]


@pytest.mark.parametrize("top5, expected", [
    (make_top5(prepare=lambda image: photos.preprocess(image)),
     ["raised InferenceServerException", "Triton said:", "unexpected shape for input 'input'", "Send the shape"]),
    (make_top5(name="image"), ["Triton said: unexpected inference input 'image'", "is not a tensor of this model"]),
    (make_top5(prepare=lambda image: photos.preprocess(image)[np.newaxis].astype(np.float64), datatype="FP64"),
     ["Triton said:", "FP64", "Send float32 data and declare it \"FP32\""]),
    (make_top5(prepare=lambda image: photos.preprocess(image)[np.newaxis].astype(np.float64)),
     ["tritonclient refused it before sending: got unexpected datatype FP64", "Send float32 data"]),
    (make_top5(prepare=lambda image: (photos.preprocess(image)[np.newaxis] * 128 + 127) / 255),
     ["for 'coffee' its top 5 is espresso", "(the model's top 5: espresso, cup", "Triton does not preprocess"]),
    (make_top5(finish=_logits_top5), ["are not probabilities: those are the raw logits"]),
    (make_top5(finish=lambda logits: inference.top_k(logits[0], k=1)), ["returned 1 pairs, not 5"]),
    (make_top5(finish=lambda logits: inference.top_k(logits[0], k=5)[::-1]), ["the most likely class comes last"]),
    (make_top5(finish=lambda logits: [(int(i), 0.1) for i in np.argsort(-logits[0])[:5]]), ["not class names"]),
    (make_top5(finish=lambda logits: logits), ["not a list of (label, probability) pairs"]),
    (make_top5(finish=_softmax_over_five), ["differ from the model's", "over all 1000 logits"]),
], ids=["no_batch_axis", "wrong_input_name", "fp64_declared", "float64_data", "scaled_by_255", "logits",
        "top1_only", "reversed", "indices", "raw_array", "softmax_over_five"])
def test_client_mistakes_get_their_message(server, top5, expected):
    verdict = lab03.check_top5(top5, server)
    assert not verdict.ok
    text = repr(verdict)
    for part in expected:
        assert part in text


def test_grpc_client_right_and_wrong(server):
    def top5_grpc(address, image, batch_axis=True):
        x = photos.preprocess(image)
        x = x[np.newaxis] if batch_axis else x
        request = grpcclient.InferInput("input", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        client = grpcclient.InferenceServerClient(address)
        try:
            return inference.top_k(client.infer("efficientnet_lite0", [request]).as_numpy("logits")[0], k=5)
        finally:
            client.close()

    verdict = lab03.check_top5(top5_grpc, server, protocol="grpc")
    assert verdict.ok, verdict
    assert "gRPC" in repr(verdict)
    verdict = lab03.check_top5(lambda a, i: top5_grpc(a, i, batch_axis=False), server, protocol="grpc")
    assert not verdict.ok and "unexpected shape for input 'input'" in repr(verdict)
