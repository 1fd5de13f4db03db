"""The scripts that stage the course on the GPU machine (scripts/gpu/): the packs by purpose, their unpacking
by gpu_env.sh, and the lesson record that sets a GPU run beside the committed CPU run. The GPU machine itself is
not here: these run what can run on any machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "scripts" / "gpu"


def fake_distribution(site: Path, name: str, requires=(), files=()) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    records = [f"{info.name}/METADATA,,"]
    for path in files:
        target = site / path.lstrip("./")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(name)
        records.append(f"{path},,")
    (info / "RECORD").write_text("\n".join(records) + "\n")


def test_packs_split_by_purpose_follow_requirements_markers_and_extras(tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "nvidia-pytriton", ["numpy", "typing-extensions; python_version < '3.8'"],
                      ["pytriton/__init__.py"])
    fake_distribution(site, "tritonclient", ["numpy", 'grpcio; extra == "grpc"', 'gevent; extra == "http"'],
                      ["tritonclient/__init__.py", "../../bin/perf_client"])
    for name in ("numpy", "grpcio", "gevent", "typing-extensions", "jinja2"):
        fake_distribution(site, name, files=[f"{name}/__init__.py"])
    fake_distribution(site, "nbconvert", ["jinja2", "numpy"], ["nbconvert/__init__.py", "../../share/jupyter/x.json"])
    fake_distribution(site, "model-analyzer", ["numba"], ["model_analyzer/__init__.py"])
    done = subprocess.run([sys.executable, str(GPU / "pack_purposes.py"), str(site), str(tmp_path / "lists")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lists = {p: set((tmp_path / "lists" / f"{p}.files").read_text().split()) for p in ("serve", "notebooks", "tools")}
    assert {"pytriton/__init__.py", "tritonclient/__init__.py", "numpy/__init__.py", "grpcio/__init__.py",
            "gevent/__init__.py", "bin/perf_client"} <= lists["serve"]
    assert "typing-extensions/__init__.py" in lists["tools"]  # its marker is false on Python 3.12
    assert {"nbconvert/__init__.py", "jinja2/__init__.py", "share/jupyter/x.json"} <= lists["notebooks"]
    assert "numpy/__init__.py" not in lists["notebooks"]  # already in serve: each file in one pack only
    assert "model_analyzer/__init__.py" in lists["tools"]
    every = [f for files in lists.values() for f in files]
    assert len(every) == len(set(every))
    assert "pack_purposes: serve: 5 distributions" in done.stdout


@pytest.mark.skipif(not shutil.which("xz"), reason="xz is not installed")
def test_gpu_env_unpacks_the_packs_it_finds_once_and_makes_the_venv(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(GPU, checkout / "scripts" / "gpu")
    packed = tmp_path / "packed"
    for purpose, files in {"serve": ["site/numpy_stub/__init__.py", "site/perf_analyzer/bin/perf_analyzer"],
                           "tools": ["site/bin/model-analyzer", "prometheus/prometheus"]}.items():
        for path in files:
            (packed / purpose / path).parent.mkdir(parents=True, exist_ok=True)
            (packed / purpose / path).write_text("#!/usr/bin/env python3\nprint('model analyzer')\n"
                                                 if path.endswith("model-analyzer") else "x = 1\n")
            (packed / purpose / path).chmod(0o755)
        with tarfile.open(tmp_path / f"{purpose}.tar", "w") as tar:
            for top in {p.split("/")[0] for p in files}:
                tar.add(packed / purpose / top, arcname=top)
    (tmp_path / "gpu_pack").mkdir()
    for purpose in ("serve", "tools"):
        subprocess.run(f"xz -c {tmp_path}/{purpose}.tar | split -b 100 -d -a 2 - {tmp_path}/gpu_pack/{purpose}.",
                       shell=True, check=True)
    script = ("source scripts/gpu/gpu_env.sh && source scripts/gpu/gpu_env.sh && echo PY=$PY && "
              "model-analyzer && echo PROMETHEUS=$PROMETHEUS")
    done = subprocess.run(["bash", "-c", script], cwd=checkout, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GPU_PACK": str(tmp_path / "gpu_pack"),
                               "MACHINE_PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("gpu_env: unpacked serve") == 1 and done.stdout.count("gpu_env: unpacked tools") == 1
    assert "gpu_env: numpy" in done.stdout  # the machine's packages are reached through the venv
    assert "model analyzer" in done.stdout  # a packed command, run by the venv's python
    assert f"PROMETHEUS={checkout}/.carry/prometheus/prometheus" in done.stdout
    assert (checkout / ".carry" / "site" / "numpy_stub" / "__init__.py").exists()


def test_gpu_env_says_when_the_pack_folder_has_no_serve_parts(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run(["bash", "-c", f"source {GPU}/gpu_env.sh"], cwd=tmp_path, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "GPU_PACK": str(tmp_path / "empty")})
    assert done.returncode != 0
    assert f"gpu_env: no serve parts in GPU_PACK={tmp_path / 'empty'}" in done.stderr


def _notebook(path: Path, printed: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Lesson\n## 2. Measure"),
        nbformat.v4.new_code_cell("# a comment\nprint(figure)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text=printed)]),
        nbformat.v4.new_code_cell("print('same')", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="same\n")]),
    ])
    nbformat.write(nb, path)
    return path


def test_lesson_record_sets_the_cells_that_differ_side_by_side(tmp_path):
    cpu = _notebook(tmp_path / "cpu.ipynb", "12.3 infer/s\n")
    gpu = _notebook(tmp_path / "gpu.ipynb", "1234.5 infer/s\n")
    done = subprocess.run([sys.executable, str(GPU / "lesson_record.py"), str(cpu), str(gpu)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "**Cell 1** (2. Measure): `print(figure)`" in done.stdout
    assert "CPU (committed):\n```\n12.3 infer/s\n```" in done.stdout and "GPU:\n```\n1234.5 infer/s\n```" in done.stdout
    assert "same" not in done.stdout
    other = json.loads(cpu.read_text())
    other["cells"].pop()
    (tmp_path / "other.ipynb").write_text(json.dumps(other))
    done = subprocess.run([sys.executable, str(GPU / "lesson_record.py"), str(cpu), str(tmp_path / "other.ipynb")],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "are not the same notebook" in done.stderr


def test_the_gpu_scripts_pass_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = sorted(str(p.relative_to(ROOT)) for p in GPU.glob("*.sh"))
    done = subprocess.run(["shellcheck", "-x", *scripts], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
