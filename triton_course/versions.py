"""Model management on a live server: version policies, the repository index, and requests kept
flowing while a model is reloaded (to see what a rollout does to in-flight traffic)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .artifact import INPUT_NAME, OUTPUT_NAME
from .clients import client, infer_inputs, requested_outputs
from .model_config import ModelConfig, copy_config


def with_version_policy(config: ModelConfig, policy: str = "latest", *, num_versions: int = 1,
                        versions: tuple[int, ...] = ()) -> ModelConfig:
    """`config` with a version_policy: 'latest' (the newest `num_versions`), 'all', or 'specific'
    (exactly `versions`). Without one, Triton serves the latest version only."""
    result = copy_config(config)
    result.ClearField("version_policy")
    if policy == "latest":
        result.version_policy.latest.num_versions = num_versions
    elif policy == "all":
        result.version_policy.all.SetInParent()
    elif policy == "specific":
        if not versions:
            raise ValueError("version_policy specific needs the version numbers to serve")
        result.version_policy.specific.versions.extend(versions)
    else:
        raise ValueError(f"version policy '{policy}': choose latest, all or specific")
    return result


def index(server, settle_s: float = 15.0) -> list[dict]:
    """The repository index (POST /v2/repository/index): every model and version with its state and,
    for a failed one, Triton's reason. Waits up to `settle_s` for versions still LOADING or UNLOADING
    (an old version drains its requests after a load returns), so the states shown are final."""
    deadline = time.monotonic() + settle_s
    while True:
        with server.http_client() as client:
            entries = client.get_model_repository_index(headers=server.admin_headers)
        busy = any(e.get("state") in ("LOADING", "UNLOADING") for e in entries)
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return [{"model": e["name"], "version": e.get("version", "-"), "state": e.get("state", "(not loaded)"),
             "reason": server.readable(e.get("reason") or "").splitlines()[0] if e.get("reason") else ""}
            for e in entries]


@dataclass
class Traffic:
    """Requests sent back to back from a background thread while something else happens:
    which version answered each one, and which failed."""

    url: str
    model: str
    inputs: np.ndarray
    answers: list[tuple[float, str]] = field(default_factory=list)  # (time, version or "error: ...")
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        triton = client(self.url, "http", timeout=30)
        request = infer_inputs({INPUT_NAME: self.inputs}, "http")
        try:
            while not self._stop.is_set():
                try:
                    result = triton.infer(self.model, request, outputs=requested_outputs([OUTPUT_NAME], "http"))
                    self.answers.append((time.monotonic(), f"version {result.get_response()['model_version']}"))
                except Exception as exc:  # noqa: BLE001 - every failure is what we want to count
                    self.answers.append((time.monotonic(), f"error: {str(exc).splitlines()[0][:100]}"))
        finally:
            triton.close()

    def __enter__(self) -> "Traffic":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.5)  # already flowing when the change begins
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)  # and still flowing after it ends
        self._stop.set()
        self._thread.join(30)

    def summary(self) -> dict[str, int]:
        """How many requests each version answered, and each kind of error."""
        return dict(Counter(answer for _, answer in self.answers))

    def errors(self) -> int:
        return sum(1 for _, answer in self.answers if answer.startswith("error"))
