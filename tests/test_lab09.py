"""Lab 09 checks: the ensemble config loaded next to its steps on a real server, and a client for it."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient

import triton_course
from triton_course import ensemble, model_config
from triton_course.checks import lab09

RIGHT = model_config.to_text(ensemble.ensemble_config(top_k=5)).replace('"classify_image"', '"jpeg_to_labels"')


@pytest.fixture(scope="module")
def server(reference_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab09") / "model_repository"
    steps = lab09.step_models(repo)
    (repo / lab09.MODEL / "1").mkdir(parents=True)
    with triton_course.start_server(repo, model_control_mode="explicit", load_models=steps) as s:
        yield s


def test_right_ensemble_passes(server):
    verdict = lab09.check_ensemble_config(server, RIGHT)
    assert verdict.ok, verdict
    assert "coffee -> espresso" in verdict.confirmation


PIXELS_OUT = 'key: "input"\n      value: "pixels"\n    }\n  }\n  step {\n    model_name: "efficientnet_lite0"'
LOGITS_OUT = 'key: "logits"\n      value: "logits"\n    }\n  }\n  step {\n    model_name: "postprocess"'
PIXELS_IN = 'input_map {\n      key: "input"\n      value: "pixels"'


@pytest.mark.parametrize("old, new, said, hint", [
    (PIXELS_OUT, PIXELS_OUT.replace('key: "input"', 'key: "pixels"', 1),
     "ensemble tensor pixels is mapped from non-existing output pixels in model preprocess",
     "one of that step model's own output names"),
    (PIXELS_IN, PIXELS_IN.replace('key: "input"', 'key: "image"'), "", "one of that step model's own input names"),
    (LOGITS_OUT, LOGITS_OUT.replace('value: "logits"', 'value: "scores_raw"'),
     "is not connected", "Each value in an input_map"),
    ('    output_map {\n      key: "scores"\n      value: "scores"\n    }\n', "",
     "ensemble output 'scores'", "Every ensemble output must be written"),
    ('model_name: "postprocess"', 'model_name: "postprocessing"',
     "contains models that are not available or ambiguous: postprocessing", "preprocess, efficientnet_lite0"),
    ("max_batch_size: 8", "max_batch_size: 16", "only allows maximum batch size to be 8", "use 8"),
    ('data_type: TYPE_STRING\n  dims: [1]', 'data_type: TYPE_UINT8\n  dims: [1]', "inconsistent data type",
     "image TYPE_STRING"),
    ('value: "pixels"\n    }\n  }\n  step', 'value "pixels"\n    }\n  }\n  step', "failed to read text proto",
     "line:column"),
])
def test_ensemble_mistakes_quote_triton(server, old, new, said, hint):
    assert old in RIGHT
    verdict = lab09.check_ensemble_config(server, RIGHT.replace(old, new, 1))
    assert not verdict.ok
    assert said in verdict.triton_said, verdict.triton_said
    assert hint in verdict.hint, verdict


def test_not_an_ensemble(server):
    verdict = lab09.check_ensemble_config(server, RIGHT.replace('platform: "ensemble"', 'backend: "python"'))
    assert not verdict.ok


def test_missing_version_folder(server):
    (server.repository / lab09.MODEL / "1").rmdir()
    try:
        verdict = lab09.check_ensemble_config(server, RIGHT)
        assert "at least one version must be available" in verdict.triton_said
        assert "jpeg_to_labels/1/" in verdict.hint
    finally:
        (server.repository / lab09.MODEL / "1").mkdir()


def right_client(url, jpegs, shape=None, decode=True, first=True):
    client = httpclient.InferenceServerClient(url.split("://")[-1])
    try:
        data = np.array([[j] for j in jpegs], dtype=np.object_)
        if shape:
            data = data.reshape(shape)
        tensor = httpclient.InferInput("image", list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        result = client.infer("jpeg_to_labels", [tensor], outputs=[httpclient.InferRequestedOutput("labels")])
        rows = result.as_numpy("labels")
    finally:
        client.close()
    rows = [[label.decode() if decode else label for label in row] for row in rows]
    return [row[0] for row in rows] if first else rows


def test_client(server):
    assert lab09.check_ensemble_config(server, RIGHT).ok
    verdict = lab09.check_client(server, right_client)
    assert verdict.ok, verdict
    verdict = lab09.check_client(server, lambda url, jpegs: right_client(url, jpegs, shape=(len(jpegs),)))
    assert "unexpected shape" in verdict.triton_said and "[N, 1]" in verdict.hint
    assert ".decode() them" in str(lab09.check_client(server, lambda u, j: right_client(u, j, decode=False)))
    assert "only the most likely" in str(lab09.check_client(server, lambda u, j: right_client(u, j, first=False)))
    assert "differ from the ensemble's" in str(lab09.check_client(server, lambda u, j: right_client(u, j)[::-1]))
    assert "one label per file" in str(lab09.check_client(server, lambda u, j: right_client(u, j[:1])))


RIGHT_MODEL_PY = '''
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        with open(os.path.join(args["model_repository"], "labels.txt"), encoding="utf-8") as handle:
            self.labels = [line.rstrip("\\n") for line in handle]

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()
            if not np.isfinite(logits).all():
                error = pb_utils.TritonError("logits must be finite numbers, got NaN or infinity")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            label = np.array([[self.labels[i]] for i in logits.argmax(axis=1)], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("label", label)]))
        return responses
'''
IF_NAN = "            if not np.isfinite(logits).all():\n"
REFUSAL = '''            if not np.isfinite(logits).all():
                error = pb_utils.TritonError("logits must be finite numbers, got NaN or infinity")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
'''


@pytest.mark.server
def test_right_python_model_passes(server):
    verdict = lab09.check_python_model(server, RIGHT_MODEL_PY)
    assert verdict.ok, verdict
    assert "two rows of logits gave ['espresso', 'daisy']" in verdict.confirmation, verdict.confirmation


@pytest.mark.server
@pytest.mark.parametrize("old, new, message", [
    ('pb_utils.Tensor("label", label)', 'pb_utils.Tensor("labels", label)', "The response has no output 'label'"),
    ('"labels.txt"', '"label.txt"', "Triton refused to load 'top_label' with your model.py"),
    (REFUSAL, "", "A request whose logits hold NaN got an answer."),
    (REFUSAL, IF_NAN + '                raise ValueError("logits must be finite numbers")\n',
     "A good request that arrived with the NaN one was refused too"),
    (REFUSAL, IF_NAN + "                continue\n", "returned fewer responses than it got requests"),
    ("        return responses", "        return responses[:1]", "returned fewer responses than it got requests"),
    ("class TritonPythonModel:", "class Model:", "with a class named TritonPythonModel"),
    ("    def execute(self, requests):", "    def execute(self, requests)", "model.py is not valid Python: line"),
], ids=["output_name", "initialize_fails", "no_refusal", "raises", "no_response", "short_list", "class", "syntax"])
def test_python_model_mistakes_are_named(server, old, new, message):
    assert old in RIGHT_MODEL_PY
    verdict = lab09.check_python_model(server, RIGHT_MODEL_PY.replace(old, new))
    assert not verdict.ok and message in repr(verdict), repr(verdict)
