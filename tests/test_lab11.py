"""Lab 11's checks against a real server serving two models (and a real Prometheus where one is installed):
the right answers pass, the usual mistakes get their own message."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from triton_course import artifact, monitoring, start_server
from triton_course.checks import lab11
from triton_course.model_config import copy_config
from triton_course.repository import add_model

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab11") / "repo"
    for name in (lab11.MODEL, lab11.OTHER):
        add_model(repo, copy_config(artifact.reference_config(), name), artifact.ensure_onnx(),
                  labels=artifact.labels())
    with start_server(repo) as s:
        yield s


def counter(text, metric, model=None):
    """Sum of a counter's samples (optionally for one model), the way the lab asks for it."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == f"{metric}_total" and (model is None or s.labels.get("model") == model))


def test_successful_requests(server):
    assert lab11.check_successful_requests(lambda text, model: counter(text, "nv_inference_request_success", model),
                                           server).ok


@pytest.mark.parametrize("wrong, message", [
    (lambda text, model: sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                             if s.name == "nv_inference_request_success" and s.labels.get("model") == model),
     "NAME_total"),
    (lambda text, model: counter(text, "nv_inference_request_success"), "the sum over every model"),
    (lambda text, model: counter(text, "nv_inference_count", model), "is nv_inference_count, the number of inferences"),
    (lambda text, model: counter(text, "nv_inference_request_failure", model), "stayed at 0"),
    (lambda text, model: counter(text, "nv_inference_request_success", "efficientnet_lite0"),
     "for 'efficientnet_copy'"),
    (lambda text, model: "many", "should return a number"),
])
def test_successful_requests_mistakes(server, wrong, message):
    verdict = lab11.check_successful_requests(wrong, server)
    assert not verdict.ok
    assert message in " ".join(verdict.problems), verdict


def queue_ms(before, after, model, *, metric_model=True, delta=True, ms=True, per="nv_inference_request_success"):
    def read(text, metric):
        return counter(text, metric, model if metric_model else None)

    metric = "nv_inference_queue_duration_us"
    queue = read(after, metric) - (read(before, metric) if delta else 0)
    count = read(after, per) - (read(before, per) if delta else 0)
    return queue / count / (1000 if ms else 1)


def test_average_queue_ms(server):
    verdict = lab11.check_average_queue_ms(queue_ms, server)
    assert verdict.ok, verdict


@pytest.mark.parametrize("options, message", [
    (dict(delta=False), "the average since the server started"),
    (dict(ms=False), "That is in microseconds"),
    (dict(per="nv_inference_count"), "divides by nv_inference_count"),
    (dict(metric_model=False), "mixes every model"),
])
def test_average_queue_ms_mistakes(server, options, message):
    verdict = lab11.check_average_queue_ms(lambda b, a, m: queue_ms(b, a, m, **options), server)
    assert not verdict.ok
    assert message in " ".join(verdict.problems[1:]), verdict


needs_prometheus = pytest.mark.skipif(monitoring.unavailable_reason() is not None,
                                      reason=str(monitoring.unavailable_reason()))


@pytest.fixture(scope="module")
def known_load(server):
    """One known load, seen by one real Prometheus, for every mistaken query (the check sends it for each call)."""
    with lab11.known_request_rates(server) as load:
        yield load


@needs_prometheus
def test_promql_rate(server):
    verdict = lab11.check_request_rate_promql('sum(rate(nv_inference_request_success{model="efficientnet_lite0"}[5s]))',
                                              server)
    assert verdict.ok, verdict


@needs_prometheus
@pytest.mark.parametrize("promql, message", [
    ('sum(nv_inference_request_success{model="efficientnet_lite0"})', "not a rate"),
    ("sum(rate(nv_inference_request_success[5s]))", "both models together"),
    ("sum by (model) (rate(nv_inference_request_success[5s]))", "returns 2 series"),
    ('sum(rate(nv_inference_count{model="efficientnet_lite0"}[5s]))', "counts inferences"),
    ('sum(rate(nv_inference_request_success{model="efficientnet_lite0"}[5s])', "Prometheus refused your query"),
    ('sum(rate(nv_inference_request_successes{model="efficientnet_lite0"}[5s]))', "returned no data"),
])
def test_promql_mistakes(known_load, promql, message):
    verdict = lab11.judge_request_rate_promql(promql, known_load)
    assert not verdict.ok
    assert message in " ".join(verdict.problems), verdict


def test_promql_without_prometheus_says_it_did_not_check(server, monkeypatch):
    monkeypatch.setenv("PROMETHEUS", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    verdict = lab11.check_request_rate_promql("sum(rate(x[5s]))", server)
    assert not verdict.ok
    assert verdict.problems[0].startswith("Not checked: this check runs your query on a real Prometheus")
    assert "apt-get install prometheus" in verdict.hint
