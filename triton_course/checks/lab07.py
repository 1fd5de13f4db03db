"""Checks for lab 07 (benchmarking): the learner's summary of raw latencies and choice of a load point
for a p99 budget, both run on the lab's own measurement and compared with the course's answers; and the
learner's perf_analyzer command line, run against the lab's server."""

from __future__ import annotations

import dataclasses
import math
import subprocess
from pathlib import Path

import numpy as np

from ..loadgen import Result
from ..perf_analyzer import flag_value as _flag  # one reader of a command line's flags
from . import Verdict, failed, passed

KEYS = ("p50_ms", "p99_ms", "throughput")


def _rank_range(latencies: np.ndarray, p: float) -> tuple[float, float]:
    """The values a correct p-th percentile may take: the usual definitions (interpolated, nearest rank,
    lower, higher) all land between the neighbouring ranks."""
    ordered = np.sort(latencies)
    n = len(ordered)
    position = p / 100 * (n - 1)
    low = max(0, math.floor(position) - 1)
    high = min(n - 1, max(math.ceil(position), math.ceil(p / 100 * n) - 1))
    return float(ordered[low]), float(ordered[high])


def _within(value: float, bounds: tuple[float, float]) -> bool:
    low, high = bounds
    return low - 1e-9 <= value <= high + 1e-9


def _close(a: float, b: float, rel: float = 0.01) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1e-9)


def _summary_problems(summarize, latencies: np.ndarray, seconds: float, clients: int) -> list[str]:
    """What is wrong with `summarize(latencies, seconds)` on one set of latencies."""
    try:
        got = summarize(latencies.copy(), seconds)
    except Exception as exc:  # noqa: BLE001 - the learner's code: report what it raised
        return [f"Your function raised {type(exc).__name__}: {exc}"]
    if not isinstance(got, dict) or any(k not in got for k in KEYS):
        return [f"Your function returned {got!r:.100}; return a dict with the keys {', '.join(KEYS)}."]
    try:
        p50, p99, throughput = (float(got[k]) for k in KEYS)
    except (TypeError, ValueError):
        return [f"The values must be numbers; got {got!r:.100}."]
    problems = []
    if not _within(p50, _rank_range(latencies, 50)):
        if _close(p50, float(np.mean(latencies))):
            problems.append(f"p50_ms {p50:.2f} is the mean latency; p50 is the median (half the requests were "
                            "faster).")
        else:
            problems.append(f"p50_ms is {p50:.2f}; the median of these latencies is "
                            f"{np.percentile(latencies, 50):.2f} ms.")
    if not _within(p99, _rank_range(latencies, 99)):
        if _close(p99, float(np.max(latencies)), 1e-9):
            problems.append(f"p99_ms {p99:.2f} is the slowest request (the maximum); p99 is the latency that 99 % of "
                            "requests stayed under.")
        elif _close(p99, float(np.percentile(latencies, 0.99))):
            problems.append("p99_ms came out near the fastest request: np.percentile takes a percent (99), not a "
                            "fraction (0.99); np.quantile is the one that takes 0.99.")
        else:
            problems.append(f"p99_ms is {p99:.2f}; the 99th percentile of these latencies is "
                            f"{np.percentile(latencies, 99):.2f} ms.")
    expected = len(latencies) / seconds
    if not _close(throughput, expected):
        per_client = 1000 / float(np.mean(latencies))
        if _close(throughput, per_client, 0.02) and clients > 1:
            problems.append(f"throughput {throughput:.1f} is 1000 / mean latency: one client's rate. {clients} clients "
                            f"had requests in flight at once; count the answers instead: {len(latencies)} requests "
                            f"in {seconds:.2f} s.")
        elif _close(throughput, expected * 1000) or _close(throughput, expected / 1000):
            problems.append(f"throughput {throughput:.4g} is off by a factor of 1000: seconds is in seconds, the "
                            "latencies are in milliseconds.")
        else:
            problems.append(f"throughput is {throughput:.1f}; {len(latencies)} answered requests in {seconds:.2f} s "
                            f"make {expected:.1f} per second.")
    return problems


