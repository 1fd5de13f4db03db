"""Stops a Triton server whose owner died without stopping it (a kernel killed with -9, say).

Started by the course next to every server, in its own session so that it outlives the
owner: `python reaper.py OWNER_PID SERVER_PGID [SERVED_COPY]`. When the owner is gone it terminates
the server's whole process group (tritonserver and its python-backend stubs), removes the
served copy of the repository, then exits.
It imports nothing from the course, so it starts in milliseconds.
"""

import os
import shutil
import signal
import sys
import time


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie owner is dead, only not yet reaped


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(owner: int, pgid: int, served_copy: str = "") -> None:
    while alive(owner):
        if not group_alive(pgid):
            return
        time.sleep(0.5)
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.2)
    if served_copy and os.path.basename(os.path.dirname(served_copy)) == "served":
        shutil.rmtree(served_copy, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4])
