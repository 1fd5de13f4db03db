"""Lab 14's checks: a right answer passes; each typical mistake gets its own message (real servers, real HAProxy,
a real kill -9 under load)."""

from __future__ import annotations

import pytest

import triton_course
from triton_course import balancer
from triton_course.checks import lab14

MODEL = triton_course.MODEL_NAME
needs_haproxy = pytest.mark.skipif(balancer.unavailable_reason() is not None, reason=f"{balancer.unavailable_reason()}")

GOOD = f"""
option httpchk GET /v2/models/{MODEL}/ready
http-check expect status 200
default-server inter 1s fastinter 250ms fall 2 rise 2
retry-on conn-failure empty-response
retries 3
option redispatch 1
"""


@pytest.fixture(scope="module")
def servers():
    serving = triton_course.start_server()
    idle = triton_course.start_server(model_control_mode="explicit")  # live, but no model loaded
    yield serving, idle
    serving.stop()
    idle.stop()


@pytest.mark.server
@needs_haproxy
def test_the_right_lines_pass(servers):
    verdict = lab14.check_balancer(GOOD, *servers)
    assert verdict.ok, verdict
    assert "0 of 100 requests failed" in repr(verdict)


@pytest.mark.server
@needs_haproxy
def test_asking_the_server_instead_of_the_model_is_caught(servers):
    verdict = lab14.check_balancer(GOOD.replace(f"/v2/models/{MODEL}/ready", "/v2/health/ready"), *servers)
    assert not verdict.ok and "no 'efficientnet_lite0' loaded" in verdict.problems[0]
    assert "Check the model, not the server" in verdict.hint


@pytest.mark.server
@needs_haproxy
def test_no_redispatch_loses_requests_and_says_why(servers):
    verdict = lab14.check_balancer(GOOD.replace("option redispatch 1", ""), *servers)
    assert not verdict.ok and "requests failed around the kill" in verdict.problems[0]
    assert "add option redispatch 1" in verdict.hint


@pytest.mark.server
@needs_haproxy
def test_a_slow_health_check_is_caught(servers):
    verdict = lab14.check_balancer(GOOD.replace("inter 1s fastinter 250ms", "inter 4s fastinter 4s"), *servers)
    assert not verdict.ok and "the goal is under 3 s" in repr(verdict) and "fall 2" in verdict.hint


@pytest.mark.server
@needs_haproxy
def test_lines_haproxy_rejects_are_quoted(servers):
    verdict = lab14.check_balancer(GOOD.replace("empty-response", "timeouts"), *servers)
    assert not verdict.ok and "HAProxy rejected the config" in verdict.problems[0]
    assert "unknown keyword 'timeouts'" in verdict.problems[0]
    assert "reads `retry-on conn-failure timeouts`" in verdict.hint


def test_empty_lines_are_refused_before_anything_starts():
    verdict = lab14.check_balancer("  ", None, None)
    assert not verdict.ok and "empty" in verdict.problems[0]


READY = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5}
LIVE = {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10}


def test_the_right_probes_pass(servers):
    verdict = lab14.check_probes(READY, LIVE, servers[0].http_url)
    assert verdict.ok, verdict
    assert "answers your probes 200 (ready) and 200 (live)" in repr(verdict)


def test_swapped_probes_are_explained(servers):
    verdict = lab14.check_probes(LIVE, READY, servers[0].http_url)
    assert not verdict.ok
    assert "before its models are loaded" in verdict.problems[0]
    assert "restarted over and over" in verdict.problems[1]


def test_the_metrics_port_is_caught(servers):
    verdict = lab14.check_probes({"httpGet": {"path": "/v2/health/ready", "port": 8002}}, LIVE, servers[0].http_url)
    assert not verdict.ok and "8002 serves only /metrics" in verdict.problems[0]


def test_a_made_up_path_quotes_triton_s_status(servers):
    verdict = lab14.check_probes({"httpGet": {"path": "/health", "port": "http"}}, LIVE, servers[0].http_url)
    assert not verdict.ok and "'/health'" in verdict.problems[0] and "use /v2/health/ready" in verdict.problems[0]


def test_a_probe_kubernetes_rejects_quotes_the_schema(servers):
    verdict = lab14.check_probes({"httpGet": {"path": "/v2/health/ready", "port": "http"}, "period": 5}, LIVE,
                                 servers[0].http_url)
    assert not verdict.ok and "does not validate" in verdict.problems[0]
    assert "readinessProbe: Additional properties are not allowed ('period' was unexpected)" in verdict.problems[0]
