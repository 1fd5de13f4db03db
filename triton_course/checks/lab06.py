"""Checks for lab 06 (instance groups): two CPU copies loaded by the lab's server and counted, and
an instance_group that places copies on GPUs."""

from __future__ import annotations

from ..artifact import reference_config
from ..errors import ConfigError
from ..inference import infer, top_k
from ..model_config import ModelConfig, ModelInstanceGroup, parse_config, to_text
from ..photos import photo, preprocess
from ..tuning import model_processes
from . import Verdict, failed, passed
from ._serving import learner_config, load_answer

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


GPU_PLACEMENT = {0: 2, 1: 1}  # exercise 2: GPU id -> copies
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
    """Exercise 2: instance_group text that puts 2 copies on GPU 0 and 1 copy on GPU 1 of a two-GPU
    server. Checked against Triton's ModelConfig schema and Triton's placement rule (no GPU is needed)."""
    exercise = "Exercise 2 (copies on GPUs)"
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

