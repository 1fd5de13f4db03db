"""Lab 04's checks: the Docker SDK arguments and the docker run line, against what DockerServer builds."""

import docker
import pytest

import triton_course
from triton_course.checks import lab04
from triton_course.runtimes.docker import DEFAULT_IMAGE


@pytest.fixture(scope="module")
def server(reference_repo):
    with triton_course.server(reference_repo, runtime="embedded") as running:
        yield running


def right_kwargs(server):
    p = server.ports
    return {
        "image": DEFAULT_IMAGE,
        "command": ["tritonserver", "--model-repository=/models"],
        "ports": {"8000/tcp": ("127.0.0.1", p["http"]), "8001/tcp": ("127.0.0.1", p["grpc"]),
                  "8002/tcp": ("127.0.0.1", p["metrics"])},
        "volumes": {str(server.repository): {"bind": "/models", "mode": "ro"}},
        "device_requests": [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])],
        "shm_size": "1g",
        "detach": True,
    }


def right_line(server):
    p = server.ports
    return (f"docker run --rm --gpus=all --shm-size=1g -p 127.0.0.1:{p['http']}:8000 -p 127.0.0.1:{p['grpc']}:8001 "
            f"-p 127.0.0.1:{p['metrics']}:8002 -v {server.repository}:/models:ro {DEFAULT_IMAGE} "
            "tritonserver --model-repository=/models")


@pytest.mark.server
def test_right_kwargs_pass_and_match_docker_server(server):
    verdict = lab04.check_container_kwargs(right_kwargs(server), server)
    assert verdict.ok, verdict
    expected = lab04.expected_run(server.repository, server.ports)
    assert expected["volumes"] == right_kwargs(server)["volumes"]
    assert expected["ports"] == right_kwargs(server)["ports"]


def changed(server, **changes):
    kwargs = right_kwargs(server)
    for key, value in changes.items():
        if value is None:
            del kwargs[key]
        else:
            kwargs[key] = value(server) if callable(value) else value
    return kwargs


@pytest.mark.server
@pytest.mark.parametrize("changes, expected", [
    (dict(ports=lambda s: {"8000/tcp": s.ports["http"], "8001/tcp": s.ports["grpc"], "8002/tcp": s.ports["metrics"]}),
     ["8000/tcp is published as", "on every address of the host (0.0.0.0)"]),
    (dict(ports=lambda s: {"8000/tcp": ("127.0.0.1", 8000), "8001/tcp": ("127.0.0.1", s.ports["grpc"]),
                           "8002/tcp": ("127.0.0.1", s.ports["metrics"])}),
     ["8000/tcp is published on host port 8000, not"]),
    (dict(ports=lambda s: {"8000/tcp": ("127.0.0.1", s.ports["http"])}),
     ["container port 8001/tcp is not published", "container port 8002/tcp is not published"]),
    (dict(volumes=lambda s: {str(s.repository): {"bind": "/models", "mode": "rw"}}),
     ["mounted with mode 'rw': read-only ('ro')"]),
    (dict(volumes=lambda s: {str(s.repository): {"bind": "/models/efficientnet_lite0", "mode": "ro"}}),
     ["mounted at '/models/efficientnet_lite0', but Triton is told to read /models"]),
    (dict(volumes={"models": {"bind": "/models", "mode": "ro"}}),
     ["is not mounted (mounted: models); give its absolute"]),
    (dict(command=lambda s: ["tritonserver", f"--model-repository={s.repository}"]),
     ["inside the container the repository is at /models"]),
    (dict(command="--model-repository=/models"), ["it must start the server, 'tritonserver'"]),
    (dict(device_requests=None), ["no GPU is requested"]),
    (dict(device_requests=[docker.types.DeviceRequest(count=-1, capabilities=["gpu"])]),
     ["capabilities is ['gpu']: Docker wants a list of lists, [['gpu']]"]),
    (dict(device_requests=[docker.types.DeviceRequest(count=1, capabilities=[["gpu"]])]),
     ["count=1 asks for 1 GPU(s); every GPU is count=-1"]),
    (dict(shm_size=None), ["shm_size is None", "Docker's default of 64 MB is too small"]),
    (dict(detach=None), ["detach is not True: containers.run would wait until Triton exits"]),
    (dict(image="nvcr.io/nvidia/tritonserver:latest"), ["pin a release tag, such as " + DEFAULT_IMAGE]),
    (dict(image="nvcr.io/nvidia/tritonserver:24.10-py3-sdk"), ["the course pins " + DEFAULT_IMAGE]),
], ids=["all_addresses", "wrong_host_port", "only_http", "writable_mount", "mounted_model_folder", "relative_path",
        "host_path_in_command", "no_tritonserver", "no_gpu", "flat_capabilities", "one_gpu", "no_shm", "no_detach",
        "latest_tag", "sdk_image"])
