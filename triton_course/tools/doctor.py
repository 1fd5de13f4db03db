"""What this machine has for the course: one OK / MISSING line per thing, with what to do.

Meant for a pre-workshop check on a pod: the report fits one screen (SCREEN_LINES lines of at most
SCREEN_COLUMNS characters), and its last line says whether the machine is ready and which lessons
change because of what is missing.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import sys
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..paths import MODEL_NAME, cache_dir, course_root, models_dir

SCREEN_LINES = 24
SCREEN_COLUMNS = 100
MACHINE_PACKAGES_FILE = "machine-packages.txt"  # in the environment: packages the machine provides (scripts/setup.sh)
MIN_FREE_GB = 2.0  # the lessons' workspace, served copies of repositories and logs grow to about 1 GB
STATUS_WIDTH = len("MISSING (required)")
NAME_WIDTH = len("local tritonserver")
FIX_WIDTH = SCREEN_COLUMNS - STATUS_WIDTH - len(" -> ")  # a longer fix is cut to fit the screen


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True
    lessons: str = ""  # the lessons that change when it is missing ("all" when the course cannot run)

    @property
    def status(self) -> str:
        return "OK" if self.ok else ("MISSING (required)" if self.required else "MISSING (optional)")

    def lines(self, with_fix: bool = True) -> list[str]:
        """The status line, and for a missing item the line that says what to do."""
        lines = [_fit(f"{self.status:<{STATUS_WIDTH}} {self.name:<{NAME_WIDTH}} {self.detail}")]
        if with_fix and not self.ok and self.fix:
            lines.append(_fit(f"{'':<{STATUS_WIDTH}} -> {self.fix}"))
        return lines

    def line(self) -> str:
        return "\n".join(self.lines())


def _fit(text: str, width: int = SCREEN_COLUMNS) -> str:
    text = " ".join(text.split("\n"))
    return text if len(text) <= width else text[: width - 3] + "..."


def check_python() -> Check:
    version = platform.python_version()
    ok = (3, 10) <= sys.version_info[:2] <= (3, 12)
    return Check("python", ok, f"{version} at {sys.executable}",
                 "Use Python 3.10-3.12 for .venv: `make setup PYTHON=python3.11`.", lessons="all")


def check_embedded() -> Check:
    from ..runtimes import EmbeddedServer
    from ..runtimes.embedded import TRITON_VERSION

    error = EmbeddedServer.unavailable_error()  # the registry's answer: the wheel's server and its stub's libraries
    if error:
        return Check("embedded triton", False, error.what, error.fix or "Run `make setup`.", lessons="all")
    return Check("embedded triton", True, f"Triton {TRITON_VERSION} from nvidia-pytriton")


def check_local() -> Check:
    from ..runtimes import LocalServer, find_binary

    reason = LocalServer.unavailable_reason()
    return Check("local tritonserver", reason is None, reason or str(find_binary()),
                 "Only on a pod made from NGC's Triton image (docs/pods.md, set-up 2).",
                 required=False, lessons=lessons_using("local tritonserver"))


def check_gpu() -> Check:
    """The host's GPUs (gpu.py), the newest NGC tag its driver runs, and whether TRITON_COURSE_DEVICE=cpu
    keeps the course on the CPU anyway."""
    from .. import ngc
    from ..gpu import DEVICE_VARIABLE, NO_NVIDIA_SMI, probe_nvidia_smi, wants_cpu

    gpus, problem = probe_nvidia_smi()
    if not gpus:
        detail, fix = problem, "Check the NVIDIA driver (nvidia-smi)."
        if problem == NO_NVIDIA_SMI:
            detail = f"no GPU ({NO_NVIDIA_SMI}): lessons run on the CPU"
            fix = "Rent a GPU pod for the GPU parts; every lesson also runs on the CPU."
        if wants_cpu():
            detail += f" ({DEVICE_VARIABLE}=cpu is set)"
        return Check("gpu", False, detail, fix, required=False, lessons=lessons_using("gpu"))
    names = "; ".join(f"GPU {g.index}: {g.name}" for g in gpus)
    if wants_cpu():  # the variable leads, so that a cut line keeps it
        return Check("gpu", False, f"{DEVICE_VARIABLE}=cpu: lessons serve on the CPU; {names}",
                     f"Unset {DEVICE_VARIABLE} to serve on the GPU.", required=False, lessons=lessons_using("gpu"))
    capability = ngc.compute_capability()
    if ngc.below_compute_floor(capability):  # the warning leads, so that a cut line keeps it
        floor = ".".join(map(str, ngc.MIN_COMPUTE_CAPABILITY))
        return Check("gpu", False, f"compute capability {capability} < {floor} (NGC images from 25.08 need "
                     f"{floor}+): {names}", f"Rent a GPU of compute capability {floor}+ (T4, A10, L4, A100, H100...).",
                     required=False, lessons=lessons_using("gpu"))
    newest = ngc.newest_runnable(gpus[0].driver)  # the tag leads, so that a cut line keeps it (table: ngc.py)
    tag = f"newest NGC tag {newest.tag}-py3" if newest else "no NGC tag in the course's table"
    return Check("gpu", True, f"driver {gpus[0].driver}, {tag}: {names}", required=False, lessons=lessons_using("gpu"))


def check_tensorrt() -> Check:
    from ..tensorrt import find_trtexec

    try:
        import tensorrt

        api = f"TensorRT {tensorrt.__version__} Python API"
    except ImportError:
        api = None
    trtexec = find_trtexec()
    found = [x for x in (api, trtexec and f"trtexec at {trtexec}") if x]
    return Check("tensorrt", bool(found), "; ".join(found) or "no TensorRT Python API, no trtexec",
                 "Only on a GPU pod from NGC's Triton image; 08 runs its CPU part without it.",
                 required=False, lessons=lessons_using("tensorrt"))


def check_perf_analyzer() -> Check:
    from .. import perf_analyzer

    problem = perf_analyzer.diagnose()
    if problem is None:  # "2.51.0 (from the tritonclient 2.51.0 wheel)", or the pip package's version
        detail, fix = perf_analyzer.describe().removeprefix("Perf Analyzer ").split("): ")[0] + ")", ""
    else:
        _, detail, fix = problem
    return Check("perf_analyzer", problem is None, detail, fix, required=False, lessons=lessons_using("perf_analyzer"))


def check_prometheus() -> Check:
    from ..monitoring import find_prometheus

    found = find_prometheus()
    return Check("prometheus", found is not None, found or "not installed",
                 "`sudo apt-get install prometheus` (or $PROMETHEUS=path); 11 skips its part.",
                 required=False, lessons=lessons_using("prometheus"))


def check_docker() -> Check:
    from ..runtimes import DockerServer
    from ..runtimes.docker import docker_client

    reason = DockerServer.unavailable_reason()
    if reason:
        return Check("docker engine", False, reason, "`sudo systemctl start docker`. Pods have none: 04 then runs "
                     "without it.", required=False, lessons=lessons_using("docker engine"))
    client = docker_client(timeout=5)
    version = client.version().get("Version", "?")
    client.close()
    return Check("docker engine", True, f"Docker {version}", required=False, lessons=lessons_using("docker engine"))


def _course_requirements() -> list[str]:
    """The pins of the installed course, or of pyproject.toml when the checkout is used without installing
    it (a machine without internet, where scripts/gpu/gpu_env.sh puts it on the path)."""
    try:
        return metadata.requires("triton-course") or []
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # triton_course/tools/ -> the checkout
        if not pyproject.exists():
            return []
        with open(pyproject, "rb") as f:
            return tomllib.load(f)["project"]["dependencies"]


def check_packages() -> Check:
    from packaging.requirements import Requirement

    # Packages the machine provides in place of the pins, named on purpose (a pod's own CUDA build of
    # PyTorch: scripts/setup.sh writes <env>/machine-packages.txt, scripts/gpu/gpu_env.sh sets
    # TRITON_COURSE_MACHINE_PACKAGES): reported, not counted as missing.
    named = os.environ.get("TRITON_COURSE_MACHINE_PACKAGES", "").split(",")
    listed = Path(sys.prefix) / MACHINE_PACKAGES_FILE
    if listed.exists():
        named += listed.read_text().split()
    machine_own = {name.strip().lower() for name in named if name.strip()}
    wrong, own = [], []
    for spec in _course_requirements():
        req = Requirement(spec)
        if req.marker and not req.marker.evaluate():
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{req.name} (not installed)")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            if req.name.lower() in machine_own:
                own.append(f"{req.name} {installed}")
            else:
                wrong.append(f"{req.name} {installed} (want {req.specifier})")
    if wrong:
        return Check("packages", False, "; ".join(wrong), "Run `make setup` in the course folder.", lessons="all")
    if own:
        return Check("packages", True, f"pinned versions installed; the machine's own {', '.join(own)}")
    return Check("packages", True, "all pinned versions installed")


def check_model() -> Check:
    """model.onnx (what the lessons serve) and model.pt (TorchScript: the GPU runner, libtorch), both built
    by `triton-course prepare`."""
    folder = models_dir() / MODEL_NAME
    missing = [name for name in ("model.onnx", "model.pt") if not (folder / "1" / name).exists()]
    if not missing:
        size = sum((folder / "1" / name).stat().st_size for name in ("model.onnx", "model.pt")) / 1e6
        return Check("model artifact", True, f"{folder} ({size:.0f} MB)")
    return Check("model artifact", False, f"not built yet: {', '.join(missing)} in {folder}/1",
                 "Run `triton-course prepare` (or `make setup`).", lessons="02 on")


def check_ports(ports=(8000, 8001, 8002)) -> Check:
    from ..runtimes.base import port_holder, port_is_free

    taken = [f"{p} ({port_holder(p) or 'in use'})" for p in ports if not port_is_free(p)]
    return Check("ports 8000-8002", not taken, "free" if not taken else "taken: " + ", ".join(taken),
                 "Nothing to do: the course picks free ports itself.",
                 required=False, lessons="none")


def check_disk(min_free_gb: float = MIN_FREE_GB) -> Check:
    """Free space where the lessons write: the course folder (workspace/) and the cache (served copies, logs)."""
    places = {}
    for folder in (course_root(), cache_dir()):
        places.setdefault(os.stat(folder).st_dev, folder)  # one line per file system
    free = {folder: shutil.disk_usage(folder).free / 1e9 for folder in places.values()}
    detail = ", ".join(f"{gb:.1f} GB free in {folder}" for folder, gb in free.items())
    tightest = min(free, key=free.get)
    if tightest == course_root():  # named, not quoted: a path of any length keeps the fix on its line
        fix = f"Free {min_free_gb:.0f} GB in the course folder: `rm -rf workspace` drops old lesson files."
    else:
        fix = f"Free {min_free_gb:.0f} GB in {{}} (the course's cache: safe to delete)."
        fix = fix.format(short_path(tightest, FIX_WIDTH - len(fix.format(""))))
    return Check("disk space", free[tightest] >= min_free_gb, detail, fix, lessons="all")


def short_path(path: Path, width: int) -> str:
    """`path` in at most `width` characters: ~ for the home folder, then ".../" and its last parts."""
    text = str(path)
    home = str(Path.home())
    if text == home or text.startswith(home + os.sep):
        text = "~" + text[len(home):]
    if len(text) <= width:
        return text
    if width < 8:
        return "..."[:max(width, 0)]
    parts = Path(text).parts
    for keep in range(len(parts) - 1, 0, -1):
        tail = ".../" + "/".join(parts[-keep:])
        if len(tail) <= width:
            return tail
    return "..." + text[-(width - 3):] if width > 3 else text[:width]


def check_notebooks(root: Path | None = None) -> Check:
    """The lessons 00..NN in sequence, each a readable notebook; every lab solution with its student copy."""
    root = root or course_root()
    # NN_topic, or NNx_topic for a lesson added after lesson NN (07b follows 07; the others keep their numbers)
    lessons = _lesson_paths(root)
    problems = []
    prefixes = [_lesson_prefix(p) for p in lessons]
    numbers = [int(prefix) for prefix in prefixes if prefix.isdigit()]
    lettered = [prefix for prefix in prefixes if not prefix.isdigit()]
    gaps = sorted(set(range(max(numbers + [int(p[:2]) for p in lettered], default=-1) + 1)) - set(numbers))
    if not lessons:
        problems.append("no notebooks/NN_*.ipynb")
    elif gaps:
        problems.append("lessons missing: " + ", ".join(f"{n:02d}" for n in gaps))
    solutions = sorted((root / "labs" / "solutions").glob("*.ipynb"))
    copies = _student_copy_problems(root)
    no_copy = [lab for kind, lab in copies if kind == "missing"]
    stale = [lab for kind, lab in copies if kind in ("stale", "orphan")]
    generator_errors = [text for kind, text in copies if kind == "error"]
    unreadable = [p.name for p in lessons + solutions if _cell_count(p) is None]
    if unreadable:
        problems.append("not readable as notebooks: " + ", ".join(unreadable))
    if no_copy:
        problems.append("labs without a student copy: " + ", ".join(no_copy))
    if stale:
        problems.append("student copies stale or orphaned: " + ", ".join(stale))
    if generator_errors:
        problems.append("the student-copy generator failed: " + generator_errors[0])
    span = f" ({prefixes[0]}-{prefixes[-1]})" if lessons else ""
    detail = f"{len(lessons)} lessons{span}, {len(solutions)} labs"
    if problems:
        from .student_copies import REGENERATE

        if generator_errors:
            fix = f"Fix the solution notebook it names, then run `{REGENERATE}`."
        elif (no_copy or stale) and not gaps and not unreadable:
            fix = f"Run `{REGENERATE}`."
        else:
            fix = "Get the course folder again (`git status` shows what changed)."
        labs = sorted(set(no_copy + stale))
        parts = ([f"lessons {', '.join(f'{n:02d}' for n in gaps)}"] if gaps else []) + \
            ([f"labs {', '.join(labs)}"] if labs else [])
        affected = "all" if unreadable or not lessons or not parts else "; ".join(parts)
        return Check("notebooks", False, "; ".join(problems), fix, lessons=affected)
    return Check("notebooks", True, detail + (" with student copies" if solutions else ""))


def _student_copy_problems(root: Path) -> list[tuple[str, str]]:
    """(missing | stale | orphan | error, lab) from the student-copy generator (student_copies.py)."""
    from .student_copies import MarkerError, copy_problems

    try:
        return [(kind, _lesson_prefix(path)) for kind, path in copy_problems(root)]
    except (MarkerError, OSError, ValueError) as exc:  # a solution it cannot read or turn into exercises
        return [("error", str(exc)[:80])]


LESSON_NAME = re.compile(r"\d\d[a-z]?_")
# How a lesson's code uses each optional part: the doctor names the lessons that change without it, read
# from the notebooks, so a lesson that starts using one is named without editing this file.
USED_BY = {
    "docker engine": r"docker_client\(",  # lesson 13 builds DockerServer command lines, with no engine
    "gpu": r"KIND_GPU|gpus=|served_vs_ceiling",
    "local tritonserver": r'runtime="local"|LocalServer',
    "tensorrt": r"\btensorrt\b",
    "perf_analyzer": r"perf_analyzer[.\s]|scaling\.added_latency",  # commands, module; 14: HAProxy
    "prometheus": r"[Pp]rometheus",
}


def _lesson_paths(root: Path) -> list[Path]:
    """notebooks/NN_topic.ipynb (or NNx_topic for a lesson added after lesson NN), in order."""
    return sorted(p for p in (root / "notebooks").glob("[0-9][0-9]*_*.ipynb") if LESSON_NAME.match(p.name))


@functools.lru_cache(maxsize=4)
def _lesson_code(root: Path) -> dict[str, str]:
    """Lesson prefix -> the source of its code cells (an unreadable notebook: none)."""
    code = {}
    for path in _lesson_paths(root):
        try:
            cells = json.loads(path.read_text())["cells"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        code[_lesson_prefix(path)] = "\n".join("".join(c["source"]) for c in cells if c.get("cell_type") == "code")
    return code


def lessons_using(part: str, root: Path | None = None) -> str:
    """The lessons whose code uses `part` (a key of USED_BY): "07, 07b, 14"; a run of three or more
    consecutive lessons as a range ("04-08"); "none" when no lesson does."""
    found = [prefix for prefix, code in _lesson_code(root or course_root()).items() if re.search(USED_BY[part], code)]
    runs: list[list[str]] = []
    for prefix in found:
        follows = runs and prefix.isdigit() and runs[-1][-1].isdigit() and int(prefix) == int(runs[-1][-1]) + 1
        if follows:
            runs[-1].append(prefix)
        else:
            runs.append([prefix])
    return ", ".join(", ".join(run) if len(run) < 3 else f"{run[0]}-{run[-1]}" for run in runs) or "none"


def _lesson_prefix(path: Path) -> str:
    """'07' for 07_benchmarking.ipynb, '07b' for 07b_model_analyzer.ipynb (a lab's name has its lesson's)."""
    return path.stem.split("_", 1)[0]


def _cell_count(path: Path) -> int | None:
    try:
        return len(json.loads(path.read_text())["cells"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_checks(workshop: bool = False) -> list[Check]:
    """What a learner's machine needs; `workshop=True` (the command line's doctor) adds what an
    instructor checks on each pod beforehand: free disk space and the course's notebooks."""
    checks = [check_python(), check_packages(), check_embedded(), check_local(), check_gpu(),
              check_tensorrt(), check_perf_analyzer(), check_prometheus(), check_docker(), check_model(), check_ports()]
    if workshop:
        checks += [check_disk(), check_notebooks()]
    by_name = {c.name: c for c in checks}
    if by_name["local tritonserver"].ok:
        # The course picks the local server when there is one: the embedded one is then a spare.
        by_name["embedded triton"].required = False
    return checks


