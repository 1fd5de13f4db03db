"""A small web app in front of Triton (Flask): upload a photo, see the top-5 labels, their
probabilities and the latency; or POST the photo to a JSON API.

It sends the photo's bytes as they are to the ensemble of lesson 9 (`classify_image`), so it holds no
model code. It checks uploads itself (size, empty, not an image) so that users get a precise message,
sets a timeout on every Triton call, and answers with a clear message, never a stack trace, when
Triton is down, the model is not ready, or Triton refuses the request.

    python -m triton_course.webapp --triton-url http://127.0.0.1:8000 [--port 8080] [--host 127.0.0.1]

Every URL in its page is relative, so the app also works under a path prefix, such as JupyterLab's
`/proxy/<port>/` (jupyter-server-proxy): that is how a browser opens it on a pod while it listens on
127.0.0.1 (`jupyter_proxy`).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import threading
import time
from dataclasses import dataclass

import requests
from flask import Flask, jsonify, render_template_string, request
from PIL import Image, UnidentifiedImageError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import make_server

from .ensemble import ENSEMBLE, classify_bytes
from .errors import InferenceError, ServerStartError

MAX_UPLOAD_MB = 10
TRITON_TIMEOUT_S = 10.0

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Triton course: classify a photo</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}.error{color:#b00020}
td{padding:.2em 1em}</style></head>
<body>
<h1>Classify a photo</h1>
<form method="post" action="classify" enctype="multipart/form-data">
  <input type="file" name="photo" id="photo" accept="image/*">
  <button type="submit" id="submit">Classify</button>
</form>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
{% if results %}
<table id="results"><tr><th>label</th><th>probability</th></tr>
{% for label, score in results %}
<tr><td class="label">{{ label }}</td><td class="score">{{ "%.3f"|format(score) }}</td></tr>
{% endfor %}</table>
<p id="latency">Triton answered in {{ "%.1f"|format(latency_ms) }} ms ({{ model }}).</p>
{% endif %}
<p><small>Photos up to {{ max_mb }} MB; JPEG, PNG and the other formats Pillow reads.</small></p>
</body></html>"""


class UploadError(ValueError):
    """An upload the app refuses before it reaches Triton; the message is for the user."""


def check_upload(data: bytes, max_bytes: int) -> None:
    if not data:
        raise UploadError("The upload is empty: choose a photo file.")
    if len(data) > max_bytes:
        raise UploadError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a full decode: verify() lets a truncated JPEG through
    except UnidentifiedImageError:
        raise UploadError("That file is not an image (JPEG, PNG, ...): choose a photo.") from None
    except Exception:  # noqa: BLE001 - a damaged file raises several types
        raise UploadError("That image is damaged and cannot be decoded: choose another file.") from None


def create_app(triton_url: str, *, model: str = ENSEMBLE, max_upload_mb: float = MAX_UPLOAD_MB,
               timeout_s: float = TRITON_TIMEOUT_S) -> Flask:
    """The Flask app for the Triton server at `triton_url` (HTTP)."""
    app = Flask(__name__)
    max_bytes = int(max_upload_mb * 1e6)
    # Werkzeug refuses larger bodies before reading them (413), a little above the file limit for the form's framing.
    app.config["MAX_CONTENT_LENGTH"] = max_bytes + 64 * 1024

    def classify(data: bytes) -> tuple[int, dict]:
        """(HTTP status, JSON body) for one photo."""
        try:
            check_upload(data, max_bytes)
        except UploadError as exc:
            return 400, {"error": str(exc)}
        start = time.perf_counter()
        try:
            top = classify_bytes(triton_url, [data], model=model, timeout=timeout_s)[0]
        except ServerStartError:
            return 503, {"error": "The inference server does not answer; try again in a minute."}
        except InferenceError as exc:
            said = exc.triton_said or ""
            if "unknown model" in said or "not ready" in said or "unavailable" in said.lower():
                return 503, {"error": f"The model '{model}' is not ready on the inference server; try again later."}
            return 422, {"error": f"The inference server could not classify this file: {said}"}
        latency_ms = (time.perf_counter() - start) * 1000
        return 200, {"model": model, "latency_ms": round(latency_ms, 1),
                     "labels": [{"label": label, "score": score} for label, score in top]}

    def page(status: int, body: dict | None = None):
        body = body or {}
        results = [(r["label"], r["score"]) for r in body.get("labels", [])]
        return render_template_string(PAGE, error=body.get("error"), results=results, model=body.get("model"),
                                      latency_ms=body.get("latency_ms", 0), max_mb=max_upload_mb), status

    @app.get("/")
    def index():
        return page(200)

    @app.post("/classify")
    def classify_form():
        upload = request.files.get("photo")
        status, body = classify(upload.read() if upload else b"")
        return page(status, body)

    @app.post("/api/classify")
    def classify_api():
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("photo")
            data = upload.read() if upload else b""
        else:  # the photo is the body, whatever Content-Type a client or a proxy put on it (never parsed as a form)
            data = request.get_data()
        status, body = classify(data)
        return jsonify(body), status

    @app.get("/healthz")
    def healthz():
        from .clients import client

        try:
            triton = client(triton_url, "http", timeout=timeout_s)
            try:
                ready = triton.is_server_ready() and triton.is_model_ready(model)
            finally:
                triton.close()
        except Exception:  # noqa: BLE001 - down is an answer here
            ready = False
        return jsonify({"triton": triton_url, "model": model, "ready": ready}), 200 if ready else 503

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_):
        message = f"The file is larger than {max_upload_mb:.0f} MB: choose a smaller photo."
        if request.path.startswith("/api/"):
            return jsonify({"error": message}), 413
        return page(413, {"error": message})

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return jsonify({"error": exc.description}), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc):
        app.logger.exception("unexpected error")  # the trace goes to the log, never to the browser
        return jsonify({"error": "Something went wrong on the server; it has been logged."}), 500

    return app


