"""Model Analyzer, Triton's own configuration search, run against the course's server.

`model-analyzer profile` starts a Triton server, writes one model configuration after another
(instance count, max batch size, dynamic batching), loads each, measures it with perf_analyzer at
several concurrencies, and writes CSV tables, HTML reports and the configs it tried. Here it runs in
its *local* launch mode with the embedded tritonserver (python backend only): the model it profiles
is the course's served copy, where the course's onnxruntime runner (model.py) serves model.onnx.
In NVIDIA's container the onnxruntime backend would serve it instead.

The course builds its YAML config (`profile_config`), runs it (`profile`) with a deadline and with
its processes stopped when the notebook goes, reads its results table (`read_results`), picks the
best configuration under a p99 budget (`best_under_budget`) and reads the chosen config.pbtxt.
"""

from __future__ import annotations

import csv
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import yaml

from . import gpu, perf_analyzer
from .errors import CourseError
from .model_config import ModelConfig, copy_config, read_config
from .paths import MODEL_NAME
from .runtimes.base import free_port
from .runtimes.embedded import EmbeddedServer
from .runtimes.stand_in import served_copy

VERSION = "1.58.0"  # the triton-model-analyzer release pyproject.toml pins
RESULTS_CSV = "metrics-model-inference.csv"  # one row per configuration and concurrency, under export/results
# A search small enough for 2 CPU cores: brute force over 1-2 instances, max batch 1, 2, 4, and 1, 2, 4 clients.
SMALL_SEARCH = {
    "run_config_search_mode": "brute",
    "run_config_search_max_instance_count": 2,
    "run_config_search_max_model_batch_size": 4,
    "run_config_search_max_concurrency": 4,
}
DEFAULT_DEADLINE_S = 900
# The columns of its inference table: its defaults plus the latency split (tags from its docs/metrics.md).
INFERENCE_FIELDS = ["model_name", "batch_size", "concurrency", "model_config_path", "instance_group", "max_batch_size",
                    "satisfies_constraints", "perf_throughput", "perf_latency_avg", "perf_latency_p90",
                    "perf_latency_p95", "perf_latency_p99", "perf_server_queue", "perf_server_compute_input",
                    "perf_server_compute_infer", "perf_server_compute_output", "perf_client_send_recv"]
# perf_analyzer calls a measurement stable when three windows agree within 10 % (its default). On a small,
# shared CPU machine that can take many retries per point, so the course accepts 25 % here: minutes, not a quarter
# of an hour. Pass stability=10 on a quiet or larger machine.
STABILITY_PERCENT = 25


class ModelAnalyzerError(CourseError):
    """Model Analyzer failed or cannot run; `triton_said` quotes Model Analyzer."""

    source = "Model Analyzer"


class NothingUnderBudgetError(CourseError):
    """No configuration Model Analyzer measured keeps p99 within the budget."""

    source = "the course"


@dataclass
class Row:
    """One line of Model Analyzer's results table: one configuration at one concurrency."""

    config: str  # the model config name Model Analyzer gave it, e.g. efficientnet_lite0_config_3
    instances: int
    max_batch_size: int
    dynamic_batching: bool
    concurrency: int
    throughput: float  # inferences per second
    p99_ms: float
    p90_ms: float
    p95_ms: float
    avg_ms: float
    queue_ms: float
    compute_ms: float  # server compute input + infer + output

    @property
    def is_default(self) -> bool:
        """Whether this is the model's own config, as it was in the repository (not one MA wrote)."""
        return self.config.endswith("_config_default")

    def row(self) -> dict:
        return {"config": self.config, "instances": self.instances, "max batch": self.max_batch_size,
                "dyn. batching": "yes" if self.dynamic_batching else "no", "clients": self.concurrency,
                "infer/s": round(self.throughput, 1), "p99 ms": round(self.p99_ms, 1),
                "queue ms": round(self.queue_ms, 2), "compute ms": round(self.compute_ms, 2)}


