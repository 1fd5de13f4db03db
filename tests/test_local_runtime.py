"""The local runtime: a tritonserver found on the machine, as on a pod started from the NGC image.

No NGC image here, so the test lays out the same shape (bin/tritonserver, backends/) around the
real Triton binary of the nvidia-pytriton wheel: the runtime's code path is the one a pod uses.
"""

from __future__ import annotations

import os
import shutil

import pytest

from triton_course.inference import classify
from triton_course.photos import photo
from triton_course.runtimes import EmbeddedServer, LocalServer, best_runtime, find_installation, server

pytestmark = pytest.mark.server


@pytest.fixture
def fake_ngc_install(tmp_path, reference_repo, monkeypatch):
    inst = find_installation()
    root = tmp_path / "tritonserver"
    (root / "bin").mkdir(parents=True)
    shutil.copytree(EmbeddedServer(reference_repo).backend_directory(), root / "backends")
    env = EmbeddedServer(reference_repo).environment()
    wrapper = root / "bin" / "tritonserver"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export LD_LIBRARY_PATH='{env['LD_LIBRARY_PATH']}' PYTHONPATH='{env['PYTHONPATH']}' PATH='{env['PATH']}'\n"
        f"exec '{inst.binary}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("TRITONSERVER", str(wrapper))
    return root


def test_local_runtime_is_preferred_and_serves(fake_ngc_install, reference_repo):
    assert best_runtime() == "local"
    with server(reference_repo) as srv:
        assert isinstance(srv, LocalServer)
        assert srv.binary() == fake_ngc_install / "bin" / "tritonserver"
        assert srv.backends == ["python"]
        # No onnxruntime backend in this install: the course adapts the ONNX model here too
        # (with the PyTorch runner on a GPU machine).
        assert srv.notes and ("python-backend runner" in srv.notes[0] or "PyTorch runner" in srv.notes[0])
        assert classify([photo("coffee")], srv.http_url, k=1)[0][0][0] == "espresso"


def test_without_a_binary_local_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITONSERVER", str(tmp_path / "missing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    from triton_course.runtimes import unavailable_reason

    if os.path.exists("/opt/tritonserver/bin/tritonserver"):
        pytest.skip("this machine has an NGC Triton install")
    assert unavailable_reason("local") is not None
    assert best_runtime() == "embedded"
