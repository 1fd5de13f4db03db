"""Run the course headless on this machine and write a self-contained HTML report.

`triton-course report` runs every notebook (notebooks/ then labs/solutions/, or the paths given) one after
another the way CI does (notebook_run: strict nbval in a fresh kernel, every process it started stopped
after it) and writes, per notebook, passed or failed, how long it took and where it failed, with the machine
it ran on (machine.py).
"""

from __future__ import annotations

import html
from pathlib import Path

from .machine import machine_info
from .notebook_run import DEFAULT_TIMEOUT, NotebookResult, run_notebook

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { text-align: left; padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.passed { color: #176f2c; font-weight: bold; }
.failed, .timed-out { color: #b00020; font-weight: bold; }
pre { background: #f6f6f6; padding: 0.6em; max-width: 100em; overflow-x: auto; font-size: 0.85em; }
"""


def render_html(results: list[NotebookResult], machine: dict[str, str]) -> str:
    failed = [r for r in results if not r.passed]
    total = sum(r.seconds for r in results)
    verdict = "all passed" if not failed else f"{len(failed)} of {len(results)} failed"
    e = html.escape
    rows = []
    for r in results:
        css = r.status.replace(" ", "-")
        where = e(r.failing_cell) + (f" (+{r.failed_cells - 1} more cells)" if r.failed_cells > 1 else "")
        detail = f"<details><summary>{where}</summary><pre>{e(r.error)}</pre></details>" if r.error else where
        rows.append(f"<tr><td>{e(r.path)}</td><td class='{css}'>{e(r.status)}</td>"
                    f"<td class='num'>{r.seconds:.1f}</td><td>{detail}</td></tr>")
    machine_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in machine.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Triton course run: {e(verdict)}</title>
<style>{STYLE}</style></head><body>
<h1>Triton course: headless run</h1>
<p><strong>{e(verdict)}</strong>: {len(results) - len(failed)} passed, {len(failed)} failed,
{total:.0f} s in all ({total / 60:.1f} min). Each notebook ran from a temporary copy in a fresh kernel under strict
nbval (<code>pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg</code>): every cell's
output was compared with the one stored in the notebook.</p>
<h2>Notebooks</h2>
<table><tr><th>notebook</th><th>result</th><th>seconds</th><th>where it failed</th></tr>
{chr(10).join(rows)}
<tr><th>total</th><td>{len(results) - len(failed)}/{len(results)} passed</td>
<td class='num'>{total:.1f}</td><td></td></tr>
</table>
<h2>Machine</h2>
<table>{machine_rows}</table>
</body></html>
"""


def run_report(paths: list[Path], output: Path, timeout: float = DEFAULT_TIMEOUT, echo=print) -> list[NotebookResult]:
    """Run each notebook in turn, echo one line per notebook as it ends, write the HTML report."""
    machine = machine_info()
    echo(f"{machine['date']} on {machine['cpu']}, {machine['cpu cores']}, GPU: {machine['gpu']}")
    results = []
    for path in paths:
        result = run_notebook(path, timeout)
        results.append(result)
        echo(result.line())
        output.write_text(render_html(results, machine))  # a report so far, should the run be cut short
    failed = sum(not r.passed for r in results)
    total = sum(r.seconds for r in results)
    echo(f"{len(results) - failed}/{len(results)} passed in {total:.0f} s; report: {output}")
    return results
