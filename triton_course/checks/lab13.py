"""Checks for lab 13 (security): the switches that put Triton's restricted APIs behind a key (tried on a
server started with them), a model reload through gRPC with the key, a command line for the logs with the
key masked, a gRPC client for a server that wants mutual TLS (tried against one), and a scan of a notebook's
outputs for a secret."""

from __future__ import annotations

import contextlib
import io
import secrets
import tempfile
import time

import nbformat
import requests
import tritonclient.grpc as grpcclient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from tritonclient.utils import InferenceServerException

from .. import ServerStartError
from .. import server as make_server
from ..errors import CourseError
from ..inference import infer
from ..paths import MODEL_NAME
from ..photos import batch, photo
from ..runtimes.base import ADMIN_HEADER, GRPC_HEADER_PREFIX
from ..tls import make_certificates
from . import Verdict, failed, passed

# What must be refused without the key: (API group, method, path, body).
RESTRICTED_PROBES = [
    ("model-repository", "post", "/v2/repository/index", {}),
    ("shared-memory", "get", "/v2/systemsharedmemory/status", None),
    ("trace", "get", "/v2/trace/setting", None),
    ("logging", "get", "/v2/logging", None),
]


def _call(method: str, url: str, body, headers=None) -> int:
    with getattr(requests, method)(url, json=body, headers=headers or {}, timeout=30) as answer:
        return answer.status_code


def check_restriction_args(restriction_args, repository=None) -> Verdict:
    """Exercise 1: `restriction_args(key)` returns Triton's arguments that put the model-repository,
    shared-memory, trace and logging APIs behind the header `admin-key: <key>`, over HTTP and gRPC. The
    check starts a server with them (and a key of its own) and sends requests without and with the key."""
    exercise = "Exercise 1 (restricted APIs)"
    key = secrets.token_urlsafe(16)
    try:
        args = restriction_args(key)
    except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
        return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}")
    if not isinstance(args, (list, tuple)) or not all(isinstance(a, str) for a in args) or not args:
        return failed(exercise, f"restriction_args returned {args!r:.100}; it should return a list of strings, "
                                "one per argument (\"--name=value\").")
    if not any(key in arg for arg in args):
        return failed(exercise, "None of your arguments contains the key your function was given: use the `key` "
                                "parameter, do not write a key into the code.")
    server = make_server(repository, model_control_mode="explicit", load_models=[MODEL_NAME], extra_args=list(args))
    try:
        server.start()
    except ServerStartError as exc:
        # A bad option makes Triton print its usage, then what it did not like ("Bad option: ...").
        log = server.log_text()
        said = log[log.index("Bad option"):].strip() if "Bad option" in log else (exc.triton_said or "")
        return failed(exercise, "Triton did not start with your arguments.",
                      triton_said=said.replace(key, "<key>"),
                      hint="The form is --http-restricted-api=GROUP,GROUP,...:HEADER=VALUE (and the same after "
                           "--grpc-restricted-protocol=).")
    problems = []
    with server:
        url = server.http_url
        for group, method, path, body in RESTRICTED_PROBES:
            without = _call(method, f"{url}{path}", body)
            with_key = _call(method, f"{url}{path}", body, {ADMIN_HEADER: key})
            if without != 403:
                problems.append(f"HTTP {path} ({group}) answered {without} without the key; expected 403.")
            elif with_key != 200:
                problems.append(f"HTTP {path} ({group}) refused the header '{ADMIN_HEADER}: <key>' ({with_key}): "
                                f"the header's name must be {ADMIN_HEADER}.")
        grpc_problem = _grpc_probe(server, key)
        if grpc_problem:
            problems.append(grpc_problem)
        try:
            infer(url, batch([photo("coffee")]))
        except CourseError:  # refused inference is what we report
            problems.append("Inference is refused too: this exercise keeps inference open to clients "
                            "(restrict only the four groups).")
    if problems:
        return failed(exercise, *problems,
                      hint="Two switches, one per protocol, each with the four groups: "
                           "--http-restricted-api=model-repository,shared-memory,trace,logging:admin-key=KEY and "
                           "--grpc-restricted-protocol=<the same>.")
    return passed(exercise, "without the key the four API groups are refused over HTTP (403) and gRPC; with it "
                            "they answer; inference stays open.")


def _grpc_probe(server, key: str) -> str | None:
    """What is wrong with the gRPC side, or None."""
    with server.grpc_client() as client:
        try:
            client.get_model_repository_index()
            return ("gRPC: the repository index answered without the key: the HTTP switch does not cover gRPC "
                    "(--grpc-restricted-protocol).")
        except InferenceServerException:  # a refusal is what we want here
            pass
        try:
            client.get_model_repository_index(headers={GRPC_HEADER_PREFIX + ADMIN_HEADER: key})
        except InferenceServerException as exc:
            return f"gRPC: refused even with the key ({str(exc).splitlines()[0].replace(key, '<key>')})."
    return None


def _load_count(server, name: str) -> int:
    return server.log_text().count(f"successfully loaded '{name}'")


