"""A real Prometheus server scraping Triton's metrics (and HAProxy's, where a balancer runs in front of
several Tritons), queried with PromQL through its HTTP API.

The course starts Prometheus itself (Debian's `prometheus` package, or any binary on PATH or in
$PROMETHEUS) on 127.0.0.1 with a config it writes, keeps its data in a folder of its own, and stops
it (and removes that folder) with the notebook, like its Triton servers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import requests

from .balancer import GRPC_BACKEND, HTTP_BACKEND
from .errors import ServerStartError
from .runtimes.base import free_port
from .supervised import SupervisedProcess

INSTALL_FIX = ("Install it: `sudo apt-get install prometheus` (Debian, Ubuntu), or download a release from "
               "https://prometheus.io/download/ and put `prometheus` on PATH (or set $PROMETHEUS to it).")


class PrometheusError(ServerStartError):
    """Prometheus did not start or answer; its own log is quoted."""

    source = "Prometheus"


def find_prometheus() -> str | None:
    return os.environ.get("PROMETHEUS") or shutil.which("prometheus")


def unavailable_reason() -> str | None:
    return None if find_prometheus() else "no prometheus binary on PATH or in $PROMETHEUS. " + INSTALL_FIX


def scrape_config(targets: list[str], interval_s: float = 1.0, haproxy_targets: list[str] = ()) -> dict:
    """Prometheus' configuration: scrape Triton's /metrics at `targets` ("127.0.0.1:8002") every
    `interval_s` seconds (Prometheus' default is 1 minute; a lesson needs seconds), and HAProxy's
    Prometheus exporter at `haproxy_targets` (`Balancer.metrics_url`) as a job of its own."""
    interval = f"{int(interval_s * 1000)}ms"
    jobs = [{"job_name": "triton", "metrics_path": "/metrics", "static_configs": [{"targets": list(targets)}]}]
    if haproxy_targets:
        jobs.append({"job_name": "haproxy", "metrics_path": "/metrics",
                     "static_configs": [{"targets": list(haproxy_targets)}]})
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}


def target_of(metrics_url: str) -> str:
    """'http://127.0.0.1:8002/metrics' -> '127.0.0.1:8002'."""
    return metrics_url.split("://", 1)[-1].split("/", 1)[0]


class Prometheus(SupervisedProcess):
    """A Prometheus server of this notebook; use as a context manager, or start() and stop()."""

    name = "prometheus"

    def __init__(self, targets: list[str], *, interval_s: float = 1.0, haproxy_targets: list[str] = (),
                 host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 60.0):
        super().__init__()
        self.config = scrape_config(targets, interval_s, haproxy_targets)
        self.host, self.port = host, port
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        return f"http://{'127.0.0.1' if self.host == '0.0.0.0' else self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def start(self) -> "Prometheus":
        binary = find_prometheus()
        if binary is None:
            raise PrometheusError("Prometheus is not installed here.", fix=INSTALL_FIX)
        self.port = self.port or free_port(self.host)
        self._make_workdir()
        # JSON is valid YAML: the config is written from the dict as it is.
        self.config_path.write_text(json.dumps(self.config, indent=2) + "\n")
        self._launch([binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
                      f"--web.listen-address={self.host}:{self.port}"])
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                code, log = self.process.returncode, self.log_tail()
                self.stop()
                raise PrometheusError(f"Prometheus exited while starting (exit code {code}).", triton_said=log,
                                      fix="Read its log above: a port in use or a bad config are the usual causes.")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                log = self.log_tail()
                self.stop()
                raise PrometheusError(f"Prometheus did not become ready within {self.startup_timeout:.0f} s.",
                                      triton_said=log)
            time.sleep(0.2)

    # --- the HTTP API ------------------------------------------------------------------------
    def _api(self, path: str, params: dict) -> dict:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus refused the query {params.get('query')!r}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[tuple[dict, float]]:
        """An instant query: (labels, value) per series."""
        return [(r["metric"], float(r["value"][1])) for r in self._api("query", {"query": promql})["result"]]

    def query_range(self, promql: str, start: float, end: float, step_s: float = 1.0) -> list[tuple[dict, list]]:
        """A range query: (labels, [(unix time, value), ...]) per series."""
        data = self._api("query_range", {"query": promql, "start": start, "end": end, "step": step_s})
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def targets(self) -> list[dict]:
        """What Prometheus scrapes and whether the last scrape worked ('up')."""
        return [{"target": t["labels"].get("instance"), "health": t["health"], "error": t.get("lastError", "")}
                for t in self._api("targets", {})["activeTargets"]]

    def wait_until_scraped(self, timeout: float = 30.0) -> None:
        """Until every target has been scraped successfully once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(t["health"] == "up" for t in self.targets()) and self.query("up == 1"):
                return
            time.sleep(0.3)
        raise PrometheusError("Prometheus has not scraped every target yet.",
                              triton_said=json.dumps(self.targets()), fix="Check the target addresses and that "
                                                                          "each metrics port answers.")


# --- the panels: the same PromQL in the lesson and in the Grafana dashboard ----------------------

def panel_queries(window: str = "$__rate_interval") -> dict[str, tuple[str, str]]:
    """title -> (PromQL, Grafana unit), per model. `window` is the rate window ("10s" in a short
    lesson; Grafana's $__rate_interval on a dashboard). p99 needs Triton started with
    --metrics-config=summary_latencies=true."""
    def per_request(counter_us: str) -> str:
        return (f"sum by (model) (rate({counter_us}[{window}])) / "
                f"sum by (model) (rate(nv_inference_request_success[{window}])) / 1000")

    return {
        "Requests per second": (f"sum by (model) (rate(nv_inference_request_success[{window}]))", "reqps"),
        "Failed requests per second": (f"sum by (model) (rate(nv_inference_request_failure[{window}]))", "reqps"),
        "Average queue time (ms)": (per_request("nv_inference_queue_duration_us"), "ms"),
        "Average compute time (ms)": (per_request("nv_inference_compute_infer_duration_us"), "ms"),
        "p99 request latency (ms)": ('max by (model) (nv_inference_request_summary_us{quantile="0.99"}) / 1000', "ms"),
        "Pending requests": ("sum by (model) (nv_inference_pending_request_count)", "short"),
    }


# HAProxy's exporter names each Triton by its server line in the config (label `server`: triton1, ...)
# and labels it with its backend (`proxy`): one for HTTP, one for gRPC, as triton_course.balancer writes them.
BALANCER_BACKENDS = f'proxy=~"{HTTP_BACKEND}|{GRPC_BACKEND}"'


def balancer_panel_queries(window: str = "$__rate_interval") -> dict[str, tuple[str, str]]:
    """title -> (PromQL, Grafana unit), per Triton behind HAProxy, from HAProxy's own metrics: the
    responses each server returned (both protocols), and whether its health check has it UP (1) or not (0)."""
    return {
        "Responses per second, per server (HAProxy)":
            (f"sum by (server) (rate(haproxy_server_http_responses_total{{{BALANCER_BACKENDS}}}[{window}]))", "reqps"),
        "Server UP (1) or not (0) (HAProxy)":
            (f'max by (server) (haproxy_server_status{{proxy="{HTTP_BACKEND}",state="UP"}})', "short"),
    }


def grafana_dashboard() -> dict:
    """A Grafana dashboard (JSON model) with one time-series panel per query (Triton's per model, then
    HAProxy's per server), on a Prometheus data source chosen at import."""
    queries = [(title, expr, unit, "{{model}}") for title, (expr, unit) in panel_queries().items()]
    queries += [(title, expr, unit, "{{server}}") for title, (expr, unit) in balancer_panel_queries().items()]
    panels = []
    for i, (title, expr, unit, legend) in enumerate(queries):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title,
            "gridPos": {"x": 12 * (i % 2), "y": 8 * (i // 2), "w": 12, "h": 8},
            "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        })
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "title": "Triton Inference Server (course)", "uid": "triton-course", "schemaVersion": 39,
        "editable": True, "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
        "tags": ["triton"], "panels": panels,
    }
