"""`triton-course` as instructors and scripts use it: doctor, prepare, serve, classify."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from triton_course.photos import photo, save_jpeg

CLI = [sys.executable, "-m", "triton_course"]


def run(*args, timeout=120):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def test_doctor_prints_one_line_per_check():
    result = run("doctor")
    names = ["python", "packages", "embedded triton", "local tritonserver", "gpu", "tensorrt", "prometheus",
             "docker engine", "model artifact", "ports 8000-8002"]
    status_lines = [line for line in result.stdout.splitlines() if re.match(r"^(OK|MISSING)", line)]
    assert len(status_lines) == len(names)
    for name, line in zip(names, status_lines):
        assert name in line
    assert re.search(r"^OK\s+embedded triton", result.stdout, re.M)
    # exit status says whether everything required is there
    required_missing = re.search(r"^MISSING\s{2}", result.stdout, re.M)
    assert result.returncode == (1 if required_missing else 0)


def test_prepare_builds_the_reference_repository(reference_repo):
    result = run("prepare")
    assert result.returncode == 0, result.stderr
    assert "Reference repository ready" in result.stdout
    assert (reference_repo / "efficientnet_lite0" / "1" / "model.onnx").stat().st_size > 10_000_000


@pytest.mark.server
def test_serve_then_classify_then_sigterm(reference_repo, tmp_path):
    images = [save_jpeg(photo("coffee"), tmp_path / "coffee.jpg"), save_jpeg(photo("flower"), tmp_path / "flower.jpg")]
    serve = subprocess.Popen(CLI + ["serve", str(reference_repo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = serve.stdout.readline()
            assert line, f"serve exited early: {serve.stderr.read()}"
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        out = "".join(lines)
        http = re.search(r"^HTTP\s+(http://127\.0\.0\.1:\d+)$", out, re.M).group(1)
        grpc = re.search(r"^gRPC\s+(127\.0\.0\.1:\d+)$", out, re.M).group(1)
        assert re.search(r"^metrics\s+http://127\.0\.0\.1:\d+/metrics$", out, re.M)

        result = run("classify", *map(str, images), "--url", http)
        assert result.returncode == 0, result.stderr
        assert re.search(r"coffee\.jpg\n\s+0\.\d{4}\s+espresso", result.stdout)
        assert re.search(r"flower\.jpg\n\s+0\.\d{4}\s+daisy", result.stdout)
        result = run("classify", str(images[0]), "--url", grpc, "--protocol", "grpc", "--top", "1")
        assert "espresso" in result.stdout and result.stdout.count("\n") == 2

        children = {p.pid for p in psutil.Process(serve.pid).children(recursive=True)}
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
        time.sleep(0)  # nothing to wait for: stop() has already reaped the server
        assert not [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    finally:
        if serve.poll() is None:
            serve.kill()


def test_classify_explains_a_file_that_is_not_an_image(tmp_path):
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("not a picture")
    result = run("classify", str(bogus), "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "is not an image Pillow can decode" in result.stderr


def test_classify_explains_no_server(tmp_path):
    image = save_jpeg(photo("coffee"), tmp_path / "coffee.jpg")
    result = run("classify", str(image), "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "No Triton server answers at http://127.0.0.1:9" in result.stderr


@pytest.mark.server
def test_serve_exits_non_zero_with_the_model_error(tmp_path, copy_model):
    repo = tmp_path / "repo"
    copy_model(repo, "bad", edit=lambda t: t.replace("dims: [3, 224, 224]", "dims: [-1, 3, 224, 224]"))
    result = run("serve", str(repo))
    assert result.returncode == 2
    assert "Model 'bad' failed to load." in result.stderr
    assert "an initial batch dimension" in result.stderr
    assert "Fix:" in result.stderr
