"""Checks for lab 08 (TensorRT and CPU optimizations): a trtexec command whose profile matches the
config, a graph-optimization config loaded by the lab's server, and onnxruntime's TensorRT
accelerator block read with Triton's schema."""

from __future__ import annotations

import shlex
from pathlib import PurePath

from ..artifact import INPUT_NAME, reference_config
from ..errors import ConfigError
from ..inference import infer, top_k
from ..model_config import ModelInstanceGroup, parse_config
from ..photos import photo, preprocess
from ..tensorrt import check_engine_batch, profile_for
from . import Verdict, failed, passed
from ._serving import learner_config, load_answer

ENGINE_MAX_BATCH, ENGINE_OPT_BATCH = 16, 8  # exercise 1
GRAPH_MODEL, GRAPH_LEVEL = "basic_graph", -1  # exercise 2
GRAPH_LEVELS = {-1: "basic only", 0: "all (the default)", 1: "basic and extended", 2: "none"}
ORT_TRT_MODEL = "efficientnet_ort_trt"  # the stretch exercise
TRT_PARAMETERS = ("precision_mode", "trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")


def _tokens(command) -> list[str] | None:
    if isinstance(command, (list, tuple)) and all(isinstance(t, str) for t in command):
        return list(command)
    if isinstance(command, str):
        return shlex.split(command.replace("\\\n", " "))
    return None


def _flags(tokens: list[str]) -> dict[str, str | None]:
    flags = {}
    for token in tokens[1:]:
        if token.startswith("-"):
            name, _, value = token.lstrip("-").partition("=")
            flags[name] = value if _ else None
    return flags


def _shape_problems(which: str, value: str | None, wanted_batch: int) -> tuple[list[str], int | None]:
    """Problems with one --xxxShapes value, and the batch it gives the input (None if unreadable)."""
    flag = f"--{which}Shapes"
    if value is None:
        return [f"There is no {flag}=: the engine's profile must say the {which} batch for the input."], None
    shapes = {}
    for part in value.split(","):
        name, _, dims = part.rpartition(":")
        shapes[name] = dims
    if list(shapes) != [INPUT_NAME]:
        if "" in shapes:  # "input:16,3,224,224": commas where x belongs
            return [f"{flag}={value}: write each shape as NAME:DxDxD, with x between the dimensions "
                    f"(e.g. {INPUT_NAME}:1x3x224x224); a comma separates one input from the next."], None
        return [f"{flag}={value} names {', '.join(repr(n) for n in shapes)}; the model's input is called "
                f"'{INPUT_NAME}'."], None
    try:
        dims = [int(d) for d in shapes[INPUT_NAME].split("x")]
    except ValueError:
        return [f"{flag}={value}: the dimensions must be whole numbers joined by x."], None
    if dims == [3, 224, 224]:
        return [f"{flag}={value} has no batch dimension: the shape starts with the batch, "
                f"{INPUT_NAME}:{wanted_batch}x3x224x224."], None
    if len(dims) != 4 or dims[1:] != [3, 224, 224]:
        return [f"{flag}={value}: the input is [batch, 3, 224, 224]; write {INPUT_NAME}:Nx3x224x224."], None
    if dims[0] != wanted_batch:
        return [f"{flag} has batch {dims[0]}; the task asks for {wanted_batch}."], dims[0]
    return [], dims[0]


