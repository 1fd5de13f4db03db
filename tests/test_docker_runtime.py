"""The Docker runtime against a real engine and registry (scripts/docker_engine.sh starts both).

Skipped, with the reason, where no engine answers or $TRITON_IMAGE does not name an image the
engine can pull (nvcr.io is out of reach without internet).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from triton_course import ModelLoadError, PortInUseError, artifact
from triton_course.inference import classify
from triton_course.photos import photo
from triton_course.runtimes import unavailable_reason
from triton_course.runtimes.docker import (
    LABEL,
    DockerError,
    DockerServer,
    docker_client,
    engine_error,
    image_reference,
    pull_image,
)

pytestmark = pytest.mark.server


def test_engine_errors_say_what_to_do():
    denied = engine_error("Error while fetching server API version: ('Connection aborted.', "
                          "PermissionError(13, 'Permission denied'))")
    assert denied.what == "Permission denied on the Docker socket." and "docker group" in denied.fix
    missing = engine_error("Error while fetching server API version: ('Connection aborted.', "
                           "FileNotFoundError(2, 'No such file or directory'))")
    assert missing.what == "No Docker engine answers on this machine." and "embedded" in missing.fix
    assert "Docker said:" in str(missing)


def test_no_engine_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerError) as err:
        docker_client(timeout=5)
    assert "No Docker engine answers" in err.value.what
    assert unavailable_reason("docker") == "No Docker engine answers on this machine."


def test_default_image_and_client_shm_flag_follow_the_ngc_table(reference_repo, monkeypatch):
    from triton_course import ngc
    from triton_course.runtimes.docker import DEFAULT_IMAGE, default_image

    monkeypatch.delenv("TRITON_IMAGE", raising=False)
    image, why = default_image()
    assert image == image_reference() == ngc.default_release(ngc.driver_version())[0].image
    assert why and (ngc.driver_version() is not None or image == DEFAULT_IMAGE == ngc.CURRENT.image)
    # Triton 2.68 (26.04) on refuses client shared memory unless allowed; 2.51 and 2.67 have no such option
    # (they would not start with it)
    current = DockerServer(reference_repo, image=ngc.CURRENT.image, pull=False)
    assert "--allow-client-shm=true" in current.command()
    assert "--allow-client-shm=true" in current.docker_run_command()
    assert "--allow-client-shm=true" not in DockerServer(reference_repo, image=ngc.EMBEDDED_RELEASE.image,
                                                         pull=False).command()
    assert "--allow-client-shm=true" not in DockerServer(reference_repo, image=ngc.CURRENT.image, pull=False,
                                                         allow_client_shm=False).command()
    for tag, flagged in (("26.04", True), ("26.02", False)):
        srv = DockerServer(reference_repo, image=ngc.release(tag).image, pull=False)
        assert ("--allow-client-shm=true" in srv.command()) is flagged, tag
    monkeypatch.setenv("TRITON_IMAGE", "local/triton-course:ci")
    assert image_reference() == "local/triton-course:ci"  # CI's own image, never pulled from nvcr.io


_reason = unavailable_reason("docker")
needs_engine = pytest.mark.skipif(
    _reason is not None or not os.environ.get("TRITON_IMAGE"),
    reason=_reason or "TRITON_IMAGE is not set: run `eval \"$(scripts/docker_engine.sh env)\"` after "
                      "`scripts/docker_engine.sh start` (CI does)")


def our_containers():
    return docker_client().containers.list(all=True, filters={"label": LABEL})


@needs_engine
def test_pull_shows_layer_progress_then_skips_when_present(capsys, tmp_path):
    """A real pull of an image of its own: a small one built here and pushed to the test registry. The course's
    image stays as it is: other test files run containers of it meanwhile, and removing it once broke them."""
    client = docker_client()
    registry = image_reference().split("/")[0]
    if registry.split(":")[0] not in ("127.0.0.1", "localhost"):
        pytest.skip(f"pushes to a registry of this machine; $TRITON_IMAGE's is {registry}")
    (tmp_path / "payload").write_bytes(os.urandom(4 << 20))  # a layer of its own, never present before
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\n")
    name, tag = f"{registry}/triton-course/pull-test", f"pid{os.getpid()}-{time.time_ns()}"
    reference = f"{name}:{tag}"
    image, _ = client.images.build(path=str(tmp_path), tag=reference, rm=True)
    for event in client.api.push(name, tag=tag, stream=True, decode=True):
        assert "error" not in event, event
    client.images.remove(image.id, force=True)
    try:
        pulled = pull_image(reference)
        out = capsys.readouterr()
        assert f"Status: Downloaded newer image for {reference}" in out.out
        assert "pull complete" in out.out + out.err  # the layer's progress bar, to the end
        assert reference in pulled.tags
        pull_image(reference)
        assert "already here: no pull needed" in capsys.readouterr().out
    finally:
        client.images.remove(reference, force=True)


@needs_engine
def test_serves_the_course_model_from_the_container(reference_repo):
    with DockerServer(reference_repo) as srv:
        assert srv.backends == ["python"]
        assert srv.image_version()["triton"] == "2.51.0"
        assert srv.version == "2.51.0"
        assert "no GPU requested: this host has none" in srv.notes
        assert classify([photo("coffee")], srv.http_url, k=1)[0][0][0] == "espresso"
        assert classify([photo("flower")], srv.grpc_address, protocol="grpc", k=1)[0][0][0] == "daisy"
        attrs = srv.container.attrs
        published = attrs["NetworkSettings"]["Ports"]
        assert {binding[0]["HostIp"] for binding in published.values()} == {"127.0.0.1"}
        assert {int(binding[0]["HostPort"]) for binding in published.values()} == set(srv.ports.values())
        assert attrs["Mounts"] and all(not m["RW"] for m in attrs["Mounts"])
        assert any(m["Destination"] == "/models" for m in attrs["Mounts"])
        assert "docker run --rm" in srv.docker_run_command() and ":/models:ro" in srv.docker_run_command()
        name = srv.container.name
    assert "Started HTTPService" in srv.log_text()  # the container log is kept after it is gone
    assert name not in [c.name for c in our_containers()]


@needs_engine
def test_a_model_error_in_the_container_names_the_model(tmp_path, copy_model):
    repo = tmp_path / "repo"
    bad = copy_model(repo, "bad", edit=lambda t: t.replace("dims: [3, 224, 224]", "dims: [-1, 3, 224, 224]"))
    linked = copy_model(repo, "linked")  # its model.onnx links outside the mounted repository
    (bad / "1" / "model.onnx").unlink()
    shutil.copy(artifact.onnx_path(), bad / "1" / "model.onnx")
    with pytest.raises(ModelLoadError) as err:
        DockerServer(repo).start()
    assert "an initial batch dimension because max_batch_size > 0" in err.value.problem("bad").message
    problem = err.value.problem("linked")
    assert f"'{linked}/1/model.onnx' for model 'linked' is a symbolic link" in problem.message
    assert "a server in a container sees only the folders mounted into it" in problem.fix
    assert not our_containers()


@needs_engine
def test_gpu_request_without_nvidia_runtime_is_explained_and_cleaned_up(reference_repo):
    from triton_course.runtimes.docker import host_gpus

    if host_gpus():
        pytest.skip("this host has GPUs")
    with pytest.raises(DockerError) as err:
        DockerServer(reference_repo, gpus="all").start()
    assert 'could not select device driver "" with capabilities: [[gpu]]' in err.value.triton_said
    assert "NVIDIA Container Toolkit" in err.value.fix
    assert not our_containers()  # the container Docker left in state "created" is gone


@needs_engine
def test_unknown_image_and_unreachable_registry(reference_repo):
    with pytest.raises(DockerError) as err:
        DockerServer(reference_repo, image="127.0.0.1:5000/no/such:image").start()
    assert "does not exist" in err.value.what or "failed" in err.value.what
    with pytest.raises(DockerError) as err:
        DockerServer(reference_repo, image="127.0.0.1:9/nothing:here").start()
    assert "registry could not be reached" in err.value.fix


@needs_engine
def test_port_taken_and_unreadable_repository(reference_repo, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(PortInUseError):
            DockerServer(reference_repo, http_port=s.getsockname()[1]).start()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(Exception) as err:
            DockerServer(locked).start()
        assert "cannot be read by the server" in str(err.value)
    finally:
        locked.chmod(0o755)


OWNER = textwrap.dedent("""
    import sys, time
    from triton_course.runtimes.docker import DockerServer
    srv = DockerServer(sys.argv[1]).start()
    print(srv.container.name, flush=True)
    time.sleep(600)
""")


@needs_engine
def test_container_removed_after_kill_9_of_the_owner(reference_repo):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(reference_repo)], stdout=subprocess.PIPE, text=True)
    try:
        name = ""
        while not name.startswith("triton-course-"):
            name = owner.stdout.readline().strip()
            assert name or owner.poll() is None, "the owner exited before its container was up"
        assert name in [c.name for c in our_containers()]
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and name in [c.name for c in our_containers()]:
        time.sleep(0.5)
    assert name not in [c.name for c in our_containers()]
