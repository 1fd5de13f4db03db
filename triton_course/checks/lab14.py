"""Lab 14 (scaling out): the learner's health-check and retry lines for HAProxy, tried by killing a server under
load; and the same job as Kubernetes probes."""

from __future__ import annotations

import copy
import os
import re
import signal

import requests

from .. import kubernetes, scaling
from ..balancer import Balancer, BalancerError
from ..paths import MODEL_NAME
from ..photos import batch, photo
from . import Verdict, failed, passed

EXERCISE_1 = "Exercise 1 (health check and retries)"
EXERCISE_2 = "Exercise 2 (probes)"
DOWN_WITHIN_S = 3.0  # the goal: a dead server leaves the rotation within this many seconds of its death
WAIT_FOR_DOWN_S = 15.0  # how long the check waits for HAProxy to mark it DOWN at all
RATE, SECONDS, KILL_AT = 20.0, 5.0, 1.5  # the load: 100 HTTP requests, the kill 1.5 s in


def _haproxy_words(error: BalancerError) -> str:
    return (error.triton_said or "").strip()


def check_balancer(checks_and_retries: str, serving, idle, model: str = MODEL_NAME) -> Verdict:
    """Run HAProxy with the learner's `checks_and_retries` lines (the health check and retries of its `defaults`)
    in front of three servers: `serving` (the model loaded), `idle` (a live server without the model) and one the
    check starts and kills with SIGKILL in the middle of a load of HTTP requests. Then report the failed requests,
    and why, from HAProxy's own counters."""
    from .. import start_server

    if not isinstance(checks_and_retries, str) or not checks_and_retries.strip():
        return failed(EXERCISE_1, "checks_and_retries is empty: write the config lines as one string.")
    victim = start_server(serving.repository)
    lb = Balancer([serving, victim, idle], model=model, checks_and_retries=checks_and_retries, expect_up=2,
                  startup_timeout=15)
    try:
        try:
            lb.start()
        except BalancerError as error:
            if "rejected the config" in error.what:
                return failed(EXERCISE_1, "HAProxy rejected the config with your lines. HAProxy said: "
                              + _haproxy_words(error), hint=error.fix or "")
            return failed(EXERCISE_1, "Fewer than two servers passed your health check, although two of them "
                                      f"have '{model}' loaded. HAProxy's view: " + _haproxy_words(error),
                          hint=f"Ask Triton about the model: option httpchk GET /v2/models/{model}/ready, and expect "
                               "status 200 (http-check expect status 200).")
        seen: dict = {}

        def kill() -> None:
            os.kill(victim.process.pid, signal.SIGKILL)
            try:
                seen["down_s"] = lb.wait_until(victim, "DOWN", timeout=WAIT_FOR_DOWN_S)
            except BalancerError:
                seen["down_s"] = None

        run = scaling.load_during(lb, batch([photo("coffee")]), kill, at=KILL_AT, rate=RATE, seconds=SECONDS,
                                  protocols=("http",))
        states = {s.name: s for s in lb.states()}
    finally:
        lb.stop()
        victim.stop()
    return _verdict(checks_and_retries, run, states, seen.get("down_s"), model)


