"""The verdict rule: "raised"/"lowered" only when the two sides' runs do not overlap; numbers in, verdict out."""

from __future__ import annotations

import pytest

from triton_course import tuning, verdicts
from triton_course.loadgen import Result


def test_batching_losing_is_lowered():
    v = verdicts.compare([115, 120, 110], [88, 92, 90], a_name="no batching", b_name="batching")
    assert v.verdict == verdicts.LOWERED and v.changed
    assert (v.a.median, v.a.low, v.a.high) == (115, 110, 120)
    assert v.ratio == pytest.approx(90 / 115)
    assert v.sentence.startswith("batching lowered throughput beyond the noise")
    assert "batching 90 (88..92, 3 runs) against no batching 115 (110..120, 3 runs) infer/s, x0.78" in v.sentence


def test_batching_winning_is_raised():
    v = verdicts.compare([99, 104, 101], [140, 146, 151])
    assert v.verdict == verdicts.RAISED
    assert "raised throughput beyond the noise" in str(v)


def test_overlapping_runs_are_within_the_noise_even_with_a_large_median_ratio():
    # medians x0.67, but one run of A falls inside B's range: the machine's noise covers it
    v = verdicts.compare([31, 73, 111], [35, 49, 51])
    assert v.verdict == verdicts.NOISE and not v.changed
    assert "within the noise (the runs overlap)" in v.sentence
    assert v.ratio == pytest.approx(49 / 73)


def test_touching_ranges_count_as_overlap():
    assert verdicts.judge([100, 105, 110], [110, 120, 130]) == verdicts.NOISE
    assert verdicts.judge([100, 105, 110], [110.1, 120, 130]) == verdicts.RAISED


def test_too_few_runs_give_no_verdict_unless_allowed():
    assert verdicts.compare([100], [200]).verdict == verdicts.TOO_FEW
    assert "too few runs" in verdicts.compare([100, 101], [200, 201]).sentence
    single = verdicts.compare([80, 120, 160], [122], min_repeats=1, words=("ran above {a_name}", "ran below {a_name}"),
                              a_name="the ceiling", b_name="served")
    assert single.verdict == verdicts.NOISE
    above = verdicts.compare([80, 100, 110], [122], min_repeats=1, words=("ran above {a_name}", "ran below {a_name}"),
                             a_name="the ceiling", b_name="served")
    assert above.sentence.startswith("served ran above the ceiling beyond the noise")


def test_alternate_runs_in_turn_and_median_run():
    order = []
    a, b = verdicts.alternate(lambda: order.append("A") or len(order), lambda: order.append("B") or len(order),
                              repeats=3)
    assert order == ["A", "B", "A", "B", "A", "B"]
    assert a == [1, 3, 5] and b == [2, 4, 6]
    assert verdicts.median_run([3, 1, 2], key=float) == 2


def _result(c, throughput, batch=1.0, queue=0.05):
    return Result(label="x", concurrency=c, rate=None, requests=int(throughput), errors=0, seconds=1.0,
                  latencies_ms=__import__("numpy").array([10.0, 12.0]), server={"avg_batch": batch, "queue_ms": queue})


@pytest.mark.parametrize("plain, batched, expected", [
    ([115, 120, 110], [88, 92, 90], verdicts.LOWERED),
    ([99, 104, 101], [140, 146, 151], verdicts.RAISED),
    ([67, 103, 117], [95, 103, 113], verdicts.NOISE),
])
def test_explain_batching_takes_its_words_from_the_verdict(plain, batched, expected):
    p = [[_result(1, t) for t in plain]]
    b = [[_result(1, t) for t in batched]]
    assert tuning.batching_verdicts(p, b)[1].verdict == expected
    text = tuning.explain_batching(p, b, cpus=2, delay_us=0)
    if expected == verdicts.NOISE:
        assert "made no difference beyond the noise" in text and "raised throughput beyond" not in text.split("\n")[0]
    elif expected == verdicts.LOWERED:
        assert "batching cost throughput here, beyond the noise" in text
    else:
        assert "something other than batching changed" in text
