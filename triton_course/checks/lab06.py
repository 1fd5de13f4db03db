"""Checks for lab 06 (instance groups): two CPU copies loaded by the lab's server and counted; the learner's
tritonclient loop that keeps 4 requests in flight, and their perf_analyzer command line, both run against a model
that waits (4 copies sleeping 50 ms each); and an instance_group that places copies on GPUs."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from ..artifact import reference_config
from ..errors import ConfigError
from ..inference import infer, top_k
from ..model_config import ModelConfig, ModelInstanceGroup, parse_config, to_text
from ..photos import photo, preprocess
from ..tuning import model_processes
from . import Verdict, failed, passed
from ._serving import learner_config, load_answer, read_until

MODEL = "two_copies"
THREAD_PARAMETER = "intra_op_thread_count"  # the onnxruntime backend's own name

_LOAD_HINTS = {
    "but no GPUs are available":
        "This machine has no GPU: KIND_GPU copies cannot load here. Use kind: KIND_CPU.",
    "Expected string":
        'Parameter values are strings, even numbers: value: { string_value: "1" }.',
    "directory name must equal model name":
        f"The name field must be the folder's name, '{MODEL}' (or leave name out).",
}


def check_cpu_copies(server, answer, model: str = MODEL) -> Verdict:
    """Exercise 1: two copies of the model on the CPU, each limited to one onnxruntime thread."""
    exercise = "Exercise 1 (two CPU copies)"
    # Copies of an earlier load may still be exiting: the new copies are the processes that were not there before.
    before = {p.pid for p in model_processes(server, model)}
    served, refusal = load_answer(server, model, answer, exercise, _LOAD_HINTS)
    if refusal is not None:
        return refusal
    mine = learner_config(answer)
    problems, hints = [], []
    groups = served.get("instance_group") or []
    if any(g.count == 0 for g in mine.instance_group):
        problems.append("A group has count: 0, which Triton reads as 'not set' and turns into 1 copy.")
    if not mine.instance_group:
        problems.append("There is no instance_group: Triton then gives the model one copy.")
        hints.append("Add instance_group [ { count: 2, kind: KIND_CPU } ].")
    elif any(g.kind == ModelInstanceGroup.KIND_AUTO for g in mine.instance_group):
        problems.append("A group has no kind (KIND_AUTO): Triton chose the CPU here only because this machine has no "
                        "GPU; on a GPU machine the same config loads GPU copies.")
        hints.append("Write kind: KIND_CPU.")
    cpu_copies = sum(int(g["count"]) for g in groups if g["kind"] == "KIND_CPU")
    if cpu_copies != 2 and not any(g.count == 0 for g in mine.instance_group):
        problems.append(f"Triton loaded {cpu_copies} CPU cop{'y' if cpu_copies == 1 else 'ies'} of '{model}'; "
                        "the task asks for 2.")
    threads = (served.get("parameters") or {}).get(THREAD_PARAMETER, {}).get("string_value")
    if threads != "1":
        others = [key for key in mine.parameters if key != THREAD_PARAMETER]
        if threads is None:
            problems.append(f"No parameter '{THREAD_PARAMETER}': each copy then uses one thread per core."
                            + (f" (Triton ignores parameters it does not know, such as {others}.)" if others else ""))
        else:
            problems.append(f"'{THREAD_PARAMETER}' is '{threads}'; the task asks for one thread per copy: '1'.")
        hints.append(f'parameters {{ key: "{THREAD_PARAMETER}" value: {{ string_value: "1" }} }}')
    if problems:
        return failed(exercise, *problems,
                      hint=" ".join(hints) or "Fix the fields named above and run the check again.")

    stubs = [p for p in model_processes(server, model) if p.pid not in before]
    if "onnxruntime" not in server.backends and len(stubs) != 2:
        return failed(exercise, f"The config says 2 copies, but {len(stubs)} copies of '{model}' run on the server.",
                      hint="Read the server log (server.log_text()) for what happened to the others.")
    answer_label = top_k(infer(server.http_url, preprocess(photo("coffee"))[None], model=model)[0], 1)[0][0]
    running = " (2 processes run on this server)" if "onnxruntime" not in server.backends else ""
    return passed(exercise, f"Triton loaded 2 KIND_CPU copies of '{model}' with {THREAD_PARAMETER} 1{running}; "
                  f"the coffee photo came back as '{answer_label}'.")


GPU_PLACEMENT = {0: 2, 1: 1}  # exercise 4: GPU id -> copies
SERVER_GPUS = (0, 1)


def placement(config: ModelConfig, server_gpus: tuple[int, ...] = SERVER_GPUS) -> dict[int, int]:
    """GPU id -> copies Triton would load from `config`'s GPU instance groups on a server with
    `server_gpus`: count copies on EACH GPU a group lists (every GPU when it lists none)."""
    copies: dict[int, int] = {}
    for group in config.instance_group:
        if group.kind in (ModelInstanceGroup.KIND_GPU, ModelInstanceGroup.KIND_AUTO):
            for gpu in group.gpus or server_gpus:
                copies[gpu] = copies.get(gpu, 0) + (group.count or 1)
    return dict(sorted(copies.items()))


def check_gpu_placement(answer) -> Verdict:
    """Exercise 4: instance_group text that puts 2 copies on GPU 0 and 1 copy on GPU 1 of a two-GPU
    server. Checked against Triton's ModelConfig schema and Triton's placement rule (no GPU is needed)."""
    exercise = "Exercise 4 (copies on GPUs)"
    if not isinstance(answer, str) or "instance_group" not in answer:
        return failed(exercise, "Write the instance_group lines of config.pbtxt as a string, e.g. "
                      '"""instance_group [ ... ]""".')
    try:
        config = parse_config(to_text(reference_config()) + "\n" + answer, source="your instance_group")
    except ConfigError as error:
        return failed(exercise, "Triton's config parser cannot read it.", triton_said=error.triton_said,
                      hint="instance_group [ { count: 2, kind: KIND_GPU, gpus: [ 0 ] }, { ... } ]: a list of groups "
                           "in [ ], each group in { }, fields separated by commas or spaces.")
    problems = []
    for i, group in enumerate(config.instance_group):
        kind = ModelInstanceGroup.Kind.Name(group.kind)
        if group.kind == ModelInstanceGroup.KIND_CPU:
            problems.append(f"Group {i + 1} has kind KIND_CPU: its copies run on the CPU (Triton refuses gpus on a "
                            "KIND_CPU group).")
        elif group.kind == ModelInstanceGroup.KIND_AUTO:
            problems.append(f"Group {i + 1} has no kind: write kind: KIND_GPU, so that it cannot mean anything else.")
        elif group.kind != ModelInstanceGroup.KIND_GPU:
            problems.append(f"Group {i + 1} has kind {kind}; GPU copies need KIND_GPU.")
        missing = [g for g in group.gpus if g not in SERVER_GPUS]
        if missing:
            problems.append(f"Group {i + 1} lists GPU {missing}: the server has GPUs 0 and 1 only (ids start at 0).")
    got = placement(config)
    if not problems and got != GPU_PLACEMENT:
        described = ", ".join(f"{n} on GPU {gpu}" for gpu, n in got.items()) or "no GPU copies"
        problems.append(f"Triton would load {described} ({sum(got.values())} in all); the task asks for 2 on GPU 0 "
                        "and 1 on GPU 1.")
        if len(config.instance_group) == 1 and len(config.instance_group[0].gpus) != 1:
            problems.append("count is per GPU: a group with gpus: [0, 1] puts count copies on each of them. "
                            "Different counts per GPU need one group per GPU.")
    if problems:
        return failed(exercise, *problems, hint="When GPUs get different numbers of copies, write one group per GPU, "
                      "each with its own count, kind: KIND_GPU and gpus: [ id ].")
    return passed(exercise, "Triton's schema reads your groups as 2 copies on GPU 0 and 1 on GPU 1 (3 in all).")



# --- the model that waits: exercises 2 and 3 --------------------------------------------------------------
WAITS = "waits"
WAITS_SLEEP_S = 0.050
WAITS_COPIES = 4
WAITS_MODEL_PY = f"""
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            time.sleep({WAITS_SLEEP_S})  # waits: no CPU used meanwhile
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", x)]))
        return responses
