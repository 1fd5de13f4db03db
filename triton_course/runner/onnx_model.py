"""Triton python-backend model that serves an ONNX file with onnxruntime.

The course copies this file as model.py into a version folder next to model.onnx when the
server has no onnxruntime backend (the Triton inside the nvidia-pytriton wheel has only the
python backend). It checks config.pbtxt against the ONNX model the way the onnxruntime
backend does, so the classic config mistakes fail the load with the onnxruntime backend's own words.
It is self-contained on purpose: it runs inside Triton's python stub, not in the notebook.

Who says what. The words of a load failure are the onnxruntime backend's (copied from its source:
github.com/triton-inference-server/onnxruntime_backend, branch r24.10 = the embedded Triton 2.51,
commit a0cd50d49b62bf85365767cd613c2c449ee36f8a, src/onnxruntime.cc ModelInstanceState::ValidateInputs and
ValidateOutputs, src/onnxruntime_utils.cc CompareDimsSupported), but the status in front of them is the
python backend's: its stub launcher reports every exception that initialize raises as TRITONSERVER_ERROR_INTERNAL
(python_backend r24.10, commit 01d0ad82f9f5d63978456e26c8a2a9746a9d68d8, src/stub_launcher.cc
StubLauncher::ModelInstanceStubProcess), where the onnxruntime backend says "Invalid argument" for a config
that does not match the model. A model.py cannot change that status. The stub writes the exception as
pybind11 2.10 does, "<type name>: <message>" (src/pb_stub.cc catches py::error_already_set): the runner's
exception type is therefore named after its writer, so that Triton's log and the repository index say
"Internal: course ONNX runner: model 'm', tensor 'input': ..." instead of the name of a Python exception,
and the course can tell the runner's words from Triton's (triton_course.errors.quote).
"""

import json
import os
import re

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_TO_TRITON = {
    "tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
    "tensor(bfloat16)": "TYPE_BF16", "tensor(int8)": "TYPE_INT8", "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64", "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16", "tensor(uint32)": "TYPE_UINT32", "tensor(uint64)": "TYPE_UINT64",
    "tensor(bool)": "TYPE_BOOL", "tensor(string)": "TYPE_STRING",
}


WRITER = "course ONNX runner"  # how Triton's messages name this file (see the module's docstring)


class RunnerError(Exception):
    """A load failure in the onnxruntime backend's words. Its type's name is WRITER: the python stub puts a
    raised exception's type name in front of its message."""


RunnerError.__name__ = RunnerError.__qualname__ = WRITER


def _shape(dims):
    return "[" + ",".join(str(d) for d in dims) + "]"


def _model_dims(node):
    # Symbolic dimensions ('batch') and unknown ones (None) are wildcards, as -1 in Triton.
    return [d if isinstance(d, int) else -1 for d in node.shape]


def check_tensors(model_name, kind, configured, model_nodes, max_batch_size):
    """Raise RunnerError when config tensors disagree with the ONNX model's (names, types, dims).

    The texts are the onnxruntime backend's own (onnxruntime_backend src/onnxruntime.cc and
    src/onnxruntime_utils.cc, backend src/backend_common.cc), each reported there as "Invalid argument";
    the python backend reports them as "Internal: course ONNX runner: ..." (see the module's docstring)."""
    by_name = {node.name: node for node in model_nodes}
    for tensor in configured:
        name = tensor["name"]
        if name not in by_name:
            # backend_common.cc CheckAllowedModelInput/Output: names listed sorted (a std::set).
            raise RunnerError(
                f"unexpected inference {kind} '{name}', allowed {kind}s are: {', '.join(sorted(by_name))}")
        node = by_name[name]
        expected_type = ONNX_TO_TRITON.get(node.type, node.type)
        if tensor["data_type"] != expected_type:
            raise RunnerError(
                f"unable to load model '{model_name}', configuration expects datatype {tensor['data_type']} "
                f"for {kind} '{name}', model provides {expected_type}")
        dims = [int(d) for d in (tensor.get("reshape") or {}).get("shape") or tensor["dims"]]
        model_dims = _model_dims(node)
        if not model_dims:
            continue  # a scalar: the onnxruntime backend compares no dimensions
        # onnxruntime_utils.cc CompareDimsSupported (compare_exact false): a model dimension of -1 matches any
        # configured size; a configured -1 matches only a -1 in the model.
        if max_batch_size > 0:
            if model_dims[0] != -1:
                raise RunnerError(
                    f"model '{model_name}', tensor '{name}': for the model to support batching the shape should "
                    f"have at least 1 dimension and the first dimension must be -1; but shape expected by the "
                    f"model is {_shape(model_dims)}")
            full = [-1] + dims
            ok = len(model_dims) == len(full) and all(m == -1 or m == c for m, c in zip(model_dims, full))
            if not ok:
                raise RunnerError(
                    f"model '{model_name}', tensor '{name}': the model expects {len(model_dims)} "
                    f"dimensions (shape {_shape(model_dims)}) but the model configuration specifies "
                    f"{len(full)} dimensions (an initial batch dimension because max_batch_size > 0 "
                    f"followed by the explicit tensor shape, making complete shape {_shape(full)})")
        else:
            ok = len(model_dims) == len(dims) and all(m == -1 or m == c for m, c in zip(model_dims, dims))
            if not ok:
                raise RunnerError(
                    f"model '{model_name}', tensor '{name}': the model expects {len(model_dims)} "
                    f"dimensions (shape {_shape(model_dims)}) but the model configuration specifies "
                    f"{len(dims)} dimensions (shape {_shape(dims)})")


