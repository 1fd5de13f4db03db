"""Ways to run a Triton server, behind one interface (runtimes.base.TritonServer).

- "local":    a tritonserver already on this machine (a pod whose image is NGC's Triton image)
- "embedded": the Triton binary inside the nvidia-pytriton wheel (python backend only)
- "docker":   the NGC container through the docker SDK (only when asked for: it pulls a large image)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ServerStartError
from .base import TritonServer, free_port, port_is_free, stop_all
from .docker import DockerServer
from .embedded import EmbeddedServer, find_installation
from .local import LocalServer, find_binary

RUNTIMES: dict[str, type[TritonServer]] = {
    "local": LocalServer,
    "embedded": EmbeddedServer,
    "docker": DockerServer,
}


def unavailable_reason(runtime: str) -> str | None:
    """None when `runtime` can run here, else why not (one line): each runtime answers for itself."""
    if runtime not in RUNTIMES:
        return f"unknown runtime '{runtime}' (choose from {', '.join(RUNTIMES)})"
    return RUNTIMES[runtime].unavailable_reason()


def best_runtime() -> str:
    """The full Triton where there is one (it has every backend), else the embedded one.
    Docker is never picked by itself: its first start pulls an image of several GB."""
    for name in ("local", "embedded"):
        if unavailable_reason(name) is None:
            return name
    raise ServerStartError("No way to run Triton here: " + "; ".join(
        f"{name}: {unavailable_reason(name)}" for name in ("local", "embedded")),
        fix="Run `make setup` in the course folder (it installs the embedded server).")


def server(repository: str | Path | None = None, runtime: str = "auto", **kwargs) -> TritonServer:
    """A server object, not yet started: use `with server(...) as s:` or `.start()`."""
    name = best_runtime() if runtime == "auto" else runtime
    if name not in RUNTIMES:
        raise ServerStartError(f"Unknown runtime '{runtime}'.", fix=f"Choose one of: auto, {', '.join(RUNTIMES)}.")
    return RUNTIMES[name](repository, **kwargs)


def start_server(repository: str | Path | None = None, runtime: str = "auto", **kwargs) -> TritonServer:
    """Start a server and return it once it is ready (stop it with .stop(), or it stops at exit)."""
    return server(repository, runtime, **kwargs).start()


__all__ = ["RUNTIMES", "TritonServer", "DockerServer", "EmbeddedServer", "LocalServer", "best_runtime", "server",
           "start_server", "stop_all", "unavailable_reason", "free_port", "port_is_free", "find_binary",
           "find_installation"]
