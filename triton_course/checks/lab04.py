"""Checks of lab 04 (the container): the arguments for the Docker SDK and the `docker run` line,
compared with what the course's DockerServer builds, and the published HTTP port tried on a real
server (the embedded one: no Docker engine is needed to run the checks)."""

from __future__ import annotations

import shlex
from pathlib import Path

from .. import inference, photos
from ..runtimes.docker import CONTAINER_PORTS, DEFAULT_IMAGE, MOUNT_POINT, DockerServer, image_reference
from . import Verdict, failed, passed

SHM_BYTES = 1 << 30
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def expected_run(repository: Path, ports: dict[str, int], gpus="all") -> dict:
    """The keyword arguments DockerServer passes to containers.run for this repository and these host ports."""
    course = DockerServer(repository, gpus=gpus, pull=False)
    course.ports = dict(ports)  # what start() would have chosen
    return {
        "image": image_reference(),
        "command": course.command(),
        "ports": {f"{inner}/tcp": (course.host, ports[key]) for key, inner in CONTAINER_PORTS.items()},
        "volumes": course.volumes(),
        "device_requests": course.device_requests(),
        "shm_size": course.shm_size,
        "detach": True,
    }


def _bytes(size) -> int | None:
    if isinstance(size, int):
        return size
    text = str(size).strip().lower()
    number, unit = text.rstrip("bkmg"), text[len(text.rstrip("bkmg")):]
    try:
        return int(float(number) * _UNITS[unit.rstrip("b") or ""])
    except (ValueError, KeyError):
        return None


def _gpu_problems(given, wanted: list) -> list[str]:
    if not given:
        return ["no GPU is requested (device_requests is missing): Triton would run on the CPU only"]
    want = wanted[0]
    request = given[0]
    fields = {k.lower(): v for k, v in dict(request).items()} if isinstance(request, dict) else {}
    count = fields.get("count", getattr(request, "count", None))
    ids = fields.get("deviceids", fields.get("device_ids", getattr(request, "device_ids", None))) or []
    capabilities = fields.get("capabilities", getattr(request, "capabilities", None))
    problems = []
    if capabilities != [["gpu"]]:
        problems.append(f"capabilities is {capabilities!r}: Docker wants a list of lists, [['gpu']]")
    if want.device_ids:
        if list(ids) != list(want.device_ids):
            problems.append(f"the GPUs requested are {list(ids) or f'count={count}'}, not device_ids="
                            f"{list(want.device_ids)}")
    elif count != -1:
        problems.append(f"count={count} asks for {count} GPU(s); every GPU is count=-1")
    return problems


def _port_problems(given, wanted: dict) -> list[str]:
    if not isinstance(given, dict):
        return [f"ports is {given!r}, not a dict such as {{'8000/tcp': ('127.0.0.1', HOST_PORT)}}"]
    problems = []
    for container_port, (host, host_port) in wanted.items():
        bare = container_port.split("/")[0]
        value = given.get(container_port, given.get(bare, given.get(int(bare))))
        if value is None:
            problems.append(f"container port {container_port} is not published")
            continue
        if isinstance(value, (int, str)):
            problems.append(f"{container_port} is published as {value!r}: on every address of the host (0.0.0.0), "
                            "open to the network")
            continue
        if tuple(value)[0] != host:
            problems.append(f"{container_port} is published on {tuple(value)[0]!r}, not on {host!r} only")
        if int(tuple(value)[-1]) != host_port:
            problems.append(f"{container_port} is published on host port {tuple(value)[-1]}, not {host_port}")
    return problems