"""
WAITS_CONFIG = f"""
name: "{WAITS}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: {WAITS_COPIES} kind: KIND_CPU }} ]
"""
CLIENT_REQUESTS = 12
IN_FLIGHT = 4


def add_waits_model(repository_dir) -> Path:
    """Write the lab's model that waits into a repository: waits/config.pbtxt and waits/1/model.py."""
    from ..repository import write_file

    folder = Path(repository_dir) / WAITS
    write_file(folder / "config.pbtxt", WAITS_CONFIG)
    write_file(folder / "1" / "model.py", WAITS_MODEL_PY)
    return folder


def _served_requests(server) -> int:
    from ..loadgen import server_stats

    return server_stats(server.grpc_address, WAITS, "grpc")["success"]


def check_client(server, send) -> Verdict:
    """Exercise 2: `send(url, values)` sends one request per value to `waits` with tritonclient, 4 in flight at a
    time, and returns the OUTPUT arrays in the order of `values`. Run against the lab's server and timed."""
    exercise = "Exercise 2 (4 requests in flight)"
    if not callable(send):
        return failed(exercise, "SEND must be your function, e.g. def send(url, values): ...",
                      hint="Define the function, then run the check with it: lab06.check_client(server, send).")
    from tritonclient.utils import InferenceServerException

    values = [float(v) for v in range(1, CLIENT_REQUESTS + 1)]
    before = _served_requests(server)
    start = time.perf_counter()
    try:
        answers = send(server.grpc_address, values)
    except InferenceServerException as exc:
        message = exc.message() or str(exc)
        hint = ("The model is 'waits'; its input is 'INPUT' (FP32, shape [4]) and its output 'OUTPUT'."
                if any(word in message for word in ("unknown", "unexpected", "expected", "shape", "datatype")) else
                "Read Triton's message above.")
        if "unavailable" in message.lower() or "connect" in message.lower():
            hint = f"Send to the url the check passes you (the server's gRPC address, {server.grpc_address})."
        return failed(exercise, "A request failed.", triton_said=message, hint=hint)
    except Exception as exc:  # noqa: BLE001 - the learner's code; said as it is
        return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}",
                      hint="Run it by hand with send(server.grpc_address, [1.0, 2.0]) and read the traceback.")
    elapsed = time.perf_counter() - start
    received = read_until(lambda: _served_requests(server) - before, lambda n: n >= len(values))
    problems = []
    try:
        answers = [list(map(float, a)) for a in answers]
    except TypeError:
        answers = None
    if answers is None or len(answers) != len(values):
        got = "nothing" if answers is None else f"{len(answers)} answer(s)"
        problems.append(f"It returned {got} for {len(values)} values: return one OUTPUT array per value.")
    elif any(a != [v] * 4 for a, v in zip(answers, values)):
        problems.append("The answers are not the values sent, in order: the model echoes its input, so answer i "
                        "must be [values[i]] * 4 (collect results in the order of values, e.g. pool.map).")
    if received != len(values):
        problems.append(f"The server answered {received} request(s) to '{WAITS}' for {len(values)} values: send "
                        "exactly one request per value.")
    serial = len(values) * WAITS_SLEEP_S
    if not problems and elapsed > 0.6 * serial:
        problems.append(f"The {len(values)} requests took {elapsed:.2f} s: about one after another "
                        f"({len(values)} x {WAITS_SLEEP_S * 1000:.0f} ms = {serial:.1f} s), although '{WAITS}' has "
                        f"{WAITS_COPIES} copies.")
        return failed(exercise, *problems, hint=f"Keep {IN_FLIGHT} requests in flight: a ThreadPoolExecutor("
                      f"max_workers={IN_FLIGHT}) whose threads each call client.infer.")
    if problems:
        return failed(exercise, *problems, hint="Fix what is named above and run the check again.")
    return passed(exercise, f"{len(values)} requests answered in order in {elapsed:.2f} s, against {serial:.1f} s "
                  f"one after another: {WAITS_COPIES} copies of '{WAITS}' worked on them at the same time.")


