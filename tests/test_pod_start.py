"""scripts/pod_start.sh: the start command of a pod whose image is NGC's Triton image (docs/pods.md).

No RunPod here, so the test goes as far as this machine allows: a real Docker engine runs the
course's stand-in for nvcr.io/nvidia/tritonserver:24.10-py3 ($TRITON_IMAGE, built by
scripts/docker_engine.sh: Triton 2.51.0 in the NGC layout, Debian 12, Python 3.11, pip), with a
copy of this checkout on a folder mounted at /workspace, as a pod's volume is. The script
installs the course with pip from the same package sources as this machine's pip, builds the
model, runs the doctor and starts JupyterLab; the test then talks to JupyterLab through a port
published on 127.0.0.1 only, serves the course model with the image's tritonserver from inside
the container, and starts a second container on the same volume, as a pod restart does.

The first tests need neither Docker nor root: the script's syntax, shellcheck, and its errors.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from triton_course import ngc

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pod_start.sh"
COURSE_IN_POD = "/workspace/triton-course"
INSTALL_DEADLINE = 900  # seconds for the first start: pip, the model export, the doctor, JupyterLab


def run_script(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "POD_START_ON_ERROR": "exit"}
    return subprocess.run(["bash", str(SCRIPT)], env=base | env, capture_output=True, text=True, timeout=timeout)


# --- without Docker ------------------------------------------------------------------------------
def test_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shellcheck_is_clean():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_script_names_the_course_s_current_release():
    # A shell script cannot import triton_course.ngc: its tag is written out, and must follow the table.
    images = set(re.findall(r"nvcr\.io/nvidia/tritonserver:[0-9][0-9.]*-py3", SCRIPT.read_text()))
    assert images == {ngc.CURRENT.image}


def test_refuses_without_tritonserver_and_says_which_image(tmp_path):
    if Path("/opt/tritonserver/bin/tritonserver").exists() or shutil.which("tritonserver", path="/usr/bin:/bin"):
        pytest.skip("this machine has a tritonserver")
    result = run_script({"TRITONSERVER": str(tmp_path / "missing")})
    assert result.returncode == 1
    assert f"course: {ROOT}" in result.stdout  # found its own checkout
    assert "ERROR: No tritonserver in this container" in result.stderr
    assert ngc.CURRENT.image in result.stderr and "make setup" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_without_a_course_it_asks_for_the_repository(tmp_path):
    result = run_script({"TRITON_COURSE_ROOT": str(tmp_path / "course")})
    assert result.returncode == 1
    assert f"ERROR: No course in {tmp_path / 'course'}" in result.stderr
    assert "TRITON_COURSE_REPO" in result.stderr


def test_on_runpod_an_error_keeps_the_container_up(tmp_path):
    """A start command that exits makes RunPod restart the container again and again; after an
    error the script prints it and stays, so that the learner can connect and fix it."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "RUNPOD_POD_ID": "podtest",
           "TRITON_COURSE_ROOT": str(tmp_path / "nowhere")}
    proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("stays up" in line for line in lines):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
        assert any("ERROR: No course in" in line for line in lines), lines
        assert any("stays up" in line for line in lines), lines
        time.sleep(0.5)
        assert proc.poll() is None, "the script exited"
    finally:
        proc.kill()
        proc.wait()


def test_clones_the_course_when_told_where_from(tmp_path):
    if not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    target = tmp_path / "workspace" / "triton-course"
    result = run_script({"TRITON_COURSE_ROOT": str(target), "TRITON_COURSE_REPO": f"file://{ROOT}",
                         "TRITONSERVER": str(tmp_path / "missing")})
    assert f"cloning file://{ROOT} into {target}" in result.stdout, result.stderr
    assert (target / "pyproject.toml").is_file() and (target / "notebooks").is_dir()
    # then it goes on to the next step, which fails here: no tritonserver on this machine
    assert result.returncode == 1 and "No tritonserver" in result.stderr


