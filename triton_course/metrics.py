"""Triton's Prometheus metrics (the metrics port, 8002 by default), read with prometheus_client's
own text-format parser rather than regular expressions."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .errors import ServerStartError


def scrape(metrics_url: str, timeout: float = 5.0) -> dict:
    """Every metric family the server exports, by name (prometheus_client Metric objects)."""
    try:
        response = requests.get(metrics_url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise ServerStartError(f"No metrics at {metrics_url} ({exc}).",
                               fix="Start the server with metrics on (the course does) and pass "
                                   "server.metrics_url.") from None
    return parse(response.text)


def parse(text: str) -> dict:
    """Prometheus text format -> metric families by name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict, name: str, **labels: str) -> list[Sample]:
    """The samples named `name` whose labels include `labels` (e.g. model="efficientnet_lite0").
    prometheus_client names a counter's samples NAME_total, as OpenMetrics does; Triton's text says
    NAME: either spelling finds them. Histogram and summary samples go by their own names (NAME_bucket,
    NAME_sum, NAME_count)."""
    names = {name, f"{name}_total"}
    return [sample for family in families.values() for sample in family.samples
            if sample.name in names and all(sample.labels.get(k) == v for k, v in labels.items())]


def value(families: dict, name: str, **labels: str) -> float:
    """The sum of the matching samples (0 when there are none)."""
    return float(sum(s.value for s in samples(families, name, **labels)))