@dataclass
class Profile:
    """What one `model-analyzer profile` run left behind, and what the course read from it."""

    config_path: Path  # the YAML it ran with
    export_path: Path  # results/ (CSV) and reports/ (HTML)
    output_repository: Path  # one model folder per configuration it tried
    log_path: Path
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def results_csv(self) -> Path:
        return self.export_path / "results" / RESULTS_CSV

    def reports(self) -> list[Path]:
        """The HTML (or PDF, where wkhtmltopdf exists) reports it wrote: the summary, then the detailed ones."""
        found = sorted((self.export_path / "reports").rglob("*.html")) + sorted(
            (self.export_path / "reports").rglob("*.pdf"))
        return sorted(found, key=lambda p: ("summaries" not in p.parts, str(p)))

    def summary_report(self) -> Path:
        return next(p for p in self.reports() if "summaries" in p.parts)

    def summary_text(self) -> str:
        """The sentences of the summary report (its plots and tables left out), one paragraph a line."""
        html = self.summary_report().read_text(errors="replace")
        html = re.sub(r"<table.*?</table>|<img[^>]*>", "", html, flags=re.S)
        blocks = re.split(r"<(?:/?p|/?h\d|/?li|br)[^>]*>", html)
        text = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", b)).strip() for b in blocks]
        return "\n".join(t for t in text if t)

    def summary_choice(self) -> str | None:
        """The configuration the summary report names as the best (under its constraints), if it names one."""
        report = self.summary_report().read_text(errors="replace")
        match = re.search(r"configurations?, <strong>([^<]+)</strong>", report)
        return match.group(1) if match else None

    def plots(self) -> list[Path]:
        """The PNG plots Model Analyzer drew (throughput against latency, per configuration too)."""
        return sorted((self.export_path / "plots").rglob("*.png"))

    def configs(self) -> list[str]:
        """The configurations measured: the model's own first, then in the order Model Analyzer wrote them."""
        return list(dict.fromkeys(r.config for r in self.rows))

    def model_config(self, name: str) -> ModelConfig:
        """The config.pbtxt Model Analyzer wrote for configuration `name`, read with Triton's protobuf."""
        path = self.output_repository / name / "config.pbtxt"
        if not path.exists():
            raise ModelAnalyzerError(f"Model Analyzer wrote no configuration named '{name}'.",
                                     fix="Use one of: " + ", ".join(self.configs()))
        return read_config(path)


# --- the config --------------------------------------------------------------------------------

def profile_config(repository: str | Path, workdir: str | Path, *, model: str = MODEL_NAME,
                   search: dict | None = None, shape: str = "input:3,224,224",
                   stability: int = STABILITY_PERCENT) -> dict:
    """Model Analyzer's YAML config, as a dict, for a local-mode `profile` run of `model` in
    `repository` (a repository the embedded server can serve: a served copy) with the embedded
    tritonserver and the course's perf_analyzer. Results go under `workdir`."""
    server = EmbeddedServer()  # only for its binary, backends folder and environment: nothing starts
    env = server.environment()
    workdir = Path(workdir).resolve()
    binary = perf_analyzer.find_binary()
    if binary is None:
        raise ModelAnalyzerError("Model Analyzer measures with perf_analyzer, which cannot run here.",
                                 fix=perf_analyzer.unavailable_reason() or "Run `triton-course prepare`.")
    ports: set[int] = set()
    while len(ports) < 3:  # three different free ports for the server Model Analyzer starts
        ports.add(free_port())
    http, grpc, metrics = sorted(ports)
    config = {
        "model_repository": str(Path(repository).resolve()),
        "output_model_repository_path": str(workdir / "output_models"),
        "override_output_model_repository": True,
        "export_path": str(workdir / "export"),
        "checkpoint_directory": str(workdir / "checkpoints"),  # its parent (workdir) must exist
        "triton_launch_mode": "local",  # MA starts the server; dcgm_disable is refused in this mode
        "triton_server_path": str(server.binary()),
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "triton_server_flags": {"backend-directory": str(server.backend_directory()),
                                "http-address": "127.0.0.1", "grpc-address": "127.0.0.1",
                                "metrics-address": "127.0.0.1"},
        # what the python backend's stub needs to import this environment's onnxruntime and numpy
        "triton_server_environment": {k: env[k] for k in ("LD_LIBRARY_PATH", "PATH", "PYTHONPATH")},
        "triton_output_path": str(workdir / "tritonserver.log"),
        "perf_analyzer_path": str(binary),
        "perf_analyzer_max_auto_adjusts": 3,
        "inference_output_fields": INFERENCE_FIELDS,
        **(SMALL_SEARCH if search is None else search),
        "profile_models": {model: {"cpu_only": True, "perf_analyzer_flags": {
            "shape": shape, "stability-percentage": stability}}},
    }
    return config


