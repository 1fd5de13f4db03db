"""Checks for lab 12 (web app): the learner's Flask views, driven with Flask's test client against the
real Triton of the lab (the lesson 9 pipeline), with the model unloaded, with nothing listening, and with a
server that accepts connections but never answers."""

from __future__ import annotations

import socket
import threading
import time

from flask import Flask

from ..ensemble import ENSEMBLE, classify_bytes
from ..photos import jpeg_bytes, photo
from ..runtimes.base import free_port
from . import Verdict, failed, passed

MAX_UPLOAD_BYTES = 200_000  # what the checks configure: the coffee photo fits, with room to spare
HEALTH_DEADLINE_S = 3.0  # what the exercise asks for
WAIT_S = 8.0  # how long the check waits before it calls a view hung


def make_app(triton_url: str, *, model: str = ENSEMBLE, max_upload_bytes: int = MAX_UPLOAD_BYTES,
             healthz=None, classify=None) -> Flask:
    """A Flask app with the learner's views: GET /healthz and POST /api/classify. The views read their
    settings from `current_app.config` (TRITON_URL, MODEL, MAX_UPLOAD_BYTES)."""
    app = Flask("lab12")
    app.config.update(TRITON_URL=triton_url, MODEL=model, MAX_UPLOAD_BYTES=max_upload_bytes)
    app.testing = True  # an exception in a view reaches the caller (the check reports it) instead of a 500 page
    if healthz is not None:
        app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    if classify is not None:
        app.add_url_rule("/api/classify", "classify", classify, methods=["POST"])
    return app


class SilentServer:
    """A port that accepts connections and never answers: a Triton that hangs."""

    def __enter__(self) -> "SilentServer":
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self.socket.close()  # the kernel resets the connections it held: a hung client gets an error


def _request(app: Flask, method: str, path: str, data: bytes | None = None, wait_s: float = WAIT_S):
    """(status, JSON body or None, seconds, problem): the view's answer, or what went wrong."""
    outcome: dict = {}

    def run():
        started = time.perf_counter()
        try:
            response = app.test_client().open(path, method=method, data=data)
            outcome["response"] = response
        except Exception as exc:  # noqa: BLE001 - the learner's view raised: report it
            outcome["error"] = exc
        outcome["seconds"] = time.perf_counter() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(wait_s)
    if worker.is_alive():
        return None, None, wait_s, f"did not answer within {wait_s:.0f} s"
    if "error" in outcome:
        exc = outcome["error"]
        first = str(exc).splitlines()[0] if str(exc) else ""
        return None, None, outcome["seconds"], f"raised {type(exc).__name__}: {first}"
    response = outcome["response"]
    body = response.get_json(silent=True)
    if not isinstance(body, dict):
        return response.status_code, None, outcome["seconds"], \
            f"answered {response.status_code} with {response.content_type or 'no content type'}, not a JSON object"
    return response.status_code, body, outcome["seconds"], None


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: Triton is down


def check_healthz(healthz, server, model: str = ENSEMBLE) -> Verdict:
    """Exercise 1: GET /healthz answers 200 {"ready": true} only when Triton answers and `model` is ready,
    else 503 {"ready": false}, within HEALTH_DEADLINE_S, never an exception. The check unloads the model
    for a moment (the server runs in explicit mode) and loads it again."""
    exercise = "Exercise 1 (/healthz)"
    problems = []

    def expect(situation: str, url: str, status: int, ready: bool) -> None:
        code, body, seconds, problem = _request(make_app(url, model=model, healthz=healthz), "GET", "/healthz")
        if problem:
            problems.append(f"{situation}: your view {problem}.")
            return
        if code != status:
            problems.append(f"{situation}: status {code}, expected {status}.")
        if body.get("ready") is not ready:
            problems.append(f"{situation}: the JSON says ready={body.get('ready')!r}, expected {ready}.")
        if seconds > HEALTH_DEADLINE_S:
            problems.append(f"{situation}: it took {seconds:.1f} s; a health check must answer within "
                            f"{HEALTH_DEADLINE_S:.0f} s.")

    expect("Triton up, model ready", server.http_url, 200, True)
    server.unload_model(model)
    try:
        expect(f"Triton up, '{model}' unloaded", server.http_url, 503, False)
    finally:
        server.load_model(model)
    expect("Triton down (nothing listens at the URL)", _dead_url(), 503, False)
    with SilentServer() as silent:
        expect("Triton hangs (accepts the connection, never answers)", silent.url, 503, False)
    if problems:
        hints = []
        if any("unloaded" in p for p in problems):
            hints.append("A live server is not a ready model: ask /v2/models/NAME/ready (client.is_model_ready).")
        if any("raised" in p for p in problems):
            hints.append("Catch the client's exceptions: a health check reports 'down', it does not crash.")
        if any("hangs" in p for p in problems):
            hints.append("Give every call to Triton a timeout (requests: timeout=2; tritonclient: "
                         "connection_timeout and network_timeout).")
        return failed(exercise, *problems, hint=" ".join(hints) or "Return (jsonify(...), status).")
    return passed(exercise, "200 when the model is ready; 503 when it is unloaded, when Triton is down and when "
                            "it hangs, each within the time limit.")


