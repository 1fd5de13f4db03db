"""Triton's request traces (lesson 11): where a server writes them, and its trace file read back as one timeline
per request, with the spans Triton's statistics API sums.

A server started with `server_args(file)` collects nothing until the trace API (tritonclient's
`update_trace_settings`) turns tracing on, for every model or for one. With `log_frequency` N, Triton writes each N
collected traces to `<file>.0`, `<file>.1`, ...; with 0, once, to `<file>` when it stops. The file's place is fixed
at start: the API refuses to move it ("trace file location can not be updated through network protocol").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

# The spans between a request's timestamps that the statistics API sums per model (Triton's
# docs/protocol/extension_statistics.md): queue, then the backend's three parts of compute.
SPANS = {
    "queue": ("QUEUE_START", "COMPUTE_START"),
    "compute_input": ("COMPUTE_START", "COMPUTE_INPUT_END"),
    "compute_infer": ("COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"),
    "compute_output": ("COMPUTE_OUTPUT_START", "COMPUTE_END"),
}


def server_args(trace_file: str | Path) -> list[str]:
    """tritonserver flags: traces go to `trace_file`; the level is OFF until the trace API raises it."""
    return ["--trace-config", f"triton,file={trace_file}", "--trace-config", "level=OFF"]


@dataclass
class Trace:
    """One traced request: its id, model, and each timestamp Triton recorded (name -> ns, one clock)."""

    id: int
    model: str
    timestamps: dict[str, int]

    def span_ms(self, span: str) -> float:
        start, end = SPANS[span]
        return (self.timestamps[end] - self.timestamps[start]) / 1e6

    def timeline(self) -> list[tuple[str, float]]:
        """(timestamp name, ms since the first one), in the order they happened."""
        first = min(self.timestamps.values())
        return [(name, (ns - first) / 1e6) for name, ns in sorted(self.timestamps.items(), key=lambda kv: kv[1])]


def read(path: str | Path) -> list[Trace]:
    """A trace file as one Trace per request, by id. Triton writes a JSON list in which each entry holds one id
    with either its model or timestamps; the entries of one request are gathered here."""
    by_id: dict[int, Trace] = {}
    for entry in json.loads(Path(path).read_text()):
        trace = by_id.setdefault(entry["id"], Trace(entry["id"], "", {}))
        trace.model = entry.get("model_name", trace.model)
        for stamp in entry.get("timestamps", []):
            trace.timestamps[stamp["name"]] = int(stamp["ns"])
    return [by_id[i] for i in sorted(by_id)]


def wait_for_file(path: str | Path, timeout: float = 10.0) -> Path:
    """`path` once Triton has written it whole (it writes a file when `log_frequency` traces are collected)."""
    path, deadline = Path(path), time.monotonic() + timeout
    while True:
        try:
            json.loads(path.read_text())
            return path
        except (FileNotFoundError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Triton wrote no complete trace file {path} within {timeout:.0f} s: are the "
                                   "trace level, rate, count and log_frequency set (get_trace_settings)?") from None
            time.sleep(0.05)


def statistics_ns(stats: dict) -> dict[str, int]:
    """From a statistics API answer (all versions summed): successful requests ("success") and the nanoseconds
    of each span in SPANS, as Triton summed them."""
    totals = dict.fromkeys(("success", *SPANS), 0)
    for entry in stats["model_stats"]:
        inference = entry.get("inference_stats", {})
        totals["success"] += int(inference.get("success", {}).get("count", 0))
        for span in SPANS:
            totals[span] += int(inference.get(span, {}).get("ns", 0))
    return totals
