"""The table of NGC Triton releases: the tag a driver can run, the advisories, the client-shm flag."""

from __future__ import annotations

import os
import stat

import pytest

from triton_course import ngc
from triton_course.runtimes.embedded import TRITON_VERSION


def test_table_is_ordered_and_its_triton_versions_grow_with_the_tags():
    tags = [ngc._key(r.tag) for r in ngc.RELEASES]
    assert tags == sorted(tags) and len(set(tags)) == len(tags)
    versions = [tuple(map(int, r.triton.split("."))) for r in ngc.RELEASES if r.triton]
    assert versions == sorted(versions)
    assert ngc.CURRENT.tag == "26.10" and ngc.CURRENT.triton is None  # release notes only (see ngc.py)
    assert ngc.release("26.08").triton == "2.72.0"  # the newest release branch of the server read
    assert ngc.release("25.07").triton == "2.59.1"  # a patch release: not one minor version per month
    # the embedded server is the Triton of the table's first row (and of the CI image)
    assert ngc.EMBEDDED_RELEASE.triton == TRITON_VERSION == "2.51.0"
    assert ngc.release("nvcr.io/nvidia/tritonserver:24.10-py3") is ngc.EMBEDDED_RELEASE
    assert ngc.release("26.10-py3").image == "nvcr.io/nvidia/tritonserver:26.10-py3"
    assert ngc.release("26.11") is None  # no source seen names it
    assert ngc.release("23.01") is None


def test_minimum_driver_never_below_the_cuda_family_floor():
    by_tag = {r.tag: r for r in ngc.RELEASES}
    assert by_tag["24.10"].min_driver == 560  # its release notes
    assert by_tag["25.08"].min_driver == 580  # notes say 575, but CUDA 13.x needs 580
    assert by_tag["26.10"].min_driver == 580
    assert by_tag["26.05"].min_driver is None  # not checked: the table says where to look


@pytest.mark.parametrize("driver, newest, free", [
    ("580.95.05", "26.10", "26.10"),
    (590, "26.10", "26.10"),
    ("575.57.08", "24.10", None),  # CUDA 13 releases need 580; 24.10 runs but is affected
    ("560.35.03", "24.10", None),
    ("550.54.15", None, None),
    (None, "26.10", "26.10"),  # no GPU: every release runs on the CPU
])
def test_newest_release_a_driver_can_run(driver, newest, free):
    found = ngc.newest_runnable(driver)
    assert (found.tag if found else None) == newest
    found = ngc.newest_runnable(driver, free_of_advisories=True)
    assert (found.tag if found else None) == free


def test_default_release_explains_its_choice():
    chosen, why = ngc.default_release("580.95.05")
    assert chosen is ngc.CURRENT and "no advisory affects" in why
    chosen, why = ngc.default_release(None)
    assert chosen is ngc.CURRENT and "on the CPU" in why
    chosen, why = ngc.default_release("570.124.06")
    assert chosen.tag == "24.10" and "CVE-2025-23310" in why and "580 or later" in why


def test_advisory_table_rows_are_whole_and_unique():
    cves = [a.cve for a in ngc.ADVISORIES]
    assert len(cves) == len(set(cves)) == 66
    for a in ngc.ADVISORIES:
        assert a.cve.startswith("CVE-") and 0 < a.cvss <= 10
        assert a.severity == ("CRITICAL" if a.cvss >= 9 else "HIGH" if a.cvss >= 7 else "MEDIUM"), a
        ngc._key(a.fixed_in)  # a tag
    assert ngc.first_free_release() == "26.07"  # 5875's CVE-2026-16497 is fixed in 26.07


