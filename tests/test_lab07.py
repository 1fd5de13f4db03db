"""Lab 07 checks, on a real (short) measurement of the course model."""

from __future__ import annotations

import numpy as np
import pytest

import triton_course
from triton_course import loadgen
from triton_course.checks import lab07
from triton_course.photos import photo, preprocess


@pytest.fixture(scope="module")
def results(reference_repo):
    with triton_course.start_server(reference_repo) as server:
        return loadgen.sweep(server.grpc_address, preprocess(photo("coffee"))[None], concurrencies=(1, 2, 4),
                             protocol="grpc", warmup_s=0.3, window_s=0.4, max_windows=3)


def right_summary(latencies_ms, seconds):
    return {"p50_ms": np.percentile(latencies_ms, 50), "p99_ms": np.percentile(latencies_ms, 99),
            "throughput": len(latencies_ms) / seconds}


def test_summary_right_and_nearest_rank_pass(results):
    assert lab07.check_summary(right_summary, results[-1]).ok

    def nearest_rank(latencies_ms, seconds):
        ordered = sorted(latencies_ms)
        pick = lambda p: ordered[max(0, int(np.ceil(p / 100 * len(ordered))) - 1)]  # noqa: E731
        return {"p50_ms": pick(50), "p99_ms": pick(99), "throughput": len(ordered) / seconds}

    assert lab07.check_summary(nearest_rank, results[-1]).ok


def with_(**changes):
    def summarize(latencies_ms, seconds):
        answer = right_summary(latencies_ms, seconds)
        answer.update({k: f(latencies_ms, seconds) for k, f in changes.items()})
        return answer
    return summarize


def test_summary_mistakes(results):
    measured = results[-1]  # 4 clients
    cases = {
        "is the mean latency": with_(p50_ms=lambda lat, s: np.mean(lat)),
        "is the slowest request": with_(p99_ms=lambda lat, s: np.max(lat)),
        "np.percentile takes a percent (99), not a fraction": with_(p99_ms=lambda lat, s: np.percentile(lat, 0.99)),
        "is 1000 / mean latency: one client's rate": with_(throughput=lambda lat, s: 1000 / np.mean(lat)),
        "off by a factor of 1000": with_(throughput=lambda lat, s: len(lat) / s / 1000),
    }
    for message, summarize in cases.items():
        verdict = lab07.check_summary(summarize, measured)
        assert not verdict.ok and message in str(verdict), (message, str(verdict))
    assert "return a dict with the keys" in str(lab07.check_summary(lambda lat, s: (1, 2, 3), measured))
    assert "raised ZeroDivisionError" in str(lab07.check_summary(lambda lat, s: 1 / 0, measured))


def test_summary_hand_typed_numbers_fail(results):
    typed = right_summary(results[-1].latencies_ms, results[-1].seconds)
    verdict = lab07.check_summary(lambda lat, s: typed, results[-1])
    assert not verdict.ok and "latencies 1, 2, ..., 100 ms" in str(verdict)


def test_choice_right(results):
    verdict = lab07.check_choice(lab07.best_under_budget, results)
    assert verdict.ok, verdict
    assert "all 16 budgets" in verdict.confirmation


def test_choice_mistakes(results):
    def fastest(rs, budget):  # lowest latency instead of most throughput
        fit = [r for r in rs if r.errors == 0 and r.percentile(99) <= budget]
        return min(fit, key=lambda r: r.percentile(99), default=None)

    def by_p50(rs, budget):
        fit = [r for r in rs if r.errors == 0 and r.percentile(50) <= budget]
        return max(fit, key=lambda r: r.throughput, default=None)

    def strict(rs, budget):
        fit = [r for r in rs if r.errors == 0 and r.percentile(99) < budget]
        return max(fit, key=lambda r: r.throughput, default=None)

    def no_default(rs, budget):
        return max([r for r in rs if r.errors == 0 and r.percentile(99) <= budget], key=lambda r: r.throughput)

    def ignores_errors(rs, budget):
        return max([r for r in rs if r.percentile(99) <= budget], key=lambda r: r.throughput, default=None)

    def concurrency(rs, budget):
        best = lab07.best_under_budget(rs, budget)
        return best and best.concurrency

    cases = {
        fastest: "also fits and gives more throughput",
        by_p50: "its p99 is over the budget",
        strict: "equal to the budget meets it",
        no_default: "return None instead",
        ignores_errors: "failed requests",
        concurrency: "return the Result itself",
    }
    for choose, message in cases.items():
        verdict = lab07.check_choice(choose, results)
        assert not verdict.ok and message in str(verdict), (choose.__name__, str(verdict))