def check_config(config, session):
    """Raise RunnerError when config.pbtxt disagrees with the ONNX model (tensor count, names, types, dims),
    as the onnxruntime backend does. The PyTorch runner calls it too, for a config written for model.onnx."""
    name, max_batch_size = config["name"], int(config.get("max_batch_size", 0))
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(config.get("input", [])) != len(inputs):
        raise RunnerError(
            f"unable to load model '{name}', configuration expects "
            f"{len(config.get('input', []))} inputs, model provides {len(inputs)}")
    check_tensors(name, "input", config.get("input", []), inputs, max_batch_size)
    check_tensors(name, "output", config.get("output", []), outputs, max_batch_size)


_ORT_PYTHON_ERROR = re.compile(r"^\[ONNXRuntimeError\] : (?P<code>\d+) : \w+ : (?P<message>.*)$", re.S)


def ort_error_text(exc):
    """onnxruntime's error as the onnxruntime backend words it ("onnx runtime error CODE: MESSAGE",
    RETURN_IF_ORT_ERROR in onnxruntime_backend src/onnxruntime_utils.h) instead of the Python binding's
    "[ONNXRuntimeError] : CODE : NAME : MESSAGE"."""
    match = _ORT_PYTHON_ERROR.match(str(exc))
    return f"onnx runtime error {match['code']}: {match['message']}" if match else str(exc)


def said(exc):
    """A request's failure as the runner answers it: "course ONNX runner: " and onnxruntime's words as the
    onnxruntime backend puts them (an execute error of a python model is free text: Triton adds nothing)."""
    return f"{WRITER}: {ort_error_text(exc)}"


# optimization { graph { level } } as the onnxruntime backend reads it; 0 (unset) means all.
GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def _session_options(config):
    """Threads and graph optimizations under the onnxruntime backend's own names, so that the
    same config.pbtxt means the same in the NGC container."""
    params = config.get("parameters") or {}
    options = ort.SessionOptions()
    level = int(((config.get("optimization") or {}).get("graph") or {}).get("level", 0))
    if level not in GRAPH_LEVELS:
        raise RunnerError(f"optimization graph level {level} is not one onnxruntime knows: use -1 (basic), "
                         "1 (basic and extended), 2 (none), or leave it out (all)")
    options.graph_optimization_level = GRAPH_LEVELS[level]

    def number(key):
        value = (params.get(key) or {}).get("string_value")
        if value in (None, ""):
            return 0  # onnxruntime's default: one thread per core
        if not value.isdigit():
            raise RunnerError(f"parameter '{key}' must be a whole number of threads, got '{value}'")
        return int(value)

    options.intra_op_num_threads = number("intra_op_thread_count")
    options.inter_op_num_threads = number("inter_op_thread_count")
    return options


class TritonPythonModel:
    def initialize(self, args):
        try:
            self._load(args)
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - said in the runner's name, the exception's type kept
            raise RunnerError(f"{type(exc).__name__}: {exc}") from None

    def _load(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        params = config.get("parameters") or {}
        filename = (params.get("onnx_model_filename") or {}).get("string_value") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if os.path.islink(path) and not os.path.exists(path):
            raise RunnerError(
                f"'{path}' for model '{self.name}' is a symbolic link to '{os.readlink(path)}', "
                "which does not exist where the server runs")
        if not os.path.exists(path):
            raise RunnerError(f"unable to find '{path}' for model '{self.name}'")
        try:
            with open(path, "rb"):
                pass
        except PermissionError as exc:  # the file, named, and the system's reason
            raise RunnerError(f"unable to open '{path}' for model '{self.name}': {exc.strerror}") from None

        providers = ["CPUExecutionProvider"]
        self.device = "CPU"
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            device_id = int(args.get("model_instance_device_id", 0))
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
            self.device = f"GPU {device_id}"
        try:
            self.session = ort.InferenceSession(path, _session_options(config), providers=providers)
        except Exception as exc:  # noqa: BLE001 - reworded below, as the onnxruntime backend does
            raise RunnerError(ort_error_text(exc)) from None

        check_config(config, self.session)
        outputs = self.session.get_outputs()
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config.get("output", [])] or [o.name for o in outputs]
        pb_utils.Logger.log_info(
            f"onnx runner: '{self.name}' serves {filename} with onnxruntime {ort.__version__} "
            f"on {self.device} ({self.session.get_providers()[0]})")

    def execute(self, requests):
        try:
            feeds_per_request = [
                {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names}
                for r in requests]
        except Exception as exc:  # noqa: BLE001 - every request must get an answer
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(said(exc))) for _ in requests]

        if self.max_batch_size > 0 and len(requests) > 1:
            # Requests the dynamic batcher grouped: one onnxruntime call, then split the rows back.
            sizes = [feeds[self.input_names[0]].shape[0] for feeds in feeds_per_request]
            feeds = {n: np.concatenate([f[n] for f in feeds_per_request]) for n in self.input_names}
            try:
                results = self.session.run(self.output_names, feeds)
            except Exception as exc:  # noqa: BLE001
                return [pb_utils.InferenceResponse(error=pb_utils.TritonError(said(exc))) for _ in requests]
            responses, start = [], 0
            for size in sizes:
                tensors = [pb_utils.Tensor(n, r[start:start + size]) for n, r in zip(self.output_names, results)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
                start += size
            return responses

        responses = []
        for feeds in feeds_per_request:
            try:
                results = self.session.run(self.output_names, feeds)
                tensors = [pb_utils.Tensor(n, r) for n, r in zip(self.output_names, results)]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:  # noqa: BLE001
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(said(exc))))
        return responses
