#!/usr/bin/env bash
# Several parts of scripts/gpu/gpu_check.sh at once, for a GPU machine that caps how long one command may run
# (the project's H100 box: 10 minutes):
#   bash scripts/gpu/gpu_check_split.sh OUTDIR "PATHS OF PART 1" "PATHS OF PART 2" ...
# Each part runs in its own copy of the checkout (TRITON_COURSE_ROOT) with its own cache folder, so that no
# two parts share a workspace or a served repository (a lab and its student copy write the same folder).
# Part N writes OUTDIR/N/ (see gpu_check.sh) and OUTDIR/N.log; the exit status is 1 if any part failed.
# Where no such cap exists, run gpu_check.sh once on everything instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(realpath -m "${1:?usage: bash scripts/gpu/gpu_check_split.sh OUTDIR \"PATHS...\" [\"PATHS...\" ...]}")
shift
[ $# -gt 0 ] || { echo "gpu_check_split: name at least one part" >&2; exit 2; }
# shellcheck source=scripts/gpu/gpu_env.sh
source scripts/gpu/gpu_env.sh  # installs the wheels once, before the parts start
"$PY" -m triton_course prepare  # the weights too: every copy gets them built
mkdir -p "$out"
pids=()
part=0
for paths in "$@"; do
    part=$((part + 1))
    copy=$(mktemp -d "${TMPDIR:-/tmp}/gpu-part-$part-XXXX")
    tar --exclude=./.carry --exclude=./.git --exclude=./.venv --exclude=./workspace -cf - . | tar -xf - -C "$copy"
    ln -s "$PWD/.carry" "$copy/.carry"
    # shellcheck disable=SC2086  # each part's paths are split into words on purpose
    (cd "$copy" && TRITON_COURSE_ROOT=$copy XDG_CACHE_HOME=$copy/.cache \
        bash scripts/gpu/gpu_check.sh "$out/$part" $paths > "$out/$part.log" 2>&1) &
    pids+=($!)
    echo "gpu_check_split: part $part ($paths) in $copy"
done
code=0
part=0
for pid in "${pids[@]}"; do
    part=$((part + 1))
    wait "$pid" || code=1
    tail -n 1 "$out/$part.log"
done
exit "$code"
