"""perf_analyzer, Triton's own benchmark client: where the course gets it, and how its figures compare
with the course's load generator on the same model and load.

Two builds run on the machines the course supports:
- Perf Analyzer 2.51.0, the program inside the `tritonclient==2.51.0` wheel (the embedded server's
  version). It needs glibc >= 2.34, `libb64.so.0d` (Debian/Ubuntu package libb64-0d) and
  `libcudart.so.12` (the pinned `nvidia-cuda-runtime-cu12` wheel; no GPU needed). `install()` takes
  the program out of that wheel, so the course keeps its own newer tritonclient library.
- the `perf-analyzer` pip package (2.58 and newer), which needs glibc >= 2.38 (Ubuntu 24.04); on older
  systems pip quietly installs a 0.1.0 placeholder without the program. Where it runs, it is used.
"""

from __future__ import annotations

import csv
import math
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import errors
from .errors import CourseError
from .paths import MODEL_NAME

BUNDLED_VERSION = "2.51.0"  # the tritonclient wheel that carries the program; the embedded server's version
WHEEL_MEMBER = f"tritonclient-{BUNDLED_VERSION}.data/data/bin/perf_analyzer"
# What each shared library the program needs comes from, for the error that names a missing one.
LIBRARY_FIX = {
    "libb64.so.0d": "sudo apt-get install libb64-0d",
    "libcudart.so.12": "pip install nvidia-cuda-runtime-cu12==12.9.79 (or `make setup`)",
}


class PerfAnalyzerError(CourseError):
    """perf_analyzer is missing or failed; `triton_said` quotes perf_analyzer."""

    source = "perf_analyzer"


class DownloadError(PerfAnalyzerError, errors.DownloadError):
    """pip could not fetch the wheel that carries perf_analyzer; `triton_said` quotes pip."""

    source = errors.DownloadError.source


UNSTABLE = "Failed to obtain stable measurement"  # what perf_analyzer prints (exit code 2) when no windows agree


@dataclass
class Measurement:
    """One line of perf_analyzer's CSV report (its latencies are in microseconds). A point perf_analyzer could
    not stabilise has `stable` False, no figures (NaN) and, in `said`, perf_analyzer's own words."""

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
    rate: float | None = None  # requests per second, for a --request-rate-range (open loop) report
    stable: bool = True
    said: str = ""  # perf_analyzer's words when it could not stabilise
    command: str = field(default="", repr=False)  # the command line that measured it

    @property
    def load(self) -> str:
        return f"{self.rate:g}/s" if self.rate else f"c={self.concurrency}"

    @classmethod
    def unstable(cls, said: str, *, concurrency: int = 0, rate: float | None = None, label: str = "perf_analyzer",
                 output: str = "", command: str = "") -> Measurement:
        """A point perf_analyzer gave up on: no figures, its own words kept."""
        nan = math.nan
        return cls(concurrency, nan, nan, nan, nan, nan, nan, nan, label=label, output=output, rate=rate,
                   stable=False, said=said, command=command)

    def row(self) -> dict:
        return {"config": self.label, "load": self.load, "infer/s": round(self.throughput, 1),
                "p50 ms": round(self.p50_ms, 1), "p90 ms": round(self.p90_ms, 1), "p95 ms": round(self.p95_ms, 1),
                "p99 ms": round(self.p99_ms, 1), "queue ms": round(self.queue_ms, 2),
                "compute ms": round(self.compute_ms, 2), "stable": self.stable}


def install_dir(prefix: str | Path | None = None) -> Path:
    """Where install() puts the program: inside this Python environment (.venv or conda)."""
    return Path(prefix or sys.prefix) / "lib" / f"perf_analyzer-{BUNDLED_VERSION}"


def _cuda_runtime_libdir() -> Path | None:
    try:
        import nvidia.cuda_runtime
    except ImportError:
        return None
    for folder in nvidia.cuda_runtime.__path__:
        if (Path(folder) / "lib" / "libcudart.so.12").exists():
            return Path(folder) / "lib"
    return None


