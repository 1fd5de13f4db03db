"""Lab 07 checks, on a real (short) measurement of the course model, and the learner's perf_analyzer
command run against a real server."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import triton_course
from triton_course import loadgen, perf_analyzer
from triton_course.checks import lab07
from triton_course.paths import MODEL_NAME
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

        def pick(p):
            return ordered[max(0, int(np.ceil(p / 100 * len(ordered))) - 1)]

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
    assert "all 18 budgets" in verdict.confirmation


def test_choice_mistakes(results):
    def fastest(rs, budget):  # lowest latency instead of most throughput
        fit = [r for r in rs if r.stable and r.errors == 0 and r.percentile(99) <= budget]
        return min(fit, key=lambda r: r.percentile(99), default=None)

    def by_p50(rs, budget):
        fit = [r for r in rs if r.stable and r.errors == 0 and r.percentile(50) <= budget]
        return max(fit, key=lambda r: r.throughput, default=None)

    def strict(rs, budget):
        fit = [r for r in rs if r.stable and r.errors == 0 and r.percentile(99) < budget]
        return max(fit, key=lambda r: r.throughput, default=None)

    def no_default(rs, budget):
        fit = [r for r in rs if r.stable and r.errors == 0 and r.percentile(99) <= budget]
        return max(fit, key=lambda r: r.throughput)

    def ignores_errors(rs, budget):
        return max([r for r in rs if r.stable and r.percentile(99) <= budget], key=lambda r: r.throughput, default=None)

    def concurrency(rs, budget):
        best = lab07.best_under_budget(rs, budget)
        return best and best.concurrency

    def ignores_stability(rs, budget):
        fit = [r for r in rs if r.errors == 0 and r.percentile(99) <= budget]
        return max(fit, key=lambda r: r.throughput, default=None)

    cases = {
        fastest: "also fits and gives more throughput",
        by_p50: "its p99 is over the budget",
        strict: "equal to the budget meets it",
        no_default: "return None instead",
        ignores_errors: "failed requests",
        concurrency: "return the Result itself",
        ignores_stability: "was marked UNSTABLE",
    }
    for choose, message in cases.items():
        verdict = lab07.check_choice(choose, results)
        assert not verdict.ok and message in str(verdict), (choose.__name__, str(verdict))


def test_choice_among_unstable_points_is_refused(results):
    """Lab 07 once accepted a choice among points all marked unstable: the check now refuses it, says why and
    what to do (longer windows); a right answer passes but is told that nothing on the lab's run can be chosen."""
    shaky = [dataclasses.replace(r, stable=False) for r in results]

    def ignores_stability(rs, budget):
        fit = [r for r in rs if r.errors == 0 and r.percentile(99) <= budget]
        return max(fit, key=lambda r: r.throughput, default=None)

    verdict = lab07.check_choice(ignores_stability, shaky)
    text = str(verdict)
    assert not verdict.ok and "was marked UNSTABLE" in text and "its p99 is not a figure you can promise" in text
    assert "measure again with longer windows" in text and "window_s=1.0" in text and "r.stable" in text
    assert lab07.best_under_budget(shaky, 1e9) is None
    assert lab07.check_choice(lab07.best_under_budget, shaky).ok
    note = lab07.stability_note(shaky)
    assert "Every point of this measurement was marked unstable" in note and "longer windows" in note
    steady = [dataclasses.replace(r, stable=True) for r in results[1:]]  # built, not measured: a busy run varies
    assert "marked unstable: shown in the table, left out" in lab07.stability_note(shaky[:1] + steady)


def test_unstable_perf_analyzer_run_says_to_lengthen_the_windows():
    problems, hint = lab07._failure_problems(
        ["perf_analyzer", "-m", "m", "-u", "127.0.0.1:1", "-i", "grpc"],
        "Failed to obtain stable measurement within 10 measurement windows for concurrency 2. Please try to "
        "increase the --measurement-interval.", "m", "127.0.0.1:1", "127.0.0.1:2")
    assert "UNSTABLE" in problems[0] and "twice in a row" in problems[0]
    assert "Failed to obtain stable measurement" in problems[0]
    assert "--measurement-interval 2000 --stability-percentage 25 --max-trials 8" in hint


# --- Exercise 3: the learner's perf_analyzer command, run against a real server ------------------------------

@pytest.fixture(scope="module")
def served(reference_repo):
    with triton_course.start_server(reference_repo) as server:
        yield server


