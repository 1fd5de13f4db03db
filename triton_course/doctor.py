"""What this machine has for the course: one OK / MISSING line per thing, with what to do."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

from .paths import MODEL_NAME, models_dir


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        status = "OK" if self.ok else ("MISSING" if self.required else "MISSING (optional)")
        text = f"{status:<19} {self.name:<18} {self.detail}"
        return text + (f"\n{'':<19} {'':<18} -> {self.fix}" if not self.ok and self.fix else "")


def check_python() -> Check:
    version = platform.python_version()
    ok = (3, 10) <= sys.version_info[:2] <= (3, 12)
    return Check("python", ok, f"{version} at {sys.executable}",
                 "Create the course's virtual environment with Python 3.10, 3.11 or 3.12.")


def check_embedded() -> Check:
    from .errors import ServerStartError
    from .runtimes.embedded import TRITON_VERSION, find_installation

    try:
        inst = find_installation()
    except ServerStartError as exc:
        return Check("embedded triton", False, exc.what, exc.fix or "")
    missing = _missing_libraries(inst.stub, extra_paths=[str(inst.libraries)])
    if missing:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return Check("embedded triton", False, f"python stub lacks {', '.join(missing)}",
                     f"apt-get install libpython{version} (the shared Python library)")
    return Check("embedded triton", True, f"Triton {TRITON_VERSION} from nvidia-pytriton ({inst.binary})")


def _missing_libraries(binary, extra_paths: list[str]) -> list[str]:
    import os

    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(extra_paths + [os.environ.get("LD_LIBRARY_PATH", "")]))
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


def check_local() -> Check:
    from .runtimes.local import find_binary

    found = find_binary()
    return Check("local tritonserver", found is not None,
                 str(found) if found else "none on PATH or in /opt/tritonserver",
                 "Only on a pod started from nvcr.io/nvidia/tritonserver:<tag>-py3; the embedded server works without it.",
                 required=False)


def check_gpu() -> Check:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return Check("gpu", False, "no nvidia-smi: lessons run on the CPU",
                     "Rent a GPU pod for the GPU lessons; every lesson also runs on the CPU.", required=False)
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("gpu", False, f"nvidia-smi failed: {exc}", "Check the NVIDIA driver.", required=False)
    gpus = [line for line in out.stdout.splitlines() if line.startswith("GPU")]
    return Check("gpu", bool(gpus), "; ".join(gpus) or out.stderr.strip()[:200],
                 "Check the NVIDIA driver (nvidia-smi).", required=False)


def check_tensorrt() -> Check:
    from .tensorrt import find_trtexec

    try:
        import tensorrt

        api = f"TensorRT {tensorrt.__version__} Python API"
    except ImportError:
        api = None
    trtexec = find_trtexec()
    found = [x for x in (api, trtexec and f"trtexec at {trtexec}") if x]
    return Check("tensorrt", bool(found), "; ".join(found) or "no TensorRT Python API, no trtexec",
                 "Only with a GPU and NVIDIA's Triton or TensorRT image; lesson 8 prints the TensorRT commands "
                 "and measures its CPU part without it.", required=False)


def check_prometheus() -> Check:
    from .monitoring import INSTALL_FIX, find_prometheus

    found = find_prometheus()
    return Check("prometheus", found is not None, found or "not installed",
                 f"For lesson 11's own Prometheus. {INSTALL_FIX}", required=False)


def check_docker() -> Check:
    from .runtimes.docker import DockerError, docker_client

    try:
        client = docker_client(timeout=5)
    except DockerError as exc:
        return Check("docker engine", False, exc.what, exc.fix or "", required=False)
    version = client.version().get("Version", "?")
    client.close()
    return Check("docker engine", True, f"Docker {version}", required=False)


def check_packages() -> Check:
    from packaging.requirements import Requirement

    wrong = []
    for spec in metadata.requires("triton-course") or []:
        req = Requirement(spec)
        if req.marker and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{req.name} (not installed)")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            wrong.append(f"{req.name} {installed} (want {req.specifier})")
    if wrong:
        return Check("packages", False, "; ".join(wrong), "Run `make setup` in the course folder.")
    return Check("packages", True, "all pinned versions installed")


def check_model() -> Check:
    path = models_dir() / MODEL_NAME / "1" / "model.onnx"
    if path.exists():
        return Check("model artifact", True, f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return Check("model artifact", False, f"{path} not built yet", "Run `triton-course prepare`.")


def check_ports(ports=(8000, 8001, 8002)) -> Check:
    from .runtimes.base import port_holder, port_is_free

    taken = [f"{p} ({port_holder(p) or 'in use'})" for p in ports if not port_is_free(p)]
    return Check("ports 8000-8002", not taken, "free" if not taken else "taken: " + ", ".join(taken),
                 "The course picks free ports itself; stop the other server to use Triton's defaults.",
                 required=False)


def run_checks() -> list[Check]:
    return [check_python(), check_packages(), check_embedded(), check_local(), check_gpu(),
            check_tensorrt(), check_prometheus(), check_docker(), check_model(), check_ports()]


def report(checks: list[Check]) -> str:
    return "\n".join(c.line() for c in checks)
