"""One notebook under strict nbval, the way CI runs it, with every process it started stopped after it.

The notebook runs from a temporary copy, in its own pytest process with a deadline; whatever that process
started (the kernel, Triton servers, their python-backend stubs) is stopped before the call returns, also when
the notebook timed out. The result says passed or failed, how long it took, and where it failed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..paths import course_root

DEFAULT_TIMEOUT = 900.0  # seconds per notebook; the slowest lesson takes about 2 minutes on 2 CPU cores
LEFTOVER_GRACE = 15.0  # a server's reaper gives Triton 10 s to stop after its kernel is gone
ERROR_TAIL_LINES = 40
RUN_MARKER = "TRITON_COURSE_REPORT_RUN"  # set for each notebook's run; every process it starts inherits it
ANSI = re.compile(r"(\x1b|#x1B)\[[0-9;]*m")


@dataclass
class NotebookResult:
    path: str  # as shown: relative to the course folder when inside it
    status: str  # "passed", "failed" or "timed out"
    seconds: float
    failing_cell: str = ""  # e.g. "Cell 5: Cell outputs differ" (nbval counts code cells from 0)
    failed_cells: int = 0
    error: str = ""  # the end of what nbval (or the run) said
    leftovers: list[str] = field(default_factory=list)  # processes it left running, which the report stopped

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def line(self) -> str:
        where = f"  {self.failing_cell}" if self.failing_cell else ""
        extra = f" (+{self.failed_cells - 1} more cells)" if self.failed_cells > 1 else ""
        return f"{self.status.upper():<10}{self.seconds:7.1f} s  {self.path}{where}{extra}"


def default_notebooks(root: Path | None = None) -> list[Path]:
    """Every lesson in order, then every lab solution in order."""
    root = root or course_root()
    return sorted((root / "notebooks").glob("*.ipynb")) + sorted((root / "labs" / "solutions").glob("*.ipynb"))


def nbval_command(notebook: Path, junit: Path, sanitize: Path) -> list[str]:
    # "--option=value": a separate value that is a path would count for pytest's rootdir search
    return [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", f"--nbval-sanitize-with={sanitize}",
            "-p", "no:cacheprovider", "-v", f"--junitxml={junit}", f"--rootdir={notebook.parent}",
            f"-c={notebook.parent / 'pytest.ini'}", str(notebook)]


def run_notebook(path: Path, timeout: float = DEFAULT_TIMEOUT, sanitize: Path | None = None) -> NotebookResult:
    """Run one notebook under strict nbval from a temporary copy; the committed file is only read."""
    path = Path(path).resolve()
    shown = _shown(path)
    sanitize = sanitize or course_root() / "tests" / "nbval_sanitize.cfg"
    with tempfile.TemporaryDirectory(prefix="triton-course-report-") as tmp:
        folder = Path(tmp)
        copy = folder / path.name
        shutil.copyfile(path, copy)
        (folder / "pytest.ini").write_text("[pytest]\n")  # none of the course's pytest settings apply
        junit, log = folder / "junit.xml", folder / "pytest.log"
        started = time.monotonic()
        with open(log, "wb") as out:
            marker = f"{os.getpid()}-{uuid.uuid4().hex}"
            env = dict(os.environ, PYTHONUNBUFFERED="1", **{RUN_MARKER: marker})
            process = subprocess.Popen(nbval_command(copy, junit, sanitize), cwd=folder, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                       start_new_session=True)
            family = _watch(process, started + timeout)
        seconds = time.monotonic() - started
        family = _union(family, _marked(marker))  # pytest itself too, when it is still running
        timed_out = process.returncode is None
        if timed_out:
            _stop(family)
            if process.poll() is None:
                process.kill()
            process.wait()
            leftovers = []
        else:
            leftovers = _stop_leftovers(family)
        result = _result(shown, process.returncode, seconds, junit, log.read_text(errors="replace"), timed_out,
                         timeout)
    result.leftovers = leftovers
    if leftovers:  # the house rule: no process outlives the notebook that started it
        said = "Still running after the notebook ended (the report stopped them):\n" + "\n".join(leftovers)
        if result.passed:
            result.status, result.failing_cell, result.error = "failed", "processes left running", said
        else:
            result.error += "\n\n" + said
    return result


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(course_root()))
    except ValueError:
        return str(path)


def _watch(process: subprocess.Popen, deadline: float) -> list[psutil.Process]:
    """Wait for the pytest process until the deadline, noting every process it starts on the way
    (servers start their own sessions, and outlive a killed parent: they are found by ancestry)."""
    family: dict[tuple[int, float], psutil.Process] = {}
    while True:
        try:
            for child in psutil.Process(process.pid).children(recursive=True):
                try:
                    family.setdefault((child.pid, child.create_time()), child)
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            return list(family.values())
        try:
            process.wait(timeout=min(0.5, left))
            return list(family.values())
        except subprocess.TimeoutExpired:
            continue


def _marked(marker: str) -> list[psutil.Process]:
    """The processes that inherited this run's marker: also those whose parent died before _watch
    saw them (they now belong to init), as long as they kept their environment."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(RUN_MARKER) == marker:
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def _union(*groups: list[psutil.Process]) -> list[psutil.Process]:
    seen: dict[tuple[int, float], psutil.Process] = {}
    for p in (p for group in groups for p in group):
        try:
            seen.setdefault((p.pid, p.create_time()), p)
        except psutil.NoSuchProcess:
            pass
    return list(seen.values())