def write_config(config: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def command() -> list[str]:
    """How to start Model Analyzer from this Python environment."""
    found = Path(sys.executable).parent / "model-analyzer"
    if found.exists():
        return [str(found)]
    on_path = shutil.which("model-analyzer")
    if on_path:
        return [on_path]
    raise ModelAnalyzerError("Model Analyzer is not installed in this environment.",
                             fix=f"Run `make setup`, or `pip install triton-model-analyzer=={VERSION}`.")


# --- running it ----------------------------------------------------------------------------------

# Runs Model Analyzer as its child and stays its parent: as a child subreaper it also becomes the
# parent of the servers and perf_analyzers MA starts in sessions of their own. When MA ends, when the
# notebook's process (argv[1]) is gone, or on SIGTERM, it stops every process left below it.
_GUARD = r"""
import ctypes, os, signal, subprocess, sys, time
owner = int(sys.argv[1])
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
child = subprocess.Popen(sys.argv[2:])
def below():
    parents = {}
    for pid in os.listdir("/proc"):
        try:
            parents[int(pid)] = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    found, todo = set(), [os.getpid()]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(kids)
        todo += kids
    return found
def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False
while child.poll() is None and alive(owner) and not stop:
    time.sleep(0.5)
for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
    end = time.monotonic() + grace
    for pid in below():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    while time.monotonic() < end and any(alive(p) for p in below()):
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        time.sleep(0.2)
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
sys.exit(child.returncode if child.returncode is not None else 124)
"""


# The keys of Model Analyzer's config that depend on this machine, not on the learner's question: where the
# embedded tritonserver, its backends and perf_analyzer are, free ports, the environment the python backend
# needs, where results go. `complete_config` adds them to the learner's YAML.
MACHINE_KEYS = ("output_model_repository_path", "override_output_model_repository", "export_path",
                "checkpoint_directory", "triton_server_path", "triton_http_endpoint", "triton_grpc_endpoint",
                "triton_metrics_url", "triton_server_flags", "triton_server_environment", "triton_output_path",
                "perf_analyzer_path", "perf_analyzer_max_auto_adjusts", "inference_output_fields")
CONFIG_FILE = "config.yaml"


def _profiled_model(profile_models) -> str:
    """The one model named under profile_models (a name, a list of one name, or a mapping with one key)."""
    names = [profile_models] if isinstance(profile_models, str) else list(profile_models or [])
    if len(names) != 1:
        raise ModelAnalyzerError(f"profile_models names {len(names)} models; the course runs one at a time.",
                                 fix="Name one model folder of model_repository under profile_models.")
    return str(names[0])


def complete_config(text: str, workdir: str | Path) -> Path:
    """Model Analyzer's config file from the learner's YAML `text` (model_repository, triton_launch_mode,
    the search, constraints, profile_models, ...): the learner's keys as written, plus MACHINE_KEYS for this
    machine. model_repository becomes a served copy of the learner's repository (the embedded server's python
    backend runs model.onnx through the course's runner). Written to workdir/config.yaml; returns its path."""
    try:
        learner = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelAnalyzerError("The config is not valid YAML.", triton_said=str(exc),
                                 fix="Indent with spaces; write `key: value` pairs.") from None
    if not isinstance(learner, dict):
        raise ModelAnalyzerError("The config must be a YAML mapping of Model Analyzer's keys.",
                                 fix="Start from the lesson's config.")
    for key in ("model_repository", "profile_models"):
        if key not in learner:
            raise ModelAnalyzerError(f"The config has no {key}: Model Analyzer needs it.",
                                     fix="Add it, as in the lesson's config.")
    mode = learner.get("triton_launch_mode", "local")
    if mode != "local":
        raise ModelAnalyzerError(f"triton_launch_mode is {mode!r}: here Model Analyzer must start the embedded "
                                 "tritonserver itself.", fix="Write triton_launch_mode: local.")
    clash = [k for k in learner if k in MACHINE_KEYS]
    if clash:
        raise ModelAnalyzerError(f"{', '.join(clash)} depend(s) on this machine: the course writes them.",
                                 fix="Leave them out of your config.")
    model = _profiled_model(learner["profile_models"])
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repository = Path(learner["model_repository"])
    served = _served_copy(repository, workdir)
    machine = profile_config(served, workdir, model=model, search={})
    config = {**learner, "model_repository": str(served), **{k: machine[k] for k in MACHINE_KEYS}}
    return write_config(config, workdir / CONFIG_FILE)


# Model Analyzer loads NVIDIA DCGM whenever numba sees a CUDA GPU (model_analyzer/device/gpu_device_factory.py), from
# one of these paths (model_analyzer/monitor/dcgm/dcgm_structs.py); a pip install brings none, nor does a typical pod.
DCGM_PATHS = (f"/usr/lib/{platform.machine()}-linux-gnu/libdcgm.so.4", "/usr/lib64/libdcgm.so.4")


def environment() -> dict[str, str]:
    """What Model Analyzer's environment needs beyond this one. On a machine with a GPU but no DCGM:
    NUMBA_DISABLE_CUDA=1, which hides the GPU from numba, so Model Analyzer skips DCGM and profiles the course's
    `cpu_only` model on the CPU, without its GPU columns (memory, utilization, power)."""
    if not gpu.nvidia_smi_gpus() or any(Path(path).is_file() for path in DCGM_PATHS):
        return {}
    return {"NUMBA_DISABLE_CUDA": "1"}


def _served_copy(repository: str | Path, workdir: Path) -> Path:
    """The copy of `repository` the embedded server Model Analyzer starts can serve. Where Model Analyzer runs
    without the GPU (environment()), the server it starts sees none either: the copy then runs on the CPU."""
    hidden = {gpu.DEVICE_VARIABLE: "cpu"} if "NUMBA_DISABLE_CUDA" in environment() else {}
    with mock.patch.dict(os.environ, hidden):  # put back as it was afterwards
        return served_copy(repository, EmbeddedServer().backends, workdir / "served_repository")[0]


def command_line(config_path: str | Path) -> str:
    """The command `run_profile` runs, as the learner would type it."""
    prefix = "".join(f"{key}={value} " for key, value in environment().items())
    return f"{prefix}model-analyzer profile -f {config_path}"


def profile(repository: str | Path, workdir: str | Path, *, model: str = MODEL_NAME, search: dict | None = None,
            p99_budget_ms: float | None = None, deadline_s: float = DEFAULT_DEADLINE_S, stream: bool = True,
            extra: dict | None = None) -> Profile:
    """Run `model-analyzer profile` on `model` of `repository` (the learner's repository: a copy the
    embedded server can serve is made under `workdir`) and read its results. A `p99_budget_ms` becomes
    Model Analyzer's own constraint (perf_latency_p99), which its summary report then applies.

    Its log goes to workdir/model_analyzer.log; with `stream`, the lines that matter (`shown`) are printed as they
    come, then where the whole log is. It is stopped, with the servers it started, after `deadline_s` seconds or
    when this Python process ends."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    served = _served_copy(repository, workdir)
    config = profile_config(served, workdir, model=model, search=search)
    if p99_budget_ms is not None:
        config["constraints"] = {"perf_latency_p99": {"max": p99_budget_ms}}
    config.update(extra or {})
    path = write_config(config, workdir / "model_analyzer.yaml")
    return run_profile(path, deadline_s=deadline_s, stream=stream, repository=repository)


def run_profile(config_path: str | Path, *, deadline_s: float = DEFAULT_DEADLINE_S, stream: bool = True,
                repository: str | Path | None = None) -> Profile:
    """Run `model-analyzer profile -f config_path` (a complete config: `complete_config` or `profile` writes
    one) and read its results. `repository` is the learner's own, named in errors instead of the served copy."""
    config_path = Path(config_path).resolve()
    config = yaml.safe_load(config_path.read_text())
    workdir = config_path.parent
    served = Path(config["model_repository"])
    repository = Path(repository) if repository is not None else served
    model = _profiled_model(config["profile_models"])
    for folder in ("export", "checkpoints"):  # a fresh run: no checkpoint from an earlier one is reused
        shutil.rmtree(workdir / folder, ignore_errors=True)
    result = Profile(config_path=config_path, export_path=Path(config["export_path"]),
                     output_repository=Path(config["output_model_repository_path"]),
                     log_path=workdir / "model_analyzer.log")
    args = [sys.executable, "-I", "-c", _GUARD, str(os.getpid()), *command(), "profile", "-f", str(config_path)]
    started = time.monotonic()
    with open(result.log_path, "wb") as log:
        guard = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=workdir, env={**os.environ, **environment()})
    try:
        code = _follow(guard, result.log_path, started + deadline_s, stream, model)
    finally:
        if guard.poll() is None:
            guard.send_signal(signal.SIGTERM)  # the guard stops Model Analyzer and its servers
            guard.wait()
    result.seconds = time.monotonic() - started
    log_text = result.log_path.read_text(errors="replace")
    if stream:
        print(f"(the lines that matter; Model Analyzer's whole log, {len(_log_lines(log_text))} lines: "
              f"{result.log_path})", flush=True)
    if code is None:
        raise ModelAnalyzerError(f"Model Analyzer did not finish within {deadline_s:.0f} s and was stopped.",
                                 triton_said=_last_lines(log_text, 4),
                                 fix="Make the search smaller (run_config_search_max_* keys) or give it a longer "
                                     f"deadline_s. Its log: {result.log_path}")
    if code != 0 or not result.results_csv.exists():
        # Its messages name the served copy: show the learner's own repository instead.
        raise _failure(log_text.replace(str(served), str(repository.resolve())), code, repository, model,
                       result.log_path)
    result.rows = read_results(result.results_csv, result.output_repository)
    return result


