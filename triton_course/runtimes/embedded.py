"""The real Triton binary that ships inside the nvidia-pytriton wheel: no Docker, no download.

That build has one backend, python. The course serves ONNX models on it through its
python-backend runner (see runtimes/stand_in.py); on a GPU the runner uses it.
"""

from __future__ import annotations

import os
import platform
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..errors import ServerStartError
from ..paths import cache_dir
from .base import TritonServer

MIN_GLIBC = (2, 35)  # the wheel is manylinux_2_35
TRITON_VERSION = "2.51.0"  # the server inside nvidia-pytriton 0.7.0, the version pyproject.toml pins
# That server's python backend was built for numpy 1.x: under numpy 2 every tensor a model returns
# reaches the client with no data (seen on an H100 machine with numpy 2.5), so it is refused.
MAX_NUMPY_MAJOR = 1


@dataclass
class Installation:
    binary: Path
    libraries: Path
    python_backend: Path
    stub: Path


def find_installation() -> Installation:
    """Where the wheel put the server; raises ServerStartError saying what is missing."""
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError("The embedded Triton is not installed (package nvidia-pytriton).",
                               fix="Run `make setup` (or `pip install -e .`) in the course folder.")
    libc, version = platform.libc_ver()
    if libc == "glibc" and tuple(int(x) for x in version.split(".")[:2]) < MIN_GLIBC:
        raise ServerStartError(
            f"The embedded Triton needs glibc >= 2.35; this system has {version}.",
            fix="Use Ubuntu 22.04+ / Debian 12+, or the NGC Triton container (runtime 'local' or 'docker').")
    package = Path(next(iter(spec.submodule_search_locations)))
    server = package / "tritonserver"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    inst = Installation(
        binary=server / "bin" / "tritonserver",
        libraries=package.parent / "nvidia_pytriton.libs",
        python_backend=server / "backends" / "python",
        stub=server / "python_backend_stubs" / python_version / "triton_python_backend_stub",
    )
    if not inst.stub.exists():
        raise ServerStartError(f"The embedded Triton has no python backend stub for Python {python_version}.",
                               fix="Use Python 3.10, 3.11 or 3.12 for the course's virtual environment.")
    return inst


def library_dirs(installation: Installation) -> list[str]:
    """Where the server and its python stub find their shared libraries, before the system's."""
    libraries = [str(installation.libraries)]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        libraries.append(libdir)  # the stub then embeds the same Python as this environment
    return libraries


def missing_libraries(binary: Path, extra_paths: list[str]) -> list[str]:
    """The shared libraries `binary` needs that the loader cannot find (ldd's "not found")."""
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(extra_paths + [os.environ.get("LD_LIBRARY_PATH", "")]))
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


class EmbeddedServer(TritonServer):
    runtime = "embedded"

    @classmethod
    def unavailable_error(cls) -> ServerStartError | None:
        """The wheel's server must be here, and its python stub must find its libraries: without the
        shared Python library (a pod that lost it after a restart) no model can load."""
        try:
            installation = find_installation()
        except ServerStartError as exc:
            return exc
        missing = missing_libraries(installation.stub, extra_paths=library_dirs(installation))
        if not missing:
            return None
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return ServerStartError(f"The embedded Triton's python stub lacks {', '.join(missing)}.",
                                fix=f"apt-get install libpython{version} (the shared Python library)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.installation = find_installation()

    def start(self) -> "TritonServer":
        if not self._launched:
            version = stub_numpy_version(self.environment())
            if int(version.split(".")[0]) > MAX_NUMPY_MAJOR:
                raise ServerStartError(
                    f"The embedded Triton {TRITON_VERSION} cannot serve with numpy {version}: its python backend "
                    "was built for numpy 1.x, and every output would reach the client empty.",
                    fix="Install numpy 1.26.4 in this Python's environment: `pip install numpy==1.26.4` "
                        "(`make setup` does it for the course's .venv).")
        return super().start()

    def binary(self) -> Path:
        _make_executable(self.installation.binary)
        return self.installation.binary

    @property
    def backends(self) -> list[str]:
        return ["python"]

    def backend_directory(self) -> Path:
        """A backends folder for this Python: the wheel's python backend plus the matching stub."""
        target = cache_dir() / "backends" / f"py{sys.version_info.major}{sys.version_info.minor}" / "python"
        target.mkdir(parents=True, exist_ok=True)
        sources = [self.installation.python_backend / "libtriton_python.so",
                   self.installation.python_backend / "triton_python_backend_utils.py",
                   self.installation.stub]
        for source in sources:
            dest = target / source.name
            if not dest.exists() or dest.stat().st_size != source.stat().st_size:
                # copied beside, then renamed: another process may be starting a server from this folder
                partial = dest.with_name(f"{dest.name}.{os.getpid()}.part")
                shutil.copyfile(source, partial)
                _make_executable(partial)
                partial.replace(dest)
        _make_executable(target / self.installation.stub.name)
        return target.parent

    def backend_args(self) -> list[str]:
        # The wheel's response-cache implementation (local), for models with response_cache enabled.
        caches = self.installation.binary.parent.parent / "caches"
        return [f"--backend-directory={self.backend_directory()}", f"--cache-directory={caches}",
                *self.python_shm_args()]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The python stub must import this environment's onnxruntime and numpy.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        paths = [p for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()]
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
        libraries = library_dirs(self.installation)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
        return env


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def stub_numpy_version(env: dict[str, str]) -> str:
    """The numpy version the python stub will import. The stub finds its packages through the Python
    first on PATH (this one, a virtual environment's site-packages and .pth files included) and puts
    PYTHONPATH after them (seen on an H100 machine), so the check runs this Python with -I."""
    result = subprocess.run([sys.executable, "-I", "-c", "import numpy; print(numpy.__version__)"], env=env,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ServerStartError("numpy cannot be imported in this Python, and the python backend needs it.",
                               triton_said=result.stderr.strip()[-400:], fix="Run `make setup` in the course folder.")
    return result.stdout.strip()