def check_summary(summarize, result: Result) -> Verdict:
    """Exercise 1: `summarize(latencies_ms, seconds)` -> {p50_ms, p99_ms, throughput}, on the lab's own
    measurement `result` and on a small set anyone can check by hand."""
    exercise = "Exercise 1 (p50, p99, throughput)"
    if not callable(summarize):
        return failed(exercise, f"Pass your function itself (summarize), not {type(summarize).__name__}.")
    by_hand = np.arange(1.0, 101.0)  # 1, 2, ..., 100 ms in 2 s: p50 50.5, p99 about 99, 50 requests/s
    by_hand_fine = np.arange(1.0, 1001.0) / 10  # enough requests that p99 and the maximum differ by ranks
    cases = [(result.latencies_ms, result.seconds, result.concurrency or 1,
              f"this lab's measurement ({len(result.latencies_ms)} requests, {result.concurrency} clients)"),
             (by_hand, 2.0, 1, "latencies 1, 2, ..., 100 ms measured over 2 s"),
             (by_hand_fine, 10.0, 1, "latencies 0.1, 0.2, ..., 100 ms measured over 10 s")]
    for latencies, seconds, clients, what in cases:
        problems = _summary_problems(summarize, np.asarray(latencies, dtype=float), seconds, clients)
        if problems:
            return failed(exercise, f"On {what}:", *problems,
                          hint="np.percentile(latencies_ms, 50) and (..., 99); throughput = answered requests / "
                               "seconds of measurement.")
    return passed(exercise, f"your p50, p99 and throughput agree with the course's on this lab's measurement "
                  f"({result.concurrency} clients) and on two sets checked by hand.")


def best_under_budget(results: list[Result], p99_budget_ms: float) -> Result | None:
    """The course's answer: the most throughput among stable, error-free results whose p99 is within the budget.
    A point whose windows never agreed (`stable` False) measured nothing one can promise: it is left out."""
    fitting = [r for r in results if r.stable and r.errors == 0 and r.percentile(99) <= p99_budget_ms]
    return max(fitting, key=lambda r: r.throughput, default=None)


LONGER_WINDOWS = ("measure again with longer windows (loadgen.sweep(..., window_s=1.0, max_windows=8)) until the "
                  "points you choose among say stable=True")


def _describe(r) -> str:
    if isinstance(r, Result):
        return f"{r.label or 'result'} at {r.load} ({r.throughput:.0f} infer/s, p99 {r.percentile(99):.1f} ms)"
    return repr(r)


_EXAMPLE = ((1, 100, 5.0, 10.0), (4, 300, 8.0, 20.0), (8, 320, 15.0, 45.0))  # clients, requests in 1 s, latencies
_EXAMPLE_TEXT = "; ".join(f"{c} clients: {n} infer/s, latencies {lo:g} to {hi:g} ms" for c, n, lo, hi in _EXAMPLE)


def worked_example() -> list[Result]:
    """Three load points where more throughput costs more latency, as on a GPU: the lowest-latency
    point is not the answer once the budget allows more."""
    return [Result(label="example", concurrency=c, rate=None, requests=n, errors=0, seconds=1.0,
                   latencies_ms=np.linspace(lo, hi, n)) for c, n, lo, hi in _EXAMPLE]


def _budget_cases(results: list[Result]) -> list[tuple[str, list[Result], float]]:
    """Budgets derived from the measurement itself: below every p99, exactly at each p99, between them,
    above all; and the same results with errors in the best one."""
    p99s = sorted(r.percentile(99) for r in results)
    cases = [("a budget below every p99", results, p99s[0] * 0.5)]
    for value in p99s:
        cases.append(("a budget of exactly one point's own p99", results, value))
    for a, b in zip(p99s, p99s[1:]):
        cases.append(("a budget between two points' p99", results, (a + b) / 2))
    cases.append(("a budget above every p99", results, p99s[-1] * 2))
    best = best_under_budget(results, p99s[-1] * 2)
    with_errors = [dataclasses.replace(r, errors=3, first_error="(3 requests failed)") if r is best else r
                   for r in results]
    cases.append(("a budget above every p99, when the best point had 3 failed requests", with_errors,
                  p99s[-1] * 2))
    shaky = [dataclasses.replace(r, stable=False) if r is best else r for r in results]
    cases.append(("a budget above every p99, when the best point was marked unstable", shaky, p99s[-1] * 2))
    return cases