GAVE_UP = -1  # what _follow returns when the log shows the run cannot succeed


def _follow(process: subprocess.Popen, log_path: Path, deadline: float, stream: bool, model: str) -> int | None:
    """Wait for `process`, printing the lines of its log that matter (`shown`) as they arrive. Its exit code;
    None past the deadline; GAVE_UP when the model itself failed to load (Model Analyzer would then retry for
    minutes before it stops)."""
    offset, text, pending = 0, "", ""
    while True:
        code = process.poll()
        with open(log_path, "rb") as log:
            log.seek(offset)
            chunk = log.read()
        offset += len(chunk)
        text += chunk.decode(errors="replace")
        pending += chunk.decode(errors="replace")
        complete, _, pending = pending.rpartition("\n")  # a line half written waits for its end
        if code is not None:
            complete, pending = complete + "\n" + pending, ""
        lines = shown(_log_lines(complete))
        if stream and lines:
            print("\n".join(lines), flush=True)
        if code is not None:
            return code
        if re.search(rf"Model {re.escape(model)} load failed:", text):
            return GAVE_UP
        if time.monotonic() > deadline:
            return None
        time.sleep(1.0)


# The lines of Model Analyzer's log a notebook shows while it runs: each configuration it writes, each
# concurrency it measures, a measurement it repeats, where its search stops early ("No longer increasing
# max_batch_size because throughput has plateaued"), the end, and anything that went wrong. The rest (checkpoints,
# warnings about GPU metrics on a CPU machine, report paths) stays in model_analyzer.log.
SHOWN = re.compile(r"^Creating model config|^Profiling .*: concurrency=|request count is too small"
                   r"|^No longer increasing|^Profile complete|ERROR|encountered an error|load failed")