def summary(checks: list[Check]) -> list[str]:
    """The last line(s): ready or not, and which lessons change because of what is missing."""
    required = [c for c in checks if not c.ok and c.required]
    optional = [c for c in checks if not c.ok and not c.required and c.lessons != "none"]
    if required:
        text = "Ready for the course: NO. Fix the MISSING (required) lines: " + ", ".join(
            f"{c.name} ({_lessons(c)})" for c in required) + "."
    else:
        text = "Ready for the course: yes."
    if optional:
        by_lessons: dict[str, list[str]] = {}
        for c in sorted(optional, key=lambda c: c.lessons):
            by_lessons.setdefault(c.lessons, []).append(c.name)
        text += " Optional items missing: " + ", ".join(
            f"{lessons} ({', '.join(names)})" for lessons, names in by_lessons.items()) + \
            "; those lessons run without them."
    return textwrap.wrap(text, SCREEN_COLUMNS)


def _lessons(check: Check) -> str:
    if check.lessons == "all":
        return "every lesson"
    if check.lessons.startswith(("lesson", "lab")):
        return check.lessons
    return f"lessons {check.lessons}" if check.lessons else "lessons"


def report(checks: list[Check]) -> str:
    """All lines, at most SCREEN_LINES of at most SCREEN_COLUMNS characters: when everything is
    missing at once, the fixes of optional items are left out (required ones always stay)."""
    last = summary(checks)
    optional_fixes = sum(1 for c in checks if not c.ok and not c.required and c.fix)
    with_fix = len([line for c in checks for line in c.lines()]) + len(last) <= SCREEN_LINES
    lines = [line for c in checks for line in c.lines(with_fix=with_fix or c.required)]
    if not with_fix and optional_fixes:
        last = textwrap.wrap(" ".join(last) + " (Fixes of optional items left out to fit the screen.)",
                             SCREEN_COLUMNS)
    return "\n".join(lines + last)


def ready(checks: list[Check]) -> bool:
    return not any(not c.ok and c.required for c in checks)
