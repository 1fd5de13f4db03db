"""NGC's Triton container, run through the Docker SDK: pull, run, wait, log, stop, remove.

The command line it stands for:

    docker pull nvcr.io/nvidia/tritonserver:<tag>-py3
    docker run --rm --gpus=all --shm-size=1g -p 127.0.0.1:8000:8000 -p 127.0.0.1:8001:8001 \\
        -p 127.0.0.1:8002:8002 -v $PWD/models:/models:ro nvcr.io/nvidia/tritonserver:<tag>-py3 \\
        tritonserver --model-repository=/models --allow-client-shm=true

The tag is chosen from triton_course/ngc.py's table (`default_image`): the newest release this host's
driver runs that no published security advisory affects. --allow-client-shm=true goes with a Triton
from 2.68.0 (NGC 26.04) on, which refuses client shared memory without it.

A container can start containers only when the host hands it its Docker socket
(-v /var/run/docker.sock:/var/run/docker.sock) or runs it --privileged; rented GPU pods allow
neither, so there use the embedded server or start the pod from the NGC image (the local
runtime); docs/pods.md says how.
"""

from __future__ import annotations

import os
import sys
import threading

from .. import ngc
from ..errors import CourseError, PortInUseError
from ..gpu import DEVICE_VARIABLE, nvidia_smi_gpus, wants_cpu
from .base import TritonServer, port_holder

# The newest NGC release in ngc.py's table, free of the advisories that affect every release before
# 26.07 (24.10 among them, the release of the embedded 2.51.0 server). On a host whose driver is too
# old for it, `default_image` picks another; CI and offline machines set $TRITON_IMAGE to a locally built image instead.
DEFAULT_IMAGE = ngc.CURRENT.image
IMAGE_VARIABLE = "TRITON_IMAGE"
CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
MOUNT_POINT = "/models"
LABEL = "triton-course.owner-pid"  # lets a later run remove containers whose owner died


class DockerError(CourseError):
    """The Docker engine, a registry or an image is not as the course needs it."""

    source = "Docker"


def default_image() -> tuple[str, str]:
    """The NGC image for this host and why: the newest release its driver runs that no advisory affects
    (without a GPU, the current release)."""
    release, why = ngc.default_release(ngc.driver_version())
    capability = ngc.compute_capability()
    if ngc.below_compute_floor(capability):
        floor = ".".join(map(str, ngc.MIN_COMPUTE_CAPABILITY))
        why += (f"; warning: this GPU's compute capability is {capability}, and NGC's images from 25.08 on "
                f"need {floor} or newer")
    return release.image, why


def image_reference() -> str:
    """The image the course runs: $TRITON_IMAGE, else `default_image()`."""
    return os.environ.get(IMAGE_VARIABLE) or default_image()[0]


