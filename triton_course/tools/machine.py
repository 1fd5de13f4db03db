"""The machine a run's timings were taken on: CPU, memory, GPU, Python, Triton, the course's commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

from ..gpu import DEVICE_VARIABLE, probe_nvidia_smi, wants_cpu
from ..paths import course_root


def machine_info() -> dict[str, str]:
    """What the timings depend on: CPU, memory, GPU, Python, Triton, and when."""
    info = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()} ({_os_name()})",
        "cpu": _cpu_model(),
        "cpu cores": _cpu_cores(),
        "load average": " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min, at the start)",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "gpu": _gpus(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "triton": _triton(),
        "course commit": _git_commit(),
    }
    return info


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "?")
    except OSError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{usable} usable ({psutil.cpu_count(logical=True)} logical, {psutil.cpu_count(logical=False)} physical)"
    try:  # a container (a pod) may be limited to fewer CPUs than the host shows
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            text += f"; container limit {int(quota) / int(period):g} CPUs"
    except (OSError, ValueError):
        pass
    return text


def _gpus() -> str:
    gpus, problem = probe_nvidia_smi()
    text = "; ".join(f"{g.name} (driver {g.driver}, {g.memory})" for g in gpus) or f"none ({problem})"
    if wants_cpu():  # the timings were taken on the CPU, whatever the machine has
        text += f"; {DEVICE_VARIABLE}=cpu: the course served on the CPU"
    return text


def _triton() -> str:
    from ..runtimes import find_binary
    from ..runtimes.embedded import TRITON_VERSION

    local = find_binary()
    if local:
        return f"local {local} (the lessons use it)"
    return f"embedded {TRITON_VERSION} from nvidia-pytriton"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(course_root()), "log", "-1", "--format=%h %cs"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"
