"""The labs: student copies generated from labs/solutions/, the generator itself, and what every lab must have."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from triton_course.tools import student_copies as generator

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "labs" / "solutions").glob("*.ipynb"))
STUDENT_COPIES = sorted((ROOT / "labs").glob("*.ipynb"))
LAB_NAME = re.compile(r"(\d\d[a-z]?)_[a-z0-9_]+\.ipynb$")  # NN_topic, or NNx_topic for a lesson added after NN
LESSON_PREFIXES = {m[1] for p in (ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb") if (m := LAB_NAME.match(p.name))}
NBVAL_MARKERS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP", "# NBVAL_CHECK_OUTPUT", "# NBVAL_RAISES_EXCEPTION")
UNNUMBERED_LABS = {"debugging.ipynb"}  # a lab that goes with no single lesson
DIFFICULTY = re.compile(r"\*\*Difficulty:\*\* (★☆☆|★★☆|★★★)")




def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def cells(path: Path, kind: str | None = None) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if kind is None or c["cell_type"] == kind]


def text_outputs(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        text = output.get("text") or output.get("data", {}).get("text/plain", "")
        parts.append("".join(text) if isinstance(text, list) else text)
    return "".join(parts)


# --- (a) the committed student copies are what the generator makes -----------------------------

def test_student_copies_are_up_to_date():
    problems = generator.problems()
    assert not problems, "\n".join(problems) + "\nRun: triton-course student-copies"


# --- (b) the generator --------------------------------------------------------------------------

def _solution(*code_sources: str, title: str = "# Lab 99 — a test lab\n\nSome words."):
    notebook = new_notebook()
    notebook.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python", "version": "3.11.7"}, "widgets": {"state": {}}}
    notebook.cells.append(new_markdown_cell(title))
    for code in code_sources:
        cell = new_code_cell(code, execution_count=len(notebook.cells))
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="something\n")]
        cell.metadata = {"execution": {"iopub.status.busy": "2026-11-24T03:00:00"}, "tags": ["keep"]}
        notebook.cells.append(cell)
    return notebook


def test_generator_replaces_markers_keeping_the_indentation():
    solution = _solution("import os\n\n\ndef answer(x):\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n"
                         "    # END SOLUTION\n\n\nprint('after')",
                         "# BEGIN SOLUTION\nz = 2\n# END SOLUTION")
    student = generator.student_notebook(solution, "99_test.ipynb")
    raised = '    raise NotImplementedError("Exercise 1: write your answer above this line")\n'
    assert student.cells[1].source == ("import os\n\n\ndef answer(x):\n    # YOUR ANSWER HERE\n" + raised
                                       + "\n\nprint('after')")
    assert student.cells[2].source == ('# YOUR ANSWER HERE\n'
                                       'raise NotImplementedError("Exercise 2: write your answer above this line")')
    assert "y = x + 1" not in json.dumps(student)


def test_generator_clears_outputs_and_keeps_ids_and_minimal_metadata():
    solution = _solution("# BEGIN SOLUTION\nz = 2\n# END SOLUTION", "print(1)")
    student = generator.student_notebook(solution, "99_test.ipynb")
    for before, after in zip(solution.cells, student.cells):
        assert before.id == after.id
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert all(dict(c.metadata) == {"tags": ["keep"]} for c in code)
    assert dict(student.metadata) == {"kernelspec": solution.metadata.kernelspec,
                                      "language_info": {"name": "python"}}
    assert solution.cells[1].outputs, "the solution itself must not be changed"


def test_generator_notes_that_the_copy_is_generated_under_the_title():
    student = generator.student_notebook(_solution("# BEGIN SOLUTION\nz = 2\n# END SOLUTION"), "99_test.ipynb")
    title, blank, note = student.cells[0].source.splitlines()[:3]
    assert title == "# Lab 99 — a test lab" and blank == ""
    assert "labs/solutions/99_test.ipynb" in note and "`triton-course student-copies`" in note


def test_generator_names_a_stretch_exercise():
    solution = _solution("# BEGIN SOLUTION\nz = 2\n# END SOLUTION", "# BEGIN SOLUTION\nw = 3\n# END SOLUTION")
    solution.cells.insert(2, new_markdown_cell("## Stretch exercise: more"))
    student = generator.student_notebook(solution, "99_test.ipynb")
    assert "Exercise 1:" in student.cells[1].source
    assert "Stretch exercise:" in student.cells[3].source


@pytest.mark.parametrize("code, expected", [
    ("x = 1\n# BEGIN SOLUTION\ny = 2", "'# BEGIN SOLUTION' without an '# END SOLUTION' after it"),
    ("y = 2\n# END SOLUTION", "line 2: '# END SOLUTION' without a '# BEGIN SOLUTION' before it"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION", "line 2: '# BEGIN SOLUTION' again before"),
    ("# BEGIN SOLUTION: the answer\ny = 2\n# END SOLUTION", "line 1: a solution marker must be a whole line"),
], ids=["no_end", "no_begin", "nested", "not_whole_line"])
def test_generator_refuses_unbalanced_markers_naming_notebook_and_cell(code, expected):
    solution = _solution("print('setup')", code)
    with pytest.raises(generator.MarkerError) as error:
        generator.student_notebook(solution, "99_test.ipynb")
    message = str(error.value)
    assert f"99_test.ipynb, cell 2 (id {solution.cells[2].id})" in message
    assert expected in message


def test_generator_refuses_a_lab_without_an_exercise():
    with pytest.raises(generator.MarkerError, match="99_test.ipynb: no code cell has a"):
        generator.student_notebook(_solution("print('no exercise')"), "99_test.ipynb")


def test_check_mode_lists_stale_missing_and_orphaned_copies(tmp_path, monkeypatch, capsys):
    from triton_course.tools.cli import main as cli

    labs, solutions = tmp_path / "labs", tmp_path / "labs" / "solutions"
    solutions.mkdir(parents=True)
    monkeypatch.setenv("TRITON_COURSE_ROOT", str(tmp_path))  # the generator works on the course root
    for name in ("01_a.ipynb", "02_b.ipynb"):
        nbformat.write(_solution("# BEGIN SOLUTION\nz = 2\n# END SOLUTION"), solutions / name)
    assert cli(["student-copies"]) == 0
    assert (labs / "01_a.ipynb").read_text().endswith("}\n")
    assert cli(["student-copies", "--check"]) == 0
    (labs / "01_a.ipynb").write_text((labs / "01_a.ipynb").read_text().replace("YOUR ANSWER", "MY ANSWER"))
    (labs / "02_b.ipynb").unlink()
    (labs / "03_c.ipynb").write_text("{}")
    capsys.readouterr()
    assert cli(["student-copies", "--check"]) == 1
    out = capsys.readouterr().out
    assert "stale:   labs/01_a.ipynb" in out
    assert "missing: labs/02_b.ipynb" in out
    assert "orphan:  labs/03_c.ipynb" in out
    assert not (labs / "02_b.ipynb").exists(), "--check must not write"


# --- (c) each student copy runs up to its first exercise ----------------------------------------

def _server_pids(kernel_pid: int) -> set[int]:
    try:
        children = psutil.Process(kernel_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    return {p.pid for p in children if "tritonserver" in p.name()}


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.server
@pytest.mark.parametrize("path", STUDENT_COPIES, ids=lambda p: p.name)
def test_student_copy_runs_up_to_its_first_exercise(path):
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    code = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    first_exercise = next(i for i, c in code if generator.PLACEHOLDER in c.source)
    last = code[-1]
    assert generator.PLACEHOLDER not in last[1].source, "the last cell (stop the server) is no exercise"
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        kernel_pid = client.km.provisioner.process.pid
        for index, cell in code:
            if index >= first_exercise:
                break
            client.execute_cell(cell, index)  # raises CellExecutionError, with the traceback, on an error
        servers = _server_pids(kernel_pid)
        client.execute_cell(last[1], last[0])  # the lab's own "stop the server" cell
        assert not _alive(servers), f"{path.name}: the last cell left Triton running (pids {_alive(servers)})"
    assert not _alive(servers)


# --- (d) what every lab must have --------------------------------------------------------------

@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_lab_goes_with_a_lesson(path):
    if path.name in UNNUMBERED_LABS:
        return
    match = LAB_NAME.match(path.name)
    assert match, f"{path.name}: name it NN_topic.ipynb (or NNx_topic.ipynb, like its lesson)"
    assert match[1] in LESSON_PREFIXES, f"{path.name}: no notebooks/{match[1]}_*.ipynb lesson"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_lab_has_difficulty_checks_and_stretch(path):
    markdown = "\n".join(source(c) for c in cells(path, "markdown"))
    assert DIFFICULTY.search(markdown), f"{path.name}: add a line **Difficulty:** ★☆☆ (or ★★☆, ★★★)"
    assert re.search(r"stretch exercise", markdown, re.I), f"{path.name}: add a Stretch exercise"
    verdicts = [c for c in cells(path, "code") if text_outputs(c).startswith("PASSED")]
    assert verdicts, f"{path.name}: no check cell printed a PASSED verdict"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_lab_ends_by_stopping_its_server(path):
    code = [c for c in cells(path, "code") if source(c).strip()]
    assert ".stop()" in source(code[-1]), f"{path.name}: the last code cell must stop the server"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_lab_nbval_markers_stand_alone_on_their_line(path):
    for cell in cells(path, "code"):
        for line in source(cell).splitlines():
            if "NBVAL_" in line:
                assert line.strip() in NBVAL_MARKERS, f"{path.name}: put the reason on the next line: {line!r}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_lab_committed_with_outputs_run_in_order_without_errors(path):
    code = [c for c in cells(path, "code") if source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, f"{path.name}: some cells were never run"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-run it top to bottom"
    errors = [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: stored error output"


@pytest.mark.parametrize("path", STUDENT_COPIES, ids=lambda p: p.name)
def test_student_copy_has_no_outputs(path):
    for cell in cells(path, "code"):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: regenerate it"


@pytest.mark.server
def test_shutting_the_kernel_down_stops_its_servers(tmp_path):
    # What happens when a learner closes a lab without running its last cell.
    from nbclient import NotebookClient

    start = f"import triton_course\nserver = triton_course.start_server({str(tmp_path)!r})"
    notebook = new_notebook(cells=[new_code_cell(start)])
    client = NotebookClient(notebook, timeout=120, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(notebook.cells[0], 0)
        servers = _server_pids(client.km.provisioner.process.pid)
        assert servers, "the kernel started no tritonserver"
    assert not _alive(servers), f"tritonserver outlived its kernel (pids {_alive(servers)})"
