"""What GPUs this machine has, asked in one place.

Two views of the same hardware:
- the driver's (nvidia-smi): the GPUs the host has, whatever this Python can use. The Docker runtime
  requests them for its container, ngc.py picks the NGC tag the driver runs, the doctor and the
  report describe them.
- PyTorch's: the GPU this Python can compute on. The embedded server's PyTorch runner serves a model
  on it, and TensorRT builds its engines on it.

TRITON_COURSE_DEVICE=cpu asks the course to serve and measure on the CPU on a GPU machine: then
`torch_device_name()` is None (the runner serves on the CPU, TensorRT says it cannot run) and the
Docker runtime's gpus="auto" requests no GPU. The driver's view still describes the hardware (the
doctor and the report say that the variable is set).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

DEVICE_VARIABLE = "TRITON_COURSE_DEVICE"
NVIDIA_SMI_TIMEOUT = 30  # seconds; a driver in trouble can make nvidia-smi hang
QUERY_FIELDS = ("index", "name", "driver_version", "memory.total")
NO_NVIDIA_SMI = "no nvidia-smi"  # what probe_nvidia_smi says on a machine without NVIDIA's driver tools


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi lists it."""

    index: int
    name: str
    driver: str  # e.g. "580.95.05"
    memory: str  # e.g. "81559 MiB"


def wants_cpu() -> bool:
    """Whether the learner asked the course to serve and measure on the CPU (TRITON_COURSE_DEVICE=cpu)."""
    return os.environ.get(DEVICE_VARIABLE, "").strip().lower() == "cpu"


def probe_nvidia_smi() -> tuple[list[Gpu], str | None]:
    """The host's GPUs from nvidia-smi, and when there are none, why (one line: no nvidia-smi, or what
    it said). Not cached: a driver may come and go, and tests put a stand-in nvidia-smi on PATH."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return [], NO_NVIDIA_SMI
    try:
        out = subprocess.run([smi, f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi failed: {exc}"
    gpus = []
    for row in out.stdout.splitlines():
        parts = [part.strip() for part in row.split(",")]
        if len(parts) == len(QUERY_FIELDS) and parts[0].isdigit():
            gpus.append(Gpu(int(parts[0]), parts[1], parts[2], parts[3]))
    if gpus:
        return gpus, None
    # "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver", "No devices were found"
    said = (out.stderr or out.stdout).strip()[:200]
    return [], f"nvidia-smi said: {said}" if said else f"nvidia-smi listed no GPU (exit code {out.returncode})"


def nvidia_smi_gpus() -> list[Gpu]:
    """The host's GPUs ([] without nvidia-smi or a working driver)."""
    return probe_nvidia_smi()[0]


def driver_version() -> str | None:
    """This host's NVIDIA driver version (e.g. "580.95.05"), or None without nvidia-smi or a GPU."""
    gpus = nvidia_smi_gpus()
    return gpus[0].driver if gpus else None


def compute_capability() -> str | None:
    """The first GPU's compute capability as nvidia-smi reports it ("9.0" on an H100/H200, "7.5" on a T4),
    or None without nvidia-smi, a GPU, or a driver that knows the field (its own query, so that a driver
    too old for `compute_cap` leaves the GPU list alone). NGC's current images need 7.5 (ngc.py)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[:1]
    return first[0].strip() if out.returncode == 0 and first and re.fullmatch(r"\d+\.\d+", first[0].strip()) else None


def torch_device_name() -> str | None:
    """The first GPU PyTorch can use here, or None (also when TRITON_COURSE_DEVICE=cpu asks for the CPU)."""
    return None if wants_cpu() else _torch_gpu()


@functools.lru_cache(maxsize=1)
def _torch_gpu() -> str | None:
    # Cached: importing torch and starting CUDA take seconds, and the answer does not change in a process.
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