def check_choice(choose, results: list[Result]) -> Verdict:
    """Exercise 2: `choose(results, p99_budget_ms)` returns the Result with the most throughput whose p99
    stays within the budget and that had no errors, or None when none does."""
    exercise = "Exercise 2 (choosing for a p99 budget)"
    if not callable(choose):
        return failed(exercise, f"Pass your function itself (choose), not {type(choose).__name__}.")
    cases = [(f"this lab's measurement, {what}", candidates, budget)
             for what, candidates, budget in _budget_cases(results)]
    cases += [(f"the worked example ({_EXAMPLE_TEXT}), {what}", candidates, budget)
              for what, candidates, budget in _budget_cases(worked_example())]
    for what, candidates, budget in cases:
        where = f"On {what} ({budget:.2f} ms)"
        expected = best_under_budget(candidates, budget)
        try:
            got = choose(list(candidates), budget)
        except Exception as exc:  # noqa: BLE001 - the learner's code: report what it raised
            hint = ("When nothing fits, max() of an empty list raises: return None instead (max(..., default=None))."
                    if expected is None else "Read the error above; print the results to see their fields.")
            return failed(exercise, f"{where}, your function raised {type(exc).__name__}: {exc}", hint=hint)
        if got is expected:
            continue
        at_budget = " (a p99 equal to the budget meets it: compare with <=)" if expected is not None and \
            expected.percentile(99) == budget else ""
        if got is None:
            problems = [f"{where}, you returned None, but {_describe(expected)} fits{at_budget}."]
        elif not isinstance(got, Result):
            problems = [f"{where}, you returned {_describe(got)}; return the Result itself (one of `results`)."]
        elif got.percentile(99) > budget:
            problems = [f"{where}, you chose {_describe(got)}: its p99 is over the budget (did you compare the "
                        "p50, or the mean?)."]
        elif got.errors:
            problems = [f"{where}, you chose {_describe(got)}, which had {got.errors} failed requests: a point "
                        "with errors does not meet any budget."]
        elif not got.stable:
            problems = [f"{where}, you chose {_describe(got)}, which was marked UNSTABLE (stable=False: its "
                        "measurement windows never agreed within 10 %, so its p99 is not a figure you can promise). "
                        "Choose only among stable points; when none is stable, " + LONGER_WINDOWS + "."]
        elif expected is None:
            problems = [f"{where}, nothing fits, so the answer is None; you returned {_describe(got)}."]
        else:
            problems = [f"{where}, you chose {_describe(got)}; {_describe(expected)} also fits and gives more "
                        f"throughput{at_budget}."]
        return failed(exercise, *problems, hint="Keep the stable results (r.stable) without errors whose "
                      "percentile(99) <= budget; of those return the one with the largest throughput; None when none "
                      "is left.")
    return passed(exercise, f"your choice matches the course's on all {len(cases)} budgets, derived from this lab's "
                  "measurement and from a worked example.")


def stability_note(results: list[Result]) -> str:
    """One line on the lab's own measurement: which points were marked unstable (left out of every choice), and
    what to do when all of them were."""
    unstable = [r.load for r in results if not r.stable]
    if not unstable:
        return "Every point was stable: each can be chosen."
    if len(unstable) == len(results):
        return (f"Every point of this measurement was marked unstable ({', '.join(unstable)}), so no budget can be "
                f"met on it: {LONGER_WINDOWS}, then choose again.")
    return f"{', '.join(unstable)} marked unstable: shown in the table, left out of every choice."


# --- Exercise 3: a perf_analyzer command line, run against the lab's server -------------------------------

PERF_CONCURRENCY = 2
PERF_TIMEOUT_S = 120


