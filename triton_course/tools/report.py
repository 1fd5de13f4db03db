"""Run the course headless on this machine and write a self-contained HTML report.

`triton-course report` runs every notebook (notebooks/ then labs/solutions/, or the paths given)
the way CI does: strict nbval (`pytest --nbval` with the course's sanitize file) re-executes it in
a fresh kernel and compares every cell's output with the one stored in the notebook. Each notebook
runs from a temporary copy, in its own pytest process with a deadline; whatever that process
started (the kernel, Triton servers, their python-backend stubs) is stopped before the next one
begins, also when the notebook timed out. The report says, per notebook, passed or failed, how
long it took, and where it failed, with the machine it ran on.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import platform
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

from .gpu import DEVICE_VARIABLE, probe_nvidia_smi, wants_cpu
from .paths import course_root

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


# --- the machine -----------------------------------------------------------------------------------

def machine_info() -> dict[str, str]:
    """What the timings depend on: CPU, memory, GPU, Python, Triton, and when."""
    info = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()} ({_os_name()})",
        "cpu": _cpu_model(),
        "cpu cores": _cpu_cores(),
        "load average": " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min, at the start)",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "gpu": _gpus(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "triton": _triton(),
        "course commit": _git_commit(),
    }
    return info


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "?")
    except OSError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{usable} usable ({psutil.cpu_count(logical=True)} logical, {psutil.cpu_count(logical=False)} physical)"
    try:  # a container (a pod) may be limited to fewer CPUs than the host shows
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            text += f"; container limit {int(quota) / int(period):g} CPUs"
    except (OSError, ValueError):
        pass
    return text


def _gpus() -> str:
    gpus, problem = probe_nvidia_smi()
    text = "; ".join(f"{g.name} (driver {g.driver}, {g.memory})" for g in gpus) or f"none ({problem})"
    if wants_cpu():  # the timings were taken on the CPU, whatever the machine has
        text += f"; {DEVICE_VARIABLE}=cpu: the course served on the CPU"
    return text


def _triton() -> str:
    from .runtimes import find_binary
    from .runtimes.embedded import TRITON_VERSION

    local = find_binary()
    if local:
        return f"local {local} (the lessons use it)"
    return f"embedded {TRITON_VERSION} from nvidia-pytriton"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(course_root()), "log", "-1", "--format=%h %cs"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


# --- the report ------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { text-align: left; padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.passed { color: #176f2c; font-weight: bold; }
.failed, .timed-out { color: #b00020; font-weight: bold; }
pre { background: #f6f6f6; padding: 0.6em; max-width: 100em; overflow-x: auto; font-size: 0.85em; }
"""


def render_html(results: list[NotebookResult], machine: dict[str, str]) -> str:
    failed = [r for r in results if not r.passed]
    total = sum(r.seconds for r in results)
    verdict = "all passed" if not failed else f"{len(failed)} of {len(results)} failed"
    e = html.escape
    rows = []
    for r in results:
        css = r.status.replace(" ", "-")
        where = e(r.failing_cell) + (f" (+{r.failed_cells - 1} more cells)" if r.failed_cells > 1 else "")
        detail = f"<details><summary>{where}</summary><pre>{e(r.error)}</pre></details>" if r.error else where
        rows.append(f"<tr><td>{e(r.path)}</td><td class='{css}'>{e(r.status)}</td>"
                    f"<td class='num'>{r.seconds:.1f}</td><td>{detail}</td></tr>")
    machine_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in machine.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Triton course run: {e(verdict)}</title>
<style>{STYLE}</style></head><body>
<h1>Triton course: headless run</h1>
<p><strong>{e(verdict)}</strong>: {len(results) - len(failed)} passed, {len(failed)} failed,
{total:.0f} s in all ({total / 60:.1f} min). Each notebook ran from a temporary copy in a fresh kernel under strict
nbval (<code>pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg</code>): every cell's
output was compared with the one stored in the notebook.</p>
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th>result</th><th>seconds</th><th>where it failed</th></tr>
{chr(10).join(rows)}
<tr><th>total</th><td>{len(results) - len(failed)}/{len(results)} passed</td>
<td class='num'>{total:.1f}</td><td></td></tr>
</table>
<h2>Machine</h2>
<table>{machine_rows}</table>
</body></html>
"""


def run_report(paths: list[Path], output: Path, timeout: float = DEFAULT_TIMEOUT, echo=print) -> list[NotebookResult]:
    """Run each notebook in turn, echo one line per notebook as it ends, write the HTML report."""
    machine = machine_info()
    echo(f"{machine['date']} on {machine['cpu']}, {machine['cpu cores']}, GPU: {machine['gpu']}")
    results = []
    for path in paths:
        result = run_notebook(path, timeout)
        results.append(result)
        echo(result.line())
        output.write_text(render_html(results, machine))  # a report so far, should the run be cut short
    failed = sum(not r.passed for r in results)
    total = sum(r.seconds for r in results)
    echo(f"{len(results) - failed}/{len(results)} passed in {total:.0f} s; report: {output}")
    return results