def install(prefix: str | Path | None = None, force: bool = False) -> Path:
    """Put Perf Analyzer 2.51.0 into this environment as `<env>/bin/perf_analyzer`, unless a
    perf_analyzer that runs is already there (the pip package on glibc >= 2.38): pip downloads the
    tritonclient 2.51.0 wheel (from the same sources as every other package) and only its program is
    kept, beside a small wrapper that sets the library path for libcudart. Returns the command's path.
    Safe to run again: the download happens once."""
    prefix = Path(prefix or sys.prefix)
    command_path = prefix / "bin" / "perf_analyzer"
    target = install_dir(prefix)
    ours = command_path.exists() and str(target) in command_path.read_text(errors="replace")[:1000]
    if command_path.exists() and not ours and not force and _version_of(command_path) is not None:
        return command_path  # a perf_analyzer of its own (the pip package) runs here: keep it
    if force or not (target / "perf_analyzer").exists():
        _extract_program(target)
    libdir = _cuda_runtime_libdir()
    library_path = f"{libdir}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" if libdir else "${LD_LIBRARY_PATH:-}"
    command_path.parent.mkdir(parents=True, exist_ok=True)
    command_path.write_text(
        "#!/bin/sh\n"
        f"# Perf Analyzer {BUNDLED_VERSION} from the tritonclient {BUNDLED_VERSION} wheel, put here by the course\n"
        "# (triton_course.perf_analyzer.install); libcudart.so.12 comes from the nvidia-cuda-runtime-cu12 wheel.\n"
        f'LD_LIBRARY_PATH="{library_path}" exec "{target / "perf_analyzer"}" "$@"\n')
    command_path.chmod(0o755)
    return command_path