def _quote(said: str) -> str:
    """perf_analyzer's own words: its last line that reports a failure or an error, else its last line (it writes
    errors to stderr and its progress to stdout, so the last line alone can be "Request concurrency: 2")."""
    lines = [line.strip() for line in said.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "fail" in line.lower() or "error" in line.lower()]
    return (errors or lines or ["(nothing)"])[-1]


def _failure_problems(args, said, model, grpc_address, http_address) -> tuple[list[str], str]:
    """Why a perf_analyzer run that exited with an error failed: the flag at fault, with its own words."""
    quote = f"perf_analyzer said: {_quote(said)!r}"
    name, url, protocol = _flag(args, "-m"), _flag(args, "-u"), _flag(args, "-i")
    if name is None:
        return [f"-m is missing: perf_analyzer needs the model's name. {quote}"], "Add \"-m\", model."
    if name != model:
        return [f"-m {name}: the server has no model of that name ({quote}); the lab's model is {model!r}."], \
            "Pass the function's `model` argument after -m."
    if url and "://" in url:
        return [f"-u {url}: perf_analyzer takes host:port without a scheme ({quote})."], \
            "Pass grpc_address as it is (127.0.0.1:PORT)."
    if url == http_address and protocol == "grpc":
        return [f"-u {url} is the server's HTTP address, but -i grpc speaks gRPC to it ({quote})."], \
            "With -i grpc, -u is the gRPC address: the function's grpc_address argument."
    if url == grpc_address and protocol in (None, "http"):
        told = "-i is missing, so perf_analyzer speaks HTTP (its default)" if protocol is None else "-i http"
        return [f"{told}, but -u {url} is the server's gRPC port ({quote})."], "Add \"-i\", \"grpc\"."
    if url != grpc_address:
        return [f"-u {url or '(missing: perf_analyzer then tries localhost:8000)'} is not this server's gRPC "
                f"address {grpc_address} ({quote})."], "Pass the function's grpc_address argument after -u."
    if "stable measurement" in said:
        return ["perf_analyzer could not get three measurement windows that agree within its stability "
                f"percentage, twice in a row ({quote}): the machine was busy, so this point is UNSTABLE and its "
                "figures mean nothing."], \
            ("Give it longer windows and a looser rule: --measurement-interval 2000 --stability-percentage 25 "
             "--max-trials 8, then run the check again.")
    return [f"perf_analyzer stopped with an error: {quote}"], "Read its message; run the command in a terminal."


def _report_problems(args, csv_path: Path, report: list) -> tuple[list[str], str]:
    """What is wrong with a run that succeeded: the flags perf_analyzer accepted but the exercise does not."""
    written = _flag(args, "-f")
    if written is None:
        return ["-f is missing: perf_analyzer printed its report but wrote no CSV file."], \
            "Add \"-f\", str(csv_path): the CSV is what you (and Model Analyzer) read afterwards."
    if Path(written) != csv_path:
        return [f"-f {written}: the report went there; the exercise asks for the csv_path argument ({csv_path})."], \
            "Pass csv_path after -f."
    protocol = _flag(args, "-i")
    if protocol != "grpc":
        return [f"-i {protocol or '(missing, so HTTP)'}: perf_analyzer measured over HTTP; the exercise asks for "
                "gRPC."], "Add \"-i\", \"grpc\" and use grpc_address for -u."
    concurrencies = [m.concurrency for m in report]
    if concurrencies != [PERF_CONCURRENCY]:
        given = _flag(args, "--concurrency-range")
        told = (f"--concurrency-range {given}" if given else
                "--concurrency-range is missing, so perf_analyzer used its default (1)")
        return [f"{told}: the report holds concurrency {concurrencies}; the exercise asks for {PERF_CONCURRENCY} "
                "alone."], f"--concurrency-range {PERF_CONCURRENCY}:{PERF_CONCURRENCY} (start:end) measures one level."
    batch = _flag(args, "-b")
    if batch not in (None, "1"):
        return [f"-b {batch}: each request then carries {batch} images; the exercise asks for one image per "
                "request."], "Leave -b out (its default is 1) or write -b 1."
    shape = _flag(args, "--shape")
    expected = "input:3,224,224"
    if shape is None:
        return ["--shape is missing. This model's dims are fixed ([3, 224, 224]), so perf_analyzer managed without "
                "it, but a model with a variable dimension (-1) cannot be measured without it, and the exercise "
                "asks for it."], f"Add \"--shape\", \"{expected}\" (input name, then the dims without the batch)."
    if shape != expected:
        name, _, dims = shape.partition(":")
        if name != "input":
            why = f"the model's input is called 'input', not {name!r}"
        elif dims.split(",")[1:] == ["3", "224", "224"]:
            why = "it includes the batch dimension, which -b sets; --shape gives the dims after it"
        else:
            why = "the model's input dims are 3,224,224"
        return [f"--shape {shape}: {why}. perf_analyzer did not complain, because this model's dims are fixed, "
                "but on a model with a -1 dimension it would send that shape."], f"Write \"--shape\", \"{expected}\"."
    return [], ""


