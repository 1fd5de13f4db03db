"""The runtime registry: every runtime answers its own availability, and the CLI and the doctor ask it.

Nothing starts a server here: availability, command lines and the CLI's choices only.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from triton_course import ngc, runtimes
from triton_course.errors import CourseError
from triton_course.runtimes import RUNTIMES, DockerServer, EmbeddedServer, LocalServer
from triton_course.runtimes.base import EXIT_TIMEOUT_SECONDS, SERVED_FOLDER, client_host
from triton_course.runtimes.docker import MOUNT_POINT
from triton_course.tools import doctor
from triton_course.tools.cli import parser

DOCTOR_CHECKS = {"local": doctor.check_local, "embedded": doctor.check_embedded, "docker": doctor.check_docker}


def test_every_runtime_answers_its_own_availability_and_the_module_asks_it():
    for name, runtime in RUNTIMES.items():
        assert runtime.runtime == name
        error = runtime.unavailable_error()
        assert error is None or (isinstance(error, CourseError) and error.what and error.fix)
        assert runtimes.unavailable_reason(name) == runtime.unavailable_reason() == (error and error.what)
    assert runtimes.unavailable_reason("podman") == "unknown runtime 'podman' (choose from local, embedded, docker)"


def test_the_cli_offers_the_registrys_runtimes(capsys):
    for name in ("auto", *RUNTIMES):
        assert parser().parse_args(["serve", "--runtime", name]).runtime == name
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--runtime", "podman"])
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--help"])
    assert f"--runtime {{{','.join(['auto', *RUNTIMES])}}}" in capsys.readouterr().out


def test_the_doctor_gives_the_registrys_answer():
    assert set(DOCTOR_CHECKS) == set(RUNTIMES)
    for name, check in DOCTOR_CHECKS.items():
        reason, line = runtimes.unavailable_reason(name), check()
        assert line.ok == (reason is None)
        if reason is not None:
            assert line.detail == reason


def test_local_is_available_exactly_where_a_binary_is(tmp_path, monkeypatch):
    if os.path.exists("/opt/tritonserver/bin/tritonserver"):
        pytest.skip("this machine has an NGC Triton install")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("TRITONSERVER", str(tmp_path / "missing"))
    reason = LocalServer.unavailable_reason()
    assert reason == "No tritonserver here (not on PATH or in /opt/tritonserver)."
    with pytest.raises(CourseError, match=r"No tritonserver here"):  # the same words when one is made
        LocalServer(tmp_path)
    check = doctor.check_local()
    assert not check.ok and check.detail == reason
    monkeypatch.setenv("TRITONSERVER", "/bin/true")
    assert LocalServer.unavailable_reason() is None and runtimes.unavailable_reason("local") is None
    check = doctor.check_local()
    assert check.ok and check.detail == "/bin/true"


def test_without_an_engine_docker_is_unavailable_and_the_doctor_says_so(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert DockerServer.unavailable_reason() == "No Docker engine answers on this machine."
    check = doctor.check_docker()
    assert not check.ok and check.detail == "No Docker engine answers on this machine."
    assert "systemctl start docker" in check.fix


@pytest.mark.skipif(EmbeddedServer.unavailable_reason() is not None, reason="no embedded Triton here")
def test_embedded_is_unavailable_when_its_stub_misses_a_library(tmp_path, monkeypatch):
    from triton_course.runtimes import embedded

    installation = embedded.find_installation()
    assert embedded.missing_libraries(installation.stub, embedded.library_dirs(installation)) == []
    # A copy of the stub out of the wheel finds the wheel's libraries (its RPATH is relative) only
    # through the folder the server is given: as a stub that lost a library, it makes the runtime unavailable.
    stub = tmp_path / "stub"
    shutil.copy2(installation.stub, stub)
    moved = dataclasses.replace(installation, stub=stub, libraries=tmp_path / "no-libraries")
    lost = embedded.missing_libraries(stub, embedded.library_dirs(moved))
    assert lost and all(name.startswith("lib") for name in lost)
    assert embedded.missing_libraries(stub, embedded.library_dirs(installation)) == []
    monkeypatch.setattr(embedded, "find_installation", lambda: moved)
    reason = f"The embedded Triton's python stub lacks {', '.join(lost)}."
    assert runtimes.unavailable_reason("embedded") == reason
    check = doctor.check_embedded()
    assert not check.ok and check.required and check.detail == reason and "apt-get install libpython" in check.fix


def test_docker_builds_its_command_with_the_base_options(tmp_path):
    srv = DockerServer(tmp_path, image=ngc.CURRENT.image, pull=False, load_models=["m"], admin_key="k",
                       extra_args=["--log-verbose=1"])
    assert srv.command() == ["tritonserver", f"--model-repository={MOUNT_POINT}", *srv.server_args()]
    assert f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}" in srv.command()
    assert srv.server_args()[-1] == "--log-verbose=1" and "--load-model=m" in srv.server_args()
    assert any(arg.startswith("--http-restricted-api=") for arg in srv.server_args())
    assert not any(arg.startswith(("--http-port", "--http-address")) for arg in srv.command())


def test_local_builds_the_same_options_after_its_addresses(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONSERVER", "/bin/true")
    srv = LocalServer(tmp_path, load_models=["m"])
    srv.ports = {"http": 1, "grpc": 2, "metrics": 3}
    srv.served_repository = tmp_path / SERVED_FOLDER / "x"
    command = srv.command()
    assert command[:2] == ["/bin/true", f"--model-repository={srv.served_repository}"]
    assert command[-len(srv.server_args()):] == srv.server_args()


def test_published_ports_bind_where_the_server_is_told(tmp_path):
    srv = DockerServer(tmp_path, image="any/triton:1", pull=False, gpus="none", host="0.0.0.0")
    line = srv.docker_run_command()
    assert "-p 0.0.0.0:8000:8000 -p 0.0.0.0:8001:8001 -p 127.0.0.1:8002:8002" in line
    assert srv.bind_host("http") == "0.0.0.0" and srv.bind_host("metrics") == "127.0.0.1"
    assert client_host("0.0.0.0") == client_host("") == "127.0.0.1" and client_host("10.0.0.5") == "10.0.0.5"
    ids = DockerServer(tmp_path, image="any/triton:1", pull=False, gpus=["0", 1])
    assert ids.requested_gpus() == ["0", "1"] and "--gpus='\"device=0,1\"' " in ids.docker_run_command()
    assert DockerServer(tmp_path, image="any/triton:1", pull=False, gpus="0,1").requested_gpus() == ["0", "1"]
