"""Static checks of the committed notebooks (nbval re-runs them; these catch what it cannot)."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MARKERS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP", "# NBVAL_CHECK_OUTPUT", "# NBVAL_RAISES_EXCEPTION")


def code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_markers_stand_alone_on_their_line(path):
    # nbval only honours a marker that is the whole line: "# NBVAL_IGNORE_OUTPUT (why)" is ignored.
    for cell in code_cells(path):
        for line in "".join(cell["source"]).splitlines():
            if "NBVAL_" in line:
                assert line.strip() in MARKERS, f"{path.name}: put the reason on the next line: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_run_in_order_without_errors(path):
    cells = [c for c in code_cells(path) if "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in cells]
    assert None not in counts, f"{path.name}: some cells were never run"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-run it top to bottom"
    errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: stored error output"


LESSON_NAME = re.compile(r"(?P<number>\d\d)(?P<letter>[a-z]?)_[a-z0-9_]+\.ipynb$")  # NN_topic or NNx_topic


def test_lessons_are_numbered_in_sequence():
    # A lesson added between two others takes a letter (07b after 07), so the others keep their numbers.
    names = [LESSON_NAME.match(p.name) for p in NOTEBOOKS]
    assert all(names), f"name every lesson NN_topic.ipynb or NNx_topic.ipynb: {[p.name for p in NOTEBOOKS]}"
    prefixes = [m["number"] + m["letter"] for m in names]
    assert len(set(prefixes)) == len(prefixes), f"two lessons share a prefix: {sorted(prefixes)}"
    numbers = sorted({int(m["number"]) for m in names})
    assert numbers == list(range(len(numbers))), f"lesson numbers must run 00, 01, ... without gaps: {numbers}"
    lettered = [m["number"] + m["letter"] for m in names if m["letter"]]
    unnumbered = [p for p in lettered if p[:2] not in {m["number"] for m in names if not m["letter"]}]
    assert not unnumbered, f"a lettered lesson must follow the lesson of its number: {unnumbered}"
