"""The runtimes against a real Triton server: start, answer, report errors, never leave orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from triton_course import InferenceError, ModelLoadError, PortInUseError, ServerStartError, server, start_server
from triton_course.inference import classify, infer
from triton_course.photos import photo, preprocess
from triton_course.runtimes import EmbeddedServer
from triton_course.runtimes.base import SHM_FOLDER

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def reference_server(reference_repo):
    with start_server(reference_repo) as srv:
        yield srv


def test_serves_the_course_model_over_http_and_grpc(reference_server):
    expected = {"coffee": "espresso", "flower": "daisy", "china": "palace", "rocket": "missile"}
    images = [photo(name) for name in expected]
    http = classify(images, reference_server.http_url, k=1)
    grpc = classify(images, reference_server.grpc_address, protocol="grpc", k=1)
    assert [top[0][0] for top in http] == list(expected.values())
    assert [top[0][0] for top in grpc] == list(expected.values())
    cat = classify([photo("chelsea")], reference_server.http_url, k=3)[0]
    assert cat[0][0] in ("tiger cat", "Egyptian cat", "tabby, tabby cat")
    assert "tabby, tabby cat" in [label for label, _ in cat]


def test_reports_its_backends_and_binds_loopback(reference_server):
    assert isinstance(reference_server, EmbeddedServer)
    assert reference_server.backends == ["python"]
    assert reference_server.version == "2.51.0"
    listening = [c.laddr for c in psutil.Process(reference_server.process.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN]
    assert {addr.port for addr in listening} == set(reference_server.ports.values())
    # gRPC may show the IPv4-mapped form ::ffff:127.0.0.1: loopback all the same.
    assert {addr.ip.removeprefix("::ffff:") for addr in listening} == {"127.0.0.1"}


def test_dynamic_batch_splits_rows_back(reference_server):
    batch = np.stack([preprocess(photo("coffee")), preprocess(photo("flower"))])
    both = infer(reference_server.http_url, batch)
    one = infer(reference_server.http_url, batch[:1])
    assert both.shape == (2, 1000)
    # Rows kept apart: the same image alone and in a batch gives the same scores. On a GPU the kernels
    # chosen for batch 1 and batch 2 round differently in the last digits (about 1e-3), on a CPU far less.
    np.testing.assert_allclose(both[0], one[0], rtol=0, atol=1e-2)
    assert both[0].argmax() == one[0].argmax() and both[1].argmax() != both[0].argmax()


def test_wrong_tensor_name_in_a_request_quotes_triton(reference_server):
    with pytest.raises(InferenceError) as err:
        infer(reference_server.http_url, preprocess(photo("coffee"))[None], input_name="images")
    assert "unexpected inference input 'images'" in err.value.triton_said
    assert "'images' is not a tensor of this model" in err.value.fix


def test_too_large_a_batch_quotes_triton(reference_server):
    batch = np.zeros((9, 3, 224, 224), dtype=np.float32)
    with pytest.raises(InferenceError) as err:
        infer(reference_server.http_url, batch)
    assert "batch-size must be <= 8" in err.value.triton_said
    assert "at most 8 items" in err.value.fix


def test_each_classic_mistake_names_the_model_and_quotes_triton(broken_repo):
    with server(broken_repo, strict=False) as srv:
        problems = {p.model: p for p in srv.model_problems}
        ready = {m["name"] for m in srv.http_client().get_model_repository_index() if m.get("state") == "READY"}
    assert ready == {"good"}
    expected = {
        "batch_in_dims": ("an initial batch dimension because max_batch_size > 0", "leave it out of dims"),
        "no_batching_short_dims": ("the model expects 4 dimensions", "including the batch dimension"),
        "unknown_datatype": ('Unknown enumeration value of "TYPE_FLOAT32"', "is not a Triton datatype"),
        "wrong_datatype": ("configuration expects datatype TYPE_FP16 for input 'input', model provides TYPE_FP32",
                           "TYPE_FP32"),
        "does_not_parse": ("failed to read text proto", "line:column"),
        "wrong_tensor_name": ("unexpected inference input 'images'", "model's own tensor names"),
        "no_version_folder": ("at least one version must be available", "numbered version folder"),
        "no_backend_no_file": ("Could not determine backend", "version folder"),
        "model_file_missing": ("unable to find", "has no model file"),
        "unreadable_file": ("Permission denied", "chmod a+r"),
    }
    assert set(problems) == set(expected)
    for model, (said, fix) in expected.items():
        assert said in problems[model].message, model
        assert fix in problems[model].fix, model
    # Messages point at the learner's files, not at the course's served copy.
    assert str(broken_repo) in problems["unreadable_file"].message


def test_strict_start_raises_and_stops(broken_repo, tmp_path, copy_model):
    repo = tmp_path / "repo"
    copy_model(repo, "batch_in_dims", edit=lambda t: t.replace("dims: [3, 224, 224]", "dims: [-1, 3, 224, 224]"))
    srv = server(repo)
    with pytest.raises(ModelLoadError) as err:
        srv.start()
    assert "Model 'batch_in_dims' failed to load." in str(err.value)
    # the dims rule is the onnxruntime backend's, applied here by the course's runner: quoted as the runner's
    assert "The course's ONNX runner (standing in for the onnxruntime backend) said:" in str(err.value)
    assert "Fix:" in str(err.value)
    assert not srv.is_running


def test_python_model_without_model_py_fails_fast_instead_of_hanging(tmp_path):
    # Triton 2.51's python backend waits forever when the stub cannot find model.py.
    model = tmp_path / "repo" / "lonely"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n')
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        server(model.parent, startup_timeout=60).start()
    assert time.monotonic() - started < 30
    assert err.value.problems[0].model == "lonely"
    assert "Python model file not found" in err.value.problems[0].message


def test_port_in_use_names_the_port(reference_repo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUseError) as err:
            server(reference_repo, http_port=port).start()
    assert err.value.port == port
    assert f"Port {port}" in str(err.value)
    assert "pick" in err.value.fix


def test_a_picked_port_taken_before_triton_binds_it_is_picked_again(reference_repo, monkeypatch):
    # Another process (a second notebook starting its server) takes the port the course chose.
    from triton_course.runtimes import base

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        picks = iter([port])
        real = base.free_port
        monkeypatch.setattr(base, "free_port", lambda host: next(picks, None) or real(host))
        with server(reference_repo) as s:
            assert s.ports["http"] != port and s.is_running


def test_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(ServerStartError) as err:
        server(tmp_path / "nowhere").start()
    assert "does not exist" in str(err.value)


def test_explicit_mode_load_reports_triton_message(broken_repo):
    with server(broken_repo, model_control_mode="explicit") as srv:
        assert srv.http_client().get_model_repository_index()  # lists models, none loaded
        srv.load_model("good")
        assert srv.http_client().is_model_ready("good")
        with pytest.raises(ModelLoadError) as err:
            srv.load_model("wrong_tensor_name")
        assert "unexpected inference input 'images'" in err.value.problems[0].message
        srv.unload_model("good")


def test_explicit_load_of_a_python_model_without_model_py_fails_fast(tmp_path):
    model = tmp_path / "repo" / "lonely"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n')
    with server(model.parent, model_control_mode="explicit") as srv:
        started = time.monotonic()
        with pytest.raises(ModelLoadError) as err:
            srv.load_model("lonely")
        assert time.monotonic() - started < 30
        assert "Python model file not found" in err.value.problems[0].message


def test_stop_leaves_no_process(reference_repo, wait_until_gone):
    srv = start_server(reference_repo)
    pids = {p.pid for p in psutil.Process(srv.process.pid).children(recursive=True)} | {srv.process.pid}
    assert len(pids) >= 2  # tritonserver and at least one python stub
    srv.stop()
    srv.stop()  # twice is harmless
    assert wait_until_gone(pids, 5) == set()


OWNER = textwrap.dedent("""
    import sys, time
    from triton_course import start_server
    srv = start_server(sys.argv[1])
    print(srv.process.pid, flush=True)
    if sys.argv[2] == "wait":
        time.sleep(600)
