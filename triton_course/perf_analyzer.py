"""perf_analyzer, Triton's own benchmark client, where it runs; and how its figures compare
with the course's load generator on the same model and load.

Its pip package (`perf-analyzer`) needs glibc >= 2.38: Ubuntu 24.04 runs it; on Debian 12 and
Ubuntu 22.04 (most pods) pip silently installs a 0.1.0 placeholder without the program. The
Triton SDK container (`nvcr.io/nvidia/tritonserver:<tag>-py3-sdk`) ships it too.
"""

from __future__ import annotations

import csv
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CourseError
from .paths import MODEL_NAME

MIN_GLIBC = (2, 38)


class PerfAnalyzerError(CourseError):
    """perf_analyzer is missing or failed; `triton_said` quotes perf_analyzer."""

    source = "perf_analyzer"


@dataclass
class Measurement:
    """One line of perf_analyzer's CSV report (its latencies are in microseconds)."""

    concurrency: int
    throughput: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    queue_ms: float
    compute_ms: float
    label: str = "perf_analyzer"
    report_csv: str = field(default="", repr=False)  # the -f file, as written
    output: str = field(default="", repr=False)  # what perf_analyzer printed

    @property
    def load(self) -> str:
        return f"c={self.concurrency}"

    def row(self) -> dict:
        return {"config": self.label, "load": self.load, "infer/s": round(self.throughput, 1),
                "p50 ms": round(self.p50_ms, 1), "p90 ms": round(self.p90_ms, 1), "p95 ms": round(self.p95_ms, 1),
                "p99 ms": round(self.p99_ms, 1), "queue ms": round(self.queue_ms, 2),
                "compute ms": round(self.compute_ms, 2)}


def find_binary() -> Path | None:
    """$PERF_ANALYZER, else perf_analyzer on PATH; None when neither runs."""
    candidate = os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer")
    if not candidate or not os.access(candidate, os.X_OK):
        return None
    try:
        subprocess.run([candidate, "--help"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None  # the placeholder package's stub, a binary for another glibc, or one that hangs
    return Path(candidate)


def unavailable_reason() -> str | None:
    """None when perf_analyzer runs here, else one line saying why not and what to do."""
    if find_binary() is not None:
        return None
    libc, version = platform.libc_ver()
    have = tuple(int(x) for x in version.split(".")[:2]) if libc == "glibc" and version else None
    if have is not None and have < MIN_GLIBC:
        return (f"perf_analyzer is not installed: its pip package needs glibc >= 2.38 and this system has "
                f"{version}; use the Triton SDK container (nvcr.io/nvidia/tritonserver:<tag>-py3-sdk) or an "
                "Ubuntu 24.04 machine")
    return "perf_analyzer is not installed: `pip install perf-analyzer` (needs glibc >= 2.38)"


def command(model: str = MODEL_NAME, url: str = "127.0.0.1:8001", *, protocol: str = "grpc", concurrency: int = 1,
            batch_size: int = 1, shape: str = "input:3,224,224", measurement_ms: int = 2000,
            stability_percent: int = 10, csv_path: str | Path = "perf.csv", shared_memory: bool = False,
            binary: str | Path = "perf_analyzer") -> list[str]:
    """perf_analyzer's command line for one closed-loop measurement, like loadgen.measure's:
    time windows of `measurement_ms`, stable when three agree within `stability_percent`."""
    address = url.split("://", 1)[-1].rstrip("/")
    args = [str(binary), "-m", model, "-u", address, "-i", protocol, "-b", str(batch_size),
            "--concurrency-range", f"{concurrency}:{concurrency}",
            "--measurement-interval", str(measurement_ms), "--stability-percentage", str(stability_percent),
            "--shape", shape, "--input-data", "random", "-f", str(csv_path)]
    if shared_memory:
        args += ["--shared-memory", "system"]
    return args


def parse_csv(text: str, label: str = "perf_analyzer") -> list[Measurement]:
    """perf_analyzer's `-f` report: one Measurement per concurrency line."""
    rows = list(csv.DictReader(line for line in text.splitlines() if line.strip()))
    if rows and "Concurrency" not in rows[0]:
        raise ValueError(f"not a perf_analyzer concurrency report (columns: {', '.join(rows[0])})")

    def ms(row, key):
        return float(row.get(key) or "nan") / 1000

    return [Measurement(
        concurrency=int(row["Concurrency"]), throughput=float(row["Inferences/Second"]),
        p50_ms=ms(row, "p50 latency"), p90_ms=ms(row, "p90 latency"), p95_ms=ms(row, "p95 latency"),
        p99_ms=ms(row, "p99 latency"), queue_ms=ms(row, "Server Queue"),
        compute_ms=sum(ms(row, k) for k in ("Server Compute Input", "Server Compute Infer", "Server Compute Output")),
        label=label) for row in rows]


def measure(url: str, *, model: str = MODEL_NAME, protocol: str = "grpc", concurrency: int = 1, batch_size: int = 1,
            label: str = "perf_analyzer", timeout: float = 300, **kwargs) -> Measurement:
    """Run perf_analyzer once and return its measurement; a PerfAnalyzerError quotes it when it fails."""
    binary = find_binary()
    if binary is None:
        raise PerfAnalyzerError("perf_analyzer cannot run here.", fix=unavailable_reason() or "")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "perf.csv"
        args = command(model, url, protocol=protocol, concurrency=concurrency, batch_size=batch_size,
                       csv_path=report, binary=binary, **kwargs)
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PerfAnalyzerError(f"perf_analyzer did not finish within {timeout:.0f} s.",
                              fix="Lower --measurement-interval or check that the server answers.") from exc
        if done.returncode != 0 or not report.exists():
            said = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise PerfAnalyzerError(f"perf_analyzer failed (exit {done.returncode}).", triton_said="\n".join(said),
                              fix="Read its message above; the command was: " + " ".join(args))
        text = report.read_text()
        rows = parse_csv(text, label)
        if not rows:
            raise PerfAnalyzerError("perf_analyzer wrote an empty report.", triton_said=done.stdout.strip()[-500:],
                                    fix="Run the command by hand to see why: " + " ".join(args))
        measurement = rows[0]
        measurement.report_csv, measurement.output = text, done.stdout
        return measurement


def agreement(course, perf) -> dict:
    """How far the course's load generator is from perf_analyzer at one load point, in percent.
    Each side may be one measurement or several repeats (their medians are compared)."""
    course = course if isinstance(course, list) else [course]
    perf = perf if isinstance(perf, list) else [perf]
    c_rate = float(np.median([r.throughput for r in course]))
    p_rate = float(np.median([m.throughput for m in perf]))
    c_p50 = float(np.median([r.percentile(50) for r in course]))
    p_p50 = float(np.median([m.p50_ms for m in perf]))
    return {"load": course[0].load, "repeats": len(course), "course infer/s": round(c_rate, 1),
            "perf_analyzer infer/s": round(p_rate, 1), "throughput diff %": round((c_rate / p_rate - 1) * 100, 1),
            "course p50 ms": round(c_p50, 2), "perf_analyzer p50 ms": round(p_p50, 2),
            "p50 diff %": round((c_p50 / p_p50 - 1) * 100, 1)}