def check_reload_model(reload_model, server, key: str, name: str = MODEL_NAME) -> Verdict:
    """Exercise 2: `reload_model(grpc_address, name, key)` reloads `name` through the gRPC
    model-repository API of a server whose API is behind `key`."""
    exercise = "Exercise 2 (reload with the key)"
    loads = _load_count(server, name)
    try:
        reload_model(server.grpc_address, name, key)
    except Exception as exc:  # noqa: BLE001 - the learner's code; quote Triton's refusal
        message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
        message = str(message).replace(key, "<key>")
        if "restricted" in message:
            return failed(exercise, "Triton refused your request: it did not carry the key where Triton looks.",
                          triton_said=message,
                          hint=f"gRPC clients send the header with a prefix: headers={{'{GRPC_HEADER_PREFIX}"
                               f"{ADMIN_HEADER}': key}} on client.load_model(...).")
        return failed(exercise, f"Your function raised {type(exc).__name__}.", triton_said=message)
    if _load_count(server, name) <= loads:
        return failed(exercise, f"Your function returned, but Triton's log shows no new load of '{name}'.",
                      hint="client.load_model(name, headers=...) loads it again (in explicit mode).")
    try:
        infer(server.http_url, batch([photo("coffee")]), model=name)
    except CourseError as exc:
        return failed(exercise, f"After your reload '{name}' does not answer: {str(exc).splitlines()[0]}",
                      hint="Load it again (client.load_model) after an unload.")
    return passed(exercise, f"'{name}' was reloaded through gRPC with the key, and it answers.")


def check_safe_command(safe_command, server, key: str | None = None) -> Verdict:
    """Exercise 3: `safe_command(server)` returns the server's command line as one string for a log, with
    the key masked, and the rest (the restriction switches included) kept. `key`: the server's admin key
    (by default the one given to start_server, else the value at the end of its restriction switches)."""
    exercise = "Exercise 3 (a command line without the key)"
    key = key or server.admin_key or next((a.rsplit("=", 1)[-1] for a in server.command() if "restricted" in a),
                                          None)
    if not key:
        return failed(exercise, "This server runs without a key: start it with your restriction arguments first.")
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            text = safe_command(server)
    except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
        return failed(exercise, f"Your function raised {type(exc).__name__}: {str(exc).replace(key, '<key>')}")
    problems = []
    if key in printed.getvalue():
        problems.append("Your function PRINTS the key: whatever a cell prints is saved in the notebook.")
    if not isinstance(text, str):
        return failed(exercise, *problems, f"safe_command returned {type(text).__name__}; it should return a str.")
    if key in text:
        problems.append(f"The key is in your text ({text.count(key)} times): anyone who reads the log can use the "
                        "restricted APIs.")
    restricted = [a.split("=", 1)[0] for a in server.command() if key in a]
    missing = [switch for switch in restricted if switch not in text]
    if missing:
        problems.append(f"{', '.join(missing)} is missing: the log should still say which APIs are restricted "
                        "(mask the key, keep the switch).")
    if "--model-repository=" not in text:
        problems.append("The rest of the command (--model-repository=..., the ports) is missing.")
    if problems:
        return failed(exercise, *problems, hint="Replace the key itself with a mask, e.g. arg.replace(key, '***'), "
                                                "in every argument.")
    return passed(exercise, f"{len(restricted)} restriction switches shown, the key masked.")


# What the server's log says about a refused TLS handshake (gRPC's TLS library), and what it means here.
HANDSHAKE_FAILURES = {
    "wrong version number": (
        "Your client spoke plain gRPC to a port that speaks TLS: the server's TLS library read its first bytes "
        "as a TLS hello of an unknown version, and closed the connection.",
        "Ask for TLS: InferenceServerClient(grpc_address, ssl=True, ...)."),
    "peer did not return a certificate": (
        "Your client spoke TLS but showed no certificate, and this server admits only clients with one signed by "
        "its CA (mutual TLS).",
        "Pass the client's key and certificate too: private_key=str(certs.client_key), "
        "certificate_chain=str(certs.client_cert)."),
}
SERVER_LOG = "Triton's log (gRPC's TLS library)"
CLIENT = "tritonclient (your client)"


def _handshake_refusal(server, logged: int) -> str | None:
    """The server's own line about the last refused handshake after `logged` characters of its log, or None."""
    time.sleep(0.5)  # the server logs it as it closes the connection
    lines = [line.split("] ", 1)[-1].strip() for line in server.log_text()[logged:].splitlines()
             if "Handshake failed" in line]
    return lines[-1] if lines else None


