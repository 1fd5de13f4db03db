"""perf_analyzer: its command line and reports (fast, from a recorded report), and the real program measuring
a real embedded server over gRPC and HTTP; what it says when it cannot start; the in-process ceiling."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import triton_course
from triton_course import artifact, course_root, inprocess, perf_analyzer
from triton_course.loadgen import Result
from triton_course.paths import MODEL_NAME
from triton_course.perf_analyzer import Measurement, PerfAnalyzerError
from triton_course.photos import photo, preprocess


@pytest.fixture(scope="module")
def h100() -> dict:
    """A real perf_analyzer run (its printed report and -f CSV), recorded on an H100 (docs/benchmarks/h100.json)."""
    return json.loads((course_root() / "docs" / "benchmarks" / "h100.json").read_text())["perf_analyzer_example"]


@pytest.fixture(scope="module")
def h100_csv(h100) -> str:
    return h100["csv"]


@pytest.fixture(scope="module")
def server(reference_repo):
    with triton_course.start_server(reference_repo) as running:
        yield running


def _course(throughput: float, latencies) -> Result:
    return Result(label="course", concurrency=1, rate=None, requests=int(throughput), errors=0, seconds=1.0,
                  latencies_ms=np.array(latencies, dtype=float))


def _perf(throughput: float, p50: float) -> Measurement:
    return Measurement(concurrency=1, throughput=throughput, p50_ms=p50, p90_ms=p50, p95_ms=p50, p99_ms=p50,
                       queue_ms=0.0, compute_ms=0.0)


# --- the command line ---------------------------------------------------------------------------

def test_command_for_a_grpc_closed_loop():
    """The exact perf_analyzer arguments for one closed-loop measurement, like loadgen.measure's."""
    args = perf_analyzer.command("efficientnet_lite0", "127.0.0.1:8001", protocol="grpc", concurrency=4,
                                 batch_size=1, shape="input:3,224,224", measurement_ms=2000,
                                 csv_path="/tmp/out.csv")
    assert args == ["perf_analyzer", "-m", "efficientnet_lite0", "-u", "127.0.0.1:8001", "-i", "grpc", "-b", "1",
                    "--concurrency-range", "4:4", "--measurement-interval", "2000",
                    "--stability-percentage", "10", "--shape", "input:3,224,224", "--input-data", "random",
                    "-f", "/tmp/out.csv"]


def test_command_protocol_url_and_shared_memory():
    """-i follows the protocol, the URL loses its scheme, --shared-memory only when asked."""
    args = perf_analyzer.command(url="http://127.0.0.1:8000/", protocol="http", binary="/opt/pa")
    assert args[0] == "/opt/pa"
    assert args[args.index("-u") + 1] == "127.0.0.1:8000"
    assert args[args.index("-i") + 1] == "http"
    assert "--shared-memory" not in args
    shm = perf_analyzer.command(shared_memory=True)
    assert shm[-2:] == ["--shared-memory", "system"]


def test_command_max_trials_only_when_asked():
    assert "--max-trials" not in perf_analyzer.command()
    assert perf_analyzer.command(max_trials=20)[-2:] == ["--max-trials", "20"]


# --- the report --------------------------------------------------------------------------------

def test_parse_csv_reads_a_real_h100_report(h100_csv):
    """parse_csv turns perf_analyzer's microseconds into the milliseconds the course reports."""
    (m,) = perf_analyzer.parse_csv(h100_csv, label="pa")
    assert (m.concurrency, m.label, m.load) == (1, "pa", "c=1")
    assert m.throughput == pytest.approx(132.981)
    assert m.p50_ms == pytest.approx(7.161)
    assert m.p90_ms == pytest.approx(7.976)
    assert m.p95_ms == pytest.approx(8.388)
    assert m.p99_ms == pytest.approx(9.674)
    assert m.queue_ms == pytest.approx(2.170)
    assert m.compute_ms == pytest.approx((112 + 3850 + 65) / 1000)
    row = m.row()
    assert row["infer/s"] == 133.0 and row["p99 ms"] == 9.7 and row["compute ms"] == 4.03


def test_parse_csv_refuses_a_report_without_concurrency():
    """A request-rate (or any other) report is not silently misread."""
    with pytest.raises(ValueError, match="not a perf_analyzer concurrency report"):
        perf_analyzer.parse_csv("Batch,Inferences/Second\n10,9.9\n")
    assert perf_analyzer.parse_csv("") == []


