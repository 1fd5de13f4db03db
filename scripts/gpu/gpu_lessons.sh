#!/usr/bin/env bash
# Lessons executed top to bottom on a GPU machine, their outputs kept: what each measured there, for the GPU
# records (docs/benchmarks.md, docs/gpu_check*.md). Each notebook runs in its own copy of the checkout, all of them
# at once (the GPU machine caps one command at 10 minutes), with the wheels of scripts/gpu/gpu_wheels.sh (see
# scripts/gpu/gpu_env.sh). A cell that fails is kept with its error and the run goes on (--allow-errors); the
# notebook counts as failed. LESSON_TIMEOUT (seconds, default 540) stops a notebook that runs too long.
#   bash scripts/gpu/gpu_lessons.sh OUTDIR notebooks/05_dynamic_batching.ipynb [...]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:?usage: bash scripts/gpu/gpu_lessons.sh OUTDIR NOTEBOOK...}")
shift
# shellcheck source=scripts/gpu/gpu_env.sh
source scripts/gpu/gpu_env.sh
"$PY" -m triton_course prepare  # the weights, Perf Analyzer 2.51 and the models, once for every copy
mkdir -p "$out"
pids=()
for notebook in "$@"; do
    copy=$(mktemp -d "${TMPDIR:-/tmp}/gpu-lesson-XXXX")
    tar --exclude=./.carry --exclude=./.git --exclude=./.venv --exclude=./workspace --exclude=./downloads -cf - . \
        | tar -xf - -C "$copy"
    ln -s "$PWD/.carry" "$copy/.carry"
    ln -s "$PWD/downloads" "$copy/downloads"  # the converted language model: 0.5 GB, read only
    name=$(basename "$notebook")
    (
        start=$(date +%s)
        cd "$copy"
        if TRITON_COURSE_ROOT=$copy XDG_CACHE_HOME=$copy/.cache timeout "${LESSON_TIMEOUT:-540}" "$PY" -m nbconvert \
            --to notebook --execute --allow-errors --ExecutePreprocessor.timeout=1200 --output-dir "$out" \
            "$notebook" > "$out/$name.log" 2>&1
        then
            errors=$("$PY" -c 'import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
print(" ".join(str(i) for i, c in enumerate(cells) for o in c.get("outputs", []) if o["output_type"] == "error"))' "$out/$name")
            if [ -z "$errors" ]; then echo "gpu_lessons: $notebook: executed in $(( $(date +%s) - start )) s"
            else echo "gpu_lessons: $notebook: FAILED in cells $errors ($(( $(date +%s) - start )) s)"; exit 1
            fi
        else echo "gpu_lessons: $notebook: FAILED or stopped after $(( $(date +%s) - start )) s (see its .log)"; exit 1
        fi
    ) &
    pids+=($!)
done
code=0
for pid in "${pids[@]}"; do wait "$pid" || code=1; done
exit "$code"
