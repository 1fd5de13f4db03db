"""The course's Kubernetes manifests (deploy/kubernetes/): read them, look up fields, validate offline.

Validation uses `kubernetes-validate` (the Kubernetes JSON schemas, bundled): no cluster needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .paths import course_root


def folder() -> Path:
    return course_root() / "deploy" / "kubernetes"


def manifests() -> dict[str, dict]:
    """Every manifest in deploy/kubernetes/, keyed by its kind (Deployment, Service, ...)."""
    docs = {}
    for path in sorted(folder().glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def field(doc: dict, path: str):
    """The value at a dotted path such as `spec.template.spec.containers[0].ports`."""
    value = doc
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        value = value[int(part[1:-1])] if part.startswith("[") else value[part]
    return value


def validate(doc: dict) -> list[str]:
    """What the Kubernetes schema says is wrong with one manifest (empty when it is valid).
    Strict: a field Kubernetes does not know (a typo) is an error, as `kubectl apply` would report."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top level)"
        return [f"{doc.get('kind', 'manifest')} at {where}: {exc.message}"]
    return []