def _verdict(lines: str, run, states, down_s, model: str) -> Verdict:
    killed, idle = states["triton2"], states["triton3"]
    words = re.sub(r"#.*", "", lines)
    problems, hints = [], []
    if idle.total:
        problems.append(f"Your health check let HAProxy send {idle.total} request(s) to a server that runs but has "
                        f"no '{model}' loaded: Triton answered {idle.answered_4xx} of them with a 4xx error.")
        hints.append(f"Check the model, not the server: option httpchk GET /v2/models/{model}/ready (Triton answers "
                     "400 there while the model is not loaded; /v2/health/ready and /v2/health/live answer 200).")
    lost = run.failed - idle.answered_4xx
    if lost > 0:
        problems.append(f"{lost} of {run.sent} requests failed around the kill of a server (first error: "
                        f"{run.first_error[:160]}). HAProxy retried {killed.retried} and sent "
                        f"{killed.redispatched} to another server.")
        if not re.search(r"^\s*retry-on\b.*\bempty-response\b", words, re.M):
            hints.append("A request the killed server was answering gets no response: add empty-response to retry-on "
                         "(and conn-failure, for the requests sent before HAProxy noticed).")
        if not re.search(r"^\s*option\s+redispatch\b", words, re.M):
            hints.append("Without option redispatch, HAProxy retries on the same dead server: add option redispatch 1.")
    if down_s is None:
        problems.append(f"HAProxy had not marked the killed server DOWN {WAIT_FOR_DOWN_S:g} s after the kill.")
        hints.append("Check more often: default-server inter 1s fastinter 250ms fall 2 rise 2.")
    elif down_s > DOWN_WITHIN_S:
        problems.append(f"HAProxy marked the killed server DOWN {down_s:.1f} s after the kill; the goal is under "
                        f"{DOWN_WITHIN_S:g} s (until then every request sent to it pays for a failed attempt).")
        hints.append("The time to DOWN is about inter + (fall - 1) x fastinter: try default-server inter 1s "
                     "fastinter 250ms fall 2 rise 2.")
    if problems:
        return failed(EXERCISE_1, *problems, hint=" ".join(hints))
    return passed(EXERCISE_1, f"0 of {run.sent} requests failed while a server was killed; HAProxy marked it DOWN "
                              f"{down_s:.2f} s after the kill, and the server without the model got no request.")


def check_probes(readiness: dict, liveness: dict, server_url: str) -> Verdict:
    """The learner's readinessProbe and livenessProbe for the Triton container: valid for Kubernetes, on
    Triton's health endpoints, on the HTTP port, and answering 200 on a real server."""
    deployment = copy.deepcopy(kubernetes.manifests()["Deployment"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"], container["livenessProbe"] = readiness, liveness
    problems = kubernetes.validate(deployment)
    if problems:
        return failed(EXERCISE_2, "The Deployment with your probes does not validate against the Kubernetes schema: "
                      + problems[0],
                      hint="A probe looks like {'httpGet': {'path': ..., 'port': ...}, 'periodSeconds': 5}.")
    found = []
    for kind, probe, right, wrong in (("readiness", readiness, "/v2/health/ready", "/v2/health/live"),
                                      ("liveness", liveness, "/v2/health/live", "/v2/health/ready")):
        get = probe.get("httpGet")
        if not get:
            found.append(f"the {kind} probe has no httpGet: Triton's health checks are HTTP endpoints.")
            continue
        if get.get("port") not in ("http", 8000):
            found.append(f"the {kind} probe asks port {get.get('port')!r}: Triton's health endpoints are on its "
                         "HTTP port (8000, named 'http' in the Deployment); 8002 serves only /metrics.")
        path = get.get("path")
        if path == wrong and kind == "readiness":
            found.append("the readiness probe asks /v2/health/live: live only says the process runs, so a pod "
                         "would get requests before its models are loaded.")
        elif path == wrong:
            found.append("the liveness probe asks /v2/health/ready: a pod whose model fails to load (or is "
                         "unloaded on purpose) would be restarted over and over.")
        elif path != right:
            status = requests.get(f"{server_url}{path}", timeout=5).status_code if str(path).startswith("/") else None
            found.append(f"the {kind} probe asks {path!r}" + (f" (Triton answers {status} there)" if status else "")
                         + f": use {right}.")
    if found:
        return failed(EXERCISE_2, *found)
    answers = {p: requests.get(f"{server_url}{p}", timeout=5).status_code for p in ("/v2/health/ready",
                                                                                      "/v2/health/live")}
    return passed(EXERCISE_2, f"the Deployment validates, and the running server answers your probes "
                              f"{answers['/v2/health/ready']} (ready) and {answers['/v2/health/live']} (live).")