def test_parse_csv_reads_an_open_loop_report():
    """A --request-rate-range report (open loop): its first column is the rate, and the load says so."""
    (m,) = perf_analyzer.parse_csv("Request Rate,Inferences/Second,Server Queue,p99 latency\n200,109.0,15105,50166\n")
    assert (m.rate, m.concurrency, m.load, m.throughput, m.p99_ms) == (200.0, 0, "200/s", 109.0, 50.166)


UNSTABLE_WORDS = ("Failed to obtain stable measurement within 3 measurement windows for concurrency 4. "
                  "Please try to increase the --measurement-interval.")


def test_an_unstable_point_is_reported_with_perf_analyzer_words(tmp_path, monkeypatch):
    """perf_analyzer exits 2 without a report when no windows agree (2.51's words, as on the 2-core machine):
    run() and measure() return the point marked unstable, with no figures and its own sentence, not an error."""
    real = perf_analyzer.find_binary()
    assert real is not None, "make setup installs Perf Analyzer 2.51.0"
    busy = tmp_path / "perf_analyzer"  # the real one for its version; gives up as 2.51 does on a busy machine
    busy.write_text(f'#!/bin/sh\ncase "$*" in *--version*) exec "{real}" "$@" ;; esac\n'
                    f'echo "Request concurrency: 4"\necho "{UNSTABLE_WORDS}" >&2\n'
                    'echo "Failed to obtain stable measurement." >&2\nexit 2\n')
    busy.chmod(0o755)
    monkeypatch.setenv("PERF_ANALYZER", str(busy))
    m = perf_analyzer.run("perf_analyzer -m batching -u 127.0.0.1:8001 -i grpc --concurrency-range 4:4 -f p.csv",
                          cwd=tmp_path, label="batching")
    assert not m.stable and m.said == UNSTABLE_WORDS
    assert (m.concurrency, m.load, m.label) == (4, "c=4", "batching") and np.isnan(m.throughput)
    assert m.row()["stable"] is False and m.command.startswith("perf_analyzer -m batching")
    rate = perf_analyzer.run("perf_analyzer -m b --request-rate-range 150:150 -f p.csv", cwd=tmp_path)
    assert not rate.stable and rate.load == "150/s"
    assert not perf_analyzer.measure("127.0.0.1:8001", concurrency=4).stable


def test_run_needs_a_csv_report():
    with pytest.raises(PerfAnalyzerError, match="writes no CSV report"):
        perf_analyzer.run("perf_analyzer -m batching -u 127.0.0.1:8001")


def test_agreement_compares_medians():
    """agreement: medians of the repeats on each side, as load generator / perf_analyzer ratios."""
    course = [_course(90, [4, 5, 6]), _course(100, [5, 5, 5]), _course(130, [3, 4, 5])]
    perf = [_perf(125, 4.0), _perf(120, 4.0), _perf(200, 9.0)]
    got = perf_analyzer.agreement(course, perf)
    assert got == {"load": "c=1", "repeats": 3, "loadgen infer/s": 100.0, "perf_analyzer infer/s": 125.0,
                   "throughput ratio": 0.8, "loadgen p50 ms": 5.0, "perf_analyzer p50 ms": 4.0, "p50 ratio": 1.25}
    single = perf_analyzer.agreement(_course(110, [2.0]), _perf(100, 2.0))
    assert single["repeats"] == 1 and single["throughput ratio"] == 1.1 and single["p50 ratio"] == 1.0


def test_read_report_reads_each_line(h100):
    """read_report turns the printed report into numbers, section by section."""
    report = perf_analyzer.read_report(h100["output"])
    assert report["concurrency"] == 1
    client, server = report["client"], report["server"]
    assert client["Request count"] == 971 and client["Throughput"] == 132.981 and client["p99 latency"] == 9674
    assert client["Avg latency"] == 7204 and client["Avg HTTP time"] == 7196
    assert (server["Inference count"], server["Execution count"], server["Successful request count"]) == (971,) * 3
    assert (server["queue"], server["compute input"], server["compute infer"], server["compute output"]) == \
        (2170, 112, 3850, 65)
    assert server["overhead"] == 3 and server["Avg request latency"] == 6201
    with pytest.raises(ValueError, match="not a perf_analyzer concurrency report"):
        perf_analyzer.read_report("error: failed to get model metadata")