def test_the_documented_start_command_clones_then_hands_over(tmp_path):
    """The Container Start Command of docs/pods.md, with /workspace moved to a scratch folder and the
    course served from a git repository made of this working tree."""
    if not shutil.which("git"):
        pytest.skip("needs git")
    docs = (ROOT / "docs" / "pods.md").read_text()
    line = next(x for x in docs.splitlines() if x.startswith("bash -c 'D=/workspace/triton-course;"))
    source = tmp_path / "source"
    copy_checkout(source)
    git = ["git", "-C", str(source), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "course"]):
        subprocess.run(git + args, check=True, capture_output=True)
    volume = tmp_path / "workspace"
    volume.mkdir()
    command = line.replace("/workspace/", f"{volume}/")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "POD_START_ON_ERROR": "exit",
           "TRITON_COURSE_REPO": f"file://{source}", "TRITONSERVER": str(tmp_path / "missing")}
    for _ in range(2):  # the second start finds the clone on the volume
        result = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=60)
        assert f"course: {volume / 'triton-course'}" in result.stdout, result.stderr
        # the course's own script runs, and stops where this machine differs from a pod: no tritonserver
        assert result.returncode == 1 and "No tritonserver" in result.stderr
    assert (volume / "triton-course" / ".git").is_dir()


def test_refuses_a_folder_that_holds_something_else(tmp_path):
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "notes.txt").write_text("mine")
    result = run_script({"TRITON_COURSE_ROOT": str(tmp_path / "course"), "TRITON_COURSE_REPO": "file:///nowhere"})
    assert result.returncode == 1
    assert "exists but holds no course" in result.stderr
    assert (tmp_path / "course" / "notes.txt").read_text() == "mine"


# --- in a container of the NGC-layout image ------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    """A docker SDK client for the engine in $DOCKER_HOST, and the image in $TRITON_IMAGE (pulled)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (the engine's socket; the container writes root-owned files into the volume)")
    image = os.environ.get("TRITON_IMAGE")
    if not image:
        pytest.skip("no TRITON_IMAGE: run `bash scripts/docker_engine.sh start`, then "
                    "`eval \"$(bash scripts/docker_engine.sh env)\"`")
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine to test with"
        pytest.skip(f"no Docker engine answers ({str(exc).splitlines()[0][:160]})")
    from docker.errors import ImageNotFound

    try:
        client.images.get(image)
    except ImageNotFound:
        name, _, tag = image.rpartition(":")
        client.images.pull(name, tag=tag)
    yield client, image
    client.close()


def pip_sources() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """This machine's pip settings as PIP_* variables, and a read-only mount of every local file or
    folder any of them names (wheel folders, file:// indexes, the CA bundle, a constraints or requirements
    file, ...): pip in the container then installs from the same sources, under the same constraints,
    through the same TLS interception, as pip here. Every setting is passed, and every path it names
    that exists here is mounted at the same place."""
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        match = re.match(r"^(global|install|download|:env:)\.([\w-]+)='(.*)'$", line)
        if match:
            env.setdefault("PIP_" + match.group(2).upper().replace("-", "_"), match.group(3))
    mounts = {}
    for key, value in env.items():
        for item in value.split():
            path = item.removeprefix("file://").rstrip("/")
            if key.endswith("INDEX_URL") and item.startswith("file://"):
                path = os.path.dirname(path)  # the index's pages link to files beside its simple/ folder
            if path.startswith("/") and os.path.exists(path):
                mounts[path] = {"bind": path, "mode": "ro"}
    return env, mounts


def test_every_local_path_a_pip_setting_names_is_mounted(tmp_path, monkeypatch):
    """The container's pip fails on a setting that names a file it cannot see (a constraints file:
    `Could not open requirements file`), so each such file or folder is mounted read-only."""
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=9\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
    monkeypatch.setenv("PIP_FIND_LINKS", f"{wheels} {tmp_path / 'absent'}")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"file://{tmp_path}/index/simple https://pypi.example/simple")
    (tmp_path / "index" / "simple").mkdir(parents=True)
    env, mounts = pip_sources()
    assert env["PIP_CONSTRAINT"] == str(constraints)
    for path in (constraints, wheels, tmp_path / "index"):
        assert mounts[str(path)] == {"bind": str(path), "mode": "ro"}
    assert str(tmp_path / "absent") not in mounts  # named but not here: nothing to mount


