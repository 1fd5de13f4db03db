"""Checks for lab 07 (benchmarking): the learner's summary of raw latencies and choice of a load point
for a p99 budget, both run on the lab's own measurement and compared with the course's answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..loadgen import Result
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
    """The course's answer: the most throughput among error-free results whose p99 is within the budget."""
    fitting = [r for r in results if r.errors == 0 and r.percentile(99) <= p99_budget_ms]
    return max(fitting, key=lambda r: r.throughput, default=None)


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
        elif expected is None:
            problems = [f"{where}, nothing fits, so the answer is None; you returned {_describe(got)}."]
        else:
            problems = [f"{where}, you chose {_describe(got)}; {_describe(expected)} also fits and gives more "
                        f"throughput{at_budget}."]
        return failed(exercise, *problems, hint="Keep the results without errors whose percentile(99) <= budget; of "
                      "those return the one with the largest throughput; None when none is left.")
    return passed(exercise, f"your choice matches the course's on all {len(cases)} budgets, derived from this lab's "
                  "measurement and from a worked example.")
