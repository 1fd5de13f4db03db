"""NGC's Triton images (nvcr.io/nvidia/tritonserver:<tag>-py3): which Triton, which CUDA, which
driver each needs, and which are affected by NVIDIA's published security advisories.

The one home of this table: the doctor, the Docker runtime's default image, lesson 04 and
docs/pods.md all read it. Only values found in NVIDIA's own text are filled in; None means "not
checked: see NVIDIA's release notes". Where each value comes from:

- Triton version per tag: the `release_version` / `triton_container_version` pair in build.py on the
  server repository's release branch rNN.MM (github.com/triton-inference-server/server); 26.11 = 2.75
  is recorded in the course's DESIGN.md.
- CUDA and driver per tag: "Driver Requirements" in NVIDIA's Triton release notes
  (docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-NN-MM.html).
- The driver floor of a CUDA major version (12.x: 525, 13.x: 580): NVIDIA's "CUDA Minor Version
  Compatibility" table (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html).
  A tag never needs less than its CUDA family's floor, even where its release notes name a lower
  driver (25.08-26.02 name 575 for CUDA 13).
- `--allow-client-shm`: src/command_line_parser.cc, added in v2.69.0 (commit 546a787, "Disable
  client shared memory by default"); docs/protocol/extension_shared_memory.md.
- The advisories: NVIDIA's security bulletins for Triton, as listed in the course's DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpu import driver_version as driver_version  # the host's driver: one probe, in gpu.py

REGISTRY = "nvcr.io/nvidia/tritonserver"
RELEASE_NOTES = "https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-{}.html"

# NVIDIA's advisories for Triton releases before 25.07; CVE-2025-23316 was fixed a release later, in 25.08.
ADVISORIES_BEFORE_2507 = ("CVE-2025-23310", "CVE-2025-23317", "CVE-2025-23319", "CVE-2025-23320",
                          "CVE-2025-23334")
ADVISORY_FIXED_IN_2508 = "CVE-2025-23316"

CUDA_DRIVER_FLOOR = {12: 525, 13: 580}  # CUDA minor version compatibility: the least driver of each family
CLIENT_SHM_FLAG_FROM = (2, 69)  # from this Triton on, client shared memory needs --allow-client-shm=true


@dataclass(frozen=True)
class Release:
    tag: str  # the NGC release, e.g. "24.10"
    triton: str | None  # Triton's version inside it
    cuda: str | None  # the CUDA it is built on
    notes_driver: int | None  # the driver branch its release notes require (None: they name none)

    @property
    def image(self) -> str:
        return f"{REGISTRY}:{self.tag}-py3"

    @property
    def cuda_major(self) -> int | None:
        return int(self.cuda.split(".")[0]) if self.cuda else None

    @property
    def min_driver(self) -> int | None:
        """The least driver branch that runs it: its release notes' figure, never below its CUDA
        family's floor. (Data center GPUs may run some releases on older long-term branches
        through CUDA's forward compatibility: the release notes list which.)"""
        floors = [d for d in (self.notes_driver, CUDA_DRIVER_FLOOR.get(self.cuda_major)) if d]
        return max(floors) if floors else None

    @property
    def advisories(self) -> tuple[str, ...]:
        """The published advisories that affect this release (empty when none does)."""
        return advisories(self.tag)

    @property
    def needs_allow_client_shm(self) -> bool | None:
        return needs_allow_client_shm(self.triton) if self.triton else None


# Oldest first. 24.10 is the release of the course's embedded server (2.51.0) and of its CI image.
RELEASES = (
    Release("24.10", "2.51.0", "12.6.2", 560),
    Release("25.07", "2.59.1", None, None),  # NVIDIA's release-notes index lists no 25.07 page
    Release("25.08", "2.60.0", "13.0.0", 575),
    Release("25.10", "2.62.0", "13.0.2", 575),
    Release("26.02", "2.66.0", "13.1.1", 575),
    Release("26.05", "2.69.0", None, None),
    Release("26.07", "2.71.0", "13.3.1", None),  # its notes point to CUDA Compatibility for the driver
    Release("26.08", "2.72.0", None, None),
    Release("26.10", None, "13.4.3", None),
    Release("26.11", "2.75.0", "13", None),  # the current release (DESIGN.md): CUDA 13 since 25.08
)
CURRENT = RELEASES[-1]
EMBEDDED_RELEASE = RELEASES[0]  # nvidia-pytriton 0.7.0 embeds Triton 2.51.0, the one of NGC 24.10


