"""triton_course.scaling against real Triton servers behind a real HAProxy: a kill -9 and a drain under load, a
restart, a rolling upgrade, the latency HAProxy adds; and the one-vs-several verdict."""

from __future__ import annotations

import time

import numpy as np
import pytest

import triton_course
from triton_course import artifact, balancer, clients, perf_analyzer, repository, scaling, versions
from triton_course.balancer import Balancer
from triton_course.inference import classify
from triton_course.loadgen import Result
from triton_course.photos import batch, photo

IMAGE = batch([photo("coffee")])
UNAVAILABLE = balancer.unavailable_reason()
needs_haproxy = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")
# Twice what HAProxy needs in theory to mark a dead server DOWN (its first failed check within `inter`, the
# second `fastinter` later): the machine is shared and the load runs meanwhile.
DOWN_WITHIN_S = 2 * (1.0 + 0.25)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, reference_repo):
    """A repository of the test's own: the rolling upgrade adds a version to it."""
    path = tmp_path_factory.mktemp("scaling") / "repo"
    repository.add_model(path, artifact.reference_config(), artifact.ensure_onnx(), labels=artifact.labels())
    return path


@pytest.fixture(scope="module")
def pair(repo):
    servers = [triton_course.start_server(repo, model_control_mode="explicit", load_models=[triton_course.MODEL_NAME])
               for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def lb(pair):
    with Balancer(pair) as running:
        yield running


@pytest.mark.server
@needs_haproxy
def test_kill_9_under_load_fails_no_http_request_and_restart_brings_it_back(lb, pair):
    victim = pair[1]
    killed_at = []

    def kill():
        killed_at.append(time.perf_counter())
        return scaling.kill_9(lb, victim)

    try:
        run = scaling.load_during(lb, IMAGE, kill, protocols=("http", "grpc"))
        http, grpc = run.results["http"], run.results["grpc"]
        assert (http.requests, http.errors) == (100, 0), http.first_error
        # HAProxy 2.6 does not resend gRPC streams that were in flight on the dead server: the client gets a
        # refused stream (RST_STREAM code 7). Only those may fail, never a request sent once the kill is done
        # (the kernel closes a killed process's sockets within milliseconds; 0.2 s leaves room on a busy machine).
        assert grpc.requests == 100 and grpc.errors < grpc.requests / 10, grpc.first_error
        assert grpc.errors == 0 or "error code 7" in grpc.first_error
        late = [f"{sent - killed_at[0]:+.3f} s" for sent in grpc.failed_sent_at if sent > killed_at[0] + 0.2]
        assert not late, f"requests sent after the kill failed (sent at, from the kill): {late}"
        assert run.outcome < DOWN_WITHIN_S
        assert [(name, status) for _, name, status in run.status_changes()][-1] == ("triton2", "DOWN")
        assert run.served()["triton1"] > run.served()["triton2"] > 0  # it served until the kill, then no more
        state = lb.state(victim)
        assert state.check == "L4CON" and state.redispatched > 0  # requests it could not take went to triton1
    finally:
        scaling.restart(victim)  # the module's next tests need both servers, whatever happened above
    assert lb.wait_until(victim, "UP", timeout=10) < 10
    assert classify([photo("coffee")], victim.http_url, k=1)[0][0][0] == "espresso"


@pytest.mark.server
@needs_haproxy
def test_grpc_retry_policy_loses_no_request_at_a_kill_9(lb, pair):
    """Lesson 14's answer to the streams HAProxy cannot resend: gRPC's retry policy on UNAVAILABLE, with a retry
    buffer that holds the whole request (two images, 1.2 MB)."""
    victim = pair[1]
    options = {"channel_args": clients.grpc_retry_channel_args()}
    try:
        run = scaling.load_during(lb, batch([photo("coffee"), photo("flower")]),
                                  lambda: (scaling.wait_until_serving(lb, victim), scaling.kill_9(lb, victim)),
                                  protocols=("grpc",), grpc_options=options)
        grpc = run.results["grpc"]
        assert (grpc.requests, grpc.errors) == (100, 0), grpc.first_error
        assert run.outcome[0] >= 1  # killed with a request in flight on it
    finally:
        scaling.restart(victim)
    assert lb.wait_until(victim, "UP", timeout=10) < 10


@pytest.mark.server
@needs_haproxy
def test_drain_then_stop_under_load_fails_no_request(lb, pair):
    leaving = pair[1]
    try:
        run = scaling.load_during(lb, IMAGE, lambda: scaling.drain_and_stop(lb, leaving))
        assert (run.sent, run.failed) == (200, 0), run.first_error
        assert set(run.outcome) == {"drained_s", "stopped_s"}
        changes = [status for _, name, status in run.status_changes() if name == "triton2"]
        assert changes[0] == "DRAIN" and lb.wait_until(leaving, "DOWN", timeout=10) < 10
        # from the drain on, not one request reached it
        drained_at = next(at for at, name, status in run.status_changes() if status == "DRAIN")
        totals = [states[1].total for at, states in run.samples if at >= drained_at + 0.2]
        assert len(set(totals)) == 1
    finally:
        scaling.restart(leaving)
        lb.wait_until(leaving, "DRAIN", timeout=20)  # a drained server stays drained after a restart
        lb.ready(leaving)
        lb.wait_until(leaving, "UP", timeout=10)


@pytest.mark.server
@needs_haproxy
def test_rolling_upgrade_under_load_fails_no_request(lb, pair, repo):
    model = triton_course.MODEL_NAME
    repository.add_version(repo, model, 2, artifact.ensure_onnx())
    with versions.Traffic(lb.http_url, model, IMAGE) as traffic:
        steps = scaling.rolling_upgrade(lb, pair, model)
    answers = [answer for _, answer in traffic.answers]
    assert traffic.errors() == 0
    assert list(dict.fromkeys(answers)) == ["version 1", "version 2"] and set(answers[-5:]) == {"version 2"}
    assert steps[1] == f"triton1: reloaded '{model}', now serving version 2"
    assert steps[-1] == "triton2: back in rotation (UP)"
    assert [s.status for s in lb.states()] == ["UP", "UP"]


@pytest.mark.server
@needs_haproxy
@pytest.mark.skipif(perf_analyzer.unavailable_reason() is not None, reason="perf_analyzer cannot run here")
def test_added_latency_measures_both_sides_of_the_same_server(lb, pair, capsys):
    rows = scaling.added_latency(lb, pair[0], IMAGE, seconds=3, progress="direct vs HAProxy")
    bar = capsys.readouterr().err  # tqdm writes to stderr outside a notebook
    assert "direct vs HAProxy: 100%" in bar and "5/5" in bar, bar  # the loadgen pair, then 2 x 2 perf_analyzer runs
    assert [r["tool"] for r in rows] == ["loadgen", "perf_analyzer"]
    for row in rows:
        assert row["errors"] == 0 and row["direct p50 ms"] > 0 and row["via HAProxy p50 ms"] > 0
        assert row["ratio"] == pytest.approx(row["via HAProxy p50 ms"] / row["direct p50 ms"], rel=0.01)
    assert [s.status for s in lb.states()] == ["UP", "UP"]  # the other server is back in rotation


def _result(label, concurrency, throughput, p99):
    return Result(label=label, concurrency=concurrency, rate=None, requests=int(throughput), errors=0, seconds=1.0,
                  latencies_ms=np.full(100, p99))


@pytest.mark.parametrize("second, words", [((300.0, 290.0, 310.0), "were faster"),
                                           ((105.0, 95.0, 112.0), "were not faster"),
                                           ((60.0, 55.0, 66.0), "were slower")])
def test_the_verdict_follows_the_numbers(second, words):
    """Three alternating runs a side at c=4 (one server: 92..110 infer/s): the words follow verdicts.compare."""
    one = [_result("1", 4, t, p99) for t, p99 in ((100.0, 40.0), (92.0, 44.0), (110.0, 38.0))]
    two = [_result("2", 4, t, 30.0) for t in second]
    text = scaling.compare(one, two, servers=2, cores=2)
    assert words in text
    assert f"x{sorted(second)[1] / 100:.2f} of the medians" in text
    assert "p99 at c=4 (median of the runs): 40.0 ms with one server, 30.0 ms with 2." in text
    if words == "were not faster":
        assert "within the noise" in text and scaling.verdict(one, two, servers=2).verdict == "within the noise"


def test_one_run_a_side_is_not_called_faster_or_slower():
    """A sweep measured once a side (c=1 and c=4): the verdict at c=4 says it cannot tell, whatever the ratio."""
    one = [_result("1", 1, 50.0, 10.0), _result("1", 4, 100.0, 40.0)]
    two = [_result("2", 1, 50.0, 10.0), _result("2", 4, 60.0, 30.0)]
    text = scaling.compare(one, two, servers=2, cores=2)
    assert "x0.60" in text and "cannot tell a difference from the noise" in text
    assert "were slower" not in text and "were faster" not in text
