"""Checks of lab 00 (set-up): reading a server's metadata and health over plain HTTP."""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

from ..artifact import reference_config
from ..repository import write_config
from ..runtimes import server as make_server
from . import Verdict, failed, passed

TIME_LIMIT_SECONDS = 10  # a health check that takes longer is no use to a load balancer


def _call(function, *args):
    """(result, None, seconds) or (None, the exception, seconds)."""
    started = time.monotonic()
    try:
        return function(*args), None, time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - the learner's code may raise anything; the verdict says what
        return None, exc, time.monotonic() - started


def check_server_version(server_version, server) -> Verdict:
    """Exercise 1: `server_version(url)` returns the version string from GET /v2."""
    exercise = "Exercise 1"
    truth = server.metadata()["version"]
    answer, error, _ = _call(server_version, server.http_url)
    if error is not None:
        return failed(exercise, f"server_version({server.http_url!r}) raised {type(error).__name__}: {error}",
                      hint="GET url + '/v2' with requests, then read the JSON answer's 'version' field.")
    if isinstance(answer, dict):
        return failed(exercise, "it returned the whole metadata dict, not the version string",
                      hint="Return only answer['version'].")
    if not isinstance(answer, str):
        return failed(exercise, f"it returned {answer!r} ({type(answer).__name__}), not a string",
                      hint="Parse the body with response.json() and return its 'version' field (a str).")
    if answer != truth:
        return failed(exercise, f"it returned {answer!r}, but the server says its version is {truth!r}",
                      hint="Ask the server (GET /v2); do not type a version in.")
    return passed(exercise, "your function reads the version the server reports.")


@contextlib.contextmanager
def _live_but_not_ready():
    """A real server that is up (live) but not ready: its only model has no version folder."""
    with tempfile.TemporaryDirectory(prefix="lab00-") as folder:
        config = reference_config()
        config.name = "no_version_yet"
        write_config(Path(folder) / config.name, config)
        with contextlib.redirect_stdout(io.StringIO()):  # the load failure is the point, not news
            with make_server(folder, strict=False) as unready:
                yield unready


def check_is_ready(is_ready, server) -> Verdict:
    """Exercise 2: `is_ready(url)` is True for a ready server, False for one that is live but not
    ready, and False (not an exception) for a server that is stopped."""
    exercise = "Exercise 2"
    problems = []
    answer, error, seconds = _call(is_ready, server.http_url)
    if error is not None:
        problems.append(f"on the running server it raised {type(error).__name__}: {error}")
    elif answer is not True:
        problems.append(f"on the running, ready server it returned {answer!r}, not True")
    with _live_but_not_ready() as unready:
        not_ready_answer, not_ready_error, _ = _call(is_ready, unready.http_url)
        stopped_url = unready.http_url
    # The server above is stopped now: nothing listens on its port any more.
    stopped_answer, stopped_error, stopped_seconds = _call(is_ready, stopped_url)
    if not_ready_error is not None:
        problems.append(f"on a server that is live but not ready it raised {type(not_ready_error).__name__}: "
                        f"{not_ready_error}")
    elif not_ready_answer is not False:
        problems.append(f"on a server that is live but not ready (a model failed to load) it returned "
                        f"{not_ready_answer!r}, not False")
    if stopped_error is not None:
        problems.append(f"on a stopped server it raised {type(stopped_error).__name__} instead of returning False")
    elif stopped_answer is not False:
        problems.append(f"on a stopped server it returned {stopped_answer!r}, not False")
    if max(seconds, stopped_seconds) > TIME_LIMIT_SECONDS:
        problems.append(f"it took {max(seconds, stopped_seconds):.0f} s to answer")
    if not problems:
        return passed(exercise, "True for the ready server, False for one that is only live and for a stopped one.")
    hints = []
    if any("raised" in p for p in problems):
        hints.append("catch requests.RequestException (nothing answers) and return False")
    if not_ready_answer is True and answer is True:
        hints.append("ask /v2/health/ready, not /v2/health/live: a live server may still be unable to serve")
    answers = (answer, not_ready_answer, stopped_answer)
    if any(a is not None and not isinstance(a, bool) for a in answers):
        hints.append("return a bool: response.status_code == 200")
    if any("took" in p for p in problems):
        hints.append("pass timeout=... to requests.get")
    hint = "; ".join(hints)
    return failed(exercise, *problems, hint=hint[:1].upper() + hint[1:] + ".")


def check_wait_until_ready(wait_until_ready, server) -> Verdict:
    """Stretch: `wait_until_ready(url, timeout)` polls until ready (True) or the deadline passes (False)."""
    exercise = "Stretch exercise"
    answer, error, seconds = _call(wait_until_ready, server.http_url, 5)
    if error is not None:
        return failed(exercise, f"on the ready server it raised {type(error).__name__}: {error}")
    if answer is not True or seconds > 2:
        return failed(exercise, f"on the ready server it returned {answer!r} after {seconds:.1f} s",
                      hint="Ask first, wait after: a ready server should answer True at once.")
    with _live_but_not_ready() as unready:
        answer, error, seconds = _call(wait_until_ready, unready.http_url, 1.5)
    if error is not None:
        return failed(exercise, f"on a server that never gets ready it raised {type(error).__name__}: {error}")
    if answer is not False or not 1.4 <= seconds <= 4:
        return failed(exercise, f"with timeout=1.5 on a server that never gets ready it returned {answer!r} "
                                f"after {seconds:.1f} s",
                      hint="Loop until time.monotonic() passes a deadline, with a short pause between tries; "
                           "then return False.")
    return passed(exercise, "True at once for a ready server, False after the timeout for one that never gets ready.")
