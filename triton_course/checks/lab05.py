"""Checks for lab 05 (dynamic batching): the learner's config.pbtxt, loaded by the lab's server and
put under concurrent load; the learner's concurrent tritonclient loop, judged by what Triton counted; the
learner's reading of Triton's statistics; and the learner's perf_analyzer command line, read and then run."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from .. import perf_analyzer
from ..artifact import INPUT_NAME
from ..errors import suggest_fix
from ..loadgen import statistics_totals
from ..photos import photo, preprocess
from . import Verdict, failed, passed
from ._serving import burst, executions_by_batch_size, learner_config, load_answer, read_until, statistics

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
    exercise = "Exercise 3 (reading batch_stats)"
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


CLIENTS, REQUESTS_EACH = 8, 4  # what exercise 2's check asks the learner's function to send


def _counts(server, model: str) -> dict:
    return statistics_totals(statistics(server, model))


def check_client_loop(server, fn, model: str = MODEL) -> Verdict:
    """Exercise 2: `fn(url, model, clients, requests_each)` sends `clients` x `requests_each` requests over gRPC,
    the clients at the same time. Judged by what Triton counted: the requests that reached `model`, and the
    batch sizes it ran them in (batches of more than one request form only when clients overlap)."""
    exercise = "Exercise 2 (concurrent clients)"
    if not callable(fn):
        return failed(exercise, f"Pass your function itself (send_concurrently), not {type(fn).__name__}.")
    expected = CLIENTS * REQUESTS_EACH
    before = _counts(server, model)
    try:
        fn(server.grpc_address, model, CLIENTS, REQUESTS_EACH)
    except Exception as exc:  # noqa: BLE001 - the learner's code: report what it raised
        said = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
        return failed(exercise, f"Your function raised {type(exc).__name__}.", triton_said=said or repr(exc),
                      hint=("Use tritonclient.grpc with the url you are given (host:port, no http://), and send "
                            "an InferInput named 'input' of shape [1, 3, 224, 224], FP32."
                            if "ailed to connect" in said or "UNAVAILABLE" in said or "http" in said.lower()
                            else suggest_fix(said)))
    after = read_until(lambda: _counts(server, model), lambda now: now["success"] - before["success"] >= expected)
    sent = after["success"] - before["success"]
    batches = {size: n - before["batches"].get(size, 0) for size, n in after["batches"].items()
               if n > before["batches"].get(size, 0)}
    if sent != expected:
        if sent == 0:
            hint = ("Send to the model and the url your function is given (the check passes them), over gRPC, and "
                    "wait for every client to finish before returning.")
        elif sent == REQUESTS_EACH:
            hint = "Only one client's requests arrived: start one thread per client (clients of them)."
        elif sent == CLIENTS:
            hint = "Each client sent one request: loop requests_each times inside each client."
        else:
            hint = "Each of the `clients` threads sends `requests_each` requests; wait for all of them (join)."
        return failed(exercise, f"Triton counted {sent} successful requests to '{model}' while your function ran; "
                      f"{CLIENTS} clients x {REQUESTS_EACH} requests each are {expected}.", hint=hint)
    if max(batches, default=1) <= 1:
        return failed(exercise, f"All {expected} requests reached Triton, but one at a time: every execution held one "
                      f"request (batch size -> executions: {batches}), so your clients did not send at the same time.",
                      hint="Start every client before you wait for any: create the threads, start() them all, then "
                           "join() them all (or submit all tasks to a ThreadPoolExecutor, then read the results). "
                           "A join() or result() right after each start runs the clients one after another.")
    # Measured figures (how many executions, which sizes) vary from run to run: the learner reads them from the
    # statistics; the confirmation says only what holds every time.
    return passed(exercise, f"Triton counted {expected} requests from your {CLIENTS} clients and ran them in batches "
                  "of more than one request: your clients sent at the same time.")


CONCURRENCY, WINDOW_MS = 8, 1000  # what exercise 4 asks perf_analyzer for


def _options(args: list[str]) -> dict[str, str]:
    """perf_analyzer's options as {flag: value}: `--flag value`, `--flag=value` and `-x value` forms."""
    options, i = {}, 1
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and "=" in arg:
            flag, value = arg.split("=", 1)
            options[flag] = value
        elif arg.startswith("-"):
            has_value = i + 1 < len(args) and not args[i + 1].startswith("-")
            options[arg] = args[i + 1] if has_value else ""
            i += has_value
        i += 1
    return options


def _option(options: dict, *names: str) -> str | None:
    return next((options[n] for n in names if n in options), None)