def check_perf_analyzer_command(build, model: str, grpc_address: str, http_address: str, csv_path) -> Verdict:
    """Exercise 3: `build(model, grpc_address, csv_path)` returns perf_analyzer's command line as a list of
    strings. The check runs it (the course's perf_analyzer in place of the first item) against the lab's
    server and reads what perf_analyzer said and wrote; each mistake is named by its flag."""
    from .. import perf_analyzer

    exercise = "Exercise 3 (your perf_analyzer command)"
    csv_path = Path(csv_path)
    http_address = http_address.split("://", 1)[-1].rstrip("/")
    if not callable(build):
        return failed(exercise, f"Pass your function itself, not {type(build).__name__}.")
    try:
        args = build(model, grpc_address, csv_path)
    except Exception as exc:  # noqa: BLE001 - the learner's code: report what it raised
        return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}")
    if not isinstance(args, (list, tuple)) or not args or not all(isinstance(a, (str, Path, int)) for a in args):
        return failed(exercise, f"Your function returned {args!r:.120}; return a list of strings, "
                      "[\"perf_analyzer\", \"-m\", model, ...], one item per word of the command.",
                      hint="Numbers too are strings on a command line: \"2:2\", not 2.")
    args = [str(a) for a in args]
    if Path(args[0]).name != "perf_analyzer":
        return failed(exercise, f"The first item is {args[0]!r}: a command line starts with the program, "
                      "\"perf_analyzer\".")
    binary = perf_analyzer.find_binary()
    if binary is None:
        return failed(exercise, "perf_analyzer cannot run here, so the check cannot run your command.",
                      hint=perf_analyzer.unavailable_reason() or "")
    csv_path.unlink(missing_ok=True)
    try:
        done = subprocess.run([str(binary), *args[1:]], capture_output=True, text=True, timeout=PERF_TIMEOUT_S)
        if done.returncode != 0 and "stable measurement" in done.stderr + done.stdout:
            # A busy moment on a shared machine, not necessarily the command: once more before the verdict.
            done = subprocess.run([str(binary), *args[1:]], capture_output=True, text=True, timeout=PERF_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        interval = _flag(args, "-p", "--measurement-interval")
        return failed(exercise, f"perf_analyzer ran for more than {PERF_TIMEOUT_S} s. --measurement-interval is "
                      f"{interval or 'missing, so each window lasts 5000 ms (its default)'}.",
                      hint="--measurement-interval 1000 (milliseconds) keeps each window short.")
    if done.returncode != 0:
        problems, hint = _failure_problems(args, done.stderr + done.stdout, model, grpc_address, http_address)
        return failed(exercise, *problems, hint=hint)
    try:
        report = perf_analyzer.parse_csv(csv_path.read_text()) if csv_path.exists() else []
    except ValueError as exc:
        return failed(exercise, f"The file at -f is not the report the exercise asks for: {exc}.")
    problems, hint = _report_problems(args, csv_path, report)
    if problems:
        return failed(exercise, *problems, hint=hint)
    return passed(exercise, f"perf_analyzer ran your command against this lab's server over gRPC at concurrency "
                  f"{PERF_CONCURRENCY} and wrote its CSV report to csv_path.")
