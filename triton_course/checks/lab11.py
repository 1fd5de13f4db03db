"""Checks for lab 11 (monitoring): functions that read Triton's /metrics text, and a PromQL expression,
compared with what the server's own statistics API counts for the requests the check sends."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from .. import loadgen, metrics, monitoring
from ..inference import infer
from ..photos import batch, photo
from . import Verdict, failed, passed

MODEL = "efficientnet_lite0"
OTHER = "efficientnet_copy"  # a second model on the same server: its requests must not be counted
BATCH = 2  # every request the checks send carries two images: requests and inferences differ
RATE_WINDOW = "5s"
REQUEST_RATE, OTHER_RATE = 8.0, 4.0  # requests/s exercise 3's check sends to MODEL and to OTHER


def _images():
    return batch([photo("coffee"), photo("rocket")])


def _send(url: str, model: str, n: int, concurrency: int = 1) -> None:
    images = _images()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: infer(url, images, model=model), range(n)))


def _text(server) -> str:
    with requests.get(server.metrics_url, timeout=10) as response:
        response.raise_for_status()
        return response.text


def _settled(server, models: tuple[str, ...], timeout: float = 10.0) -> tuple[str, dict[str, int]]:
    """The metrics text once its success counters agree with the statistics API for `models`, and those
    counts: Triton counts a request in its metrics a moment after the client has its answer."""
    deadline = time.monotonic() + timeout
    while True:
        text = _text(server)
        counts = {m: loadgen.server_stats(server.http_url, m)["success"] for m in models}
        families = metrics.parse(text)
        if all(metrics.value(families, "nv_inference_request_success", model=m) == counts[m] for m in models) \
                or time.monotonic() > deadline:
            return text, counts
        time.sleep(0.1)


def _call(function, *args):
    """(value as float, None) or (None, what went wrong)."""
    try:
        value = function(*args)
    except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
        return None, f"Your function raised {type(exc).__name__}: {exc}"
    try:
        return float(value), None
    except (TypeError, ValueError):
        return None, f"Your function returned {value!r}; it should return a number."


def _close(a: float, b: float, rel: float = 0.02, abs_: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def check_successful_requests(successful_requests, server) -> Verdict:
    """Exercise 1: `successful_requests(metrics_text, model)` is the number of requests to `model` that
    succeeded, read from the metrics text with prometheus_client."""
    exercise = "Exercise 1 (successful requests)"
    _send(server.http_url, MODEL, 3)
    _send(server.http_url, OTHER, 4)
    text, counts = _settled(server, (MODEL, OTHER))
    expected = counts[MODEL]
    answer, problem = _call(successful_requests, text, MODEL)
    if problem:
        return failed(exercise, problem, hint="Parse with prometheus_client.parser.text_string_to_metric_families.")
    if answer == expected:
        other, why = _call(successful_requests, text, OTHER)
        other_expected = counts[OTHER]
        if other != other_expected:
            return failed(exercise, f"For '{MODEL}' you return {answer:.0f} (right), but for '{OTHER}' "
                                    f"{why or f'{other:.0f}'} instead of {other_expected}.",
                          hint="Use the `model` argument in your label filter, not a fixed name.")
        return passed(exercise, f"{answer:.0f} successful requests to '{MODEL}', as the statistics API counts.")
    families = metrics.parse(text)
    every_model = metrics.value(families, "nv_inference_request_success")
    inferences = metrics.value(families, "nv_inference_count", model=MODEL)
    said = f"Your function returned {answer:g}; the statistics API counts {expected} successful requests to '{MODEL}'."
    if answer == 0:
        return failed(exercise, said, "0 usually means no sample matched: prometheus_client names a counter's "
                                      "samples NAME_total (nv_inference_request_success_total), or the label "
                                      "filter compares with the wrong value (or the counter read is one that "
                                      "stayed at 0, such as nv_inference_request_failure).",
                      hint="Print [s.name for s in family.samples] and s.labels for the family you want.")
    if answer == every_model:
        return failed(exercise, said, f"{answer:g} is the sum over every model on the server (there are two).",
                      hint="Keep only the samples whose labels['model'] equals the model asked for.")
    if answer == inferences:
        return failed(exercise, said, f"{answer:g} is nv_inference_count, the number of inferences (images: "
                                      f"each request of this check carries {BATCH}), not of requests.",
                      hint="Requests that succeeded: nv_inference_request_success.")
    return failed(exercise, said, hint="Sum the nv_inference_request_success samples whose model label is "
                                       "`model` (one per version).")


def check_average_queue_ms(average_queue_ms, server) -> Verdict:
    """Exercise 2: `average_queue_ms(before_text, after_text, model)` is the average time (ms) the
    requests to `model` made between the two readings spent in the queue."""
    exercise = "Exercise 2 (average queue time)"
    url = server.http_url
    _send(url, MODEL, 24, concurrency=8)  # a busy past: long queues, before the first reading
    _send(url, OTHER, 16, concurrency=8)
    before_text, before = _text(server), loadgen.server_stats(url, MODEL)
    # Between the readings: requests to MODEL one at a time (next to no queueing), while the other model
    # is busy with queues of its own.
    other = threading.Thread(target=_send, args=(url, OTHER, 16, 8), daemon=True)
    other.start()
    _send(url, MODEL, 8)
    other.join(60)
    after_text, after = _text(server), loadgen.server_stats(url, MODEL)
    requests_made = after["success"] - before["success"]
    expected = (after["queue_ns"] - before["queue_ns"]) / requests_made / 1e6
    answer, problem = _call(average_queue_ms, before_text, after_text, MODEL)
    if problem:
        return failed(exercise, problem)
    # The metric is in whole microseconds per request, the statistics API in nanoseconds.
    if _close(answer, expected, rel=0.1, abs_=0.01):
        return passed(exercise, f"your average matches the statistics API's for the {requests_made} requests "
                                "between the two readings.")
    said = (f"Your function returned {answer:.4g}; the statistics API says the {requests_made} requests between "
            f"the two readings queued {expected:.4g} ms on average.")
    b, a = metrics.parse(before_text), metrics.parse(after_text)

    def total(families, name, **labels):
        return metrics.value(families, name, **labels)

    queue_us = total(a, "nv_inference_queue_duration_us", model=MODEL)
    success = total(a, "nv_inference_request_success", model=MODEL)
    delta_us = queue_us - total(b, "nv_inference_queue_duration_us", model=MODEL)
    delta_inferences = total(a, "nv_inference_count", model=MODEL) - total(b, "nv_inference_count", model=MODEL)
    delta_all_us = total(a, "nv_inference_queue_duration_us") - total(b, "nv_inference_queue_duration_us")
    delta_all = total(a, "nv_inference_request_success") - total(b, "nv_inference_request_success")
    candidates = [
        (queue_us / success / 1000 if success else None,
         "That is the average since the server started: the counters hold totals, so subtract the first reading "
         "from the second (numerator and denominator)."),
        (delta_us / requests_made if requests_made else None,
         "That is in microseconds: the counter is nv_inference_queue_duration_us; divide by 1000 for ms."),
        (delta_us / delta_inferences / 1000 if delta_inferences else None,
         f"That divides by nv_inference_count, the inferences (each request carries {BATCH} images), "
         "not by the requests."),
        (delta_all_us / delta_all / 1000 if delta_all else None,
         "That mixes every model on the server: filter both counters on the model label."),
        (queue_us / 1000, "That is the total queue time since the start, not an average per request."),
    ]
    # Two mistakes can land on the same number (a quiet window in microseconds next to a busy past in ms):
    # name every one that matches rather than guess.
    matching = [why for value, why in candidates if value is not None and _close(answer, value, rel=0.02, abs_=1e-6)]
    if len(matching) > 1:
        matching = ["Your number fits more than one mistake; one of these:", *matching]
    if matching:
        return failed(exercise, said, *matching)
    return failed(exercise, said, hint="(queue_us after - before) / (successful requests after - before) / 1000, "
                                       "both counters filtered on model.")


def check_request_rate_promql(promql: str, server) -> Verdict:
    """Exercise 3: `promql` gives the requests per second to efficientnet_lite0 over a 5 s window. A real
    Prometheus scrapes the server while the check sends a known rate to it (and another to a second model)."""
    exercise = "Exercise 3 (PromQL request rate)"
    if not isinstance(promql, str) or not promql.strip():
        return failed(exercise, "promql is empty: write the PromQL expression as a string.")
    reason = monitoring.unavailable_reason()
    if reason:
        return failed(exercise, "Not checked: this check runs your query on a real Prometheus, and there is none "
                                f"here ({reason.split('.')[0]}).", hint=monitoring.INSTALL_FIX)
    with known_request_rates(server) as load:
        return judge_request_rate_promql(promql, load)


@dataclass
class KnownLoad:
    """A real Prometheus that scraped the server while REQUEST_RATE went to MODEL and OTHER_RATE to OTHER."""
    prometheus: monitoring.Prometheus
    when: float  # a moment inside the load, with the whole rate window behind it


@contextmanager
def known_request_rates(server, seconds: float = 7.0):
    """Start Prometheus on the server, send the known rates to both models, and keep Prometheus running while
    the caller asks it (judge_request_rate_promql); one load can judge several queries."""
    images = _images()
    with monitoring.Prometheus([monitoring.target_of(server.metrics_url)], interval_s=0.5) as prometheus:
        prometheus.wait_until_scraped()
        other = threading.Thread(target=loadgen.measure_rate, args=(server.http_url, images),
                                 kwargs=dict(rate=OTHER_RATE, seconds=seconds, model=OTHER), daemon=True)
        other.start()
        loadgen.measure_rate(server.http_url, images, rate=REQUEST_RATE, seconds=seconds, model=MODEL)
        other.join(30)
        when = time.time() - 0.5
        time.sleep(1.5)  # Prometheus scrapes every 0.5 s: let it take the samples up to `when`
        yield KnownLoad(prometheus, when)


def judge_request_rate_promql(promql: str, load: KnownLoad) -> Verdict:
    """Exercise 3's verdict on `promql`, asked of the Prometheus that saw the known load."""
    exercise = "Exercise 3 (PromQL request rate)"
    rate, other_rate = REQUEST_RATE, OTHER_RATE
    try:
        series = load.prometheus.query_range(promql, load.when, load.when, step_s=1)
    except ValueError as exc:
        return failed(exercise, "Prometheus refused your query.", hint=str(exc).split(": ", 1)[-1])
    values = [(labels, points[-1][1]) for labels, points in series if points]
    said = f"The check sent {rate:g} requests/s to '{MODEL}' (and {other_rate:g}/s to '{OTHER}')"
    if not values:
        return failed(exercise, said + "; your query returned no data.",
                      hint="Check the metric's name (nv_inference_request_success) and the label value.")
    if len(values) > 1:
        shown = ", ".join(f"{labels.get('model', '?')}: {value:.1f}" for labels, value in values)
        return failed(exercise, said + f"; your query returns {len(values)} series ({shown}).",
                      hint=f'Filter on the model label ({{model="{MODEL}"}}), and sum(...) across versions.')
    value = values[0][1]
    if _close(value, rate, rel=0.25):
        return passed(exercise, f"your query says about {rate:g} requests/s during a load of {rate:g}/s.")
    said += f"; your query says {value:.2f}."
    # Name the mistake whose value is nearest to the answer.
    mistakes = {
        rate + other_rate: "That is the rate of both models together: filter on the model label.",
        rate * BATCH: f"That counts inferences (images, {BATCH} per request): nv_inference_count is not the "
                      "request count.",
    }
    nearest = min(mistakes, key=lambda v: abs(math.log(value / v)) if value > 0 else math.inf)
    if value > 2.5 * max(mistakes):  # the load alone sent rate * seconds requests: a total, not a rate
        why = ("That is a count since the server started, not a rate: counters only grow; "
               f"rate(counter[{RATE_WINDOW}]) is their increase per second.")
    elif value > 0 and _close(value, nearest, rel=0.25):
        why = mistakes[nearest]
    else:
        why = f"Use rate() over a {RATE_WINDOW} window of the successful-request counter."
    return failed(exercise, said, why,
                  hint=f'sum(rate(nv_inference_request_success{{model="{MODEL}"}}[{RATE_WINDOW}]))')
