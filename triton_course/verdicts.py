"""Did a change make a difference, or is it noise? One home for the course's measured verdicts.

A single measurement on a shared machine moves by 10-30 % from one run to the next, so one figure against
another says little. The course measures both configurations several times, **alternating** (A, B, A, B, ...:
whatever else the machine does meanwhile hits both alike), and judges by one rule:

    B "raised" the quantity only when every run of B beat every run of A (the two ranges, min..max, do not
    overlap, B above); "lowered" when every run of B fell below every run of A; otherwise the difference is
    "within the noise".

With 3 runs a side, two configurations that do not differ at all still come out "raised" or "lowered" in 1
case out of 10 (2 of the 20 ways to order six runs put one side wholly above the other), so a sentence that
only says "no difference beyond the noise, or costs a little" (verdict != "raised") is the safe kind to
assert; more runs make the rule stricter.

Numbers in, verdict out: `compare` takes plain figures (the load generator's `Result.throughput`,
perf_analyzer's `Measurement.throughput`, p99 latencies, in-process ceilings, ...). It returns a `Verdict`:
the structured result (each side's median and range, the ratio of medians, the verdict word) for assertions,
and its sentence for the learner. `alternate` runs two measurements in the alternating order.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

RAISED, LOWERED, NOISE, TOO_FEW = "raised", "lowered", "within the noise", "too few runs to judge"
MIN_REPEATS = 3  # runs per side below which `compare` gives no verdict (unless told otherwise)


@dataclass(frozen=True)
class Spread:
    """The runs of one configuration: their figures, median and range."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def low(self) -> float:
        return float(min(self.values))

    @property
    def high(self) -> float:
        return float(max(self.values))

    def describe(self, fmt: str = "{:.0f}") -> str:
        """`median (min..max, N runs)`, or the one figure when there is one run."""
        if len(self.values) == 1:
            return f"{fmt.format(self.median)} (1 run)"
        return (f"{fmt.format(self.median)} ({fmt.format(self.low)}..{fmt.format(self.high)}, "
                f"{len(self.values)} runs)")


@dataclass(frozen=True)
class Verdict:
    """B against A: each side's spread, the ratio of the medians (B / A), the verdict word (RAISED,
    LOWERED, NOISE or TOO_FEW) and the sentence that says it."""

    a_name: str
    b_name: str
    quantity: str
    unit: str
    a: Spread
    b: Spread
    ratio: float
    verdict: str
    sentence: str

    @property
    def changed(self) -> bool:
        """True when the ranges do not overlap (a verdict other than 'within the noise')."""
        return self.verdict in (RAISED, LOWERED)

    def __str__(self) -> str:
        return self.sentence


def judge(a: Sequence[float], b: Sequence[float], min_repeats: int = MIN_REPEATS) -> str:
    """The rule alone: RAISED when every B is above every A, LOWERED when every B is below every A,
    TOO_FEW when a side has fewer than `min_repeats` runs, else NOISE."""
    if min(len(a), len(b)) < max(min_repeats, 1):
        return TOO_FEW
    if min(b) > max(a):
        return RAISED
    if max(b) < min(a):
        return LOWERED
    return NOISE


def compare(a: Sequence[float], b: Sequence[float], *, a_name: str = "A", b_name: str = "B",
            quantity: str = "throughput", unit: str = "infer/s", fmt: str = "{:.0f}",
            words: tuple[str, str] = ("raised {quantity}", "lowered {quantity}"),
            min_repeats: int = MIN_REPEATS) -> Verdict:
    """B's runs against A's. `words` are the sentence's phrases for RAISED and LOWERED ({quantity} and {a_name}
    are filled in; e.g. ("ran above {a_name}", "ran below {a_name}") for a figure held against a reference); the
    structured `verdict` keeps RAISED / LOWERED / NOISE / TOO_FEW.
    `min_repeats=1` allows a single figure against another side's spread."""
    a_spread, b_spread = Spread(tuple(float(v) for v in a)), Spread(tuple(float(v) for v in b))
    ratio = b_spread.median / a_spread.median if a_spread.median else float("nan")
    verdict = judge(a_spread.values, b_spread.values, min_repeats)
    figures = (f"{b_name} {b_spread.describe(fmt)} against {a_name} {a_spread.describe(fmt)} {unit}, "
               f"x{ratio:.2f} of the medians")
    if verdict in (RAISED, LOWERED):
        phrase = words[verdict == LOWERED].format(quantity=quantity, a_name=a_name)
        side = "above" if verdict == RAISED else "below"
        sentence = (f"{b_name} {phrase} beyond the noise (every run of {b_name} {side} every run of {a_name}): "
                    f"{figures}.")
    elif verdict == NOISE:
        sentence = f"{b_name} against {a_name}: {quantity} within the noise (the runs overlap): {figures}."
    else:
        sentence = f"{b_name} against {a_name}: {figures}; too few runs to tell a difference from noise."
    return Verdict(a_name, b_name, quantity, unit, a_spread, b_spread, ratio, verdict, sentence)


def alternate(*measures: Callable[[], object], repeats: int = MIN_REPEATS) -> tuple[list, ...]:
    """Run the measurements in turn, A, B, A, B, ... (or A, B, C, A, B, C, ...), `repeats` rounds, and
    return each one's results in order: (A's runs, B's runs, ...)."""
    runs: tuple[list, ...] = tuple([] for _ in measures)
    for _ in range(repeats):
        for measure, results in zip(measures, runs):
            results.append(measure())
    return runs


def median_run(runs: Sequence, key: Callable[[object], float] = lambda r: r.throughput):
    """The run whose `key` is the median of the runs (the lower middle one for an even count): one real
    measurement to show in a table or plot for a point measured several times."""
    ordered = sorted(runs, key=key)
    return ordered[(len(ordered) - 1) // 2]
