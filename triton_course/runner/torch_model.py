"""Triton python-backend model that serves a TorchScript file with PyTorch, on the GPU when the
instance group says KIND_GPU.

The course copies this file as model.py next to model.pt, with torch_graphs.py beside it. It runs
inside Triton's python stub, not in the notebook, and needs nothing of the course but, for a config
written for model.onnx (the onnx_model_filename parameter), the ONNX runner copied beside it as
onnx_model.py, whose checks it applies.

On the GPU, with batching, the batch the scheduler formed is replayed from a CUDA graph captured at
load time for the smallest batch-size bucket that holds it (torch_graphs.py says why each step
matters), at the precision the config asks for the way onnxruntime-backend users ask TensorRT:
optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "tensorrt"
parameters { key: "precision_mode" value: "FP16" } } ] } }. FP32 (the default) is full FP32, TF32 off.
On the CPU, or without batching, each call runs the model eagerly.
"""

import importlib.util
import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

WRITER = "course PyTorch runner"  # how Triton's messages name this file (as the ONNX runner's docstring says)


class RunnerError(Exception):
    """A load failure of this runner. Its type's name is WRITER: Triton's python stub writes a raised
    exception as "<type name>: <message>", and the python backend puts "Internal: " in front."""


RunnerError.__name__ = RunnerError.__qualname__ = WRITER


def _runner_file(version_dir, filename, module_name):
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(version_dir, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_against_onnx(config, version_dir, onnx_filename):
    """Check config.pbtxt against the ONNX file with the ONNX runner's own checks (the course puts
    onnx_model.py beside model.py), so a config mistake fails the load on the GPU as on the CPU."""
    onnx_path = os.path.join(version_dir, onnx_filename)
    if not os.path.exists(onnx_path):
        raise FileNotFoundError(f"unable to find '{onnx_path}' for model '{config['name']}'")
    onnx_runner = _runner_file(version_dir, "onnx_model.py", "course_onnx_runner")
    session = onnx_runner.ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    onnx_runner.check_config(config, session)


class TritonPythonModel:
    def initialize(self, args):
        try:
            self._load(args)
        except Exception as exc:  # said in the name of the runner whose code wrote it
            if type(exc).__name__.startswith("course "):
                raise  # this runner's, or the ONNX runner's config check (its words, its name)
            raise RunnerError(f"{type(exc).__name__}: {exc}") from None

    def _load(self, args):
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        params = config.get("parameters") or {}
        filename = (params.get("torchscript_filename") or {}).get("string_value") or "model.pt"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.exists(path):
            raise FileNotFoundError(f"unable to find '{path}' for model '{self.name}'")
        onnx_filename = (params.get("onnx_model_filename") or {}).get("string_value")
        if onnx_filename:  # the config was written for model.onnx: the onnxruntime backend's checks apply
            _check_against_onnx(config, os.path.join(args["model_repository"], args["model_version"]), onnx_filename)
        if args.get("model_instance_kind") == "GPU":
            if not torch.cuda.is_available():
                raise RuntimeError(f"model '{self.name}' asks for KIND_GPU but PyTorch sees no CUDA device "
                                   f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
            self.device = torch.device(f"cuda:{int(args.get('model_instance_device_id', 0))}")
        else:
            self.device = torch.device("cpu")
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        graphs = _runner_file(version_dir, "torch_graphs.py", "course_torch_graphs")
        # Full FP32 unless the config asks for FP16 (no TF32 in matmuls and convolutions), so that the answers
        # match the ONNX model's. Calls run with TorchScript's optimizer off: it re-optimizes a graph after its
        # first calls and per batch size, and its fused kernels change the last digits.
        graphs.set_tf32(False)
        self.model = torch.jit.load(path, map_location=self.device).eval()
        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.graphed, self.half = None, False
        how = "eagerly, FP32"
        if self.device.type == "cuda":
            precision = graphs.requested_precision(config)
            inputs = [([int(d) for d in t["dims"]], pb_utils.triton_string_to_numpy(t["data_type"]))
                      for t in config["input"]]
            if self.max_batch_size > 0 and all(d > 0 for dims, _ in inputs for d in dims):
                outputs = [pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]]
                sizes = graphs.buckets(self.max_batch_size)
                self.graphed = graphs.GraphedModel(self.model, self.device, precision, inputs, outputs, sizes)
                how = (f"{precision}{' (the config asks TensorRT for it)' if precision == 'FP16' else ''}, "
                       f"channels-last, one CUDA graph per batch size {sizes}, pinned host buffers")
            elif precision != "FP32":
                self.model, self.half = self.model.half(), True
                how = f"eagerly, {precision} (no CUDA graphs: the batch or input shape is not fixed)"
        where = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        pb_utils.Logger.log_info(f"torch runner: '{self.name}' serves {filename} with PyTorch {torch.__version__} "
                                 f"on {self.device} ({where}): {how}")

    def _eager(self, arrays):
        feeds = [torch.from_numpy(a).to(self.device) for a in arrays]
        if self.half:
            feeds = [f.half() if f.is_floating_point() else f for f in feeds]
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            outputs = self.model(*feeds)
        return [o.float().cpu().numpy() if self.half else o.cpu().numpy()
                for o in (outputs if isinstance(outputs, (tuple, list)) else [outputs])]

    def _response(self, outputs):
        tensors = [pb_utils.Tensor(n, o) for n, o in zip(self.output_names, outputs)]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests):
        try:
            arrays = [[pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names]
                      for r in requests]
            if self.max_batch_size == 0:
                return [self._response(self._eager(a)) for a in arrays]
            # The requests the dynamic batcher grouped become one batch on the device.
            pieces = [[a[i] for a in arrays] for i in range(len(self.input_names))]
            if self.graphed is not None:  # replayed from the graph of the smallest bucket that holds it
                outputs = self.graphed.run(pieces)
            else:
                outputs = self._eager([np.concatenate(p) for p in pieces])
            responses, start = [], 0
            for a in arrays:
                size = a[0].shape[0]
                responses.append(self._response([o[start:start + size] for o in outputs]))
                start += size
            return responses
        except Exception as exc:  # noqa: BLE001 - every request must get an answer
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{WRITER}: {type(exc).__name__}: {exc}"))
                    for _ in requests]
