"""Triton python-backend model that serves an ONNX file with onnxruntime.

The course copies this file as model.py into a version folder next to model.onnx when the
server has no onnxruntime backend (the Triton inside the nvidia-pytriton wheel has only the
python backend). It checks config.pbtxt against the ONNX model the way the onnxruntime
backend does, so the classic config mistakes fail the load with a message of the same kind.
It is self-contained on purpose: it runs inside Triton's python stub, not in the notebook.
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


def _shape(dims):
    return "[" + ",".join(str(d) for d in dims) + "]"


def _model_dims(node):
    # Symbolic dimensions ('batch') and unknown ones (None) are wildcards, as -1 in Triton.
    return [d if isinstance(d, int) else -1 for d in node.shape]


def check_tensors(model_name, kind, configured, model_nodes, max_batch_size):
    """Raise ValueError when config tensors disagree with the ONNX model's (names, types, dims).

    The texts are the onnxruntime backend's own (onnxruntime_backend src/onnxruntime.cc and
    src/onnxruntime_utils.cc, backend src/backend_common.cc); the python backend puts
    "Internal: ValueError: " in front, where the onnxruntime backend's code reads "Invalid argument"."""
    by_name = {node.name: node for node in model_nodes}
    for tensor in configured:
        name = tensor["name"]
        if name not in by_name:
            # backend_common.cc CheckAllowedModelInput/Output: names listed sorted (a std::set).
            raise ValueError(
                f"unexpected inference {kind} '{name}', allowed {kind}s are: {', '.join(sorted(by_name))}")
        node = by_name[name]
        expected_type = ONNX_TO_TRITON.get(node.type, node.type)
        if tensor["data_type"] != expected_type:
            raise ValueError(
                f"unable to load model '{model_name}', configuration expects datatype {tensor['data_type']} "
                f"for {kind} '{name}', model provides {expected_type}")
        dims = [int(d) for d in (tensor.get("reshape") or {}).get("shape") or tensor["dims"]]
        model_dims = _model_dims(node)
        if max_batch_size > 0:
            full = [-1] + dims
            ok = len(model_dims) == len(full) and all(
                c == -1 or m == -1 or c == m for m, c in zip(model_dims[1:], full[1:]))
            if not ok:
                raise ValueError(
                    f"model '{model_name}', tensor '{name}': the model expects {len(model_dims)} "
                    f"dimensions (shape {_shape(model_dims)}) but the model configuration specifies "
                    f"{len(full)} dimensions (an initial batch dimension because max_batch_size > 0 "
                    f"followed by the explicit tensor shape, making complete shape {_shape(full)})")
        else:
            ok = len(model_dims) == len(dims) and all(
                c == -1 or m == -1 or c == m for m, c in zip(model_dims, dims))
            if not ok:
                raise ValueError(
                    f"model '{model_name}', tensor '{name}': the model expects {len(model_dims)} "
                    f"dimensions (shape {_shape(model_dims)}) but the model configuration specifies "
                    f"{len(dims)} dimensions (shape {_shape(dims)})")


def check_config(config, session):
    """Raise ValueError when config.pbtxt disagrees with the ONNX model (tensor count, names, types, dims),
    as the onnxruntime backend does. The PyTorch runner calls it too, for a config written for model.onnx."""
    name, max_batch_size = config["name"], int(config.get("max_batch_size", 0))
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(config.get("input", [])) != len(inputs):
        raise ValueError(
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
        raise ValueError(f"optimization graph level {level} is not one onnxruntime knows: use -1 (basic), "
                         "1 (basic and extended), 2 (none), or leave it out (all)")
    options.graph_optimization_level = GRAPH_LEVELS[level]

    def number(key):
        value = (params.get(key) or {}).get("string_value")
        if value in (None, ""):
            return 0  # onnxruntime's default: one thread per core
        if not value.isdigit():
            raise ValueError(f"parameter '{key}' must be a whole number of threads, got '{value}'")
        return int(value)

    options.intra_op_num_threads = number("intra_op_thread_count")
    options.inter_op_num_threads = number("inter_op_thread_count")
    return options


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        params = config.get("parameters") or {}
        filename = (params.get("onnx_model_filename") or {}).get("string_value") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if os.path.islink(path) and not os.path.exists(path):
            raise FileNotFoundError(
                f"'{path}' for model '{self.name}' is a symbolic link to '{os.readlink(path)}', "
                "which does not exist where the server runs")
        if not os.path.exists(path):
            raise FileNotFoundError(f"unable to find '{path}' for model '{self.name}'")
        with open(path, "rb"):  # a PermissionError here names the file, as Triton's backends do
            pass

        providers = ["CPUExecutionProvider"]
        self.device = "CPU"
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            device_id = int(args.get("model_instance_device_id", 0))
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
            self.device = f"GPU {device_id}"
        try:
            self.session = ort.InferenceSession(path, _session_options(config), providers=providers)
        except Exception as exc:  # noqa: BLE001 - reworded below, as the onnxruntime backend does
            raise RuntimeError(ort_error_text(exc)) from None

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
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]

        if self.max_batch_size > 0 and len(requests) > 1:
            # Requests the dynamic batcher grouped: one onnxruntime call, then split the rows back.
            sizes = [feeds[self.input_names[0]].shape[0] for feeds in feeds_per_request]
            feeds = {n: np.concatenate([f[n] for f in feeds_per_request]) for n in self.input_names}
            try:
                results = self.session.run(self.output_names, feeds)
            except Exception as exc:  # noqa: BLE001
                return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
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
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
