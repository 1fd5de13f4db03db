"""Prometheus scraping a real Triton, the panels' PromQL, and the Grafana dashboard in the repository."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from triton_course import ServerStartError, balancer, course_root, loadgen, monitoring, start_server
from triton_course.inference import infer
from triton_course.photos import batch, photo

UNAVAILABLE = monitoring.unavailable_reason()
NO_HAPROXY = balancer.unavailable_reason()


def test_scrape_config_and_target():
    config = monitoring.scrape_config(["127.0.0.1:8002"], interval_s=0.5)
    assert config["global"]["scrape_interval"] == "500ms"
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:8002"]}]
    assert monitoring.target_of("http://127.0.0.1:8002/metrics") == "127.0.0.1:8002"


def test_committed_dashboard_is_the_generated_one():
    committed = json.loads((course_root() / "docs" / "grafana" / "triton_dashboard.json").read_text())
    assert committed == monitoring.grafana_dashboard()
    titles = [panel["title"] for panel in committed["panels"]]
    assert titles == list(monitoring.panel_queries()) + list(monitoring.balancer_panel_queries())
    assert {p["targets"][0]["legendFormat"] for p in committed["panels"]} == {"{{model}}", "{{server}}"}
    assert all("$__rate_interval" in p["targets"][0]["expr"] or "rate(" not in p["targets"][0]["expr"]
               for p in committed["panels"])


def test_haproxy_is_a_scrape_job_of_its_own():
    config = monitoring.scrape_config(["127.0.0.1:8002", "127.0.0.1:8012"], haproxy_targets=["127.0.0.1:8404"])
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert jobs == {"triton": ["127.0.0.1:8002", "127.0.0.1:8012"], "haproxy": ["127.0.0.1:8404"]}
    assert [j["job_name"] for j in monitoring.scrape_config(["127.0.0.1:8002"])["scrape_configs"]] == ["triton"]


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


@pytest.mark.server
@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")
@pytest.mark.skipif(NO_HAPROXY is not None, reason=f"{NO_HAPROXY}")
def test_prometheus_sees_through_haproxy_a_server_go_down_and_the_other_take_its_requests():
    with start_server() as survivor, start_server() as victim, balancer.Balancer([survivor, victim]) as lb, \
            monitoring.Prometheus([monitoring.target_of(s.metrics_url) for s in (survivor, victim)], interval_s=0.5,
                                  haproxy_targets=[monitoring.target_of(lb.metrics_url)]) as prometheus:
        prometheus.wait_until_scraped()
        assert {t["target"] for t in prometheus.targets()} == {monitoring.target_of(u) for u in
                                                             (survivor.metrics_url, victim.metrics_url, lb.metrics_url)}
        panels = monitoring.balancer_panel_queries(window="2s")
        result = {}
        load = threading.Thread(target=lambda: result.setdefault("load", loadgen.measure_rate(
            lb.http_url, batch([photo("coffee")]), rate=30, seconds=11)))
        start = time.time()
        load.start()
        time.sleep(3)  # the load's own timeline: both servers answer before one dies
        killed_at = time.time()
        os.kill(victim.process.pid, signal.SIGKILL)
        lb.wait_until(victim, "DOWN", timeout=10)
        load.join(60)
        time.sleep(2.5)  # the last scrapes after the load
        end = time.time()

        def series(title):
            return {labels["server"]: points for labels, points in prometheus.query_range(panels[title][0], start, end,
                                                                                          step_s=0.5)}

        rates, up = series("Responses per second, per server (HAProxy)"), series("Server UP (1) or not (0) (HAProxy)")
    assert result["load"].errors == 0, result["load"].first_error  # retried on the survivor
    assert set(rates) == set(up) == {"triton1", "triton2"}

    def between(points, first, last):
        return [v for t, v in points if first < t < last]

    both, alone = (start + 2, killed_at), (killed_at + 4, killed_at + 7)  # past the 2 s rate window
    assert min(between(rates["triton1"], *both)) > 0 and min(between(rates["triton2"], *both)) > 0
    assert max(between(rates["triton2"], *alone)) == 0 and max(between(up["triton2"], *alone)) == 0
    assert min(between(up["triton1"], *alone)) == 1
    assert min(between(rates["triton1"], *alone)) > max(between(rates["triton1"], *both))  # it took them all