def check_tls_client(tls_client, certs=None) -> Verdict:
    """Exercise 4: `tls_client(grpc_address, certs)` returns a tritonclient.grpc client that reaches a server
    started with mutual TLS (`certs.server_args(mutual=True)`). The check makes its own certificates (or uses
    `certs`), starts that server, calls the learner's function and sends a health request and an inference."""
    if certs is None:
        with tempfile.TemporaryDirectory(prefix="lab13-certs-") as folder:
            return check_tls_client(tls_client, make_certificates(folder))
    exercise = "Exercise 4 (a client for mutual TLS)"
    server = make_server(model_control_mode="explicit", load_models=[MODEL_NAME],
                         extra_args=certs.server_args(mutual=True))
    with server.start():
        logged = len(server.log_text())
        try:
            client = tls_client(server.grpc_address, certs)
        except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
            return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}")
        if not isinstance(client, grpcclient.InferenceServerClient):
            return failed(exercise, f"tls_client returned {type(client).__name__}; it should return the "
                                    "tritonclient.grpc InferenceServerClient it made.")
        try:
            with client:
                client.is_server_live(client_timeout=10)
                image = grpcclient.InferInput("input", [1, 3, 224, 224], "FP32")
                image.set_data_from_numpy(batch([photo("coffee")]))
                client.infer(MODEL_NAME, [image], client_timeout=60)
        except InferenceServerException as exc:
            said = _handshake_refusal(server, logged)
            client_said = f"{exc.status()}: {exc.message()}"
            for words, (what, hint) in HANDSHAKE_FAILURES.items():
                if said and words in said:
                    return failed(exercise, what, f"Your client's error: {client_said}", triton_said=said,
                                  said_by=SERVER_LOG, hint=hint)
            if "CERTIFICATE_VERIFY_FAILED" in client_said:
                return failed(exercise, "Your client could not verify the server's certificate: it trusts the "
                                        "system's CAs, and the lab's CA is not one of them.",
                              triton_said=client_said, said_by=CLIENT,
                              hint="Trust the lab's CA: root_certificates=str(certs.ca_cert).")
            return failed(exercise, "The server refused your client.",
                          f"The server's log: {said or '(nothing about it)'}", triton_said=client_said,
                          said_by=CLIENT, hint="InferenceServerClient(grpc_address, ssl=True, root_certificates=..., "
                                               "private_key=..., certificate_chain=...), each a path from `certs` "
                                               "as a str.")
    return passed(exercise, "your client verified the server against the lab's CA, showed its own certificate, "
                            "and its inference was answered.")


def _notebook_with(secret: str):
    """A notebook with the secret in the outputs of cells 1 (a print), 3 (a result) and 5 (an error), in
    the source of cell 6 (not an output) and nowhere in cells 0, 2 and 4."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# A notebook that used a key"),
        new_code_cell("print(key)", outputs=[new_output("stream", name="stdout", text=f"{secret}\n")]),
        new_code_cell("print('safe')", outputs=[new_output("stream", name="stdout", text="safe\n")]),
        new_code_cell("server.admin_headers", outputs=[new_output(
            "execute_result", data={"text/plain": f"{{'admin-key': '{secret}'}}"}, execution_count=3)]),
        new_code_cell("1 + 1", outputs=[new_output("execute_result", data={"text/plain": "2"}, execution_count=4)]),
        new_code_cell("connect(key)", outputs=[new_output(
            "error", ename="ValueError", evalue="bad key", traceback=[f"ValueError: key {secret} refused"])]),
        new_code_cell(f"key = '{secret}'  # typed into a cell: bad, but not an output", outputs=[]),
    ]
    return nb


EXPECTED_CELLS = [1, 3, 5]


def check_find_secret(find_secret, tmp_dir) -> Verdict:
    """Stretch: `find_secret(notebook_path, secret)` returns the indices of the cells whose OUTPUTS contain
    the secret (streams, results and displays of any type, errors), sorted."""
    exercise = "Stretch (find a secret in outputs)"
    secret = secrets.token_urlsafe(12)
    path = tmp_dir / "notebook_with_a_secret.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(_notebook_with(secret), path)
    try:
        found = find_secret(path, secret)
    except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
        return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}",
                      hint="nbformat.read(path, as_version=4); each code cell has .outputs.")
    try:
        found = sorted(int(i) for i in found)
    except (TypeError, ValueError):
        return failed(exercise, f"find_secret returned {found!r:.100}; it should return a list of cell indices.")
    if found == EXPECTED_CELLS:
        return passed(exercise, "the print, the displayed result and the error traceback were all found.")
    kinds = {1: "a printed line (stream output)", 3: "a cell's result (execute_result data)",
             5: "an error's traceback", 6: "a cell's source, not its output", 0: "a markdown cell",
             2: "a cell without it", 4: "a cell without it"}
    problems = [f"The test notebook has the secret in the outputs of cells {EXPECTED_CELLS}; you found {found}."]
    problems += [f"You missed cell {i}: {kinds[i]}." for i in EXPECTED_CELLS if i not in found]
    problems += [f"Cell {i} is {kinds.get(i, 'not in the notebook')}." for i in found if i not in EXPECTED_CELLS]
    return failed(exercise, *problems, hint="Look at every output type: 'text' of streams, every value of 'data' "
                                            "(results and displays), 'traceback' and 'evalue' of errors.")