def _volume_problems(given, repository: Path) -> list[str]:
    if isinstance(given, list):  # the "HOST:CONTAINER:MODE" spelling
        given = {v.split(":")[0]: {"bind": v.split(":")[1] if ":" in v else "",
                                   "mode": v.split(":")[2] if v.count(":") >= 2 else "rw"} for v in given}
    if not isinstance(given, dict) or not given:
        return ["no repository is mounted (volumes is missing)"]
    mounts = {str(Path(k)): v for k, v in given.items()}
    mount = mounts.get(str(repository))
    if mount is None:
        return [f"the repository {repository} is not mounted (mounted: {', '.join(mounts)}); give its absolute path"]
    problems = []
    if mount.get("bind") != MOUNT_POINT:
        problems.append(f"the repository is mounted at {mount.get('bind')!r}, but Triton is told to read {MOUNT_POINT}")
    if mount.get("mode", "rw") != "ro":
        problems.append(f"the repository is mounted with mode {mount.get('mode', 'rw')!r}: read-only ('ro') keeps the "
                        "server from changing your files")
    return problems


def _command_problems(command) -> list[str]:
    words = shlex.split(command) if isinstance(command, str) else list(command or [])
    if not words or words[0] != "tritonserver":
        return [f"the command is {words!r}: it must start the server, 'tritonserver', with its options"]
    if f"--model-repository={MOUNT_POINT}" not in words and not (
            "--model-repository" in words and words[words.index("--model-repository") + 1:][:1] == [MOUNT_POINT]):
        given = next((w for w in words if w.startswith("--model-repository")), "no --model-repository")
        return [f"the command has {given}: inside the container the repository is at {MOUNT_POINT}"]
    return []


def kwargs_problems(kwargs: dict, repository: Path, ports: dict[str, int], gpus="all") -> list[str]:
    """What differs from DockerServer's own arguments, one line per argument."""
    want = expected_run(repository, ports, gpus)
    problems = []
    image = kwargs.get("image")
    if image not in (want["image"], DEFAULT_IMAGE):
        pinned = ":" in str(image).rsplit("/", 1)[-1] and not str(image).endswith(":latest")
        problems.append(f"image is {image!r}: " + ("the course pins " + DEFAULT_IMAGE if pinned else
                                                   "pin a release tag, such as " + DEFAULT_IMAGE))
    problems += _command_problems(kwargs.get("command"))
    problems += _port_problems(kwargs.get("ports"), want["ports"])
    problems += _volume_problems(kwargs.get("volumes"), repository)
    problems += _gpu_problems(kwargs.get("device_requests"), want["device_requests"])
    shm = _bytes(kwargs.get("shm_size")) if kwargs.get("shm_size") is not None else None
    if shm != SHM_BYTES:
        problems.append(f"shm_size is {kwargs.get('shm_size')!r}: the python backend passes tensors through /dev/shm, "
                        "and Docker's default of 64 MB is too small; ask for '1g'")
    if kwargs.get("detach") is not True:
        problems.append("detach is not True: containers.run would wait until Triton exits, then return its log")
    return problems


def _try_http(server, kwargs: dict) -> str | None:
    """Reach the server through the host address and port the learner published for 8000; None if it answers."""
    value = (kwargs.get("ports") or {}).get("8000/tcp")
    host, port = tuple(value) if isinstance(value, (tuple, list)) else ("127.0.0.1", value)
    try:
        label = inference.classify([photos.photo("coffee")], f"http://{host}:{port}", k=1)[0][0][0]
    except Exception as error:  # noqa: BLE001 - reported to the learner
        return f"no answer at http://{host}:{port}: {error}"
    return None if label == "espresso" else f"http://{host}:{port} answered {label}"


def check_container_kwargs(kwargs: dict, server, gpus="all") -> Verdict:
    """Exercise 1 (and the stretch, with gpus=[ids]): the containers.run arguments for the server's
    repository and ports; then a request through the published HTTP port to the (embedded) server."""
    exercise = "Exercise 1" if gpus == "all" else "Stretch exercise"
    if not isinstance(kwargs, dict):
        return failed(exercise, f"container_kwargs is {type(kwargs).__name__}, not a dict of keyword arguments")
    problems = kwargs_problems(kwargs, server.repository, server.ports, gpus)
    if problems:
        return failed(exercise, *problems, hint="Compare with DockerServer in triton_course/runtimes/docker.py "
                                                "(its _launch method makes the same call).")
    unreachable = _try_http(server, kwargs)
    if unreachable:
        return failed(exercise, unreachable)
    return passed(exercise, "the same arguments as the course's DockerServer, and the published HTTP port answers "
                            "(here from the embedded server): espresso.")


