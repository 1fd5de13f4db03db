"""HAProxy in front of real Triton servers: answers, round robin, a kill -9 and a drain under load with
nothing lost, clear errors, and no process left behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace

import psutil
import pytest

from triton_course import PortInUseError, balancer, loadgen, start_server
from triton_course.balancer import Balancer, BalancerError
from triton_course.inference import classify
from triton_course.photos import batch, photo
from triton_course.runtimes.base import free_port

UNAVAILABLE = balancer.unavailable_reason()
needs_haproxy = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")
# Ask twice the time HAProxy needs in theory to mark a dead server DOWN (the first failed check within
# `inter`, the second `fastinter` later): the machine is shared and the load runs meanwhile.
DOWN_WITHIN_S = 2 * (1.0 + 0.25)
RATE, SECONDS = 20, 5  # the bounded load of the fault tests: 100 requests per protocol


def addresses(count: int = 2) -> list[SimpleNamespace]:
    """Server addresses where nothing listens: enough for what happens before HAProxy checks them."""
    return [SimpleNamespace(http_address=f"127.0.0.1:{free_port()}", grpc_address=f"127.0.0.1:{free_port()}")
            for _ in range(count)]


# --- the config and the errors: no Triton needed ---------------------------------------------------

def test_the_config_holds_what_the_lesson_explains():
    text = balancer.config_text(addresses(), model="efficientnet_lite0")
    for line in ("stats socket unix@admin.sock mode 600 level admin", "tune.bufsize 1048576", "mode http",
                 "option httpchk GET /v2/models/efficientnet_lite0/ready", "http-check expect status 200",
                 "retry-on conn-failure empty-response junk-response 503", "retries 3", "option redispatch 1",
                 "proto h2 track triton_http/triton2", "http-request use-service prometheus-exporter"):
        assert line in text, line
    assert len(re.findall(r"^    server triton\d 127\.0\.0\.1:\d+ check$", text, re.M)) == 2
    assert text.count("bind 127.0.0.1:") == 3
    assert 602_112 + 4096 < balancer.BUFSIZE  # one FP32 image and its headers fit: it can be retried


@needs_haproxy
def test_haproxy_accepts_the_config(tmp_path):
    (tmp_path / "haproxy.cfg").write_text(balancer.config_text(addresses(3)))
    checked = subprocess.run([balancer.find_haproxy(), "-c", "-f", "haproxy.cfg"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout
    assert "[WARNING]" not in checked.stdout + checked.stderr


def test_an_empty_server_list_is_refused():
    with pytest.raises(BalancerError, match="no servers") as caught:
        Balancer([])
    assert "Start one or more Triton servers" in caught.value.fix


def test_without_a_binary_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("HAPROXY", raising=False)
    assert "apt-get install haproxy" in balancer.unavailable_reason()
    with pytest.raises(BalancerError, match="not installed") as caught:
        Balancer(addresses()).start()
    assert "apt-get install haproxy" in caught.value.fix


@needs_haproxy
def test_a_config_haproxy_rejects_is_quoted():
    lb = Balancer(addresses(), retry_on="conn-failure timeouts")
    with pytest.raises(BalancerError, match="rejected the config") as caught:
        lb.start()
    assert "HAProxy said:" in str(caught.value)
    assert "'retry-on': unknown keyword 'timeouts'" in caught.value.triton_said
    assert "reads `retry-on conn-failure timeouts`" in caught.value.fix
    assert lb.process is None and lb.workdir is None


@needs_haproxy
def test_a_port_in_use_names_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as caught:
            Balancer(addresses(), grpc_port=port).start()
    assert caught.value.port == port and f"Port {port}" in str(caught.value)


@needs_haproxy
def test_unreachable_servers_fail_the_start_with_the_check_haproxy_saw():
    lb = Balancer(addresses(), startup_timeout=3)
    with pytest.raises(BalancerError, match="health check") as caught:
        lb.start()
    assert "L4CON" in caught.value.triton_said and "Connection refused" in caught.value.triton_said
    assert "Start the servers first" in caught.value.fix
    assert lb.process is None


# --- real servers behind it --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(reference_repo):
    with start_server(reference_repo) as first, start_server(reference_repo) as second:
        yield first, second


@pytest.mark.server
@needs_haproxy
def test_answers_over_http_and_grpc_round_robin_and_runtime_api(pair):
    with Balancer(pair) as lb:
        assert [s.status for s in lb.states()] == ["UP", "UP"]
        listening = {c.laddr for c in psutil.Process(lb.process.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}
        assert {a.port for a in listening} == set(lb.ports.values()) and {a.ip for a in listening} == {"127.0.0.1"}
        assert classify([photo("coffee")], lb.http_url, k=1)[0][0][0] == "espresso"
        assert classify([photo("coffee")], lb.grpc_address, protocol="grpc", k=1)[0][0][0] == "espresso"

        before = [loadgen.server_stats(s.http_url)["success"] for s in pair]
        for _ in range(10):
            classify([photo("coffee")], lb.http_url, k=1)
        deadline = time.monotonic() + 5
        while True:  # Triton counts a request a moment after it answered it
            served = [loadgen.server_stats(s.http_url)["success"] - b for s, b in zip(pair, before)]
            if sum(served) == 10 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sum(served) == 10 and min(served) >= 3, served  # Triton's own count: both got requests

        lb.maint(pair[1])
        assert lb.state(pair[1]).status == "MAINT"
        lb.ready("triton2")
        assert lb.wait_until(pair[1], "UP", timeout=10) < 10
        with pytest.raises(BalancerError, match="not one of this balancer's servers"):
            lb.drain("triton9")
        assert lb.memory()["rss_mb"] > 0
        process, workdir = lb.process, lb.workdir
    assert process.poll() is not None and not workdir.exists()


def _load_during(url_and_protocols, action) -> dict[str, loadgen.Result]:
    """A bounded open-loop load per protocol; `action` runs while it goes on (after 1.5 s)."""
    results: dict[str, loadgen.Result] = {}
    workers = [threading.Thread(target=lambda u=u, p=p: results.__setitem__(
        p, loadgen.measure_rate(u, batch([photo("coffee")]), rate=RATE, seconds=SECONDS, protocol=p)))
        for u, p in url_and_protocols]
    for worker in workers:
        worker.start()
    time.sleep(1.5)  # the load's own timeline: the fault comes once requests flow to both servers
    try:
        action()
    finally:
        for worker in workers:
            worker.join(SECONDS + 60)
    return results


@pytest.mark.server
@needs_haproxy
def test_kill_9_of_a_server_under_load_fails_no_request(pair, reference_repo):
    victim = start_server(reference_repo)
    try:
        with Balancer([pair[0], victim]) as lb:
            seen = {}

            def kill():
                os.kill(victim.process.pid, signal.SIGKILL)
                seen["down_s"] = lb.wait_until(victim, "DOWN", timeout=10)

            results = _load_during([(lb.http_url, "http"), (lb.grpc_address, "grpc")], kill)
            state = lb.state(victim)
        for protocol, result in results.items():
            assert (result.requests, result.errors) == (RATE * SECONDS, 0), (protocol, result.first_error)
        assert seen["down_s"] < DOWN_WITHIN_S
        assert state.check == "L4CON" and state.redispatched > 0  # requests it could not take went elsewhere
    finally:
        victim.stop()


@pytest.mark.server
@needs_haproxy
def test_drain_then_stop_under_load_fails_no_request(pair, reference_repo):
    leaving = start_server(reference_repo)
    try:
        with Balancer([pair[0], leaving]) as lb:
            seen = {}

            def drain_and_stop():
                lb.drain(leaving)
                assert lb.state(leaving).status == "DRAIN"
                deadline = time.monotonic() + 10
                while lb.state(leaving).current and time.monotonic() < deadline:
                    time.sleep(0.02)  # the requests it is serving finish
                time.sleep(0.3)  # and Triton has counted them
                seen["after_drain"] = loadgen.server_stats(leaving.http_url)["success"]
                time.sleep(0.5)  # the load goes on meanwhile: none of it may reach the drained server
                seen["later"] = loadgen.server_stats(leaving.http_url)["success"]
                leaving.stop()

            results = _load_during([(lb.http_url, "http"), (lb.grpc_address, "grpc")], drain_and_stop)
            assert lb.wait_until(leaving, "DOWN", timeout=10) < 10
        for protocol, result in results.items():
            assert (result.requests, result.errors) == (RATE * SECONDS, 0), (protocol, result.first_error)
        assert seen["after_drain"] > 0 and seen["later"] == seen["after_drain"]
    finally:
        leaving.stop()


OWNER = textwrap.dedent("""
    import sys, time
    from triton_course import start_server
    from triton_course.balancer import Balancer
    srv = start_server(sys.argv[1])
    lb = Balancer([srv]).start()
    print(lb.process.pid, srv.process.pid, lb.workdir, flush=True)
    time.sleep(600)
""")


@pytest.mark.server
@needs_haproxy
def test_no_haproxy_left_after_kill_9_of_the_owner(reference_repo, wait_until_gone):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(reference_repo)], stdout=subprocess.PIPE, text=True)
    haproxy_pid, server_pid, workdir = owner.stdout.readline().split()
    family = {int(haproxy_pid), int(server_pid)} | {p.pid for p in psutil.Process(int(server_pid)).children(True)}
    assert psutil.Process(int(haproxy_pid)).name() == "haproxy"
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert wait_until_gone(family) == set()
    deadline = time.monotonic() + 10
    while os.path.exists(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)  # the reaper removes HAProxy's folder once HAProxy is gone
    assert not os.path.exists(workdir)
