"""The labs' student copies, generated from the complete labs (never edit a student copy by hand).

Every labs/solutions/NN_topic.ipynb (or NNx_topic.ipynb, e.g. 07b) becomes labs/NN_topic.ipynb:

- in each code cell, every block between the two whole lines `# BEGIN SOLUTION` and
  `# END SOLUTION` (markers included) becomes `# YOUR ANSWER HERE` and
  `raise NotImplementedError("Exercise N: ...")`, indented like the BEGIN line; N counts the
  answer cells of the notebook from 1 (an answer cell under a heading that says "Stretch" is
  the "Stretch exercise" instead);
- every output and execution count is cleared, cell metadata is dropped (tags excepted) and the
  notebook's metadata is kept to the kernel and language;
- the first markdown cell gets a line saying the copy is generated.

Course tooling, not a lesson helper: `triton-course student-copies` runs it (`--check` writes nothing
and exits 1 listing stale, missing or orphaned copies; `python -m triton_course student-copies` in a
checkout where the course is not installed), and `triton-course doctor` asks it whether the copies
are up to date.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat

from ..paths import course_root

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
PLACEHOLDER = "# YOUR ANSWER HERE"
REGENERATE = "triton-course student-copies"
GENERATED_NOTE = ("> *Generated from `labs/solutions/{name}` by `" + REGENERATE + "`: "
                  "to change this lab, edit that notebook and run that command.*")
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
KEPT_CELL_METADATA = ("tags",)


class MarkerError(ValueError):
    """A solution notebook whose answer markers the generator cannot turn into an exercise."""


def _cell_name(notebook_name: str, index: int, cell) -> str:
    return f"{notebook_name}, cell {index} (id {cell.get('id', '?')})"


def replace_solutions(source: str, exercise: int | str, where: str) -> tuple[str, int]:
    """`source` with each BEGIN/END block replaced by the placeholder; and how many blocks there were."""
    lines = source.split("\n")
    result: list[str] = []
    inside = False
    blocks = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        is_begin, is_end = stripped == BEGIN, stripped == END
        if not (is_begin or is_end) and ("BEGIN SOLUTION" in line or "END SOLUTION" in line):
            raise MarkerError(f"{where}, line {number}: a solution marker must be a whole line ({line.strip()!r}).")
        if is_begin:
            if inside:
                raise MarkerError(f"{where}, line {number}: '{BEGIN}' again before '{END}'.")
            inside = True
            blocks += 1
            indent = line[: len(line) - len(line.lstrip())]
            result.append(indent + PLACEHOLDER)
            label = f"Exercise {exercise}" if isinstance(exercise, int) else exercise
            result.append(f'{indent}raise NotImplementedError("{label}: write your answer above this line")')
        elif is_end:
            if not inside:
                raise MarkerError(f"{where}, line {number}: '{END}' without a '{BEGIN}' before it.")
            inside = False
        elif not inside:
            result.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' without an '{END}' after it.")
    return "\n".join(result), blocks


def student_notebook(solution, name: str):
    """The student copy of a solution notebook (a NotebookNode); `name` is the solution's file name."""
    notebook = copy.deepcopy(solution)
    notebook.metadata = nbformat.NotebookNode(
        {key: notebook.metadata[key] for key in KEPT_NOTEBOOK_METADATA if key in notebook.metadata})
    if "language_info" in notebook.metadata:  # the version numbers of the last run change with the machine
        notebook.metadata.language_info = nbformat.NotebookNode({"name": notebook.metadata.language_info.get(
            "name", "python")})
    exercise = 0
    noted = False
    stretch = False  # whether the nearest heading above says "Stretch"
    for index, cell in enumerate(notebook.cells):
        headings = [line for line in cell.source.splitlines() if line.startswith("#")]
        if cell.cell_type == "markdown" and headings:
            stretch = "stretch" in headings[-1].lower()
        cell.metadata = nbformat.NotebookNode(
            {key: cell.metadata[key] for key in KEPT_CELL_METADATA if key in cell.metadata})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if BEGIN in cell.source or END in cell.source or "SOLUTION" in cell.source:
                label = "Stretch exercise" if stretch else exercise + 1
                cell.source, blocks = replace_solutions(cell.source, label, _cell_name(name, index, cell))
                exercise += 1 if blocks and not stretch else 0
        elif cell.cell_type == "markdown" and not noted:
            cell.source = _with_note(cell.source, name)
            noted = True
    if exercise == 0 and not any(PLACEHOLDER in c.source for c in notebook.cells if c.cell_type == "code"):
        raise MarkerError(f"{name}: no code cell has a '{BEGIN}' ... '{END}' block, so the student copy would "
                          "have no exercise.")
    return notebook


def _with_note(source: str, name: str) -> str:
    """The generated-copy note, right under the title when the cell starts with one."""
    note = GENERATED_NOTE.format(name=name)
    title, newline, rest = source.partition("\n")
    if title.startswith("#"):
        return f"{title}\n\n{note}\n\n{rest.lstrip(chr(10))}".rstrip("\n")
    return f"{note}\n\n{source}"


def student_text(solution_path: Path) -> str:
    """The student copy's file content for one solution notebook."""
    solution = nbformat.read(solution_path, as_version=4)
    text = nbformat.writes(student_notebook(solution, solution_path.name))
    return text if text.endswith("\n") else text + "\n"


def solution_paths(root: Path | None = None) -> list[Path]:
    return sorted(((root or course_root()) / "labs" / "solutions").glob("*.ipynb"))


def student_path(solution_path: Path) -> Path:
    return solution_path.parent.parent / solution_path.name  # labs/solutions/X.ipynb -> labs/X.ipynb


def copy_problems(root: Path | None = None) -> list[tuple[str, Path]]:
    """(missing | stale | orphan, the student copy's path) for each copy that is out of date; nothing is
    written. A solution whose markers cannot make an exercise raises MarkerError."""
    root = root or course_root()
    found = []
    for solution in solution_paths(root):
        target = student_path(solution)
        if not target.exists():
            found.append(("missing", target))
        elif target.read_text() != student_text(solution):
            found.append(("stale", target))
    expected = {student_path(s).name for s in solution_paths(root)}
    found += [("orphan", p) for p in sorted((root / "labs").glob("*.ipynb")) if p.name not in expected]
    return found


def problems(root: Path | None = None) -> list[str]:
    """What is out of date: one line per stale, missing or orphaned student copy (nothing is written)."""
    root = root or course_root()
    said = {"missing": "missing: {copy} (from labs/solutions/{name})",
            "stale": "stale:   {copy} differs from what labs/solutions/{name} gives",
            "orphan": "orphan:  {copy} has no labs/solutions/{name}"}
    return [said[kind].format(copy=path.relative_to(root), name=path.name) for kind, path in copy_problems(root)]


def generate(root: Path | None = None) -> list[Path]:
    """Write every student copy whose content changed; return the paths written."""
    written = []
    # all checked before any is written
    texts = {student_path(s): student_text(s) for s in solution_paths(root)}
    for target, text in texts.items():
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            written.append(target)
    return written


def run(check: bool = False) -> int:
    """`triton-course student-copies [--check]`: write the copies, or only say which are out of date."""
    try:
        if check:
            found = problems()
            for line in found:
                print(line)
            if found:
                print(f"Run `{REGENERATE}` (and delete orphans) to bring them up to date.")
                return 1
            print(f"{len(solution_paths())} student copies are up to date.")
            return 0
        written = generate()
    except MarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print("wrote", path.relative_to(course_root()))
    print(f"{len(solution_paths())} student copies, {len(written)} written.")
    return 0
