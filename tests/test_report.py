"""`triton-course report`: notebooks run headless under strict nbval, an HTML report, no server left behind."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from triton_course.tools import machine, notebook_run
from triton_course.tools.cli import main

CLI = [sys.executable, "-m", "triton_course"]


def notebook(path, cells):
    """A notebook whose code cells (source, stored stdout) look as if they had been run."""
    nb = new_notebook(cells=[new_markdown_cell(f"# {path.stem}")])
    for count, (source, stdout) in enumerate(cells, start=1):
        outputs = [new_output("stream", name="stdout", text=stdout)] if stdout else []
        nb.cells.append(new_code_cell(source, execution_count=count, outputs=outputs))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_passing_and_a_failing_notebook(tmp_path):
    # the timing differs from the stored one: the course's sanitize file makes that pass, as in CI
    passing = notebook(tmp_path / "passing.ipynb", [("print('hello')", "hello\n"),
                                                     ("import time\nprint(f'took {time.time() % 1:.3f} s')",
                                                      "took 9.999 s\n")])
    failing = notebook(tmp_path / "failing.ipynb", [("print('hello')", "hello\n"),
                                                     ("print(1 + 1)", "3\n"),
                                                     ("print('after')", "after\n")])
    committed = failing.read_bytes(), failing.stat().st_mtime_ns
    output = tmp_path / "out" / "report.html"
    output.parent.mkdir()
    result = subprocess.run(CLI + ["report", "--output", str(output), "--timeout", "300", str(passing), str(failing)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"^PASSED\s+\d+\.\d s  \S*passing\.ipynb$", lines[1]), lines
    assert re.match(r"^FAILED\s+\d+\.\d s  \S*failing\.ipynb  Cell 1: Cell outputs differ$", lines[2]), lines
    assert re.match(r"^1/2 passed in \d+ s; report: ", lines[3])
    assert (failing.read_bytes(), failing.stat().st_mtime_ns) == committed  # ran from a copy

    page = output.read_text()
    assert "<strong>1 of 2 failed</strong>: 1 passed, 1 failed" in page
    assert re.search(r"passing\.ipynb</td><td class='passed'>passed</td><td class='num'>\d+\.\d</td>", page)
    assert re.search(r"failing\.ipynb</td><td class='failed'>failed</td>", page)
    assert "Cell 1: Cell outputs differ" in page
    assert html.escape("'3\\n' == '2\\n'") in page  # what nbval said: stored 3, got 2
    assert "\x1b[" not in page and "#x1B" not in page  # colour codes removed
    assert f"<th>cpu cores</th><td>{len(os.sched_getaffinity(0))} usable" in page
    assert "<link" not in page and "<script" not in page  # self-contained


def test_all_passing_exits_zero(tmp_path, capsys):
    passing = notebook(tmp_path / "ok.ipynb", [("print(2 * 21)", "42\n")])
    assert main(["report", "--output", str(tmp_path / "r.html"), str(passing)]) == 0
    assert "1/1 passed" in capsys.readouterr().out
    assert "<strong>all passed</strong>" in (tmp_path / "r.html").read_text()


def test_a_missing_notebook_is_named(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere.ipynb")]) == 2
    assert f"No notebook at: {tmp_path / 'nowhere.ipynb'}" in capsys.readouterr().err


@pytest.mark.server
def test_a_notebook_that_times_out_leaves_no_server_behind(tmp_path):
    repo = tmp_path / "empty_repo"
    repo.mkdir()
    pids = tmp_path / "pids.txt"
    start = (f"import os\nfrom triton_course import start_server\n"
             f"server = start_server({str(repo)!r}, model_control_mode='explicit')\n"
             f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{server.process.pid}}')\n"
             "print('ready')")
    hanging = notebook(tmp_path / "hangs.ipynb", [(start, "ready\n"),
                                                  ("import threading\nthreading.Event().wait()", "")])
    result = notebook_run.run_notebook(hanging, timeout=30)
    assert result.status == "timed out"
    assert result.failing_cell == "Cell 1: still running after 30 s"
    kernel, server = map(int, pids.read_text().split())
    running = subprocess.run(["pgrep", "-f", "tritonserver"], capture_output=True, text=True).stdout.split()
    assert str(server) not in running
    for pid in (kernel, server):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_process_left_running_fails_the_notebook_and_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(notebook_run, "LEFTOVER_GRACE", 2.0)
    pid_file = tmp_path / "pid.txt"
    source = ("import subprocess, sys\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
              f"with open({str(pid_file)!r}, 'w') as f:\n    f.write(str(p.pid))")
    leaky = notebook(tmp_path / "leaky.ipynb", [(source, "")])
    result = notebook_run.run_notebook(leaky, timeout=120)
    assert result.status == "failed" and result.failing_cell == "processes left running"
    pid = int(pid_file.read_text())
    assert result.leftovers and result.leftovers[0].startswith(f"pid {pid}: ")
    assert "time.sleep(600)" in result.error
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_machine_info_describes_this_machine():
    info = machine.machine_info()
    assert set(info) >= {"date", "cpu", "cpu cores", "memory", "gpu", "python", "triton", "os"}
    assert info["cpu cores"].startswith(f"{len(os.sched_getaffinity(0))} usable ({psutil.cpu_count()} logical")
    assert info["memory"] == f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    assert info["python"].startswith(sys.version.split()[0])
    assert re.match(r"^(embedded 2\.51\.0 from nvidia-pytriton|local /\S+ \(the lessons use it\))$", info["triton"])
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$", info["date"])


def test_gpu_from_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=index,name,driver_version,memory.total" ] || exit 9\n'
                    'echo "0, NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert machine._gpus() == "NVIDIA H100 80GB HBM3 (driver 550.54.15, 81559 MiB)"
    fake.unlink()
    assert machine._gpus() == "none (no nvidia-smi)"
