"""Where the course gets perf_analyzer: Perf Analyzer 2.51.0 taken out of the tritonclient 2.51.0 wheel
into the environment (triton_course.perf_analyzer.install), how it is found, and the errors that say
what is missing. The installs here download the real wheel with pip, as `triton-course prepare` does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from triton_course import perf_analyzer
from triton_course.tools import doctor


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh environment prefix holding only what install() put there."""
    prefix = tmp_path_factory.mktemp("env")
    return prefix, perf_analyzer.install(prefix)


def test_install_puts_perf_analyzer_2_51_into_the_environment(installed):
    prefix, command = installed
    assert command == prefix / "bin" / "perf_analyzer"
    done = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=60)
    assert "Perf Analyzer Version 2.51.0" in done.stdout + done.stderr  # it prints its version on stderr
    program = perf_analyzer.install_dir(prefix) / "perf_analyzer"
    assert program.stat().st_size > 10e6  # the program itself, not a placeholder
    assert perf_analyzer.describe(command) == \
        f"Perf Analyzer 2.51.0 (from the tritonclient 2.51.0 wheel): {command}"
    # The course's own tritonclient library is untouched: only the program came out of the 2.51 wheel.
    import tritonclient

    assert not str(tritonclient.__file__).startswith(str(prefix))


def test_a_second_install_downloads_nothing(installed, monkeypatch):
    prefix, command = installed
    program = perf_analyzer.install_dir(prefix) / "perf_analyzer"
    before = program.stat().st_mtime_ns
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # pip could not download anything now
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    assert perf_analyzer.install(prefix) == command
    assert program.stat().st_mtime_ns == before


def test_a_perf_analyzer_of_its_own_is_kept(installed, tmp_path):
    """Where a perf_analyzer already runs (the perf-analyzer pip package on glibc >= 2.38), install()
    keeps it rather than putting 2.51 in its place."""
    _, command = installed
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "perf_analyzer").symlink_to(command)
    assert perf_analyzer.install(tmp_path) == tmp_path / "bin" / "perf_analyzer"
    assert not perf_analyzer.install_dir(tmp_path).exists()


def test_the_pip_packages_version_is_read_from_its_metadata(tmp_path):
    """The perf-analyzer pip package's program says "Perf Analyzer Version 0.0.0" (2.60.0, on the H200 machine):
    describe() gives the version of the package it came with. A script stands in for that program, which needs
    glibc 2.38 (this machine has 2.36)."""
    program = tmp_path / "site-packages" / "perf_analyzer" / "bin" / "perf_analyzer"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\necho 'Perf Analyzer Version 0.0.0' >&2\n")
    program.chmod(0o755)
    info = tmp_path / "site-packages" / "perf_analyzer-2.60.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.4\nName: perf_analyzer\nVersion: 2.60.0\n")
    assert perf_analyzer.describe(program) == f"Perf Analyzer 2.60.0 (from the perf-analyzer pip package): {program}"


def test_a_failed_download_quotes_pip(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))  # an empty folder: no wheel to be found
    with pytest.raises(perf_analyzer.DownloadError) as err:
        perf_analyzer.install(tmp_path / "env")
    text = str(err.value)
    assert "pip could not download tritonclient 2.51.0" in text
    assert "pip said:" in text and "tritonclient==2.51.0" in text
    assert "triton-course prepare" in text


def test_a_missing_library_is_named_with_the_command_that_installs_it(installed, monkeypatch):
    """The program run without the wrapper's library path lacks libcudart.so.12: the error names the
    library, quotes the system's loader, and gives the command."""
    prefix, _ = installed
    program = perf_analyzer.install_dir(prefix) / "perf_analyzer"
    monkeypatch.setenv("PERF_ANALYZER", str(program))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    assert perf_analyzer.find_binary() is None
    binary, what, fix = perf_analyzer.diagnose()
    assert binary == str(program)
    assert what.startswith("cannot start: the library libcudart.so.12 is missing")
    assert "cannot open shared object file" in what  # the loader's own words
    assert fix.startswith("pip install nvidia-cuda-runtime-cu12==12.9.79")
    check = doctor.check_perf_analyzer()
    assert not check.ok and not check.required and check.lessons == "05-07, 07b, 08, 14, 16"
    assert "libcudart.so.12" in check.detail and "nvidia-cuda-runtime-cu12" in check.fix
    with pytest.raises(perf_analyzer.PerfAnalyzerError) as err:
        perf_analyzer.measure("127.0.0.1:8001")
    assert "libcudart.so.12" in str(err.value)


def test_without_perf_analyzer_the_fix_is_prepare(tmp_path, monkeypatch):
    monkeypatch.delenv("PERF_ANALYZER", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert perf_analyzer.find_binary() is None
    reason = perf_analyzer.unavailable_reason()
    assert reason.startswith("perf_analyzer is not installed in this environment; to fix: run `triton-course prepare`")


def test_the_doctor_reports_the_version_that_runs(monkeypatch):
    monkeypatch.delenv("PERF_ANALYZER", raising=False)
    if perf_analyzer.find_binary() is None:
        pytest.fail("no perf_analyzer in the course's environment: `make setup` installs it; "
                    + perf_analyzer.unavailable_reason())
    check = doctor.check_perf_analyzer()
    assert check.ok and check.detail.startswith(("2.51.0 (from the tritonclient 2.51.0 wheel)",
                                                 "2.6"))  # or the pip package on glibc >= 2.38
