"""How `make test` runs the suite on few cores: most of it on two workers at once (pytest-xdist), then the
files that race a clock on their own.

Each file is one unit that a single worker runs in order: a notebook's cells share one kernel, and a test
module's fixtures are built once. A lab's solution and its student copy (tests/test_labs.py runs the copy up
to its first exercise) share a unit: both write workspace/labs/NN.

The files in ALONE are marked `alone` and run after the parallel part, one at a time, with the machine to
themselves: they measure speed (perf_analyzer, Model Analyzer, the lessons' load tests) or judge what
happened within a time window (a stream cancelled mid-way, a queue-time reading, a failover). Run beside a
second worker they failed: perf_analyzer found no three stable windows (lesson and lab 07), lesson 15's
stream ended before its cancel, lab 11's check saw another mistake first. Lab 14's check kills a server under
load and times HAProxy's reaction, so it runs alone too; lab 10's rollback under traffic once lost a request
("Stub process ... is not healthy") beside a second worker.

(xdist's own `--dist loadgroup` would read xdist_group marks, but it renames test ids in a way pytest 9
no longer sees: the unit is chosen here from the test id instead.)
"""

import re

import pytest

ALONE = {
    "notebooks/05_dynamic_batching.ipynb", "notebooks/06_instance_groups.ipynb",
    "notebooks/07_benchmarking.ipynb", "notebooks/07b_model_analyzer.ipynb", "notebooks/08_tensorrt.ipynb",
    "notebooks/11_monitoring.ipynb", "notebooks/14_scaling.ipynb", "notebooks/15_streaming.ipynb",
    "notebooks/16_language_model.ipynb",
    "labs/solutions/05_dynamic_batching.ipynb", "labs/solutions/06_instance_groups.ipynb",
    "labs/solutions/07_benchmarking.ipynb", "labs/solutions/07b_model_analyzer.ipynb",
    "labs/solutions/10_model_management.ipynb", "labs/solutions/11_monitoring.ipynb", "labs/solutions/14_scaling.ipynb",
    "labs/solutions/15_streaming.ipynb",
    "tests/test_scaling.py", "tests/test_model_analyzer.py", "tests/test_loadgen.py", "tests/test_perf_analyzer.py",
    "tests/test_tuning_and_explorers.py", "tests/test_monitoring.py", "tests/test_streaming.py",
    "tests/test_lab05.py", "tests/test_lab06.py", "tests/test_lab07.py", "tests/test_lab10.py", "tests/test_lab11.py",
    "tests/test_lab14.py",
    "tests/test_lab15.py",
}
STUDENT_COPY_RUN = re.compile(r"test_student_copy_runs_up_to_its_first_exercise\[(.+)\]")


def work_unit(nodeid: str) -> str:
    """The file a test runs with, from its id: its own, or for a lab's student copy its solution."""
    path, _, name = nodeid.partition("::")
    copy = STUDENT_COPY_RUN.fullmatch(name)
    if path == "tests/test_labs.py" and copy:
        path = f"labs/solutions/{copy[1]}"
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # before -m reads the marks
        if work_unit(item.nodeid) in ALONE:
            item.add_marker(pytest.mark.alone)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)
