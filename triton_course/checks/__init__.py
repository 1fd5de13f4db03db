"""Automatic checks for the labs: each says precisely what is wrong, or confirms the answer works.

A check takes the learner's answer (a config text, a function, a running server, ...), tries it
against a real Triton server where that is what the answer is for, and returns a `Verdict`.
Lab modules live beside this one (`lab05.py` checks `labs/05_*.ipynb`); the notebook shows the
verdict as the last line of its check cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import quote


@dataclass
class Verdict:
    """The outcome of one check: `ok`, and the lines that say what is right or wrong.

    A failed verdict names the field or value at fault, quotes the message where there is one
    (`triton_said`) under its writer's name, and gives a hint the learner can act on. The writer is
    Triton, or the course's runner whose words Triton passed on (`triton_course.errors.quote` tells
    them apart), or `said_by` where the check knows better (a parser, a copy of a backend's rule).
    """

    exercise: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    triton_said: str = ""
    hint: str = ""
    confirmation: str = ""
    said_by: str = ""

    def __repr__(self) -> str:
        if self.ok:
            return f"PASSED {self.exercise}: {self.confirmation or 'your answer works.'}"
        lines = [f"NOT YET {self.exercise}:"]
        lines += [f"  - {problem}" for problem in self.problems]
        if self.triton_said:
            lines.append(f"  {quote(self.triton_said, self.said_by or 'Triton')}")
        if self.hint:
            lines.append(f"  Hint: {self.hint}")
        return "\n".join(lines)

    __str__ = __repr__

    def __bool__(self) -> bool:
        return self.ok


def passed(exercise: str, confirmation: str) -> Verdict:
    return Verdict(exercise, True, confirmation=confirmation)


def failed(exercise: str, *problems: str, triton_said: str = "", hint: str = "", said_by: str = "") -> Verdict:
    return Verdict(exercise, False, list(problems), triton_said=triton_said, hint=hint, said_by=said_by)
