"""The course's load generator: what perf_analyzer measures, in Python, with every request's raw
latency kept (the lessons and labs work on them; perf_analyzer.side_by_side holds it against
perf_analyzer on the same load):

- closed loop (`measure`, `sweep`): N clients, each sends its next request as soon as the last
  one returns; after a warm-up, fixed windows are measured until throughput is stable;
- open loop (`measure_rate`): requests leave on a fixed schedule whatever the server does.

Every request is counted (errors too), and the server's own view (queue and compute times,
batch sizes it formed) comes from the statistics API beside the client's latencies.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .artifact import INPUT_NAME, OUTPUT_NAME
from .clients import client, infer_inputs, requested_outputs, unregister_shared_memory
from .paths import MODEL_NAME

FIRST_ANSWER_TIMEOUT_S = 60.0  # the longest a warm-up waits for every client's first answer


@dataclass
class Result:
    """One measured load point: the client's view and the server's."""

    label: str
    concurrency: int | None
    rate: float | None
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray = field(repr=False)
    server: dict = field(default_factory=dict)
    stable: bool = True
    first_error: str = ""
    batch_size: int = 1
    failed_sent_at: tuple[float, ...] = field(default=(), repr=False)  # time.perf_counter() when each failed one left

    @property
    def throughput(self) -> float:
        """Inferences per second: successful requests x rows per request, as perf_analyzer counts."""
        return (self.requests - self.errors) * self.batch_size / self.seconds if self.seconds else 0.0

    @property
    def load(self) -> str:
        return f"c={self.concurrency}" if self.concurrency else f"{self.rate:g}/s"

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.latencies_ms, p)) if len(self.latencies_ms) else float("nan")

    def row(self) -> dict:
        return {
            "config": self.label,
            "load": self.load,
            "infer/s": round(self.throughput, 1),
            "p50 ms": round(self.percentile(50), 1),
            "p90 ms": round(self.percentile(90), 1),
            "p95 ms": round(self.percentile(95), 1),
            "p99 ms": round(self.percentile(99), 1),
            "errors": self.errors,
            "queue ms": round(self.server.get("queue_ms", float("nan")), 2),
            "compute ms": round(self.server.get("compute_ms", float("nan")), 2),
            "batch": round(self.server.get("avg_batch", float("nan")), 2),
            "stable": self.stable,
        }


def _request_maker(protocol: str, inputs: np.ndarray, input_name: str, output_name: str, region: str | None = None):
    """Builds one request's tensors: the input's bytes in the request, or a reference to the
    shared-memory region that already holds them."""
    shared_memory = {input_name: region} if region else None

    def make():
        return (infer_inputs({input_name: inputs}, protocol, shared_memory=shared_memory),
                requested_outputs([output_name], protocol))

    return make


@contextmanager
def _input_region(url: str, protocol: str, inputs: np.ndarray, enabled: bool):
    """With `enabled`, the input is written once into a system shared-memory region registered
    with the server (as perf_analyzer's --shared-memory system does): requests then carry a
    reference instead of the tensor's bytes. Yields the region's name, or None."""
    if not enabled:
        yield None
        return
    import tritonclient.utils.shared_memory as shm

    name = f"course_loadgen_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region(name, f"/{name}", inputs.nbytes)
    triton = client(url, protocol)
    try:
        shm.set_shared_memory_region(handle, [np.ascontiguousarray(inputs)])
        triton.register_system_shared_memory(name, f"/{name}", inputs.nbytes)
        try:
            yield name
        finally:
            unregister_shared_memory(triton, name)
    finally:
        triton.close()
        shm.destroy_shared_memory_region(handle)


def server_stats(url: str, model: str = MODEL_NAME, protocol: str = "http") -> dict:
    """Triton's cumulative statistics for a model (the statistics extension), flattened by `statistics_totals`."""
    triton = client(url, protocol)
    try:
        kwargs = {"as_json": True} if protocol == "grpc" else {}
        return statistics_totals(triton.get_inference_statistics(model, **kwargs))
    finally:
        triton.close()


def statistics_totals(stats: dict) -> dict:
    """Triton's statistics answer (its "model_stats" entries, one per version) summed: requests that succeeded,
    inferences and executions (inferences / executions is the average batch Triton formed), queue and compute
    nanoseconds, and "batches": batch size -> how many times the model ran that size."""
    totals = {"inference_count": 0, "execution_count": 0, "queue_ns": 0, "compute_ns": 0, "success": 0,
              "batches": {}}
    # Over gRPC the statistics are protobuf turned to JSON, which leaves out every field that is zero.
    for entry in stats["model_stats"]:
        s = entry.get("inference_stats", {})
        totals["inference_count"] += int(entry.get("inference_count", 0))
        totals["execution_count"] += int(entry.get("execution_count", 0))
        totals["success"] += int(s.get("success", {}).get("count", 0))
        totals["queue_ns"] += int(s.get("queue", {}).get("ns", 0))
        totals["compute_ns"] += sum(int(s.get(k, {}).get("ns", 0))
                                    for k in ("compute_input", "compute_infer", "compute_output"))
        for b in entry.get("batch_stats") or []:
            size = int(b["batch_size"])
            totals["batches"][size] = totals["batches"].get(size, 0) + int(b.get("compute_infer", {}).get("count", 0))
    totals["batches"] = dict(sorted(totals["batches"].items()))
    return totals


def server_delta(before: dict, after: dict) -> dict:
    """What the server did between two `server_stats` readings: requests, executions, average batch,
    per-request times."""
    requests = after["success"] - before["success"]
    executions = after["execution_count"] - before["execution_count"]
    inferences = after["inference_count"] - before["inference_count"]
    batches = {k: after["batches"].get(k, 0) - before["batches"].get(k, 0) for k in after["batches"]}
    return {
        "requests": requests,
        "executions": executions,
        "avg_batch": inferences / executions if executions else float("nan"),
        "queue_ms": (after["queue_ns"] - before["queue_ns"]) / requests / 1e6 if requests else float("nan"),
        "compute_ms": (after["compute_ns"] - before["compute_ns"]) / requests / 1e6 if requests else float("nan"),
        "batch_sizes": {k: v for k, v in sorted(batches.items()) if v},
    }


class _Recorder:
    """Thread-safe log of (end time, latency, error) for every request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records: list[tuple[float, float, str | None]] = []

    def add(self, end: float, latency: float, error: str | None) -> None:
        with self.lock:
            self.records.append((end, latency, error))

    def between(self, start: float, end: float) -> list[tuple[float, float, str | None]]:
        with self.lock:
            return [r for r in self.records if start <= r[0] < end]


def _send(triton, make, model: str, recorder: _Recorder) -> None:
    from tritonclient.utils import InferenceServerException

    inputs, outputs = make()
    started = time.perf_counter()
    error = None
    try:
        triton.infer(model, inputs, outputs=outputs)
    except InferenceServerException as exc:
        error = exc.message()
    except Exception as exc:  # noqa: BLE001 - a dropped connection is an error to count, not to hide
        error = f"{type(exc).__name__}: {exc}"
    ended = time.perf_counter()
    recorder.add(ended, ended - started, error)


def _windows(recorder, start, window_s, stability, max_windows, deadline_fn):
    """Measure consecutive windows until the last three agree within `stability` (as perf_analyzer
    does: throughput and p50 latency within ±10 %), or max_windows pass. Returns (start, end, stable)."""
    edges = [start]
    while True:
        target = edges[-1] + window_s
        while time.perf_counter() < target:
            deadline_fn(target)
        edges.append(target)
        windows = [recorder.between(a, b) for a, b in zip(edges, edges[1:])]
        if len(windows) >= 3:
            last = windows[-3:]
            rates = [len(w) / window_s for w in last]
            p50s = [np.median([r[1] for r in w]) if w else float("inf") for w in last]
            if (min(rates) > 0 and max(rates) / min(rates) - 1 <= stability
                    and max(p50s) / min(p50s) - 1 <= stability):
                return edges[-4], edges[-1], True
        # Past max_windows, go on while the last three windows are empty (a server stalled, e.g. a GPU
        # loading the kernels of a batch size it meets for the first time), up to FIRST_ANSWER_TIMEOUT_S.
        if len(windows) >= max_windows and (any(windows[-3:]) or edges[-1] - edges[0] > FIRST_ANSWER_TIMEOUT_S):
            return edges[-4] if len(edges) >= 4 else edges[0], edges[-1], False


def measure(url: str, inputs: np.ndarray, *, concurrency: int = 1, protocol: str = "http",
            model: str = MODEL_NAME, label: str = "", warmup_s: float = 1.0, window_s: float = 1.0,
            stability: float = 0.1, max_windows: int = 8, input_name: str = INPUT_NAME,
            output_name: str = OUTPUT_NAME, shared_memory: bool = False) -> Result:
    """Closed loop: `concurrency` clients send `inputs` back to back; a stable stretch of three
    windows after the warm-up is what is reported. `shared_memory=True` passes the input through
    a system shared-memory region instead of the request (client and server on one machine)."""
    recorder = _Recorder()
    stop = threading.Event()

    def worker(region: str | None) -> None:
        triton = client(url, protocol)
        make = _request_maker(protocol, inputs, input_name, output_name, region)
        try:
            while not stop.is_set():
                _send(triton, make, model, recorder)
        finally:
            triton.close()

    with _input_region(url, protocol, inputs, shared_memory) as region:
        threads = [threading.Thread(target=worker, args=(region,), daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        try:
            before, (start, end, stable), after = _closed_loop_windows(
                url, protocol, model, recorder, concurrency, warmup_s=warmup_s, window_s=window_s,
                stability=stability, max_windows=max_windows)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
    return _result(label, recorder.between(start, end), end - start, server_delta(before, after),
                   concurrency=concurrency, stable=stable, batch_size=len(inputs))


def _closed_loop_windows(url: str, protocol: str, model: str, recorder: _Recorder, concurrency: int, *,
                         warmup_s: float, window_s: float, stability: float, max_windows: int):
    """While the clients send: warm up, then measure windows until stable. Returns (server statistics
    before, (start, end, stable), server statistics after)."""
    time.sleep(warmup_s)  # load generation, not waiting on a server: the clients are busy meanwhile
    # A first call can take longer than the warm-up (a GPU loads its kernels on first use): warm up
    # until as many answers as clients came back, or FIRST_ANSWER_TIMEOUT_S passes.
    deadline = time.perf_counter() + FIRST_ANSWER_TIMEOUT_S
    while len(recorder.between(0.0, float("inf"))) < concurrency and time.perf_counter() < deadline:
        time.sleep(0.05)
    before = server_stats(url, model, protocol)
    window = _windows(recorder, time.perf_counter(), window_s, stability, max_windows,
                      lambda target: time.sleep(min(0.05, max(0.0, target - time.perf_counter()))))
    return before, window, server_stats(url, model, protocol)


def measure_rate(url: str, inputs: np.ndarray, *, rate: float, seconds: float = 5.0, protocol: str = "http",
                 model: str = MODEL_NAME, label: str = "", max_in_flight: int = 64,
                 input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME, read_server: bool = True,
                 client_options: dict | None = None) -> Result:
    """Open loop: requests leave every 1/rate seconds whatever the server does (up to
    max_in_flight at once; a request that finds them all busy is counted as an error).
    `read_server=False`: leave Triton's statistics unread (through a load balancer, that reading
    would reach whichever server is next), so the result holds the clients' view alone.
    `client_options` go to each sending thread's tritonclient client (channel_args=..., say)."""
    recorder = _Recorder()
    slots = threading.Semaphore(max_in_flight)
    local = threading.local()

    def fire():
        if not hasattr(local, "triton"):
            local.triton = client(url, protocol, **(client_options or {}))
            local.make = _request_maker(protocol, inputs, input_name, output_name)
        try:
            _send(local.triton, local.make, model, recorder)
        finally:
            slots.release()

    before = server_stats(url, model, protocol) if read_server else None
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        n = 0
        while True:
            due = start + n / rate
            if due >= start + seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # the schedule itself: an open loop sends on time, not on answers
            if slots.acquire(blocking=False):
                pool.submit(fire)
            else:
                now = time.perf_counter()
                recorder.add(now, 0.0, f"more than {max_in_flight} requests in flight")
            n += 1
    end = time.perf_counter()
    server = server_delta(before, server_stats(url, model, protocol)) if read_server else {}
    return _result(label, recorder.between(start, end + 60), end - start, server, rate=rate, batch_size=len(inputs))


