"""A real load balancer in front of several Triton servers: HAProxy, with the config written here.

The course starts HAProxy itself (Debian's `haproxy` package, or any binary on PATH or in $HAPROXY)
on 127.0.0.1 with a config it writes from the servers it is given, waits until every server passed
its health check, and stops it (and removes its folder) with the notebook, like its Triton servers:
a reaper kills it if the notebook's kernel dies without stopping it.

`config_text(...)` is the config itself, so a lesson can print it; `Balancer` runs it and speaks to
HAProxy's runtime API (the admin socket) to read server states and to drain, ready or maint a server.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .errors import PortInUseError, ServerStartError
from .paths import MODEL_NAME
from .runtimes.base import free_port, port_holder, port_is_free
from .supervised import SupervisedProcess

INSTALL_FIX = ("Install it: `sudo apt-get install haproxy` (Debian, Ubuntu; Debian puts it in /usr/sbin, "
               "which must be on PATH), or put an `haproxy` 2.6 or newer on PATH (or set $HAPROXY to it).")
# One FP32 image request is 3x224x224x4 = 602,112 bytes of tensor plus a few hundred bytes of header.
# HAProxy retries a request only if the whole of it fits in one buffer: 1 MiB holds one image with room.
BUFSIZE = 1 << 20
MAXCONN = 256  # bounds HAProxy's memory: buffers are allocated per connection in flight
RETRY_ON = "conn-failure empty-response junk-response 503"
# A dead server is marked DOWN between 0.25 and 1.25 s after it died (its first failed check within 1 s,
# the second 250 ms later); a live one costs one GET a second.
HEALTH_CHECK = "inter 1s fastinter 250ms fall 2 rise 2"
SOCKET_NAME = "admin.sock"  # relative to HAProxy's working folder, so the printed config holds no temp path
TLS_PEM = "tls.pem"  # the server certificate and key, when HAProxy terminates TLS; in the same folder
HTTP_BACKEND, GRPC_BACKEND = "triton_http", "triton_grpc"


class BalancerError(ServerStartError):
    """HAProxy refused its config, did not start, or did not see the servers; its own words are quoted."""

    source = "HAProxy"


def find_haproxy() -> str | None:
    return os.environ.get("HAPROXY") or shutil.which("haproxy")


def unavailable_reason() -> str | None:
    return None if find_haproxy() else "no haproxy binary on PATH or in $HAPROXY. " + INSTALL_FIX


def server_names(count: int) -> list[str]:
    """HAProxy's names for the servers, in the order given: triton1, triton2, ..."""
    return [f"triton{i}" for i in range(1, count + 1)]


def _require_servers(servers) -> None:
    if not servers:
        raise BalancerError("The balancer was given no servers.",
                            fix="Start one or more Triton servers first and pass them: Balancer([server1, server2]).")


def policy(model: str = MODEL_NAME, *, retry_on: str = RETRY_ON, health_check: str = HEALTH_CHECK) -> str:
    """The lines of the config that decide which servers get requests (the health check) and what happens to
    a request whose server fails (retries): the part of `defaults` that lab 14 asks the learner to write."""
    return f"""\
    # A server gets requests only while Triton says the model is ready (200; 400 while it is not).
    option httpchk GET /v2/models/{model}/ready
    http-check expect status 200
    # inter: time between checks; fastinter: between checks while a server changes state (a check
    # just failed); fall / rise: failed / passed checks in a row that mark it DOWN / UP.
    default-server {health_check}
    # Inference is idempotent: sending the same request again gives the same answer. So retry when the
    # connection failed, or the server closed it before answering (killed), or answered garbage or 503.
    retry-on {retry_on}
    retries 3
    option redispatch 1        # every retry goes to another server (by default only the last one does)
"""