def shown(lines: list[str]) -> list[str]:
    """The lines of `lines` (Model Analyzer's log, without its prefix) that SHOWN keeps."""
    return [line for line in lines if SHOWN.search(line)]


def _log_lines(text: str) -> list[str]:
    """Model Analyzer's log lines that say something, without its "[Model Analyzer]" prefix."""
    lines = (re.sub(r"^\[Model Analyzer\]\s?", "", line).rstrip() for line in text.splitlines())
    return [line for line in lines if line.strip()]


def _last_lines(text: str, n: int) -> str:
    return "\n".join(line.strip() for line in _log_lines(text)[-n:])


def _failure(log_text: str, code: int, repository, model: str, log_path: Path) -> ModelAnalyzerError:
    """The error for a failed run: Model Analyzer's own message and what to do about it."""
    load_failed = re.findall(rf"(Model {re.escape(model)} load failed: .*)", log_text)
    said = re.findall(r"Model Analyzer encountered an error: (.*)", log_text)
    errors = [line.split("] ", 1)[-1].strip() for line in log_text.splitlines() if "ERROR" in line]
    message = (load_failed or said or [""])[-1] or "\n".join(errors[-3:]) or _last_lines(log_text, 4)
    missing = not (Path(repository) / model / "config.pbtxt").exists()
    not_found = re.search(r"(config\.pbtxt\" does not exist|Model path .* does not exist)", message)
    if missing and (load_failed or not_found):
        names = sorted(p.name for p in Path(repository).iterdir() if (p / "config.pbtxt").exists())
        stopped = " (stopped there: it would retry for minutes)" if code == GAVE_UP else ""
        return ModelAnalyzerError(f"Model Analyzer found no model '{model}' in the repository {repository}{stopped}.",
                                  triton_said=message,
                                  fix="Profile a model folder of that repository: " + (", ".join(names) or "none has "
                                      "a config.pbtxt") + ".")
    if "not a valid yaml argument" in log_text:
        bad = re.findall(r"(\S+) is not a valid yaml argument", log_text)
        return ModelAnalyzerError(f"Model Analyzer does not know the key(s) {', '.join(bad)} in its config.",
                                  triton_said=message,
                                  fix="Spell the keys as docs/config.md of Model Analyzer does (with underscores).")
    if "DCGM_ST_LIBRARY_NOT_FOUND" in log_text:
        # It loads NVIDIA DCGM whenever CUDA is visible (model_analyzer/device/gpu_device_factory.py); a pip
        # install brings no DCGM (Model Analyzer's docs/install.md). Seen on an H200 machine without it.
        return ModelAnalyzerError("Model Analyzer could not start: this machine has a GPU, and Model Analyzer then "
                                  "needs NVIDIA DCGM (libdcgm.so), which is not installed here.",
                                  triton_said=message,
                                  fix="Start it with NUMBA_DISABLE_CUDA=1 in its environment (it then profiles on "
                                      "the CPU, without GPU metrics; triton_course.model_analyzer.profile does so), "
                                      "or install DCGM (the datacenter-gpu-manager package from NVIDIA's CUDA "
                                      "repository), or use Triton's SDK image "
                                      "(nvcr.io/nvidia/tritonserver:<tag>-py3-sdk), which has it.")
    if load_failed:
        return ModelAnalyzerError(f"The model '{model}' failed to load when Model Analyzer started it.",
                                  triton_said=message,
                                  fix=f"Start the repository with triton_course.start_server to see why; its log: "
                                      f"{log_path}")
    return ModelAnalyzerError(f"Model Analyzer stopped with exit code {code}.", triton_said=message,
                              fix=f"Read its log: {log_path}")


