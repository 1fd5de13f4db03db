"""A tritonserver binary already on this machine: a pod whose image IS NGC's Triton image.

Pods cannot run Docker inside, so on RunPod the way to the full Triton (onnxruntime,
TensorRT, PyTorch backends) is to pick nvcr.io/nvidia/tritonserver:<tag>-py3 as the pod's
image; its server is /opt/tritonserver/bin/tritonserver.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ServerStartError
from .base import TritonServer

NGC_LOCATION = Path("/opt/tritonserver/bin/tritonserver")


def find_binary() -> Path | None:
    """$TRITONSERVER, else `tritonserver` on PATH, else the NGC image's location."""
    for candidate in (os.environ.get("TRITONSERVER"), shutil.which("tritonserver"), NGC_LOCATION):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _no_binary_error() -> ServerStartError:
    return ServerStartError(
        "No tritonserver here (not on PATH or in /opt/tritonserver).",
        fix="Use the embedded runtime, or start the pod from nvcr.io/nvidia/tritonserver:<tag>-py3.")


class LocalServer(TritonServer):
    runtime = "local"

    @classmethod
    def unavailable_error(cls) -> ServerStartError | None:
        return None if find_binary() else _no_binary_error()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        found = find_binary()
        if found is None:
            raise _no_binary_error()
        self._binary = found

    def binary(self) -> Path:
        return self._binary

    def triton_version_before_start(self) -> str | None:
        # NGC's image sets it (build.py: ENV TRITON_SERVER_VERSION), and a pod made from the image inherits it.
        return os.environ.get("TRITON_SERVER_VERSION")

    def backend_dir(self) -> Path:
        return self._binary.parent.parent / "backends"

    @property
    def backends(self) -> list[str]:
        folder = self.backend_dir()
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def backend_args(self) -> list[str]:
        folder = [f"--backend-directory={self.backend_dir()}"] if self.backend_dir().is_dir() else []
        return folder + self.python_shm_args()