@pytest.mark.parametrize("tag, count, some", [
    ("24.10", 58, ("CVE-2025-23310", "CVE-2025-23316", "CVE-2026-47627", "CVE-2026-16497")),
    ("24.11-py3", 59, ("CVE-2024-53880",)),  # 5612 affects 24.11 only
    ("24.12", 58, ("CVE-2025-23310",)),
    ("25.07", 40, ("CVE-2025-23316", "CVE-2026-24207")),
    ("26.03", 16, ("CVE-2026-24264", "CVE-2026-47625")),
    ("26.06", 1, ("CVE-2026-16497",)),
    ("26.07", 0, ()),
    ("26.10-py3", 0, ()),
])
def test_advisories_by_release(tag, count, some):
    found = ngc.advisories(tag)
    assert len(found) == count and set(some) <= set(found)
    assert ngc.is_affected(tag) == bool(count)
    assert "CVE-2024-53880" not in ngc.advisories("24.10")
    assert "CVE-2023-31036" not in ngc.advisories("24.10")  # fixed in 23.11 (Triton 2.40)


def test_summary_counts_the_embedded_release():
    line = ngc.summary(ngc.EMBEDDED_RELEASE.tag)
    assert line.startswith("24.10: affected by 58 of the 66 advisories (6 critical, highest CVSS 9.8")
    assert "none of the" in ngc.summary("26.08")


@pytest.mark.parametrize("version, needed", [("2.51.0", False), ("2.67.0", False), ("2.68.0", True),
                                             ("2.69.0", True), ("2.75.0", True), ("3.0.0", True)])
def test_client_shared_memory_flag_from_2_68(version, needed):
    assert ngc.needs_allow_client_shm(version) is needed


def test_client_shared_memory_flag_by_tag_where_the_triton_version_is_not_known():
    assert ngc.CURRENT.triton is None and ngc.CURRENT.needs_allow_client_shm
    assert ngc.release("26.04").needs_allow_client_shm and not ngc.release("26.02").needs_allow_client_shm


@pytest.mark.parametrize("capability, below", [("6.1", True), ("7.0", True), ("7.5", False), ("8.0", False),
                                               ("9.0", False), ("12.0", False), (None, False)])
def test_compute_capability_floor_is_7_5(capability, below):
    assert ngc.MIN_COMPUTE_CAPABILITY == (7, 5)
    assert ngc.below_compute_floor(capability) is below


def test_rendered_table_says_where_to_look_for_what_was_not_checked():
    rows = ngc.table_rows()
    assert [r["tag"] for r in rows][0] == "24.10-py3"
    first = rows[0]
    assert first["CUDA"] == "12.6.2" and first["min driver"] == "560" and "= the embedded server" in first["notes"]
    assert first["notes"].startswith("58 advisories: CVE-2025-23310")
    assert next(r for r in rows if r["tag"] == "26.05-py3")["CUDA"] == "see NVIDIA's release notes"
    assert "--allow-client-shm=true" in next(r for r in rows if r["tag"] == "26.10-py3")["notes"]
    assert "--allow-client-shm=true" in next(r for r in rows if r["tag"] == "26.04-py3")["notes"]
    assert "--allow-client-shm" not in next(r for r in rows if r["tag"] == "26.02-py3")["notes"]
    assert ngc.advisories_markdown().count("\n| CVE-") == len(ngc.ADVISORIES)
    markdown = ngc.table_markdown().splitlines()
    assert markdown[0].startswith("| tag | Triton | CUDA | min driver | notes |")
    assert len(markdown) == len(rows) + 2


def _fake_smi(folder, output: str):
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return folder


def test_driver_version_from_nvidia_smi(tmp_path, monkeypatch):
    # This machine has no GPU: a stand-in nvidia-smi prints what the real one prints for this query.
    monkeypatch.setenv("PATH", str(_fake_smi(tmp_path, "0, NVIDIA H200, 580.95.05, 143771 MiB\\n"
                                                        "1, NVIDIA H200, 580.95.05, 143771 MiB\\n"))
                       + os.pathsep + os.environ["PATH"])
    assert ngc.driver_version() == "580.95.05"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert ngc.driver_version() is None


