#!/usr/bin/env bash
# Sourced by gpu_env.sh and gpu_wheels.sh: the carried wheels that make the course's site on the GPU machine,
# one per line. Not numpy 2 (tritonclient's pick; Triton's python stub needs numpy 1.26.4) nor ml_dtypes.
course_wheels() {
    local wheel
    for wheel in .carry/pytriton/*.whl .carry/numpy/*.whl .carry/onnx/*.whl .carry/wheels/*.whl .carry/gpu*/*.whl; do
        [ -e "$wheel" ] || continue
        case $(basename "$wheel") in numpy-2*|ml_dtypes-*) ;; *) echo "$wheel" ;; esac
    done
}