def _options(args: list[str]) -> dict[str, str]:
    """perf_analyzer's options as {long name: value}; flags without a value map to ''."""
    short = {"-m": "--model-name", "-u": "--url", "-i": "--protocol", "-f": "--latency-report-file",
             "-p": "--measurement-interval", "-s": "--stability-percentage", "-r": "--max-trials",
             "-b": "--batch-size"}
    options, i = {}, 0
    while i < len(args):
        arg = args[i]
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg.startswith("-"):
            key = short.get(arg, arg)
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else ""
            options[key] = value
            i += 1 if value else 0
        i += 1
    return options


def check_perf_command(server, command: str, timeout: float = 120) -> Verdict:
    """Exercise 3: a perf_analyzer command line that measures `waits` on this server over gRPC at 4 concurrent
    requests and writes its report to a CSV file (-f). Read, then run, and its report read."""
    from .. import perf_analyzer as pa

    exercise = "Exercise 3 (perf_analyzer)"
    if not isinstance(command, str) or not command.strip():
        return failed(exercise, "PA_COMMAND must be the command line as a string: \"perf_analyzer -m ...\".")
    args = shlex.split(command.strip().lstrip("!"))
    if not args or not args[0].endswith("perf_analyzer"):
        return failed(exercise, f"The command starts with '{args[0] if args else ''}', not perf_analyzer.")
    options = _options(args[1:])
    grpc_port, http_port = server.grpc_address.rsplit(":", 1)[-1], server.http_url.rsplit(":", 1)[-1]
    problems, hints = [], []
    model = options.get("--model-name")
    if not model:
        problems.append("No -m: perf_analyzer needs the model's name.")
        hints.append(f"-m {WAITS}")
    elif model != WAITS:
        problems.append(f"-m {model}: the model to measure is '{WAITS}'.")
    protocol = options.get("--protocol", "http").lower()
    url = options.get("--url", "localhost:8000")
    port = url.rsplit(":", 1)[-1]
    if "--protocol" not in options:
        problems.append("No -i: perf_analyzer then speaks HTTP; the task asks for gRPC.")
        hints.append("-i grpc")
    elif protocol != "grpc":
        problems.append(f"-i {protocol}: the task asks for gRPC.")
    if "--url" not in options:
        problems.append(f"No -u: perf_analyzer then sends to localhost:8000, but this server listens on "
                        f"{server.grpc_address} (gRPC).")
        hints.append(f"-u {server.grpc_address}")
    elif port == http_port and protocol == "grpc":
        problems.append(f"-u {url} is the server's HTTP port; gRPC requests go to {server.grpc_address}.")
    elif port != grpc_port:
        problems.append(f"-u {url}: this server's gRPC address is {server.grpc_address}.")
    concurrency = options.get("--concurrency-range")
    if concurrency is None:
        problems.append("No --concurrency-range: perf_analyzer then keeps 1 request in flight; the task asks for 4.")
        hints.append("--concurrency-range 4")
    elif concurrency.split(":")[:2] not in (["4"], ["4", "4"]):
        problems.append(f"--concurrency-range {concurrency}: the task asks for 4 requests in flight, only.")
    report = options.get("--latency-report-file")
    if not report:
        problems.append("No -f: perf_analyzer then writes no CSV report for you to read.")
        hints.append("-f waits.csv")
    if problems:
        return failed(exercise, *problems, hint=("Add " + ", ".join(hints) + ".") if hints else
                      "Fix the options named above and run the check again.")
    binary = pa.find_binary()
    if binary is None:
        return failed(exercise, "Your command line is right, but perf_analyzer cannot run here.",
                      hint=pa.unavailable_reason() or "")
    report_path = Path(report)
    report_path.unlink(missing_ok=True)
    try:
        done = subprocess.run([str(binary), *args[1:]], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return failed(exercise, f"perf_analyzer did not finish within {timeout:.0f} s.",
                      hint="Use short windows: --measurement-interval 1000, and --max-trials 8.")
    if done.returncode != 0 or not report_path.exists():
        said = "\n".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        hint = ("Its windows did not agree: allow more spread (--stability-percentage 50) or more windows "
                "(--max-trials 8)." if "stable" in said else "Read perf_analyzer's message above.")
        return failed(exercise, f"perf_analyzer failed (exit {done.returncode}).", triton_said=said,
                      said_by="perf_analyzer", hint=hint)
    row = pa.parse_csv(report_path.read_text())[0]
    ceiling = WAITS_COPIES / WAITS_SLEEP_S
    return passed(exercise, f"perf_analyzer measured {row.throughput:.0f} infer/s with 4 requests in flight "
                  f"(p99 {row.p99_ms:.0f} ms); {WAITS_COPIES} copies sleeping {WAITS_SLEEP_S * 1000:.0f} ms each "
                  f"can serve at most {ceiling:.0f}. The report is {report_path.name}.")
