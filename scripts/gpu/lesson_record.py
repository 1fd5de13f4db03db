"""A lesson's figures on two machines, cell by cell: the committed notebook (the CPU run CI re-executes) beside
the same notebook executed on a GPU machine (scripts/gpu/gpu_lessons.sh). Prints Markdown for docs/benchmarks.md:
for each code cell whose printed output differs between the runs, the section it is in, the first line of its
code, and both outputs (plots and long outputs cut to their first lines).

    python scripts/gpu/lesson_record.py notebooks/05_dynamic_batching.ipynb GPU_RUN/05_dynamic_batching.ipynb
"""

from __future__ import annotations

import json
import sys

MAX_LINES = 12


def text_of(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append("".join(output["text"]))
        elif output["output_type"] == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
        elif "text/plain" in output.get("data", {}) and "image/png" not in output["data"]:
            parts.append("".join(output["data"]["text/plain"]))
    lines = "".join(parts).rstrip("\n").splitlines()
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [f"... ({len(lines) - MAX_LINES} more lines)"]
    return "\n".join(lines)


def main(cpu_path: str, gpu_path: str) -> None:
    cpu, gpu = (json.load(open(path))["cells"] for path in (cpu_path, gpu_path))
    if [c["cell_type"] for c in cpu] != [c["cell_type"] for c in gpu]:
        sys.exit(f"lesson_record: {cpu_path} and {gpu_path} are not the same notebook (their cells differ)")
    section = ""
    for number, (a, b) in enumerate(zip(cpu, gpu)):
        source = "".join(a["source"])
        if a["cell_type"] == "markdown":
            headings = [line for line in source.splitlines() if line.startswith("#")]
            section = headings[-1].lstrip("# ") if headings else section
            continue
        before, after = text_of(a), text_of(b)
        if before == after or not (before or after):
            continue
        code = next((line for line in source.splitlines() if line.strip() and not line.startswith("#")), "")
        print(f"**Cell {number}** ({section}): `{code.strip()[:90]}`\n")
        print("CPU (committed):\n```\n" + (before or "(no output)") + "\n```")
        print("GPU:\n```\n" + (after or "(no output)") + "\n```\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