def test_latency_parts_add_up_to_the_client_average(h100, h100_csv):
    """The CSV's seven parts are the client's average latency split (integer microseconds each)."""
    parts = perf_analyzer.latency_parts(h100_csv)
    assert list(parts) == list(perf_analyzer.LATENCY_PARTS)
    assert parts["Server Queue"] == pytest.approx(2.170) and parts["Network+Server Send/Recv"] == pytest.approx(0.820)
    average = perf_analyzer.read_report(h100["output"])["client"]["Avg latency"] / 1000
    assert sum(parts.values()) == pytest.approx(average, abs=0.01)
    with pytest.raises(ValueError, match="lacks the latency columns"):
        perf_analyzer.latency_parts("Concurrency,Inferences/Second\n1,2\n")


# --- the real program, against a real server ----------------------------------------------------------------

def test_the_course_perf_analyzer_runs_here():
    """`make setup` installed Perf Analyzer 2.51.0; describe() says which one and where it came from."""
    assert perf_analyzer.unavailable_reason() is None
    assert perf_analyzer.find_binary() is not None
    assert perf_analyzer.describe().startswith("Perf Analyzer 2.51.0 (")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_measures_a_real_server(server, protocol):
    """perf_analyzer measures the embedded server serving the course model; its CSV and its printed report
    agree and their fields are sane."""
    url = server.grpc_address if protocol == "grpc" else server.http_url
    m = perf_analyzer.measure(url, model=MODEL_NAME, protocol=protocol, concurrency=2, measurement_ms=500,
                              stability_percent=50)
    assert m.concurrency == 2 and m.throughput > 0
    assert 0 < m.p50_ms <= m.p90_ms <= m.p95_ms <= m.p99_ms
    assert m.queue_ms >= 0 and m.compute_ms > 0
    assert m.report_csv.splitlines()[0].split(",")[:2] == ["Concurrency", "Inferences/Second"]
    report = perf_analyzer.read_report(m.output)
    client, served = report["client"], report["server"]
    assert report["concurrency"] == 2 and f"Avg {'gRPC' if protocol == 'grpc' else 'HTTP'} time" in client
    assert client["Throughput"] == pytest.approx(m.throughput, rel=1e-3)
    assert client["p50 latency"] / 1000 == pytest.approx(m.p50_ms)
    # one image per request, every request answered; dynamic batching may join requests into executions.
    # The server's counts are read at the window's edges, so a request in flight there may fall on the
    # other side of it: the client's count can differ by up to the concurrency.
    assert served["Inference count"] == served["Successful request count"]
    assert abs(served["Inference count"] - client["Request count"]) <= 2
    assert 0 < served["Execution count"] <= served["Inference count"]
    assert sum(perf_analyzer.latency_parts(m.report_csv).values()) == pytest.approx(client["Avg latency"] / 1000,
                                                                                     abs=0.05)


def test_run_reads_the_command_line_as_written(server, tmp_path):
    """run(): the literal command line, its -f report read relative to cwd; windows too short to agree within
    1 % are reported as unstable in perf_analyzer's words instead of failing."""
    base = f"perf_analyzer -m {MODEL_NAME} -u {server.grpc_address} -i grpc --concurrency-range 2:2 -f perf.csv"
    m = perf_analyzer.run(base + " --measurement-interval 500 --stability-percentage 50", cwd=tmp_path)
    assert m.stable and m.concurrency == 2 and m.throughput > 0 and (tmp_path / "perf.csv").exists()
    shaky = perf_analyzer.run(base + " --measurement-interval 100 --stability-percentage 1 --max-trials 3",
                              cwd=tmp_path)
    if not shaky.stable:  # three 100 ms windows agreeing within 1 % would be luck
        assert shaky.said.startswith(perf_analyzer.UNSTABLE) and "--measurement-interval" in shaky.said


