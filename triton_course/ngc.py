"""NGC's Triton images (nvcr.io/nvidia/tritonserver:<tag>-py3): which Triton, which CUDA, which
driver and GPU each needs, and which are affected by NVIDIA's published security advisories.

The one home of this table: the doctor, the Docker runtime's default image, lessons 04 and 13 and
docs/pods.md all read it. Only values found in NVIDIA's own text are filled in; None means "not
checked: see NVIDIA's release notes". Where each value comes from:

- Triton version per tag: `release_version` / `triton_container_version` in build.py on the server
  repository's release branch rYY.MM (github.com/triton-inference-server/server; the snapshot read has
  branches up to r26.08 = 2.72.0, newest commit 2026-08-19). 26.10 is in NVIDIA's release notes
  (rel-26-10: CUDA 13.4.3) but not in that snapshot, so its Triton version is not filled in.
- CUDA and driver per tag: "Driver Requirements" in NVIDIA's Triton release notes
  (docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-YY-MM.html).
- The driver floor of a CUDA major version (12.x: 525, 13.x: 580): NVIDIA's "CUDA Minor Version
  Compatibility" table (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html).
  A tag never needs less than its CUDA family's floor, even where its release notes name a lower
  driver (25.08-26.02 name 575 for CUDA 13).
- The GPU floor: "GPU Requirements" in the release notes: 25.08, 26.07 and 26.10 support "CUDA compute
  capability 7.5 and later" (Turing and newer); 24.07's notes still said 6.0.
- `--allow-client-shm`: src/command_line_parser.cc from tag v2.68.0 (26.04) on, cherry-picked to r26.04
  as d78c99c (#8739) from 546a787 (#8721, "Disable client shared memory by default"); v2.67.0 has no such
  option. docs/protocol/extension_shared_memory.md says the same.
- The advisories: every NVIDIA security bulletin for Triton, read from their CSAF JSON in the GitHub
  repository NVIDIA/product-security (YYYY/NNNN/NNNN.json: product_status known_affected / fixed and the
  CVSS v3.1 base score of each CVE). Read on 2026-12-07: bulletins 5509 (2023-12) to 5875 (2026-09-08);
  the folders 5866-5930 hold no later Triton bulletin. Each row names the first release that fixes it;
  the releases before it are affected ("All versions prior to 25.07", "0.0 - 26.05"), except 5612's
  CVE-2024-53880, which affects 24.11 only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpu import compute_capability as compute_capability  # the host's GPU generation: one probe, in gpu.py
from .gpu import driver_version as driver_version  # the host's driver: one probe, in gpu.py

REGISTRY = "nvcr.io/nvidia/tritonserver"
RELEASE_NOTES = "https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-{}.html"
BULLETINS = "https://github.com/NVIDIA/product-security"  # and https://www.nvidia.com/security
ADVISORIES_READ_ON = "2026-12-07"  # the day the bulletins below were read
NEWEST_BULLETIN_READ = "5875"  # 2026-09-08, the newest Triton bulletin found that day


@dataclass(frozen=True)
class Advisory:
    cve: str
    cvss: float  # CVSS v3.1 base score, as the bulletin gives it
    severity: str  # the bulletin's baseSeverity
    fixed_in: str  # the first NGC release that fixes it: every release before it is affected
    bulletin: str  # NVIDIA's bulletin number (github.com/NVIDIA/product-security/tree/main/YYYY/NNNN)
    only: str | None = None  # the one release it affects, where the bulletin names one instead of a range


# One row per CVE, oldest bulletin first (CVE-2025-23268 is in 5687 and again in 5691; CVE-2026-24210 was
# listed in 5848 too, until its revision 2 removed it: it stays with 5828). 5509 names Triton 2.40, = 23.11.
ADVISORIES = (
    Advisory("CVE-2023-31036", 7.5, "HIGH", "23.11", "5509"),
    Advisory("CVE-2024-0087", 9.0, "CRITICAL", "24.04", "5535"),
    Advisory("CVE-2024-0100", 6.5, "MEDIUM", "24.04", "5535"),
    Advisory("CVE-2024-0088", 5.5, "MEDIUM", "24.04", "5535"),
    Advisory("CVE-2024-0103", 5.4, "MEDIUM", "24.05", "5546"),
    Advisory("CVE-2024-0095", 4.3, "MEDIUM", "24.05", "5546"),
    Advisory("CVE-2024-0116", 4.9, "MEDIUM", "24.09", "5565"),
    Advisory("CVE-2024-53880", 4.9, "MEDIUM", "24.12", "5612", only="24.11"),
    Advisory("CVE-2025-23310", 9.8, "CRITICAL", "25.07", "5687"),
    Advisory("CVE-2025-23311", 9.8, "CRITICAL", "25.07", "5687"),
    Advisory("CVE-2025-23317", 9.1, "CRITICAL", "25.07", "5687"),
    Advisory("CVE-2025-23318", 8.1, "HIGH", "25.07", "5687"),
    Advisory("CVE-2025-23319", 8.1, "HIGH", "25.07", "5687"),
    Advisory("CVE-2025-23268", 8.0, "HIGH", "25.07", "5687"),
    Advisory("CVE-2025-23320", 7.5, "HIGH", "25.07", "5687"),
    Advisory("CVE-2025-23321", 7.5, "HIGH", "25.07", "5687"),
    Advisory("CVE-2025-23322", 7.5, "HIGH", "25.06", "5687"),
    Advisory("CVE-2025-23323", 7.5, "HIGH", "25.05", "5687"),
    Advisory("CVE-2025-23324", 7.5, "HIGH", "25.05", "5687"),
    Advisory("CVE-2025-23325", 7.5, "HIGH", "25.05", "5687"),
    Advisory("CVE-2025-23326", 7.5, "HIGH", "25.05", "5687"),
    Advisory("CVE-2025-23327", 7.5, "HIGH", "25.05", "5687"),
    Advisory("CVE-2025-23331", 7.5, "HIGH", "25.06", "5687"),
    Advisory("CVE-2025-23333", 5.9, "MEDIUM", "25.07", "5687"),
    Advisory("CVE-2025-23334", 5.9, "MEDIUM", "25.07", "5687"),
    Advisory("CVE-2025-23335", 4.4, "MEDIUM", "25.05", "5687"),
    Advisory("CVE-2025-23316", 9.8, "CRITICAL", "25.08", "5691"),
    Advisory("CVE-2025-23328", 7.5, "HIGH", "25.08", "5691"),
    Advisory("CVE-2025-23329", 7.5, "HIGH", "25.08", "5691"),
    Advisory("CVE-2025-23336", 4.4, "MEDIUM", "25.08", "5691"),
    Advisory("CVE-2025-33202", 7.5, "HIGH", "25.09", "5723"),
    Advisory("CVE-2025-33211", 7.5, "HIGH", "25.10", "5734"),
    Advisory("CVE-2025-33201", 7.5, "HIGH", "25.10", "5734"),
    Advisory("CVE-2025-33238", 7.5, "HIGH", "26.01", "5790"),
    Advisory("CVE-2025-33254", 7.5, "HIGH", "26.01", "5790"),
    Advisory("CVE-2026-24158", 7.5, "HIGH", "26.01", "5790"),
    Advisory("CVE-2026-24146", 7.5, "HIGH", "26.02", "5816"),
    Advisory("CVE-2026-24173", 7.5, "HIGH", "26.02", "5816"),
    Advisory("CVE-2026-24174", 7.5, "HIGH", "26.02", "5816"),
    Advisory("CVE-2026-24175", 7.5, "HIGH", "26.02", "5816"),
    Advisory("CVE-2026-24147", 4.8, "MEDIUM", "26.02", "5816"),
    Advisory("CVE-2026-24207", 9.8, "CRITICAL", "26.03", "5828"),
    Advisory("CVE-2026-24213", 8.0, "HIGH", "26.03", "5828"),  # the DALI backend
    Advisory("CVE-2026-24214", 8.0, "HIGH", "26.03", "5828"),  # the DALI backend
    Advisory("CVE-2026-24209", 7.5, "HIGH", "26.03", "5828"),
    Advisory("CVE-2026-24210", 7.5, "HIGH", "26.03", "5828"),
    Advisory("CVE-2026-24206", 7.3, "HIGH", "26.03", "5828"),
    Advisory("CVE-2026-24215", 5.7, "MEDIUM", "26.03", "5828"),  # the DALI backend
    Advisory("CVE-2026-24208", 5.3, "MEDIUM", "26.03", "5828"),
    Advisory("CVE-2026-24264", 7.5, "HIGH", "26.04", "5848"),
    Advisory("CVE-2026-24266", 5.9, "MEDIUM", "26.04", "5848"),
    Advisory("CVE-2026-47476", 7.5, "HIGH", "26.05", "5853"),
    Advisory("CVE-2026-47477", 7.5, "HIGH", "26.05", "5853"),
    Advisory("CVE-2026-47478", 7.5, "HIGH", "26.05", "5853"),
    Advisory("CVE-2026-47479", 7.5, "HIGH", "26.05", "5853"),
    Advisory("CVE-2026-47480", 7.5, "HIGH", "26.05", "5853"),
    Advisory("CVE-2026-47482", 7.5, "HIGH", "26.05", "5853"),
    Advisory("CVE-2026-47481", 6.5, "MEDIUM", "26.05", "5853"),
    Advisory("CVE-2026-47487", 4.4, "MEDIUM", "26.03", "5860"),
    Advisory("CVE-2026-47627", 9.8, "CRITICAL", "26.06", "5865"),
    Advisory("CVE-2026-47628", 7.5, "HIGH", "26.06", "5865"),
    Advisory("CVE-2026-47629", 7.5, "HIGH", "26.06", "5865"),
    Advisory("CVE-2026-47606", 6.5, "MEDIUM", "26.06", "5865"),
    Advisory("CVE-2026-47630", 5.5, "MEDIUM", "26.06", "5865"),
    Advisory("CVE-2026-47625", 7.5, "HIGH", "26.04", "5875"),
    Advisory("CVE-2026-16497", 7.5, "HIGH", "26.07", "5875"),
)

CUDA_DRIVER_FLOOR = {12: 525, 13: 580}  # CUDA minor version compatibility: the least driver of each family
MIN_COMPUTE_CAPABILITY = (7, 5)  # release notes' "GPU Requirements" (25.08 on): Turing or newer
CLIENT_SHM_FLAG_FROM = (2, 68)  # from this Triton (NGC 26.04) on, client shared memory needs --allow-client-shm=true
CLIENT_SHM_FLAG_FROM_TAG = (26, 4)  # the same, for a tag whose Triton version is not in the table


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
    def needs_allow_client_shm(self) -> bool:
        """Whether its server refuses client shared memory unless started with --allow-client-shm=true."""
        if self.triton:
            return needs_allow_client_shm(self.triton)
        return _key(self.tag) >= CLIENT_SHM_FLAG_FROM_TAG


# Oldest first. 24.10 is the release of the course's embedded server (2.51.0) and of its CI image. Not every
# monthly release is listed: those a lesson names, and each one where the advisories or the flags change.
# Triton's version does not move by one minor version per release: 25.06 is 2.59.0 and 25.07 is 2.59.1.
RELEASES = (
    Release("24.10", "2.51.0", "12.6.2", 560),
    Release("24.11", "2.52.0", None, None),
    Release("25.07", "2.59.1", None, None),  # NVIDIA's release-notes index lists no 25.07 page
    Release("25.08", "2.60.0", "13.0.0", 575),
    Release("25.10", "2.62.0", "13.0.2", 575),
    Release("26.02", "2.66.0", "13.1.1", 575),
    Release("26.04", "2.68.0", None, None),
    Release("26.05", "2.69.0", None, None),
    Release("26.06", "2.70.0", None, None),
    Release("26.07", "2.71.0", "13.3.1", None),  # its notes point to CUDA Compatibility for the driver
    Release("26.08", "2.72.0", None, None),
    Release("26.10", None, "13.4.3", None),  # release notes rel-26-10; no r26.10 branch in the snapshot read
)
CURRENT = RELEASES[-1]
EMBEDDED_RELEASE = RELEASES[0]  # nvidia-pytriton 0.7.0 embeds Triton 2.51.0, the one of NGC 24.10


def _key(tag: str) -> tuple[int, int]:
    year, month = tag.split("-")[0].split(".")[:2]
    return int(year), int(month)


def release(tag_or_image: str) -> Release | None:
    """The table's row for a tag ("26.10", "26.10-py3") or an image reference, or None."""
    tag = tag_or_image.rsplit(":", 1)[-1].split("-")[0]
    return next((r for r in RELEASES if r.tag == tag), None)


