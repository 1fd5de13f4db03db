#!/usr/bin/env bash
# Lessons executed top to bottom on a GPU machine, their outputs kept: what each printed there (served vs
# ceiling from its own run, say), for docs/gpu_check.md. Runs in a copy of the checkout, like
# scripts/gpu/gpu_check_split.sh, with the wheels of scripts/gpu/gpu_wheels.sh (see scripts/gpu/gpu_env.sh):
#   bash scripts/gpu/gpu_lessons.sh OUTDIR notebooks/05_dynamic_batching.ipynb [...]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:?usage: bash scripts/gpu/gpu_lessons.sh OUTDIR NOTEBOOK...}")
shift
# shellcheck source=scripts/gpu/gpu_env.sh
source scripts/gpu/gpu_env.sh
"$PY" -c "from triton_course import artifact; artifact.ensure_onnx(); artifact.ensure_torchscript()"
copy=$(mktemp -d "${TMPDIR:-/tmp}/gpu-lessons-XXXX")
tar --exclude=./.carry --exclude=./.git --exclude=./.venv --exclude=./workspace -cf - . | tar -xf - -C "$copy"
ln -s "$PWD/.carry" "$copy/.carry"
mkdir -p "$out"
code=0
for notebook in "$@"; do
    start=$(date +%s)
    if (cd "$copy" && TRITON_COURSE_ROOT=$copy XDG_CACHE_HOME=$copy/.cache "$PY" -m nbconvert --to notebook \
        --execute --ExecutePreprocessor.timeout=1200 --output-dir "$out" "$notebook" > "$out/$(basename "$notebook").log" 2>&1)
    then echo "gpu_lessons: $notebook: executed in $(( $(date +%s) - start )) s"
    else echo "gpu_lessons: $notebook: FAILED after $(( $(date +%s) - start )) s (see its .log)"; code=1
    fi
done
exit "$code"