def _command_problems(server, args: list[str], model: str) -> tuple[list[str], list[str]]:
    """What is wrong with the command line itself, before it runs: (problems, hints)."""
    problems, hints = [], []
    if Path(args[0]).name != "perf_analyzer":
        problems.append(f"The command starts with '{args[0]}'; it runs the program perf_analyzer.")
    options = _options(args)
    named = _option(options, "-m")
    if named is None:
        problems.append("There is no -m: perf_analyzer must be told which model to measure.")
    elif named != model:
        problems.append(f"-m names '{named}'; the model to measure is '{model}'.")
    protocol = _option(options, "-i", "--protocol")
    if protocol is None or protocol.lower() != "grpc":
        problems.append(f"-i is {protocol or 'missing'}: perf_analyzer speaks HTTP unless given -i grpc, and the "
                        "task measures over gRPC.")
    url = _option(options, "-u", "--url")
    if url is None:
        problems.append("There is no -u: perf_analyzer then calls localhost:8001 (gRPC's default port; 8000 for "
                        "HTTP), where this lab's server does not listen: it picked free ports.")
        hints.append(f"Add -u {{server.grpc_address}} (here {server.grpc_address}).")
    elif "://" in url:
        problems.append(f"-u {url} has a scheme; perf_analyzer takes host:port ({server.grpc_address}).")
    elif url == server.http_address:
        problems.append(f"-u {url} is the server's HTTP port; with -i grpc give its gRPC address "
                        f"(server.grpc_address, here {server.grpc_address}).")
    elif url != server.grpc_address:
        problems.append(f"-u {url} is not this server's gRPC address ({server.grpc_address}).")
    concurrency = _option(options, "--concurrency-range")
    if concurrency is None:
        problems.append("There is no --concurrency-range: perf_analyzer then keeps one request in flight, and one "
                        "client's requests have nothing to be batched with.")
        hints.append(f"Add --concurrency-range {CONCURRENCY}.")
    elif concurrency.split(":")[0] != str(CONCURRENCY) or len(set(concurrency.split(":")[:2])) > 1:
        problems.append(f"--concurrency-range {concurrency}: the task measures one point, {CONCURRENCY} requests in "
                        f"flight (--concurrency-range {CONCURRENCY}).")
    batch = _option(options, "-b", "--batch-size")
    if batch not in (None, "1"):
        problems.append(f"-b {batch} makes every request carry {batch} images; the task is {CONCURRENCY} clients "
                        "each sending one image, for Triton to batch.")
    window = _option(options, "-p", "--measurement-interval")
    if window is None:
        problems.append(f"There is no --measurement-interval: perf_analyzer's windows are then 5000 ms; the task "
                        f"asks for {WINDOW_MS} ms.")
    elif window != str(WINDOW_MS):
        problems.append(f"--measurement-interval {window}: the task asks for {WINDOW_MS} ms windows (the unit is ms).")
    if _option(options, "-f") is None:
        problems.append("There is no -f: perf_analyzer then writes no CSV report for you (or the check) to read.")
        hints.append("Add -f perf.csv.")
    return problems, hints


def check_perf_command(server, command, model: str = MODEL, timeout: float = 180) -> Verdict:
    """Exercise 4: `command`, a perf_analyzer command line that measures `model` over gRPC at concurrency 8 with
    1000 ms windows and writes its CSV report with -f. Read first (each mistake named), then run (with the
    perf_analyzer this environment has), its CSV read, and Triton's statistics asked for the batches it formed."""
    exercise = "Exercise 4 (perf_analyzer command line)"
    if not isinstance(command, str) or not command.strip():
        return failed(exercise, f"Your answer is {type(command).__name__} {command!r:.60}: write the command line as "
                      "a string, e.g. f\"perf_analyzer -m ... -u {server.grpc_address} ...\".")
    try:
        args = shlex.split(command.strip().lstrip("!"))
    except ValueError as exc:
        return failed(exercise, f"The command line does not split into words: {exc}.")
    problems, hints = _command_problems(server, args, model)
    if problems:
        return failed(exercise, *problems, hint=" ".join(hints) or "Fix the options named above and run the check "
                      "again (perf_analyzer --help lists them).")
    binary = perf_analyzer.find_binary()
    if binary is None:
        return failed(exercise, "Your command line is right, but perf_analyzer cannot run here.",
                      hint=perf_analyzer.unavailable_reason() or "")
    report = Path(_option(_options(args), "-f"))
    report.unlink(missing_ok=True)
    before = _counts(server, model)
    try:
        done = subprocess.run([str(binary), *args[1:]], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return failed(exercise, f"perf_analyzer did not finish within {timeout:.0f} s.",
                      hint="Is the model loaded (exercise 1)? A --max-trials 10 bounds how long it keeps measuring.")
    if done.returncode != 0 or not report.exists():
        said = "\n".join((done.stderr.strip() or done.stdout.strip()).splitlines()[-4:])
        unstable = "stable" in done.stdout + done.stderr
        return failed(exercise, f"perf_analyzer failed (exit {done.returncode}).", triton_said=said,
                      said_by="perf_analyzer",
                      hint=("Three windows did not agree within 10 % on this busy machine: add --stability-percentage "
                            "25 (and --max-trials 10)." if unstable else "Read its message above."))
    measured = perf_analyzer.parse_csv(report.read_text())
    after = _counts(server, model)
    batches = {size: n - before["batches"].get(size, 0) for size, n in after["batches"].items()
               if n > before["batches"].get(size, 0)}
    if not measured or max(batches, default=1) <= 1:
        return failed(exercise, f"perf_analyzer ran, but Triton ran every request on its own (batch size -> "
                      f"executions {batches}).", hint="Make exercise 1 pass first: the model needs dynamic batching.")
    return passed(exercise, f"perf_analyzer ran your command at concurrency {measured[0].concurrency}, wrote "
                  f"{report.name}, and Triton ran its requests in batches of more than one request.")
