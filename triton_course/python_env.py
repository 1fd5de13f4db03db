"""Lesson 9's python-backend environment: a model that imports a package the server's Python lacks
(`anyascii`), shipped with an environment of its own through the python backend's `EXECUTION_ENV_PATH`.

The environment is a virtual environment made with this Python (the python backend's rule: its Python must be
the stub's, and the course's embedded server runs the stub built for this Python) holding what the model imports
and what the stub itself needs (numpy, which `triton_python_backend_utils` imports). `triton-course prepare`
downloads their wheels once into the course's downloads/ folder, so that the lesson needs no network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from .errors import DownloadError
from .paths import downloads_dir

# numpy: the course's own pin (pyproject.toml), which the embedded stub needs; anyascii: what the model uses
PACKAGES = ("numpy==1.26.4", "anyascii==0.3.3")
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def wheels_dir() -> Path:
    return downloads_dir() / "python_env_wheels"


def ensure_wheels() -> Path:
    """The folder with PACKAGES' wheels for this Python, downloaded with pip on first use."""
    folder = wheels_dir()
    names = [p.split("==")[0].lower() for p in PACKAGES]
    if folder.is_dir() and all(any(w.name.lower().startswith(n + "-") for w in folder.glob("*.whl")) for n in names):
        return folder
    with tempfile.TemporaryDirectory(dir=downloads_dir()) as tmp:
        fetched = Path(tmp) / "wheels"
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--only-binary=:all:", *PACKAGES, "-d", str(fetched)], capture_output=True, text=True)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise DownloadError(f"pip could not download {', '.join(PACKAGES)}, which lesson 9's environment holds.",
                                triton_said=said[-1] if said else "(nothing)",
                                fix="Check the network or your pip settings, then run `triton-course prepare`.")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(fetched), folder)  # moved in whole: a reader never sees half a folder
    return folder


def make_environment(folder: str | Path) -> Path:
    """A virtual environment at `folder` (replaced if there) with PACKAGES installed from the downloaded wheels;
    its `bin/activate` is what the python backend sources before it starts the model's stub."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    venv.create(folder, with_pip=False, symlinks=True)
    site_packages = folder / "lib" / f"python{PYTHON}" / "site-packages"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                           "--find-links", str(ensure_wheels()), "--target", str(site_packages), *PACKAGES],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise DownloadError(f"pip could not install {', '.join(PACKAGES)} into {folder}.",
                            triton_said=(done.stderr or done.stdout).strip()[-400:],
                            fix="Run `triton-course prepare`, then this cell again.")
    return folder


def environment_python(folder: str | Path) -> str:
    """The Python version a virtual environment was made with (its pyvenv.cfg), as major.minor."""
    for line in (Path(folder) / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            return ".".join(value.strip().split(".")[:2])
    return "unknown"
