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
