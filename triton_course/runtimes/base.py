"""What every Triton runtime shares: ports, start, readiness, log, diagnosis, stop.

A runtime subclass says which binary to run, with which environment, and which backends it
has; everything else lives here, so a server behaves the same whatever runs it.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import psutil
import requests

from .. import gpu as gpu_probe
from ..errors import (
    CourseError,
    ModelLoadError,
    ModelProblem,
    PortInUseError,
    ServerStartError,
    find_model_errors,
    stub_failures,
)
from ..model_config import serves_onnx
from ..paths import cache_dir, models_dir
from ..permissions import readable_by_server
from .stand_in import runner_config, served_copy, served_on_gpu

_RUNNING: "weakref.WeakSet[TritonServer]" = weakref.WeakSet()
EXIT_TIMEOUT_SECONDS = 5
PORT_ATTEMPTS = 3  # starts tried when another process takes a port the course picked
ADMIN_HEADER = "admin-key"
RESTRICTED_APIS = "model-repository,shared-memory,trace,logging"  # the APIs that change the server
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # gRPC clients send the header under this prefix
LOG_DAYS_KEPT = 7
SERVED_FOLDER = "served"  # under the cache: the served copies of repositories (reaper.py names it too)
# The python backend's shared-memory regions of a course server are named `SHM_PREFIX<serial>_<uuid>` in /dev/shm.
# Triton removes them when it exits cleanly; after a crash (kill -9) they stay, in memory, until someone removes them.
SHM_PREFIX = "triton_course_"
SHM_FOLDER = Path("/dev/shm")
_COUNTER = itertools.count(1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def client_host(host: str) -> str:
    """The address a client on this machine dials for a server bound to `host` (every address: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def port_holder(port: int) -> str | None:
    """'name (pid N)' of the process listening on `port`, where the system lets us see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
    except (psutil.Error, OSError):
        pass
    return None


def _without_root_file_override() -> None:
    """Runs in the child before exec: drop root's power to read any file (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH), so a file's permissions mean for Triton what they mean for any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP; takes effect at exec


class TritonServer:
    """A running Triton server. Use as a context manager, or call start() and stop().

    Ports are picked free unless given; the server binds 127.0.0.1 unless `host` says
    otherwise; start() returns once /v2/health/ready answers, or raises an error that names
    the failing model, quotes Triton and says what to do.
    """

    runtime = "base"

    def __init__(
        self,
        repository: str | Path | None = None,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        host: str = "127.0.0.1",
        metrics_host: str = "127.0.0.1",
        model_control_mode: str = "none",
        load_models: tuple[str, ...] | list[str] = (),
        extra_args: tuple[str, ...] | list[str] = (),
        startup_timeout: float = 120.0,
        strict: bool = True,
        admin_key: str | None = None,
        allow_client_shm: bool = True,
    ):
        self.repository = Path(repository or models_dir()).expanduser().resolve()
        self.host = host
        self.metrics_host = metrics_host  # stays on loopback when the API is exposed, unless asked
        self.requested_ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.ports: dict[str, int] = {}
        self.model_control_mode = model_control_mode
        self.load_models = list(load_models)
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.strict = strict
        self.model_problems: list[ModelProblem] = []
        self.notes: list[str] = []
        self.process: subprocess.Popen | None = None
        self._launched = False
        self.adapted = False
        self._reaper: subprocess.Popen | None = None
        self.shm_prefix = ""  # set at each start: see SHM_PREFIX
        self.served_repository: Path | None = None
        # With a key, the model-repository and shared-memory APIs answer only requests that carry it
        # in the ADMIN_HEADER header; the course's own calls send it.
        self.admin_key = admin_key
        # The course's load generator and perf_analyzer pass inputs through client shared memory;
        # from Triton 2.68.0 (NGC 26.04) the server refuses it unless started with --allow-client-shm=true.
        self.allow_client_shm = allow_client_shm
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None

    # --- what a runtime provides ---------------------------------------------------------
    @classmethod
    def unavailable_error(cls) -> CourseError | None:
        """None when this runtime can run on this machine, else the error that says why not and what to do."""
        raise NotImplementedError

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this runtime can run on this machine, else why not (one line)."""
        error = cls.unavailable_error()
        return error.what if error else None

    def binary(self) -> Path:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def backend_args(self) -> list[str]:
        return []

    @property
    def backends(self) -> list[str]:
        """The backends this server can load models with."""
        raise NotImplementedError

    # --- addresses -------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return client_host(self.host)

    def bind_host(self, port_name: str) -> str:
        """The address the server's `port_name` port ("http", "grpc", "metrics") binds on this machine."""
        return self.metrics_host if port_name == "metrics" else self.host

    @property
    def http_address(self) -> str:
        """host:port for tritonclient.http."""
        return f"{self._client_host}:{self.ports['http']}"

    @property
    def grpc_address(self) -> str:
        """host:port for tritonclient.grpc."""
        return f"{self._client_host}:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"

    @property
    def metrics_url(self) -> str:
        return f"http://{client_host(self.metrics_host)}:{self.ports['metrics']}/metrics"

    # --- life cycle --------------------------------------------------------------------------
    def command(self) -> list[str]:
        return [
            str(self.binary()),
            f"--model-repository={self.served_repository}",
            f"--http-address={self.host}", f"--http-port={self.ports['http']}",
            f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
            f"--metrics-address={self.metrics_host}", f"--metrics-port={self.ports['metrics']}",
            *self.server_args(),
        ]

    def server_args(self) -> list[str]:
        """Triton's options after the repository and the addresses: the same for every runtime."""
        args = [
            f"--model-control-mode={self.model_control_mode}",
            "--exit-on-error=false",  # the course decides, after reading why a model failed
            # On stop, wait at most this long for open requests and connections (default 30 s).
            f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
            *self.backend_args(),
        ]
        args += [f"--load-model={name}" for name in self.load_models]
        return args + self.restriction_args() + self.client_shm_args() + self.extra_args

    def triton_version_before_start(self) -> str | None:
        """Triton's version, known before the server runs (None where it cannot be known)."""
        return None

    def client_shm_args(self) -> list[str]:
        """--allow-client-shm=true where this Triton needs it for client shared memory (2.68 on)."""
        from ..ngc import needs_allow_client_shm

        version = self.triton_version_before_start()
        if self.allow_client_shm and version and needs_allow_client_shm(version):
            return ["--allow-client-shm=true"]
        return []

    def restriction_args(self) -> list[str]:
        """Triton's own switches that put the APIs that change the server behind the admin key."""
        if not self.admin_key:
            return []
        rule = f"{RESTRICTED_APIS}:{ADMIN_HEADER}={self.admin_key}"
        return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]

    @property
    def admin_headers(self) -> dict[str, str]:
        """The header an HTTP request to a restricted API needs."""
        return {ADMIN_HEADER: self.admin_key} if self.admin_key else {}

    @property
    def grpc_admin_headers(self) -> dict[str, str]:
        """The same for gRPC, whose restricted calls expect the header's name with a prefix."""
        return {GRPC_HEADER_PREFIX + ADMIN_HEADER: self.admin_key} if self.admin_key else {}

    def start(self) -> "TritonServer":
        if self._launched:
            return self
        if not self.repository.is_dir():
            raise ServerStartError(
                f"The model repository {self.repository} does not exist or is not a folder.",
                fix="Pass the folder that holds your model folders (run `triton-course prepare` for the course's).")
        if not readable_by_server(self.repository):
            raise ServerStartError(
                f"The model repository {self.repository} cannot be read by the server.",
                fix=f"Run `chmod a+rx {self.repository}` (a folder needs r to list it and x to enter it).")
        _remove_stale_files()
        logs = cache_dir() / "logs"
        logs.mkdir(exist_ok=True)
        started = time.monotonic()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._choose_ports()
            serial = f"{self.runtime}-{os.getpid()}-{next(_COUNTER)}"
            self.log_path = logs / f"{serial}.log"
            self.shm_prefix = f"{SHM_PREFIX}{serial}_"
            _RUNNING.add(self)
            try:
                self.served_repository, self.notes = served_copy(
                    self.repository, self.backends, cache_dir() / SERVED_FOLDER / serial)
                self.adapted = bool(self.notes)  # one note per model served through the runner
                self._launched = True
                self._launch()
                self._wait_until_ready()
                break
            except PortInUseError as exc:
                self.stop()
                # A free port the course picked was taken by another process before Triton bound it: pick again.
                if attempt == PORT_ATTEMPTS or exc.port in {p for p in self.requested_ports.values() if p}:
                    raise
            except BaseException:
                self.stop()
                raise
        self.startup_seconds = time.monotonic() - started
        return self

    # --- how the server runs: a process here (a subclass may run it elsewhere, e.g. a container) ---
    def _launch(self) -> None:
        """Start the server with its output going to log_path, and the reaper that watches us."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.environment(), start_new_session=True,
                preexec_fn=_without_root_file_override if os.geteuid() == 0 else None)
        self._start_reaper(str(self.process.pid))

    def _start_reaper(self, server: str) -> None:
        """The reaper (reaper.py) that stops `server` (a process group, or container:ID) and removes the
        served copy if this interpreter dies without stopping it."""
        self._reaper = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).with_name("reaper.py")),
             str(os.getpid()), server, str(self.served_repository)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def _exit_code(self) -> int | None:
        """None while the server runs, else its exit code."""
        return self.process.poll() if self.process is not None else -1

    def _terminate(self, timeout: float) -> None:
        """Stop the server process and its python-backend stubs."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # Triton unloads its models, then exits
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # anything left in its group (stubs)
            except ProcessLookupError:
                pass
            process.wait()
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None

    def _choose_ports(self) -> None:
        self.ports = {}
        for name, port in self.requested_ports.items():
            host = self.bind_host(name) or "0.0.0.0"
            if port is None:
                port = free_port(host)
                while port in self.ports.values():
                    port = free_port(host)
            elif not port_is_free(port, host):
                raise PortInUseError(port, port_holder(port))
            self.ports[name] = port

    def _status(self, path: str, timeout: float = 1.0) -> int | None:
        """HTTP status of GET path, or None if nothing answers. The connection is closed at once:
        an idle keep-alive connection would make Triton wait for it when asked to stop."""
        try:
            with requests.get(f"{self.http_url}{path}", timeout=timeout, headers={"Connection": "close"}) as r:
                return r.status_code
        except requests.RequestException:
            return None

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        repositories = self._repository_paths()
        while True:
            code = self._exit_code()
            if code is not None:
                raise self._exit_error(code)
            failed = stub_failures(self.log_text(), repositories)
            if failed:
                raise ModelLoadError([ModelProblem(m, self.readable(msg)) for m, msg in failed.items()])
            if self._status("/v2/health/ready") == 200:
                break
            if self._status("/v2/health/live") == 200:
                break  # HTTP starts once the first loads are over: live but not ready, a model failed
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"Triton ({self.runtime}) was not ready within {self.startup_timeout:.0f} s.",
                    triton_said=self.log_tail(8),
                    fix="Read the log above (server.log_text()): a model may still be loading; "
                        "pass a longer startup_timeout if it is only slow.")
            time.sleep(0.2)
        self._wait_for_metrics(deadline)
        self.model_problems = self._collect_model_problems()
        if self.model_problems and self.strict:
            raise ModelLoadError(self.model_problems)
        for problem in self.model_problems:
            print(problem)

    def _wait_for_metrics(self, deadline: float) -> None:
        """Triton opens its metrics port a moment after HTTP answers ready (seen on a GPU machine, where it
        sets up GPU metrics first): wait for it too, so that a scrape right after start() finds it."""
        if "--allow-metrics=false" in self.extra_args:
            return
        host = client_host(self.metrics_host)
        give_up = min(deadline, time.monotonic() + 10)
        while time.monotonic() < give_up:
            try:
                with socket.create_connection((host, self.ports["metrics"]), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)

    def _collect_model_problems(self) -> list[ModelProblem]:
        repositories = self._repository_paths()
        errors = find_model_errors(self.log_text(), repositories)
        try:
            with requests.post(f"{self.http_url}/v2/repository/index", json={}, timeout=5,
                               headers={"Connection": "close", **self.admin_headers}) as r:
                index = r.json()
        except (requests.RequestException, ValueError):
            index = []
        for entry in index if isinstance(index, list) else []:  # a refusal is a dict with "error"
            if entry.get("state") == "UNAVAILABLE" and entry.get("reason") and entry["name"] not in errors:
                errors[entry["name"]] = entry["reason"]
        return [ModelProblem(model, self.readable(msg)) for model, msg in sorted(errors.items())]

    def _repository_paths(self) -> list[str]:
        """Where the server sees the repository, to trace a file in a message to its model."""
        return [str(self.served_repository), str(self.repository)]

    def readable(self, message: str) -> str:
        """Triton's message with the learner's own paths, without the python stub's stack."""
        # The served copy mirrors the learner's repository: show the learner's own paths.
        if self.served_repository:
            message = message.replace(str(self.served_repository), str(self.repository))
        # A python model's failure ends with the stack of the stub ("\n\nAt:\n  file(line): ..."):
        # the message above it is what the learner needs.
        return message.split("\n\nAt:\n", 1)[0].strip()

    def _exit_error(self, code: int) -> ServerStartError:
        text = self.log_text()
        for line in text.splitlines():
            if "already in use" in line:
                port = next((p for p in self.ports.values() if f":{p}'" in line or f":{p} " in line), None)
                return PortInUseError(port or 0, port_holder(port) if port else None, triton_said=line.strip())
        # A bad command-line option: Triton prints its whole usage text after the one line that matters.
        errors = [line.strip() for line in text.splitlines() if line.startswith(("Bad option", "invalid argument"))]
        errors = errors or [line.strip() for line in text.splitlines()
                            if line.startswith("E") or "error" in line.lower()]
        return ServerStartError(
            f"Triton ({self.runtime}) exited with code {code} while starting.",
            triton_said="\n".join(errors[-5:]) or self.log_tail(8),
            fix="Read Triton's message above; `triton-course doctor` checks what the server needs.")

    def python_shm_args(self) -> list[str]:
        """Names the python backend's shared-memory regions after this server (Triton's default prefix is
        `triton_python_backend_shm_region_`), so that stop() finds the ones a crash left behind."""
        return [f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}"]

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (and everything it started); safe to call twice."""
        if self._launched:
            self._launched = False
            self._terminate(timeout)
            _remove_shm_regions(self.shm_prefix)
        if self._owns_served_copy:
            shutil.rmtree(self.served_repository, ignore_errors=True)
        _RUNNING.discard(self)

    @property
    def _owns_served_copy(self) -> bool:
        """Whether served_repository is a copy this server made (removed at stop, remade at a load)."""
        return self.served_repository is not None and self.served_repository.parent.name == SERVED_FOLDER

    @property
    def is_running(self) -> bool:
        return self._launched and self._exit_code() is None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- looking at it -----------------------------------------------------------------------
    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def metadata(self) -> dict:
        with requests.get(f"{self.http_url}/v2", timeout=5, headers={"Connection": "close"}) as r:
            return r.json()

    @property
    def version(self) -> str:
        return self.metadata()["version"]

    def summary(self) -> str:
        """One paragraph a learner can read: what runs, where, with what."""
        return (f"Triton {self.version} ({self.runtime} runtime) is ready.\n"
                f"  HTTP:    {self.http_url}\n"
                f"  gRPC:    {self.grpc_address}\n"
                f"  metrics: {self.metrics_url}\n"
                f"  backends: {', '.join(self.backends)}\n"
                f"  log:     {self.log_path}")

    def http_client(self, **options):
        """A tritonclient.http client for this server (triton_course.clients.client; `options` go to tritonclient)."""
        from ..clients import client

        return client(self, "http", **options)

    def grpc_client(self, **options):
        """A tritonclient.grpc client for this server (triton_course.clients.client; `options` go to tritonclient)."""
        from ..clients import client

        return client(self, "grpc", **options)

    # --- model control (explicit mode) -------------------------------------------------------
    def load_model(self, name: str, config=None) -> None:
        """Load (or reload) a model; a ModelLoadError quotes Triton if it fails. With `config`
        (a ModelConfig), Triton uses it instead of the repository's config.pbtxt (the load API's
        config override): the file on disk is left as it is."""
        from tritonclient.utils import InferenceServerException

        if self._owns_served_copy:
            self.served_repository, self.notes = served_copy(self.repository, self.backends, self.served_repository)
        log_before = len(self.log_text())
        outcome: dict[str, Exception] = {}

        def load() -> None:
            try:
                override = None
                if config is not None:
                    from google.protobuf import json_format

                    served = config
                    if self._runner_serves(config):
                        on_gpu = self.served_repository is not None and served_on_gpu(self.served_repository / name)
                        served = runner_config(config, gpu=on_gpu)
                    override = json_format.MessageToJson(served)
                client = self.http_client(network_timeout=self.startup_timeout)
                try:
                    client.load_model(name, config=override, headers=self.admin_headers)
                finally:
                    client.close()  # an open connection would make Triton wait for it when it stops
            except Exception as exc:  # noqa: BLE001 - handed to the caller below
                outcome["error"] = exc

        # The load runs in a thread so that a python stub dying (Triton then waits forever) is
        # seen in the log and reported at once.
        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        deadline = time.monotonic() + self.startup_timeout
        while worker.is_alive():
            worker.join(0.2)
            failed = stub_failures(self.log_text()[log_before:], self._repository_paths())
            if name in failed:
                raise ModelLoadError([ModelProblem(name, self.readable(failed[name]))])
            if time.monotonic() > deadline:
                raise ServerStartError(f"Loading '{name}' did not finish within {self.startup_timeout:.0f} s.",
                                       triton_said=self.log_tail(8))
        error = outcome.get("error")
        if isinstance(error, InferenceServerException):
            # Only what this load wrote: an earlier failure of the same model is history.
            errors = find_model_errors(self.log_text()[log_before:], self._repository_paths())
            raise ModelLoadError([ModelProblem(name, self.readable(errors.get(name) or error.message()))])
        if error is not None:
            raise error

    def gpu_for(self, model: str) -> str | None:
        """The GPU this server runs `model` on, or None for the CPU. For a model the course's runner
        serves, its choice (see `notes`); otherwise Triton's config of the loaded model: a KIND_GPU
        instance group. A python model's own code picks its device, so it counts as CPU here."""
        copy = self.served_repository / model if self.served_repository is not None else None
        if copy is not None and copy.is_dir() and not copy.is_symlink():
            return gpu_probe.torch_device_name() if served_on_gpu(copy) else None
        with self.http_client() as client:
            config = client.get_model_config(model)
        if config.get("backend") == "python":
            return None
        kinds = {group.get("kind") for group in config.get("instance_group", [])}
        return (gpu_probe.torch_device_name() or "a GPU") if "KIND_GPU" in kinds else None

    def _runner_serves(self, config) -> bool:
        """Whether an ONNX config must be served by the course's python runner on this server."""
        return serves_onnx(config) and "onnxruntime" not in self.backends

    def unload_model(self, name: str) -> None:
        client = self.http_client()
        try:
            client.unload_model(name, headers=self.admin_headers)
        finally:
            client.close()


def _remove_shm_regions(prefix: str) -> None:
    """The python backend's shared-memory regions named with `prefix`, which a server that crashed left."""
    if prefix:
        for region in SHM_FOLDER.glob(f"{prefix}*"):
            region.unlink(missing_ok=True)


def _remove_stale_files() -> None:
    """Served copies and shared-memory regions left by interpreters that died (their pid is in the names), and
    server logs older than LOG_DAYS_KEPT days."""
    for folder in (cache_dir() / SERVED_FOLDER).glob("*-*-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    for region in SHM_FOLDER.glob(f"{SHM_PREFIX}*-*-*"):
        pid = region.name.removeprefix(SHM_PREFIX).split("-")[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            region.unlink(missing_ok=True)
    cutoff = time.time() - LOG_DAYS_KEPT * 86400
    for log in (cache_dir() / "logs").glob("*.log"):
        try:
            if log.stat().st_mtime < cutoff:
                log.unlink()
        except OSError:
            pass


def stop_all() -> None:
    """Stop every server this interpreter started (runs at exit)."""
    for server in list(_RUNNING):
        server.stop()


atexit.register(stop_all)
