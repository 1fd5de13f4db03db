"""HAProxy in front of real Triton servers: the config, answers over both protocols, round robin, the runtime API,
clear errors, and no process left behind (also when a Jupyter kernel is killed). The faults under load (kill -9,
drain, rolling upgrade) are in test_scaling.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import psutil
import pytest

from triton_course import PortInUseError, balancer, loadgen, start_server
from triton_course.artifact import INPUT_NAME, OUTPUT_NAME
from triton_course.balancer import Balancer, BalancerError
from triton_course.clients import infer_inputs, requested_outputs
from triton_course.inference import classify
from triton_course.paths import MODEL_NAME
from triton_course.photos import batch, photo
from triton_course.runtimes.base import free_port

UNAVAILABLE = balancer.unavailable_reason()
needs_haproxy = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")


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
                 "option http-buffer-request",
                 "proto h2 track triton_http/triton2", "http-request use-service prometheus-exporter"):
        assert line in text, line
    assert len(re.findall(r"^    server triton\d 127\.0\.0\.1:\d+ check$", text, re.M)) == 2
    assert text.count("bind 127.0.0.1:") == 3
    assert 602_112 + 4096 < balancer.BUFSIZE  # one FP32 image and its headers fit: it can be retried


def test_the_learner_s_lines_replace_the_checks_and_retries():
    mine = "option httpchk GET /v2/health/live\n  retry-on conn-failure  \n# a comment\n"
    text = balancer.config_text(addresses(), checks_and_retries=mine)
    assert "    option httpchk GET /v2/health/live\n    retry-on conn-failure\n    # a comment\n" in text
    assert "option redispatch" not in text and "/v2/models/" not in text
    assert balancer.policy("other_model") in balancer.config_text(addresses(), model="other_model")


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
    lb = Balancer(addresses(), checks_and_retries=balancer.policy(retry_on="conn-failure timeouts"))
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


def _infer_request_head_and_body(images) -> tuple[bytes, bytes]:
    """What tritonclient sends to infer `images` over HTTP (binary tensor extension): the head and the body."""
    import tritonclient.http as httpclient

    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        infer_inputs({INPUT_NAME: images}, "http"), outputs=requested_outputs([OUTPUT_NAME], "http"))
    head = (f"POST /v2/models/{MODEL_NAME}/infer HTTP/1.1\r\nHost: triton\r\nConnection: close\r\n"
            f"Inference-Header-Content-Length: {json_size}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode(), body


@pytest.mark.server
@needs_haproxy
def test_a_request_whose_server_dies_while_it_arrives_goes_to_the_other(pair):
    """A client slower than the server's death (half of a 600 KB body sent, the server killed, then the rest):
    with `option http-buffer-request` HAProxy has sent nothing yet, so it tries the dead server, is refused, and
    redispatches. Without it HAProxy 2.6 forwards the half at once, and a request it began to forward before all
    of it arrived is never retried: the client gets 502."""
    survivor = pair[0]
    victim = start_server(survivor.repository)
    try:
        with Balancer([victim, survivor]) as lb:
            lb.maint(survivor)  # the request can only go to the victim first
            head, body = _infer_request_head_and_body(batch([photo("coffee")]))
            host, _, port = lb.http_address.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=30) as client:
                client.sendall(head + body[:len(body) // 2])
                time.sleep(0.3)
                os.kill(victim.process.pid, signal.SIGKILL)
                victim.process.wait()
                lb.ready(survivor)
                client.sendall(body[len(body) // 2:])
                answer = b"".join(iter(lambda: client.recv(1 << 16), b""))
            status_line = answer.split(b"\r\n", 1)[0].decode()
            assert status_line == "HTTP/1.1 200 OK", answer[:300]
            assert lb.state(victim).redispatched == 1 and lb.state(survivor).total == 1
    finally:
        victim.stop()


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


KERNEL_CODE = textwrap.dedent("""
    import triton_course
    from triton_course.balancer import Balancer
    server = triton_course.start_server(REPO)
    lb = Balancer([server]).start()
    print(lb.process.pid, server.process.pid, lb.workdir)
""")


@pytest.mark.server
@needs_haproxy
def test_no_haproxy_or_triton_left_after_the_jupyter_kernel_is_killed(reference_repo, wait_until_gone):
    """What a learner does: start servers and HAProxy in a notebook, then the kernel dies (killed, or crashed)."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        printed = []
        reply = client.execute_interactive(KERNEL_CODE.replace("REPO", repr(str(reference_repo))), timeout=180,
                                           output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        haproxy_pid, server_pid, workdir = "".join(printed).split()
        family = {int(haproxy_pid), int(server_pid)} | {p.pid for p in psutil.Process(int(server_pid)).children(True)}
        assert psutil.Process(int(haproxy_pid)).name() == "haproxy"
        os.kill(manager.provisioner.process.pid, signal.SIGKILL)  # the kernel dies without stopping anything
    finally:
        client.stop_channels()
        manager.cleanup_resources()
    assert wait_until_gone(family) == set()
    deadline = time.monotonic() + 10
    while os.path.exists(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)  # the reaper removes HAProxy's folder once HAProxy is gone
    assert not os.path.exists(workdir)
