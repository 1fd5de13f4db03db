"""The one GPU probe (triton_course/gpu.py) and TRITON_COURSE_DEVICE=cpu, as every module sees them.

This machine has no GPU: a stand-in nvidia-smi on PATH (a real executable) prints what the real one
prints for the course's query, or fails as it does with a broken driver.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from triton_course import gpu, ngc, repository, tensorrt
from triton_course.runtimes.docker import DockerServer, host_gpus
from triton_course.tools import machine
from triton_course.tools.doctor import SCREEN_COLUMNS, check_gpu

QUERY = "--query-gpu=index,name,driver_version,memory.total"
TWO_GPUS = "0, NVIDIA H200, 580.95.05, 143771 MiB\n1, NVIDIA H200, 580.95.05, 143771 MiB\n"
BROKEN_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                 "Make sure that the latest NVIDIA driver is installed and running.")


def fake_nvidia_smi(folder: Path, monkeypatch, stdout: str = "", stderr: str = "", code: int = 0) -> None:
    """nvidia-smi that answers the course's CSV query only (any other arguments: exit 9)."""
    (folder / "smi.out").write_text(stdout)
    (folder / "smi.err").write_text(stderr)
    smi = folder / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\n[ "$1" = "{QUERY}" ] && [ "$2" = "--format=csv,noheader" ] || exit 9\n'
                   f'cat "{folder}/smi.out"\ncat "{folder}/smi.err" >&2\nexit {code}\n')
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(folder) + os.pathsep + os.environ["PATH"])


@pytest.fixture
def no_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))


def test_without_nvidia_smi_there_is_no_gpu_and_no_driver(no_nvidia_smi, monkeypatch):
    monkeypatch.delenv(gpu.DEVICE_VARIABLE, raising=False)
    assert gpu.probe_nvidia_smi() == ([], gpu.NO_NVIDIA_SMI)
    assert gpu.nvidia_smi_gpus() == [] and host_gpus() == []
    assert gpu.driver_version() is None and ngc.driver_version() is None
    assert machine._gpus() == "none (no nvidia-smi)"
    check = check_gpu()
    assert not check.ok and check.detail == "no GPU (no nvidia-smi): lessons run on the CPU"


def test_gpus_are_read_from_nvidia_smi_csv(tmp_path, monkeypatch):
    monkeypatch.delenv(gpu.DEVICE_VARIABLE, raising=False)
    fake_nvidia_smi(tmp_path, monkeypatch, TWO_GPUS)
    assert gpu.nvidia_smi_gpus() == [gpu.Gpu(0, "NVIDIA H200", "580.95.05", "143771 MiB"),
                                     gpu.Gpu(1, "NVIDIA H200", "580.95.05", "143771 MiB")]
    assert gpu.driver_version() == ngc.driver_version() == "580.95.05"
    assert host_gpus() == ["0", "1"]
    assert machine._gpus() == ("NVIDIA H200 (driver 580.95.05, 143771 MiB); "
                              "NVIDIA H200 (driver 580.95.05, 143771 MiB)")
    check = check_gpu()
    assert check.ok
    assert check.detail == (f"driver 580.95.05, newest NGC tag {ngc.newest_runnable('580.95.05').tag}-py3: "
                            "GPU 0: NVIDIA H200; GPU 1: NVIDIA H200")
    assert len(check.line()) <= SCREEN_COLUMNS


def test_a_broken_driver_is_quoted_and_counts_as_no_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv(gpu.DEVICE_VARIABLE, raising=False)
    fake_nvidia_smi(tmp_path, monkeypatch, stdout=BROKEN_DRIVER, code=9)
    gpus, problem = gpu.probe_nvidia_smi()
    assert gpus == [] and problem == f"nvidia-smi said: {BROKEN_DRIVER}"
    assert gpu.driver_version() is None and host_gpus() == []
    check = check_gpu()
    assert not check.ok and check.detail.startswith("nvidia-smi said: NVIDIA-SMI has failed")
    assert "NVIDIA driver" in check.fix


@pytest.mark.parametrize("value, cpu", [("cpu", True), (" CPU ", True), ("cuda", False), ("", False)])
def test_the_device_variable_asks_for_the_cpu_only_when_it_says_cpu(monkeypatch, value, cpu):
    monkeypatch.setenv(gpu.DEVICE_VARIABLE, value)
    assert gpu.wants_cpu() is cpu


def test_torch_device_name_is_pytorchs_first_gpu_unless_the_cpu_is_asked_for(monkeypatch):
    import torch

    monkeypatch.delenv(gpu.DEVICE_VARIABLE, raising=False)
    expected = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    assert gpu.torch_device_name() == repository.cuda_device_name() == expected
    monkeypatch.setenv(gpu.DEVICE_VARIABLE, "cpu")  # read at each call, not only at the first
    assert gpu.torch_device_name() is None and repository.cuda_device_name() is None


def test_the_cpu_variable_keeps_every_probe_that_serves_or_measures_on_the_cpu(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, TWO_GPUS)
    repo = tmp_path / "models"
    repo.mkdir()
    monkeypatch.delenv(gpu.DEVICE_VARIABLE, raising=False)
    assert DockerServer(repo, image="any/triton:1", pull=False).requested_gpus() == "all"

    monkeypatch.setenv(gpu.DEVICE_VARIABLE, "cpu")
    # serving: the PyTorch runner, TensorRT and Docker's "auto" stay off the GPU
    assert repository.cuda_device_name() is None
    with_backend = SimpleNamespace(runtime="local", backends=["onnxruntime", "tensorrt"])
    assert "TRITON_COURSE_DEVICE=cpu" in tensorrt.serving_unavailable_reason(with_backend, "tensorrt")
    docker = DockerServer(repo, image="any/triton:1", pull=False)
    assert docker.requested_gpus() == "none" and docker.device_requests() == []
    assert docker.notes == ["no GPU requested: TRITON_COURSE_DEVICE=cpu"]
    assert "--gpus" not in docker.docker_run_command()
    assert DockerServer(repo, image="any/triton:1", pull=False, gpus="all").requested_gpus() == "all"  # asked for
    # describing: the hardware is still there, and the doctor and the report say the variable is set
    assert host_gpus() == ["0", "1"] and gpu.driver_version() == "580.95.05"
    assert machine._gpus().endswith("; TRITON_COURSE_DEVICE=cpu: the course served on the CPU")
    check = check_gpu()
    assert not check.ok and check.detail.startswith("TRITON_COURSE_DEVICE=cpu: lessons serve on the CPU; GPU 0")
    assert "Unset TRITON_COURSE_DEVICE" in check.fix


def test_the_doctor_says_the_variable_is_set_on_a_machine_without_gpu(no_nvidia_smi, monkeypatch):
    monkeypatch.setenv(gpu.DEVICE_VARIABLE, "cpu")
    assert check_gpu().detail == "no GPU (no nvidia-smi): lessons run on the CPU (TRITON_COURSE_DEVICE=cpu is set)"


def test_only_gpu_py_asks_the_driver_or_pytorch_for_gpus():
    """One probe: the package's other modules ask gpu.py (the runners run inside Triton's python stub,
    where the course's package is not importable)."""
    package = Path(gpu.__file__).parent
    probing = [str(path.relative_to(package)) for path in package.rglob("*.py")
               if path.name != "gpu.py" and path.parent.name != "runner"
               and any(probe in path.read_text() for probe in ('"nvidia-smi"', "cuda.is_available", "get_device_name"))]
    assert probing == []
