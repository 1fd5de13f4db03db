"""deploy/kubernetes: every manifest validates against the Kubernetes schemas (offline, with
kubernetes-validate), and the pieces fit together (labels, ports, probes, volume, autoscaler metric)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from triton_course import course_root, kubernetes, metrics, ngc, start_server

FOLDER = course_root() / "deploy" / "kubernetes"
MANIFESTS = sorted(FOLDER.glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_a_field_kubernetes_does_not_know_is_caught():
    service = kubernetes.manifests()["Service"]
    service["spec"]["ports"][0]["targetPorts"] = "http"  # a typo of targetPort
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, kubernetes_validate.latest_version(), strict=True)


def test_the_pieces_fit_together():
    docs = kubernetes.manifests()
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == ngc.CURRENT.image  # the newest release in the course's table
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(port_names)
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "model-repository")
    assert f"--model-repository={mount['mountPath']}" in container["args"] and mount["readOnly"]
    claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "model-repository")["persistentVolumeClaim"]
    assert claim["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    rules = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["rules"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] in {r["name"]["as"] for r in rules}


@pytest.mark.server
def test_the_adapter_rule_reads_metrics_triton_exports():
    rules = yaml.safe_load(kubernetes.manifests()["ConfigMap"]["data"]["config.yaml"])["rules"]
    used = {name for rule in rules for name in re.findall(r"\bnv_[a-z_]+", rule["seriesQuery"] + rule["metricsQuery"])}
    with start_server() as server:
        exported = set(metrics.scrape(server.metrics_url))
    assert used and used <= exported


def pre_stop_pause_s(container: dict) -> int:
    """How long the container's preStop hook keeps it serving before SIGTERM: a `sleep` action, or an exec of
    the image's sleep. 0 when there is no such hook."""
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] in {"sleep", "/bin/sleep", "/usr/bin/sleep"}:
        return int(command[1])
    return 0


def test_a_rolling_update_keeps_every_pod_answering():
    deployment = kubernetes.manifests()["Deployment"]
    assert kubernetes.field(deployment, "spec.strategy.rollingUpdate") == {"maxUnavailable": 0, "maxSurge": 1}
    container = kubernetes.field(deployment, "spec.template.spec.containers[0]")
    # Kubernetes takes a stopping pod out of the Service's endpoints while it stops the containers, and the
    # proxies learn of it later; Triton refuses new connections as soon as it gets SIGTERM. So a preStop pause
    # keeps Triton serving until the pod has left the endpoints, and only then comes SIGTERM.
    pause = pre_stop_pause_s(container)
    assert pause >= 5, "the Deployment needs a preStop pause (sleep) before Triton gets SIGTERM"
    # The grace period counts from the start of preStop: it must cover the pause and Triton's own exit timeout,
    # so that a stopping pod finishes what it holds before SIGKILL.
    exit_timeout = int(next(a for a in container["args"] if a.startswith("--exit-timeout-secs=")).split("=")[1])
    assert kubernetes.field(deployment, "spec.template.spec.terminationGracePeriodSeconds") > pause + exit_timeout


def test_the_drain_check_fails_without_a_pre_stop_pause():
    deployment = kubernetes.manifests()["Deployment"]
    container = copy.deepcopy(kubernetes.field(deployment, "spec.template.spec.containers[0]"))
    assert pre_stop_pause_s(container) > 0
    del container["lifecycle"]
    assert pre_stop_pause_s(container) == 0
    assert pre_stop_pause_s({"lifecycle": {"preStop": {"sleep": {"seconds": 10}}}}) == 10


def test_manifest_fields_are_read_by_path():
    deployment = kubernetes.manifests()["Deployment"]
    assert kubernetes.field(deployment, "spec.template.spec.containers[0].ports[1].name") == "grpc"
    with pytest.raises(KeyError):
        kubernetes.field(deployment, "spec.template.spec.container")


def test_validation_names_where_a_manifest_is_wrong():
    docs = kubernetes.manifests()
    assert all(kubernetes.validate(doc) == [] for doc in docs.values())
    broken = copy.deepcopy(docs["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = 8000.5
    problems = kubernetes.validate(broken)
    assert len(problems) == 1 and "readinessProbe" in problems[0]