def _extract_program(target: Path) -> None:
    """Download the tritonclient wheel with pip and keep only its perf_analyzer program."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               "--dest", tmp, f"tritonclient=={BUNDLED_VERSION}"],
                              capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob(f"tritonclient-{BUNDLED_VERSION}-*.whl"))
        if done.returncode != 0 or not wheels:
            said = "\n".join(line for line in (done.stderr or done.stdout).splitlines()
                             if not line.startswith("WARNING: Location"))[-600:]
            raise DownloadError(f"pip could not download tritonclient {BUNDLED_VERSION}, which carries perf_analyzer.",
                                triton_said=said,
                                fix="Check the network or your pip settings, then run `triton-course prepare` again.")
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel, open(target / "perf_analyzer", "wb") as out:
            shutil.copyfileobj(wheel.open(WHEEL_MEMBER), out)
    (target / "perf_analyzer").chmod(0o755)


def _candidates() -> list[Path]:
    """$PERF_ANALYZER alone when it is set; else this environment's perf_analyzer, then PATH's."""
    if os.environ.get("PERF_ANALYZER"):
        found = [os.environ["PERF_ANALYZER"]]
    else:
        found = [str(Path(sys.prefix) / "bin" / "perf_analyzer"), shutil.which("perf_analyzer")]
    return [Path(c) for c in dict.fromkeys(c for c in found if c) if os.access(c, os.X_OK)]


def _run_version(binary: Path) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _version_of(binary: Path) -> str | None:
    """The version the program prints ("Perf Analyzer Version 2.51.0"), or None when it does not run."""
    done = _run_version(binary)
    match = done and re.search(r"Perf Analyzer Version (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else None


def find_binary() -> Path | None:
    """The first perf_analyzer that runs here ($PERF_ANALYZER, else this environment's, else PATH's), or None."""
    return next((c for c in _candidates() if _version_of(c) is not None), None)


def _pip_package_version(binary: Path) -> str | None:
    """The version of the perf-analyzer pip package that holds `binary`, from its metadata beside it."""
    from importlib.metadata import distributions

    site = binary.resolve().parents[2]  # site-packages/perf_analyzer/bin/perf_analyzer
    return next((d.version for d in distributions(path=[str(site)])
                 if d.metadata["Name"].lower().replace("_", "-") == "perf-analyzer"), None)


def describe(binary: Path | None = None) -> str:
    """Which perf_analyzer runs, for the learner: version, where it came from, its path."""
    binary = binary or find_binary()
    if binary is None:
        return "perf_analyzer: none runs here"
    version = _version_of(binary)
    small = binary.stat().st_size < 4096  # a wrapper script, not the program itself
    if small and f"perf_analyzer-{BUNDLED_VERSION}/perf_analyzer" in binary.read_text(errors="replace"):
        origin = f"from the tritonclient {BUNDLED_VERSION} wheel"
    elif binary.resolve().parts[-3:] == ("perf_analyzer", "bin", "perf_analyzer"):  # the pip package's layout
        origin = "from the perf-analyzer pip package"
        if version == "0.0.0":  # that package's program is built without its version (seen with 2.60.0)
            version = _pip_package_version(binary) or version
    else:
        origin = "found on this machine"
    return f"Perf Analyzer {version} ({origin}): {binary}"


def diagnose() -> tuple[str, str, str] | None:
    """None when perf_analyzer runs here, else (which program, what is wrong, the command that mends it)."""
    for binary in _candidates():
        done = _run_version(binary)
        if done is not None and re.search(r"Perf Analyzer Version", done.stdout + done.stderr):
            return None
        said = (done.stderr if done is not None else "").strip()
        last = said.splitlines()[-1] if said else "no output"
        if len(last) > 200:  # the loader names the program's path first: keep its words, the end of the line
            last = "..." + last[-197:]
        missing = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", said)
        if missing:
            library = missing.group(1)
            return (str(binary), f"cannot start: the library {library} is missing (the system's loader said: {last})",
                    LIBRARY_FIX.get(library, f"install the package that provides {library}"))
        if "GLIBC_" in said:
            return (str(binary), f"was built for a newer glibc (the system's loader said: {last})",
                    "unset PERF_ANALYZER and run `triton-course prepare`: it installs Perf Analyzer "
                    f"{BUNDLED_VERSION}, which needs glibc >= 2.34 only")
        return (str(binary), f"does not run (it said: {last})",
                "unset PERF_ANALYZER, or run `triton-course prepare --force`")
    return ("perf_analyzer", "is not installed in this environment",
            f"run `triton-course prepare` (or `make setup`): it installs Perf Analyzer {BUNDLED_VERSION} from the "
            f"tritonclient {BUNDLED_VERSION} wheel")


def unavailable_reason() -> str | None:
    """None when perf_analyzer runs here, else one line: what is missing and the command that installs it."""
    problem = diagnose()
    return None if problem is None else "{} {}; to fix: {}".format(*problem)


def command(model: str = MODEL_NAME, url: str = "127.0.0.1:8001", *, protocol: str = "grpc", concurrency: int = 1,
            batch_size: int = 1, shape: str = "input:3,224,224", measurement_ms: int = 2000,
            stability_percent: int = 10, csv_path: str | Path = "perf.csv", shared_memory: bool = False,
            max_trials: int | None = None, binary: str | Path = "perf_analyzer") -> list[str]:
    """perf_analyzer's command line for one closed-loop measurement, like loadgen.measure's:
    time windows of `measurement_ms`, stable when three agree within `stability_percent`, giving up after
    `max_trials` windows (perf_analyzer's default: 10)."""
    address = url.split("://", 1)[-1].rstrip("/")
    args = [str(binary), "-m", model, "-u", address, "-i", protocol, "-b", str(batch_size),
            "--concurrency-range", f"{concurrency}:{concurrency}",
            "--measurement-interval", str(measurement_ms), "--stability-percentage", str(stability_percent),
            "--shape", shape, "--input-data", "random", "-f", str(csv_path)]
    if shared_memory:
        args += ["--shared-memory", "system"]
    if max_trials is not None:
        args += ["--max-trials", str(max_trials)]
    return args


def parse_csv(text: str, label: str = "perf_analyzer") -> list[Measurement]:
    """perf_analyzer's `-f` report: one Measurement per concurrency (or request rate) line."""
    rows = list(csv.DictReader(line for line in text.splitlines() if line.strip()))
    if rows and "Concurrency" not in rows[0] and "Request Rate" not in rows[0]:
        raise ValueError(f"not a perf_analyzer concurrency report (columns: {', '.join(rows[0])})")

    def ms(row, key):
        return float(row.get(key) or "nan") / 1000

    return [Measurement(
        concurrency=int(row.get("Concurrency") or 0), throughput=float(row["Inferences/Second"]),
        p50_ms=ms(row, "p50 latency"), p90_ms=ms(row, "p90 latency"), p95_ms=ms(row, "p95 latency"),
        p99_ms=ms(row, "p99 latency"), queue_ms=ms(row, "Server Queue"),
        compute_ms=sum(ms(row, k) for k in ("Server Compute Input", "Server Compute Infer", "Server Compute Output")),
        label=label, rate=float(row["Request Rate"]) if row.get("Request Rate") else None) for row in rows]


def flag_value(args: list[str], *names: str) -> str | None:
    """The value given to a flag in a command line's words: `-f X`, `--flag X` or `--flag=X`; None when absent."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def unstable_words(output: str) -> str:
    """perf_analyzer's own sentence when it gave up ("Failed to obtain stable measurement within 8
    measurement windows for concurrency 4. Please try to increase the --measurement-interval."), or ""."""
    lines = [line.strip() for line in output.splitlines() if UNSTABLE in line]
    return max(lines, key=len) if lines else ""


# perf_analyzer's memory can grow with every request at a high rate until the kernel kills it: on the H200, Perf
# Analyzer 2.60 over gRPC at concurrency 64 grew by 2.6 GB a second to 128 GB (docs/gpu_check_h200.md); reported
# upstream as triton-inference-server/perf_analyzer issue 84 ("Memory leak ... at high throughput", OOM kills).
KILLED_FIX = ("A SIGKILL nobody sent by hand is usually the kernel's out-of-memory killer (`dmesg` says "
              "'Out of memory: Killed process ... (perf_analyzer)'): measure with shorter windows "
              "(measurement_ms), fewer trials (max_trials), a lower concurrency, or the tensors in system shared "
              "memory (shared_memory=True).")


def _killed_message(signal_number: int) -> str:
    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    return f"perf_analyzer was killed by {name} before it finished."


def run(command_line: str | list[str], *, cwd: str | Path | None = None, label: str = "perf_analyzer",
        timeout: float = 300) -> Measurement:
    """Run a perf_analyzer command line as written (a string, or a list of its words; the first word,
    `perf_analyzer`, is the course's Perf Analyzer) and read the CSV it wrote with `-f` (relative to `cwd`).
    A point perf_analyzer could not stabilise comes back with `stable` False and its words in `said`, not as
    an error; any other failure raises a PerfAnalyzerError that quotes it. The command must write a
    single-point report (one concurrency or one request rate)."""
    args = shlex.split(command_line) if isinstance(command_line, str) else [str(a) for a in command_line]
    shown = " ".join(args)
    binary = find_binary()
    if binary is None:
        raise PerfAnalyzerError("perf_analyzer cannot run here.", fix=unavailable_reason() or "")
    written = flag_value(args, "-f")
    if written is None:
        raise PerfAnalyzerError("the command writes no CSV report.", fix="Add -f perf.csv to the command: " + shown)
    report = Path(cwd or ".") / written
    report.unlink(missing_ok=True)
    try:
        done = subprocess.run([str(binary), *args[1:]], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise PerfAnalyzerError(f"perf_analyzer did not finish within {timeout:.0f} s.",
                                fix="Lower --measurement-interval or check that the server answers.") from exc
    if done.returncode < 0:  # a signal, not perf_analyzer's own verdict: it could not say why
        raise PerfAnalyzerError(_killed_message(-done.returncode),
                                triton_said="\n".join((done.stderr or done.stdout).strip().splitlines()[-5:]),
                                fix=KILLED_FIX + " The command was: " + shown)
    said = unstable_words(done.stderr + "\n" + done.stdout)
    if done.returncode != 0 and said:
        start = lambda flag: (flag_value(args, flag) or "0").split(":")[0]  # noqa: E731
        rate = float(start("--request-rate-range")) or None
        return Measurement.unstable(said, concurrency=int(start("--concurrency-range")) or (0 if rate else 1),
                                    rate=rate, label=label, output=done.stdout, command=shown)
    if done.returncode != 0 or not report.exists():
        lines = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise PerfAnalyzerError(f"perf_analyzer failed (exit {done.returncode}).", triton_said="\n".join(lines),
                                fix="Read its message above; the command was: " + shown)
    text = report.read_text()
    rows = parse_csv(text, label)
    if not rows:
        raise PerfAnalyzerError("perf_analyzer wrote an empty report.", triton_said=done.stdout.strip()[-500:],
                                fix="Run the command by hand to see why: " + shown)
    measurement = rows[0]
    measurement.report_csv, measurement.output, measurement.command = text, done.stdout, shown
    return measurement


def measure(url: str, *, model: str = MODEL_NAME, protocol: str = "grpc", concurrency: int = 1, batch_size: int = 1,
            label: str = "perf_analyzer", timeout: float = 300, **kwargs) -> Measurement:
    """Run perf_analyzer once (`command`'s line, with a temporary CSV file) and return its measurement. When
    its windows never agreed, the measurement comes back with `stable` False and perf_analyzer's words in
    `said` (no figures); other failures raise a PerfAnalyzerError that quotes it."""
    with tempfile.TemporaryDirectory() as tmp:
        args = command(model, url, protocol=protocol, concurrency=concurrency, batch_size=batch_size,
                       csv_path=Path(tmp) / "perf.csv", binary=find_binary() or "perf_analyzer", **kwargs)
        return run(args, label=label, timeout=timeout)


def agreement(course, perf) -> dict:
    """The course's load generator against perf_analyzer at one load point: the ratio of their throughputs
    and of their p50 latencies (load generator / perf_analyzer; 1.0 means the same figure). Each side may be
    one measurement or several repeats (their medians are compared)."""
    course = course if isinstance(course, list) else [course]
    perf = perf if isinstance(perf, list) else [perf]
    c_rate = float(np.median([r.throughput for r in course]))
    p_rate = float(np.median([m.throughput for m in perf]))
    c_p50 = float(np.median([r.percentile(50) for r in course]))
    p_p50 = float(np.median([m.p50_ms for m in perf]))
    return {"load": course[0].load, "repeats": len(course), "loadgen infer/s": round(c_rate, 1),
            "perf_analyzer infer/s": round(p_rate, 1), "throughput ratio": round(c_rate / p_rate, 3),
            "loadgen p50 ms": round(c_p50, 2), "perf_analyzer p50 ms": round(p_p50, 2),
            "p50 ratio": round(c_p50 / p_p50, 3)}


# perf_analyzer's printed report: "Label: 123.4 unit" lines under "Client:" and "Server:" (see its
# docs/measurements_metrics.md), and the request latency's parts on the server's last line.
_REPORT_LINE = re.compile(r"^\s*(?P<key>[A-Za-z][\w ./()-]*?): (?P<value>[\d.]+)")
_SERVER_PARTS = re.compile(r"(overhead|queue|compute input|compute infer|compute output) (\d+) usec")


def read_report(output: str) -> dict:
    """perf_analyzer's printed report as numbers: {"concurrency", "client": {...}, "server": {...}}.
    Each section maps its labels ("Request count", "Throughput", "p99 latency", "Inference count",
    "Execution count", ...) to the number on that line; the server's "Avg request latency" line also gives
    its parts ("queue", "compute infer", ...). Latencies stay in microseconds, as printed."""
    report: dict = {"concurrency": None, "client": {}, "server": {}}
    section = None
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("Request concurrency:"):
            report["concurrency"] = int(stripped.split(":")[1])
        elif stripped in ("Client:", "Server:"):
            section = report[stripped[:-1].lower()]
        elif not line.startswith("  "):
            section = None  # the summary lines at the end belong to no section
        elif section is not None and (match := _REPORT_LINE.match(line)):
            section[match["key"]] = float(match["value"])
            if match["key"] == "Avg request latency":
                section.update({part: float(us) for part, us in _SERVER_PARTS.findall(line)})
    if report["concurrency"] is None or not report["client"]:
        raise ValueError("not a perf_analyzer concurrency report: no 'Request concurrency:' and 'Client:' section")
    return report


# The -f report's columns that split the client's average latency, in order (perf_analyzer writes each as
# an average in microseconds; "Network+Server Send/Recv" is what is left of the client's time once the
# server's queue and compute are taken out, never below 0).
LATENCY_PARTS = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                 "Server Compute Infer", "Server Compute Output", "Client Recv")


def latency_parts(report_csv: str) -> dict[str, float]:
    """The first line of a -f report as {column: milliseconds} for the LATENCY_PARTS columns; their sum is
    the client's average latency."""
    rows = list(csv.DictReader(line for line in report_csv.splitlines() if line.strip()))
    if not rows or any(column not in rows[0] for column in LATENCY_PARTS):
        raise ValueError("not a perf_analyzer -f report: it lacks the latency columns " + ", ".join(LATENCY_PARTS))
    return {column: float(rows[0][column]) / 1000 for column in LATENCY_PARTS}


LOOSE_STABILITY_PERCENT = 25  # side_by_side's second try when perf_analyzer's windows disagree by more than 10 %


def _served(url: str, model: str, protocol: str) -> int:
    from .loadgen import server_stats

    return server_stats(url, model, protocol)["success"]


def side_by_side(url: str, inputs: np.ndarray, *, protocol: str = "grpc", concurrency: int = 1,
                 model: str = MODEL_NAME, window_s: float = 1.0, repeats: int = 1) -> dict:
    """The course's load generator and perf_analyzer at one load point, one after the other, `repeats`
    times each (alternating, so drift on a shared machine hits both alike): same server, model, protocol,
    concurrency, input shape and window length. Returns agreement()'s ratios, the ratio of the server's compute
    time per request during the load generator's runs to that during perf_analyzer's, and each tool's client CPU
    time per request it sent (the CPU the client itself took from the machine: the notebook's process for
    the load generator, the child process for perf_analyzer)."""
    from .loadgen import measure as loadgen_measure

    shape = "input:" + ",".join(str(d) for d in inputs.shape[1:])
    course, perf, cpu = [], [], {"loadgen": [0.0, 0], "perf_analyzer": [0.0, 0]}
    for _ in range(repeats):
        served, started = _served(url, model, protocol), time.process_time()
        course.append(loadgen_measure(url, inputs, concurrency=concurrency, protocol=protocol, model=model,
                                      window_s=window_s))
        cpu["loadgen"][0] += time.process_time() - started
        cpu["loadgen"][1] += _served(url, model, protocol) - served
        served, children = _served(url, model, protocol), resource.getrusage(resource.RUSAGE_CHILDREN)
        settings = dict(model=model, protocol=protocol, concurrency=concurrency, batch_size=len(inputs), shape=shape,
                        measurement_ms=int(window_s * 1000))
        perf.append(measure(url, **settings))
        if not perf[-1].stable:
            # On a busy machine three windows may not agree within 10 % (the load generator then reports its
            # last windows as unstable): measure again, accepting 25 %, and say so.
            perf[-1] = measure(url, **settings, stability_percent=LOOSE_STABILITY_PERCENT)
            perf[-1].label = f"perf_analyzer (stable within {LOOSE_STABILITY_PERCENT} %)"
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu["perf_analyzer"][0] += (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        cpu["perf_analyzer"][1] += _served(url, model, protocol) - served
    # The server's compute time per request during each tool's runs: when it differs, the server itself ran at
    # another speed (the machine was busier during one tool's turn), whatever the clients did.
    measured = [m for m in perf if m.stable] or perf  # a point perf_analyzer gave up on has no figures
    compute = (float(np.median([r.server.get("compute_ms", float("nan")) for r in course]))
               / float(np.median([m.compute_ms for m in measured])))
    return {"protocol": protocol, **agreement(course, measured), "server compute ratio": round(compute, 3),
            "stable": all(r.stable for r in course) and all(m.label == "perf_analyzer" and m.stable for m in perf),
            **{f"{tool} CPU ms/req": round(seconds * 1000 / max(requests, 1), 2)
               for tool, (seconds, requests) in cpu.items()},
            "_measurements": (course, perf)}