def test_kwargs_mistakes_get_their_message(server, changes, expected):
    verdict = lab04.check_container_kwargs(changed(server, **changes), server)
    assert not verdict.ok
    for part in expected:
        assert part in repr(verdict)


@pytest.mark.server
def test_two_gpus_by_id(server):
    two = changed(server, device_requests=[docker.types.DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]])])
    assert lab04.check_container_kwargs(two, server, gpus=["0", "1"]).ok
    verdict = lab04.check_container_kwargs(right_kwargs(server), server, gpus=["0", "1"])
    assert not verdict.ok and "the GPUs requested are count=-1, not device_ids=['0', '1']" in repr(verdict)


@pytest.mark.server
def test_right_line_passes(server):
    verdict = lab04.check_docker_run(right_line(server), server)
    assert verdict.ok, verdict
    spaced = right_line(server).replace("--gpus=all", "--gpus all").replace("--shm-size=1g", "--shm-size 1g")
    assert lab04.check_docker_run(spaced, server).ok


@pytest.mark.server
@pytest.mark.parametrize("edit, expected", [
    (lambda line, s: line.replace(f"-p 127.0.0.1:{s.ports['http']}:8000", f"-p {s.ports['http']}:8000"),
     ["publishes on every address of the host: write -p 127.0.0.1:"]),
    (lambda line, s: line.replace(":/models:ro", ":/models"), ["mounts the repository writable: add :ro"]),
    (lambda line, s: line.replace("--rm ", ""), ["no --rm"]),
    (lambda line, s: line.replace("--gpus=all ", ""), ["--gpus is missing"]),
    (lambda line, s: line.replace("--shm-size=1g ", ""), ["--shm-size is missing (64 MB): ask for 1g"]),
    (lambda line, s: line.replace(f"{DEFAULT_IMAGE} tritonserver --model-repository=/models",
                                  f"tritonserver --model-repository=/models {DEFAULT_IMAGE}"),
     ["the image is 'tritonserver' (what follows the options)"]),
    (lambda line, s: line.replace("--model-repository=/models", f"--model-repository={s.repository}"),
     ["inside the container the repository is at /models"]),
    (lambda line, s: line.replace("docker run", "docker start"), ["must start with 'docker run'"]),
], ids=["all_addresses", "writable", "no_rm", "no_gpus", "no_shm", "image_last", "host_path", "not_run"])
def test_line_mistakes_get_their_message(server, edit, expected):
    verdict = lab04.check_docker_run(edit(right_line(server), server), server)
    assert not verdict.ok
    for part in expected:
        assert part in repr(verdict)


@pytest.mark.server
def test_the_published_port_is_tried_on_the_real_server(server):
    # Right arguments otherwise, but the HTTP port published where nothing listens: the request must fail.
    from triton_course.runtimes import free_port

    kwargs = right_kwargs(server)
    kwargs["ports"]["8000/tcp"] = ("127.0.0.1", free_port())
    verdict = lab04._try_http(server, kwargs)
    assert verdict is not None and verdict.startswith("no answer at http://127.0.0.1:")
    assert lab04._try_http(server, right_kwargs(server)) is None
