"""Lab 12's checks: Flask views driven with the test client against a real Triton serving the lesson 9 pipeline
(and with the model unloaded, nothing listening, a port that never answers); the usual mistakes get their own
message."""

from __future__ import annotations

import pytest
import requests
from flask import current_app, jsonify, request

from triton_course import InferenceError, ServerStartError, artifact, ensemble, start_server
from triton_course.checks import lab12

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab12") / "repo"
    ensemble.add_pipeline(repo, artifact.reference_config(), artifact.ensure_onnx())
    with start_server(repo, model_control_mode="explicit", load_models=[ensemble.ENSEMBLE]) as s:
        yield s


def make_healthz(*, model_ready=True, timeout=2.0, catch=True):
    def healthz():
        url, model = current_app.config["TRITON_URL"], current_app.config["MODEL"]
        path = f"/v2/models/{model}/ready" if model_ready else "/v2/health/ready"
        try:
            with requests.get(f"{url}{path}", timeout=timeout) as answer:
                ready = answer.status_code == 200
        except requests.RequestException:
            if not catch:
                raise
            ready = False
        return jsonify({"ready": ready}), 200 if ready else 503
    return healthz


def test_healthz_passes(server):
    verdict = lab12.check_healthz(make_healthz(), server)
    assert verdict.ok, verdict


def test_healthz_that_asks_the_server_not_the_model(server):
    verdict = lab12.check_healthz(make_healthz(model_ready=False), server)
    assert not verdict.ok
    assert verdict.problems[0] == "Triton up, 'classify_image' unloaded: status 200, expected 503."
    assert "A live server is not a ready model" in verdict.hint


def test_healthz_without_a_catch_or_a_timeout(server):
    verdict = lab12.check_healthz(make_healthz(catch=False), server)
    assert not verdict.ok
    assert "Triton down (nothing listens at the URL): your view raised ConnectionError" in verdict.problems[0]
    assert "Catch the client's exceptions" in verdict.hint
    verdict = lab12.check_healthz(make_healthz(timeout=10), server)
    assert not verdict.ok
    assert "Triton hangs (accepts the connection, never answers): your view did not answer within 8 s." \
        in verdict.problems
    assert "Give every call to Triton a timeout" in verdict.hint


def test_healthz_that_answers_text(server):
    verdict = lab12.check_healthz(lambda: "ok", server)
    assert not verdict.ok
    assert "Triton up, model ready: your view answered 200 with text/html; charset=utf-8, not a JSON object." \
        in verdict.problems


def make_classify(*, strictly_less=False, too_large_status=413, catch=True, name_limit=True):
    def classify():
        data, limit = request.get_data(), current_app.config["MAX_UPLOAD_BYTES"]
        if not data:
            return jsonify({"error": "The upload is empty."}), 400
        if (len(data) >= limit) if strictly_less else (len(data) > limit):
            message = f"The file is {len(data)} bytes; the limit is {limit} bytes." if name_limit else "Too large."
            return jsonify({"error": message}), too_large_status
        try:
            top = ensemble.classify_bytes(current_app.config["TRITON_URL"], [data],
                                          model=current_app.config["MODEL"], timeout=5)[0]
        except InferenceError as exc:
            if not catch:
                raise
            return jsonify({"error": exc.triton_said}), 400
        except ServerStartError:
            if not catch:
                raise
            return jsonify({"error": "Triton does not answer."}), 503
        return jsonify({"labels": [{"label": label, "score": score} for label, score in top]}), 200
    return classify


def test_classify_passes(server):
    verdict = lab12.check_classify(make_classify(), server)
    assert verdict.ok, verdict
    assert "'espresso' for the coffee photo" in repr(verdict)


@pytest.mark.parametrize("options, message", [
    (dict(strictly_less=True), "a photo of exactly 200000 bytes: status 413, expected 200"),
    (dict(too_large_status=400), "200001 bytes: status 400, expected 413 (Payload Too Large)."),
    (dict(name_limit=False), "200001 bytes: the error 'Too large.' does not say the limit (200000 bytes)."),
    (dict(catch=False), "a text file: your view raised InferenceError"),
])
def test_classify_mistakes(server, options, message):
    verdict = lab12.check_classify(make_classify(**options), server)
    assert not verdict.ok
    assert any(p.startswith(message) for p in verdict.problems), verdict


def test_classify_without_a_catch_names_both_exceptions(server):
    verdict = lab12.check_classify(make_classify(catch=False), server)
    assert "Triton down: your view raised ServerStartError" in " ".join(verdict.problems)
    assert "answer 400 with its triton_said" in verdict.hint and "answer 503" in verdict.hint


def test_classify_with_labels_in_another_shape(server):
    def tuples():
        top = ensemble.classify_bytes(current_app.config["TRITON_URL"], [request.get_data()])[0]
        return jsonify({"labels": top}), 200

    verdict = lab12.check_classify(tuples, server)
    assert verdict.problems[0].startswith("the coffee photo: 'labels' is [['espresso'")