def check_trtexec_command(command) -> Verdict:
    """Exercise 1: a trtexec command (TensorRT 10) that builds an FP16 engine from model.onnx whose
    profile covers batch 1 to 16, tuned for 8, so that Triton serves it under max_batch_size 16."""
    exercise = "Exercise 1 (trtexec command)"
    tokens = _tokens(command)
    if not tokens:
        return failed(exercise, "Write the command as one string (or a list of its words), starting with trtexec.")
    flags = _flags(tokens)
    config = reference_config(max_batch_size=ENGINE_MAX_BATCH)
    problems = []
    if PurePath(tokens[0]).name != "trtexec":
        problems.append(f"The command starts with {tokens[0]!r}; TensorRT's builder is trtexec.")
    if not (flags.get("onnx") or "").endswith(".onnx"):
        problems.append("There is no --onnx=model.onnx: trtexec needs the ONNX model to build from.")
    if not flags.get("saveEngine"):
        problems.append("There is no --saveEngine=model.plan: without it trtexec builds the engine, times it and "
                        "throws it away.")
    batches = {}
    for which, wanted in (("min", 1), ("opt", ENGINE_OPT_BATCH), ("max", ENGINE_MAX_BATCH)):
        found, batches[which] = _shape_problems(which, flags.get(f"{which}Shapes"), wanted)
        problems += found
    triton_said = ""
    if batches["max"] is not None and batches["max"] < ENGINE_MAX_BATCH:
        try:
            check_engine_batch(config, batches["max"])
        except ConfigError as error:
            triton_said = error.triton_said
    if "workspace" in flags:
        problems.append("TensorRT 10's trtexec has no --workspace: give the build's scratch memory with "
                        "--memPoolSize=workspace:1024M.")
    if "int8" in flags:
        problems.append("--int8 needs calibration data (or a model with Q/DQ nodes); the task asks for FP16.")
    if "fp16" not in flags:
        problems.append("There is no --fp16: without it TensorRT builds FP32 kernels only.")
    if problems:
        return failed(exercise, *problems, triton_said=triton_said,
                      hint="The profile comes from the config: min batch 1, opt the batch you tune for, max = "
                           "max_batch_size (tensorrt.profile_for(config, opt_batch=8).shapes('max') shows the form).")
    profile = profile_for(config, ENGINE_OPT_BATCH)
    return passed(exercise, f"your engine's profile runs from {profile.shapes('min')} to {profile.shapes('max')}, "
                  f"tuned for {profile.shapes('opt')}, in FP16: Triton serves it under max_batch_size "
                  f"{ENGINE_MAX_BATCH}.")


_GRAPH_HINTS = {
    "Expected integer": "level is a number: -1 (basic), 1 (basic and extended), 2 (none); leave it out for all.",
    "has no field named": "The block is optimization { graph { level: N } }: graph is a block inside optimization.",
    "directory name must equal model name":
        f"The name field must be the folder's name, '{GRAPH_MODEL}' (or leave name out).",
}


def check_graph_level(server, answer, model: str = GRAPH_MODEL) -> Verdict:
    """Exercise 2: `model` loaded with onnxruntime's basic graph optimizations only (level -1), and still
    giving the course model's answer on a photo."""
    exercise = "Exercise 2 (graph optimization level)"
    served, refusal = load_answer(server, model, answer, exercise, _GRAPH_HINTS)
    if refusal is not None:
        return refusal
    mine = learner_config(answer)
    level = mine.optimization.graph.level
    if not mine.HasField("optimization") or not mine.optimization.HasField("graph"):
        return failed(exercise, "There is no optimization { graph { level } } block: onnxruntime then applies "
                      "all its optimizations (level 0, the default).",
                      hint=f"Add optimization {{ graph {{ level: {GRAPH_LEVEL} }} }}.")
    served_level = int(((served.get("optimization") or {}).get("graph") or {}).get("level", 0))
    if level != GRAPH_LEVEL or served_level != GRAPH_LEVEL:
        return failed(exercise, f"level is {level}, which means {GRAPH_LEVELS.get(level, 'nothing onnxruntime knows')};"
                      f" the task asks for basic optimizations only.",
                      hint="-1 basic, 1 basic and extended, 2 none; leave the block out for all.")
    image = preprocess(photo("coffee"))[None]
    served_top = top_k(infer(server.http_url, image, model=model)[0], 1)[0][0]
    reference_top = top_k(_onnxruntime_scores(image)[0], 1)[0][0]
    if served_top != reference_top:
        return failed(exercise, f"'{model}' answers '{served_top}' for the coffee photo; the model on its own says "
                      f"'{reference_top}'.", hint="Serve the course's model.onnx, unchanged, in version folder 1.")
    return passed(exercise, f"Triton loaded '{model}' with optimization graph level {GRAPH_LEVEL} (basic only), and it "
                  f"answers the coffee photo as the model does on its own: '{served_top}'.")


