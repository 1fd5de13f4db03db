"""Triton's request traces against a real server: turned on for one model through the trace API, written where the
server was told at start, and read back as timelines whose spans equal what the statistics API sums."""

from __future__ import annotations

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import triton_course
from triton_course import tracing
from triton_course.checks._serving import read_until
from triton_course.inference import infer
from triton_course.photos import batch, photo

pytestmark = pytest.mark.server
MODEL = triton_course.MODEL_NAME


@pytest.fixture(scope="module")
def traced(tmp_path_factory, reference_repo):
    trace_file = tmp_path_factory.mktemp("trace") / "trace.json"
    server = triton_course.start_server(reference_repo, extra_args=tracing.server_args(trace_file))
    yield server, trace_file
    server.stop()


def test_nothing_is_traced_until_the_api_turns_it_on(traced):
    server, trace_file = traced
    with httpclient.InferenceServerClient(server.http_address) as triton:
        assert triton.get_trace_settings(model_name=MODEL)["trace_level"] == ["OFF"]
        infer(server.http_url, batch([photo("coffee")]))
    assert not list(trace_file.parent.iterdir())


def test_the_api_refuses_to_move_the_file(traced):
    server, trace_file = traced
    with httpclient.InferenceServerClient(server.http_address) as triton:
        with pytest.raises(InferenceServerException, match="trace file location can not be updated"):
            triton.update_trace_settings(model_name=MODEL, settings={"trace_file": str(trace_file) + ".moved"})


def test_traced_spans_equal_the_statistics(traced):
    server, trace_file = traced
    with httpclient.InferenceServerClient(server.http_address) as triton:
        triton.update_trace_settings(model_name=MODEL, settings={
            "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "5", "log_frequency": "5"})
        before = tracing.statistics_ns(triton.get_inference_statistics(MODEL))
        for _ in range(5):
            infer(server.http_url, batch([photo("coffee")]))
        traces = tracing.read(tracing.wait_for_file(f"{trace_file}.0"))
        after = read_until(lambda: tracing.statistics_ns(triton.get_inference_statistics(MODEL)),
                           lambda now: now["success"] - before["success"] >= 5)
        assert triton.get_trace_settings(model_name=MODEL)["trace_count"] == "0"  # it stopped by itself
    assert [t.model for t in traces] == [MODEL] * 5
    assert after["success"] - before["success"] == 5
    for span in tracing.SPANS:
        traced_ns = sum(t.span_ms(span) for t in traces) * 1e6
        assert abs(traced_ns - (after[span] - before[span])) <= 5 * 1000, span  # within 1 us a request
    first = traces[0].timeline()
    assert first[0][0] == "HTTP_RECV_START" and first[0][1] == 0.0
    assert [name for name, _ in first if name in ("REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_END",
                                                  "REQUEST_END")] == \
        ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_END", "REQUEST_END"]


def test_a_missing_file_says_what_to_check(tmp_path):
    with pytest.raises(TimeoutError, match="get_trace_settings"):
        tracing.wait_for_file(tmp_path / "trace.json.0", timeout=0.2)
