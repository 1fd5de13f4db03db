"""Stops a Triton server whose owner died without stopping it (a kernel killed with -9, say).

Started by the course next to every server, in its own session so that it outlives the
owner: `python reaper.py OWNER_PID SERVER_PGID [SERVED_COPY]`. When the owner is gone it terminates
the server's whole process group (tritonserver and its python-backend stubs), removes the
served copy of the repository, then exits. For a container, SERVER is `container:ID`: the
container is removed through the Docker SDK.
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


def remove_container(container_id: str) -> None:
    import docker

    try:
        docker.from_env(timeout=30).containers.get(container_id).remove(force=True)
    except Exception:  # noqa: BLE001 - gone already, or no engine left to ask
        pass


def main(owner: int, server: str, served_copy: str = "") -> None:
    container = server.removeprefix("container:") if server.startswith("container:") else None
    pgid = None if container else int(server)
    while alive(owner):
        if pgid is not None and not group_alive(pgid):
            return
        time.sleep(0.5)
    if container:
        remove_container(container)
    else:
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
    main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:4])
