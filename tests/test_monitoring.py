"""Prometheus scraping a real Triton, the panels' PromQL, and the Grafana dashboard in the repository."""

from __future__ import annotations

import json
import socket
import time

import pytest

from triton_course import ServerStartError, course_root, monitoring, start_server
from triton_course.inference import infer
from triton_course.photos import batch, photo

UNAVAILABLE = monitoring.unavailable_reason()


def test_scrape_config_and_target():
    config = monitoring.scrape_config(["127.0.0.1:8002"], interval_s=0.5)
    assert config["global"]["scrape_interval"] == "500ms"
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:8002"]}]
    assert monitoring.target_of("http://127.0.0.1:8002/metrics") == "127.0.0.1:8002"


def test_committed_dashboard_is_the_generated_one():
    committed = json.loads((course_root() / "docs" / "grafana" / "triton_dashboard.json").read_text())
    assert committed == monitoring.grafana_dashboard()
    titles = [panel["title"] for panel in committed["panels"]]
    assert titles == list(monitoring.panel_queries())
    assert all("$__rate_interval" in p["targets"][0]["expr"] or "rate(" not in p["targets"][0]["expr"]
               for p in committed["panels"])


def test_without_a_binary_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("PROMETHEUS", raising=False)
    assert "apt-get install prometheus" in monitoring.unavailable_reason()
    with pytest.raises(ServerStartError, match="not installed") as caught:
        monitoring.Prometheus(["127.0.0.1:1"]).start()
    assert "prometheus.io/download" in caught.value.fix


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")
def test_a_port_in_use_is_reported_in_prometheus_words():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(monitoring.PrometheusError) as caught:
            monitoring.Prometheus(["127.0.0.1:1"], port=taken.getsockname()[1]).start()
    assert "exited while starting" in str(caught.value)
    assert "address already in use" in caught.value.triton_said
    assert "Prometheus said:" in str(caught.value)


@pytest.mark.server
@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")
def test_prometheus_scrapes_triton_and_every_panel_has_data():
    with start_server(extra_args=["--metrics-config=summary_latencies=true"]) as server:
        with monitoring.Prometheus([monitoring.target_of(server.metrics_url)], interval_s=0.5) as prometheus:
            assert prometheus.url.startswith("http://127.0.0.1:")
            prometheus.wait_until_scraped()
            for _ in range(40):
                infer(server.http_url, batch([photo("coffee")]))
            time.sleep(2)
            answers = {title: prometheus.query(promql)
                       for title, (promql, _) in monitoring.panel_queries(window="5s").items()}
            assert all(answers.values()), {t: a for t, a in answers.items() if not a}
            [(labels, rate)] = answers["Requests per second"]
            assert labels["model"] == "efficientnet_lite0" and rate > 0
            with pytest.raises(ValueError, match="refused the query"):
                prometheus.query("rate(")
            process = prometheus.process
        assert process.poll() is not None and prometheus.workdir is None