def config_text(servers, *, model: str = MODEL_NAME, host: str = "127.0.0.1", http_port: int = 8080,
                grpc_port: int = 8081, stats_port: int = 8404, bufsize: int = BUFSIZE,
                checks_and_retries: str | None = None, tls: bool = False) -> str:
    """HAProxy's config for `servers` (anything with http_address and grpc_address, such as the course's
    TritonServer objects): one frontend and backend for HTTP, one for gRPC, and a stats page.
    `checks_and_retries` replaces the lines of `policy(model)` (health check and retries). With `tls`, the HTTP
    and gRPC frontends speak TLS with the certificate in TLS_PEM (HTTPS, and gRPC with ssl=True); HAProxy
    speaks plain HTTP to Triton on the machine behind it."""
    _require_servers(servers)
    rules = policy(model) if checks_and_retries is None else _indented(checks_and_retries)
    names = server_names(len(servers))
    http_servers = "\n".join(f"    server {name} {s.http_address} check" for name, s in zip(names, servers))
    grpc_servers = "\n".join(f"    server {name} {s.grpc_address} proto h2 track {HTTP_BACKEND}/{name}"
                             for name, s in zip(names, servers))
    return f"""\
# HAProxy 2.6 in front of {len(servers)} Triton server(s), written by triton_course.balancer.
global
    # The runtime API on a Unix socket only this user can open: `show stat`, and
    # `set server BACKEND/SERVER state ready|drain|maint` (admin level).
    stats socket unix@{SOCKET_NAME} mode 600 level admin
    # A request is retried on another server only if all of it fits in one buffer (default 16384 bytes).
    # One FP32 image request is about 600 KB, so a buffer holds {bufsize} bytes; each connection in
    # flight may hold a request and a response buffer, so maxconn bounds the memory this costs.
    tune.bufsize {bufsize}
    maxconn {MAXCONN}

defaults
    mode http
    timeout connect 1s         # loopback: a live server accepts at once, a dead one refuses at once
    timeout client 60s         # an idle client connection is closed after this
    timeout server 60s         # longer than any inference of the course, so none is cut short
    timeout http-keep-alive 10s
    timeout check 1s           # a health check that takes longer counts as failed
{rules.rstrip()}

frontend triton_http_in
    bind {host}:{http_port}{f" ssl crt {TLS_PEM}" if tls else ""}
    default_backend {HTTP_BACKEND}

backend {HTTP_BACKEND}
    balance roundrobin
    # Wait for the whole request before sending it on: HAProxy drops the retry of a request it began to
    # forward while the client was still sending it (on a busy machine, such requests were lost at a kill).
    # HTTP only: a gRPC stream may stay open for many messages, and HAProxy does not resend gRPC anyway.
    option http-buffer-request
    # `check`: HAProxy checks each server as `defaults` says (no `option httpchk`: a TCP connect only).
{http_servers}

frontend triton_grpc_in
{GRPC_TLS_COMMENT if tls else GRPC_PLAIN_COMMENT}
    bind {host}:{grpc_port}{f" ssl crt {TLS_PEM} alpn h2" if tls else " proto h2"}
    default_backend {GRPC_BACKEND}

backend {GRPC_BACKEND}
    balance roundrobin
    # HTTP/2 to Triton's gRPC port; each server follows the state (and drain, maint) of the same
    # Triton in the HTTP backend, so one health check covers both protocols.
{grpc_servers}

frontend stats
    bind {host}:{stats_port}
    stats enable
    stats uri /stats
    stats refresh 2s
    http-request use-service prometheus-exporter if {{ path /metrics }}
"""


GRPC_PLAIN_COMMENT = """\
    # gRPC is HTTP/2; without TLS the client speaks it from the first byte (h2c "prior knowledge"):
    # `proto h2` makes this port speak HTTP/2 only."""
GRPC_TLS_COMMENT = """\
    # gRPC is HTTP/2: over TLS, client and HAProxy agree on it in the handshake (ALPN `h2`)."""


def _indented(lines: str) -> str:
    """Config lines as HAProxy's sections hold them: each indented by four spaces."""
    return "".join(f"    {line.strip()}\n" for line in lines.strip().splitlines())


