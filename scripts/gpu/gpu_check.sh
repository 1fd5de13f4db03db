#!/usr/bin/env bash
# The course's test suite on a GPU machine with no internet (the project's H100 box), with evidence that
# the GPU was used: bash scripts/gpu/gpu_check.sh OUTDIR [PYTEST PATHS...]   (default: tests notebooks labs/solutions)
# Needs the wheels of scripts/gpu/gpu_wheels.sh in .carry/ (see scripts/gpu/gpu_env.sh). Writes to OUTDIR:
# gpu.txt (the GPU), nvidia-smi.csv (utilisation and memory every 0.5 s), gpu-processes.csv (which processes
# held GPU memory, every 2 s), junit.xml and pytest.txt; scripts/gpu/gpu_summary.py turns them into a report.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:?usage: bash scripts/gpu/gpu_check.sh OUTDIR [PYTEST PATHS...]}")
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tests notebooks labs/solutions)
# shellcheck source=scripts/gpu/gpu_env.sh
source scripts/gpu/gpu_env.sh
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpu.txt"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    > "$out/nvidia-smi.csv" &
samplers=($!)
while sleep 2; do
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits \
        | sed "s/^/$(date +%s),/"
done > "$out/gpu-processes.csv" &
samplers+=($!)
trap 'kill "${samplers[@]}" 2>/dev/null || true' EXIT
"$PY" -m triton_course prepare
start=$(date +%s)
set +e
# GPU_CHECK_TIMEOUT (seconds): interrupt pytest in time to write its report where a command's time is capped
timeout -s INT -k 30 "${GPU_CHECK_TIMEOUT:-0}" "$PY" -m pytest -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
    --junitxml="$out/junit.xml" -q -rs "${targets[@]}" 2>&1 | tee "$out/pytest.txt"
code=${PIPESTATUS[0]}
set -e
echo "gpu_check: ${targets[*]}: exit $code after $(( $(date +%s) - start )) s" | tee -a "$out/pytest.txt"
exit "$code"
