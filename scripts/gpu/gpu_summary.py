"""Turn the folders scripts/gpu/gpu_check.sh wrote into a Markdown record of the GPU run.

    python scripts/gpu/gpu_summary.py OUTDIR [OUTDIR ...] > docs/gpu_check.md

Per notebook: cells passed/failed/skipped and seconds; per test file the same; the GPU and the evidence that
it was used (utilisation and memory from nvidia-smi, and which processes held GPU memory). Give the folders
in the order they ran: a test run again in a later folder (after a fix) counts with its last result. Lessons,
labs and test files that no folder ran are listed as not run; a folder without junit.xml (a part stopped before
pytest wrote it) is named and counts nothing.
"""

from __future__ import annotations

import csv
import gzip
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def _cases(junit: Path):
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        # classname is "notebooks.00_setup.ipynb" for nbval's cells, "tests.test_x" for tests
        classname = case.get("classname", "")
        if not classname:  # what an interrupted session adds (its KeyboardInterrupt): no file to count it under
            continue
        if classname.endswith(".ipynb"):
            folder, _, notebook = classname.removesuffix(".ipynb").rpartition(".")
            source = f"{folder.replace('.', '/')}/{notebook}.ipynb"
        else:
            source = classname.replace(".", "/") + ".py"
        yield source, case.get("name", ""), outcome, float(case.get("time", 0))


def per_file(folders: list[Path]) -> dict[str, dict]:
    last: dict[tuple[str, str], tuple[str, float]] = {}
    for folder in (f for f in folders if (f / "junit.xml").exists()):
        for source, name, outcome, seconds in _cases(folder / "junit.xml"):
            last[source, name] = outcome, seconds
    table: dict[str, dict] = defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0})
    for (source, _), (outcome, seconds) in last.items():
        table[source][outcome] += 1
        table[source]["seconds"] += seconds
    return dict(sorted(table.items()))


def not_run(rows: dict[str, dict]) -> list[str]:
    root = Path(__file__).resolve().parents[2]
    everything = [*root.glob("tests/test_*.py"), *root.glob("notebooks/*.ipynb"), *root.glob("labs/solutions/*.ipynb")]
    return sorted(str(p.relative_to(root)) for p in everything if str(p.relative_to(root)) not in rows)


def _open_text(path: Path):
    """A samples file, or its gzipped copy (the committed record keeps them compressed)."""
    return open(path) if path.exists() else gzip.open(path.with_name(path.name + ".gz"), "rt")


def gpu_evidence(folders: list[Path]) -> list[str]:
    samples, busy, peak_util, peak_mem = 0, 0, 0, 0
    processes: dict[str, int] = {}
    for folder in folders:
        with _open_text(folder / "nvidia-smi.csv") as f:
            for row in csv.reader(f, skipinitialspace=True):
                if len(row) < 3 or not row[1].strip().isdigit():
                    continue
                samples += 1
                util, mem = int(row[1]), int(row[2])
                busy += util > 0
                peak_util, peak_mem = max(peak_util, util), max(peak_mem, mem)
        with _open_text(folder / "gpu-processes.csv") as f:
            for row in csv.reader(f, skipinitialspace=True):
                if len(row) == 4 and row[3].strip().isdigit() and not row[2].startswith("["):
                    name = Path(row[2]).name
                    processes[name] = max(processes.get(name, 0), int(row[3]))
    lines = [f"- nvidia-smi every 0.5 s: the GPU was busy in {busy} of {samples} samples, at most {peak_util} % "
             f"utilisation and {peak_mem} MiB of memory in use."]
    lines += [f"- `{name}` held up to {mib} MiB of GPU memory." for name, mib in sorted(processes.items())]
    return lines


def main(folders: list[Path]) -> str:
    gpu = (folders[0] / "gpu.txt").read_text().strip()
    rows = per_file(folders)
    total = {k: sum(r[k] for r in rows.values()) for k in ("passed", "failed", "skipped", "seconds")}
    finished = [line for folder in folders for line in (folder / "pytest.txt").read_text().splitlines()
                if line.startswith("gpu_check:")]
    reported = [folder for folder in folders if (folder / "junit.xml").exists()]
    dates = sorted({suite.get("timestamp", "")[:10] for folder in reported
                    for suite in ET.parse(folder / "junit.xml").getroot().iter("testsuite")})
    out = ["# The course on a GPU: the recorded run", "",
           f"GPU: {gpu}. Date: {', '.join(dates)}.", "",
           "Made by `scripts/gpu/gpu_check.sh` (see its header for the set-up) and `scripts/gpu/gpu_summary.py`.", "",
           "## Result", "",
           f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped; "
           f"{total['seconds'] / 60:.1f} minutes of tests.", ""]
    out += [f"- `{line}`" for line in finished]
    # a part stopped before pytest wrote its JUnit file (a time cap): how far it got is in its pytest.txt
    out += [f"- `{folder.name}`: stopped before pytest wrote its report; none of its results count here"
            for folder in folders if folder not in reported]
    missing = not_run(rows)
    if missing:
        out += ["", "Not run on the GPU in this record: " + ", ".join(f"`{m}`" for m in missing) + "."]
    out += ["", "## Evidence that the GPU was used", ""] + gpu_evidence(folders)
    out += ["", "## Per notebook and test file", "", "| file | passed | failed | skipped | seconds |",
            "|---|---:|---:|---:|---:|"]
    out += [f"| `{name}` | {r['passed']} | {r['failed']} | {r['skipped']} | {r['seconds']:.0f} |"
            for name, r in rows.items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(main([Path(p) for p in sys.argv[1:]]), end="")
