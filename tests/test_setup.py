"""scripts/setup.sh on a machine whose Python already has a CUDA build of PyTorch (a PyTorch pod):
the course uses that PyTorch instead of downloading the pinned one, and the doctor says so."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from triton_course.paths import course_root
from triton_course.tools import doctor

ROOT = course_root()


def pins(*skip: str) -> list[str]:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "pins.py"), *skip], capture_output=True, text=True,
                          check=True)
    return done.stdout.split()


def test_pins_leave_out_only_the_names_given():
    every = pins()
    assert "torch==2.13.0" in every and "numpy==1.26.4" in every
    assert pins("torch") == [p for p in every if p != "torch==2.13.0"]  # efficientnet-lite-pytorch stays
    assert pins("TORCH", "numpy") == [p for p in every if p not in ("torch==2.13.0", "numpy==1.26.4")]


def test_the_doctor_reads_the_pins_from_pyproject_when_the_course_is_not_installed(monkeypatch):
    """On the GPU machine the checkout is on the path without being installed (scripts/gpu/gpu_env.sh): the
    doctor then reads the pins from the checkout's pyproject.toml, the same list the installed package has."""
    installed = doctor._course_requirements()

    def not_installed(name):
        raise doctor.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(doctor.metadata, "requires", not_installed)
    from packaging.requirements import Requirement

    def pinned(requirements):  # name -> version, as metadata and pyproject may spell extras in another order
        return {Requirement(r).name: str(Requirement(r).specifier) for r in requirements}

    assert "numpy==1.26.4" in doctor._course_requirements()
    assert pinned(doctor._course_requirements()) == pinned(installed)


def test_the_doctor_reports_a_package_the_machine_provides(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "_course_requirements", lambda: ["numpy==0.0.1"])
    monkeypatch.delenv("TRITON_COURSE_MACHINE_PACKAGES", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    wrong = doctor.check_packages()
    assert not wrong.ok and "numpy 1.26.4 (want ==0.0.1)" in wrong.detail
    (tmp_path / doctor.MACHINE_PACKAGES_FILE).write_text("numpy\n")
    own = doctor.check_packages()
    assert own.ok and own.detail == "pinned versions installed; the machine's own numpy 1.26.4"


def _machine_with_cuda_torch(folder: Path) -> dict:
    """A stand-in for a pod's PyTorch: a `torch` that says it is a CUDA build, with the metadata pip reads."""
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text("from . import version\n__version__ = '2.4.1+cu124'\n")
    (folder / "torch" / "version.py").write_text("cuda = '12.4'\n")
    info = folder / "torch-2.4.1+cu124.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.4.1+cu124\n")
    (info / "RECORD").write_text("")
    return {**os.environ, "PYTHONPATH": str(folder)}


@pytest.mark.skipif(sys.version_info[:2] != (3, 11) or not Path("/usr/bin/python3.11").exists(),
                    reason="needs the system's Python 3.11 (the machine Python a pod's PyTorch would live in)")
def test_setup_uses_the_machines_cuda_pytorch(tmp_path):
    env = _machine_with_cuda_torch(tmp_path / "machine")
    venv = tmp_path / "venv"
    done = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**env, "PYTHON": "/usr/bin/python3.11", "VENV": str(venv)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "with this machine's PyTorch 2.4.1+cu124 (CUDA) in place of the pinned one" in done.stdout
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert (venv / doctor.MACHINE_PACKAGES_FILE).read_text().split() == ["torch"]
    python = str(venv / "bin" / "python")
    found = subprocess.run([python, "-c",
                            "import torch, numpy; print(torch.__version__, torch.__file__, numpy.__version__)"],
                           capture_output=True, text=True, env=env, check=True).stdout.split()
    assert found[0] == "2.4.1+cu124" and found[1].startswith(str(tmp_path / "machine")) and found[2] == "1.26.4"
    assert not list(venv.glob("lib/python*/site-packages/torch"))  # no second PyTorch was downloaded
    report = subprocess.run([python, "-c", "from triton_course.tools import doctor; print(doctor.check_packages())"],
                            capture_output=True, text=True, env=env, check=True).stdout
    assert "the machine's own torch 2.4.1+cu124" in report