def _result(label, records, seconds, server, *, concurrency=None, rate=None, stable=True, batch_size=1) -> Result:
    errors = [r[2] for r in records if r[2]]
    latencies = np.array([r[1] * 1000 for r in records if not r[2]])
    return Result(label=label, concurrency=concurrency, rate=rate, requests=len(records), errors=len(errors),
                  seconds=seconds, latencies_ms=latencies, server=server, stable=stable,
                  first_error=errors[0] if errors else "", batch_size=batch_size,
                  failed_sent_at=tuple(r[0] - r[1] for r in records if r[2]))


def sweep(url: str, inputs: np.ndarray, concurrencies=(1, 2, 4), progress: str | None = None,
          **kwargs) -> list[Result]:
    """`measure` at each concurrency; with `progress` (a label), a progress bar (tqdm) counts the points."""
    if progress:
        from tqdm.auto import tqdm

        concurrencies = tqdm(concurrencies, desc=progress, unit="point")
    return [measure(url, inputs, concurrency=c, **kwargs) for c in concurrencies]


def table(results: list) -> str:
    """A plain-text table, one row per result (anything with .row(), or a dict)."""
    rows = [r if isinstance(r, dict) else r.row() for r in results]
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(row[k])) for row in rows)) for k in keys}
    lines = ["  ".join(k.rjust(widths[k]) for k in keys)]
    lines += ["  ".join(str(row[k]).rjust(widths[k]) for k in keys) for row in rows]
    return "\n".join(lines)


def plot(results: list[Result], ax=None, percentile: float = 99):
    """Throughput against latency, one curve per configuration label."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label in dict.fromkeys(r.label for r in results):
        points = [r for r in results if r.label == label]
        ax.plot([r.percentile(percentile) for r in points], [r.throughput for r in points], marker="o",
                label=label or "run")
        for r in points:
            ax.annotate(r.load,
                        (r.percentile(percentile), r.throughput), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    ax.set_xlabel(f"p{percentile:g} latency (ms)")
    ax.set_ylabel("throughput (infer/s)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax


def best_under_budget(results: list[Result], p99_ms: float) -> Result | None:
    """The highest-throughput result whose p99 latency is within `p99_ms` and that had no
    errors; None when nothing fits the budget."""
    fitting = [r for r in results if r.errors == 0 and r.percentile(99) <= p99_ms]
    return max(fitting, key=lambda r: r.throughput, default=None)