def _padded(image: bytes, size: int) -> bytes:
    """The JPEG with zero bytes after its end, `size` bytes in all (image readers ignore what follows)."""
    return image + b"\0" * (size - len(image))


def _limit_mentioned(message: str, limit: int) -> bool:
    forms = {str(limit), f"{limit:,}", f"{limit / 1e6:g} MB", f"{limit / 1e3:g} kB", f"{limit / 1e3:g} KB",
             f"{limit / 1e3:g}kB", f"{limit / 1e3:g} KB", f"{limit / 1e6:g}MB"}
    return any(form in message for form in forms)


def check_classify(classify, server, model: str = ENSEMBLE) -> Verdict:
    """Exercise 2: POST /api/classify with the photo as the body: 200 with the labels; 400 for an empty body
    or a file Triton refuses (with its reason); 413 above MAX_UPLOAD_BYTES (a file of exactly the limit is
    accepted) with a message that names the limit; 503 when Triton is down."""
    exercise = "Exercise 2 (/api/classify)"
    coffee = jpeg_bytes(photo("coffee"))
    truth = classify_bytes(server.http_url, [coffee], model=model)[0]
    app = make_app(server.http_url, model=model, classify=classify)
    problems = []

    def send(situation, data, target=app):
        code, body, _, problem = _request(target, "POST", "/api/classify", data)
        if problem:
            problems.append(f"{situation}: your view {problem}.")
        return code, body or {}

    code, body = send("the coffee photo", coffee)
    if code is not None:
        labels = body.get("labels")
        if code != 200:
            problems.append(f"the coffee photo: status {code} ({body.get('error', body)}), expected 200.")
        elif not (isinstance(labels, list) and labels and isinstance(labels[0], dict) and "label" in labels[0]):
            problems.append(f"the coffee photo: 'labels' is {labels!r:.120}; expected a list of "
                            '{"label": ..., "score": ...}, best first.')
        elif labels[0]["label"] != truth[0][0]:
            problems.append(f"the coffee photo: first label {labels[0]['label']!r}, but Triton's answer is "
                            f"{truth[0][0]!r}.")
    at_limit = _padded(coffee, MAX_UPLOAD_BYTES)
    code, body = send(f"a photo of exactly {MAX_UPLOAD_BYTES} bytes (the limit)", at_limit)
    if code is not None and code != 200:
        problems.append(f"a photo of exactly {MAX_UPLOAD_BYTES} bytes: status {code}, expected 200 (the limit "
                        "itself is allowed: refuse only what is larger).")
    code, body = send(f"{MAX_UPLOAD_BYTES + 1} bytes", _padded(coffee, MAX_UPLOAD_BYTES + 1))
    if code is not None:
        if code != 413:
            problems.append(f"{MAX_UPLOAD_BYTES + 1} bytes: status {code}, expected 413 (Payload Too Large).")
        elif not _limit_mentioned(str(body.get("error", "")), MAX_UPLOAD_BYTES):
            problems.append(f"{MAX_UPLOAD_BYTES + 1} bytes: the error {body.get('error')!r} does not say the limit "
                            f"({MAX_UPLOAD_BYTES} bytes).")
    code, body = send("an empty body", b"")
    if code is not None and (code != 400 or not body.get("error")):
        problems.append(f"an empty body: status {code} {body}, expected 400 with an 'error'.")
    code, body = send("a text file", b"shopping list: eggs, milk")
    if code is not None and (code != 400 or not body.get("error")):
        problems.append(f"a text file: status {code} {body}, expected 400 with the reason Triton gave.")
    code, body = send("Triton down", coffee, make_app(_dead_url(), model=model, classify=classify))
    if code is not None and (code != 503 or not body.get("error")):
        problems.append(f"Triton down: status {code} {body}, expected 503 with an 'error'.")
    if problems:
        hints = []
        if any("raised InferenceError" in p for p in problems):
            hints.append("classify_bytes raises InferenceError when Triton refuses the file: answer 400 with its "
                         "triton_said.")
        if any("raised ServerStartError" in p for p in problems):
            hints.append("It raises ServerStartError when no Triton answers: answer 503.")
        if not hints:
            hints.append("Check the size before calling Triton: len(data) > limit -> 413; empty -> 400.")
        return failed(exercise, *problems, hint=" ".join(hints))
    return passed(exercise, f"'{truth[0][0]}' for the coffee photo; 400, 413 (above {MAX_UPLOAD_BYTES} bytes, not at "
                            "it) and 503 where they belong.")