class WebApp:
    """The app served by Werkzeug from a background thread of this process (so it stops with the
    notebook's kernel); binds 127.0.0.1 unless `host` says otherwise."""

    def __init__(self, triton_url: str, *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                 **app_options):
        if quiet:  # one access-log line per request would fill a notebook's output
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.app = create_app(triton_url, **app_options)
        self.server = make_server(host, port, self.app, threaded=True)
        self.host, self.port = host, self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"

    def start(self) -> "WebApp":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def __enter__(self) -> "WebApp":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class ProxyAddress:
    """Where a browser opens the app through JupyterLab (jupyter-server-proxy), and what the check found."""

    url: str
    works: bool | None  # None: not checked (no JupyterLab found, or it needs a password)
    note: str


def jupyter_server(pid: int | None = None) -> dict | None:
    """The running Jupyter server with process id `pid` (default: this kernel's parent, the server that
    started it), as jupyter_server lists it (url, base_url, port, token, ...); None when there is none
    (a kernel run by nbconvert or pytest, a plain Python)."""
    from jupyter_server.serverapp import list_running_servers

    pid = os.getppid() if pid is None else pid
    return next((info for info in list_running_servers() if info.get("pid") == pid), None)


def jupyter_proxy(port: int, server: dict | None = None) -> ProxyAddress:
    """The address of the app on `port` (listening on 127.0.0.1) through the JupyterLab that runs this
    kernel: JupyterLab's own address + `proxy/<port>/`. The browser already holds JupyterLab's login,
    so the app is no more exposed than JupyterLab itself. Checks the path by asking the app's
    `/healthz` through that JupyterLab, as the browser will."""
    server = jupyter_server() if server is None else server
    base = (server or {}).get("base_url") or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    path = f"{base.rstrip('/')}/proxy/{port}/"
    pod = os.environ.get("RUNPOD_POD_ID")
    if pod and server:  # RunPod's HTTPS proxy in front of JupyterLab's port (docs/pods.md)
        url = f"https://{pod}-{server['port']}.proxy.runpod.net{path}"
    elif os.environ.get("JUPYTERHUB_SERVICE_PREFIX"):
        url = f"<your JupyterHub address>{path}"
    elif server:
        url = server["url"].rstrip("/").removesuffix(base.rstrip("/")) + path
    else:
        return ProxyAddress(f"<your JupyterLab address>{path}", None,
                            "This kernel was not started by a running JupyterLab (nbconvert, pytest or a terminal), "
                            "so the address is a pattern: take the address of JupyterLab in your browser, up to "
                            "the part before /lab, and add the path shown.")
    if server.get("secure") or not server.get("token"):
        return ProxyAddress(url, None, "Not checked from here (JupyterLab uses HTTPS or a password): open it.")
    local = f"http://127.0.0.1:{server['port']}{path}healthz"
    try:
        answer = requests.get(local, headers={"Authorization": f"token {server['token']}"}, timeout=10)
    except requests.RequestException as exc:
        return ProxyAddress(url, False, f"JupyterLab did not answer at {local.split('/proxy/')[0]}: {exc}")
    if answer.status_code == 404:
        return ProxyAddress(url, False, "This JupyterLab has no jupyter-server-proxy (404 at /proxy/): install it "
                            "into the Python that runs JupyterLab (pip install jupyter-server-proxy==4.6.0), "
                            "restart JupyterLab, and run this cell again.")
    if answer.status_code in (200, 503):  # the app answered (503: it is up but Triton is not ready)
        return ProxyAddress(url, True, f"Checked: the app answered through JupyterLab's proxy "
                            f"(GET {path}healthz -> {answer.status_code}).")
    return ProxyAddress(url, False, f"JupyterLab's proxy answered {answer.status_code} for {path}healthz: "
                        f"{answer.text[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triton_course.webapp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--triton-url", required=True, help="Triton's HTTP address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", default=ENSEMBLE)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes the app to the network")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    app = WebApp(args.triton_url, host=args.host, port=args.port, quiet=False, model=args.model)
    print(f"Serving on {app.url} (Ctrl-C stops it); Triton at {args.triton_url}", flush=True)
    try:
        app.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
