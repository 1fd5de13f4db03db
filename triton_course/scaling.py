"""Several Triton servers behind one client: round-robin over the healthy ones.

The course balances in the client (the web app's or the notebook's) rather than through nginx:
it needs no extra install, so it runs on a pod without root or apt, and every step of it
(health checks, removal, retries) is plain Python a learner can read. In production the same
job is done by a load balancer or a Kubernetes Service in front of pods with readiness probes.

- `ServerPool` sends each request to the next server that passed its last health check
  (`/v2/models/NAME/ready`, polled in a background thread), and removes a server the moment a
  request to it fails and it no longer answers ready: the request is retried on another one.
- `drain` takes a server out of rotation before it is stopped (planned maintenance);
  `restore` puts it back once it is ready again.
- `measure` (closed loop) and `run_load` (open loop with a timeline) put load through a pool.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import requests

from .artifact import INPUT_NAME, OUTPUT_NAME
from .errors import InferenceError
from .loadgen import Result, _Recorder, _result
from .paths import MODEL_NAME


@dataclass
class Answer:
    """Who answered one request, and how many servers failed it first."""

    output: np.ndarray
    server: str
    retries: int


class ServerPool:
    """Client-side load balancing over Triton servers (HTTP URLs) with health checks.

    Use as a context manager (the health-check thread stops with it). Thread-safe: every thread
    gets its own tritonclient connections, as tritonclient's clients are not shared between threads.
    """

    def __init__(self, urls: list[str], *, model: str = MODEL_NAME, check_every_s: float = 0.2,
                 check_timeout_s: float = 1.0, request_timeout_s: float = 30.0):
        if not urls:
            raise ValueError("ServerPool needs at least one server URL")
        self.urls = list(dict.fromkeys(urls))
        self.model = model
        self.check_every_s = check_every_s
        self.check_timeout_s = check_timeout_s
        self.request_timeout_s = request_timeout_s
        self._healthy = set(self.urls)
        self._drained: set[str] = set()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._local = threading.local()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.perf_counter()
        self.events: list[tuple[float, str]] = []  # (seconds since start, what happened)
        self.answered = {url: 0 for url in self.urls}
        self.retries = 0

    # --- health ------------------------------------------------------------------------------
    def is_ready(self, url: str) -> bool:
        """Triton's own answer: 200 from /v2/models/NAME/ready means the model takes requests."""
        try:
            # Connection: close, as an idle keep-alive connection would hold up a server asked to stop
            with requests.get(f"{url}/v2/models/{self.model}/ready", timeout=self.check_timeout_s,
                              headers={"Connection": "close"}) as response:
                return response.status_code == 200
        except requests.RequestException:
            return False

    def check(self) -> None:
        """One round of health checks: remove servers that stopped answering ready, re-add those that came back."""
        for url in self.urls:
            ready = self.is_ready(url)
            with self._lock:
                if url in self._drained:
                    continue
                if ready and url not in self._healthy:
                    self._healthy.add(url)
                    self._note(f"{url} is ready again: back in rotation")
                elif not ready and url in self._healthy:
                    self._healthy.discard(url)
                    self._note(f"{url} failed its health check: removed")

    def healthy(self) -> list[str]:
        with self._lock:
            return [url for url in self.urls if url in self._healthy]

    def _note(self, text: str) -> None:
        self.events.append((time.perf_counter() - self._started, text))

    def start(self) -> ServerPool:
        self.check()
        self._thread = threading.Thread(target=self._watch, name="server-pool-health", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> ServerPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- planned maintenance -----------------------------------------------------------------
    def drain(self, url: str) -> None:
        """Send no new requests to `url` (those already sent still finish)."""
        with self._lock:
            self._drained.add(url)
            self._healthy.discard(url)
            self._note(f"{url} drained: no new requests")

    def restore(self, url: str) -> None:
        """Let the health check put `url` back into rotation once it answers ready."""
        with self._lock:
            self._drained.discard(url)
            self._note(f"{url} restored: back once its health check passes")

    # --- requests ----------------------------------------------------------------------------
    def _client(self, url: str):
        import tritonclient.http as httpclient

        clients = self._local.__dict__.setdefault("clients", {})
        if url not in clients:
            clients[url] = httpclient.InferenceServerClient(
                url.split("://", 1)[-1], connection_timeout=self.request_timeout_s,
                network_timeout=self.request_timeout_s)
        return clients[url]

    def _forget_client(self, url: str) -> None:
        client = self._local.__dict__.get("clients", {}).pop(url, None)
        if client is not None:
            client.close()

    def _next(self, tried: set[str]) -> str | None:
        with self._lock:
            candidates = [url for url in self.urls if url in self._healthy and url not in tried]
            return candidates[next(self._turn) % len(candidates)] if candidates else None

    def infer(self, inputs: np.ndarray, *, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> Answer:
        """Send `inputs` to the next healthy server; if it fails and no longer answers ready, remove
        it and retry on another. An error from a server that is still ready (a bad request) is raised."""
        import tritonclient.http as httpclient
        from tritonclient.utils import np_to_triton_dtype

        tried: set[str] = set()
        failures: list[str] = []
        while (url := self._next(tried)) is not None:
            tried.add(url)
            tensor = httpclient.InferInput(input_name, list(inputs.shape), np_to_triton_dtype(inputs.dtype))
            tensor.set_data_from_numpy(inputs)
            try:
                result = self._client(url).infer(self.model, [tensor],
                                                 outputs=[httpclient.InferRequestedOutput(output_name)])
            except Exception as exc:  # noqa: BLE001 - connection errors and Triton errors both land here
                message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
                self._forget_client(url)
                if self.is_ready(url):
                    raise InferenceError(f"Server {url} refused the request to '{self.model}'.",
                                         triton_said=message) from exc
                failures.append(f"{url}: {message}")
                with self._lock:
                    if url in self._healthy:
                        self._healthy.discard(url)
                        self._note(f"{url} failed a request and is not ready: removed")
                    self.retries += 1
                continue
            with self._lock:
                self.answered[url] += 1
            return Answer(result.as_numpy(output_name), url, len(failures))
        raise InferenceError(
            f"No server of the pool could answer '{self.model}' ({len(self.urls)} configured, none healthy).",
            triton_said="; ".join(failures),
            fix="Start a server (or wait for one to become ready): pool.healthy() lists those that pass the "
                "health check.")


def measure(pool: ServerPool, inputs: np.ndarray, *, concurrency: int, seconds: float = 3.0,
            warmup_s: float = 1.0, label: str = "") -> Result:
    """Closed loop through the pool: `concurrency` clients, each sending as soon as it is answered."""
    recorder = _Recorder()
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            started = time.perf_counter()
            error = None
            try:
                pool.infer(inputs)
            except InferenceError as exc:
                error = str(exc)
            ended = time.perf_counter()
            recorder.add(ended, ended - started, error)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(warmup_s)  # load generation: the clients are busy meanwhile
        start = time.perf_counter()
        time.sleep(seconds)
        end = time.perf_counter()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return _result(label, recorder.between(start, end), end - start, {}, concurrency=concurrency,
                   batch_size=len(inputs))


@dataclass
class Timeline:
    """Every request of an open-loop run: when it was sent, who answered, retries, errors."""

    sent_at: np.ndarray
    servers: list[str]
    retries: np.ndarray
    errors: list[str]

    @property
    def failed(self) -> int:
        return sum(1 for e in self.errors if e)

    def per_server(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for server, error in zip(self.servers, self.errors):
            if not error:
                counts[server] = counts.get(server, 0) + 1
        return counts


def run_load(pool: ServerPool, inputs: np.ndarray, *, rate: float, seconds: float,
             actions: dict[float, callable] | None = None, max_in_flight: int = 32) -> Timeline:
    """Open loop: a request every 1/rate seconds for `seconds`, whatever the servers do; `actions`
    maps a time (seconds after the start) to a function run then, e.g. stopping a server."""
    pending = sorted((actions or {}).items())
    sent_at, futures = [], []

    def one():
        try:
            answer = pool.infer(inputs)
            return answer.server, answer.retries, ""
        except InferenceError as exc:
            return "", 0, str(exc)

    running: list[threading.Thread] = []
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max_in_flight) as executor:
        n = 0
        while (due := n / rate) < seconds:
            while pending and pending[0][0] <= time.perf_counter() - start:
                # in a thread of its own, so that stopping a server does not hold up the schedule
                running.append(threading.Thread(target=pending.pop(0)[1], daemon=True))
                running[-1].start()
            delay = start + due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # the schedule itself: an open loop sends on time
            sent_at.append(time.perf_counter() - start)
            futures.append(executor.submit(one))
            n += 1
        for _, action in pending:  # actions scheduled after the last request still run
            action()
        outcomes = [f.result() for f in futures]
    for thread in running:
        thread.join(120)
    return Timeline(np.array(sent_at), [o[0] for o in outcomes], np.array([o[1] for o in outcomes]),
                    [o[2] for o in outcomes])


def compare(one: list[Result], several: list[Result], servers: int, cores: int) -> str:
    """What the sweep of one server against `servers` servers says, in words, from its own numbers."""
    best_one = max(r.throughput for r in one)
    best_several = max(r.throughput for r in several)
    ratio = best_several / best_one
    top = max(r.concurrency for r in one)
    p99_one = next(r for r in one if r.concurrency == top).percentile(99)
    p99_several = next(r for r in several if r.concurrency == top).percentile(99)
    numbers = (f"Best throughput: {best_one:.0f} infer/s with one server, {best_several:.0f} with {servers} "
               f"(x{ratio:.2f}); p99 at c={top}: {p99_one:.1f} ms vs {p99_several:.1f} ms.")
    if ratio >= 1.3:
        why = (f"{servers} servers were faster: this machine had capacity that one server left idle, and each "
               "server kept its own share busy.")
    elif ratio > 0.9:
        why = (f"{servers} servers were not faster on this machine ({cores} CPU cores): one server's onnxruntime "
               "already runs one thread per core, so the others only share the same cores. Scaling out pays "
               "when each server gets hardware of its own: another GPU, another machine.")
    else:
        why = (f"{servers} servers were slower on this machine ({cores} CPU cores): they compete for the same cores "
               f"with {servers} times the threads, and switching between them costs time. Scaling out pays when "
               "each server gets hardware of its own: another GPU, another machine.")
    return f"{numbers}\n{why}"