def _key(tag: str) -> tuple[int, int]:
    year, month = tag.split("-")[0].split(".")[:2]
    return int(year), int(month)


def release(tag_or_image: str) -> Release | None:
    """The table's row for a tag ("26.11", "26.11-py3") or an image reference, or None."""
    tag = tag_or_image.rsplit(":", 1)[-1].split("-")[0]
    return next((r for r in RELEASES if r.tag == tag), None)


def advisories(tag: str) -> tuple[str, ...]:
    """NVIDIA's published Triton advisories that affect release `tag` ("24.10", "25.07-py3", ...)."""
    if _key(tag) < (25, 7):
        return ADVISORIES_BEFORE_2507 + (ADVISORY_FIXED_IN_2508,)
    if _key(tag) < (25, 8):
        return (ADVISORY_FIXED_IN_2508,)
    return ()


def is_affected(tag: str) -> bool:
    """Whether release `tag` is affected by the advisories (so not for serving beyond a lab's loopback)."""
    return bool(advisories(tag))


def needs_allow_client_shm(triton_version: str) -> bool:
    """Whether this Triton refuses client shared memory unless started with --allow-client-shm=true."""
    major, minor = (int(x) for x in triton_version.split(".")[:2])
    return (major, minor) >= CLIENT_SHM_FLAG_FROM


def newest_runnable(driver: str | int | None, *, free_of_advisories: bool = False) -> Release | None:
    """The newest release in the table that a host with this NVIDIA driver ("580.95.05", or the branch
    580) can run, or None. Without a driver (no GPU), every release runs on the CPU: the newest."""
    branch = int(str(driver).split(".")[0]) if driver not in (None, "") else None
    for candidate in reversed(RELEASES):
        if free_of_advisories and candidate.advisories:
            continue
        if branch is None or (candidate.min_driver is not None and branch >= candidate.min_driver):
            return candidate
    return None


def default_release(driver: str | int | None) -> tuple[Release, str]:
    """The release the course runs in Docker on a host with this driver, and why, in one sentence."""
    best = newest_runnable(driver, free_of_advisories=True)
    if driver in (None, ""):
        return CURRENT, f"no NVIDIA driver here: the current release, {CURRENT.tag}, on the CPU"
    if best is not None:
        return best, f"driver {driver}: the newest release it runs that no advisory affects, {best.tag}"
    fallback = newest_runnable(driver) or EMBEDDED_RELEASE
    return fallback, (f"driver {driver} is too old for every release free of the advisories: {fallback.tag} "
                      f"is affected ({', '.join(fallback.advisories)}); keep it on 127.0.0.1 and upgrade the "
                      f"driver to {CUDA_DRIVER_FLOOR[13]} or later")


def table_rows() -> list[dict[str, str]]:
    """The table as a learner reads it; a value not checked says where to look."""
    look = "see NVIDIA's release notes"
    rows = []
    for r in RELEASES:
        notes = []
        if r.advisories:
            first, *rest = r.advisories
            notes.append("advisories: " + ", ".join([first] + ["-" + a.removeprefix("CVE-2025-") for a in rest]))
        if r.needs_allow_client_shm:
            notes.append("client shm needs --allow-client-shm=true")
        if r is EMBEDDED_RELEASE:
            notes.append("= the embedded server")
        if r is CURRENT:
            notes.append("current")
        rows.append({"tag": f"{r.tag}-py3", "Triton": r.triton or look,
                     "CUDA": (r.cuda + ".x" if r.cuda and "." not in r.cuda else r.cuda) or look,
                     "min driver": str(r.min_driver) if r.min_driver else look, "notes": "; ".join(notes)})
    return rows


def table_markdown() -> str:
    rows = table_rows()
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines)