@dataclass
class ServerState:
    """One Triton as HAProxy sees it (from `show stat`): its health, and the requests of both protocols."""

    name: str
    address: str       # its HTTP address
    status: str        # UP, DOWN, DRAIN, MAINT; "UP 1/2" while going down, "DOWN 1/2" while coming up
    check: str         # the last health check: L7OK, L7STS (wrong status), L4CON (refused), L4TOUT...
    check_detail: str  # HAProxy's words about a failed check, e.g. "Connection refused"
    current: int       # requests it is serving now
    total: int         # requests sent to it so far
    retried: int       # requests that failed on it and were sent again
    redispatched: int  # of those, the ones sent again to another server
    answered_4xx: int  # HTTP answers 400-499 it gave (Triton: e.g. the model is not loaded there)

    def __str__(self) -> str:
        detail = f" ({self.check_detail})" if self.check_detail else ""
        return f"{self.name:8} {self.address:21} {self.status:9} check {self.check}{detail}"


class Balancer(SupervisedProcess):
    """HAProxy in front of `servers` (course TritonServer objects); a context manager, or start() and stop().

    Ports are picked free unless given; it binds 127.0.0.1 unless `host` says otherwise.
    """

    name = "haproxy"
    stop_timeout = 10.0  # SIGTERM: HAProxy closes its connections and exits at once

    def __init__(self, servers, *, model: str = MODEL_NAME, host: str = "127.0.0.1", http_port: int | None = None,
                 grpc_port: int | None = None, stats_port: int | None = None, bufsize: int = BUFSIZE,
                 checks_and_retries: str | None = None, expect_up: int | None = None, startup_timeout: float = 30.0,
                 tls=None):
        super().__init__()
        self.servers = list(servers)
        _require_servers(self.servers)
        self.names = server_names(len(self.servers))
        self.model, self.host = model, host
        self.requested_ports = {"http": http_port, "grpc": grpc_port, "stats": stats_port}
        self.ports: dict[str, int] = {}
        self.settings = {"bufsize": bufsize, "checks_and_retries": checks_and_retries, "tls": tls is not None}
        self.tls = tls  # a tls.Certificates: HAProxy terminates TLS with its server certificate
        # start() returns once this many servers passed their health check (all of them unless told)
        self.expect_up = len(self.servers) if expect_up is None else expect_up
        self.startup_timeout = startup_timeout

    # --- addresses -----------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_address(self) -> str:
        return f"{self._client_host}:{self.ports['http']}"

    @property
    def grpc_address(self) -> str:
        return f"{self._client_host}:{self.ports['grpc']}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.http_address}"

    @property
    def stats_url(self) -> str:
        return f"http://{self._client_host}:{self.ports['stats']}/stats"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.ports['stats']}/metrics"

    @property
    def config_path(self) -> Path:
        return self.workdir / "haproxy.cfg"

    def config(self) -> str:
        """The config HAProxy runs (ports are picked at start() unless given)."""
        ports = self.ports or {k: v or 0 for k, v in self.requested_ports.items()}
        return config_text(self.servers, model=self.model, host=self.host, http_port=ports["http"],
                           grpc_port=ports["grpc"], stats_port=ports["stats"], **self.settings)

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> "Balancer":
        if self.is_running:
            return self
        binary = find_haproxy()
        if binary is None:
            raise BalancerError("HAProxy is not installed here.", fix=INSTALL_FIX)
        self._choose_ports()
        self._make_workdir()
        self.config_path.write_text(self.config())
        if self.tls is not None:
            pem = self.workdir / TLS_PEM
            pem.write_text(self.tls.server_pem())
            pem.chmod(0o600)  # it holds the server's private key
        try:
            self._check_config(binary)
            # -db: stay in the foreground, one process, so that stop() and the reaper can end it.
            self._launch([binary, "-db", "-f", self.config_path.name], cwd=self.workdir)
            self._wait_until_servers_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _choose_ports(self) -> None:
        self.ports = {}
        for name, port in self.requested_ports.items():
            if port is None:
                port = free_port(self.host or "0.0.0.0")
                while port in self.ports.values():
                    port = free_port(self.host or "0.0.0.0")
            elif not port_is_free(port, self.host or "0.0.0.0"):
                raise PortInUseError(port, port_holder(port))
            self.ports[name] = port

    def _check_config(self, binary: str) -> None:
        """`haproxy -c`: HAProxy reads the config and says what it rejects, without starting."""
        checked = subprocess.run([binary, "-c", "-f", self.config_path.name], cwd=self.workdir,
                                 capture_output=True, text=True, timeout=30)
        if checked.returncode != 0:
            said = _alerts(checked.stdout + checked.stderr)
            where = re.search(r"\[haproxy\.cfg:(\d+)\]", said)
            line = self.config_path.read_text().splitlines()[int(where[1]) - 1].strip() if where else ""
            raise BalancerError("HAProxy rejected the config.", triton_said=said,
                                fix=(f"Line {where[1]} reads `{line}`: correct it. " if where else "")
                                + "balancer.config() prints the whole config.")

    def _wait_until_servers_up(self) -> None:
        """Until HAProxy answers on its ports and every server passed its health check, or the deadline."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise BalancerError(f"HAProxy exited while starting (exit code {self.process.returncode}).",
                                    triton_said=_alerts(self.log_text()),
                                    fix="Read HAProxy's message above: a port in use is the usual cause.")
            states = self._states_if_listening()
            # L7OK: Triton answered the check; L4OK: a TCP-only check connected; "no check": none configured
            passed = [s for s in states if s.status == "no check"
                      or (s.status == "UP" and s.check.startswith(("L7OK", "L4OK")))]
            # HAProxy counts a server UP until `fall` checks failed: the others must be DOWN before the start
            # returns, or requests would still reach them.
            others_down = all(s in passed or s.status.startswith(("DOWN", "MAINT")) for s in states)
            if states and len(passed) >= self.expect_up and others_down:
                return
            if time.monotonic() > deadline:
                seen = "\n".join(map(str, states)) if states else _alerts(self.log_text())
                raise BalancerError(
                    f"Not every server passed HAProxy's health check (GET /v2/models/{self.model}/ready) "
                    f"within {self.startup_timeout:.0f} s.", triton_said=seen,
                    fix=f"Start the servers first and check that each one has '{self.model}' loaded and ready "
                        f"(L4CON: nothing listens at that address; L7STS: Triton answered, but not 200).")
            time.sleep(0.1)

    def _states_if_listening(self) -> list[ServerState]:
        try:
            with socket.create_connection((self._client_host, self.ports["http"]), timeout=0.5):
                pass
            return self.states()
        except OSError:
            return []

    # --- the runtime API (HAProxy's admin socket) ------------------------------------------------
    def command(self, line: str) -> str:
        """Send one runtime API command and return HAProxy's answer."""
        # A Unix socket's path may hold at most 107 bytes, and the work folder sits under the cache, which can be
        # deeper than that: reach the socket through a descriptor of its folder instead (/proc/self/fd/N/...).
        folder = os.open(self.workdir, os.O_PATH)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(f"/proc/self/fd/{folder}/{SOCKET_NAME}")
                s.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
        finally:
            os.close(folder)
        return b"".join(chunks).decode(errors="replace")

    def states(self) -> list[ServerState]:
        """Every Triton as HAProxy sees it now, in the order given. Health comes from the HTTP backend (the
        gRPC one follows it); requests are those of both backends."""
        rows = [r for r in csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
                if r["pxname"] in (HTTP_BACKEND, GRPC_BACKEND) and r["svname"] in self.names]

        def count(name: str, field: str) -> int:
            return sum(int(r[field] or 0) for r in rows if r["svname"] == name)

        states = []
        for r in (r for r in rows if r["pxname"] == HTTP_BACKEND):
            name, passed = r["svname"], r["check_status"].startswith("L7OK")
            states.append(ServerState(
                name=name, address=r["addr"], status=r["status"], check=r["check_status"],
                check_detail="" if passed else (r["last_chk"] or r["check_desc"]),
                current=count(name, "scur"), total=count(name, "stot"),
                retried=count(name, "wretr"), redispatched=count(name, "wredis"),
                answered_4xx=count(name, "hrsp_4xx")))
        return states

    def state(self, server) -> ServerState:
        name = self.name_of(server)
        return next(s for s in self.states() if s.name == name)

    def name_of(self, server) -> str:
        """HAProxy's name of `server` (a TritonServer given to the balancer, or a name such as 'triton1')."""
        if isinstance(server, str) and server in self.names:
            return server
        for name, candidate in zip(self.names, self.servers):
            if candidate is server:
                return name
        raise BalancerError(f"{server!r} is not one of this balancer's servers.",
                            fix=f"Pass one of the servers given to the balancer, or one of {', '.join(self.names)}.")

    def _set_state(self, server, state: str) -> None:
        name = self.name_of(server)
        answer = self.command(f"set server {HTTP_BACKEND}/{name} state {state}").strip()
        if answer:  # HAProxy answers nothing when the command worked
            raise BalancerError(f"HAProxy refused to set {name} to {state}.", triton_said=answer)

    def server_list(self) -> str:
        """One line per Triton as HAProxy sees it now."""
        return "\n".join(map(str, self.states()))

    def drain(self, server) -> None:
        """No new requests for `server`; those it is serving finish. Health checks go on."""
        self._set_state(server, "drain")

    def ready(self, server) -> None:
        """Back to normal: `server` gets requests again (while its health check passes)."""
        self._set_state(server, "ready")

    def maint(self, server) -> None:
        """Maintenance: no requests and no health checks for `server`."""
        self._set_state(server, "maint")

    def wait_until(self, server, status: str, timeout: float = 30.0) -> float:
        """Seconds until HAProxy shows `server` with `status` (e.g. "DOWN"), polled every 20 ms."""
        started = time.monotonic()
        while True:
            current = self.state(server)
            if current.status == status:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise BalancerError(f"{current.name} was not {status} within {timeout:.0f} s.",
                                    triton_said=str(current),
                                    fix="The line above is HAProxy's view of it now (its state and its last health "
                                        "check); balancer.server_list() shows every server.")
            time.sleep(0.02)

    def wait_until_idle(self, server, timeout: float = 30.0) -> float:
        """Seconds until `server` serves no request (HAProxy's count of those in flight to it, both protocols):
        after drain(), the moment it can be stopped without cutting a request short."""
        started = time.monotonic()
        while (current := self.state(server)).current:
            if time.monotonic() - started > timeout:
                raise BalancerError(f"{current.name} still served {current.current} request(s) after {timeout:.0f} s.",
                                    triton_said=str(current),
                                    fix="A request that long is stuck: stop the server anyway (its clients get an "
                                        "error), or wait longer with wait_until_idle(server, timeout=...).")
            time.sleep(0.02)
        return time.monotonic() - started

    def memory(self) -> dict[str, float]:
        """What HAProxy holds, in MB: its resident memory, and what its buffer pools allocated and use."""
        info = dict(line.split(":", 1) for line in self.command("show info").splitlines() if ":" in line)
        return {"rss_mb": psutil.Process(self.process.pid).memory_info().rss / 1e6,
                "pool_alloc_mb": float(info.get("PoolAlloc_MB", "nan")),
                "pool_used_mb": float(info.get("PoolUsed_MB", "nan"))}


def _alerts(text: str) -> str:
    """HAProxy's ALERT messages (what made it refuse or stop) without their prefix and without the two
    lines that only say that errors were found; else the end of what it wrote."""
    alerts = [re.sub(r"^\[ALERT\]\s+\(\d+\) : (config : )?", "", line.strip()) for line in text.splitlines()
              if line.startswith("[ALERT]")]
    alerts = [a for a in alerts if not a.startswith(("Error(s) found in configuration", "Fatal errors found"))]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "\n".join(alerts[-5:] or lines[-8:])