def _stop(processes: list[psutil.Process], grace: float = 10.0) -> None:
    """SIGTERM (Triton then unloads its models and exits), then SIGKILL what is left after `grace`."""
    alive = [p for p in processes if p.is_running()]
    for p in alive:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(alive, timeout=grace)
    for p in still:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(still, timeout=5)


def _stop_leftovers(family: list[psutil.Process]) -> list[str]:
    """After a notebook ended: give its processes LEFTOVER_GRACE to finish by themselves (a server's
    reaper stops it once the kernel is gone), then stop the rest and say which they were."""
    alive = [p for p in family if _alive(p)]
    _, still = psutil.wait_procs(alive, timeout=LEFTOVER_GRACE)
    still = [p for p in still if _alive(p)]
    described = []
    for p in still:
        try:
            described.append(f"pid {p.pid}: {' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            described.append(f"pid {p.pid}")
    _stop(still)
    return described


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _result(shown: str, returncode: int | None, seconds: float, junit: Path, log: str, timed_out: bool,
            timeout: float) -> NotebookResult:
    failures = _failures(junit)
    if timed_out:
        running = re.findall(r"::(Cell \d+)", log)
        cell = f"{running[-1]}: still running after {timeout:.0f} s" if running else f"timed out after {timeout:.0f} s"
        return NotebookResult(shown, "timed out", seconds, cell, len(failures) + 1, _tail(log))
    if returncode == 0:
        return NotebookResult(shown, "passed", seconds)
    if failures:
        name, message = failures[0]
        text = ANSI.sub("", message)
        reason = next((line.strip() for line in text.splitlines() if line.strip().startswith(name + ":")), name)
        return NotebookResult(shown, "failed", seconds, reason, len(failures), _tail(text))
    # pytest itself failed (the notebook did not parse, no kernel, ...): its own output says why
    return NotebookResult(shown, "failed", seconds, f"pytest exited with {returncode}", 0, _tail(ANSI.sub("", log)))


def _failures(junit: Path) -> list[tuple[str, str]]:
    """(test name, failure text) for each failed or erroring nbval item, in order."""
    if not junit.exists():
        return []
    try:
        tree = ET.parse(junit)
    except ET.ParseError:
        return []
    found = []
    for case in tree.iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                found.append((case.get("name", "?"), child.text or child.get("message", "")))
                break
    return found


def _tail(text: str, lines: int = ERROR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