def affects(advisory: Advisory, tag: str) -> bool:
    """Whether `advisory` affects release `tag`: every release before its fix (or the one it names)."""
    if advisory.only:
        return _key(tag) == _key(advisory.only)
    return _key(tag) < _key(advisory.fixed_in)


def advisories_for(tag: str) -> tuple[Advisory, ...]:
    """The rows of ADVISORIES that affect release `tag`, highest score first."""
    found = [a for a in ADVISORIES if affects(a, tag)]
    return tuple(sorted(found, key=lambda a: -a.cvss))


def advisories(tag: str) -> tuple[str, ...]:
    """The CVEs of NVIDIA's published Triton advisories that affect release `tag` ("24.10", "25.07-py3",
    ...), highest score first."""
    return tuple(a.cve for a in advisories_for(tag))


def is_affected(tag: str) -> bool:
    """Whether release `tag` is affected by the advisories (so not for serving beyond a lab's loopback)."""
    return bool(advisories(tag))


def first_free_release() -> str:
    """The first release that no advisory in the table affects: the newest fix."""
    return max((a.fixed_in for a in ADVISORIES), key=_key)


def summary(tag: str) -> str:
    """One line: how many advisories affect `tag`, how many of them critical, the highest score."""
    found = advisories_for(tag)
    if not found:
        return f"{tag}: none of the {len(ADVISORIES)} advisories in the table affects it"
    critical = sum(a.severity == "CRITICAL" for a in found)
    bulletins = sorted({a.bulletin for a in found})
    return (f"{tag}: affected by {len(found)} of the {len(ADVISORIES)} advisories ({critical} critical, highest "
            f"CVSS {found[0].cvss}, {found[0].cve}) from {len(bulletins)} "
            f"{'bulletin' if len(bulletins) == 1 else 'bulletins'}; all fixed from "
            f"{max((a.fixed_in for a in found), key=_key)} on")


