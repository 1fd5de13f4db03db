"""Checks for lab 05 (dynamic batching): the learner's config.pbtxt, loaded by the lab's server and
put under concurrent load, and the learner's reading of Triton's statistics."""

from __future__ import annotations

from ..artifact import INPUT_NAME
from ..errors import suggest_fix
from ..photos import photo, preprocess
from . import Verdict, failed, passed
from ._serving import burst, executions_by_batch_size, learner_config, load_answer, statistics

MODEL = "batched"  # the model folder exercise 1 writes config.pbtxt into
MAX_BATCH = 8
DELAY_US = 1000  # 1 ms

_LOAD_HINTS = {
    "preferred size must be <= max batch size":
        "preferred_batch_size may not exceed max_batch_size. Better: leave preferred_batch_size out, and "
        "Triton aims for max_batch_size without ever waiting past the delay.",
    "directory name must equal model name":
        f"The name field must be the folder's name, '{MODEL}' (or leave name out: Triton then uses the folder's).",
    "Expected integer":
        "max_batch_size and max_queue_delay_microseconds take whole numbers, without quotes or units.",
}


def _one_image() -> dict:
    return {INPUT_NAME: preprocess(photo("coffee"))[None]}


def check_batching_config(server, answer, model: str = MODEL) -> Verdict:
    """Exercise 1: `model` batches up to 8 requests and waits at most 1 ms for more, and batches of
    more than one request really form when 8 clients send at once."""
    exercise = "Exercise 1 (dynamic batching config)"
    served, refusal = load_answer(server, model, answer, exercise, _LOAD_HINTS)
    if refusal is not None:
        return refusal
    mine = learner_config(answer)
    problems, hints = [], []
    max_batch = int(served.get("max_batch_size", 0))
    if max_batch == 0:
        problems.append("max_batch_size is 0: the model then takes no batch dimension, so there is nothing to "
                        "batch (Triton loads it, and every execution runs one request).")
        hints.append("Set max_batch_size: 8 and keep dims: [ 3, 224, 224 ] (Triton adds the batch dimension).")
    elif max_batch != MAX_BATCH:
        problems.append(f"max_batch_size is {max_batch}; the task asks for batches of up to {MAX_BATCH} requests.")
    batching = served.get("dynamic_batching")
    if batching is None:
        problems.append("There is no dynamic_batching block: Triton uses its default scheduler, which runs every "
                        "request on its own.")
        hints.append(f"Add dynamic_batching {{ max_queue_delay_microseconds: {DELAY_US} }}.")
    else:
        delay = int(batching.get("max_queue_delay_microseconds", 0))
        if delay != DELAY_US:
            unit = ("the field counts microseconds, so 1 means 1 µs, not 1 ms" if delay == 1 else
                    "a request may then wait a whole second" if delay == 1_000_000 else
                    "0 never waits: only requests already queued are batched" if delay == 0 else
                    f"that is {delay / 1000:g} ms")
            problems.append(f"max_queue_delay_microseconds is {delay} ({unit}); 1 ms is {DELAY_US} microseconds.")
        preferred = list(mine.dynamic_batching.preferred_batch_size)
        if preferred and preferred != [max_batch]:
            problems.append(f"preferred_batch_size is {preferred}: the batcher then aims for those sizes and "
                            "waits for them; the task asks you to leave it out.")
            hints.append("Delete the preferred_batch_size line: Triton fills in max_batch_size.")
    if problems:
        return failed(exercise, *problems,
                      hint=" ".join(hints) or "Fix the fields named above and run the check again.")

    before = executions_by_batch_size(statistics(server, model))
    errors = burst(server, model, _one_image(), requests=16, clients=8)
    if errors:
        return failed(exercise, f"{len(errors)} of 16 requests to '{model}' failed.", triton_said=errors[0],
                      hint=suggest_fix(errors[0]))
    after = executions_by_batch_size(statistics(server, model))
    formed = {size: after[size] - before.get(size, 0) for size in after if after[size] > before.get(size, 0)}
    if not any(size > 1 for size in formed):
        return failed(exercise, "8 clients sent 16 requests at once, yet Triton ran every one on its own "
                      f"(executions by batch size: {formed}).",
                      hint="Is the dynamic_batching block inside the config you loaded? Run the check again: "
                           "on a very busy machine the requests may have trickled in one by one.")
    return passed(exercise, f"Triton loaded '{model}' with max_batch_size {MAX_BATCH} and dynamic batching "
                  f"(max_queue_delay_microseconds {DELAY_US}, preferred_batch_size filled in by Triton as "
                  f"[{MAX_BATCH}]), and 16 requests sent at once ran in batches of more than one request.")


def check_batch_histogram(server, fn, model: str = MODEL) -> Verdict:
    """Exercise 2: `fn(stats)` turns Triton's statistics answer into {batch size: executions}.

    The check sends a burst to `model`, asks the server for its statistics, and compares `fn`'s
    reading of that answer with the course's."""
    exercise = "Exercise 2 (reading batch_stats)"
    if not callable(fn):
        return failed(exercise, f"Pass your function itself (executions_by_batch_size), not {type(fn).__name__}.")
    errors = burst(server, model, _one_image(), requests=16, clients=8)
    if errors:
        return failed(exercise, f"Requests to '{model}' failed: is exercise 1 passing?", triton_said=errors[0],
                      hint=suggest_fix(errors[0]))
    stats = statistics(server, model)
    expected = executions_by_batch_size(stats)
    try:
        got = fn(stats)
    except Exception as exc:  # noqa: BLE001 - the learner's code: report what it raised
        return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}",
                      hint="The answer looks like {'model_stats': [{'name': ..., 'batch_stats': [{'batch_size': 1, "
                           "'compute_infer': {'count': ..., 'ns': ...}, ...}, ...]}]}: print(stats) to see it.")
    if not isinstance(got, dict):
        return failed(exercise, f"Your function returned {type(got).__name__} {got!r:.80}; return a dict "
                      "{batch size: number of executions}.")
    if got == expected:
        average = sum(size * n for size, n in expected.items()) / max(1, sum(expected.values()))
        if max(expected) <= 1:
            return failed(exercise, "Your reading is right, but Triton ran every execution with batch size 1.",
                          hint=f"Make exercise 1 pass first: the model '{model}' needs dynamic batching.")
        return passed(exercise, "your function reads batch_stats as Triton counts them: executions per batch size"
                      + (", with batches of more than one request" if average > 1 else "") + ".")
    problems = []
    if any(isinstance(k, str) for k in got):
        problems.append(f"The keys are strings ({sorted(got, key=str)[:3]}); use the batch sizes as int.")
    else:
        as_ns = {int(r["batch_size"]): int(r["compute_infer"]["ns"]) for e in stats["model_stats"]
                 for r in e.get("batch_stats") or []}
        as_requests = {size: size * n for size, n in expected.items()}
        if got == as_ns:
            problems.append("Your values are compute_infer ns: the time spent, in nanoseconds, not the executions.")
        elif got == as_requests and got != expected:
            problems.append("Your values count requests (batch size x executions), not executions: a batch of 4 "
                            "that ran once should count 1.")
        else:
            problems.append(f"Your function returned {got}; Triton's statistics say {expected}.")
    return failed(exercise, *problems,
                  hint="For each entry of stats['model_stats'], each row of its 'batch_stats': "
                       "row['batch_size'] -> row['compute_infer']['count'].")
