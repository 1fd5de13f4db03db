"""perf_analyzer's command line, its CSV report, the comparison with the course's load generator,
and the in-process ceiling: no server needed."""

from __future__ import annotations

import json
import platform
import sys

import numpy as np
import pytest

from triton_course import artifact, course_root, inprocess, perf_analyzer
from triton_course.loadgen import Result
from triton_course.perf_analyzer import Measurement, PerfAnalyzerError

_libc, _version = platform.libc_ver()
OLD_GLIBC = _libc == "glibc" and tuple(int(x) for x in _version.split(".")[:2]) < perf_analyzer.MIN_GLIBC


@pytest.fixture(scope="module")
def h100_csv() -> str:
    """A real perf_analyzer -f report, recorded on an H100 (docs/benchmarks/h100.json)."""
    recorded = json.loads((course_root() / "docs" / "benchmarks" / "h100.json").read_text())
    return recorded["perf_analyzer_example"]["csv"]


@pytest.fixture
def fake_perf_analyzer(tmp_path, monkeypatch):
    """Point PERF_ANALYZER at a script that acts like perf_analyzer: it logs its arguments, then
    writes `csv` to the -f path and exits 0, or prints `fail` to stderr and exits 2."""

    def make(csv: str = "", fail: str = ""):
        script = tmp_path / "perf_analyzer"
        script.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
if args == ["--help"]:
    sys.exit(0)
open({str(tmp_path / "args.json")!r}, "w").write(json.dumps(args))
if {fail!r}:
    print("*** Measurement Settings ***")
    print({fail!r}, file=sys.stderr)
    sys.exit(2)
open(args[args.index("-f") + 1], "w").write({csv!r})
print("Concurrency: 3, throughput: 138.547 infer/sec")
""")
        script.chmod(0o755)
        monkeypatch.setenv("PERF_ANALYZER", str(script))
        return tmp_path / "args.json"

    return make


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
        perf_analyzer.parse_csv("Request Rate,Inferences/Second\n10,9.9\n")
    assert perf_analyzer.parse_csv("") == []


def test_agreement_compares_medians():
    """agreement: medians of the repeats on each side, and the course's difference in percent."""
    course = [_course(90, [4, 5, 6]), _course(100, [5, 5, 5]), _course(130, [3, 4, 5])]
    perf = [_perf(125, 4.0), _perf(120, 4.0), _perf(200, 9.0)]
    got = perf_analyzer.agreement(course, perf)
    assert got == {"load": "c=1", "repeats": 3, "course infer/s": 100.0, "perf_analyzer infer/s": 125.0,
                   "throughput diff %": -20.0, "course p50 ms": 5.0, "perf_analyzer p50 ms": 4.0,
                   "p50 diff %": 25.0}
    single = perf_analyzer.agreement(_course(110, [2.0]), _perf(100, 2.0))
    assert single["repeats"] == 1 and single["throughput diff %"] == 10.0 and single["p50 diff %"] == 0.0


# --- running it --------------------------------------------------------------------------------

@pytest.mark.skipif(not OLD_GLIBC, reason="perf_analyzer's wheel can run on this glibc")
def test_unavailable_on_old_glibc_says_why(monkeypatch, tmp_path):
    """Without PERF_ANALYZER on glibc < 2.38: no binary, and the error says which glibc it needs."""
    monkeypatch.delenv("PERF_ANALYZER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called perf_analyzer here
    assert perf_analyzer.find_binary() is None
    reason = perf_analyzer.unavailable_reason()
    assert "glibc >= 2.38" in reason and _version in reason
    with pytest.raises(PerfAnalyzerError) as err:
        perf_analyzer.measure("127.0.0.1:8001")
    assert err.value.fix == reason
    assert "perf_analyzer cannot run here" in str(err.value)


def test_measure_runs_the_binary_and_parses_its_report(fake_perf_analyzer, h100_csv):
    """measure passes its settings on, and returns the report's measurement with the raw text."""
    args_file = fake_perf_analyzer(csv=h100_csv)
    assert perf_analyzer.find_binary() is not None and perf_analyzer.unavailable_reason() is None
    m = perf_analyzer.measure("http://127.0.0.1:8000", protocol="http", concurrency=3, label="fake",
                              shared_memory=True)
    # the figures are the report's (recorded at c=1), not the arguments'
    assert (m.label, m.concurrency, m.throughput, m.p99_ms) == ("fake", 1, 132.981, 9.674)
    assert m.report_csv == h100_csv
    assert "138.547 infer/sec" in m.output
    args = json.loads(args_file.read_text())
    assert args[args.index("-u") + 1] == "127.0.0.1:8000"
    assert args[args.index("--concurrency-range") + 1] == "3:3"
    assert args[-2:] == ["--shared-memory", "system"]


def test_measure_quotes_perf_analyzer_when_it_fails(fake_perf_analyzer):
    """A non-zero exit is a PerfAnalyzerError quoting perf_analyzer's last lines."""
    fake_perf_analyzer(fail="Failed to obtain stable measurement within 10 measurement windows")
    with pytest.raises(PerfAnalyzerError) as err:
        perf_analyzer.measure("127.0.0.1:8001")
    assert "exit 2" in err.value.what
    assert err.value.triton_said == "Failed to obtain stable measurement within 10 measurement windows"
    assert "perf_analyzer said: Failed to obtain stable measurement" in str(err.value)
    assert "--concurrency-range 1:1" in err.value.fix


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