def needs_allow_client_shm(triton_version: str) -> bool:
    """Whether this Triton refuses client shared memory unless started with --allow-client-shm=true."""
    major, minor = (int(x) for x in triton_version.split(".")[:2])
    return (major, minor) >= CLIENT_SHM_FLAG_FROM


def below_compute_floor(capability: str | None) -> bool:
    """Whether a GPU of this compute capability ("7.5", "8.0") is older than current NGC images support."""
    if not capability:
        return False
    major, minor = (int(x) for x in capability.split(".")[:2])
    return (major, minor) < MIN_COMPUTE_CAPABILITY


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
        return best or CURRENT, f"no NVIDIA driver here: {(best or CURRENT).tag}, the newest release no advisory " \
                                "affects, on the CPU"
    if best is not None:
        return best, f"driver {driver}: the newest release it runs that no advisory affects, {best.tag}"
    fallback = newest_runnable(driver) or EMBEDDED_RELEASE
    found = fallback.advisories
    return fallback, (f"driver {driver} is too old for every release free of the advisories: {fallback.tag} "
                      f"is affected ({len(found)} advisories, e.g. {found[0]}); keep it on 127.0.0.1 and upgrade "
                      f"the driver to {CUDA_DRIVER_FLOOR[13]} or later")


def _cve_list(cves: tuple[str, ...], shown: int = 3) -> str:
    more = len(cves) - shown
    return ", ".join(cves[:shown]) + (f" and {more} more" if more > 0 else "")


def table_rows() -> list[dict[str, str]]:
    """The table as a learner reads it; a value not checked says where to look."""
    look = "see NVIDIA's release notes"
    rows = []
    for r in RELEASES:
        notes = []
        if r.advisories:
            count = len(r.advisories)
            notes.append(f"{count} {'advisory' if count == 1 else 'advisories'}: {_cve_list(r.advisories)}")
        else:
            notes.append("no advisory")
        if r.needs_allow_client_shm:
            notes.append("client shm needs --allow-client-shm=true")
        if r is EMBEDDED_RELEASE:
            notes.append("= the embedded server")
        if r is CURRENT:
            notes.append("newest in the table")
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


def advisories_markdown() -> str:
    """The advisory table, one row per CVE, newest bulletin first."""
    lines = ["| CVE | CVSS | severity | fixed in | affects | bulletin |", "|---|---|---|---|---|---|"]
    for a in reversed(ADVISORIES):
        affected = a.only or f"before {a.fixed_in}"
        lines.append(f"| {a.cve} | {a.cvss} | {a.severity} | {a.fixed_in} | {affected} | {a.bulletin} |")
    return "\n".join(lines)
