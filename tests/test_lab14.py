"""Lab 14's checks: a right answer passes; each typical mistake gets its own message (real servers)."""

from __future__ import annotations

import pytest
import requests

import triton_course
from triton_course.checks import lab14
from triton_course.runtimes import free_port

MODEL = triton_course.MODEL_NAME


@pytest.fixture(scope="module")
def servers():
    serving = triton_course.start_server()
    idle = triton_course.start_server(model_control_mode="explicit")  # live, but no model loaded
    yield serving.http_url, idle.http_url, f"http://127.0.0.1:{free_port()}"
    serving.stop()
    idle.stop()


def _asking(path_of):
    def ready_urls(urls, model):
        kept = []
        for url in urls:
            try:
                if requests.get(url + path_of(model), timeout=1).status_code == 200:
                    kept.append(url)
            except requests.RequestException:
                pass
        return kept
    return ready_urls


def test_the_right_health_check_passes(servers):
    verdict = lab14.check_ready_urls(_asking(lambda m: f"/v2/models/{m}/ready"), *servers)
    assert verdict.ok, verdict


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_asking_the_server_instead_of_the_model_is_caught(servers, path):
    verdict = lab14.check_ready_urls(_asking(lambda m: path), *servers)
    assert not verdict.ok and "is not loaded there" in repr(verdict) and "Ask about the model" in verdict.hint


def test_a_health_check_that_raises_on_a_stopped_server(servers):
    def ready_urls(urls, model):
        return [u for u in urls if requests.get(f"{u}/v2/models/{model}/ready", timeout=1).status_code == 200]

    verdict = lab14.check_ready_urls(ready_urls, *servers)
    assert not verdict.ok and "ConnectionError" in verdict.problems[0] and "RequestException" in verdict.hint


def test_a_health_check_that_hangs(servers):
    def ready_urls(urls, model):
        threading_event = __import__("threading").Event()
        threading_event.wait(5)
        return []

    verdict = lab14.check_ready_urls(ready_urls, *servers, deadline_s=0.5)
    assert not verdict.ok and "did not return within" in verdict.problems[0] and "timeout=" in verdict.hint


def test_anything_that_answers_is_not_ready(servers):
    def ready_urls(urls, model):
        kept = []
        for url in urls:
            try:
                requests.get(f"{url}/v2/models/{model}/ready", timeout=1)
                kept.append(url)
            except requests.RequestException:
                pass
        return kept

    verdict = lab14.check_ready_urls(ready_urls, *servers)
    assert not verdict.ok and "is not loaded there" in verdict.problems[0] and "answers 400" in verdict.problems[0]


def test_not_a_list(servers):
    verdict = lab14.check_ready_urls(lambda urls, model: None, *servers)
    assert not verdict.ok and "returned NoneType" in verdict.problems[0]


READY = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}
LIVE = {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10}


def test_the_right_probes_pass(servers):
    verdict = lab14.check_probes(READY, LIVE, servers[0])
    assert verdict.ok, verdict
    assert "answers your probes 200 (ready) and 200 (live)" in repr(verdict)


def test_swapped_probes_are_explained(servers):
    verdict = lab14.check_probes(LIVE, READY, servers[0])
    assert not verdict.ok
    assert "before its models are loaded" in verdict.problems[0]
    assert "restarted over and over" in verdict.problems[1]


def test_the_metrics_port_is_caught(servers):
    verdict = lab14.check_probes({"httpGet": {"path": "/v2/health/ready", "port": 8002}}, LIVE, servers[0])
    assert not verdict.ok and "8002 serves only /metrics" in verdict.problems[0]


def test_a_made_up_path_quotes_triton_s_status(servers):
    verdict = lab14.check_probes({"httpGet": {"path": "/health", "port": "http"}}, LIVE, servers[0])
    assert not verdict.ok and "'/health'" in verdict.problems[0] and "use /v2/health/ready" in verdict.problems[0]


def test_a_probe_kubernetes_rejects_quotes_the_schema(servers):
    verdict = lab14.check_probes({"httpGet": {"path": "/v2/health/ready", "port": "http"}, "period": 5}, LIVE,
                                 servers[0])
    assert not verdict.ok and "does not validate" in verdict.problems[0]
    assert "readinessProbe: Additional properties are not allowed ('period' was unexpected)" in verdict.problems[0]
