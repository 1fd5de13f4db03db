"""The course's load generator against a real server: counts, percentiles, the server's view."""

from __future__ import annotations

import numpy as np
import pytest

from triton_course import loadgen, start_server
from triton_course.photos import photo, preprocess

pytestmark = pytest.mark.server

FAST = dict(warmup_s=0.3, window_s=0.5, max_windows=6)


@pytest.fixture(scope="module")
def srv(reference_repo):
    with start_server(reference_repo) as s:
        yield s


@pytest.fixture(scope="module")
def one_image():
    return preprocess(photo("coffee"))[None]


def test_closed_loop_counts_every_request_and_reads_the_server(srv, one_image):
    result = loadgen.measure(srv.http_url, one_image, concurrency=2, label="http", **FAST)
    assert result.errors == 0 and result.requests > 0
    assert result.throughput > 0
    assert 0 < result.percentile(50) <= result.percentile(99)
    assert result.server["requests"] > 0 and result.server["compute_ms"] > 0
    assert result.server["avg_batch"] >= 1
    row = result.row()
    assert row["load"] == "c=2" and row["errors"] == 0


def test_grpc_sweep_and_table(srv, one_image):
    results = loadgen.sweep(srv.grpc_address, one_image, concurrencies=(1, 2), protocol="grpc", label="grpc", **FAST)
    assert [r.concurrency for r in results] == [1, 2]
    text = loadgen.table(results)
    assert text.splitlines()[0].split()[:3] == ["config", "load", "infer/s"]
    assert len(text.splitlines()) == 3


def test_shared_memory_input_serves_every_request_and_is_released(srv, one_image):
    result = loadgen.measure(srv.grpc_address, one_image, concurrency=2, protocol="grpc", shared_memory=True, **FAST)
    assert result.requests > 0 and result.errors == 0, result.first_error
    assert result.server["requests"] > 0
    with srv.grpc_client() as client:  # the region is unregistered afterwards
        regions = client.get_system_shared_memory_status(as_json=True).get("regions", {})
    assert not [name for name in regions if name.startswith("course_loadgen_")]


def test_errors_are_counted_not_dropped(srv, one_image):
    result = loadgen.measure(srv.http_url, one_image, concurrency=1, input_name="images", **FAST)
    assert result.requests > 0 and result.errors == result.requests
    assert result.throughput == 0
    assert "unexpected inference input 'images'" in result.first_error


def test_open_loop_sends_on_schedule(srv, one_image):
    result = loadgen.measure_rate(srv.http_url, one_image, rate=8, seconds=1.0)
    assert result.requests == 8 and result.errors == 0
    assert result.rate == 8 and result.row()["load"] == "8/s"


def test_plot_draws_one_curve_per_label(srv, one_image):
    import matplotlib

    matplotlib.use("Agg")
    results = [loadgen.Result("a", c, None, 10, 0, 1.0, np.array([1.0, 2.0, 3.0])) for c in (1, 2)]
    results.append(loadgen.Result("b", 1, None, 10, 0, 1.0, np.array([2.0])))
    ax = loadgen.plot(results)
    assert len(ax.get_lines()) == 2
    assert ax.get_xlabel() == "p99 latency (ms)"
