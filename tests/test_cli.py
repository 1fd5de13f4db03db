"""`triton-course` as instructors and scripts use it: doctor, prepare, serve, classify."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from triton_course.paths import course_root
from triton_course.photos import photo, save_jpeg

CLI = [sys.executable, "-m", "triton_course"]


def run(*args, timeout=120):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


DOCTOR_NAMES = ["python", "packages", "embedded triton", "local tritonserver", "gpu", "tensorrt", "perf_analyzer",
                "prometheus",
                "docker engine", "model artifact", "ports 8000-8002", "disk space", "notebooks"]
STATUS = r"^(OK|MISSING \((required|optional)\))\s"


def test_doctor_fits_one_screen_one_line_per_check_and_sums_up():
    result = run("doctor")
    lines = result.stdout.rstrip("\n").splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 100, result.stdout
    status_lines = [line for line in lines if re.match(STATUS, line)]
    assert len(status_lines) == len(DOCTOR_NAMES)
    for name, line in zip(DOCTOR_NAMES, status_lines):
        assert re.match(STATUS + r"\s*" + re.escape(name) + r"\s", line), line
    assert re.search(r"^OK\s+embedded triton\s+Triton 2\.51\.0", result.stdout, re.M)
    # each MISSING line is followed by what to do
    for before, after in zip(lines, lines[1:]):
        if before.startswith("MISSING"):
            assert after.strip().startswith("-> "), before
    # the summary comes last; the exit status says whether everything required is there
    summary = " ".join(lines[lines.index(next(x for x in lines if x.startswith("Ready for the course:"))):])
    required_missing = "MISSING (required)" in result.stdout
    assert result.returncode == (1 if required_missing else 0)
    assert summary.startswith("Ready for the course: NO." if required_missing else "Ready for the course: yes.")
    if "MISSING (optional) prometheus" in result.stdout:
        assert re.search(r"11 \([^)]*prometheus", summary)


def _fake_course(root, lessons=("00_a", "02_c"), solutions=(), copies=()):
    """A course folder with these notebooks: lessons, lab solutions with one exercise each, and the student
    copies the generator makes of those named in `copies`."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from triton_course.tools.student_copies import student_text

    for folder, names in (("notebooks", lessons), ("labs/solutions", solutions)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            nbformat.write(new_notebook(cells=[new_code_cell("# BEGIN SOLUTION\n1\n# END SOLUTION")]),
                           root / folder / f"{name}.ipynb")
    for name in copies:
        (root / "labs" / f"{name}.ipynb").write_text(student_text(root / "labs" / "solutions" / f"{name}.ipynb"))
    (root / "models").mkdir(exist_ok=True)
    return root


def test_doctor_says_not_ready_and_which_lessons_in_a_course_without_its_model(tmp_path):
    root = _fake_course(tmp_path / "course")
    env = dict(os.environ, TRITON_COURSE_ROOT=str(root))
    result = subprocess.run(CLI + ["doctor"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1
    out = result.stdout
    assert re.search(r"^MISSING \(required\) model artifact\s+not built yet: model\.onnx, model\.pt in "
                     + re.escape(str(root)[:20]), out, re.M)
    assert "-> Run `triton-course prepare` (or `make setup`)." in out
    assert re.search(r"^MISSING \(required\) notebooks\s+lessons missing: 01$", out, re.M)
    summary = " ".join(out[out.index("Ready for the course:"):].split())
    assert summary.startswith("Ready for the course: NO. Fix the MISSING (required) lines: model artifact "
                              "(lessons 02 on), notebooks (lessons 01).")


def test_notebooks_check_finds_labs_without_student_copies_and_unreadable_notebooks(tmp_path):
    from triton_course.tools.doctor import check_notebooks

    good = check_notebooks(_fake_course(tmp_path / "good", ("00_a", "01_b"), ("01_lab",), ("01_lab",)))
    assert good.ok and good.detail == "2 lessons (00-01), 1 labs with student copies"

    root = _fake_course(tmp_path / "labs", ("00_a", "01_b"), ("00_lab", "01_lab"), ("01_lab",))
    check = check_notebooks(root)
    assert not check.ok and check.required
    assert check.detail == "labs without a student copy: 00"
    assert check.fix == "Run `triton-course student-copies`."
    assert check.lessons == "labs 00"

    (root / "notebooks" / "01_b.ipynb").write_text("{ not json")
    check = check_notebooks(root)
    assert "not readable as notebooks: 01_b.ipynb" in check.detail and check.lessons == "all"


def test_the_lessons_each_optional_part_changes_are_read_from_the_notebooks(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from triton_course.tools.doctor import USED_BY, lessons_using

    root = _fake_course(tmp_path / "course", ("00_a", "01_b", "02_c", "03_d", "03b_e", "05_f"))
    uses = {"01_b": "perf_analyzer.measure(url)", "02_c": "perf_analyzer.run()", "03_d": "perf_analyzer.x",
            "03b_e": "scaling.added_latency(lb)", "05_f": "perf_analyzer.describe()"}
    for name, code in uses.items():
        nbformat.write(new_notebook(cells=[new_markdown_cell("docker_client() in words only"), new_code_cell(code)]),
                       root / "notebooks" / f"{name}.ipynb")
    assert lessons_using("perf_analyzer", root) == "01-03, 03b, 05"
    assert lessons_using("docker engine", root) == "none"  # markdown does not count
    # in the course itself every part is used by some lesson, and each lesson named exists
    lessons = {p.name.split("_")[0] for p in (course_root() / "notebooks").glob("*.ipynb")}
    for part in USED_BY:
        named = lessons_using(part)
        assert named != "none", part
        for item in named.split(", "):
            assert set(item.split("-")) <= lessons, (part, item)


def test_notebooks_check_names_a_solution_the_generator_cannot_use(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from triton_course.tools.doctor import check_notebooks

    root = _fake_course(tmp_path / "course", ("00_a",), ("00_lab",), ("00_lab",))
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), root / "labs" / "solutions" / "00_lab.ipynb")
    check = check_notebooks(root)
    assert not check.ok and check.lessons == "all"
    assert check.detail.startswith("the student-copy generator failed: 00_lab.ipynb: no code cell has a"), check
    assert check.fix.startswith("Fix the solution notebook it names")


def test_notebooks_check_uses_the_generators_own_check_in_the_course():
    from triton_course.paths import course_root
    from triton_course.tools.doctor import check_notebooks

    said = subprocess.run([sys.executable, "-m", "triton_course", "student-copies", "--check"], cwd=course_root(),
                          capture_output=True, text=True, timeout=120)
    assert said.returncode in (0, 1), said.stderr
    check = check_notebooks()
    assert check.ok == (said.returncode == 0), (check, said.stdout)
    for name in re.findall(r"^missing:\s+labs/(\d\d[a-z]?)_", said.stdout, re.M):
        assert name in check.detail


def test_disk_check_names_the_folder_to_clean():
    from triton_course.paths import course_root
    from triton_course.tools.doctor import check_disk

    assert check_disk().ok  # this machine has room (a few GB)
    check = check_disk(min_free_gb=1e9)
    assert not check.ok and check.required and check.lessons == "all"
    assert check.fix.startswith("Free 1000000000 GB in ")
    assert f"GB free in {course_root()}" in check.detail


def test_every_fix_fits_its_line_and_the_report_fits_the_screen_when_everything_is_missing(tmp_path, monkeypatch):
    from triton_course.tools.doctor import FIX_WIDTH, Check, check_disk, report, run_checks

    # A clone and a cache deep in long paths: a fix that quotes a path must still fit its line.
    deep = tmp_path / ("a-course-clone-in-a-long-folder-name-" * 2) / "triton-inference-server-course"
    deep.mkdir(parents=True)  # an empty course folder: only the lines' lengths are checked here
    cache = tmp_path / ("a-cache-folder-with-a-long-name-" * 3)
    assert len(str(deep)) >= 60 and len(str(cache)) >= 60
    monkeypatch.setenv("TRITON_COURSE_ROOT", str(deep))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    checks = run_checks(workshop=True)
    for check in checks + [check_disk(min_free_gb=10**4)]:
        assert len(check.fix) <= FIX_WIDTH, check.fix
    full = check_disk(min_free_gb=10**4)
    assert not full.ok and full.fix.startswith("Free 10000 GB in ")
    from triton_course.tools.doctor import short_path

    for width in (70, 40, 12, 3):
        assert len(short_path(cache / "triton-course", width)) <= width
    assert short_path(cache / "triton-course", 40).endswith("/triton-course")
    broken = [Check(c.name, False, "x" * 300, "y" * 300, c.required, c.lessons or "all") for c in checks]
    lines = report(broken).splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 100
    fixes = [line for line in lines if line.lstrip().startswith("-> ")]
    assert len(fixes) == sum(c.required for c in broken)  # required fixes stay, optional ones give way
    assert " ".join(lines).endswith("(Fixes of optional items left out to fit the screen.)")


def test_embedded_server_is_optional_where_a_local_tritonserver_exists(tmp_path, monkeypatch):
    from triton_course.tools.doctor import run_checks

    fake = tmp_path / "tritonserver"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TRITONSERVER", str(fake))
    checks = {c.name: c for c in run_checks()}
    assert checks["local tritonserver"].ok and checks["local tritonserver"].detail == str(fake)
    assert not checks["embedded triton"].required


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