# --- its results --------------------------------------------------------------------------------

def _number(row: dict, *keys: str) -> float:
    for key in keys:
        if row.get(key) not in (None, ""):
            return float(row[key])
    return float("nan")


def read_results(path: str | Path, output_repository: str | Path | None = None) -> list[Row]:
    """Model Analyzer's metrics-model-inference.csv: one Row per configuration and concurrency, in its order.
    Whether a configuration batches dynamically is not in the table: it is read from the config.pbtxt Model
    Analyzer wrote into `output_repository` (when given)."""
    text = Path(path).read_text()
    rows = list(csv.DictReader(line for line in text.splitlines() if line.strip()))
    if rows and "Model Config Path" not in rows[0]:
        raise ValueError(f"{path} is not Model Analyzer's inference table (columns: {', '.join(rows[0])})")
    batching: dict[str, bool] = {}
    for name in dict.fromkeys(r["Model Config Path"] for r in rows):
        config = Path(output_repository or "") / name / "config.pbtxt"
        batching[name] = output_repository is not None and config.exists() and \
            read_config(config).HasField("dynamic_batching")
    parsed = [_row(r, batching[r["Model Config Path"]]) for r in rows]
    return sorted(parsed, key=lambda r: (_written_order(r.config), r.concurrency))


def _written_order(name: str) -> int:
    """-1 for NAME_config_default, N for NAME_config_N: the order Model Analyzer wrote the configurations in
    (its table lists them by its ranking instead)."""
    suffix = name.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def _row(r: dict, dynamic_batching: bool) -> Row:
    instances = re.match(r"\s*(\d+)", r.get("Instance Group") or "")
    return Row(
        config=r["Model Config Path"], instances=int(instances.group(1)) if instances else 1,
        max_batch_size=int(_number(r, "Max Batch Size")), dynamic_batching=dynamic_batching,
        concurrency=int(_number(r, "Concurrency", "Request Concurrency")),
        throughput=_number(r, "Throughput (infer/sec)"), p99_ms=_number(r, "p99 Latency (ms)"),
        p90_ms=_number(r, "p90 Latency (ms)"), p95_ms=_number(r, "p95 Latency (ms)"),
        avg_ms=_number(r, "Avg Latency (ms)"), queue_ms=_number(r, "Server Queue time (ms)"),
        compute_ms=sum(_number(r, k) for k in ("Server Compute Input time (ms)", "Server Compute Infer time (ms)",
                                                "Server Compute Output time (ms)")))


