"""Lab 14 (scaling out): a health check that finds the servers able to answer, and Kubernetes probes."""

from __future__ import annotations

import copy
import threading

import requests

from .. import kubernetes
from ..paths import MODEL_NAME
from . import Verdict, failed, passed

EXERCISE_1 = "Exercise 1 (health check)"
EXERCISE_2 = "Exercise 2 (probes)"


def _call_with_deadline(function, args, seconds: float):
    """(returned value, raised exception, finished in time) of function(*args)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function(*args)
        except Exception as exc:  # noqa: BLE001 - the learner's exception is what we report
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome.get("value"), outcome.get("error"), not thread.is_alive()


def check_ready_urls(ready_urls, serving_url: str, idle_url: str, down_url: str, model: str = MODEL_NAME,
                     deadline_s: float = 10.0) -> Verdict:
    """`ready_urls(urls, model)` must return, in order, the URLs whose `model` is ready.

    serving_url: a server with the model loaded; idle_url: a live server without it (explicit mode, nothing
    loaded); down_url: an address where nothing listens."""
    urls = [down_url, serving_url, idle_url]
    value, error, finished = _call_with_deadline(ready_urls, (urls, model), deadline_s)
    if not finished:
        return failed(EXERCISE_1, f"ready_urls did not return within {deadline_s:g} s.",
                      hint="Pass timeout= to requests.get (a second is plenty): a health check must never hang "
                           "on a server that does not answer.")
    if isinstance(error, requests.RequestException):
        return failed(EXERCISE_1, f"ready_urls raised {type(error).__name__} for an address where no server listens.",
                      triton_said=str(error)[:200],
                      hint="Catch requests.RequestException and count that server as not ready: a stopped server "
                           "is exactly what a health check is for.")
    if error is not None:
        return failed(EXERCISE_1, f"ready_urls raised {type(error).__name__}: {error}")
    if not isinstance(value, list):
        return failed(EXERCISE_1, f"ready_urls returned {type(value).__name__}; return a list of URLs.")
    if idle_url in value:
        asked = requests.get(f"{idle_url}/v2/models/{model}/ready", timeout=5).status_code
        return failed(EXERCISE_1, f"It counted {idle_url} as ready: that server is up, but '{model}' is not loaded "
                                  f"there (GET /v2/models/{model}/ready answers {asked}).",
                      hint=f"Ask about the model, not the server: GET URL/v2/models/{model}/ready. /v2/health/live "
                           "(and /v2/health/ready with no model loaded) say yes for a server that cannot answer.")
    if down_url in value:
        return failed(EXERCISE_1, f"It counted {down_url} as ready, but no server listens there.",
                      hint="Only a 200 answer means ready: check response.status_code == 200.")
    if value != [serving_url]:
        return failed(EXERCISE_1, f"It returned {value}; expected [{serving_url!r}] (the one server whose model "
                                  "is ready).",
                      hint="Keep the URLs as they were given, in their order.")
    return passed(EXERCISE_1, "it kept the server whose model is ready and left out a server without the model "
                              "and an address where nothing listens, without hanging.")


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