def test_doctor_gpu_line_names_the_newest_tag_or_says_there_is_no_gpu(tmp_path, monkeypatch):
    from triton_course.tools.doctor import SCREEN_COLUMNS, check_gpu

    monkeypatch.delenv("TRITON_COURSE_DEVICE", raising=False)
    monkeypatch.setenv("PATH", str(_fake_smi(tmp_path, "0, NVIDIA H200, 580.95.05, 143771 MiB\\n"))
                       + os.pathsep + os.environ["PATH"])
    check = check_gpu()
    assert check.ok and check.detail == "driver 580.95.05, newest NGC tag 26.10-py3: GPU 0: NVIDIA H200"
    assert len(check.line()) <= SCREEN_COLUMNS
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    check = check_gpu()
    assert not check.ok and check.detail.startswith("no GPU")


def _smi_with_compute_cap(folder, capability: str):
    """nvidia-smi answering the GPU list and, for --query-gpu=compute_cap, `capability`."""
    smi = folder / "nvidia-smi"
    smi.write_text('#!/bin/sh\nif [ "$1" = "--query-gpu=compute_cap" ]; then echo "%s"; exit 0; fi\n'
                   'echo "0, Tesla P100-PCIE-16GB, 580.95.05, 16384 MiB"\n' % capability)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.parametrize("capability, warned", [("6.0", True), ("7.0", True), ("7.5", False), ("9.0", False)])
def test_compute_capability_probe_and_the_doctor_warn_below_7_5(tmp_path, monkeypatch, capability, warned):
    from triton_course.runtimes.docker import default_image
    from triton_course.tools.doctor import FIX_WIDTH, SCREEN_COLUMNS, check_gpu

    monkeypatch.delenv("TRITON_COURSE_DEVICE", raising=False)
    monkeypatch.setenv("PATH", str(_smi_with_compute_cap(tmp_path, capability)) + os.pathsep + os.environ["PATH"])
    assert ngc.compute_capability() == capability
    check = check_gpu()
    assert check.ok is not warned
    assert (f"compute capability {capability} < 7.5" in check.detail) is warned
    assert max(map(len, check.lines())) <= SCREEN_COLUMNS and len(check.fix) <= FIX_WIDTH
    assert ("compute capability is " + capability in default_image()[1]) is warned


def test_compute_capability_is_none_without_a_gpu_or_an_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert ngc.compute_capability() is None
    # an nvidia-smi that prints the GPU list for any query (an old driver): not a capability
    monkeypatch.setenv("PATH", str(_fake_smi(tmp_path, "0, NVIDIA H200, 580.95.05, 143771 MiB\\n"))
                       + os.pathsep + os.environ["PATH"])
    assert ngc.compute_capability() is None


def test_local_runtime_allows_client_shm_on_an_image_from_2_68(reference_repo, monkeypatch):
    from triton_course.runtimes import LocalServer

    monkeypatch.setenv("TRITONSERVER", "/bin/true")  # only its command line is built here, nothing runs
    for version, flagged in (("2.72.0", True), ("2.68.0", True), ("2.67.0", False), ("2.51.0", False), (None, False)):
        if version:
            monkeypatch.setenv("TRITON_SERVER_VERSION", version)  # what NGC's image sets
        else:
            monkeypatch.delenv("TRITON_SERVER_VERSION", raising=False)
        srv = LocalServer(reference_repo)
        srv.ports = {"http": 1, "grpc": 2, "metrics": 3}
        assert ("--allow-client-shm=true" in srv.command()) is flagged, version
    monkeypatch.setenv("TRITON_SERVER_VERSION", "2.72.0")
    srv = LocalServer(reference_repo, allow_client_shm=False)
    srv.ports = {"http": 1, "grpc": 2, "metrics": 3}
    assert "--allow-client-shm=true" not in srv.command()
