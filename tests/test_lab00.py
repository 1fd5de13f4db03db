"""Lab 00's checks: the right answers pass, each typical wrong answer gets its own message."""

import time

import pytest
import requests

import triton_course
from triton_course.checks import lab00

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(reference_repo):
    with triton_course.server(reference_repo) as running:
        yield running


def version_right(url):
    with requests.get(f"{url}/v2", timeout=10) as response:
        return response.json()["version"]


def ready_right(url):
    try:
        with requests.get(f"{url}/v2/health/ready", timeout=5) as response:
            return response.status_code == 200
    except requests.RequestException:
        return False


def test_server_version_right_answer_passes(server):
    verdict = lab00.check_server_version(version_right, server)
    assert verdict.ok, verdict


@pytest.mark.parametrize("answer, expected", [
    (lambda url: requests.get(f"{url}/v2", timeout=10).json(), "whole metadata dict"),
    (lambda url: "2.50.0", "but the server says its version is"),
    (lambda url: requests.get(f"{url}/v2", timeout=10).status_code, "not a string"),
    (lambda url: requests.get(f"{url}/v2/version", timeout=10).json()["version"], "raised KeyError"),
], ids=["whole_dict", "typed_in", "status_code", "wrong_endpoint"])
def test_server_version_wrong_answers(server, answer, expected):
    verdict = lab00.check_server_version(answer, server)
    assert not verdict.ok
    assert expected in repr(verdict)


def test_is_ready_right_answer_passes(server):
    verdict = lab00.check_is_ready(ready_right, server)
    assert verdict.ok, verdict


def live_instead_of_ready(url):
    try:
        with requests.get(f"{url}/v2/health/live", timeout=5) as response:
            return response.status_code == 200
    except requests.RequestException:
        return False


def no_exception_handling(url):
    with requests.get(f"{url}/v2/health/ready", timeout=5) as response:
        return response.status_code == 200


def status_code(url):
    try:
        with requests.get(f"{url}/v2/health/ready", timeout=5) as response:
            return response.status_code
    except requests.RequestException:
        return 0


@pytest.mark.parametrize("answer, expected", [
    (live_instead_of_ready, ["live but not ready (a model failed to load) it returned True",
                             "Ask /v2/health/ready, not /v2/health/live"]),
    (no_exception_handling, ["on a stopped server it raised ConnectionError", "Catch requests.RequestException"]),
    (status_code, ["returned 200, not True", "Return a bool"]),
], ids=["live_endpoint", "raises_when_stopped", "returns_status_code"])
def test_is_ready_wrong_answers(server, answer, expected):
    verdict = lab00.check_is_ready(answer, server)
    assert not verdict.ok
    for text in expected:
        assert text in repr(verdict)


def test_wait_until_ready_right_and_wrong(server):
    def right(url, timeout):
        deadline = time.monotonic() + timeout
        while not ready_right(url):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def sleeps_first(url, timeout):
        time.sleep(timeout)
        return ready_right(url)

    assert lab00.check_wait_until_ready(right, server).ok
    verdict = lab00.check_wait_until_ready(sleeps_first, server)
    assert not verdict.ok and "Ask first, wait after" in repr(verdict)
    verdict = lab00.check_wait_until_ready(lambda url, timeout: ready_right(url), server)
    assert not verdict.ok and "with timeout=1.5 on a server that never gets ready it returned False after" \
        in repr(verdict)