def test_side_by_side_measures_both_tools(server):
    """side_by_side: both tools at one point, their ratios, and each client's CPU per request."""
    x = preprocess(photo("coffee"))[None]
    row = perf_analyzer.side_by_side(server.grpc_address, x, protocol="grpc", concurrency=1, model=MODEL_NAME,
                                     window_s=0.5)
    course, perf = row.pop("_measurements")
    assert (row["protocol"], row["load"], row["repeats"]) == ("grpc", "c=1", 1)
    assert row["throughput ratio"] == pytest.approx(course[0].throughput / perf[0].throughput, abs=1e-3)
    assert row["loadgen CPU ms/req"] > 0 and row["perf_analyzer CPU ms/req"] > 0
    assert row["server compute ratio"] == pytest.approx(course[0].server["compute_ms"] / perf[0].compute_ms, abs=1e-3)


def test_wrong_model_name_quotes_perf_analyzer(server):
    """A model the server does not have: perf_analyzer's own message, and the command to run by hand."""
    with pytest.raises(PerfAnalyzerError) as err:
        perf_analyzer.measure(server.grpc_address, model="no_such_model", protocol="grpc")
    assert err.value.source == "perf_analyzer"
    assert "Request for unknown model: 'no_such_model' is not found" in err.value.triton_said
    assert "perf_analyzer said:" in str(err.value) and "-m no_such_model" in err.value.fix


def test_missing_library_is_named_with_its_fix(monkeypatch):
    """The program itself, without the wrapper that puts libcudart.so.12 on its library path: the reason names
    the library, the loader's words and the command that installs it; measure() refuses with that reason."""
    raw = perf_analyzer.install_dir(sys.prefix) / "perf_analyzer"
    assert raw.exists(), "make setup installs Perf Analyzer 2.51.0 there"
    monkeypatch.setenv("PERF_ANALYZER", str(raw))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    assert perf_analyzer.find_binary() is None
    reason = perf_analyzer.unavailable_reason()
    assert str(raw) in reason and "libcudart.so.12" in reason
    assert "cannot open shared object file" in reason
    assert "pip install nvidia-cuda-runtime-cu12" in reason
    with pytest.raises(PerfAnalyzerError) as err:
        perf_analyzer.measure("127.0.0.1:8001")
    assert err.value.fix == reason and "perf_analyzer cannot run here" in str(err.value)


def test_killed_perf_analyzer_is_named_with_the_likely_cause(tmp_path, monkeypatch):
    """A perf_analyzer the kernel killed (the out-of-memory killer, seen on the H200) is named as killed by that
    signal, with what usually sends it and how to measure with less memory; not a bare 'exit -9'."""
    real = perf_analyzer.find_binary()
    assert real is not None, "make setup installs Perf Analyzer 2.51.0"
    doomed = tmp_path / "perf_analyzer"  # the real one for its version; killed as soon as it would measure
    doomed.write_text(f'#!/bin/sh\ncase "$*" in *--version*) exec "{real}" "$@" ;; esac\nkill -9 $$\n')
    doomed.chmod(0o755)
    monkeypatch.setenv("PERF_ANALYZER", str(doomed))
    with pytest.raises(PerfAnalyzerError) as err:
        perf_analyzer.measure("127.0.0.1:8001")
    assert "perf_analyzer was killed by SIGKILL" in str(err.value)
    assert "out-of-memory killer" in err.value.fix and "shared_memory=True" in err.value.fix
    assert f"{doomed} -m {MODEL_NAME}" in err.value.fix


# --- the in-process ceiling ----------------------------------------------------------------------

def test_onnx_limits_measures_each_batch_size():
    """onnx_limits times onnxruntime at each batch size; best picks the highest throughput."""
    limits = inprocess.onnx_limits(artifact.ensure_onnx(), batch_sizes=(1, 2), seconds=0.3, warmup=1)
    assert [(lim.engine, lim.device, lim.batch_size) for lim in limits] == [("onnxruntime", "CPU", 1),
                                                                            ("onnxruntime", "CPU", 2)]
    for lim in limits:
        assert lim.throughput > 0 and lim.ms_per_batch > 0
        # throughput and time per batch are two readings of the same calls
        assert lim.throughput == pytest.approx(lim.batch_size * 1000 / lim.ms_per_batch)
    assert inprocess.best(limits) is max(limits, key=lambda lim: lim.throughput)
    slow, fast = inprocess.Limit("x", "CPU", 1, 10.0, 100.0), inprocess.Limit("x", "CPU", 8, 80.0, 100.0)
    assert inprocess.best([slow, fast]) is fast and inprocess.best([fast, slow]) is fast
