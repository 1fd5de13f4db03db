"""A helper server the notebook starts beside Triton (Prometheus, HAProxy): its own folder, its log,
and the reaper that stops it when the notebook's process dies without calling stop().

Subclasses say what to run (`_launch(args)` from their start()) and how to tell it is ready; this
class owns the folder, the process, the reaper and stopping, in one place.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .paths import cache_dir

REAPER = Path(__file__).with_name("runtimes") / "reaper.py"


class SupervisedProcess:
    """One helper process of this notebook; use as a context manager, or start() and stop()."""

    name = "helper"  # names its folder (NAME-PID-XXXX) and its log (NAME.log)
    stop_timeout = 15.0  # seconds between SIGTERM and SIGKILL

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self._reaper: subprocess.Popen | None = None
        self.workdir: Path | None = None

    def start(self) -> "SupervisedProcess":
        raise NotImplementedError

    def _make_workdir(self) -> Path:
        # Under the cache's served/ folder: the reaper removes it if this process dies without stop().
        served = cache_dir() / "served"
        served.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-{os.getpid()}-", dir=served))
        return self.workdir

    @property
    def log_path(self) -> Path | None:
        return self.workdir / f"{self.name}.log" if self.workdir else None

    def _launch(self, args: list[str], cwd: Path | None = None) -> None:
        """Start `args` in a session of its own with its output in the log, and its reaper."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self._reaper = subprocess.Popen([sys.executable, "-I", str(REAPER), str(os.getpid()), str(self.process.pid),
                                         str(self.workdir)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path and path.exists() else ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its folder; safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