def _onnxruntime_scores(image):
    import onnxruntime as ort

    from ..artifact import ensure_onnx

    session = ort.InferenceSession(str(ensure_onnx()), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: image})[0]


def check_ort_tensorrt(answer) -> Verdict:
    """Stretch: the ONNX model's config with onnxruntime's TensorRT accelerator in FP16, a profile for
    batch 1 to 8 tuned for 8, GPU instances and a warm-up of batch 1 and batch 8. Read with Triton's
    schema (serving it needs a GPU and the onnxruntime backend)."""
    exercise = "Stretch exercise (TensorRT accelerator)"
    if not isinstance(answer, str):
        return failed(exercise, "Write the config.pbtxt text as a string.")
    try:
        config = parse_config(answer)
    except ConfigError as error:
        return failed(exercise, "Triton's config parser cannot read it.", triton_said=error.triton_said,
                      hint=error.fix or "")
    problems = []
    if config.platform != "onnxruntime_onnx":
        problems.append(f"platform is {config.platform!r}: the accelerator belongs to the onnxruntime backend "
                        "(platform: \"onnxruntime_onnx\").")
    if config.max_batch_size != 8:
        problems.append(f"max_batch_size is {config.max_batch_size}; keep the course model's 8.")
    kinds = {ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group}
    if kinds != {"KIND_GPU"}:
        problems.append(f"instance_group kinds are {sorted(kinds) or 'not set'}: TensorRT runs on GPUs only; write "
                        "kind: KIND_GPU.")
    accelerators = config.optimization.execution_accelerators
    trt = [a for a in accelerators.gpu_execution_accelerator if a.name == "tensorrt"]
    if any(a.name == "tensorrt" for a in accelerators.cpu_execution_accelerator):
        problems.append("tensorrt is listed under cpu_execution_accelerator: it is a GPU accelerator "
                        "(gpu_execution_accelerator).")
    elif not trt:
        problems.append("There is no gpu_execution_accelerator named \"tensorrt\" under "
                        "optimization { execution_accelerators { ... } }.")
    else:
        parameters = dict(trt[0].parameters)
        if parameters.get("precision_mode") != "FP16":
            problems.append(f"precision_mode is {parameters.get('precision_mode')!r}; write \"FP16\" (upper case).")
        profile = profile_for(config, 8) if config.max_batch_size == 8 else None
        for which in ("min", "opt", "max"):
            key = f"trt_profile_{which}_shapes"
            if profile and parameters.get(key) != profile.shapes(which):
                problems.append(f"{key} is {parameters.get(key)!r}; for batch 1 to 8 tuned for 8 it is "
                                f"{profile.shapes(which)!r}.")
    warmups = {w.batch_size for w in config.model_warmup if INPUT_NAME in w.inputs}
    if warmups != {1, 8}:
        problems.append(f"model_warmup has batches {sorted(warmups) or 'none'} for input '{INPUT_NAME}'; the task "
                        "asks for one of batch 1 and one of batch 8 (random_data: true).")
    if problems:
        return failed(exercise, *problems,
                      hint="tensorrt.ort_tensorrt_config(artifact.reference_config(), precision='FP16') builds it: "
                           "compare its text with yours.")
    return passed(exercise, "Triton's schema reads a TensorRT FP16 accelerator with a profile for batch 1 to 8, "
                  "GPU instances and warm-up of batch 1 and 8.")


PERF_CONCURRENCY = 2  # exercise 3


def check_perf_command(command, server, model: str = GRAPH_MODEL) -> Verdict:
    """Exercise 3: the perf_analyzer command line that measures `model` on the lab's server over gRPC with
    PERF_CONCURRENCY clients (flags named one by one, as lab 07b's exercise 3 does)."""
    from .lab07b import check_perf_analyzer_command

    return check_perf_analyzer_command(command, model=model, url=server.grpc_address, concurrency=PERF_CONCURRENCY,
                                       exercise="Exercise 3 (the perf_analyzer command)")
