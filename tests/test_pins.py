"""environment.yml (conda users) must pin exactly what pyproject.toml pins."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pyproject_pins() -> dict[str, str]:
    # The dependencies array, one quoted requirement a line (tomllib is not in Python 3.10).
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    return dict(_split(d) for d in re.findall(r'^\s*"([^"]+)",', block, re.M))


def environment_pins() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    return dict(_split(line.strip()[2:]) for line in lines[start + 1:] if line.strip().startswith("- "))


def _split(spec: str) -> tuple[str, str]:
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]+\])?==([^;\s]+)", spec.strip())
    assert match, f"not an exact pin: {spec}"
    return match.group(1).lower() + (match.group(2) or ""), match.group(3)


def test_every_dependency_is_pinned_exactly():
    assert pyproject_pins()  # _split asserts each is name==version


def test_environment_yml_matches_pyproject():
    assert environment_pins() == pyproject_pins()


def test_environment_yml_python_matches_requires_python():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s+- python=3\.(10|11|12)$", text, re.M)
