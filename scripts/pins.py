"""Print the course's pinned dependencies from pyproject.toml, one line, leaving out the names given.

    python scripts/pins.py torch          # every pin but PyTorch's

Used by scripts/setup.sh (a pod's own CUDA PyTorch stands in for the pinned one) and
scripts/gpu/gpu_wheels.sh (wheels for the GPU machine). Runs on Python 3.10 too (pip's own TOML reader).
"""

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib


def pins(skip: set[str]) -> list[str]:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if re.split(r"[\[=<>~! ]", d)[0].lower() not in skip]


if __name__ == "__main__":
    print(" ".join(pins({name.lower() for name in sys.argv[1:]})))