def docker_client(timeout: int = 60):
    """A docker SDK client, or a DockerError that says why there is none and what to do."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:  # pragma: no cover - docker is a pinned dependency
        raise DockerError("The docker Python package is missing.", fix="Run `make setup`.") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except DockerException as exc:
        raise engine_error(str(exc)) from None


def engine_error(message: str) -> DockerError:
    """The DockerError for a failed connection to the engine (Docker's message in `message`)."""
    if "Permission denied" in message or "PermissionError" in message:
        return DockerError(
            "Permission denied on the Docker socket.", triton_said=message,
            fix="Add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again), "
                "or use the embedded runtime.")
    return DockerError(
        "No Docker engine answers on this machine.", triton_said=message,
        fix="Start one (`sudo systemctl start docker`), or use runtime 'embedded' (it needs no Docker). "
            "On a rented pod Docker cannot run at all: see docs/pods.md.")


def _split_reference(reference: str) -> tuple[str, str]:
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag given (the colon belonged to a registry port)
        return reference, "latest"
    return name, tag


def image_present(reference: str, client=None) -> bool:
    from docker.errors import ImageNotFound

    client = client or docker_client()
    try:
        client.images.get(reference)
        return True
    except ImageNotFound:
        return False


def pull_image(reference: str | None = None, *, progress: bool = True, client=None):
    """Pull an image (skipped when present), showing one progress bar per layer; returns the image."""
    from docker.errors import APIError, NotFound

    reference = reference or image_reference()
    client = client or docker_client()
    if image_present(reference, client):
        if progress:
            print(f"{reference} is already here: no pull needed")
        return client.images.get(reference)
    name, tag = _split_reference(reference)
    bars = {}
    try:
        for event in client.api.pull(name, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise DockerError(f"Pulling {reference} failed.", triton_said=event["error"],
                                  fix=_pull_fix(event["error"]))
            if progress:
                _show_progress(event, bars)
    except NotFound as exc:
        raise DockerError(f"The image {reference} does not exist in its registry.",
                          triton_said=exc.explanation or str(exc),
                          fix=f"Check the name and tag (the course's default is {DEFAULT_IMAGE}).") from None
    except APIError as exc:
        message = exc.explanation or str(exc)
        raise DockerError(f"Pulling {reference} failed.", triton_said=message, fix=_pull_fix(message)) from None
    finally:
        for bar in bars.values():
            bar.close()
    return client.images.get(reference)


def _pull_fix(message: str) -> str:
    if "manifest unknown" in message or "not found" in message:
        return f"Check the image name and tag (the course's default is {DEFAULT_IMAGE})."
    if "unauthorized" in message or "denied" in message:
        return "Log in to the registry first (`docker login nvcr.io` with an NGC API key)."
    return ("The registry could not be reached: check the network, or point $TRITON_IMAGE at a registry "
            "you can reach; without one, use runtime 'embedded'.")


def _show_progress(event: dict, bars: dict) -> None:
    from tqdm.auto import tqdm

    layer, status = event.get("id"), event.get("status", "")
    detail = event.get("progressDetail") or {}
    if not layer or status.startswith(("Pulling from", "Digest", "Status")):
        if status and not layer:
            print(status)
        return
    if layer not in bars:
        bars[layer] = tqdm(total=detail.get("total") or 1, desc=f"layer {layer}", unit="B", unit_scale=True,
                           leave=True, file=sys.stdout)
    bar = bars[layer]
    if status in ("Downloading", "Extracting") and detail.get("total"):
        if bar.total != detail["total"]:
            bar.reset(total=detail["total"])  # the notebook widget takes a new total only this way
        bar.set_postfix_str(status.lower(), refresh=False)
        bar.update(detail.get("current", 0) - bar.n)
    elif status in ("Pull complete", "Already exists", "Download complete"):
        bar.set_postfix_str(status.lower(), refresh=False)
        bar.update(bar.total - bar.n)


def host_gpus() -> list[str]:
    """The indexes of this host's NVIDIA GPUs ([] without a driver), as Docker's device ids."""
    return [str(gpu.index) for gpu in nvidia_smi_gpus()]


class DockerServer(TritonServer):
    """Triton in a container. `gpus`: "auto" (all the host has, if any, unless TRITON_COURSE_DEVICE=cpu), "all",
    "none", or ids like ["0"]."""

    runtime = "docker"

    @classmethod
    def unavailable_error(cls) -> DockerError | None:
        """An engine must answer (the image is pulled at the first start)."""
        try:
            docker_client(timeout=10).close()
        except DockerError as exc:
            return exc
        return None

    def __init__(self, *args, image: str | None = None, gpus="auto", pull: bool = True,
                 shm_size: str = "1g", **kwargs):
        super().__init__(*args, **kwargs)
        self.image = image or image_reference()
        self.gpus = gpus
        self.pull = pull
        self.shm_size = shm_size
        self.client = None
        self.container = None
        self._backends: list[str] | None = None
        self._image = None
        self._log_thread: threading.Thread | None = None

    # --- what is in the image ----------------------------------------------------------------
    def ensure_image(self):
        """The image, pulled first if it is not here (pull=False: a DockerError instead)."""
        if self._image is None:
            if self.client is None:
                self.client = docker_client()
            if image_present(self.image, self.client):
                self._image = self.client.images.get(self.image)
            elif self.pull:
                self._image = pull_image(self.image, progress=True, client=self.client)
            else:
                raise DockerError(f"The image {self.image} is not on this machine.", fix="Pull it first (pull=True).")
        return self._image

    def run_in_image(self, command: list[str], entrypoint: list[str] | None = None, timeout: int = 120) -> str:
        """Run a short command in a throw-away container of the image and return its output
        (whatever its exit status: `tritonserver --help` exits with 1)."""
        self.ensure_image()
        kwargs = {"entrypoint": entrypoint} if entrypoint else {}
        container = self.client.containers.run(self.image, command, detach=True, network_disabled=True,
                                               labels={LABEL: str(os.getpid())}, **kwargs)
        try:
            container.wait(timeout=timeout)
            return container.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            container.remove(force=True)

    @property
    def backends(self) -> list[str]:
        if self._backends is None:
            self._backends = sorted(self.run_in_image(["/opt/tritonserver/backends"], entrypoint=["ls"]).split())
        return self._backends

    def triton_version_before_start(self) -> str | None:
        """From the image's environment once it is here, else from the course's table of NGC tags."""
        if self._image is not None:
            version = self.image_version()["triton"]
            return None if version == "?" else version
        known = ngc.release(self.image)
        return known.triton if known else None

    def client_shm_args(self) -> list[str]:
        """As for any Triton (base.py); for a tag in ngc.py's table whose Triton version is not filled in,
        the table's answer by release (26.04 and later need the flag)."""
        known = ngc.release(self.image) if self._image is None else None
        if self.allow_client_shm and known is not None and known.triton is None:
            return ["--allow-client-shm=true"] if known.needs_allow_client_shm else []
        return super().client_shm_args()

    def image_version(self) -> dict[str, str]:
        """Triton's version and the NGC release, from the image's environment."""
        env = dict(e.split("=", 1) for e in self.ensure_image().attrs["Config"].get("Env", []) if "=" in e)
        return {"triton": env.get("TRITON_SERVER_VERSION", "?"),
                "release": env.get("NVIDIA_TRITON_SERVER_VERSION", "?")}

    def image_size(self) -> int:
        """The image's size on disk, in bytes."""
        return int(self.ensure_image().attrs["Size"])

    # --- the command and the mounts ------------------------------------------------------------
    def command(self) -> list[str]:
        # Inside its own network namespace Triton listens on every address, on its default ports
        # (CONTAINER_PORTS), for the published ports to reach it; the publishing binds bind_host().
        return ["tritonserver", f"--model-repository={MOUNT_POINT}", *self.server_args()]

    def volumes(self) -> dict[str, dict[str, str]]:
        """Read-only bind mounts. When the course adapted the repository, the served copy goes to
        /models and the learner's repository to its own path, where the copy's links point."""
        if not self.adapted:
            return {str(self.repository): {"bind": MOUNT_POINT, "mode": "ro"}}
        return {str(self.served_repository): {"bind": MOUNT_POINT, "mode": "ro"},
                str(self.repository): {"bind": str(self.repository), "mode": "ro"}}

    def requested_gpus(self) -> str | list[str]:
        """"all", "none", or the ids asked for. "auto" is all the host has, and none where it has none or
        TRITON_COURSE_DEVICE=cpu asks for the CPU."""
        gpus = self.gpus
        if gpus == "auto":
            gpus = "all" if host_gpus() and not wants_cpu() else "none"
        if gpus in ("all", "none"):
            return gpus
        return [str(g) for g in (gpus.split(",") if isinstance(gpus, str) else gpus or [])] or "none"

    def device_requests(self) -> list:
        import docker

        gpus = self.requested_gpus()
        if gpus == "none":
            if not host_gpus():
                self.notes.append("no GPU requested: this host has none")
            elif self.gpus == "auto":  # the host has GPUs, and the learner asked for the CPU
                self.notes.append(f"no GPU requested: {DEVICE_VARIABLE}=cpu")
            else:
                self.notes.append("no GPU requested")
            return []
        if gpus == "all":
            self.notes.append("GPUs requested: all")
            return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        self.notes.append(f"GPUs requested: {', '.join(gpus)}")
        return [docker.types.DeviceRequest(device_ids=gpus, capabilities=[["gpu"]])]

    def docker_run_command(self) -> str:
        """The `docker run` line that does what this server does, for the learner to read."""
        requested = self.requested_gpus()
        if isinstance(requested, list):
            requested = f"'\"device={','.join(requested)}\"'"
        gpus = "" if requested == "none" else f"--gpus={requested} "
        ports = " ".join(f"-p {self.bind_host(k)}:{self.ports.get(k, v)}:{v}" for k, v in CONTAINER_PORTS.items())
        mounts = " ".join(f"-v {src}:{m['bind']}:ro" for src, m in self.volumes().items())
        return (f"docker run --rm {gpus}--shm-size={self.shm_size} {ports} {mounts} {self.image} "
                + " ".join(self.command()))

    # --- life cycle --------------------------------------------------------------------------
    def _launch(self) -> None:
        from docker.errors import APIError

        self.ensure_image()
        _remove_orphaned_containers(self.client)
        name = f"triton-course-{os.getpid()}-{self.log_path.stem.rsplit('-', 1)[-1]}"
        ports = {f"{inner}/tcp": (self.bind_host(key), self.ports[key]) for key, inner in CONTAINER_PORTS.items()}
        try:
            self.container = self.client.containers.run(
                self.image, self.command(), name=name, detach=True, ports=ports, volumes=self.volumes(),
                device_requests=self.device_requests(), shm_size=self.shm_size, labels={LABEL: str(os.getpid())})
        except APIError as exc:
            self._remove_container(name)  # a failed start can leave it "created"
            raise self._run_error(exc) from None
        self._log_thread = threading.Thread(target=self._follow_log, daemon=True)
        self._log_thread.start()
        self._start_reaper(f"container:{self.container.id}")

    def _run_error(self, exc) -> CourseError:
        message = exc.explanation or str(exc)
        if "could not select device driver" in message:
            return DockerError(
                "Docker cannot give the container a GPU: the NVIDIA container runtime is not set up here.",
                triton_said=message,
                fix="Install the NVIDIA Container Toolkit, or run without GPUs (gpus='none').")
        if "port is already allocated" in message or "address already in use" in message:
            port = next((p for p in self.ports.values() if f":{p}" in message), 0)
            return PortInUseError(port, port_holder(port) if port else None, triton_said=message)
        return DockerError(f"Docker could not start the container from {self.image}.", triton_said=message,
                           fix="Read Docker's message above; `triton-course doctor` checks the engine.")

    def _remove_container(self, name: str) -> None:
        from docker.errors import NotFound

        try:
            self.client.containers.get(name).remove(force=True)
        except NotFound:
            pass

    def _follow_log(self) -> None:
        container = self.container
        with open(self.log_path, "ab") as log:
            for chunk in container.logs(stream=True, follow=True):
                log.write(chunk)
                log.flush()

    def _exit_code(self) -> int | None:
        from docker.errors import NotFound

        if self.container is None:
            return -1
        try:
            self.container.reload()
        except NotFound:
            return -1
        if self.container.status in ("running", "created", "restarting"):
            return None
        return self.container.attrs["State"].get("ExitCode", -1)

    def _terminate(self, timeout: float) -> None:
        from docker.errors import APIError, NotFound

        container, self.container = self.container, None
        if container is not None:
            try:
                container.stop(timeout=int(timeout))
                if self._log_thread is not None:
                    self._log_thread.join(5)
                container.remove(force=True)
            except (NotFound, APIError):
                pass
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None

    def _repository_paths(self) -> list[str]:
        return [MOUNT_POINT, *super()._repository_paths()]

    def readable(self, message: str) -> str:
        message = message.replace(f"{MOUNT_POINT}/", f"{self.repository}/")
        return super().readable(message)


def _remove_orphaned_containers(client) -> None:
    """Containers the course started from interpreters that have died since."""
    import psutil

    for container in client.containers.list(all=True, filters={"label": LABEL}):
        owner = container.labels.get(LABEL, "")
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            container.remove(force=True)