""")


def _owner_and_server(repo, mode):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(repo), mode], stdout=subprocess.PIPE, text=True)
    server_pid = int(owner.stdout.readline())
    family = {server_pid} | {p.pid for p in psutil.Process(server_pid).children(recursive=True)}
    return owner, family


def test_no_orphans_after_kill_9_of_the_owner(reference_repo, wait_until_gone):
    owner, family = _owner_and_server(reference_repo, "wait")
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert wait_until_gone(family) == set()


def test_no_orphans_when_the_owner_exits_without_stopping(reference_repo, wait_until_gone):
    owner, family = _owner_and_server(reference_repo, "exit")
    assert owner.wait(timeout=60) == 0
    assert wait_until_gone(family, 5) == set()


def test_a_crash_leaves_no_shared_memory_behind_after_stop(reference_repo):
    """The python backend's shared-memory regions (in /dev/shm, that is memory) outlive a tritonserver killed with
    -9; the course names them after the server and removes them at stop."""
    srv = start_server(reference_repo)
    try:
        assert classify([photo("coffee")], srv.http_url, k=1)[0][0][0] == "espresso"
        regions = sorted(SHM_FOLDER.glob(f"{srv.shm_prefix}*"))
        assert regions, "the python backend's regions are named after the server"
        os.kill(srv.process.pid, signal.SIGKILL)
        srv.process.wait()
        assert all(region.exists() for region in regions)  # what a crash leaves
    finally:
        srv.stop()
    assert not list(SHM_FOLDER.glob(f"{srv.shm_prefix}*"))


def test_exposed_server_keeps_metrics_on_loopback(reference_repo):
    with start_server(reference_repo, host="0.0.0.0") as srv:
        listening = {c.laddr.port: c.laddr.ip for c in psutil.Process(srv.process.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}
        assert listening[srv.ports["http"]] in ("0.0.0.0", "::")
        assert listening[srv.ports["metrics"]] == "127.0.0.1"
        assert srv.metrics_url.startswith("http://127.0.0.1:")
        assert classify([photo("coffee")], srv.http_url, k=1)[0][0][0] == "espresso"


def test_embedded_server_refuses_numpy_2(reference_repo, tmp_path, monkeypatch):
    # Triton 2.51's python backend returns empty tensors under numpy 2: a clear refusal, not wrong answers.
    # The stub takes its packages from the Python first on PATH: here a virtual environment with numpy "2.5.2".
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [site_packages] = venv.glob("lib/python3.*/site-packages")
    (site_packages / "numpy").mkdir()
    (site_packages / "numpy" / "__init__.py").write_text('__version__ = "2.5.2"\n')
    monkeypatch.setattr(sys, "executable", str(venv / "bin" / "python"))
    with pytest.raises(ServerStartError, match="numpy 2.5.2") as caught:
        start_server(reference_repo, runtime="embedded")
    assert "numpy==1.26.4" in caught.value.fix
