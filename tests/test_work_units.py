"""How `make test` shares the suite between its two workers (the root conftest.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# loaded by its path: pytest keeps only one module named "conftest" (tests/ has its own)
_spec = importlib.util.spec_from_file_location("suite_conftest", ROOT / "conftest.py")
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)


def test_a_lab_solution_and_its_student_copy_run_in_one_unit():
    copy = "tests/test_labs.py::test_student_copy_runs_up_to_its_first_exercise[09_ensembles.ipynb]"
    assert suite.work_unit(copy) == suite.work_unit("labs/solutions/09_ensembles.ipynb::Cell 4") \
        == "labs/solutions/09_ensembles.ipynb"
    # the other tests of test_labs.py are one unit of their own
    other = "tests/test_labs.py::test_lab_goes_with_a_lesson[09_ensembles.ipynb]"
    assert suite.work_unit(other) == "tests/test_labs.py"


def test_every_cell_of_a_notebook_and_every_test_of_a_module_share_a_unit():
    assert {suite.work_unit(f"notebooks/02_repository_and_server.ipynb::Cell {i}") for i in range(30)} \
        == {"notebooks/02_repository_and_server.ipynb"}
    assert suite.work_unit("tests/test_server.py::test_a[x-y]") == suite.work_unit("tests/test_server.py::test_b")


def test_what_runs_alone_names_files_that_exist():
    missing = [path for path in suite.ALONE if not (ROOT / path).is_file()]
    assert not missing, f"renamed or removed: update ALONE in conftest.py: {missing}"
    # a lab that runs alone takes its student copy's run with it
    copy = "tests/test_labs.py::test_student_copy_runs_up_to_its_first_exercise[07b_model_analyzer.ipynb]"
    assert suite.work_unit(copy) in suite.ALONE