def table(rows: list[Row]) -> str:
    from .loadgen import table as plain_table

    return plain_table([r.row() for r in rows])


def best_under_budget(rows: list[Row], p99_budget_ms: float) -> Row:
    """The row with the most throughput whose p99 is within the budget. When none is, the error says
    the lowest p99 that was measured and what to change."""
    fitting = [r for r in rows if r.p99_ms <= p99_budget_ms]
    if fitting:
        return max(fitting, key=lambda r: r.throughput)
    if not rows:
        raise NothingUnderBudgetError("Model Analyzer's results have no measurement to choose from.",
                                      fix="Run the profile again and read its log.")
    fastest = min(rows, key=lambda r: r.p99_ms)
    raise NothingUnderBudgetError(
        f"No configuration Model Analyzer measured keeps p99 within {p99_budget_ms:g} ms: the lowest p99 measured "
        f"was {fastest.p99_ms:.1f} ms ({fastest.config} with {fastest.concurrency} client(s)).",
        fix=f"Raise the budget to at least {fastest.p99_ms:.1f} ms, or search where latency is lower: fewer "
            "clients (run_config_search_min_concurrency / max_concurrency), smaller batches, a faster machine.")


def frontier(rows: list[Row]) -> list[Row]:
    """The points no other point beats on both throughput and p99 latency, by rising p99."""
    ordered = sorted(rows, key=lambda r: (r.p99_ms, -r.throughput))
    best, kept = float("-inf"), []
    for r in ordered:
        if r.throughput > best:
            kept.append(r)
            best = r.throughput
    return kept


def plot(rows: list[Row], p99_budget_ms: float | None = None, chosen: Row | None = None, ax=None):
    """Throughput against p99 latency: one curve per configuration, the frontier, the budget and the choice."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r.config for r in rows):
        points = sorted((r for r in rows if r.config == name), key=lambda r: r.concurrency)
        first = points[0]
        label = (f"{name.rsplit('_', 1)[-1]}: {first.instances} inst, max batch {first.max_batch_size}"
                 + (", dyn" if first.dynamic_batching else ""))
        ax.plot([r.p99_ms for r in points], [r.throughput for r in points], marker="o", alpha=0.6,
                linestyle="--" if first.is_default else "-", label=label)
    edge = frontier(rows)
    ax.plot([r.p99_ms for r in edge], [r.throughput for r in edge], color="black", linewidth=2, alpha=0.4,
            label="frontier")
    if p99_budget_ms is not None:
        ax.axvline(p99_budget_ms, color="red", linestyle=":", label=f"p99 budget {p99_budget_ms:g} ms")
    if chosen is not None:
        ax.scatter([chosen.p99_ms], [chosen.throughput], s=250, facecolors="none", edgecolors="red", linewidths=2)
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("throughput (infer/s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def deployable_config(base: ModelConfig, chosen: ModelConfig, name: str | None = None) -> ModelConfig:
    """`base` (the learner's own config, e.g. platform onnxruntime_onnx) with the settings Model Analyzer
    searched taken from `chosen`: max_batch_size, dynamic_batching and instance_group."""
    config = copy_config(base, name)
    config.max_batch_size = chosen.max_batch_size
    for part in ("dynamic_batching", "instance_group"):
        config.ClearField(part)
    if chosen.HasField("dynamic_batching"):
        config.dynamic_batching.CopyFrom(chosen.dynamic_batching)
    config.instance_group.extend(chosen.instance_group)
    return config
