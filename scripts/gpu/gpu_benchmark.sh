#!/usr/bin/env bash
# The serving benchmark on a GPU machine that has no internet (the project's H100 box: Ubuntu
# 24.04, Python 3.12 with PyTorch + CUDA, no Docker): installs the course's missing packages from
# wheels brought along, runs scripts/benchmark_serving.py on CUDA (perf_analyzer included), and
# samples nvidia-smi meanwhile as evidence that the GPU did the work.
#
#   scripts/gpu/gpu_benchmark.sh [OUT_DIR] [benchmark options]   (wheels in .carry: see scripts/gpu/gpu_env.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
# shellcheck source=scripts/gpu/gpu_env.sh
source scripts/gpu/gpu_env.sh

nvidia-smi --query-gpu=timestamp,name,utilization.gpu,memory.used --format=csv -l 1 > "$out/nvidia-smi.csv" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
PERF_ANALYZER=$PERF_ANALYZER_2_60 "$PY" scripts/benchmark_serving.py --device cuda --json "$out/benchmark.json" "${@:2}" 2>&1 | tee "$out/benchmark.txt"
echo "GPU utilisation while it ran (nvidia-smi, 1 s samples): max $(cut -d, -f3 "$out/nvidia-smi.csv" | grep -o '[0-9]*' | sort -n | tail -1) %"