def copy_checkout(target: Path) -> None:
    """The course as a learner's clone has it: no environment, no built model, no lesson output."""
    ignore = shutil.ignore_patterns(".git", ".venv", ".venv-aiperf", ".carry", "workspace", "downloads", "__pycache__",
                                    "*.egg-info", ".pytest_cache", ".ipynb_checkpoints", "model.onnx", "*.bak")
    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove(client, name: str) -> None:
    from docker.errors import NotFound

    try:
        client.containers.get(name).remove(force=True)
    except NotFound:
        pass


def wait_for_lab(container, url: str, token: str, deadline: float) -> None:
    """Poll JupyterLab's /api/status until it answers, the container stops, or time runs out."""
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("created", "running"):
            pytest.fail(f"the start script exited ({container.attrs['State'].get('ExitCode')}):\n"
                        + container.logs().decode(errors="replace")[-6000:])
        try:
            if requests.get(f"{url}/api/status", headers={"Authorization": f"token {token}"}, timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail("JupyterLab did not answer in time:\n" + container.logs().decode(errors="replace")[-6000:])


def terminal_output(url: str, token: str, command: str, timeout: float = 30) -> str:
    """Open a JupyterLab terminal, run one command in it, return what it printed."""
    import json

    import websocket

    auth = {"Authorization": f"token {token}"}
    name = requests.post(f"{url}/api/terminals", headers=auth, timeout=10).json()["name"]
    ws = websocket.create_connection(f"ws{url[4:]}/terminals/websocket/{name}", header=auth, timeout=timeout)
    try:
        ws.send(json.dumps(["stdin", f"{command}; echo END-OF-OUTPUT\r"]))
        output, deadline = "", time.monotonic() + timeout
        while time.monotonic() < deadline and not re.search(r"^END-OF-OUTPUT", output, re.M):
            message = json.loads(ws.recv())
            if message[0] == "stdout":
                output += message[1].replace("\r", "")
        return output
    finally:
        ws.close()
        requests.delete(f"{url}/api/terminals/{name}", headers=auth, timeout=10)


SERVE_IN_POD = """
from triton_course.inference import classify
from triton_course.photos import photo
from triton_course.runtimes import best_runtime, server
assert best_runtime() == "local", best_runtime()
with server() as srv:
    top = classify([photo("coffee")], srv.http_url, k=1)[0][0][0]
    print(srv.runtime, srv.binary(), srv.version, top)
"""


@pytest.mark.server
def test_pod_start_in_the_ngc_layout_image(engine, tmp_path):
    client, image = engine
    volume = tmp_path / "workspace"
    copy_checkout(volume / "triton-course")
    env, mounts = pip_sources()
    token = secrets.token_hex(16)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"triton-course-pod-test-{os.getpid()}"
    restart_name = f"{name}-restart"
    pod_env = env | {"JUPYTER_TOKEN": token, "RUNPOD_POD_ID": "podtest", "POD_START_ON_ERROR": "exit"}
    volumes = {str(volume): {"bind": "/workspace", "mode": "rw"}} | mounts
    started = time.monotonic()
    try:
        container = client.containers.run(
            image, ["bash", f"{COURSE_IN_POD}/scripts/pod_start.sh"], name=name, detach=True,
            environment=pod_env, volumes=volumes, ports={"8888/tcp": ("127.0.0.1", port)})
        wait_for_lab(container, url, token, started + INSTALL_DEADLINE)
        first_start = time.monotonic() - started
        logs = container.logs().decode(errors="replace")

        # The packages are installed in the environment on the volume, and the doctor is content.
        assert f"course: {COURSE_IN_POD}" in logs
        assert "tritonserver: /opt/tritonserver/bin/tritonserver (Triton 2.51.0" in logs
        assert f"installing the course and its pinned packages into {COURSE_IN_POD}/.venv" in logs
        assert "Lesson 16's language model ready: /workspace/triton-course/downloads/" in logs
        assert re.search(r"^OK\s+packages\s+all pinned versions installed$", logs, re.M), logs[-4000:]
        assert re.search(r"^OK\s+local tritonserver\s+/opt/tritonserver/bin/tritonserver$", logs, re.M)
        assert re.search(r"^OK\s+model artifact\s+/workspace/triton-course/models/", logs, re.M)
        # perf_analyzer: the program of the tritonclient 2.51.0 wheel, and libb64-0d from apt
        assert re.search(r"^OK\s+perf_analyzer\s+2\.51\.0 \(from the tritonclient 2\.51\.0 wheel\)", logs, re.M), \
            "\n".join(line for line in logs.splitlines() if "perf_analyzer" in line or "libb64" in line)
        assert not re.search(r"^MISSING \(required\)", logs, re.M), "a required check failed"
        assert (volume / "triton-course" / "models" / "efficientnet_lite0" / "1" / "model.onnx").stat().st_size > 1e7
        assert token not in logs  # a token given by the learner is not printed
        assert "https://podtest-8888.proxy.runpod.net" in logs

        # JupyterLab: on the published port, token required, notebooks from the course folder.
        assert requests.get(f"{url}/api/status", timeout=10).status_code == 403
        auth = {"Authorization": f"token {token}"}
        listing = requests.get(f"{url}/api/contents/notebooks", headers=auth, timeout=10).json()
        assert "00_setup.ipynb" in [item["name"] for item in listing["content"]]
        lab = requests.get(f"{url}/lab?token={token}", timeout=10)
        assert lab.ok and "JupyterLab" in lab.text
        home = requests.get(f"{url}/?token={token}", allow_redirects=False, timeout=10)
        assert home.headers["Location"].split("?")[0] == "/lab/tree/notebooks/00_setup.ipynb"  # lesson 00 first
        # A browser behind RunPod's proxy logs in once, then sends the proxy's address as Origin.
        browser = requests.Session()
        browser.get(f"{url}/login", timeout=10)
        browser.post(f"{url}/login", data={"password": token, "_xsrf": browser.cookies.get("_xsrf")}, timeout=10)
        proxy = browser.get(f"{url}/api/status", headers={"Origin": "https://podtest-8888.proxy.runpod.net"},
                            timeout=10)
        other = browser.get(f"{url}/api/status", headers={"Origin": "https://elsewhere.example"}, timeout=10)
        assert (proxy.status_code, other.status_code) == (200, 404)

        # A JupyterLab terminal finds the course's Python and command first.
        shell = terminal_output(url, token, "command -v python triton-course; echo root=$TRITON_COURSE_ROOT")
        assert f"{COURSE_IN_POD}/.venv/bin/python" in shell and f"{COURSE_IN_POD}/.venv/bin/triton-course" in shell
        assert f"root={COURSE_IN_POD}" in shell

        # The image's tritonserver serves the course model (the local runtime), as a lesson does.
        venv_bin = f"{COURSE_IN_POD}/.venv/bin"
        served = container.exec_run([f"{venv_bin}/python", "-c", SERVE_IN_POD],
                                    environment={"PATH": f"{venv_bin}:/opt/tritonserver/bin:/usr/bin:/bin"})
        output = served.output.decode(errors="replace")
        assert served.exit_code == 0, output
        assert "local /opt/tritonserver/bin/tritonserver 2.51.0 espresso" in output

        container.stop(timeout=20)  # JupyterLab is the container's main process: SIGTERM ends it
        container.reload()
        assert container.attrs["State"]["ExitCode"] in (0, 143), container.logs().decode()[-2000:]

        # A pod restart: a new container, the same volume. No pip run this time.
        restarted = time.monotonic()
        again = client.containers.run(
            image, ["bash", f"{COURSE_IN_POD}/scripts/pod_start.sh"], name=restart_name, detach=True,
            environment=pod_env | {"POD_START_NO_LAB": "1"}, volumes=volumes)
        status = again.wait(timeout=300)
        restart = time.monotonic() - restarted
        logs = again.logs().decode(errors="replace")
        assert status["StatusCode"] == 0, logs
        assert "packages: already installed" in logs and "Collecting" not in logs
        assert re.search(r"^OK\s+local tritonserver", logs, re.M)
        assert re.search(r"^OK\s+perf_analyzer\s+2\.51\.0", logs, re.M), logs[-3000:]
        # The downloaded models live on the volume: a restart neither downloads nor converts them again.
        assert "Lesson 16's language model ready: /workspace/triton-course/downloads/" in logs
        assert "Converting" not in logs, logs[-3000:]
        print(f"\nfirst start to JupyterLab answering: {first_start:.0f} s; restart to doctor: {restart:.1f} s")
    finally:
        remove(client, name)
        remove(client, restart_name)