# --- exercise 2: the docker run line -----------------------------------------------------------

_WITH_VALUE = {"-p", "--publish", "-v", "--volume", "--gpus", "--shm-size", "--name", "-e", "--env", "--user", "-u",
               "--network", "--mount", "-w", "--workdir", "--label", "-l", "--entrypoint"}


def parse_docker_run(line: str) -> tuple[list[str], dict[str, list[str]], str, list[str]]:
    """(flags without values, {option: [values]}, image, command) of a `docker run` line."""
    words = shlex.split(line.replace("\\\n", " "))
    if words[:2] != ["docker", "run"]:
        raise ValueError("the line must start with 'docker run'")
    flags, options, index = [], {}, 2
    while index < len(words) and words[index].startswith("-"):
        word = words[index]
        name, equals, value = word.partition("=")
        if equals:
            options.setdefault(name, []).append(value)
        elif name in _WITH_VALUE and index + 1 < len(words):
            options.setdefault(name, []).append(words[index + 1])
            index += 1
        else:
            flags.append(name)
        index += 1
    image = words[index] if index < len(words) else ""
    return flags, options, image, words[index + 1:]


def check_docker_run(line: str, server) -> Verdict:
    """Exercise 2: the `docker run` line that does what exercise 1's arguments do."""
    exercise = "Exercise 2"
    try:
        flags, options, image, command = parse_docker_run(line)
    except ValueError as error:
        return failed(exercise, str(error))
    problems = []
    if "--rm" not in flags:
        problems.append("no --rm: every stopped container would stay behind")
    if "--gpus" not in options or options["--gpus"][0].strip("'\"") != "all":
        problems.append(f"--gpus is {options.get('--gpus', ['missing'])[0]}: ask for every GPU with --gpus=all")
    if _bytes(options.get("--shm-size", ["64m"])[0]) != SHM_BYTES:
        problems.append(f"--shm-size is {options.get('--shm-size', ['missing (64 MB)'])[0]}: ask for 1g")
    published = options.get("-p", []) + options.get("--publish", [])
    for key, inner in CONTAINER_PORTS.items():
        wanted = f"127.0.0.1:{server.ports[key]}:{inner}"
        if wanted in published:
            continue
        near = [p for p in published if p.endswith(f":{inner}")]
        if near and near[0].count(":") == 1:
            problems.append(f"-p {near[0]} publishes on every address of the host: write -p {wanted}")
        else:
            problems.append(f"container port {inner} is published as {near or 'nothing'}: write -p {wanted}")
    mounts = options.get("-v", []) + options.get("--volume", [])
    wanted_mount = f"{server.repository}:{MOUNT_POINT}:ro"
    if wanted_mount not in mounts:
        same = [m for m in mounts if m.startswith(f"{server.repository}:")]
        if same and same[0] == f"{server.repository}:{MOUNT_POINT}":
            problems.append(f"-v {same[0]} mounts the repository writable: add :ro")
        else:
            problems.append(f"the mounts are {mounts or 'none'}: write -v {wanted_mount}")
    if image not in (image_reference(), DEFAULT_IMAGE):
        problems.append(f"the image is {image!r} (what follows the options): it must be {DEFAULT_IMAGE}, then "
                        "the command")
    problems += _command_problems(command)
    if problems:
        return failed(exercise, *problems, hint="Compare with the line the lesson printed "
                                                "(DockerServer.docker_run_command()).")
    return passed(exercise, "the line publishes on 127.0.0.1, mounts read-only at /models, asks for every GPU and "
                            "runs tritonserver on /models.")