def right_command(model, grpc_address, csv_path):
    return ["perf_analyzer", "-m", model, "-u", grpc_address, "-i", "grpc", "--concurrency-range", "2:2",
            "--shape", "input:3,224,224", "--measurement-interval", "1000", "--stability-percentage", "25",
            "--max-trials", "8", "-f", str(csv_path)]


def changed(drop=(), **replace):
    """The right command with flags dropped (and their values) or given other values (flag=value)."""
    def build(model, grpc_address, csv_path):
        args = right_command(model, grpc_address, csv_path)
        out = []
        for flag, value in zip(args[1::2], args[2::2]):
            if flag in drop:
                continue
            out += [flag, replace.get(flag, value)]
        return args[:1] + out
    return build


def check(build, served, tmp_path):
    return lab07.check_perf_analyzer_command(build, MODEL_NAME, served.grpc_address, served.http_url,
                                             tmp_path / "perf.csv")


def test_perf_command_right_answer_runs_and_writes_its_report(served, tmp_path):
    verdict = check(right_command, served, tmp_path)
    assert verdict.ok, verdict
    (measured,) = perf_analyzer.parse_csv((tmp_path / "perf.csv").read_text())
    assert measured.concurrency == 2 and measured.throughput > 0 and measured.p99_ms >= measured.p50_ms > 0
    # the = form of long flags is the same command
    def equals(m, g, c):
        return ["perf_analyzer", "-m", m, "-u", g, "-i", "grpc", "--concurrency-range=2:2",
                "--shape=input:3,224,224", "--measurement-interval=1000", "--stability-percentage=25",
                "--max-trials=8", "-f", str(c)]

    assert check(equals, served, tmp_path).ok


def test_perf_command_failures_quote_perf_analyzer(served, tmp_path):
    """Commands perf_analyzer refuses: each verdict names the flag and quotes perf_analyzer."""
    cases = {
        changed(**{"-m": "resnet50"}): ["-m resnet50", "perf_analyzer said:", "Request for unknown model",
                                        MODEL_NAME],
        changed(drop=("-i",)): ["-i is missing, so perf_analyzer speaks HTTP", "perf_analyzer said:"],
        changed(**{"-u": served.http_url.split("://")[1]}): ["is the server's HTTP address, but -i grpc",
                                                              "perf_analyzer said:"],
        changed(**{"-u": "grpc://" + served.grpc_address}): ["without a scheme", "perf_analyzer said:"],
        changed(drop=("-m",)): ["-m is missing"],
    }
    for build, messages in cases.items():
        text = str(check(build, served, tmp_path))
        assert text.startswith("NOT YET") and all(m in text for m in messages), (messages, text)


def test_a_command_that_never_measures_stably_is_run_twice_then_named(served, tmp_path):
    """--stability-percentage 0 asks for windows that agree exactly, which never happens: perf_analyzer fails on
    stability every time. The check runs a command that fails so once more (one busy moment should not fail a
    right command), then says what happened, quoting perf_analyzer."""
    text = str(check(changed(**{"--stability-percentage": "0", "--max-trials": "3", "--measurement-interval": "300"}),
                     served, tmp_path))
    assert text.startswith("NOT YET") and "twice in a row" in text and "Failed to obtain stable measurement" in text


def test_perf_command_runs_that_succeed_but_miss_the_exercise(served, tmp_path):
    """perf_analyzer accepts these; the check reads its report and the arguments and names the flag."""
    cases = {
        changed(drop=("-f",)): "-f is missing",
        changed(**{"--concurrency-range": "4"}): "--concurrency-range 4: the report holds concurrency [4]",
        changed(drop=("--concurrency-range",)): "--concurrency-range is missing, so perf_analyzer used its default",
        changed(drop=("--shape",)): "--shape is missing",
        changed(**{"--shape": "input:1,3,224,224"}): "includes the batch dimension",
    }
    for build, message in cases.items():
        text = str(check(build, served, tmp_path))
        assert text.startswith("NOT YET") and message in text, (message, text)


def test_perf_command_wrong_types(served, tmp_path):
    def as_text(m, g, c):
        return " ".join(right_command(m, g, c))

    def no_program(m, g, c):
        return right_command(m, g, c)[1:]

    assert "return a list of strings" in str(check(as_text, served, tmp_path))
    assert "starts with the program" in str(check(no_program, served, tmp_path))
    assert "raised KeyError" in str(check(lambda m, g, c: {}["x"], served, tmp_path))
