"""Several servers behind the course's ServerPool (real servers), and the Kubernetes helpers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import triton_course
from triton_course import kubernetes, scaling
from triton_course.inference import top_k
from triton_course.loadgen import Result
from triton_course.photos import batch, photo

IMAGE = batch([photo("coffee")])


@pytest.fixture(scope="module")
def two_servers():
    servers = [triton_course.start_server() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def test_requests_go_round_robin_and_get_the_model_answer(two_servers):
    urls = [s.http_url for s in two_servers]
    with scaling.ServerPool(urls) as pool:
        answers = [pool.infer(IMAGE) for _ in range(4)]
    assert [a.server for a in answers] == urls * 2
    assert {top_k(a.output[0], 1)[0][0] for a in answers} == {"espresso"}
    assert pool.answered == {urls[0]: 2, urls[1]: 2} and pool.retries == 0


def test_a_bad_request_is_raised_with_triton_s_words_not_retried(two_servers):
    with scaling.ServerPool([s.http_url for s in two_servers]) as pool:
        with pytest.raises(triton_course.InferenceError) as caught:
            pool.infer(np.zeros((1, 3, 10, 10), dtype=np.float32))
        assert "unexpected shape" in caught.value.triton_said
        assert pool.retries == 0 and len(pool.healthy()) == 2


def test_a_drained_server_gets_no_requests_until_restored(two_servers):
    first, second = (s.http_url for s in two_servers)
    with scaling.ServerPool([first, second]) as pool:
        pool.drain(second)
        pool.check()  # a health check must not bring a drained server back
        assert {pool.infer(IMAGE).server for _ in range(4)} == {first}
        pool.restore(second)
        pool.check()
        assert {pool.infer(IMAGE).server for _ in range(4)} == {first, second}


def test_a_server_stopped_under_load_costs_no_failed_request(two_servers):
    extra = triton_course.start_server()
    try:
        urls = [two_servers[0].http_url, extra.http_url]
        with scaling.ServerPool(urls) as pool:
            timeline = scaling.run_load(pool, IMAGE, rate=20, seconds=4, actions={1.5: extra.stop})
            assert extra.http_url not in pool.healthy()
        assert timeline.failed == 0 and len(timeline.errors) == 80
        late = {s for s, t in zip(timeline.servers, timeline.sent_at) if t > 2.5}
        assert late == {two_servers[0].http_url}
        assert timeline.per_server()[extra.http_url] > 0  # it did serve before the stop
    finally:
        extra.stop()


def test_a_killed_server_s_requests_are_retried_elsewhere(two_servers):
    extra = triton_course.start_server()
    try:
        with scaling.ServerPool([two_servers[0].http_url, extra.http_url], check_every_s=60) as pool:
            extra.process.kill()
            extra.process.wait(30)
            # With health checks this rare, only the failed request can reveal the crash.
            answers = [pool.infer(IMAGE) for _ in range(3)]
        assert {a.server for a in answers} == {two_servers[0].http_url}
        assert pool.retries == 1 and sum(a.retries for a in answers) == 1
        assert any("failed a request and is not ready" in text for _, text in pool.events)
    finally:
        extra.stop()


def test_no_server_left_says_so_and_what_to_do():
    with scaling.ServerPool(["http://127.0.0.1:9"]) as pool:
        with pytest.raises(triton_course.InferenceError) as caught:
            pool.infer(IMAGE)
    assert "No server of the pool" in caught.value.what and "Start a server" in caught.value.fix


def test_a_pool_needs_servers():
    with pytest.raises(ValueError, match="at least one"):
        scaling.ServerPool([])


def _result(label, concurrency, throughput, p99):
    return Result(label=label, concurrency=concurrency, rate=None, requests=int(throughput), errors=0, seconds=1.0,
                  latencies_ms=np.full(100, p99))


@pytest.mark.parametrize("second, words", [(300.0, "were faster"), (105.0, "were not faster"),
                                           (60.0, "were slower")])
def test_the_verdict_follows_the_numbers(second, words):
    one = [_result("1", 1, 50.0, 10.0), _result("1", 4, 100.0, 40.0)]
    two = [_result("2", 1, 50.0, 10.0), _result("2", 4, second, 30.0)]
    text = scaling.compare(one, two, servers=2, cores=2)
    assert words in text
    assert f"x{second / 100:.2f}" in text and "p99 at c=4: 40.0 ms vs 30.0 ms" in text


def test_manifest_fields_are_read_by_path():
    deployment = kubernetes.manifests()["Deployment"]
    assert kubernetes.field(deployment, "spec.template.spec.containers[0].ports[1].name") == "grpc"
    with pytest.raises(KeyError):
        kubernetes.field(deployment, "spec.template.spec.container")


def test_validation_names_where_a_manifest_is_wrong():
    docs = kubernetes.manifests()
    assert all(kubernetes.validate(doc) == [] for doc in docs.values())
    broken = copy.deepcopy(docs["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 8000.5
    problems = kubernetes.validate(broken)
    assert len(problems) == 1 and "readinessProbe" in problems[0]
